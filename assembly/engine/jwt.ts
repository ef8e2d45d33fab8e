// The verified JWT payload that Envoy's jwt_authn filter leaves in dynamic metadata (`payload_in_metadata`), read
// from the bytes of the `metadata` property.
//
// Verified with Envoy 1.40 + jwt_authn + a token minted with jose: proxy_get_property on
// `metadata\0filter_metadata\0envoy.filters.http.jwt_authn\0jwt_payload` answers SerializationFailure (3) as soon
// as the payload holds a list or a null (Envoy's wasm serializeValue turns a CEL map into proxy-wasm pairs and
// cannot serialise lists or nulls), and NotFound without a token. The `metadata` property itself is a message,
// so Envoy answers it with SerializeToString of envoy.config.core.v3.Metadata: every claim arrives, lists
// included. So the filter reads `metadata` and walks it here:
//
//   Metadata { map<string, google.protobuf.Struct> filter_metadata = 1; ... }
//   Struct   { map<string, Value> fields = 1; }
//   Value    { oneof kind { NullValue null_value = 1; double number_value = 2; string string_value = 3;
//                          bool bool_value = 4; Struct struct_value = 5; ListValue list_value = 6; } }
//   ListValue { repeated Value values = 1; }
//   (a map entry is a message { key = 1; value = 2; })
//
// The payload is then written out as JSON text for the engine's JSON extractor (DynResults), so `jwt.claims`
// and `request.json` share one implementation of CEL's JSON semantics. Malformed protobuf never traps: every
// function here returns false instead.

import { dtoa_buffered } from "~lib/util/number";
import { Slice, bytesCompare, bytesEqual } from "./bytes";
import { WIRE_OK, WireCursor } from "./wire";
import { ByteWriter } from "./writer";

const JWT_NAMESPACE = "envoy.filters.http.jwt_authn";
/** The key jwt_authn's `payload_in_metadata` names in our Envoy configs (src/envoy/render.ts). */
const JWT_PAYLOAD_KEY = "jwt_payload";
/** JSON nesting the conversion follows; deeper payloads are refused (DynResults stops at 512). */
const MAX_DEPTH: i32 = 64;

const NS_BYTES = String.UTF8.encode(JWT_NAMESPACE, false);
const KEY_BYTES = String.UTF8.encode(JWT_PAYLOAD_KEY, false);
// istiod 1.21+ (RequestAuthentication) sets `payload_in_metadata: payload` (filters.EnvoyJwtFilterPayload).
const ISTIO_KEY_BYTES = String.UTF8.encode("payload", false);
const SUB_BYTES = String.UTF8.encode("sub", false);
const ISS_BYTES = String.UTF8.encode("iss", false);

// Wire reader state (no nesting across calls; recursion passes explicit bounds): the cursor (engine/wire.ts) and
// whether the bytes were malformed.
const cur = new WireCursor();
let bad = false;

/** The varint at cur.pos, or 0 with `bad` set when it is malformed. */
function varint(end: usize): u64 {
  if (cur.varint(end) != WIRE_OK) {
    bad = true;
    return 0;
  }
  return cur.value;
}

/** Skips a field of wire type `wire` at cur.pos; false when malformed. */
function skip(wire: u32, end: usize): bool {
  switch (wire) {
    case 0:
      varint(end);
      return !bad;
    case 1:
      if (end - cur.pos < 8) return false;
      cur.pos += 8;
      return true;
    case 2: {
      const n = varint(end);
      if (bad || n > <u64>(end - cur.pos)) return false;
      cur.pos += <usize>n;
      return true;
    }
    case 5:
      if (end - cur.pos < 4) return false;
      cur.pos += 4;
      return true;
  }
  return false;
}

// A length-delimited field found by `field()`: its bytes.
let fPtr: usize = 0;
let fLen: i32 = 0;

/**
 * Reads the next field of the message [cur.pos, end): returns its number (its wire type in `lastWire`), 0 at the
 * end, -1 when malformed. Length-delimited fields are left in fPtr/fLen and skipped.
 */
let lastWire: u32 = 0;
/** The value of the last varint field nextField() read. */
let lastVarint: u64 = 0;
function nextField(end: usize): i32 {
  if (cur.pos >= end) return 0;
  const tag = varint(end);
  if (bad) return -1;
  const num = <i32>(tag >> 3);
  const wire = <u32>(tag & 7);
  if (num <= 0 || tag > 0xffffffff) return -1;
  lastWire = wire;
  if (wire == 2) {
    const n = varint(end);
    if (bad || n > <u64>(end - cur.pos)) return -1;
    fPtr = cur.pos;
    fLen = <i32>n;
    cur.pos += <usize>n;
    return num;
  }
  if (wire == 0) {
    lastVarint = varint(end);
    return bad ? -1 : num;
  }
  return skip(wire, end) ? num : -1;
}

/**
 * The map entry last read by readMapEntry: `{ string key = 1; V value = 2; }`. Callers copy what they keep before
 * the next read (the walks below nest).
 */
let eKeyPtr: usize = 0;
let eKeyLen: i32 = 0;
let eValPtr: usize = 0;
let eValLen: i32 = 0;
let eHasValue = false;

/** Reads the map entry at [ptr, ptr + len) into the e* globals above; moves cur.pos. False when malformed. */
function readMapEntry(ptr: usize, len: i32): bool {
  const entryEnd = ptr + <usize>len;
  cur.pos = ptr;
  eKeyPtr = 0;
  eKeyLen = 0;
  eValPtr = 0;
  eValLen = 0;
  eHasValue = false;
  while (true) {
    const n = nextField(entryEnd);
    if (n == 0) return true;
    if (n < 0) return false;
    if (lastWire != 2) continue;
    if (n == 1) {
      eKeyPtr = fPtr;
      eKeyLen = fLen;
    } else if (n == 2) {
      eValPtr = fPtr;
      eValLen = fLen;
      eHasValue = true;
    }
  }
}

/**
 * In a message holding `map<string, V> = 1` (Metadata.filter_metadata, Struct.fields), finds the value of `key`
 * (the last entry wins, as protobuf maps do). Returns false when absent or malformed.
 */
function mapValue(ptr: usize, len: i32, key: ArrayBuffer, out: Slice): bool {
  return mapValueAt(ptr, len, changetype<usize>(key), key.byteLength, out);
}

/** mapValue with the key as a byte range (a claim name from the table). */
function mapValueAt(ptr: usize, len: i32, keyPtr: usize, keyLen: i32, out: Slice): bool {
  const end = ptr + <usize>len;
  cur.pos = ptr;
  bad = false;
  let found = false;
  while (true) {
    const num = nextField(end);
    if (num == 0) break;
    if (num < 0) return false;
    if (num != 1 || lastWire != 2) continue;
    const save = cur.pos;
    if (!readMapEntry(fPtr, fLen)) return false;
    cur.pos = save;
    if (bytesEqual(eKeyPtr, eKeyLen, keyPtr, keyLen)) {
      // A map entry without a value holds the value type's default (an empty message).
      out.set(eHasValue ? eValPtr : 0, eHasValue ? eValLen : 0);
      found = true;
    }
  }
  return found;
}

/** The struct_value (field 5) of a google.protobuf.Value, or false when the value is not a struct. */
function structOfValue(ptr: usize, len: i32, out: Slice): bool {
  const end = ptr + <usize>len;
  cur.pos = ptr;
  bad = false;
  let kind = 0;
  while (true) {
    const num = nextField(end);
    if (num == 0) break;
    if (num < 0) return false;
    if (num >= 1 && num <= 6) kind = num; // oneof: the last member on the wire wins
    if (num == 5 && lastWire == 2) out.set(fPtr, fLen);
  }
  return kind == 5;
}

/**
 * Finds the JWT payload (a google.protobuf.Struct) in the serialised Metadata message, in
 * filter_metadata["envoy.filters.http.jwt_authn"]:
 * 1. fields["jwt_payload"].struct_value, where our Envoy configs put it (`payload_in_metadata: jwt_payload`);
 * 2. else fields["payload"].struct_value, where istiod 1.21+ puts it (RequestAuthentication sets
 *    `payload_in_metadata: payload`, pilot/pkg/security/authn/policy_applier.go);
 * 3. else the payload stored under its own issuer: fields[K].struct_value whose `iss` claim is the string K. istiod
 *    (RequestAuthentication) has set `payload_in_metadata` to the rule's issuer (pilot/pkg/security/authn); the
 *    key must equal the payload's own `iss`, so other entries jwt_authn may write (header_in_metadata,
 *    failed_status_in_metadata) are never taken for a payload. With several such entries (tokens of several
 *    issuers) the first in key order (bytewise) wins, whatever order Envoy serialised the map in.
 * False when there is none (no verified token) or the bytes are malformed.
 */
// Intermediate results (module-level: the request path creates no GC objects).
const ns = new Slice();
const value = new Slice();
const candidate = new Slice();
const iss = new Slice();

export function findJwtPayload(metaPtr: usize, metaLen: i32, out: Slice): bool {
  if (metaLen <= 0) return false;
  if (!mapValue(metaPtr, metaLen, NS_BYTES, ns)) return false;
  if (mapValue(ns.ptr, ns.len, KEY_BYTES, value)) return structOfValue(value.ptr, value.len, out);
  if (mapValue(ns.ptr, ns.len, ISTIO_KEY_BYTES, value)) return structOfValue(value.ptr, value.len, out);
  return issuerKeyedPayload(ns.ptr, ns.len, out);
}

/** Step 3 of findJwtPayload: in the jwt_authn Struct, the struct value stored under its own `iss`. */
function issuerKeyedPayload(ptr: usize, len: i32, out: Slice): bool {
  const end = ptr + <usize>len;
  let bestKey: usize = 0;
  let bestKeyLen = -1;
  let p = ptr;
  while (p < end) {
    cur.pos = p;
    bad = false;
    const num = nextField(end);
    if (num < 0) return false;
    if (num == 0) break;
    p = cur.pos;
    if (num != 1 || lastWire != 2) continue;
    // A map entry { string key = 1; Value value = 2; }; the helpers below move cur.pos, `p` resumes the walk.
    if (!readMapEntry(fPtr, fLen)) return false;
    const kPtr = eKeyPtr;
    const kLen = eKeyLen;
    const vPtr = eValPtr;
    const vLen = eValLen;
    if (kLen == 0 || !structOfValue(vPtr, vLen, candidate)) continue;
    if (!mapValue(candidate.ptr, candidate.len, ISS_BYTES, value) || !stringOfValue(value.ptr, value.len, iss)) continue;
    if (!bytesEqual(iss.ptr, iss.len, kPtr, kLen)) continue;
    // "<=": a key repeated on the wire is one map entry whose last occurrence counts, as in mapValue.
    if (bestKeyLen < 0 || bytesCompare(kPtr, kLen, bestKey, bestKeyLen) <= 0) {
      bestKey = kPtr;
      bestKeyLen = kLen;
      out.set(candidate.ptr, candidate.len);
    }
  }
  return bestKeyLen >= 0;
}

/** The string_value (field 3) of a google.protobuf.Value, or false when the value is not a string. */
function stringOfValue(ptr: usize, len: i32, out: Slice): bool {
  const end = ptr + <usize>len;
  cur.pos = ptr;
  bad = false;
  let ok = false;
  while (true) {
    const num = nextField(end);
    if (num == 0) break;
    if (num < 0) return false;
    if (num >= 1 && num <= 6) ok = num == 3 && lastWire == 2; // oneof: the last member on the wire wins
    if (ok) out.set(fPtr, fLen);
  }
  return ok;
}

/** The payload's `sub` claim when it is a string (the principal for callers without a client certificate). */
export function payloadSubject(payloadPtr: usize, payloadLen: i32, out: Slice): bool {
  if (!mapValue(payloadPtr, payloadLen, SUB_BYTES, value)) return false;
  return stringOfValue(value.ptr, value.len, out);
}

// Scratch for dtoa_buffered (UTF-16 output, at most 28 characters).
const DTOA_BUF: usize = memory.data(64);

/**
 * Writes a google.protobuf.Struct as a JSON object. Numbers use the shortest round-trip form AssemblyScript's
 * dtoa gives (the extractor parses them back correctly rounded, so the double is exact); NaN and infinities,
 * which JSON cannot hold and jwt_authn never writes, become null. False when malformed or nested deeper than 64.
 */
export function structToJson(ptr: usize, len: i32, w: ByteWriter): bool {
  return writeStruct(ptr, len, w, 0);
}

function writeStruct(ptr: usize, len: i32, w: ByteWriter, depth: i32): bool {
  if (depth > MAX_DEPTH) return false;
  const end = ptr + <usize>len;
  w.byte(0x7b);
  let first = true;
  let p = ptr;
  while (p < end) {
    cur.pos = p;
    bad = false;
    const num = nextField(end);
    if (num < 0) return false;
    p = cur.pos;
    if (num != 1 || lastWire != 2) continue;
    if (!readMapEntry(fPtr, fLen)) return false;
    const kPtr = eKeyPtr;
    const kLen = eKeyLen;
    const vPtr = eValPtr;
    const vLen = eValLen;
    if (!first) w.byte(0x2c);
    first = false;
    w.jsonString(kPtr, kLen);
    w.byte(0x3a);
    if (!writeValue(vPtr, vLen, w, depth + 1)) return false;
  }
  w.byte(0x7d);
  return true;
}

function writeList(ptr: usize, len: i32, w: ByteWriter, depth: i32): bool {
  if (depth > MAX_DEPTH) return false;
  const end = ptr + <usize>len;
  w.byte(0x5b);
  let first = true;
  let p = ptr;
  while (p < end) {
    cur.pos = p;
    bad = false;
    const num = nextField(end);
    if (num < 0) return false;
    p = cur.pos;
    if (num != 1 || lastWire != 2) continue;
    if (!first) w.byte(0x2c);
    first = false;
    if (!writeValue(fPtr, fLen, w, depth + 1)) return false;
  }
  w.byte(0x5d);
  return true;
}

/** A google.protobuf.Value as JSON; a Value with no member set is null (proto3 JSON mapping). */
function writeValue(ptr: usize, len: i32, w: ByteWriter, depth: i32): bool {
  const end = ptr + <usize>len;
  cur.pos = ptr;
  bad = false;
  // The oneof member that is last on the wire wins.
  let kind = 0;
  let mPtr: usize = 0;
  let mLen = 0;
  let bits: u64 = 0;
  while (true) {
    const num = nextField(end);
    if (num == 0) break;
    if (num < 0) return false;
    if (num < 1 || num > 6) continue;
    const wire = lastWire;
    if (num == 2) {
      if (wire != 1) return false;
      bits = load<u64>(cur.pos - 8);
    } else if (num == 1 || num == 4) {
      if (wire != 0) return false;
      bits = lastVarint;
    } else if (wire != 2) {
      return false;
    } else {
      mPtr = fPtr;
      mLen = fLen;
    }
    kind = num;
  }
  switch (kind) {
    case 2: {
      const d = reinterpret<f64>(bits);
      if (!isFinite(d)) {
        w.ascii("null");
      } else if (bits == 0x8000000000000000) {
        w.ascii("-0.0"); // AssemblyScript's dtoa writes -0 as "0.0"
      } else {
        const n = dtoa_buffered(DTOA_BUF, d);
        w.ensure(<i32>n);
        for (let i: u32 = 0; i < n; i++) w.byte(<u32>load<u16>(DTOA_BUF + (<usize>i << 1)));
      }
      return true;
    }
    case 3:
      w.jsonString(mPtr, mLen);
      return true;
    case 4:
      w.ascii(bits != 0 ? "true" : "false");
      return true;
    case 5:
      return writeStruct(mPtr, mLen, w, depth);
    case 6:
      return writeList(mPtr, mLen, w, depth);
  }
  w.ascii("null");
  return true;
}

// ---- Istio's reading of the payload (what istiod's RBAC metadata matchers see) ----

/**
 * The payload istiod's RBAC reads: filter_metadata["envoy.filters.http.jwt_authn"].fields["payload"].struct_value
 * (pilot/pkg/security/authz/model: MetadataMatcher{filter: jwt_authn, path: [payload, <claim>...]}); none of the
 * other keys findJwtPayload falls back to. False when absent or malformed.
 */
export function istioJwtPayload(metaPtr: usize, metaLen: i32, out: Slice): bool {
  if (metaLen <= 0) return false;
  if (!mapValue(metaPtr, metaLen, NS_BYTES, ns)) return false;
  if (!mapValue(ns.ptr, ns.len, ISTIO_KEY_BYTES, value)) return false;
  return structOfValue(value.ptr, value.len, out);
}

/** The string claim `name` of a payload Struct (Envoy's metadata string_match: other kinds never match). */
export function payloadStringClaim(payloadPtr: usize, payloadLen: i32, namePtr: usize, nameLen: i32, out: Slice): bool {
  if (!mapValueAt(payloadPtr, payloadLen, namePtr, nameLen, value)) return false;
  return stringOfValue(value.ptr, value.len, out);
}

/**
 * Walks the NUL-separated claim path `path` through nested Structs from the payload, as Envoy's MetadataMatcher
 * walks its path (each step but the last must be a struct). Leaves the google.protobuf.Value found in `out`.
 */
export function payloadClaimValue(payloadPtr: usize, payloadLen: i32, path: usize, pathLen: i32, out: Slice): bool {
  candidate.set(payloadPtr, payloadLen);
  let start = 0;
  while (true) {
    let end = start;
    while (end < pathLen && load<u8>(path + <usize>end) != 0) end++;
    if (!mapValueAt(candidate.ptr, candidate.len, path + <usize>start, end - start, value)) return false;
    if (end == pathLen) {
      out.set(value.ptr, value.len);
      return true;
    }
    if (!structOfValue(value.ptr, value.len, candidate)) return false;
    start = end + 1;
  }
  return false;
}

/** The string_value of a google.protobuf.Value, if it is one. */
export function valueString(ptr: usize, len: i32, out: Slice): bool {
  return stringOfValue(ptr, len, out);
}

/**
 * The list_value (field 6) of a google.protobuf.Value as its ListValue bytes, or false when it is not a list.
 * Walk it with listNext.
 */
export function valueList(ptr: usize, len: i32, out: Slice): bool {
  const end = ptr + <usize>len;
  cur.pos = ptr;
  bad = false;
  let kind = 0;
  while (true) {
    const num = nextField(end);
    if (num == 0) break;
    if (num < 0) return false;
    if (num >= 1 && num <= 6) kind = num;
    if (num == 6 && lastWire == 2) out.set(fPtr, fLen);
  }
  if (kind == 6 && out.len == 0) out.set(0, 0);
  return kind == 6;
}

/**
 * The next element (a google.protobuf.Value) of a ListValue from byte offset `*at` on: fills `out`, returns the
 * offset after it, or -1 at the end or when malformed.
 */
export function listNext(listPtr: usize, listLen: i32, at: i32, out: Slice): i32 {
  const end = listPtr + <usize>listLen;
  cur.pos = listPtr + <usize>at;
  bad = false;
  while (true) {
    const num = nextField(end);
    if (num <= 0) return -1;
    if (num == 1 && lastWire == 2) {
      out.set(fPtr, fLen);
      return <i32>(cur.pos - listPtr);
    }
  }
  return -1;
}
