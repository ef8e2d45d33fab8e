/**
 * The CEL bytecode: instruction set, compiled programs, and the EXPR section encoding (docs/cel.md).
 * assembly/engine/cel/opcodes.ts and program.ts are the engine's side of the same contract.
 */
import type { CelType } from "./types.ts";

/** Opcodes (one byte) and their operand layouts. */
export const Op = {
  CONST: 0x01, // u16 constant
  VAR: 0x02, // u8 variable
  MAP_GET: 0x03, // u8 variable; pops key
  MAP_HAS: 0x04, // u8 variable; pops key
  MAP_SIZE: 0x05, // u8 variable
  DYN_GET: 0x06, // u16 dyn path
  DYN_HAS: 0x07, // u16 dyn path
  DYN_IN: 0x08, // u16 dyn path; pops needle
  PROTO_GET: 0x09, // u16 proto path
  PROTO_HAS: 0x0a, // u16 proto path
  NOT: 0x10,
  NEG: 0x11,
  EQ: 0x12,
  NE: 0x13,
  LT: 0x14,
  LE: 0x15,
  GT: 0x16,
  GE: 0x17,
  ADD: 0x18,
  SUB: 0x19,
  MUL: 0x1a,
  DIV: 0x1b,
  MOD: 0x1c,
  IN: 0x1d,
  INDEX: 0x1e,
  SIZE: 0x1f,
  STARTS_WITH: 0x20,
  ENDS_WITH: 0x21,
  CONTAINS: 0x22,
  TO_INT: 0x23,
  TO_UINT: 0x24,
  TO_DOUBLE: 0x25,
  TO_STRING: 0x26,
  AND: 0x27,
  OR: 0x28,
  JUMP_IF_FALSE: 0x30, // u16 target
  JUMP_IF_TRUE: 0x31, // u16 target
  COND: 0x32, // u16 else, u16 end
  JUMP: 0x33, // u16 target
  RETURN: 0x3f,
} as const;

export type OpCode = (typeof Op)[keyof typeof Op];

const OP_NAMES = new Map<number, string>(Object.entries(Op).map(([k, v]) => [v, k]));

/** Constant kinds, numbered as the engine's value tags (T_* in assembly/engine/cel/value.ts). */
export const ConstKind = { NULL: 0, BOOL: 1, INT: 2, UINT: 3, DOUBLE: 4, STRING: 5, LIST: 6 } as const;

export type CelConst =
  | { readonly kind: "null" }
  | { readonly kind: "bool"; readonly value: boolean }
  | { readonly kind: "int"; readonly value: bigint }
  | { readonly kind: "uint"; readonly value: bigint }
  | { readonly kind: "double"; readonly value: number }
  | { readonly kind: "string"; readonly value: string }
  /** Elements are indexes of earlier scalar constants. */
  | { readonly kind: "list"; readonly items: readonly number[] };

/**
 * One instruction. `a`/`b` are the operands; for jumps they are indexes of target instructions in the
 * program's code (resolved to byte offsets by the encoder); for paths, indexes into the program's own path
 * lists (remapped to section-wide path ids by encodePrograms).
 */
export interface Instr {
  op: number;
  a?: number;
  b?: number;
}

/** A JSON path below a dyn variable: string segments select object members, bigint segments index arrays. */
export interface DynPath {
  readonly root: number;
  readonly segments: readonly (string | bigint)[];
  /** Collect the array elements / object keys at this path (the right side of `in`). */
  readonly members: boolean;
}

/** Protobuf field types (FieldDescriptorProto.Type numbers) the subset reads. */
export const ProtoType = {
  DOUBLE: 1, FLOAT: 2, INT64: 3, UINT64: 4, INT32: 5, FIXED64: 6, FIXED32: 7, BOOL: 8, STRING: 9, MESSAGE: 11,
  UINT32: 13, ENUM: 14, SFIXED32: 15, SFIXED64: 16, SINT32: 17, SINT64: 18,
} as const;

/** Every field type a message schema may declare: FieldDescriptorProto.Type without 10 (group). */
export const SCHEMA_TYPES: ReadonlySet<number> = new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18]);
/** FieldDescriptorProto.Type BYTES (in schemas only: conditions do not read bytes). */
export const PROTO_TYPE_BYTES = 12;

export interface ProtoField {
  readonly number: number;
  /** ProtoType; every field but the last is MESSAGE. */
  readonly type: number;
  readonly name: string;
}

/** A field path in the request message of one gRPC method. */
export interface ProtoPath {
  readonly root: number;
  /** The gRPC method (`/pkg.Service/Method`) whose request message the path reads. */
  readonly method: string;
  readonly fields: readonly ProtoField[];
  /** has() means "seen on the wire" (message fields, proto3 `optional`) instead of "not the default". */
  readonly explicitPresence: boolean;
}

/** One field of a message schema (docs/cel.md, "EXPR section"). */
export interface ProtoSchemaField {
  readonly number: number;
  /** FieldDescriptorProto.Type, one of SCHEMA_TYPES. */
  readonly type: number;
  readonly repeated: boolean;
  /** has() is "seen on the wire" (proto3 `optional`, proto2 `optional`). */
  readonly explicitPresence: boolean;
  /** proto2 `required`: a message without it is not read. */
  readonly required: boolean;
  /** Index of the field's oneof in its message, or -1 (a proto3 `optional` field's synthetic oneof is left out). */
  readonly oneof: number;
  /** For type MESSAGE: the name of the field's message (a `ProtoMessageSchema.name`). */
  readonly message?: string;
  /** For type ENUM of a closed enum (proto2): its name (a `ProtoEnumSchema.name`); open enums take any int32. */
  readonly enum?: string;
}

/** A closed enum: a decoder keeps a value it does not declare out of the field, so only declared values are read. */
export interface ProtoEnumSchema {
  /** Unique within a section (the full name). Not encoded. */
  readonly name: string;
  /** The declared numbers, ascending, each once. */
  readonly values: readonly number[];
}

/** A message as the filter checks it on the wire: every field, ascending by number; map entries are messages too. */
export interface ProtoMessageSchema {
  /** Unique within a section (the full name; `map<key,value>` for a map entry). Not encoded. */
  readonly name: string;
  readonly fields: readonly ProtoSchemaField[];
  readonly oneofs: number;
}

/**
 * What the filter knows about the request messages a program reads: for each gRPC method, its request message
 * (by name), and every message reachable from those (the filter checks the whole message, not only the fields
 * conditions read).
 */
export interface ProtoSchema {
  readonly methods: readonly { readonly method: string; readonly message: string }[];
  readonly messages: readonly ProtoMessageSchema[];
  readonly enums: readonly ProtoEnumSchema[];
}

export const EMPTY_PROTO_SCHEMA: ProtoSchema = { methods: [], messages: [], enums: [] };

/** A compiled condition. */
export interface CelProgram {
  readonly source: string;
  readonly code: readonly Instr[];
  readonly consts: readonly CelConst[];
  readonly dynPaths: readonly DynPath[];
  readonly protoPaths: readonly ProtoPath[];
  /** The schema of the request messages `protoPaths` read (empty without proto paths). */
  readonly protoSchema: ProtoSchema;
  readonly resultType: CelType;
}

// --- instruction shapes ---------------------------------------------------------------------------------

const U8_OPS = new Set<number>([Op.VAR, Op.MAP_GET, Op.MAP_HAS, Op.MAP_SIZE]);
const U16_OPS = new Set<number>([Op.CONST, Op.DYN_GET, Op.DYN_HAS, Op.DYN_IN, Op.PROTO_GET, Op.PROTO_HAS]);
const JUMP_OPS = new Set<number>([Op.JUMP_IF_FALSE, Op.JUMP_IF_TRUE, Op.JUMP]);

export function instructionLength(op: number): number {
  if (U8_OPS.has(op)) return 2;
  if (U16_OPS.has(op) || JUMP_OPS.has(op)) return 3;
  if (op === Op.COND) return 5;
  if (op === Op.RETURN) return 1;
  if (op >= Op.NOT && op <= Op.OR) return 1;
  throw new Error(`unknown opcode 0x${op.toString(16)}`);
}

const UNARY = new Set<number>([Op.NOT, Op.NEG, Op.SIZE, Op.TO_INT, Op.TO_UINT, Op.TO_DOUBLE, Op.TO_STRING]);

/** [pops, pushes] on the fall-through edge. */
export function stackEffect(op: number): [number, number] {
  switch (op) {
    case Op.MAP_GET:
    case Op.MAP_HAS:
    case Op.DYN_IN:
    case Op.JUMP_IF_FALSE:
    case Op.JUMP_IF_TRUE:
      return [1, 1];
    case Op.COND:
      return [1, 0];
    case Op.RETURN:
      return [1, 0];
    case Op.JUMP:
      return [0, 0];
  }
  if (UNARY.has(op)) return [1, 1];
  if (op >= Op.EQ && op <= Op.OR) return [2, 1];
  return [0, 1];
}

/**
 * The stack depth the program needs, by the same forward abstract interpretation the engine's validator
 * runs. Throws if the code is inconsistent (a compiler bug).
 */
export function maxStackDepth(code: readonly Instr[]): number {
  const depth = new Array<number | undefined>(code.length + 1).fill(undefined);
  depth[0] = 0;
  let max = 1;
  const reach = (target: number, d: number) => {
    if (depth[target] === undefined) depth[target] = d;
    else if (depth[target] !== d) throw new Error(`inconsistent stack depth at instruction ${target}`);
  };
  for (let i = 0; i < code.length; i++) {
    const ins = code[i];
    const d = depth[i];
    if (d === undefined) throw new Error(`unreachable instruction ${i}`);
    const [pops, pushes] = stackEffect(ins.op);
    if (d < pops) throw new Error(`stack underflow at instruction ${i}`);
    const after = d - pops + pushes;
    max = Math.max(max, after, d);
    let fall = true;
    if (JUMP_OPS.has(ins.op)) {
      reach(ins.a!, after);
      if (ins.op === Op.JUMP) fall = false;
    } else if (ins.op === Op.COND) {
      reach(ins.a!, after);
      reach(ins.b!, after + 1);
      max = Math.max(max, after + 1);
    } else if (ins.op === Op.RETURN) {
      if (d !== 1) throw new Error(`return with ${d} values at instruction ${i}`);
      fall = false;
    }
    if (fall) reach(i + 1, after);
  }
  if (depth[code.length] !== undefined) throw new Error("control falls off the end");
  return max;
}

// --- EXPR section encoding ------------------------------------------------------------------------------

class Writer {
  private buf = new Uint8Array(256);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private room(n: number) {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number) { this.room(1); this.view.setUint8(this.length, v); this.length += 1; }
  u16(v: number) { this.room(2); this.view.setUint16(this.length, v, true); this.length += 2; }
  u32(v: number) { this.room(4); this.view.setUint32(this.length, v, true); this.length += 4; }
  i64(v: bigint) { this.room(8); this.view.setBigInt64(this.length, BigInt.asIntN(64, v), true); this.length += 8; }
  f64(v: number) { this.room(8); this.view.setFloat64(this.length, v, true); this.length += 8; }
  bytes(b: Uint8Array) { this.room(b.length); this.buf.set(b, this.length); this.length += b.length; }
  str(s: string) { const b = utf8.encode(s); this.u32(b.length); this.bytes(b); }
  finish(): Uint8Array { return this.buf.slice(0, this.length); }
}

const utf8 = new TextEncoder();

/** Current EXPR section version. A filter that reads another version rejects the table. */
export const EXPR_VERSION = 2;

/** Limits of the EXPR section (docs/cel.md); assembly/engine/cel/program.ts checks the same. */
export const MAX_PROTO_PATH_FIELDS = 32;
/** u16 indexes, 0xFFFF meaning none. */
const NONE16 = 0xffff;
const MAX_FIELD_NUMBER = 536870911;
/** Schema field flags. */
export const FieldFlag = { REPEATED: 1, EXPLICIT_PRESENCE: 2, REQUIRED: 4 } as const;

function dynKey(p: DynPath): string {
  return JSON.stringify([p.root, p.segments.map((s) => (typeof s === "string" ? ["k", s] : ["i", s.toString()]))]);
}

function protoKey(p: ProtoPath): string {
  return JSON.stringify([p.root, p.method, p.fields.map((f) => f.number)]);
}

/** Encodes one program's record (the part after its u32 length) with its path operands remapped. */
function encodeProgramRecord(p: CelProgram, dynIds: number[], protoIds: number[]): Uint8Array {
  if (p.consts.length > 0xffff) throw new Error("condition has too many constants");
  const offsets: number[] = [];
  let off = 0;
  for (const ins of p.code) {
    offsets.push(off);
    off += instructionLength(ins.op);
  }
  offsets.push(off);
  if (off > 0xffff) throw new Error("condition is too large: its bytecode exceeds 65535 bytes");
  const w = new Writer();
  w.u16(maxStackDepth(p.code));
  w.u16(p.consts.length);
  for (const c of p.consts) {
    switch (c.kind) {
      case "null": w.u8(ConstKind.NULL); break;
      case "bool": w.u8(ConstKind.BOOL); w.u8(c.value ? 1 : 0); break;
      case "int": w.u8(ConstKind.INT); w.i64(c.value); break;
      case "uint": w.u8(ConstKind.UINT); w.i64(c.value); break;
      case "double": w.u8(ConstKind.DOUBLE); w.f64(c.value); break;
      case "string": w.u8(ConstKind.STRING); w.str(c.value); break;
      case "list":
        w.u8(ConstKind.LIST);
        w.u16(c.items.length);
        for (const k of c.items) w.u16(k);
        break;
    }
  }
  w.u32(off);
  for (const ins of p.code) {
    w.u8(ins.op);
    if (U8_OPS.has(ins.op)) w.u8(ins.a!);
    else if (ins.op === Op.CONST) w.u16(ins.a!);
    else if (ins.op === Op.DYN_GET || ins.op === Op.DYN_HAS || ins.op === Op.DYN_IN) w.u16(dynIds[ins.a!]);
    else if (ins.op === Op.PROTO_GET || ins.op === Op.PROTO_HAS) w.u16(protoIds[ins.a!]);
    else if (JUMP_OPS.has(ins.op)) w.u16(offsets[ins.a!]);
    else if (ins.op === Op.COND) { w.u16(offsets[ins.a!]); w.u16(offsets[ins.b!]); }
  }
  return w.finish();
}

/** The programs' schemas merged: one message and one enum per name, one request message per method. */
function mergeSchemas(programs: readonly CelProgram[]): ProtoSchema {
  const messages = new Map<string, ProtoMessageSchema>();
  const enums = new Map<string, ProtoEnumSchema>();
  const methods = new Map<string, string>();
  for (const p of programs) {
    for (const e of p.protoSchema.enums) {
      const had = enums.get(e.name);
      if (had === undefined) enums.set(e.name, e);
      else if (JSON.stringify(had) !== JSON.stringify(e)) throw new Error(`two different definitions of enum '${e.name}'`);
    }
    for (const m of p.protoSchema.messages) {
      const had = messages.get(m.name);
      if (had === undefined) messages.set(m.name, m);
      else if (JSON.stringify(had) !== JSON.stringify(m)) throw new Error(`two different definitions of message '${m.name}'`);
    }
    for (const { method, message } of p.protoSchema.methods) {
      const had = methods.get(method);
      if (had === undefined) methods.set(method, message);
      else if (had !== message) throw new Error(`two request messages for method '${method}'`);
    }
  }
  return {
    messages: [...messages.values()],
    enums: [...enums.values()],
    methods: [...methods.entries()].map(([method, message]) => ({ method, message })),
  };
}

/**
 * Encodes programs into an EXPR section (docs/cel.md). Program i of the section is programs[i] (a rule's
 * RULE.expr is that index). Identical paths of different programs are stored once, so the filter extracts
 * each body field once per request; the message schemas of all programs are merged by name.
 */
export function encodePrograms(programs: readonly CelProgram[]): Uint8Array {
  const dyn: DynPath[] = [];
  const dynIndex = new Map<string, number>();
  const proto: ProtoPath[] = [];
  const protoIndex = new Map<string, number>();
  const dynIds: number[][] = [];
  const protoIds: number[][] = [];
  for (const p of programs) {
    dynIds.push(p.dynPaths.map((d) => {
      const k = dynKey(d);
      let i = dynIndex.get(k);
      if (i === undefined) {
        i = dyn.length;
        dynIndex.set(k, i);
        dyn.push(d);
      } else if (d.members && !dyn[i].members) {
        dyn[i] = { ...dyn[i], members: true };
      }
      return i;
    }));
    protoIds.push(p.protoPaths.map((d) => {
      const k = protoKey(d);
      let i = protoIndex.get(k);
      if (i === undefined) {
        i = proto.length;
        protoIndex.set(k, i);
        proto.push(d);
      }
      return i;
    }));
  }
  if (dyn.length > 0xffff || proto.length > 0xffff) throw new Error("too many body fields in conditions");
  const schema = mergeSchemas(programs);
  if (schema.messages.length >= NONE16 || schema.methods.length >= NONE16 || schema.enums.length >= NONE16) {
    throw new Error("too many protobuf messages in conditions");
  }
  const messageIndex = new Map(schema.messages.map((m, i) => [m.name, i]));
  const enumIndex = new Map(schema.enums.map((e, i) => [e.name, i]));
  const methodIndex = new Map(schema.methods.map((m, i) => [m.method, i]));
  const indexOf = (name: string | undefined): number => {
    const i = name === undefined ? undefined : messageIndex.get(name);
    if (i === undefined) throw new Error(`protobuf message '${name}' is not in the schema`);
    return i;
  };
  const w = new Writer();
  w.u32(EXPR_VERSION);
  w.u32(dyn.length);
  for (const d of dyn) {
    w.u8(d.root);
    w.u8(d.members ? 1 : 0);
    w.u16(d.segments.length);
    for (const s of d.segments) {
      if (typeof s === "string") { w.u8(0); w.str(s); } else { w.u8(1); w.i64(s); }
    }
  }
  w.u32(schema.enums.length);
  for (const e of schema.enums) {
    w.u32(e.values.length);
    for (const v of e.values) w.u32(v >>> 0);
  }
  w.u32(schema.messages.length);
  for (const m of schema.messages) {
    if (m.fields.length > 0xffff || m.oneofs >= NONE16) throw new Error(`message '${m.name}' has too many fields`);
    w.u16(m.fields.length);
    w.u16(m.oneofs);
    for (const f of m.fields) {
      w.u32(f.number);
      w.u8(f.type);
      w.u8((f.repeated ? FieldFlag.REPEATED : 0) | (f.explicitPresence ? FieldFlag.EXPLICIT_PRESENCE : 0) | (f.required ? FieldFlag.REQUIRED : 0));
      w.u16(f.oneof < 0 ? NONE16 : f.oneof);
      if (f.type === ProtoType.MESSAGE) w.u16(indexOf(f.message));
      else if (f.type === ProtoType.ENUM && f.enum !== undefined) {
        const e = enumIndex.get(f.enum);
        if (e === undefined) throw new Error(`protobuf enum '${f.enum}' is not in the schema`);
        w.u16(e);
      } else w.u16(NONE16);
    }
  }
  w.u32(schema.methods.length);
  for (const m of schema.methods) {
    w.str(m.method);
    w.u16(indexOf(m.message));
  }
  w.u32(proto.length);
  for (const d of proto) {
    const method = methodIndex.get(d.method);
    if (method === undefined) throw new Error(`method '${d.method}' has no request message in the schema`);
    w.u8(d.root);
    w.u8(0);
    w.u16(method);
    w.u16(d.fields.length);
    for (const f of d.fields) w.u32(f.number);
  }
  w.u32(programs.length);
  programs.forEach((p, i) => {
    const rec = encodeProgramRecord(p, dynIds[i], protoIds[i]);
    w.u32(rec.length);
    w.bytes(rec);
  });
  return w.finish();
}

// --- decoding, for the table decoder, tests and tooling ---------------------------------------------------------

export interface DecodedSection {
  dynPaths: DynPath[];
  protoPaths: ProtoPath[];
  /** Messages are named `#<index>`, enums `#enum<index>` (names are not encoded). */
  protoSchema: ProtoSchema;
  programs: { maxStack: number; consts: CelConst[]; code: Uint8Array }[];
}

/** Whether a schema field of type `t` may be packed on the wire (a repeated scalar number). */
export function packable(t: number): boolean {
  return t !== ProtoType.STRING && t !== PROTO_TYPE_BYTES && t !== ProtoType.MESSAGE;
}

/**
 * Decodes an EXPR section. The paths and message schemas are validated as the engine validates them (same
 * messages, docs/cel.md "Validation at load"); programs only as far as reading needs (the engine checks the code).
 * Throws an Error saying what is wrong.
 */
export function decodeSection(bytes: Uint8Array): DecodedSection {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dec = new TextDecoder();
  let p = 0;
  /** Where a read is, for "expr section truncated<where>". */
  let where = "";
  const need = (n: number) => { if (n < 0 || p + n > bytes.length) throw new Error(`expr section truncated${where}`); };
  const u8 = () => { need(1); return v.getUint8(p++); };
  const u16 = () => { need(2); const x = v.getUint16(p, true); p += 2; return x; };
  const u32 = () => { need(4); const x = v.getUint32(p, true); p += 4; return x; };
  const i64 = () => { need(8); const x = v.getBigInt64(p, true); p += 8; return x; };
  const str = () => { const n = u32(); need(n); const s = dec.decode(bytes.subarray(p, p + n)); p += n; return s; };
  const fail = (why: string): never => { throw new Error(why); };
  if (u32() !== EXPR_VERSION) fail("unsupported expr section version");
  const dynPaths: DynPath[] = [];
  for (let n = u32(), i = 0; i < n; i++) {
    where = ` in dyn path ${i}`;
    const root = u8();
    const members = (u8() & 1) !== 0;
    const segments: (string | bigint)[] = [];
    for (let s = u16(); s > 0; s--) segments.push(u8() === 0 ? str() : i64());
    dynPaths.push({ root, segments, members });
  }
  const enumCount = u32();
  if (enumCount >= NONE16 || enumCount > bytes.length) fail("bad enum count");
  const enums: ProtoEnumSchema[] = [];
  for (let i = 0; i < enumCount; i++) {
    where = ` in enum ${i}`;
    const n = u32();
    need(4 * n);
    const values: number[] = [];
    for (let k = 0; k < n; k++) {
      const value = v.getInt32(p, true);
      p += 4;
      if (k > 0 && value <= values[k - 1]) fail(`enum ${i} has values out of order`);
      values.push(value);
    }
    enums.push({ name: `#enum${i}`, values });
  }
  where = "";
  const messageCount = u32();
  if (messageCount >= NONE16 || messageCount > bytes.length) fail("bad message count");
  const messages: ProtoMessageSchema[] = [];
  const rawIndex: number[][] = [];
  for (let i = 0; i < messageCount; i++) {
    where = ` in message ${i}`;
    const fieldCount = u16();
    const oneofs = u16();
    if (oneofs === NONE16) fail(`message ${i} has a bad oneof count`);
    const fields: ProtoSchemaField[] = [];
    const idx: number[] = [];
    let last = 0;
    for (let j = 0; j < fieldCount; j++) {
      const number = u32();
      const type = u8();
      const flags = u8();
      const oneof = u16();
      const message = u16();
      if (number <= last || number > MAX_FIELD_NUMBER) fail(`message ${i} has a bad field number`);
      last = number;
      if (!SCHEMA_TYPES.has(type)) fail(`message ${i} field ${number} has an unsupported type`);
      const repeated = (flags & FieldFlag.REPEATED) !== 0;
      const required = (flags & FieldFlag.REQUIRED) !== 0;
      if ((flags & ~7) !== 0 || (repeated && (required || oneof !== NONE16 || (flags & FieldFlag.EXPLICIT_PRESENCE) !== 0))) {
        fail(`message ${i} field ${number} has bad flags`);
      }
      if (oneof !== NONE16 && (oneof >= oneofs || required)) fail(`message ${i} field ${number} has a bad oneof`);
      if (type === ProtoType.ENUM) {
        if (message !== NONE16 && message >= enumCount) fail(`message ${i} field ${number} has a bad enum index`);
      } else if (type === ProtoType.MESSAGE ? message >= messageCount : message !== NONE16) {
        fail(`message ${i} field ${number} has a bad message index`);
      }
      idx.push(type === ProtoType.MESSAGE ? message : -1);
      fields.push({
        number, type, repeated, required, explicitPresence: (flags & FieldFlag.EXPLICIT_PRESENCE) !== 0,
        oneof: oneof === NONE16 ? -1 : oneof, ...(type === ProtoType.MESSAGE ? { message: `#${message}` } : {}),
        ...(type === ProtoType.ENUM && message !== NONE16 ? { enum: `#enum${message}` } : {}),
      });
    }
    messages.push({ name: `#${i}`, fields, oneofs });
    rawIndex.push(idx);
  }
  where = "";
  const methodCount = u32();
  if (methodCount >= NONE16 || methodCount > bytes.length) fail("bad method count");
  const methods: { method: string; message: string }[] = [];
  const methodBytes = new Set<string>();
  for (let i = 0; i < methodCount; i++) {
    where = ` in method ${i}`;
    const n = u32();
    need(n);
    const raw = Buffer.from(bytes.subarray(p, p + n)).toString("latin1");
    const method = dec.decode(bytes.subarray(p, p + n));
    p += n;
    const m = u16();
    if (m >= messageCount) fail(`method ${i} has a bad message index`);
    if (methodBytes.has(raw)) fail(`method ${i} appears twice`);
    methodBytes.add(raw);
    methods.push({ method, message: `#${m}` });
  }
  where = "";
  const protoCount = u32();
  if (protoCount > 0xffff || protoCount > bytes.length) fail("bad proto path count");
  const protoPaths: ProtoPath[] = [];
  for (let i = 0; i < protoCount; i++) {
    where = ` in proto path ${i}`;
    const root = u8();
    const flags = u8();
    const method = u16();
    const count = u16();
    if (flags !== 0) fail(`proto path ${i} has unknown flags`);
    if (method >= methodCount) fail(`proto path ${i} has a bad method`);
    if (count < 1 || count > MAX_PROTO_PATH_FIELDS) fail(`proto path ${i} has a bad length`);
    let msg = Number(methods[method].message.slice(1));
    const fields: ProtoField[] = [];
    let explicitPresence = false;
    for (let s = 0; s < count; s++) {
      const number = u32();
      if (msg < 0) fail(`proto path ${i} selects inside a scalar`);
      const fi = messages[msg].fields.findIndex((f) => f.number === number);
      if (fi < 0) fail(`proto path ${i} names a field its message does not have`);
      const f = messages[msg].fields[fi];
      if (f.repeated) fail(`proto path ${i} reads a repeated field`);
      if (!READABLE_TYPES.has(f.type)) fail(`proto path ${i} has an unsupported field type`);
      fields.push({ number, type: f.type, name: "" });
      explicitPresence = f.type === ProtoType.MESSAGE || f.explicitPresence || f.oneof >= 0;
      msg = f.type === ProtoType.MESSAGE ? rawIndex[msg][fi] : -1;
    }
    protoPaths.push({ root, method: methods[method].method, fields, explicitPresence });
  }
  where = "";
  const programs: DecodedSection["programs"] = [];
  for (let n = u32(), i = 0; i < n; i++) {
    where = ` in program ${i}`;
    const len = u32();
    need(len);
    const end = p + len;
    const maxStack = u16();
    const consts: CelConst[] = [];
    for (let k = u16(); k > 0; k--) {
      const kind = u8();
      if (kind === ConstKind.NULL) consts.push({ kind: "null" });
      else if (kind === ConstKind.BOOL) consts.push({ kind: "bool", value: u8() !== 0 });
      else if (kind === ConstKind.INT) consts.push({ kind: "int", value: i64() });
      else if (kind === ConstKind.UINT) consts.push({ kind: "uint", value: BigInt.asUintN(64, i64()) });
      else if (kind === ConstKind.DOUBLE) { need(8); consts.push({ kind: "double", value: v.getFloat64(p, true) }); p += 8; }
      else if (kind === ConstKind.STRING) consts.push({ kind: "string", value: str() });
      else if (kind === ConstKind.LIST) { const items: number[] = []; for (let e = u16(); e > 0; e--) items.push(u16()); consts.push({ kind: "list", items }); }
      else fail(`program ${i}: unknown constant kind`);
    }
    const codeLen = u32();
    need(codeLen);
    programs.push({ maxStack, consts, code: bytes.slice(p, p + codeLen) });
    p = end;
  }
  if (p !== bytes.length) fail("trailing bytes after the last program");
  return { dynPaths, protoPaths, protoSchema: { methods, messages, enums }, programs };
}

/** Field types a proto path may name: the scalars conditions read, and messages on the way (or for has()). */
const READABLE_TYPES: ReadonlySet<number> = new Set(Object.values(ProtoType));

/**
 * The variable ids each program of a decoded section reads (VAR/MAP_* operands and the roots of the paths its
 * DYN_* and PROTO_* instructions name): what the table decoder checks META's body settings against, as the
 * engine does with CelProgram.readsVariable. Throws on code it cannot walk (an unknown opcode, a path index out
 * of range).
 */
export function programVariables(section: DecodedSection): Set<number>[] {
  return section.programs.map((p, i) => {
    const vars = new Set<number>();
    const v = new DataView(p.code.buffer, p.code.byteOffset, p.code.byteLength);
    for (let pc = 0; pc < p.code.length; ) {
      const op = p.code[pc];
      const len = instructionLength(op);
      if (pc + len > p.code.length) throw new Error(`program ${i}: instruction at ${pc} runs past the code`);
      if (U8_OPS.has(op)) vars.add(p.code[pc + 1]);
      const dyn = op === Op.DYN_GET || op === Op.DYN_HAS || op === Op.DYN_IN;
      const proto = op === Op.PROTO_GET || op === Op.PROTO_HAS;
      if (dyn || proto) {
        const k = v.getUint16(pc + 1, true);
        const path = dyn ? section.dynPaths[k] : section.protoPaths[k];
        if (!path) throw new Error(`program ${i}: ${dyn ? "dyn" : "proto"} path ${k} does not exist`);
        vars.add(path.root);
      }
      pc += len;
    }
    return vars;
  });
}

/** Human-readable listing of a program's code bytes. */
export function disassemble(code: Uint8Array): string {
  const v = new DataView(code.buffer, code.byteOffset, code.byteLength);
  const lines: string[] = [];
  for (let pc = 0; pc < code.length; ) {
    const op = code[pc];
    const name = OP_NAMES.get(op) ?? `0x${op.toString(16)}`;
    const len = instructionLength(op);
    let args = "";
    if (U8_OPS.has(op)) args = ` ${code[pc + 1]}`;
    else if (len === 3) args = ` ${v.getUint16(pc + 1, true)}`;
    else if (op === Op.COND) args = ` ${v.getUint16(pc + 1, true)} ${v.getUint16(pc + 3, true)}`;
    lines.push(`${String(pc).padStart(4)} ${name}${args}`);
    pc += len;
  }
  return lines.join("\n");
}
