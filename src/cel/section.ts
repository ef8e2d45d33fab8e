/**
 * The EXPR section (docs/cel.md, "EXPR section"): encoding compiled programs with their paths and message schemas,
 * and decoding (with the validation the engine does on paths and schemas, in the same words).
 * assembly/engine/cel/program.ts and schema.ts are the engine's side of the same contract.
 */
import {
  ConstKind, JUMP_OPS, Op, ProtoType, U8_OPS, instructionLength, maxStackDepth, SCHEMA_TYPES,
  type CelConst, type CelProgram, type DynPath, type ProtoEnumSchema, type ProtoField, type ProtoMessageSchema,
  type ProtoPath, type ProtoSchema, type ProtoSchemaField,
} from "./bytecode.ts";

// --- encoding -----------------------------------------------------------------------------------------------

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

/** Limits of the EXPR section (docs/cel.md); assembly/engine/cel/program.ts and schema.ts check the same. */
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
