// CEL runtime values as the VM and the activation exchange them.
//
// A value is a (tag, a, b) triple so that it fits in preallocated parallel arrays: the VM stack, the decoded
// constants and the body decoders' results all use this shape, and nothing is boxed per evaluation.
//
//   tag        a                                  b
//   NULL       -                                  -
//   BOOL       0 or 1                             -
//   INT        the i64                            -
//   UINT       the u64 bits                       -
//   DOUBLE     the f64 bits (reinterpret)         -
//   STRING     pointer to UTF-8 bytes             byte length
//   LIST       constant index of the list         element count
//   OBJECT     dyn path id (JSON object)          member count
//   ARRAY      dyn path id (JSON array)           element count
//   ERROR_*    pointer to detail bytes (or 0)     detail length
//
// Strings are never copied into the VM: they point into the program section (constants), into memory the
// activation owns (request data, body bytes) or into the per-request CelArena (concatenations, decoded escapes).

export const T_NULL: u8 = 0;
export const T_BOOL: u8 = 1;
export const T_INT: u8 = 2;
export const T_UINT: u8 = 3;
export const T_DOUBLE: u8 = 4;
export const T_STRING: u8 = 5;
export const T_LIST: u8 = 6;
export const T_OBJECT: u8 = 7;
export const T_ARRAY: u8 = 8;
/** Activation answer only: the variable or map key is not there. Never on the VM stack. */
export const T_ABSENT: u8 = 9;
/** Dyn path answer only: segment `b` of the path could not be applied (its parent resolved). */
export const T_MISSING: u8 = 10;

/** First error tag; every tag at or above it is an error whose kind is the tag itself. */
export const T_ERROR: u8 = 16;
/** A map has no such key, a JSON value has no such member, an index is past the end. */
export const E_NO_SUCH_KEY: u8 = 16;
/** A variable the request does not carry (no peer identity, no SNI, no JWT, not a gRPC request). */
export const E_NO_SUCH_ATTRIBUTE: u8 = 17;
/** An operator applied to operand types it is not defined for (only reachable through dyn values). */
export const E_NO_MATCHING_OVERLOAD: u8 = 18;
/** int/uint arithmetic or a conversion left the 64-bit range. */
export const E_OVERFLOW: u8 = 19;
export const E_DIVIDE_BY_ZERO: u8 = 20;
export const E_MODULUS_BY_ZERO: u8 = 21;
/** A string that int()/uint()/double() cannot parse. */
export const E_CONVERSION: u8 = 22;
/** Something the subset cannot represent at run time (e.g. comparing two JSON containers). */
export const E_UNSUPPORTED: u8 = 24;
/** The request body could not be read as the condition needs (malformed JSON, bad protobuf, gRPC framing). */
export const E_BODY: u8 = 25;
/** A per-request resource ran out (scratch arena, JSON member pool). */
export const E_LIMIT: u8 = 26;
export const E_LAST: u8 = 26;

// @ts-ignore: decorator
@inline export function isError(tag: u8): bool {
  return tag >= T_ERROR;
}

/**
 * The slot an activation or a body decoder writes one answer into. The VM owns one and reuses it, so
 * answering never allocates.
 */
export class CelSlot {
  tag: u8 = T_NULL;
  a: i64 = 0;
  b: i32 = 0;
  /** Proto fields only: has() is true (explicit presence: seen on the wire; implicit: not the default). */
  present: bool = false;

  setNull(): void { this.tag = T_NULL; this.a = 0; this.b = 0; }
  setBool(v: bool): void { this.tag = T_BOOL; this.a = v ? 1 : 0; this.b = 0; }
  setInt(v: i64): void { this.tag = T_INT; this.a = v; this.b = 0; }
  setUint(v: u64): void { this.tag = T_UINT; this.a = <i64>v; this.b = 0; }
  setDouble(v: f64): void { this.tag = T_DOUBLE; this.a = reinterpret<i64>(v); this.b = 0; }
  setString(ptr: usize, len: i32): void { this.tag = T_STRING; this.a = <i64>ptr; this.b = len; }
  setAbsent(): void { this.tag = T_ABSENT; this.a = 0; this.b = 0; }
  setMissing(segment: i32): void { this.tag = T_MISSING; this.a = 0; this.b = segment; }
  setContainer(tag: u8, pathId: i32, size: i32): void { this.tag = tag; this.a = pathId; this.b = size; }
  /** `kind` is one of the E_* tags; the detail bytes must stay valid until the request ends. */
  setError(kind: u8, detailPtr: usize, detailLen: i32): void { this.tag = kind; this.a = <i64>detailPtr; this.b = detailLen; }
}

/** UTF-8 bytes of a static string, encoded once at start-up so messages never allocate per request. */
export class StaticText {
  readonly bytes: ArrayBuffer;
  constructor(s: string) { this.bytes = String.UTF8.encode(s); }
  get ptr(): usize { return changetype<usize>(this.bytes); }
  get len(): i32 { return this.bytes.byteLength; }
}
