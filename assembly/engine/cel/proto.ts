// Protobuf field extraction for request.grpc.message paths, and the check that the message is one every
// mainstream decoder reads the same way (docs/cel.md, "Which protobuf messages the filter reads").
//
// An authorization decision on a message is only as good as the agreement between the filter's reading and the
// application's. Decoders differ on everything the encoding leaves open: protobufjs (inside @grpc/proto-loader)
// ignores the wire type of a field it knows, reads tags and lengths as 32-bit varints and skips the extra bytes
// of a longer one, and replaces a singular message that appears twice where protobuf-es and the spec merge; a
// decoder may keep or drop unknown fields, take the first or last oneof member, truncate an out-of-range int32.
// So the filter reads only messages in which none of that can happen, and rejects every other one with a reason:
// - every varint (tag, length, value) is canonical: as short as its value allows, at most 10 bytes, at most 64
//   bits; tags and lengths fit in 32 bits; field numbers are 1..2^29-1;
// - every field number is one its message declares (unknown fields are rejected: a field the filter does not
//   know may be one the application's newer schema decodes, and a nested message there can be read differently),
//   with the wire type its type has (repeated numbers: packed or not, as the spec lets decoders accept both);
// - no groups (wire types 3 and 4); no singular field, scalar or message, more than once; at most one member of
//   a oneof; proto2 required fields present;
// - bool is 0 or 1; int32, enum, uint32 and sint32 values are within 32 bits, a closed enum's one it declares;
//   strings are valid UTF-8;
// - the whole message is checked, nested messages included (to MAX_MESSAGE_DEPTH levels), whether or not a
//   condition reads them: decoders that share one reader for nested messages let a malformed one change where
//   the outer message continues.
// With every singular field present at most once, "last wins" and "merge" agree, and a path reads one value.
//
// One pass, linear in the message (a field lookup is a binary search in its message's schema); nothing is
// allocated per request: "seen" marks are instance stamps in per-level arrays sized at load.

import { CelProgramSet } from "./program";
import {
  ProtoSchema, PT_DOUBLE, PT_FLOAT, PT_INT64, PT_UINT64, PT_INT32, PT_FIXED64, PT_FIXED32, PT_BOOL, PT_STRING,
  PT_MESSAGE, PT_UINT32, PT_ENUM, PT_SINT32, FIELD_REPEATED, FIELD_REQUIRED, protoWireType,
} from "./schema";
import { CelSlot, T_BOOL, T_INT, T_UINT, T_DOUBLE, T_STRING, E_BODY, StaticText } from "./value";
import { validUtf8, bytesEqual } from "./utf8";
import { formatInteger } from "./number";
import { WIRE_NONCANONICAL, WIRE_OVERLONG, WIRE_TRUNCATED, WireCursor } from "../wire";

/** Nesting levels of a message the filter reads (the request message is level 1); protobufjs and protobuf-es stop at 100. */
export const MAX_MESSAGE_DEPTH: i32 = 64;

const OK: i32 = 0;
const R_VARINT: i32 = WIRE_OVERLONG;
const R_TRUNCATED: i32 = WIRE_TRUNCATED;
const R_WIRE: i32 = 3;
const R_TAG: i32 = 4;
const R_GROUP: i32 = 5;
const R_UTF8: i32 = 6;
const R_NONCANONICAL: i32 = WIRE_NONCANONICAL;
const R_UNKNOWN: i32 = 8;
const R_REPEATED: i32 = 9;
const R_ONEOF: i32 = 10;
const R_RANGE: i32 = 11;
const R_DEPTH: i32 = 12;
const R_REQUIRED: i32 = 13;
const R_ENUM: i32 = 14;

/** Reasons, indexed by R_* (each at most 64 bytes: the field number follows). */
const REASONS: StaticArray<StaticText> = [
  new StaticText(""),
  new StaticText("malformed varint in protobuf message"),
  new StaticText("truncated protobuf message"),
  new StaticText("unexpected wire type for protobuf field"),
  new StaticText("invalid protobuf field tag"),
  new StaticText("protobuf groups are not accepted"),
  new StaticText("protobuf string field is not utf-8"),
  new StaticText("non-canonical varint in protobuf message"),
  new StaticText("unknown protobuf field"),
  new StaticText("singular protobuf field occurs more than once"),
  new StaticText("more than one member of a protobuf oneof"),
  new StaticText("protobuf value out of range for its type"),
  new StaticText("protobuf message nested too deeply"),
  new StaticText("required protobuf field missing"),
  new StaticText("value not declared by its closed protobuf enum"),
];

/** Instance stamps restart before they could wrap within one request (a message has fewer instances than bytes). */
const STAMP_LIMIT: u32 = 0xF0000000;

/**
 * Extraction state for the proto paths of one message variable. Paths carry the gRPC method they were
 * compiled for; decode() reads only the paths of the request's method, the others answer "absent".
 */
export class ProtoResults {
  private readonly set: CelProgramSet;
  private readonly sc: ProtoSchema;
  readonly root: i32;

  // Trie nodes of the paths: one root per method with paths, one child per field a path selects.
  private nType: StaticArray<u8> = new StaticArray<u8>(0);
  private nFirstChild: StaticArray<i32> = new StaticArray<i32>(0);
  private nNextSibling: StaticArray<i32> = new StaticArray<i32>(0);
  /** Message nodes: where their children by schema field start in `childOf` (one slot per field); else -1. */
  private nChildBase: StaticArray<i32> = new StaticArray<i32>(0);
  private childOf: StaticArray<i32> = new StaticArray<i32>(0);
  /** Root node of each schema method, -1 when no path of this variable reads it. */
  private methodRoot: StaticArray<i32> = new StaticArray<i32>(0);
  private pathNode: StaticArray<i32> = new StaticArray<i32>(0);

  // "Seen in this message instance" marks: level L's message has its fields, then its oneofs, at levelBase[L].
  private levelBase: StaticArray<i32> = new StaticArray<i32>(MAX_MESSAGE_DEPTH + 1);
  private stamps: StaticArray<u32> = new StaticArray<u32>(0);
  private instance: u32 = 0;

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
    this.sc = set.schema;
    this.root = root;
    const sc = set.schema;
    const pp = set.proto;
    const type = new Array<u8>(); const first = new Array<i32>(); const next = new Array<i32>();
    const childBase = new Array<i32>(); const childOf = new Array<i32>();
    this.methodRoot = new StaticArray<i32>(sc.methodCount);
    for (let m = 0; m < sc.methodCount; m++) this.methodRoot[m] = -1;
    this.pathNode = new StaticArray<i32>(pp.count);
    for (let p = 0; p < pp.count; p++) {
      this.pathNode[p] = -1;
      if (<i32>pp.root[p] != root) continue;
      const m = pp.method[p];
      if (this.methodRoot[m] < 0) {
        this.methodRoot[m] = type.length;
        newNode(type, first, next, childBase, childOf, PT_MESSAGE, sc.methodMessage[m], sc);
      }
      let node = this.methodRoot[m];
      let msg = sc.methodMessage[m];
      for (let s = 0; s < pp.segCount[p]; s++) {
        const f = pp.fieldIndex[pp.segStart[p] + s];
        // INVARIANT: the path's fields were resolved through the schema at load: `f` is a field of `msg`, the
        // message of `node`, and all but the last are messages.
        const slot = childBase[node] + (f - sc.msgFieldStart[msg]);
        msg = sc.fieldMessage[f];
        let c = childOf[slot];
        if (c < 0) {
          c = type.length;
          newNode(type, first, next, childBase, childOf, sc.fieldType[f], sc.fieldMessage[f], sc);
          childOf[slot] = c;
          next[c] = first[node];
          first[node] = c;
        }
        node = c;
      }
      this.pathNode[p] = node;
    }
    this.nType = toStatic<u8>(type); this.nFirstChild = toStatic<i32>(first); this.nNextSibling = toStatic<i32>(next);
    this.nChildBase = toStatic<i32>(childBase); this.childOf = toStatic<i32>(childOf);
    const n = type.length;
    this.seen = new StaticArray<bool>(n);
    this.vTag = new StaticArray<u8>(n);
    this.vA = new StaticArray<i64>(n);
    this.vB = new StaticArray<i32>(n);
    this.sizeLevels();
  }

  /**
   * Sizes the per-level mark arrays: level L holds the largest field+oneof count of the messages that can occur
   * at nesting level L below a method this variable's paths read.
   */
  private sizeLevels(): void {
    const sc = this.sc;
    const mc = sc.messageCount;
    let cur = new StaticArray<bool>(mc);
    let any = false;
    for (let m = 0; m < sc.methodCount; m++) {
      if (this.methodRoot[m] >= 0) { cur[sc.methodMessage[m]] = true; any = true; }
    }
    let total = 0;
    for (let level = 0; level < MAX_MESSAGE_DEPTH; level++) {
      this.levelBase[level] = total;
      if (!any) continue;
      const nextLevel = new StaticArray<bool>(mc);
      let size = 0;
      any = false;
      for (let msg = 0; msg < mc; msg++) {
        if (!cur[msg]) continue;
        const slots = sc.msgFieldCount[msg] + sc.msgOneofCount[msg];
        if (slots > size) size = slots;
        const start = sc.msgFieldStart[msg];
        for (let f = start; f < start + sc.msgFieldCount[msg]; f++) {
          const child = sc.fieldMessage[f];
          if (child >= 0) { nextLevel[child] = true; any = true; }
        }
      }
      total += size;
      cur = nextLevel;
    }
    this.levelBase[MAX_MESSAGE_DEPTH] = total;
    this.stamps = new StaticArray<u32>(total);
  }

  /** Forgets the last request: every path answers "absent" until decode()/setError(). */
  reset(): void {
    this.activeMethod = -1;
    this.failed = false;
  }

  /** Whether any path was compiled for this gRPC method (":path", e.g. "/pkg.Service/Method"). */
  wantsMethod(ptr: usize, len: i32): bool { return this.findMethod(ptr, len) >= 0; }

  private findMethod(ptr: usize, len: i32): i32 {
    const sc = this.sc;
    for (let m = 0; m < sc.methodCount; m++) {
      if (this.methodRoot[m] >= 0 && bytesEqual(sc.methodPtr[m], sc.methodLen[m], ptr, len)) return m;
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
   * when the message is malformed or not one the filter reads (read() then answers an E_BODY error with the
   * reason).
   */
  decode(methodPtr: usize, methodLen: i32, ptr: usize, len: i32): bool {
    const m = this.findMethod(methodPtr, methodLen);
    this.activeMethod = m;
    this.failed = false;
    this.errField = 0;
    if (m < 0) return true;
    const rootNode = this.methodRoot[m];
    this.clear(rootNode);
    if (this.instance >= STAMP_LIMIT) {
      for (let i = 0; i < this.stamps.length; i++) unchecked(this.stamps[i] = 0);
      this.instance = 0;
    }
    this.cur.pos = ptr;
    const r = this.decodeMessage(ptr + <usize>len, this.sc.methodMessage[m], 0, rootNode);
    if (r != OK) {
      this.failed = true;
      this.formatError(REASONS[r]);
      return false;
    }
    return true;
  }

  /** Answers proto path `path` as CelActivation.protoField specifies. */
  read(path: i32, out: CelSlot): void {
    const node = path >= 0 && path < this.pathNode.length ? this.pathNode[path] : -1;
    if (node < 0 || this.activeMethod < 0 || this.set.proto.method[path] != this.activeMethod) { out.setAbsent(); return; }
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

  // Reader state (single-threaded): the cursor and the last varint (engine/wire.ts).
  private readonly cur: WireCursor = new WireCursor();

  /** Checks that varint value `v` is in the range of type `t` (the 32-bit types and bool). */
  private static inRange(t: u8, v: u64): bool {
    if (t == PT_INT32 || t == PT_ENUM) {
      // Negative int32 values are sign-extended to 64 bits on the wire.
      const hi = <i64>v >> 31;
      return hi == 0 || hi == -1;
    }
    if (t == PT_UINT32 || t == PT_SINT32) return (v >> 32) == 0;
    if (t == PT_BOOL) return v <= 1;
    return true;
  }

  /**
   * Checks the message of schema message `msg` at [cur.pos, end), nesting level `level`, recording the fields of trie
   * node `node` (-1: no path reads inside this message). Leaves cur.pos at `end`.
   */
  private decodeMessage(end: usize, msg: i32, level: i32, node: i32): i32 {
    if (level >= MAX_MESSAGE_DEPTH) return R_DEPTH;
    const sc = this.sc;
    const stamp = ++this.instance;
    const base = unchecked(this.levelBase[level]);
    const fStart = unchecked(sc.msgFieldStart[msg]);
    const fCount = unchecked(sc.msgFieldCount[msg]);
    const childBase = node >= 0 ? unchecked(this.nChildBase[node]) : -1;
    let required = 0;
    while (this.cur.pos < end) {
      this.errField = 0;
      let r = this.cur.varint(end);
      if (r != OK) return r;
      const key = this.cur.value;
      const wire = <i32>(key & 7);
      const num = key >> 3;
      if (key > 0xffffffff || num == 0 || wire == 6 || wire == 7) return R_TAG;
      const fieldNum = <u32>num;
      this.errField = fieldNum;
      if (wire == 3 || wire == 4) return R_GROUP;
      const f = sc.findField(msg, fieldNum);
      if (f < 0) return R_UNKNOWN;
      const t = unchecked(sc.fieldType[f]);
      const flags = unchecked(sc.fieldFlags[f]);
      const want = protoWireType(t);
      if (wire != want) {
        // A repeated number may arrive packed (wire type 2) or not: decoders accept both, the spec says so.
        if ((flags & FIELD_REPEATED) != 0 && wire == 2) {
          r = this.packed(f, want, end);
          if (r != OK) return r;
          continue;
        }
        return R_WIRE;
      }
      if ((flags & FIELD_REPEATED) == 0) {
        const slot = base + (f - fStart);
        if (unchecked(this.stamps[slot]) == stamp) return R_REPEATED;
        unchecked(this.stamps[slot] = stamp);
        const oneof = unchecked(sc.fieldOneof[f]);
        if (oneof >= 0) {
          const oslot = base + fCount + oneof;
          if (unchecked(this.stamps[oslot]) == stamp) return R_ONEOF;
          unchecked(this.stamps[oslot] = stamp);
        }
        if ((flags & FIELD_REQUIRED) != 0) required++;
      }
      // Repeated fields are never on a path (validation), so a child here occurs at most once.
      const c = childBase >= 0 ? unchecked(this.childOf[childBase + (f - fStart)]) : -1;
      if (wire == 0) {
        r = this.cur.varint(end);
        if (r != OK) return r;
        const v = this.cur.value;
        if (!ProtoResults.inRange(t, v)) return R_RANGE;
        if (!this.declared(f, v)) return R_ENUM;
        if (c >= 0) this.recordVarint(c, t, v);
      } else if (wire == 1) {
        if (end - this.cur.pos < 8) return R_TRUNCATED;
        const v = load<u64>(this.cur.pos);
        this.cur.pos += 8;
        if (c >= 0) {
          this.seen[c] = true;
          this.vA[c] = <i64>v;
          this.vTag[c] = t == PT_DOUBLE ? T_DOUBLE : t == PT_FIXED64 ? T_UINT : T_INT;
        }
      } else if (wire == 5) {
        if (end - this.cur.pos < 4) return R_TRUNCATED;
        const v = load<u32>(this.cur.pos);
        this.cur.pos += 4;
        if (c >= 0) {
          this.seen[c] = true;
          if (t == PT_FLOAT) { this.vTag[c] = T_DOUBLE; this.vA[c] = reinterpret<i64>(<f64>reinterpret<f32>(v)); }
          else if (t == PT_FIXED32) { this.vTag[c] = T_UINT; this.vA[c] = <i64><u64>v; }
          else { this.vTag[c] = T_INT; this.vA[c] = <i64><i32>v; }
        }
      } else {
        r = this.cur.varint(end);
        if (r != OK) return r;
        const l = this.cur.value;
        if (l > <u64>(end - this.cur.pos)) return R_TRUNCATED;
        const p = this.cur.pos;
        const q = p + <usize>l;
        if (t == PT_STRING) {
          if (!validUtf8(p, <i32>l)) return R_UTF8;
          if (c >= 0) { this.seen[c] = true; this.vTag[c] = T_STRING; this.vA[c] = <i64>p; this.vB[c] = <i32>l; }
        } else if (t == PT_MESSAGE) {
          if (c >= 0) this.seen[c] = true;
          r = this.decodeMessage(q, unchecked(sc.fieldMessage[f]), level + 1, c);
          if (r != OK) return r;
        }
        // PT_BYTES: any bytes.
        this.cur.pos = q;
      }
    }
    this.errField = 0;
    if (required != unchecked(sc.msgRequired[msg])) {
      // Name the first one missing (only on failure: a scan of the message's fields).
      for (let f = fStart; f < fStart + fCount; f++) {
        if ((sc.fieldFlags[f] & FIELD_REQUIRED) != 0 && this.stamps[base + (f - fStart)] != stamp) {
          this.errField = sc.fieldNumber[f];
          break;
        }
      }
      return R_REQUIRED;
    }
    return OK;
  }

  private recordVarint(c: i32, t: u8, v: u64): void {
    this.seen[c] = true;
    if (t == PT_INT32 || t == PT_ENUM) { this.vTag[c] = T_INT; this.vA[c] = <i64><i32><u32>v; }
    else if (t == PT_INT64) { this.vTag[c] = T_INT; this.vA[c] = <i64>v; }
    else if (t == PT_UINT32 || t == PT_UINT64) { this.vTag[c] = T_UINT; this.vA[c] = <i64>v; }
    else if (t == PT_BOOL) { this.vTag[c] = T_BOOL; this.vA[c] = <i64>v; }
    else if (t == PT_SINT32) {
      const u = <u32>v;
      this.vTag[c] = T_INT; this.vA[c] = <i64>(<i32>(u >>> 1) ^ -(<i32>(u & 1)));
    } else {
      this.vTag[c] = T_INT; this.vA[c] = <i64>(v >>> 1) ^ -(<i64>(v & 1));
    }
  }

  /**
   * A value of a closed enum must be one it declares: protobuf-es keeps any other among the unknown fields, where
   * protobufjs reads the number. Open enums take any int32.
   */
  private declared(f: i32, v: u64): bool {
    const e = unchecked(this.sc.fieldEnum[f]);
    return e < 0 || this.sc.enumDeclares(e, <i32>v);
  }

  /** A packed run of repeated schema field `f` (unpacked wire type `want`): whole elements, each valid. */
  private packed(f: i32, want: i32, end: usize): i32 {
    const t = unchecked(this.sc.fieldType[f]);
    let r = this.cur.varint(end);
    if (r != OK) return r;
    const l = this.cur.value;
    if (l > <u64>(end - this.cur.pos)) return R_TRUNCATED;
    const q = this.cur.pos + <usize>l;
    if (want == 1 || want == 5) {
      if (l % (want == 1 ? 8 : 4) != 0) return R_TRUNCATED;
      this.cur.pos = q;
      return OK;
    }
    while (this.cur.pos < q) {
      r = this.cur.varint(q);
      if (r != OK) return r;
      if (!ProtoResults.inRange(t, this.cur.value)) return R_RANGE;
      if (!this.declared(f, this.cur.value)) return R_ENUM;
    }
    return OK;
  }
}

function newNode(
  type: Array<u8>, first: Array<i32>, next: Array<i32>, childBase: Array<i32>, childOf: Array<i32>, t: u8, msg: i32,
  sc: ProtoSchema,
): void {
  type.push(t); first.push(-1); next.push(-1);
  if (t == PT_MESSAGE) {
    childBase.push(childOf.length);
    for (let i = 0; i < sc.msgFieldCount[msg]; i++) childOf.push(-1);
  } else {
    childBase.push(-1);
  }
}

function toStatic<T>(a: Array<T>): StaticArray<T> {
  const s = new StaticArray<T>(a.length);
  for (let i = 0; i < a.length; i++) s[i] = a[i];
  return s;
}
