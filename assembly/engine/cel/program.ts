// Decoding and validation of the EXPR section (docs/cel.md, "EXPR section"): dyn paths, proto field paths and
// programs. Everything is checked here, once, at load: the VM then runs any decoded program on any input
// without bounds checks and without trapping.
//
// INVARIANT (established by validate()): every instruction of a program is reachable, jumps go forward to
// instruction starts, every path ends in RETURN with exactly one value, the stack never exceeds maxStack,
// and every constant, variable and path index an instruction names exists and has the right kind.

import {
  OP_CONST, OP_VAR, OP_MAP_GET, OP_MAP_HAS, OP_MAP_SIZE, OP_DYN_GET, OP_DYN_HAS, OP_DYN_IN, OP_PROTO_GET,
  OP_PROTO_HAS, OP_JUMP_IF_FALSE, OP_JUMP_IF_TRUE, OP_COND, OP_JUMP, OP_RETURN, instructionLength,
  instructionPops, instructionPushes,
} from "./opcodes";
import { T_NULL, T_BOOL, T_INT, T_UINT, T_DOUBLE, T_STRING, T_LIST } from "./value";
import { validUtf8 } from "./utf8";
import { SectionReader } from "./reader";
import {
  ProtoSchema, PT_MESSAGE, FIELD_REPEATED, FIELD_EXPLICIT_PRESENCE, MAX_PROTO_DEPTH, decodeSchema, protoReadable,
} from "./schema";

/** Variable kinds, as the environment declares them (the engine passes STANDARD_VAR_KINDS). */
export const VK_SCALAR: u8 = 1;
export const VK_MAP: u8 = 2;
export const VK_DYN: u8 = 3;
export const VK_MESSAGE: u8 = 4;

/** Variable ids of the request environment (src/cel/env.ts holds the same table). */
export const VAR_SOURCE_ID: i32 = 0;
export const VAR_SOURCE_TRUST_DOMAIN: i32 = 1;
export const VAR_SOURCE_ATTRIBUTES: i32 = 2;
export const VAR_REQUEST_METHOD: i32 = 3;
export const VAR_REQUEST_PATH: i32 = 4;
export const VAR_REQUEST_HOST: i32 = 5;
export const VAR_REQUEST_HEADERS: i32 = 6;
export const VAR_REQUEST_QUERY: i32 = 7;
export const VAR_CONNECTION_MTLS: i32 = 8;
export const VAR_CONNECTION_SNI: i32 = 9;
export const VAR_REQUEST_JSON: i32 = 10;
export const VAR_REQUEST_GRPC_SERVICE: i32 = 11;
export const VAR_REQUEST_GRPC_METHOD: i32 = 12;
export const VAR_REQUEST_GRPC_MESSAGE: i32 = 13;
export const VAR_JWT_CLAIMS: i32 = 14;

/** Kinds of the request environment's variables, indexed by id. */
export const STANDARD_VAR_KINDS: StaticArray<u8> = [
  VK_SCALAR, VK_SCALAR, VK_MAP, VK_SCALAR, VK_SCALAR, VK_SCALAR, VK_MAP, VK_MAP, VK_SCALAR, VK_SCALAR, VK_DYN,
  VK_SCALAR, VK_SCALAR, VK_MESSAGE, VK_DYN,
];

export const SEG_KEY: u8 = 0;
export const SEG_INDEX: u8 = 1;

/** The EXPR section version this build reads (src/cel/bytecode.ts EXPR_VERSION). */
export const EXPR_SECTION_VERSION: u32 = 2;

/** Limits checked at load. */
export const MAX_STACK: i32 = 1024;
export const MAX_PATH_SEGMENTS: i32 = 64;

/** One decoded program. Constants point into the section bytes, which must outlive the set. */
export class CelProgram {
  code: usize = 0;
  codeLen: i32 = 0;
  maxStack: i32 = 0;
  constTag: StaticArray<u8> = new StaticArray<u8>(0);
  constA: StaticArray<i64> = new StaticArray<i64>(0);
  constB: StaticArray<i32> = new StaticArray<i32>(0);
  /** Element constant indexes of every LIST constant; a LIST constant's a is its start here, b its count. */
  listElems: StaticArray<i32> = new StaticArray<i32>(0);
  /**
   * Bit v is set when the program reads variable v (ids below 64): the filter fetches a variable, or buffers
   * the body, only for programs that read it.
   */
  reads: u64 = 0;

  /** Whether the program reads variable `v`. */
  readsVariable(v: i32): bool { return v >= 0 && v < 64 && (this.reads & (<u64>1 << <u64>v)) != 0; }
}

/** Dyn (JSON-like) paths: root variable and segments, flattened into parallel arrays. */
export class DynPaths {
  count: i32 = 0;
  root: StaticArray<u8> = new StaticArray<u8>(0);
  members: StaticArray<bool> = new StaticArray<bool>(0);
  segStart: StaticArray<i32> = new StaticArray<i32>(0);
  segCount: StaticArray<i32> = new StaticArray<i32>(0);
  segKind: StaticArray<u8> = new StaticArray<u8>(0);
  segKeyPtr: StaticArray<usize> = new StaticArray<usize>(0);
  segKeyLen: StaticArray<i32> = new StaticArray<i32>(0);
  segIndex: StaticArray<i64> = new StaticArray<i64>(0);
}

/** Proto field paths: root variable, gRPC method, field numbers, types and schema fields, flattened. */
export class ProtoPaths {
  count: i32 = 0;
  root: StaticArray<u8> = new StaticArray<u8>(0);
  /** has() is "seen on the wire" (messages, oneof members, explicit presence) rather than "not the default". */
  explicitPresence: StaticArray<bool> = new StaticArray<bool>(0);
  /** Index of the path's method in the schema. */
  method: StaticArray<i32> = new StaticArray<i32>(0);
  methodPtr: StaticArray<usize> = new StaticArray<usize>(0);
  methodLen: StaticArray<i32> = new StaticArray<i32>(0);
  segStart: StaticArray<i32> = new StaticArray<i32>(0);
  segCount: StaticArray<i32> = new StaticArray<i32>(0);
  fieldNumber: StaticArray<u32> = new StaticArray<u32>(0);
  fieldType: StaticArray<u8> = new StaticArray<u8>(0);
  /** The schema field each segment names. */
  fieldIndex: StaticArray<i32> = new StaticArray<i32>(0);
}

/** Why the last CelProgramSet.decode failed. */
export let celLoadError: string = "";

function fail(why: string): CelProgramSet | null {
  celLoadError = why;
  return null;
}

export class CelProgramSet {
  programs: Array<CelProgram> = new Array<CelProgram>();
  dyn: DynPaths = new DynPaths();
  schema: ProtoSchema = new ProtoSchema();
  proto: ProtoPaths = new ProtoPaths();
  /** Largest maxStack of any program: the stack a CelVm needs to run all of them. */
  maxStack: i32 = 1;
  /** Union of the programs' `reads` masks. */
  reads: u64 = 0;

  /** Whether any program reads variable `v` (e.g. VAR_REQUEST_JSON: the table needs request bodies). */
  readsVariable(v: i32): bool { return v >= 0 && v < 64 && (this.reads & (<u64>1 << <u64>v)) != 0; }

  get count(): i32 { return this.programs.length; }
  program(i: i32): CelProgram { return this.programs[i]; }

  /**
   * Decodes and validates an EXPR section at [ptr, ptr+len) for an environment whose variable kinds are
   * `varKinds` (STANDARD_VAR_KINDS for the request environment). Returns null and sets celLoadError on any
   * defect. The bytes must stay valid while the set is used.
   */
  static decode(ptr: usize, len: i32, varKinds: StaticArray<u8>): CelProgramSet | null {
    const r = new SectionReader(ptr, len);
    const set = new CelProgramSet();
    if (r.u32() != EXPR_SECTION_VERSION) return fail(r.failed ? "expr section truncated" : "unsupported expr section version");

    // Dyn paths.
    const dynCount = <i32>r.u32();
    if (r.failed || dynCount < 0 || dynCount > 65535 || dynCount > len) return fail("bad dyn path count");
    const dp = set.dyn;
    dp.count = dynCount;
    dp.root = new StaticArray<u8>(dynCount);
    dp.members = new StaticArray<bool>(dynCount);
    dp.segStart = new StaticArray<i32>(dynCount);
    dp.segCount = new StaticArray<i32>(dynCount);
    const segKind = new Array<u8>();
    const segKeyPtr = new Array<usize>();
    const segKeyLen = new Array<i32>();
    const segIndex = new Array<i64>();
    for (let i = 0; i < dynCount; i++) {
      const root = r.u8();
      const flags = r.u8();
      const n = r.u16();
      if (r.failed) return fail("expr section truncated in dyn path " + i.toString());
      if (<i32>root >= varKinds.length || varKinds[root] != VK_DYN) return fail("dyn path " + i.toString() + " has a root that is not a dyn variable");
      if ((flags & ~1) != 0) return fail("dyn path " + i.toString() + " has unknown flags");
      if (n > MAX_PATH_SEGMENTS) return fail("dyn path " + i.toString() + " is too long");
      dp.root[i] = root;
      dp.members[i] = (flags & 1) != 0;
      dp.segStart[i] = segKind.length;
      dp.segCount[i] = n;
      for (let s = 0; s < n; s++) {
        const kind = r.u8();
        if (kind == SEG_KEY) {
          const kl = <i32>r.u32();
          const kp = r.bytes(kl);
          if (r.failed) return fail("expr section truncated in dyn path " + i.toString());
          if (!validUtf8(kp, kl)) return fail("dyn path " + i.toString() + " has a key that is not utf-8");
          segKind.push(SEG_KEY); segKeyPtr.push(kp); segKeyLen.push(kl); segIndex.push(0);
        } else if (kind == SEG_INDEX) {
          const ix = r.i64();
          segKind.push(SEG_INDEX); segKeyPtr.push(0); segKeyLen.push(0); segIndex.push(ix);
        } else {
          return fail("dyn path " + i.toString() + " has an unknown segment kind");
        }
      }
    }
    if (r.failed) return fail("expr section truncated in dyn paths");
    dp.segKind = toStatic<u8>(segKind);
    dp.segKeyPtr = toStatic<usize>(segKeyPtr);
    dp.segKeyLen = toStatic<i32>(segKeyLen);
    dp.segIndex = toStatic<i64>(segIndex);

    // Message schemas and methods.
    const why = decodeSchema(r, set.schema, len);
    if (why.length > 0) return fail(why);
    const sc = set.schema;

    // Proto paths.
    const protoCount = <i32>r.u32();
    if (r.failed || protoCount < 0 || protoCount > 65535 || protoCount > len) return fail("bad proto path count");
    const pp = set.proto;
    pp.count = protoCount;
    pp.root = new StaticArray<u8>(protoCount);
    pp.explicitPresence = new StaticArray<bool>(protoCount);
    pp.method = new StaticArray<i32>(protoCount);
    pp.methodPtr = new StaticArray<usize>(protoCount);
    pp.methodLen = new StaticArray<i32>(protoCount);
    pp.segStart = new StaticArray<i32>(protoCount);
    pp.segCount = new StaticArray<i32>(protoCount);
    const fieldNumber = new Array<u32>();
    const fieldType = new Array<u8>();
    const fieldIndex = new Array<i32>();
    for (let i = 0; i < protoCount; i++) {
      const root = r.u8();
      const flags = r.u8();
      const method = r.u16();
      const n = r.u16();
      if (r.failed) return fail("expr section truncated in proto path " + i.toString());
      if (<i32>root >= varKinds.length || varKinds[root] != VK_MESSAGE) return fail("proto path " + i.toString() + " has a root that is not a message variable");
      if (flags != 0) return fail("proto path " + i.toString() + " has unknown flags");
      if (method >= sc.methodCount) return fail("proto path " + i.toString() + " has a bad method");
      if (n < 1 || n > MAX_PROTO_DEPTH) return fail("proto path " + i.toString() + " has a bad length");
      pp.root[i] = root;
      pp.method[i] = method;
      pp.methodPtr[i] = sc.methodPtr[method];
      pp.methodLen[i] = sc.methodLen[method];
      pp.segStart[i] = fieldNumber.length;
      pp.segCount[i] = n;
      let msg = sc.methodMessage[method];
      for (let s = 0; s < n; s++) {
        const num = r.u32();
        if (r.failed) return fail("expr section truncated in proto path " + i.toString());
        if (msg < 0) return fail("proto path " + i.toString() + " selects inside a scalar");
        const f = sc.findField(msg, num);
        if (f < 0) return fail("proto path " + i.toString() + " names a field its message does not have");
        const t = sc.fieldType[f];
        if ((sc.fieldFlags[f] & FIELD_REPEATED) != 0) return fail("proto path " + i.toString() + " reads a repeated field");
        if (!protoReadable(t)) return fail("proto path " + i.toString() + " has an unsupported field type");
        fieldNumber.push(num);
        fieldType.push(t);
        fieldIndex.push(f);
        pp.explicitPresence[i] = t == PT_MESSAGE || sc.fieldOneof[f] >= 0 || (sc.fieldFlags[f] & FIELD_EXPLICIT_PRESENCE) != 0;
        msg = sc.fieldMessage[f];
      }
    }
    pp.fieldNumber = toStatic<u32>(fieldNumber);
    pp.fieldType = toStatic<u8>(fieldType);
    pp.fieldIndex = toStatic<i32>(fieldIndex);

    // Programs.
    const progCount = <i32>r.u32();
    if (r.failed || progCount < 0 || progCount > len) return fail("bad program count");
    for (let i = 0; i < progCount; i++) {
      const recLen = <i32>r.u32();
      const recPtr = r.bytes(recLen);
      if (r.failed) return fail("expr section truncated in program " + i.toString());
      const prog = decodeProgram(recPtr, recLen, varKinds, set, i);
      if (prog == null) return null;
      set.programs.push(prog);
      set.reads |= prog.reads;
      if (prog.maxStack > set.maxStack) set.maxStack = prog.maxStack;
    }
    if (r.pos != len) return fail("trailing bytes after the last program");
    return set;
  }
}

function toStatic<T>(a: Array<T>): StaticArray<T> {
  const s = new StaticArray<T>(a.length);
  for (let i = 0; i < a.length; i++) s[i] = a[i];
  return s;
}

function progFail(i: i32, why: string): CelProgram | null {
  celLoadError = "program " + i.toString() + ": " + why;
  return null;
}

function decodeProgram(ptr: usize, len: i32, varKinds: StaticArray<u8>, set: CelProgramSet, index: i32): CelProgram | null {
  const r = new SectionReader(ptr, len);
  const p = new CelProgram();
  p.maxStack = r.u16();
  const nConst = r.u16();
  if (r.failed) return progFail(index, "truncated header");
  if (p.maxStack < 1 || p.maxStack > MAX_STACK) return progFail(index, "bad stack size");
  p.constTag = new StaticArray<u8>(nConst);
  p.constA = new StaticArray<i64>(nConst);
  p.constB = new StaticArray<i32>(nConst);
  const elems = new Array<i32>();
  for (let k = 0; k < nConst; k++) {
    const kind = r.u8();
    switch (kind) {
      case T_NULL: break;
      case T_BOOL: {
        const b = r.u8();
        if (b > 1) return progFail(index, "bad bool constant");
        p.constA[k] = b;
        break;
      }
      case T_INT: case T_UINT: case T_DOUBLE: p.constA[k] = r.i64(); break;
      case T_STRING: {
        const sl = <i32>r.u32();
        const sp = r.bytes(sl);
        if (r.failed) return progFail(index, "truncated string constant");
        if (!validUtf8(sp, sl)) return progFail(index, "string constant is not utf-8");
        p.constA[k] = <i64>sp;
        p.constB[k] = sl;
        break;
      }
      case T_LIST: {
        const n = r.u16();
        p.constA[k] = elems.length;
        p.constB[k] = n;
        for (let e = 0; e < n; e++) {
          const ek = r.u16();
          // INVARIANT: list elements are earlier, scalar constants, so a list never contains a list.
          if (ek >= k || p.constTag[ek] == T_LIST) return progFail(index, "bad list element");
          elems.push(ek);
        }
        break;
      }
      default: return progFail(index, "unknown constant kind");
    }
    if (r.failed) return progFail(index, "truncated constants");
    p.constTag[k] = kind;
  }
  p.listElems = toStatic<i32>(elems);
  const codeLen = <i32>r.u32();
  p.code = r.bytes(codeLen);
  if (r.failed) return progFail(index, "truncated code");
  if (r.pos != len) return progFail(index, "trailing bytes");
  if (codeLen < 1 || codeLen > 65535) return progFail(index, "bad code length");
  p.codeLen = codeLen;
  const why = validateCode(p, varKinds, set);
  if (why.length > 0) return progFail(index, why);
  return p;
}

/** Abstract interpretation of the stack depth over the forward-only control flow. Returns "" when valid. */
function validateCode(p: CelProgram, varKinds: StaticArray<u8>, set: CelProgramSet): string {
  const n = p.codeLen;
  // depth[pc] + 1: 0 = no edge reaches pc yet.
  const depth = new StaticArray<i32>(n + 1);
  const isStart = new StaticArray<bool>(n + 1);
  depth[0] = 1;
  let pc = 0;
  let fall = true;
  while (pc < n) {
    const op = load<u8>(p.code + <usize>pc);
    const il = instructionLength(op);
    if (il == 0) return "unknown opcode at " + pc.toString();
    if (pc + il > n) return "truncated instruction at " + pc.toString();
    isStart[pc] = true;
    const d = depth[pc] - 1;
    if (d < 0) return "unreachable instruction at " + pc.toString();
    const pops = instructionPops(op);
    if (d < pops) return "stack underflow at " + pc.toString();
    const after = d - pops + instructionPushes(op);
    if (after > p.maxStack) return "stack overflow at " + pc.toString();
    const arg = p.code + <usize>pc + 1;
    switch (op) {
      case OP_CONST: {
        if (<i32>load<u16>(arg) >= p.constTag.length) return "bad constant index at " + pc.toString();
        break;
      }
      case OP_VAR: {
        const v = <i32>load<u8>(arg);
        if (v >= varKinds.length || varKinds[v] != VK_SCALAR) return "bad variable at " + pc.toString();
        markRead(p, v);
        break;
      }
      case OP_MAP_GET: case OP_MAP_HAS: case OP_MAP_SIZE: {
        const v = <i32>load<u8>(arg);
        if (v >= varKinds.length || varKinds[v] != VK_MAP) return "bad map variable at " + pc.toString();
        markRead(p, v);
        break;
      }
      case OP_DYN_GET: case OP_DYN_HAS: case OP_DYN_IN: {
        const path = <i32>load<u16>(arg);
        if (path >= set.dyn.count) return "bad dyn path at " + pc.toString();
        markRead(p, <i32>set.dyn.root[path]);
        if (op == OP_DYN_HAS) {
          const sc = set.dyn.segCount[path];
          if (sc == 0 || set.dyn.segKind[set.dyn.segStart[path] + sc - 1] != SEG_KEY) return "has() on a path that does not end in a key at " + pc.toString();
        }
        break;
      }
      case OP_PROTO_GET: case OP_PROTO_HAS: {
        const path = <i32>load<u16>(arg);
        if (path >= set.proto.count) return "bad proto path at " + pc.toString();
        markRead(p, <i32>set.proto.root[path]);
        if (op == OP_PROTO_GET) {
          const last = set.proto.segStart[path] + set.proto.segCount[path] - 1;
          if (set.proto.fieldType[last] == PT_MESSAGE) return "message field read as a value at " + pc.toString();
        }
        break;
      }
    }
    // Control flow. Each edge sets (or must agree with) the depth at its target.
    fall = true;
    if (op == OP_JUMP_IF_FALSE || op == OP_JUMP_IF_TRUE || op == OP_JUMP) {
      const t = <i32>load<u16>(arg);
      const why = edge(depth, pc, t, n, after);
      if (why.length > 0) return why;
      if (op == OP_JUMP) fall = false;
    } else if (op == OP_COND) {
      const te = <i32>load<u16>(arg);
      const tn = <i32>load<u16>(arg + 2);
      let why = edge(depth, pc, te, n, after);
      if (why.length > 0) return why;
      why = edge(depth, pc, tn, n, after + 1);
      if (why.length > 0) return why;
      if (after + 1 > p.maxStack) return "stack overflow at " + pc.toString();
    } else if (op == OP_RETURN) {
      if (d != 1) return "return with " + d.toString() + " values at " + pc.toString();
      fall = false;
    }
    const next = pc + il;
    if (fall) {
      const why = edge(depth, pc, next, n, after);
      if (why.length > 0) return why;
    }
    pc = next;
  }
  // A jump target that is not an instruction start was never visited as one.
  for (let i = 0; i < n; i++) {
    if (depth[i] != 0 && !isStart[i]) return "jump into an instruction at " + i.toString();
  }
  if (depth[n] != 0) return "control falls off the end of the code";
  return "";
}

function markRead(p: CelProgram, v: i32): void {
  if (v < 64) p.reads |= <u64>1 << <u64>v;
}

function edge(depth: StaticArray<i32>, pc: i32, target: i32, n: i32, d: i32): string {
  if (target <= pc || target > n) return "bad jump target at " + pc.toString();
  const cur = depth[target];
  if (cur == 0) {
    depth[target] = d + 1;
  } else if (cur != d + 1) {
    return "inconsistent stack depth at " + target.toString();
  }
  return "";
}
