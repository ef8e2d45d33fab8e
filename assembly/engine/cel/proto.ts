// Protobuf field extraction for request.grpc.message paths. One pass over the message (recursing only into
// the nested messages a path goes through, so recursion depth is bounded by MAX_PROTO_DEPTH), proto3
// semantics: an absent scalar reads as its default, the last occurrence of a scalar wins, occurrences of a
// nested message merge. Truncated or garbage input is an E_BODY error with a reason, never a trap.

import {
  CelProgramSet, PT_DOUBLE, PT_FLOAT, PT_INT64, PT_UINT64, PT_INT32, PT_FIXED64, PT_FIXED32, PT_BOOL, PT_STRING,
  PT_MESSAGE, PT_UINT32, PT_ENUM, PT_SFIXED32, PT_SFIXED64, PT_SINT32, PT_SINT64, protoWireType,
} from "./program";
import { CelSlot, T_BOOL, T_INT, T_UINT, T_DOUBLE, T_STRING, E_BODY, StaticText } from "./value";
import { validUtf8, bytesEqual } from "./utf8";
import { formatInteger } from "./number";

const R_VARINT = new StaticText("malformed varint in protobuf message");
const R_TRUNCATED = new StaticText("truncated protobuf message");
const R_WIRE = new StaticText("unexpected wire type for protobuf field");
const R_TAG = new StaticText("invalid protobuf field tag");
const R_GROUP = new StaticText("unbalanced group in protobuf message");
const R_UTF8 = new StaticText("protobuf string field is not utf-8");

const OK: i32 = 0;

/**
 * Extraction state for the proto paths of one message variable. Paths carry the gRPC method they were
 * compiled for; decode() reads only the paths of the request's method, the others answer "absent".
 */
export class ProtoResults {
  private readonly set: CelProgramSet;
  readonly root: i32;

  // Trie nodes: one root per distinct method, children by field number.
  private nField: StaticArray<u32> = new StaticArray<u32>(0);
  private nType: StaticArray<u8> = new StaticArray<u8>(0);
  private nFirstChild: StaticArray<i32> = new StaticArray<i32>(0);
  private nNextSibling: StaticArray<i32> = new StaticArray<i32>(0);
  private nPath: StaticArray<i32> = new StaticArray<i32>(0);
  /** Method roots: node index and method bytes. */
  private methodRoot: StaticArray<i32> = new StaticArray<i32>(0);
  private methodPtr: StaticArray<usize> = new StaticArray<usize>(0);
  private methodLen: StaticArray<i32> = new StaticArray<i32>(0);
  private pathNode: StaticArray<i32> = new StaticArray<i32>(0);
  private pathMethod: StaticArray<i32> = new StaticArray<i32>(0);

  // Per request.
  private seen: StaticArray<bool> = new StaticArray<bool>(0);
  private vTag: StaticArray<u8> = new StaticArray<u8>(0);
  private vA: StaticArray<i64> = new StaticArray<i64>(0);
  private vB: StaticArray<i32> = new StaticArray<i32>(0);
  private activeMethod: i32 = -1;
  private failed: bool = false;
  private errPtr: usize = 0;
  private errLen: i32 = 0;
  private readonly errBuf: StaticArray<u8> = new StaticArray<u8>(96);
  private errField: u32 = 0;

  constructor(set: CelProgramSet, root: i32) {
    this.set = set;
    this.root = root;
    const pp = set.proto;
    const field = new Array<u32>(); const type = new Array<u8>(); const first = new Array<i32>();
    const next = new Array<i32>(); const pathOf = new Array<i32>();
    const mRoot = new Array<i32>(); const mPtr = new Array<usize>(); const mLen = new Array<i32>();
    this.pathNode = new StaticArray<i32>(pp.count);
    this.pathMethod = new StaticArray<i32>(pp.count);
    for (let p = 0; p < pp.count; p++) {
      this.pathNode[p] = -1;
      this.pathMethod[p] = -1;
      if (<i32>pp.root[p] != root) continue;
      let m = 0;
      for (; m < mRoot.length; m++) if (bytesEqual(mPtr[m], mLen[m], pp.methodPtr[p], pp.methodLen[p])) break;
      if (m == mRoot.length) {
        mRoot.push(field.length); mPtr.push(pp.methodPtr[p]); mLen.push(pp.methodLen[p]);
        field.push(0); type.push(PT_MESSAGE); first.push(-1); next.push(-1); pathOf.push(-1);
      }
      let node = mRoot[m];
      for (let s = 0; s < pp.segCount[p]; s++) {
        const si = pp.segStart[p] + s;
        let c = first[node];
        // The same field number may be named with two types only through two different methods' messages,
        // which live under different roots; within one root a number has one type.
        while (c >= 0 && field[c] != pp.fieldNumber[si]) c = next[c];
        if (c < 0) {
          c = field.length;
          field.push(pp.fieldNumber[si]); type.push(pp.fieldType[si]); first.push(-1); next.push(first[node]);
          pathOf.push(-1);
          first[node] = c;
        }
        node = c;
      }
      pathOf[node] = p;
      this.pathNode[p] = node;
      this.pathMethod[p] = m;
    }
    this.nField = toStatic<u32>(field); this.nType = toStatic<u8>(type); this.nFirstChild = toStatic<i32>(first);
    this.nNextSibling = toStatic<i32>(next); this.nPath = toStatic<i32>(pathOf);
    this.methodRoot = toStatic<i32>(mRoot); this.methodPtr = toStatic<usize>(mPtr); this.methodLen = toStatic<i32>(mLen);
    const n = field.length;
    this.seen = new StaticArray<bool>(n);
    this.vTag = new StaticArray<u8>(n);
    this.vA = new StaticArray<i64>(n);
    this.vB = new StaticArray<i32>(n);
  }

  /** Forgets the last request: every path answers "absent" until decode()/setError(). */
  reset(): void {
    this.activeMethod = -1;
    this.failed = false;
  }

  /** Whether any path was compiled for this gRPC method (":path", e.g. "/pkg.Service/Method"). */
  wantsMethod(ptr: usize, len: i32): bool { return this.findMethod(ptr, len) >= 0; }

  private findMethod(ptr: usize, len: i32): i32 {
    for (let m = 0; m < this.methodRoot.length; m++) {
      if (bytesEqual(this.methodPtr[m], this.methodLen[m], ptr, len)) return m;
    }
    return -1;
  }

  /** The message cannot be read (gRPC framing, body limit): every path of `method` answers this error. */
  setError(methodPtr: usize, methodLen: i32, detailPtr: usize, detailLen: i32): void {
    this.activeMethod = this.findMethod(methodPtr, methodLen);
    this.failed = true;
    this.errPtr = detailPtr;
    this.errLen = detailLen;
  }

  /**
   * Decodes the message at [ptr, ptr+len) (the unframed bytes) for the paths of `method`. Returns false
   * when the message is malformed (read() then answers an E_BODY error with the reason).
   */
  decode(methodPtr: usize, methodLen: i32, ptr: usize, len: i32): bool {
    const m = this.findMethod(methodPtr, methodLen);
    this.activeMethod = m;
    this.failed = false;
    this.errField = 0;
    if (m < 0) return true;
    const rootNode = this.methodRoot[m];
    this.clear(rootNode);
    const r = this.decodeMessage(ptr, ptr + <usize>len, rootNode);
    if (r != OK) {
      this.failed = true;
      this.formatError(r == 1 ? R_VARINT : r == 2 ? R_TRUNCATED : r == 3 ? R_WIRE : r == 4 ? R_TAG : r == 5 ? R_GROUP : R_UTF8);
      return false;
    }
    return true;
  }

  /** Answers proto path `path` as CelActivation.protoField specifies. */
  read(path: i32, out: CelSlot): void {
    const node = path >= 0 && path < this.pathNode.length ? this.pathNode[path] : -1;
    if (node < 0 || this.activeMethod < 0 || this.pathMethod[path] != this.activeMethod) { out.setAbsent(); return; }
    if (this.failed) { out.setError(E_BODY, this.errPtr, this.errLen); return; }
    const t = this.nType[node];
    if (t == PT_MESSAGE) {
      out.setBool(false); // never read as a value (validation), only has()
      out.present = this.seen[node];
      return;
    }
    out.tag = this.vTag[node];
    out.a = this.vA[node];
    out.b = this.vB[node];
    // Implicit presence (proto3 singular scalars): has() is "differs from the default"; -0.0 counts as set,
    // since its bits are not the default's.
    out.present = this.set.proto.explicitPresence[path]
      ? this.seen[node]
      : t == PT_STRING ? this.vB[node] != 0 : this.vA[node] != 0;
  }

  private formatError(reason: StaticText): void {
    const buf = changetype<usize>(this.errBuf);
    let n = reason.len < 64 ? reason.len : 64;
    memory.copy(buf, reason.ptr, <usize>n);
    if (this.errField != 0) {
      const at = " (field ";
      for (let i = 0; i < at.length; i++) store<u8>(buf + <usize>(n + i), <u8>at.charCodeAt(i));
      n += at.length;
      n += formatInteger(<i64>this.errField, false, buf + <usize>n);
      store<u8>(buf + <usize>n, 0x29);
      n++;
    }
    this.errPtr = buf;
    this.errLen = n;
  }

  /** Resets `node`'s subtree to "absent, default value". */
  private clear(node: i32): void {
    this.seen[node] = false;
    this.setDefault(node);
    let c = this.nFirstChild[node];
    while (c >= 0) {
      this.clear(c);
      c = this.nNextSibling[c];
    }
  }

  private setDefault(node: i32): void {
    const t = this.nType[node];
    this.vA[node] = 0;
    this.vB[node] = 0;
    if (t == PT_STRING) this.vTag[node] = T_STRING;
    else if (t == PT_BOOL) this.vTag[node] = T_BOOL;
    else if (t == PT_DOUBLE || t == PT_FLOAT) this.vTag[node] = T_DOUBLE;
    else if (t == PT_UINT64 || t == PT_UINT32 || t == PT_FIXED64 || t == PT_FIXED32) this.vTag[node] = T_UINT;
    else this.vTag[node] = T_INT;
  }

  // Varint reader state (single-threaded).
  private vp: usize = 0;
  private vv: u64 = 0;

  /** Reads a varint at vp (< end) into vv; 0 on success, 1 malformed, 2 truncated. */
  private varint(end: usize): i32 {
    let p = this.vp;
    let v: u64 = 0;
    for (let shift: u64 = 0; shift < 70; shift += 7) {
      if (p >= end) return 2;
      const b = <u64>load<u8>(p);
      p++;
      if (shift == 63 && b > 1) return 1;
      v |= (b & 0x7f) << shift;
      if ((b & 0x80) == 0) {
        this.vp = p;
        this.vv = v;
        return 0;
      }
    }
    return 1;
  }

  private decodeMessage(start: usize, end: usize, node: i32): i32 {
    this.vp = start;
    while (this.vp < end) {
      let r = this.varint(end);
      if (r != 0) return r;
      const key = this.vv;
      const wire = <i32>(key & 7);
      const num = key >> 3;
      if (num < 1 || num > 536870911) return 4;
      const fieldNum = <u32>num;
      // Find the tracked child for this field number, if any.
      let c = this.nFirstChild[node];
      while (c >= 0 && this.nField[c] != fieldNum) c = this.nNextSibling[c];
      if (c < 0) {
        r = this.skip(wire, fieldNum, end);
        if (r != 0) return r;
        continue;
      }
      const t = this.nType[c];
      if (wire != protoWireType(t)) { this.errField = fieldNum; return 3; }
      if (wire == 0) {
        r = this.varint(end);
        if (r != 0) { this.errField = fieldNum; return r; }
        const v = this.vv;
        this.seen[c] = true;
        if (t == PT_INT32 || t == PT_ENUM) { this.vTag[c] = T_INT; this.vA[c] = <i64><i32><u32>v; }
        else if (t == PT_INT64) { this.vTag[c] = T_INT; this.vA[c] = <i64>v; }
        else if (t == PT_UINT32) { this.vTag[c] = T_UINT; this.vA[c] = <i64><u64><u32>v; }
        else if (t == PT_UINT64) { this.vTag[c] = T_UINT; this.vA[c] = <i64>v; }
        else if (t == PT_BOOL) { this.vTag[c] = T_BOOL; this.vA[c] = v != 0 ? 1 : 0; }
        else if (t == PT_SINT32) {
          const u = <u32>v;
          this.vTag[c] = T_INT; this.vA[c] = <i64>(<i32>(u >>> 1) ^ -(<i32>(u & 1)));
        } else {
          this.vTag[c] = T_INT; this.vA[c] = <i64>(v >>> 1) ^ -(<i64>(v & 1));
        }
      } else if (wire == 1) {
        if (end - this.vp < 8) { this.errField = fieldNum; return 2; }
        const v = load<u64>(this.vp);
        this.vp += 8;
        this.seen[c] = true;
        if (t == PT_DOUBLE) { this.vTag[c] = T_DOUBLE; this.vA[c] = <i64>v; }
        else if (t == PT_FIXED64) { this.vTag[c] = T_UINT; this.vA[c] = <i64>v; }
        else { this.vTag[c] = T_INT; this.vA[c] = <i64>v; }
      } else if (wire == 5) {
        if (end - this.vp < 4) { this.errField = fieldNum; return 2; }
        const v = load<u32>(this.vp);
        this.vp += 4;
        this.seen[c] = true;
        if (t == PT_FLOAT) { this.vTag[c] = T_DOUBLE; this.vA[c] = reinterpret<i64>(<f64>reinterpret<f32>(v)); }
        else if (t == PT_FIXED32) { this.vTag[c] = T_UINT; this.vA[c] = <i64><u64>v; }
        else { this.vTag[c] = T_INT; this.vA[c] = <i64><i32>v; }
      } else {
        r = this.varint(end);
        if (r != 0) { this.errField = fieldNum; return r; }
        const l = this.vv;
        if (l > <u64>(end - this.vp)) { this.errField = fieldNum; return 2; }
        const p = this.vp;
        const q = p + <usize>l;
        this.seen[c] = true;
        if (t == PT_STRING) {
          if (!validUtf8(p, <i32>l)) { this.errField = fieldNum; return 6; }
          this.vTag[c] = T_STRING; this.vA[c] = <i64>p; this.vB[c] = <i32>l;
        } else {
          // A nested message on the way to some path: occurrences merge, so no reset here.
          r = this.decodeMessage(p, q, c);
          if (r != 0) return r;
        }
        this.vp = q;
      }
    }
    return this.vp == end ? OK : 2;
  }

  /** Skips one untracked field of wire type `wire` at vp. */
  private skip(wire: i32, fieldNum: u32, end: usize): i32 {
    if (wire == 0) return this.varint(end);
    if (wire == 1) { if (end - this.vp < 8) return 2; this.vp += 8; return 0; }
    if (wire == 5) { if (end - this.vp < 4) return 2; this.vp += 4; return 0; }
    if (wire == 2) {
      const r = this.varint(end);
      if (r != 0) return r;
      if (this.vv > <u64>(end - this.vp)) return 2;
      this.vp += <usize>this.vv;
      return 0;
    }
    if (wire == 3) {
      // A group: skip until the matching end-group tag, tracking nesting without recursion.
      let depth = 1;
      while (depth > 0) {
        if (this.vp >= end) return 2;
        let r = this.varint(end);
        if (r != 0) return r;
        const k = this.vv;
        const w = <i32>(k & 7);
        if (w == 3) { depth++; continue; }
        if (w == 4) {
          depth--;
          if (depth == 0 && <u32>(k >> 3) != fieldNum) return 5;
          continue;
        }
        if (w == 0) r = this.varint(end);
        else if (w == 1) { if (end - this.vp < 8) return 2; this.vp += 8; }
        else if (w == 5) { if (end - this.vp < 4) return 2; this.vp += 4; }
        else if (w == 2) {
          r = this.varint(end);
          if (r == 0) { if (this.vv > <u64>(end - this.vp)) return 2; this.vp += <usize>this.vv; }
        } else return 3;
        if (r != 0) return r;
      }
      return 0;
    }
    return wire == 4 ? 5 : 3;
  }
}

function toStatic<T>(a: Array<T>): StaticArray<T> {
  const s = new StaticArray<T>(a.length);
  for (let i = 0; i < a.length; i++) s[i] = a[i];
  return s;
}
