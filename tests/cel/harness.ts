// Test harness (AssemblyScript entry, compiled by tests/cel/build.ts into build/cel-harness.wasm): runs the
// engine's CEL VM on programs and inputs the TypeScript tests write into memory. It stands in for the filter
// until phase 2 puts the VM into build/release.wasm; the input record mirrors what the filter will supply.
//
// Protocol (all little-endian):
//   buffer(n) -> ptr             scratch input area of at least n bytes (valid until the next buffer() call)
//   loadSection(sectionLen, kindsLen)  input area = EXPR section ++ variable kinds (one u8 per variable id);
//                                returns 0, or 1 with the reason in the output area
//   run(program, inputLen)       input area = variable record (below); returns the result tag; the output area
//                                holds the result record (below)
//   output() -> ptr, outputLen() the output area
//
// Variable record: u32 count, then per variable: u8 id, u8 kind, payload
//   0 absent | 1 string: u32 n, bytes | 2 bool: u8 | 3 int: i64 | 4 uint: u64 | 5 double: f64 | 6 null
//   7 map: u32 n, n x (u32 kl, key, u32 vl, value) | 8 json: u32 n, document
//   9 proto: u32 ml, method, u8 framed, u32 n, bytes | 10 error: u8 kind, u32 n, detail
// Result record: u8 tag, then bool/int/uint/double: i64 | string: u32 n, bytes | list: u32 n, n x result record
//   | object/array: u32 size | null: nothing | error: u32 n, message bytes

import {
  CelProgramSet, CelVm, CelArena, CelActivation, CelSlot, DynResults, ProtoResults, GrpcFrame, parseGrpcFrame,
  grpcFrameReason, celLoadError, writeCelErrorMessage, VK_DYN, VK_MESSAGE, CelProgram,
  T_NULL, T_BOOL, T_INT, T_UINT, T_DOUBLE, T_STRING, T_LIST, T_OBJECT, T_ARRAY, isError,
} from "../../assembly/engine/cel/index";

let inBuf = new ArrayBuffer(1 << 16);
let outBuf = new ArrayBuffer(1 << 16);
let outLen: i32 = 0;
let section = new ArrayBuffer(0);
let programs: CelProgramSet | null = null;
let vm: CelVm | null = null;
const arena = new CelArena(1 << 16);
let dynByVar = new Array<DynResults | null>();
let protoByVar = new Array<ProtoResults | null>();

const MAX_VARS = 256;
const K_ABSENT: u8 = 0;
const K_STRING: u8 = 1;
const K_BOOL: u8 = 2;
const K_INT: u8 = 3;
const K_UINT: u8 = 4;
const K_DOUBLE: u8 = 5;
const K_NULL: u8 = 6;
const K_MAP: u8 = 7;
const K_JSON: u8 = 8;
const K_PROTO: u8 = 9;
const K_ERROR: u8 = 10;

/** Fixed-data activation over the variable record. */
class HarnessActivation extends CelActivation {
  kind: StaticArray<u8> = new StaticArray<u8>(MAX_VARS);
  ptr: StaticArray<usize> = new StaticArray<usize>(MAX_VARS);
  len: StaticArray<i32> = new StaticArray<i32>(MAX_VARS);
  num: StaticArray<i64> = new StaticArray<i64>(MAX_VARS);

  variable(id: i32, out: CelSlot): void {
    switch (this.kind[id]) {
      case K_STRING: out.setString(this.ptr[id], this.len[id]); break;
      case K_BOOL: out.setBool(this.num[id] != 0); break;
      case K_INT: out.setInt(this.num[id]); break;
      case K_UINT: out.setUint(<u64>this.num[id]); break;
      case K_DOUBLE: out.setDouble(reinterpret<f64>(this.num[id])); break;
      case K_NULL: out.setNull(); break;
      case K_ERROR: out.setError(<u8>this.num[id], this.ptr[id], this.len[id]); break;
      default: out.setAbsent();
    }
  }

  mapEntry(id: i32, keyPtr: usize, keyLen: i32, out: CelSlot): void {
    if (this.kind[id] == K_ERROR) { out.setError(<u8>this.num[id], this.ptr[id], this.len[id]); return; }
    if (this.kind[id] != K_MAP) { out.setError(17, 0, 0); return; }
    let p = this.ptr[id];
    const n = <i32>this.num[id];
    for (let i = 0; i < n; i++) {
      const kl = <i32>load<u32>(p);
      const kp = p + 4;
      p = kp + <usize>kl;
      const vl = <i32>load<u32>(p);
      const vp = p + 4;
      p = vp + <usize>vl;
      if (kl == keyLen && (kl == 0 || memory.compare(kp, keyPtr, <usize>kl) == 0)) {
        out.setString(vp, vl);
        return;
      }
    }
    out.setAbsent();
  }

  mapSize(id: i32): i32 {
    return this.kind[id] == K_MAP ? <i32>this.num[id] : -1;
  }

  dynPath(path: i32, out: CelSlot): void {
    const d = this.dyn(path);
    if (d == null) out.setAbsent(); else d.read(path, out);
  }

  dynMemberCount(path: i32): i32 {
    const d = this.dyn(path);
    return d == null ? -1 : d.memberCount(path);
  }

  dynMember(path: i32, index: i32, out: CelSlot): void {
    const d = this.dyn(path);
    if (d == null) out.setNull(); else d.member(path, index, out);
  }

  private dyn(path: i32): DynResults | null {
    const root = <i32>programs!.dyn.root[path];
    return dynByVar[root];
  }

  protoField(path: i32, out: CelSlot): void {
    const root = <i32>programs!.proto.root[path];
    const r = protoByVar[root];
    if (r == null) out.setAbsent(); else r.read(path, out);
  }
}

const activation = new HarnessActivation();
const frame = new GrpcFrame();

export function buffer(size: i32): usize {
  if (size > inBuf.byteLength) inBuf = new ArrayBuffer(size);
  return changetype<usize>(inBuf);
}

export function output(): usize { return changetype<usize>(outBuf); }
export function outputLen(): i32 { return outLen; }

function ensureOut(n: i32): void {
  if (outLen + n > outBuf.byteLength) {
    const bigger = new ArrayBuffer((outLen + n) * 2);
    memory.copy(changetype<usize>(bigger), changetype<usize>(outBuf), <usize>outLen);
    outBuf = bigger;
  }
}
function putU8(v: u8): void { ensureOut(1); store<u8>(changetype<usize>(outBuf) + <usize>outLen, v); outLen += 1; }
function putU32(v: u32): void { ensureOut(4); store<u32>(changetype<usize>(outBuf) + <usize>outLen, v); outLen += 4; }
function putI64(v: i64): void { ensureOut(8); store<i64>(changetype<usize>(outBuf) + <usize>outLen, v); outLen += 8; }
function putBytes(p: usize, n: i32): void {
  ensureOut(n);
  if (n > 0) memory.copy(changetype<usize>(outBuf) + <usize>outLen, p, <usize>n);
  outLen += n;
}

export function loadSection(sectionLen: i32, kindsLen: i32): i32 {
  outLen = 0;
  // The set points into the section bytes: keep our own copy alive for as long as the set is used.
  section = new ArrayBuffer(sectionLen);
  memory.copy(changetype<usize>(section), changetype<usize>(inBuf), <usize>sectionLen);
  const kinds = new StaticArray<u8>(kindsLen);
  for (let i = 0; i < kindsLen; i++) kinds[i] = load<u8>(changetype<usize>(inBuf) + <usize>(sectionLen + i));
  const set = CelProgramSet.decode(changetype<usize>(section), sectionLen, kinds);
  if (set == null) {
    const msg = String.UTF8.encode(celLoadError);
    putBytes(changetype<usize>(msg), msg.byteLength);
    programs = null;
    vm = null;
    return 1;
  }
  programs = set;
  vm = new CelVm(set, arena);
  dynByVar = new Array<DynResults | null>(kindsLen);
  protoByVar = new Array<ProtoResults | null>(kindsLen);
  for (let v = 0; v < kindsLen; v++) {
    dynByVar[v] = kinds[v] == VK_DYN ? new DynResults(set, v, arena) : null;
    protoByVar[v] = kinds[v] == VK_MESSAGE ? new ProtoResults(set, v) : null;
  }
  return 0;
}

/** Number of programs in the loaded set. */
export function programCount(): i32 { return programs == null ? 0 : programs!.count; }

export function run(program: i32, inputLen: i32): i32 {
  outLen = 0;
  const set = programs!;
  const machine = vm!;
  arena.reset();
  // A new request: nothing is known until the record says so.
  for (let v = 0; v < MAX_VARS; v++) activation.kind[v] = K_ABSENT;
  for (let v = 0; v < dynByVar.length; v++) {
    const d = dynByVar[v];
    if (d != null) { d.reset(); d.setAbsent(); }
    const r = protoByVar[v];
    if (r != null) r.reset();
  }
  const base = changetype<usize>(inBuf);
  let p = base;
  const end = base + <usize>inputLen;
  const count = <i32>load<u32>(p);
  p += 4;
  for (let i = 0; i < count && p < end; i++) {
    const id = <i32>load<u8>(p);
    const kind = load<u8>(p + 1);
    p += 2;
    activation.kind[id] = kind;
    switch (kind) {
      case K_STRING: {
        const n = <i32>load<u32>(p);
        activation.ptr[id] = p + 4; activation.len[id] = n;
        p += 4 + <usize>n;
        break;
      }
      case K_BOOL: activation.num[id] = load<u8>(p); p += 1; break;
      case K_INT: case K_UINT: case K_DOUBLE: activation.num[id] = load<i64>(p); p += 8; break;
      case K_NULL: case K_ABSENT: break;
      case K_MAP: {
        const n = <i32>load<u32>(p);
        p += 4;
        activation.ptr[id] = p;
        activation.num[id] = n;
        for (let e = 0; e < n; e++) {
          p += 4 + <usize>load<u32>(p);
          p += 4 + <usize>load<u32>(p);
        }
        break;
      }
      case K_JSON: {
        const n = <i32>load<u32>(p);
        const d = id < dynByVar.length ? dynByVar[id] : null;
        if (d != null) { d.reset(); d.extract(p + 4, n); }
        p += 4 + <usize>n;
        break;
      }
      case K_PROTO: {
        const ml = <i32>load<u32>(p);
        const mp = p + 4;
        p = mp + <usize>ml;
        const framed = load<u8>(p) != 0;
        const n = <i32>load<u32>(p + 1);
        const bp = p + 5;
        p = bp + <usize>n;
        const r = id < protoByVar.length ? protoByVar[id] : null;
        if (r != null) {
          if (framed) {
            // The filter's path: frame first, then decode the one message, or record why not.
            if (parseGrpcFrame(bp, n, frame) != 0) {
              const why = grpcFrameReason(frame.status);
              r.setError(mp, ml, why.ptr, why.len);
            } else {
              r.decode(mp, ml, bp + <usize>frame.offset, frame.length);
            }
          } else {
            r.decode(mp, ml, bp, n);
          }
        }
        break;
      }
      case K_ERROR: {
        activation.num[id] = load<u8>(p);
        const n = <i32>load<u32>(p + 1);
        activation.ptr[id] = p + 5;
        activation.len[id] = n;
        p += 5 + <usize>n;
        const d = id < dynByVar.length ? dynByVar[id] : null;
        if (d != null) { d.reset(); d.setError(<u8>activation.num[id], p - <usize>n, n); }
        break;
      }
    }
  }
  const tag = machine.eval(program, activation);
  writeValue(set.program(program), tag, machine.resultA, machine.resultB);
  return tag;
}

function writeValue(prog: CelProgram, tag: u8, a: i64, b: i32): void {
  putU8(tag);
  if (isError(tag)) {
    const scratch = new ArrayBuffer(512);
    const n = writeCelErrorMessage(tag, <usize>a, b, changetype<usize>(scratch), 512);
    putU32(<u32>n);
    putBytes(changetype<usize>(scratch), n);
    return;
  }
  switch (tag) {
    case T_BOOL: case T_INT: case T_UINT: case T_DOUBLE: putI64(a); break;
    case T_STRING: putU32(<u32>b); putBytes(<usize>a, b); break;
    case T_LIST: {
      putU32(<u32>b);
      for (let i = 0; i < b; i++) {
        const k = prog.listElems[<i32>a + i];
        writeValue(prog, prog.constTag[k], prog.constA[k], prog.constB[k]);
      }
      break;
    }
    case T_OBJECT: case T_ARRAY: putU32(<u32>b); break;
    case T_NULL: break;
  }
}

/**
 * Re-evaluates `program` n times on the variables of the last run() (documents already extracted), resetting
 * nothing but the VM: a measurement of evaluation alone, without the JavaScript boundary.
 */
export function repeat(program: i32, n: i32): i32 {
  const machine = vm!;
  let tag: u8 = 0;
  for (let i = 0; i < n; i++) tag = machine.eval(program, activation);
  return tag;
}
