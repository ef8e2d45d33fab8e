// One-pass JSON extraction of the dyn paths a policy reads (request.json..., jwt.claims...). No DOM: the
// parser validates the whole document (RFC 8259) while it walks a trie of the wanted paths, and records only
// the values at trie nodes. Strings without escapes point into the document; decoded strings go to the arena.
//
// Values match JSON.parse followed by CEL field selection: numbers are doubles (correctly rounded), \u escapes
// are decoded. A document that mainstream readers read differently where the filter reads it is refused
// (JSON_FAIL_AMBIGUOUS) rather than read one way:
// - a repeated key in an object on a wanted path (JSON.parse and Python keep the last, gjson and simdjson's
//   on-demand API the first, Gson fails), or anywhere in an object whose own value is wanted (its size and keys);
// - a lone surrogate escape in a decoded string (JSON.parse keeps the lone UTF-16 unit, Go and TextEncoder write
//   U+FFFD, a UTF-8 comparison can hold neither);
// - a wanted integer literal beyond 2^53-1 (JSON.parse rounds 9007199254740993 to ...992, Python and Go's
//   json.Number keep it exact) and a wanted number beyond the double range (1e400: Infinity for JSON.parse, an
//   error for Go).
// Text that is not plain UTF-8 is refused too (JSON_FAIL_UTF8): a byte-order mark (body-parser's decoder drops
// it, JSON.parse fails on it) and invalid UTF-8 (decoders substitute U+FFFD).

import { CelProgramSet, SEG_KEY, SEG_INDEX } from "./program";
import { CelArena } from "./arena";
import {
  CelSlot, T_NULL, T_BOOL, T_DOUBLE, T_STRING, T_OBJECT, T_ARRAY, E_BODY, E_LIMIT, StaticText,
} from "./value";
import { parseDouble, parsedDouble, formatInteger } from "./number";
import { encodeUtf8, bytesEqual } from "./utf8";

export const JSON_MAX_DEPTH: i32 = 512;

const DOC_NOT_RUN: i32 = 0;
const DOC_OK: i32 = 1;
const DOC_ERROR: i32 = 2;
const DOC_ABSENT: i32 = 3;

const F_OBJ: u8 = 1;
const F_ARR: u8 = 2;

const R_EMPTY = new StaticText("empty json document");
const R_DEPTH = new StaticText("json nested too deeply");
const R_TRAILING = new StaticText("unexpected data after the json value");
const R_END = new StaticText("unexpected end of json");
const R_VALUE = new StaticText("expected a json value");
const R_STRING = new StaticText("invalid json string");
const R_UTF8 = new StaticText("json string is not utf-8");
const R_ESCAPE = new StaticText("invalid escape in json string");
const R_NUMBER = new StaticText("invalid json number");
const R_COLON = new StaticText("expected ':' in json object");
const R_KEY = new StaticText("expected a string key in json object");
const R_SEP_OBJ = new StaticText("expected ',' or '}' in json object");
const R_SEP_ARR = new StaticText("expected ',' or ']' in json array");
const R_LITERAL = new StaticText("invalid json literal");
const R_ARENA = new StaticText("scratch arena exhausted while decoding json");
const R_MEMBERS = new StaticText("too many json members to collect");
const R_KEYS = new StaticText("too many json keys to check for duplicates");
const R_BOM = new StaticText("json body starts with a byte-order mark");
const R_DUPLICATE = new StaticText("duplicate key in json object");
const R_SURROGATE = new StaticText("lone surrogate escape in json string");
const R_BIG_INTEGER = new StaticText("json integer beyond 2^53-1 is not exact as a double");
const R_RANGE = new StaticText("json number out of the double range");

/** DynResults.failure after extract() returned false. */
export const JSON_FAIL_SYNTAX: u8 = 0;
/** Not plain UTF-8: a byte-order mark, invalid UTF-8 in a string. */
export const JSON_FAIL_UTF8: u8 = 1;
/** Valid JSON that readers read differently where the filter reads it (see the top of this file). */
export const JSON_FAIL_AMBIGUOUS: u8 = 2;
/** A per-request limit of ours (arena, members, keys), not the client's error. */
export const JSON_FAIL_LIMIT: u8 = 3;

/** Slots of the duplicate-key set (a power of two, twice the keys it holds). */
const KEY_SLOTS: i32 = 2048;

/**
 * Extraction state for the dyn paths of one root variable (request.json or jwt.claims) of a program set.
 * Built once at load (the trie and all per-request arrays are preallocated); extract() once per request.
 */
export class DynResults {
  private readonly set: CelProgramSet;
  private readonly arena: CelArena;
  readonly root: i32;

  // Trie of the wanted paths, numbered in depth-first order so that a subtree is [n, end[n]).
  private nodeCount: i32 = 1;
  private nKind: StaticArray<u8> = new StaticArray<u8>(0);
  private nKeyPtr: StaticArray<usize> = new StaticArray<usize>(0);
  private nKeyLen: StaticArray<i32> = new StaticArray<i32>(0);
  private nIndex: StaticArray<i64> = new StaticArray<i64>(0);
  private nFirstChild: StaticArray<i32> = new StaticArray<i32>(0);
  private nNextSibling: StaticArray<i32> = new StaticArray<i32>(0);
  private nEnd: StaticArray<i32> = new StaticArray<i32>(0);
  private nDepth: StaticArray<i32> = new StaticArray<i32>(0);
  private nParent: StaticArray<i32> = new StaticArray<i32>(0);
  private nMembers: StaticArray<bool> = new StaticArray<bool>(0);
  /** The node is where some dyn path ends: its value itself (a size, keys, a comparison) may be read. */
  private nIsPath: StaticArray<bool> = new StaticArray<bool>(0);
  private pathNode: StaticArray<i32> = new StaticArray<i32>(0);

  // Per request, per node.
  private seen: StaticArray<bool> = new StaticArray<bool>(0);
  private vTag: StaticArray<u8> = new StaticArray<u8>(0);
  private vA: StaticArray<i64> = new StaticArray<i64>(0);
  private vB: StaticArray<i32> = new StaticArray<i32>(0);
  private memHead: StaticArray<i32> = new StaticArray<i32>(0);
  private memTail: StaticArray<i32> = new StaticArray<i32>(0);
  private memCount: StaticArray<i32> = new StaticArray<i32>(0);

  // Member pool (linked per node, since a nested collected container interleaves with its parent's).
  private readonly memCap: i32;
  private memTop: i32 = 0;
  private mTag: StaticArray<u8> = new StaticArray<u8>(0);
  private mA: StaticArray<i64> = new StaticArray<i64>(0);
  private mB: StaticArray<i32> = new StaticArray<i32>(0);
  private mNext: StaticArray<i32> = new StaticArray<i32>(0);
  // Sequential access cursor for member(): DYN_IN walks 0, 1, 2, ...
  private curNode: i32 = -1;
  private curIndex: i32 = 0;
  private curMember: i32 = -1;

  // Parser frames.
  private fKind: StaticArray<u8> = new StaticArray<u8>(JSON_MAX_DEPTH);
  private fNode: StaticArray<i32> = new StaticArray<i32>(JSON_MAX_DEPTH);
  private fCount: StaticArray<i32> = new StaticArray<i32>(JSON_MAX_DEPTH);
  private fMember: StaticArray<i32> = new StaticArray<i32>(JSON_MAX_DEPTH);
  /** Per open object: its serial in the duplicate-key set when every key is checked, else 0. */
  private fKeys: StaticArray<u32> = new StaticArray<u32>(JSON_MAX_DEPTH);

  // Duplicate-key set for objects whose own value is wanted: open addressing, entries valid when their stamp
  // equals `keyGen` (bumped per document, so nothing is cleared per request). Allocated only when some path exists.
  private keyGen: u32 = 0;
  private keyObjects: u32 = 0;
  private keyCount: i32 = 0;
  private kStamp: StaticArray<u32> = new StaticArray<u32>(0);
  private kObject: StaticArray<u32> = new StaticArray<u32>(0);
  private kPtr: StaticArray<usize> = new StaticArray<usize>(0);
  private kLen: StaticArray<i32> = new StaticArray<i32>(0);

  private state: i32 = DOC_NOT_RUN;
  /** Why the last extract() failed (JSON_FAIL_*). */
  failure: u8 = JSON_FAIL_SYNTAX;
  private errKind: u8 = E_BODY;
  private errPtr: usize = 0;
  private errLen: i32 = 0;
  private readonly errBuf: StaticArray<u8> = new StaticArray<u8>(96);

  // Scanner outputs.
  private doc: usize = 0;
  private len: i32 = 0;
  private pos: i32 = 0;
  private strStart: i32 = 0;
  private strEnd: i32 = 0;
  private strEscaped: bool = false;

  /** `memberCapacity` bounds the array elements and object keys collected for `in` per request. */
  constructor(set: CelProgramSet, root: i32, arena: CelArena, memberCapacity: i32 = 1024) {
    this.set = set;
    this.root = root;
    this.arena = arena;
    this.memCap = memberCapacity;
    const d = set.dyn;
    // Build the trie with insertion-order ids first.
    const kind = new Array<u8>(); const keyPtr = new Array<usize>(); const keyLen = new Array<i32>();
    const idx = new Array<i64>(); const parent = new Array<i32>(); const members = new Array<bool>();
    const firstChild = new Array<i32>(); const nextSibling = new Array<i32>();
    kind.push(SEG_KEY); keyPtr.push(0); keyLen.push(0); idx.push(0); parent.push(-1); members.push(false);
    firstChild.push(-1); nextSibling.push(-1);
    const pathNodeTmp = new StaticArray<i32>(d.count);
    for (let p = 0; p < d.count; p++) {
      pathNodeTmp[p] = -1;
      if (<i32>d.root[p] != root) continue;
      let node = 0;
      for (let s = 0; s < d.segCount[p]; s++) {
        const si = d.segStart[p] + s;
        let c = firstChild[node];
        let found = -1;
        while (c >= 0) {
          if (kind[c] == d.segKind[si] && (d.segKind[si] == SEG_KEY
            ? bytesEqual(keyPtr[c], keyLen[c], d.segKeyPtr[si], d.segKeyLen[si])
            : idx[c] == d.segIndex[si])) { found = c; break; }
          c = nextSibling[c];
        }
        if (found < 0) {
          found = kind.length;
          kind.push(d.segKind[si]); keyPtr.push(d.segKeyPtr[si]); keyLen.push(d.segKeyLen[si]);
          idx.push(d.segIndex[si]); parent.push(node); members.push(false); firstChild.push(-1);
          nextSibling.push(firstChild[node]);
          firstChild[node] = found;
        }
        node = found;
      }
      pathNodeTmp[p] = node;
      if (d.members[p]) members[node] = true;
    }
    // Renumber depth-first (iteratively: the trie depth is bounded but the code should not recurse).
    const n = kind.length;
    this.nodeCount = n;
    const order = new StaticArray<i32>(n);
    const newId = new StaticArray<i32>(n);
    const stack = new StaticArray<i32>(n);
    let sp = 0;
    let k = 0;
    stack[sp++] = 0;
    while (sp > 0) {
      const v = stack[--sp];
      newId[v] = k;
      order[k++] = v;
      let c = firstChild[v];
      while (c >= 0) { stack[sp++] = c; c = nextSibling[c]; }
    }
    this.nKind = new StaticArray<u8>(n); this.nKeyPtr = new StaticArray<usize>(n); this.nKeyLen = new StaticArray<i32>(n);
    this.nIndex = new StaticArray<i64>(n); this.nFirstChild = new StaticArray<i32>(n); this.nNextSibling = new StaticArray<i32>(n);
    this.nEnd = new StaticArray<i32>(n); this.nDepth = new StaticArray<i32>(n); this.nParent = new StaticArray<i32>(n);
    this.nMembers = new StaticArray<bool>(n);
    for (let i = 0; i < n; i++) {
      const v = order[i];
      this.nKind[i] = kind[v]; this.nKeyPtr[i] = keyPtr[v]; this.nKeyLen[i] = keyLen[v]; this.nIndex[i] = idx[v];
      this.nParent[i] = parent[v] < 0 ? -1 : newId[parent[v]];
      this.nMembers[i] = members[v];
      this.nFirstChild[i] = firstChild[v] < 0 ? -1 : newId[firstChild[v]];
      this.nNextSibling[i] = nextSibling[v] < 0 ? -1 : newId[nextSibling[v]];
      this.nDepth[i] = i == 0 ? 0 : this.nDepth[this.nParent[i]] + 1;
    }
    // Subtree ends: in depth-first order a node's subtree ends where the next node of depth <= its own starts.
    for (let i = 0; i < n; i++) {
      let e = i + 1;
      while (e < n && this.nDepth[e] > this.nDepth[i]) e++;
      this.nEnd[i] = e;
    }
    this.pathNode = new StaticArray<i32>(d.count);
    this.nIsPath = new StaticArray<bool>(n);
    let anyPath = false;
    for (let p = 0; p < d.count; p++) {
      this.pathNode[p] = pathNodeTmp[p] < 0 ? -1 : newId[pathNodeTmp[p]];
      if (this.pathNode[p] >= 0) {
        this.nIsPath[this.pathNode[p]] = true;
        anyPath = true;
      }
    }
    if (anyPath) {
      this.kStamp = new StaticArray<u32>(KEY_SLOTS); this.kObject = new StaticArray<u32>(KEY_SLOTS);
      this.kPtr = new StaticArray<usize>(KEY_SLOTS); this.kLen = new StaticArray<i32>(KEY_SLOTS);
    }
    this.seen = new StaticArray<bool>(n); this.vTag = new StaticArray<u8>(n); this.vA = new StaticArray<i64>(n);
    this.vB = new StaticArray<i32>(n); this.memHead = new StaticArray<i32>(n); this.memTail = new StaticArray<i32>(n);
    this.memCount = new StaticArray<i32>(n);
    const cap = memberCapacity > 0 ? memberCapacity : 0;
    this.mTag = new StaticArray<u8>(cap); this.mA = new StaticArray<i64>(cap); this.mB = new StaticArray<i32>(cap);
    this.mNext = new StaticArray<i32>(cap);
  }

  /** Forgets the last request's document (read() then answers "absent" until extract/setError). */
  reset(): void {
    this.state = DOC_NOT_RUN;
    this.memTop = 0;
    this.curNode = -1;
  }

  /** True once extract/setAbsent/setError ran for this request. */
  get done(): bool { return this.state != DOC_NOT_RUN; }

  /** The document does not exist for this request (e.g. no verified JWT). */
  setAbsent(): void { this.state = DOC_ABSENT; }

  /** The document cannot be read (body over the limit, ...): every path answers this error. */
  setError(kind: u8, detailPtr: usize, detailLen: i32): void {
    this.state = DOC_ERROR;
    this.errKind = kind;
    this.errPtr = detailPtr;
    this.errLen = detailLen;
  }

  /** Parses the document at [ptr, ptr+len) and records every wanted path. Returns false when malformed. */
  extract(ptr: usize, len: i32): bool {
    this.doc = ptr;
    this.len = len;
    this.pos = 0;
    this.memTop = 0;
    this.curNode = -1;
    for (let i = 0; i < this.nodeCount; i++) unchecked(this.seen[i] = false);
    this.keyGen++;
    if (this.keyGen == 0) {
      // 2^32 documents later: clear rather than let a stale stamp match.
      for (let i = 0; i < this.kStamp.length; i++) unchecked(this.kStamp[i] = 0);
      this.keyGen = 1;
    }
    this.keyObjects = 0;
    this.keyCount = 0;
    // A byte-order mark (UTF-8 EF BB BF, UTF-16 FF FE / FE FF): body-parser's decoder drops the UTF-8 one and
    // parses the rest, JSON.parse fails on it. Either way the text is not what the filter would read.
    if (len >= 2) {
      const b0 = this.byteAt(0);
      const b1 = this.byteAt(1);
      if ((b0 == 0xef && b1 == 0xbb && len >= 3 && this.byteAt(2) == 0xbf) || (b0 == 0xff && b1 == 0xfe) ||
        (b0 == 0xfe && b1 == 0xff)) return this.fail(R_BOM);
    }
    const ok = this.parse();
    if (ok) this.state = DOC_OK;
    return ok;
  }

  /** Answers dyn path `path` as CelActivation.dynPath specifies. */
  read(path: i32, out: CelSlot): void {
    if (this.state == DOC_ERROR) { out.setError(this.errKind, this.errPtr, this.errLen); return; }
    if (this.state != DOC_OK) { out.setAbsent(); return; }
    const node = path >= 0 && path < this.pathNode.length ? this.pathNode[path] : -1;
    if (node < 0) { out.setAbsent(); return; }
    if (this.seen[node]) {
      const t = this.vTag[node];
      if (t == T_OBJECT || t == T_ARRAY) out.setContainer(t, path, this.vB[node]);
      else { out.tag = t; out.a = this.vA[node]; out.b = this.vB[node]; }
      return;
    }
    // The first unseen node on the way down is the missing segment; its parent resolved.
    let n = node;
    while (this.nParent[n] > 0 && !this.seen[this.nParent[n]]) n = this.nParent[n];
    out.setMissing(this.nDepth[n] - 1);
  }

  /** Members collected for `path` (array elements or object keys); -1 if none were collected. */
  memberCount(path: i32): i32 {
    if (this.state != DOC_OK) return -1;
    const node = path >= 0 && path < this.pathNode.length ? this.pathNode[path] : -1;
    if (node < 0 || !this.nMembers[node] || !this.seen[node]) return -1;
    const t = this.vTag[node];
    if (t != T_OBJECT && t != T_ARRAY) return -1;
    return this.memCount[node];
  }

  member(path: i32, index: i32, out: CelSlot): void {
    const node = this.pathNode[path];
    let m: i32;
    if (this.curNode == node && index == this.curIndex + 1 && this.curMember >= 0) {
      m = this.mNext[this.curMember];
    } else {
      m = this.memHead[node];
      for (let i = 0; i < index && m >= 0; i++) m = this.mNext[m];
    }
    this.curNode = node;
    this.curIndex = index;
    this.curMember = m;
    if (m < 0) { out.setNull(); return; }
    out.tag = this.mTag[m];
    out.a = this.mA[m];
    out.b = this.mB[m];
  }

  // --- parser -----------------------------------------------------------------------------------------------

  private fail(reason: StaticText): bool {
    // "<reason> at byte <n>" in a buffer of our own: the arena may be the thing that ran out.
    const buf = changetype<usize>(this.errBuf);
    let n = reason.len < 64 ? reason.len : 64;
    memory.copy(buf, reason.ptr, <usize>n);
    const at = " at byte ";
    for (let i = 0; i < at.length; i++) store<u8>(buf + <usize>(n + i), <u8>at.charCodeAt(i));
    n += at.length;
    n += formatInteger(this.pos, false, buf + <usize>n);
    const limit = reason == R_ARENA || reason == R_MEMBERS || reason == R_KEYS;
    this.failure = limit ? JSON_FAIL_LIMIT
      : reason == R_UTF8 || reason == R_BOM ? JSON_FAIL_UTF8
      : reason == R_DUPLICATE || reason == R_SURROGATE || reason == R_BIG_INTEGER || reason == R_RANGE
        ? JSON_FAIL_AMBIGUOUS
      : JSON_FAIL_SYNTAX;
    this.setError(limit ? E_LIMIT : E_BODY, buf, n);
    return false;
  }

  // @ts-ignore: decorator
  @inline private byteAt(i: i32): u32 { return <u32>load<u8>(this.doc + <usize>i); }

  private skipWs(): void {
    while (this.pos < this.len) {
      const c = this.byteAt(this.pos);
      if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) return;
      this.pos++;
    }
  }

  private child(node: i32, key: bool, keyPtr: usize, keyLen: i32, index: i64): i32 {
    if (node < 0) return -1;
    let c = this.nFirstChild[node];
    while (c >= 0) {
      if (key) {
        if (this.nKind[c] == SEG_KEY && bytesEqual(this.nKeyPtr[c], this.nKeyLen[c], keyPtr, keyLen)) return c;
      } else if (this.nKind[c] == SEG_INDEX && this.nIndex[c] == index) {
        return c;
      }
      c = this.nNextSibling[c];
    }
    return -1;
  }

  /** Starts recording a new value at `node`: an earlier value (a repeated key) and its subtree are forgotten. */
  private enter(node: i32): void {
    const end = this.nEnd[node];
    for (let i = node; i < end; i++) unchecked(this.seen[i] = false);
    this.seen[node] = true;
    this.memHead[node] = -1;
    this.memTail[node] = -1;
    this.memCount[node] = 0;
  }

  /** Appends a member to collecting node `node`; returns its index or -1 when the pool is full. */
  private addMember(node: i32, tag: u8, a: i64, b: i32): i32 {
    const m = this.memTop;
    if (m >= this.memCap) return -1;
    this.memTop = m + 1;
    this.mTag[m] = tag; this.mA[m] = a; this.mB[m] = b; this.mNext[m] = -1;
    const tail = this.memTail[node];
    if (tail < 0) this.memHead[node] = m; else this.mNext[tail] = m;
    this.memTail[node] = m;
    this.memCount[node]++;
    return m;
  }

  private parse(): bool {
    let depth = 0;
    this.skipWs();
    if (this.pos >= this.len) return this.fail(R_EMPTY);
    let target = 0; // trie node the next value lands on (-1: not wanted)
    for (;;) {
      // --- a value ---
      if (this.pos >= this.len) return this.fail(R_END);
      const c = this.byteAt(this.pos);
      // The enclosing array collects its elements for `in`.
      const collect = depth > 0 && this.fKind[depth - 1] == F_ARR && this.fNode[depth - 1] >= 0
        && this.nMembers[this.fNode[depth - 1]];
      if (target >= 0) this.enter(target);
      if (c == 0x7b || c == 0x5b) {
        if (depth >= JSON_MAX_DEPTH) return this.fail(R_DEPTH);
        const isObj = c == 0x7b;
        let mem = -1;
        if (collect) {
          mem = this.addMember(this.fNode[depth - 1], isObj ? T_OBJECT : T_ARRAY, 0, 0);
          if (mem < 0) return this.fail(R_MEMBERS);
        }
        this.fKind[depth] = isObj ? F_OBJ : F_ARR;
        this.fNode[depth] = target;
        this.fCount[depth] = 0;
        this.fMember[depth] = mem;
        this.fKeys[depth] = isObj && target >= 0 && this.nIsPath[target] ? ++this.keyObjects : 0;
        depth++;
        if (target >= 0) { this.vTag[target] = isObj ? T_OBJECT : T_ARRAY; this.vA[target] = 0; this.vB[target] = 0; }
        this.pos++;
        this.skipWs();
        if (this.pos >= this.len) return this.fail(R_END);
        const d = this.byteAt(this.pos);
        if ((isObj && d == 0x7d) || (!isObj && d == 0x5d)) {
          this.pos++;
          depth = this.close(depth);
        } else if (isObj) {
          target = this.key(depth);
          if (target == -2) return false;
          continue;
        } else {
          target = this.child(this.fNode[depth - 1], false, 0, 0, 0);
          continue;
        }
      } else {
        // A scalar.
        let tag: u8 = T_NULL;
        let a: i64 = 0;
        let b: i32 = 0;
        if (c == 0x22) {
          if (!this.scanString()) return false;
          if (target >= 0 || collect) {
            if (!this.decodeString()) return false;
          }
          tag = T_STRING; a = <i64>this.strPtr; b = this.strLen;
        } else if (c == 0x74) {
          if (!this.literal("true")) return false;
          tag = T_BOOL; a = 1;
        } else if (c == 0x66) {
          if (!this.literal("false")) return false;
          tag = T_BOOL; a = 0;
        } else if (c == 0x6e) {
          if (!this.literal("null")) return false;
        } else if (c == 0x2d || (c >= 0x30 && c <= 0x39)) {
          const start = this.pos;
          if (!this.scanNumber()) return false;
          if (target >= 0 || collect) {
            if (!this.exactNumber(start)) return false;
            tag = T_DOUBLE; a = reinterpret<i64>(parsedDouble);
          } else {
            tag = T_DOUBLE;
          }
        } else {
          return this.fail(R_VALUE);
        }
        if (target >= 0) { this.vTag[target] = tag; this.vA[target] = a; this.vB[target] = b; }
        if (collect && this.addMember(this.fNode[depth - 1], tag, a, b) < 0) return this.fail(R_MEMBERS);
      }
      // --- after a value: separators and closers, possibly several levels ---
      for (;;) {
        this.skipWs();
        if (depth == 0) {
          if (this.pos != this.len) return this.fail(R_TRAILING);
          return true;
        }
        const top = depth - 1;
        this.fCount[top]++;
        if (this.pos >= this.len) return this.fail(R_END);
        const s = this.byteAt(this.pos);
        const isObj = this.fKind[top] == F_OBJ;
        if (s == 0x2c) {
          this.pos++;
          this.skipWs();
          if (isObj) {
            target = this.key(depth);
            if (target == -2) return false;
          } else {
            target = this.child(this.fNode[top], false, 0, 0, <i64>this.fCount[top]);
          }
          break;
        }
        if ((isObj && s == 0x7d) || (!isObj && s == 0x5d)) {
          this.pos++;
          depth = this.close(depth);
          continue;
        }
        return this.fail(isObj ? R_SEP_OBJ : R_SEP_ARR);
      }
    }
    // Not reached: every path through the loop returns. The compiler's flow analysis needs a return here.
    return false;
  }

  /** Closes the innermost container; records its size. Returns the new depth. */
  private close(depth: i32): i32 {
    const top = depth - 1;
    const node = this.fNode[top];
    const count = this.fCount[top];
    if (node >= 0) this.vB[node] = count;
    const mem = this.fMember[top];
    if (mem >= 0) this.mB[mem] = count;
    return top;
  }

  /** Parses `"key" :` inside the object at depth-1; returns the child node for it, -1, or -2 on error. */
  private key(depth: i32): i32 {
    if (this.pos >= this.len || this.byteAt(this.pos) != 0x22) { this.fail(R_KEY); return -2; }
    const keyStart = this.pos;
    if (!this.scanString()) return -2;
    const top = depth - 1;
    const node = this.fNode[top];
    let result = -1;
    if (node >= 0) {
      if (!this.decodeString()) return -2;
      result = this.child(node, true, this.strPtr, this.strLen, 0);
      // A wanted key seen before in this object (enter() cleared the flags when the object began), or any
      // repeated key of an object whose own value is wanted.
      const serial = this.fKeys[top];
      if ((result >= 0 && this.seen[result]) || (serial != 0 && !this.addKey(serial))) {
        if (this.keyCount <= this.memCap) this.pos = keyStart;
        return this.keyFailure();
      }
      if (this.nMembers[node] && this.addMember(node, T_STRING, <i64>this.strPtr, this.strLen) < 0) {
        this.fail(R_MEMBERS);
        return -2;
      }
    }
    this.skipWs();
    if (this.pos >= this.len || this.byteAt(this.pos) != 0x3a) { this.fail(R_COLON); return -2; }
    this.pos++;
    this.skipWs();
    return result;
  }

  private keyFailure(): i32 {
    this.fail(this.keyCount > this.memCap ? R_KEYS : R_DUPLICATE);
    return -2;
  }

  /**
   * Adds the last decoded string as a key of object `serial`; false when the object already has it or the set
   * is full (keyCount then exceeds memCap).
   */
  private addKey(serial: u32): bool {
    if (this.keyCount >= this.memCap || this.keyCount >= KEY_SLOTS / 2) {
      this.keyCount = this.memCap + 1;
      return false;
    }
    const p = this.strPtr;
    const n = this.strLen;
    // FNV-1a over the decoded key and the object serial.
    let h: u32 = 2166136261 ^ serial;
    h *= 16777619;
    for (let i = 0; i < n; i++) {
      h ^= <u32>load<u8>(p + <usize>i);
      h *= 16777619;
    }
    let slot = <i32>(h & <u32>(KEY_SLOTS - 1));
    const gen = this.keyGen;
    while (unchecked(this.kStamp[slot]) == gen) {
      if (unchecked(this.kObject[slot]) == serial &&
        bytesEqual(unchecked(this.kPtr[slot]), unchecked(this.kLen[slot]), p, n)) return false;
      slot = (slot + 1) & (KEY_SLOTS - 1);
    }
    unchecked(this.kStamp[slot] = gen);
    unchecked(this.kObject[slot] = serial);
    unchecked(this.kPtr[slot] = p);
    unchecked(this.kLen[slot] = n);
    this.keyCount++;
    return true;
  }

  /**
   * Parses the number just scanned at [start, pos) into parsedDouble; fails when readers would not all read the
   * same double: an integer literal (no fraction, no exponent) beyond 2^53-1, or a value beyond the double range.
   */
  private exactNumber(start: i32): bool {
    const end = this.pos;
    let digits = 0;
    let integer = true;
    let first = start;
    if (this.byteAt(first) == 0x2d) first++;
    for (let i = first; i < end; i++) {
      const c = this.byteAt(i);
      if (c - 0x30 < 10) digits++;
      else { integer = false; break; }
    }
    if (integer && digits >= 16) {
      // JSON integers have no leading zeros, so more digits is a larger magnitude; 16 digits compare as text.
      let big = digits > 16;
      if (!big) {
        const limit = "9007199254740991";
        for (let i = 0; i < 16; i++) {
          const c = this.byteAt(first + i);
          const l = <u32>limit.charCodeAt(i);
          if (c != l) { big = c > l; break; }
        }
      }
      if (big) { this.pos = start; return this.fail(R_BIG_INTEGER); }
    }
    parseDouble(this.doc + <usize>start, end - start);
    if (!isFinite(parsedDouble)) { this.pos = start; return this.fail(R_RANGE); }
    return true;
  }

  private literal(word: string): bool {
    const n = word.length;
    if (this.len - this.pos < n) return this.fail(R_LITERAL);
    for (let i = 0; i < n; i++) {
      if (this.byteAt(this.pos + i) != <u32>word.charCodeAt(i)) return this.fail(R_LITERAL);
    }
    this.pos += n;
    return true;
  }

  /** -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
  private scanNumber(): bool {
    let p = this.pos;
    const len = this.len;
    if (this.byteAt(p) == 0x2d) p++;
    if (p >= len) { this.pos = p; return this.fail(R_NUMBER); }
    let c = this.byteAt(p);
    if (c == 0x30) {
      p++;
    } else if (c >= 0x31 && c <= 0x39) {
      while (p < len && this.byteAt(p) - 0x30 < 10) p++;
    } else {
      this.pos = p;
      return this.fail(R_NUMBER);
    }
    if (p < len && this.byteAt(p) == 0x2e) {
      p++;
      const s = p;
      while (p < len && this.byteAt(p) - 0x30 < 10) p++;
      if (p == s) { this.pos = p; return this.fail(R_NUMBER); }
    }
    if (p < len) {
      c = this.byteAt(p);
      if (c == 0x65 || c == 0x45) {
        p++;
        if (p < len && (this.byteAt(p) == 0x2b || this.byteAt(p) == 0x2d)) p++;
        const s = p;
        while (p < len && this.byteAt(p) - 0x30 < 10) p++;
        if (p == s) { this.pos = p; return this.fail(R_NUMBER); }
      }
    }
    this.pos = p;
    return true;
  }

  /** Validates a string at pos (the opening quote); sets strStart/strEnd (contents) and strEscaped. */
  private scanString(): bool {
    let p = this.pos + 1;
    const len = this.len;
    this.strStart = p;
    this.strEscaped = false;
    while (p < len) {
      const c = this.byteAt(p);
      if (c == 0x22) {
        this.strEnd = p;
        this.pos = p + 1;
        return true;
      }
      if (c == 0x5c) {
        this.strEscaped = true;
        if (p + 1 >= len) break;
        const e = this.byteAt(p + 1);
        if (e == 0x75) {
          if (p + 6 > len) break;
          for (let k = 2; k < 6; k++) {
            if (hexValue(this.byteAt(p + k)) < 0) { this.pos = p; return this.fail(R_ESCAPE); }
          }
          p += 6;
        } else if (e == 0x22 || e == 0x5c || e == 0x2f || e == 0x62 || e == 0x66 || e == 0x6e || e == 0x72 || e == 0x74) {
          p += 2;
        } else {
          this.pos = p;
          return this.fail(R_ESCAPE);
        }
        continue;
      }
      if (c < 0x20) { this.pos = p; return this.fail(R_STRING); }
      if (c < 0x80) { p++; continue; }
      const n = utf8SequenceLength(this.doc, p, len);
      if (n == 0) { this.pos = p; return this.fail(R_UTF8); }
      p += n;
    }
    this.pos = len;
    return this.fail(R_END);
  }

  private strPtr: usize = 0;
  private strLen: i32 = 0;

  /** Makes the last scanned string available as (strPtr, strLen): in place, or unescaped into the arena. */
  private decodeString(): bool {
    const start = this.strStart;
    const end = this.strEnd;
    if (!this.strEscaped) {
      this.strPtr = this.doc + <usize>start;
      this.strLen = end - start;
      return true;
    }
    // Unescaping never lengthens: \uXXXX (6 bytes) yields at most 3 bytes, a pair (12) 4.
    const cap = end - start;
    const out = this.arena.alloc(cap);
    if (out == 0 && cap > 0) return this.fail(R_ARENA);
    let w = 0;
    let p = start;
    while (p < end) {
      const c = this.byteAt(p);
      if (c != 0x5c) { store<u8>(out + <usize>w, <u8>c); w++; p++; continue; }
      const e = this.byteAt(p + 1);
      if (e == 0x75) {
        let cp = hex4(this.doc, p + 2);
        p += 6;
        if (cp >= 0xd800 && cp <= 0xdfff) {
          // Only a high surrogate followed by a low one is a character; anything else is a lone surrogate.
          let lo: u32 = 0;
          if (cp <= 0xdbff && p + 6 <= end && this.byteAt(p) == 0x5c && this.byteAt(p + 1) == 0x75) {
            lo = hex4(this.doc, p + 2);
          }
          if (lo < 0xdc00 || lo > 0xdfff) {
            this.arena.shrinkLast(out, cap, 0);
            this.pos = p - 6;
            return this.fail(R_SURROGATE);
          }
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          p += 6;
        }
        w += encodeUtf8(cp, out + <usize>w);
        continue;
      }
      let ch: u32 = e;
      if (e == 0x62) ch = 0x08;
      else if (e == 0x66) ch = 0x0c;
      else if (e == 0x6e) ch = 0x0a;
      else if (e == 0x72) ch = 0x0d;
      else if (e == 0x74) ch = 0x09;
      store<u8>(out + <usize>w, <u8>ch);
      w++;
      p += 2;
    }
    this.arena.shrinkLast(out, cap, w);
    this.strPtr = out;
    this.strLen = w;
    return true;
  }
}

function hexValue(c: u32): i32 {
  if (c - 0x30 < 10) return <i32>(c - 0x30);
  const l = c | 0x20;
  if (l - 0x61 < 6) return <i32>(l - 0x61 + 10);
  return -1;
}

function hex4(doc: usize, p: i32): u32 {
  let v: u32 = 0;
  for (let k = 0; k < 4; k++) v = (v << 4) | <u32>hexValue(<u32>load<u8>(doc + <usize>(p + k)));
  return v;
}

/** Length of the valid UTF-8 sequence starting at a byte >= 0x80, or 0 when it is not valid. */
export function utf8SequenceLength(base: usize, p: i32, len: i32): i32 {
  const c = <u32>load<u8>(base + <usize>p);
  let need = 0;
  let cp: u32 = 0;
  let min: u32 = 0;
  if (c >= 0xc2 && c <= 0xdf) { need = 1; cp = c & 0x1f; min = 0x80; }
  else if (c >= 0xe0 && c <= 0xef) { need = 2; cp = c & 0x0f; min = 0x800; }
  else if (c >= 0xf0 && c <= 0xf4) { need = 3; cp = c & 0x07; min = 0x10000; }
  else return 0;
  if (p + need >= len) return 0;
  for (let k = 1; k <= need; k++) {
    const cc = <u32>load<u8>(base + <usize>(p + k));
    if ((cc & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return need + 1;
}
