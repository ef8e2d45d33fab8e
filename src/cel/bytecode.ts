/**
 * The CEL bytecode: instruction set, compiled programs and the message schemas they carry (docs/cel.md). The EXPR
 * section that stores them is section.ts; assembly/engine/cel/opcodes.ts is the engine's side of the instructions.
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

export const U8_OPS: ReadonlySet<number> = new Set<number>([Op.VAR, Op.MAP_GET, Op.MAP_HAS, Op.MAP_SIZE]);
const U16_OPS = new Set<number>([Op.CONST, Op.DYN_GET, Op.DYN_HAS, Op.DYN_IN, Op.PROTO_GET, Op.PROTO_HAS]);
export const JUMP_OPS: ReadonlySet<number> = new Set<number>([Op.JUMP_IF_FALSE, Op.JUMP_IF_TRUE, Op.JUMP]);

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
