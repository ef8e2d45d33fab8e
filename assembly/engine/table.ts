// PolicyTable: decoding and validation of the binary policy table (docs/table-format.md, version 1). Every
// offset, count and range is checked once here, at load; after that the request path reads records without
// bounds checks. Errors are strings that say what is wrong and where.

import { bytesCompare, bytesEqual, hashBytes, hashFinish, HASH_SEED, hasUpperAscii, uninitializedBuffer } from "./bytes";
import { crc32 } from "./crc32";
import { inflateRaw } from "./inflate";
import { PrincipalIndex } from "./index";

export const TAG_STRS: u32 = 1;
export const TAG_META: u32 = 2;
export const TAG_RULE: u32 = 3;
export const TAG_SRCC: u32 = 4;
export const TAG_OPCL: u32 = 5;
export const TAG_PRED: u32 = 6;
export const TAG_PATS: u32 = 7;
export const TAG_SCHM: u32 = 8;
export const TAG_SKEY: u32 = 9;
const TAG_COUNT = 9;

export const META_SIZE: u32 = 24;
export const RULE_SIZE: u32 = 40;
export const CLAUSE_SIZE: u32 = 8;
export const PRED_SIZE: u32 = 24;
export const PAT_SIZE: u32 = 12;
export const SCHM_SIZE: u32 = 16;
export const SKEY_SIZE: u32 = 8;

const RECORD_SIZE: StaticArray<u32> = [0, 1, 24, 40, 8, 8, 24, 12, 16, 8];
const SECTION_NAME: StaticArray<string> = ["", "STRS", "META", "RULE", "SRCC", "OPCL", "PRED", "PATS", "SCHM", "SKEY"];

export const ENVELOPE_SIZE: i32 = 24;
export const FLAG_DEFLATE: u32 = 1;
/** Records stored byte-planar (docs/table-format.md §2). */
export const FLAG_PLANAR: u32 = 2;
export const MAX_BODY_BYTES: u32 = 64 << 20;
export const MAX_RULES: u32 = 1 << 24;
export const MAX_RULE_ID_BYTES: u32 = 200;
/** "no expression" in RULE.expr. */
export const NO_EXPR: u32 = 0xffffffff;

export const enum Field {
  PRINCIPAL = 1,
  TRUST_DOMAIN = 2,
  ATTRIBUTE = 3,
  METHOD = 4,
  PATH = 5,
  HOST = 6,
  PORT = 7,
  HEADER = 8,
  SNI = 9,
}

export const enum Action {
  ALLOW = 0,
  DENY = 1,
  AUDIT = 2,
}

export const enum PatternKind {
  EXACT = 0,
  PREFIX = 1,
  SUFFIX = 2,
  PRESENT = 3,
  TEMPLATE = 4,
}

export const RULE_FLAG_DRY_RUN: u8 = 1;
export const PRED_FLAG_IGNORE_CASE: u8 = 1;

// Rule id characters: [A-Za-z0-9._:/\-\[\]#@] (they go into Envoy response details, which allow no spaces).
const ID_CHAR = new StaticArray<u8>(256);
function initIdChars(): void {
  const extra = "._:/-[]#@";
  for (let c = 0; c < 256; c++) {
    const ok = (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57);
    unchecked((ID_CHAR[c] = ok ? 1 : 0));
  }
  for (let i = 0; i < extra.length; i++) unchecked((ID_CHAR[extra.charCodeAt(i)] = 1));
}
initIdChars();

/** A decoded, validated, indexed policy table. Immutable once built. */
export class PolicyTable {
  /** The row-major body; every pointer below points into it. */
  body: ArrayBuffer;
  base: usize;
  bodyLen: u32;
  /** The envelope hash as 16 lower-case hex digits. */
  hashHex: string = "";
  strs: usize = 0;
  strsLen: u32 = 0;
  meta: usize = 0;
  rules: usize = 0;
  ruleCount: u32 = 0;
  srcc: usize = 0;
  srccCount: u32 = 0;
  opcl: usize = 0;
  opclCount: u32 = 0;
  preds: usize = 0;
  predCount: u32 = 0;
  pats: usize = 0;
  patCount: u32 = 0;
  schm: usize = 0;
  schemaCount: u32 = 0;
  skey: usize = 0;
  skeyCount: u32 = 0;
  defaultAction: u8 = 0;
  defaultKind: u8 = 0;
  /** Rules that are AUDIT or dry-run: their matches are reported, never decide. */
  shadowRuleCount: u32 = 0;
  /** Room for every shadow rule's index, used by one decision at a time. */
  shadowScratch: StaticArray<u32> = new StaticArray<u32>(0);
  /** Open-addressing map trust domain -> schema index + 1 (0 = empty slot). */
  schemaSlots: StaticArray<u32> = new StaticArray<u32>(0);
  index: PrincipalIndex | null = null;

  constructor(body: ArrayBuffer) {
    this.body = body;
    this.base = changetype<usize>(body);
    this.bodyLen = <u32>body.byteLength;
  }

  // Records. INVARIANT: validate() has checked every index and string range these accessors can reach.

  @inline strPtr(off: u32): usize {
    return this.strs + <usize>off;
  }

  @inline rule(r: u32): usize {
    return this.rules + <usize>(r * RULE_SIZE);
  }
  @inline ruleIdPtr(r: u32): usize {
    return this.strs + <usize>load<u32>(this.rule(r));
  }
  @inline ruleIdLen(r: u32): i32 {
    return <i32>load<u32>(this.rule(r), 4);
  }
  @inline ruleAction(r: u32): u32 {
    return <u32>load<u8>(this.rule(r), 8);
  }
  @inline ruleFlags(r: u32): u32 {
    return <u32>load<u8>(this.rule(r), 9);
  }
  /** AUDIT or dry-run: reported, never decides. */
  @inline ruleIsShadow(r: u32): bool {
    const rec = this.rule(r);
    return load<u8>(rec, 8) == <u8>Action.AUDIT || (load<u8>(rec, 9) & RULE_FLAG_DRY_RUN) != 0;
  }
  @inline srcClause(c: u32): usize {
    return this.srcc + <usize>(c * CLAUSE_SIZE);
  }
  @inline opClause(c: u32): usize {
    return this.opcl + <usize>(c * CLAUSE_SIZE);
  }
  @inline pred(p: u32): usize {
    return this.preds + <usize>(p * PRED_SIZE);
  }
  @inline pat(i: u32): usize {
    return this.pats + <usize>(i * PAT_SIZE);
  }
  @inline patValuePtr(i: u32): usize {
    return this.strs + <usize>load<u32>(this.pat(i), 4);
  }
  @inline patValueLen(i: u32): i32 {
    return <i32>load<u32>(this.pat(i), 8);
  }

  /** The rule's id as a GC string (explain and logs only). */
  ruleId(r: u32): string {
    return String.UTF8.decodeUnsafe(this.ruleIdPtr(r), <usize>this.ruleIdLen(r), false);
  }

  /** Finds the schema of a trust domain: its SCHM index, or -1. */
  findSchema(td: usize, tdLen: i32): i32 {
    const slots = this.schemaSlots;
    const cap = <u32>slots.length;
    if (cap == 0) return -1;
    let i = hashFinish(hashBytes(HASH_SEED, td, tdLen)) & (cap - 1);
    while (true) {
      const v = unchecked(slots[i]);
      if (v == 0) return -1;
      const rec = this.schm + <usize>((v - 1) * SCHM_SIZE);
      if (bytesEqual(this.strs + <usize>load<u32>(rec), <i32>load<u32>(rec, 4), td, tdLen)) return <i32>(v - 1);
      i = (i + 1) & (cap - 1);
    }
    return -1;
  }
}

/** The outcome of a load: a table, or what is wrong. */
export class TableResult {
  table: PolicyTable | null = null;
  error: string = "";
}

function fail(r: TableResult, msg: string): TableResult {
  r.error = msg;
  return r;
}

function hex32(v: u32): string {
  let s = "";
  for (let i = 7; i >= 0; i--) s += "0123456789abcdef".charAt((v >> (i * 4)) & 15);
  return s;
}

/**
 * Decodes an envelope (the base64-decoded plugin configuration), checks it, restores and validates the body
 * and builds the index. Errors start with "table: ".
 */
export function decodeEnvelope(ptr: usize, len: i32): TableResult {
  const r = new TableResult();
  if (len < ENVELOPE_SIZE) {
    return fail(r, "table: envelope is " + len.toString() + " bytes, shorter than its 24-byte header");
  }
  if (load<u8>(ptr) != 0x53 || load<u8>(ptr, 1) != 0x50 || load<u8>(ptr, 2) != 0x41 || load<u8>(ptr, 3) != 0x5a) {
    return fail(r, "table: bad magic (not a spiffe-authz policy table)");
  }
  const version = <u32>load<u16>(ptr, 4);
  if (version != 1) {
    return fail(r, "table: unsupported version " + version.toString() + " (this filter reads version 1)");
  }
  const flags = <u32>load<u16>(ptr, 6);
  if ((flags & ~(FLAG_DEFLATE | FLAG_PLANAR)) != 0) {
    return fail(r, "table: unknown envelope flags 0x" + hex32(flags & ~(FLAG_DEFLATE | FLAG_PLANAR)));
  }
  let hash = "";
  for (let i = 0; i < 8; i++) {
    const b = <u32>load<u8>(ptr + 8 + <usize>i);
    hash += "0123456789abcdef".charAt(b >> 4) + "0123456789abcdef".charAt(b & 15);
  }
  const bodyLen = load<u32>(ptr, 16);
  const crc = load<u32>(ptr, 20);
  if (bodyLen > MAX_BODY_BYTES) {
    return fail(r, "table: bodyLen " + bodyLen.toString() + " exceeds 64 MiB");
  }
  const payload = ptr + <usize>ENVELOPE_SIZE;
  const payloadLen = len - ENVELOPE_SIZE;
  if ((flags & FLAG_DEFLATE) == 0) {
    if (<u32>payloadLen != bodyLen) {
      return fail(r, "table: uncompressed payload is " + payloadLen.toString() + " bytes, bodyLen says " + bodyLen.toString());
    }
  } else if (<u64>bodyLen > <u64>payloadLen * 1032 + 64) {
    // DEFLATE cannot expand more than 1032:1: refuse before allocating what a hostile header asks for.
    return fail(r, "table: bodyLen " + bodyLen.toString() + " is more than " + payloadLen.toString() + " compressed bytes can hold");
  }
  const planar = (flags & FLAG_PLANAR) != 0;
  // Restoring planar records needs scratch memory as large as the largest section. Allocate it before the body:
  // AssemblyScript's allocator grows memory by at least its current size, so a scratch block requested after a
  // 10+ MB body would double the VM's memory for good (wasm memory never shrinks).
  let scratch: usize = 0;
  let scratchLen: u32 = 0;
  if (planar) {
    scratchLen = largestSection(payload, payloadLen, bodyLen, (flags & FLAG_DEFLATE) != 0);
    if (scratchLen > 0) scratch = heap.alloc(<usize>scratchLen);
  }
  // Every byte is written below (inflation must produce exactly bodyLen bytes), so no zeroing.
  const body = uninitializedBuffer(<i32>bodyLen);
  const base = changetype<usize>(body);
  if ((flags & FLAG_DEFLATE) != 0) {
    const err = inflateRaw(payload, payloadLen, base, <i32>bodyLen);
    if (err.length != 0) {
      if (scratch != 0) heap.free(scratch);
      return fail(r, "table: " + err);
    }
  } else {
    memory.copy(base, payload, <usize>bodyLen);
  }
  const t = new PolicyTable(body);
  t.hashHex = hash;
  // The CRC describes the row-major body: check it first, unless the records must be restored from planes
  // (which needs a checked directory) before it can be computed.
  if (!planar) {
    const e = crcProblem(base, bodyLen, crc);
    if (e.length != 0) return fail(r, e);
  }
  let err = readDirectory(t, planar, scratch, scratchLen);
  if (scratch != 0) heap.free(scratch);
  if (err.length != 0) return fail(r, "table: " + err);
  if (planar) {
    const e = crcProblem(base, bodyLen, crc);
    if (e.length != 0) return fail(r, e);
  }
  err = validate(t);
  if (err.length != 0) return fail(r, "table: " + err);
  t.index = PrincipalIndex.build(t);
  r.table = t;
  return r;
}

function crcProblem(base: usize, len: u32, expected: u32): string {
  const actual = crc32(base, <usize>len);
  if (actual == expected) return "";
  return "table: crc32 mismatch (envelope 0x" + hex32(expected) + ", body 0x" + hex32(actual) + ")";
}

// Section directory entries, filled by readDirectory.
const secOff = new StaticArray<u32>(TAG_COUNT + 1);
const secLen = new StaticArray<u32>(TAG_COUNT + 1);

/**
 * Reads and checks the section directory, then (for a byte-planar body) restores row-major records in place.
 */
function readDirectory(t: PolicyTable, planar: bool, scratch: usize, scratchLen: u32): string {
  const base = t.base;
  const bodyLen = t.bodyLen;
  if (bodyLen < 4) return "body is " + bodyLen.toString() + " bytes, too short for a section directory";
  const count = load<u32>(base);
  const dirEnd = <u64>4 + <u64>count * 12;
  if (dirEnd > <u64>bodyLen) {
    return "section directory of " + count.toString() + " entries exceeds the body (" + bodyLen.toString() + " bytes)";
  }
  for (let tag = 0; tag <= TAG_COUNT; tag++) {
    unchecked((secOff[tag] = 0xffffffff));
    unchecked((secLen[tag] = 0));
  }
  for (let i: u32 = 0; i < count; i++) {
    const e = base + 4 + <usize>(i * 12);
    const tag = load<u32>(e);
    const off = load<u32>(e, 4);
    const len = load<u32>(e, 8);
    if (tag < 1 || tag > <u32>TAG_COUNT) {
      return "section directory entry " + i.toString() + ": unknown section tag " + tag.toString();
    }
    const name = unchecked(SECTION_NAME[tag]);
    if (unchecked(secOff[tag]) != 0xffffffff) return "section " + name + " appears more than once";
    if (<u64>off + <u64>len > <u64>bodyLen) {
      return "section " + name + ": offset " + off.toString() + " + length " + len.toString() + " exceeds the body (" + bodyLen.toString() + " bytes)";
    }
    if (len > 0 && <u64>off < dirEnd) return "section " + name + " overlaps the section directory";
    const size = unchecked(RECORD_SIZE[tag]);
    if (len % size != 0) {
      return "section " + name + ": length " + len.toString() + " is not a multiple of its record size " + size.toString();
    }
    unchecked((secOff[tag] = off));
    unchecked((secLen[tag] = len));
  }
  for (let tag = 1; tag <= TAG_COUNT; tag++) {
    if (unchecked(secOff[tag]) == 0xffffffff) return "section " + unchecked(SECTION_NAME[tag]) + " is missing";
  }
  if (unchecked(secLen[TAG_META]) != META_SIZE) {
    return "section META: length " + unchecked(secLen[TAG_META]).toString() + ", expected exactly one 24-byte record";
  }
  for (let a = 1; a <= TAG_COUNT; a++) {
    const la = unchecked(secLen[a]);
    if (la == 0) continue;
    const oa = unchecked(secOff[a]);
    for (let b = a + 1; b <= TAG_COUNT; b++) {
      const lb = unchecked(secLen[b]);
      if (lb == 0) continue;
      const ob = unchecked(secOff[b]);
      if (oa < ob + lb && ob < oa + la) {
        return "sections " + unchecked(SECTION_NAME[a]) + " and " + unchecked(SECTION_NAME[b]) + " overlap";
      }
    }
  }
  if (planar) unplane(base, scratch, scratchLen);
  t.strs = base + <usize>unchecked(secOff[TAG_STRS]);
  t.strsLen = unchecked(secLen[TAG_STRS]);
  t.meta = base + <usize>unchecked(secOff[TAG_META]);
  t.rules = base + <usize>unchecked(secOff[TAG_RULE]);
  t.ruleCount = unchecked(secLen[TAG_RULE]) / RULE_SIZE;
  t.srcc = base + <usize>unchecked(secOff[TAG_SRCC]);
  t.srccCount = unchecked(secLen[TAG_SRCC]) / CLAUSE_SIZE;
  t.opcl = base + <usize>unchecked(secOff[TAG_OPCL]);
  t.opclCount = unchecked(secLen[TAG_OPCL]) / CLAUSE_SIZE;
  t.preds = base + <usize>unchecked(secOff[TAG_PRED]);
  t.predCount = unchecked(secLen[TAG_PRED]) / PRED_SIZE;
  t.pats = base + <usize>unchecked(secOff[TAG_PATS]);
  t.patCount = unchecked(secLen[TAG_PATS]) / PAT_SIZE;
  t.schm = base + <usize>unchecked(secOff[TAG_SCHM]);
  t.schemaCount = unchecked(secLen[TAG_SCHM]) / SCHM_SIZE;
  t.skey = base + <usize>unchecked(secOff[TAG_SKEY]);
  t.skeyCount = unchecked(secLen[TAG_SKEY]) / SKEY_SIZE;
  return "";
}

/**
 * Byte-planar -> row-major, per section with records wider than one byte: stored byte `off + k*n + i` is body
 * byte `off + i*R + k`. Uses one scratch buffer the size of the largest section.
 */
function unplane(base: usize, scratch: usize, scratchLen: u32): void {
  let maxLen: u32 = 0;
  for (let tag = 2; tag <= TAG_COUNT; tag++) {
    if (unchecked(secLen[tag]) > maxLen) maxLen = unchecked(secLen[tag]);
  }
  if (maxLen == 0) return;
  // The caller's scratch came from a peek at the same directory; allocate here only if that peek fell short.
  const own = scratchLen < maxLen;
  const buf = own ? heap.alloc(<usize>maxLen) : scratch;
  for (let tag = 2; tag <= TAG_COUNT; tag++) {
    const len = unchecked(secLen[tag]);
    if (len == 0) continue;
    const sec = base + <usize>unchecked(secOff[tag]);
    memory.copy(buf, sec, <usize>len);
    transpose(sec, buf, <usize>unchecked(RECORD_SIZE[tag]), <usize>(len / unchecked(RECORD_SIZE[tag])));
  }
  if (own) heap.free(buf);
}

/**
 * The largest section length (tags 2..9) in the directory at the start of the stored body, read without
 * inflating the rest; 0 when the directory cannot be read (readDirectory then reports why).
 */
function largestSection(payload: usize, payloadLen: i32, bodyLen: u32, deflated: bool): u32 {
  const want = <i32>min<u32>(bodyLen, 4 + TAG_COUNT * 12);
  if (want < 4) return 0;
  const dir = heap.alloc(<usize>want);
  let ok = true;
  if (deflated) ok = inflateRaw(payload, payloadLen, dir, want, true).length == 0;
  else memory.copy(dir, payload, <usize>want);
  let max: u32 = 0;
  if (ok) {
    const count = min<u32>(load<u32>(dir), <u32>(want - 4) / 12);
    for (let i: u32 = 0; i < count; i++) {
      const e = dir + 4 + <usize>(i * 12);
      const tag = load<u32>(e);
      const len = load<u32>(e, 8);
      if (tag >= 2 && tag <= <u32>TAG_COUNT && len <= bodyLen && len > max) max = len;
    }
  }
  heap.free(dir);
  return max;
}

/**
 * Writes n records of R bytes at `dst` from R planes of n bytes at `src`. Four records by four planes at a time:
 * four u32 loads, a 4x4 byte transpose in registers, four u32 stores (every record size of the format is a
 * multiple of 4; anything left goes byte by byte).
 */
function transpose(dst: usize, src: usize, R: usize, n: usize): void {
  let i: usize = 0;
  if ((R & 3) == 0) {
    for (; i + 4 <= n; i += 4) {
      for (let k: usize = 0; k < R; k += 4) {
        const p = src + k * n + i;
        const a = load<u32>(p); // byte k of records i..i+3
        const b = load<u32>(p + n); // byte k+1
        const c = load<u32>(p + 2 * n);
        const d = load<u32>(p + 3 * n);
        const abLo = (a & 0x00ff00ff) | ((b & 0x00ff00ff) << 8); // records i, i+2: (a, b) byte pairs
        const abHi = ((a >>> 8) & 0x00ff00ff) | (b & 0xff00ff00); // records i+1, i+3
        const cdLo = (c & 0x00ff00ff) | ((d & 0x00ff00ff) << 8);
        const cdHi = ((c >>> 8) & 0x00ff00ff) | (d & 0xff00ff00);
        const q = dst + i * R + k;
        store<u32>(q, (abLo & 0xffff) | (cdLo << 16));
        store<u32>(q + R, (abHi & 0xffff) | (cdHi << 16));
        store<u32>(q + 2 * R, (abLo >>> 16) | (cdLo & 0xffff0000));
        store<u32>(q + 3 * R, (abHi >>> 16) | (cdHi & 0xffff0000));
      }
    }
  }
  for (; i < n; i++) {
    for (let k: usize = 0; k < R; k++) store<u8>(dst + i * R + k, load<u8>(src + k * n + i));
  }
}

// @ts-ignore: decorator
@inline function rangeExceeds(start: u32, count: u32, limit: u32): bool {
  return <u64>start + <u64>count > <u64>limit;
}

/** "rule 12" etc. Built only when reporting an error (validation runs over 100k-record tables). */
function at(kind: string, i: u32): string {
  return kind + " " + i.toString();
}

/** Checks a Str (off, len) against the string pool; "" when fine. `kind i: what` says where. */
function strProblem(t: PolicyTable, rec: usize, kind: string, i: u32, what: string): string {
  const off = load<u32>(rec);
  const len = load<u32>(rec, 4);
  if (rangeExceeds(off, len, t.strsLen)) {
    const where = kind.length != 0 ? at(kind, i) + ": " : "";
    return where + what + " string (offset " + off.toString() + ", length " + len.toString() + ") exceeds STRS (" + t.strsLen.toString() + " bytes)";
  }
  return "";
}

/** Validates every record of the body. */
function validate(t: PolicyTable): string {
  let e = validateMeta(t);
  if (e.length != 0) return e;
  e = validateRules(t);
  if (e.length != 0) return e;
  e = validateClauses(t, t.srcc, t.srccCount, "source clause ");
  if (e.length != 0) return e;
  e = validateClauses(t, t.opcl, t.opclCount, "operation clause ");
  if (e.length != 0) return e;
  e = validatePatterns(t);
  if (e.length != 0) return e;
  e = validatePreds(t);
  if (e.length != 0) return e;
  e = validateSchemas(t);
  if (e.length != 0) return e;
  return "";
}

function validateMeta(t: PolicyTable): string {
  const m = t.meta;
  const action = load<u8>(m);
  const kind = load<u8>(m, 1);
  if (action > 1) return "meta: defaultAction " + action.toString() + " is not 0 (ALLOW) or 1 (DENY)";
  if (kind > 2) return "meta: defaultKind " + kind.toString() + " is not 0, 1 or 2";
  if (kind == 2 && action != 1) return "meta: defaultKind 2 requires defaultAction 1 (DENY)";
  if (load<u16>(m, 2) != 0) return "meta: reserved bytes 2..3 are not 0";
  const e = strProblem(t, m + 8, "", 0, "meta: label");
  if (e.length != 0) return e;
  if (load<u32>(m, 16) != 0) return "meta: flags are not 0";
  if (load<u32>(m, 20) != 0) return "meta: reserved bytes 20..23 are not 0";
  t.defaultAction = action;
  t.defaultKind = kind;
  return "";
}

function validateRules(t: PolicyTable): string {
  const n = t.ruleCount;
  if (n > MAX_RULES) return "RULE: " + n.toString() + " rules exceed the limit of 16777216";
  // Rule ids must be unique: an open-addressing set of rule indexes + 1, dropped after the load.
  let cap: u32 = 16;
  while (cap < n * 2) cap <<= 1;
  const seen = new StaticArray<u32>(<i32>cap);
  let shadow: u32 = 0;
  for (let r: u32 = 0; r < n; r++) {
    const rec = t.rule(r);
    const e = strProblem(t, rec, "rule", r, "id");
    if (e.length != 0) return e;
    const idPtr = t.strPtr(load<u32>(rec));
    const idLen = load<u32>(rec, 4);
    if (idLen == 0 || idLen > MAX_RULE_ID_BYTES) return at("rule", r) + ": id length " + idLen.toString() + " is not 1..200 bytes";
    for (let i: u32 = 0; i < idLen; i++) {
      if (unchecked(ID_CHAR[load<u8>(idPtr + <usize>i)]) == 0) {
        return at("rule", r) + ": id has byte 0x" + hex32(load<u8>(idPtr + <usize>i)).substring(6) + " at " + i.toString() + ", outside [A-Za-z0-9._:/-[]#@]";
      }
    }
    let slot = hashFinish(hashBytes(HASH_SEED, idPtr, <i32>idLen)) & (cap - 1);
    while (true) {
      const v = unchecked(seen[slot]);
      if (v == 0) {
        unchecked((seen[slot] = r + 1));
        break;
      }
      if (bytesEqual(t.ruleIdPtr(v - 1), t.ruleIdLen(v - 1), idPtr, <i32>idLen)) {
        return at("rule", r) + ": id \"" + t.ruleId(r) + "\" is already used by rule " + (v - 1).toString();
      }
      slot = (slot + 1) & (cap - 1);
    }
    const action = load<u8>(rec, 8);
    const flags = load<u8>(rec, 9);
    if (action > 2) return at("rule", r) + ": action " + action.toString() + " is not 0 (ALLOW), 1 (DENY) or 2 (AUDIT)";
    if ((flags & ~RULE_FLAG_DRY_RUN) != 0) return at("rule", r) + ": unknown flags 0x" + hex32(flags).substring(6);
    if (load<u16>(rec, 10) != 0) return at("rule", r) + ": reserved bytes 10..11 are not 0";
    if (action == <u8>Action.AUDIT || (flags & RULE_FLAG_DRY_RUN) != 0) shadow++;
    const srcStart = load<u32>(rec, 12);
    const srcCount = load<u32>(rec, 16);
    if (rangeExceeds(srcStart, srcCount, t.srccCount)) {
      return at("rule", r) + ": srcStart+srcCount exceeds SRCC (" + t.srccCount.toString() + " records)";
    }
    const opStart = load<u32>(rec, 20);
    const opCount = load<u32>(rec, 24);
    if (rangeExceeds(opStart, opCount, t.opclCount)) {
      return at("rule", r) + ": opStart+opCount exceeds OPCL (" + t.opclCount.toString() + " records)";
    }
    const condStart = load<u32>(rec, 28);
    const condCount = load<u32>(rec, 32);
    if (rangeExceeds(condStart, condCount, t.predCount)) {
      return at("rule", r) + ": condStart+condCount exceeds PRED (" + t.predCount.toString() + " records)";
    }
    if (load<u32>(rec, 36) != NO_EXPR) {
      // Version 1 tables carry no EXPR section (issue 3 adds it), so no rule can refer to a program.
      return at("rule", r) + ": expr " + load<u32>(rec, 36).toString() + " refers to a condition program, and the table has no EXPR section";
    }
  }
  t.shadowRuleCount = shadow;
  t.shadowScratch = new StaticArray<u32>(<i32>shadow);
  return "";
}

function validateClauses(t: PolicyTable, base: usize, n: u32, what: string): string {
  for (let c: u32 = 0; c < n; c++) {
    const rec = base + <usize>(c * CLAUSE_SIZE);
    if (rangeExceeds(load<u32>(rec), load<u32>(rec, 4), t.predCount)) {
      return what + c.toString() + ": predStart+predCount exceeds PRED (" + t.predCount.toString() + " records)";
    }
  }
  return "";
}

function validatePatterns(t: PolicyTable): string {
  for (let i: u32 = 0; i < t.patCount; i++) {
    const rec = t.pat(i);
    const kind = load<u8>(rec);
    if (kind > 4) return "pattern " + i.toString() + ": kind " + kind.toString() + " is not 0..4";
    if (load<u8>(rec, 1) != 0 || load<u16>(rec, 2) != 0) return "pattern " + i.toString() + ": reserved bytes 1..3 are not 0";
    const e = strProblem(t, rec + 4, "pattern", i, "value");
    if (e.length != 0) return e;
    if (kind == <u8>PatternKind.PRESENT && load<u32>(rec, 8) != 0) return "pattern " + i.toString() + ": PRESENT pattern has a value";
    if (kind == <u8>PatternKind.TEMPLATE) {
      const te = templateProblem(t.patValuePtr(i), t.patValueLen(i));
      if (te.length != 0) return "pattern " + i.toString() + ": " + te;
    }
  }
  return "";
}

/** `{*}` and `{**}` must be whole segments, `{**}` only the last one; no other use of braces. */
function templateProblem(p: usize, len: i32): string {
  let start = 0;
  while (start <= len) {
    let end = start;
    while (end < len && load<u8>(p + <usize>end) != 47) end++;
    const n = end - start;
    let braces = false;
    for (let i = start; i < end; i++) {
      const c = load<u8>(p + <usize>i);
      if (c == 123 || c == 125) braces = true;
    }
    if (braces) {
      const star1 = n == 3 && load<u8>(p + <usize>start) == 123 && load<u8>(p + <usize>(start + 1)) == 42 && load<u8>(p + <usize>(start + 2)) == 125;
      const star2 = n == 4 && load<u8>(p + <usize>start) == 123 && load<u8>(p + <usize>(start + 1)) == 42 && load<u8>(p + <usize>(start + 2)) == 42 && load<u8>(p + <usize>(start + 3)) == 125;
      if (!star1 && !star2) return "template segment at byte " + start.toString() + " uses braces other than {*} or {**}";
      if (star2 && end != len) return "template {**} is not the last segment";
    }
    start = end + 1;
  }
  return "";
}

function validatePreds(t: PolicyTable): string {
  for (let p: u32 = 0; p < t.predCount; p++) {
    const rec = t.pred(p);
    const field = load<u8>(rec);
    if (field < 1 || field > 9) return at("pred", p) + ": field " + field.toString() + " is not 1..9";
    if (load<u8>(rec, 1) > 1) return at("pred", p) + ": negate " + load<u8>(rec, 1).toString() + " is not 0 or 1";
    const flags = load<u8>(rec, 2);
    if ((flags & ~PRED_FLAG_IGNORE_CASE) != 0) return at("pred", p) + ": unknown flags 0x" + hex32(flags).substring(6);
    if (load<u8>(rec, 3) != 0) return at("pred", p) + ": reserved byte 3 is not 0";
    const e = strProblem(t, rec + 4, "pred", p, "arg");
    if (e.length != 0) return e;
    const argLen = load<u32>(rec, 8);
    const argPtr = t.strPtr(load<u32>(rec, 4));
    if (field == <u8>Field.ATTRIBUTE || field == <u8>Field.HEADER) {
      if (argLen == 0) return at("pred", p) + ": " + (field == <u8>Field.HEADER ? "HEADER" : "ATTRIBUTE") + " predicate has an empty arg";
      if (field == <u8>Field.HEADER && hasUpperAscii(argPtr, <i32>argLen)) return at("pred", p) + ": header name is not lower-case";
    } else if (argLen != 0) {
      return at("pred", p) + ": field " + field.toString() + " takes no arg";
    }
    const patStart = load<u32>(rec, 12);
    const patCount = load<u32>(rec, 16);
    const exactCount = load<u32>(rec, 20);
    if (patCount == 0) return at("pred", p) + ": patCount is 0";
    if (rangeExceeds(patStart, patCount, t.patCount)) {
      return at("pred", p) + ": patStart+patCount exceeds PATS (" + t.patCount.toString() + " records)";
    }
    if (exactCount > patCount) return at("pred", p) + ": exactCount " + exactCount.toString() + " exceeds patCount " + patCount.toString();
    const fold = (flags & PRED_FLAG_IGNORE_CASE) != 0;
    for (let i: u32 = 0; i < patCount; i++) {
      const pi = patStart + i;
      const kind = load<u8>(t.pat(pi));
      if (i < exactCount) {
        if (kind != <u8>PatternKind.EXACT) return at("pred", p) + ": pattern " + pi.toString() + " is in the exact block but is not EXACT";
        if (i > 0) {
          const c = bytesCompare(t.patValuePtr(pi - 1), t.patValueLen(pi - 1), t.patValuePtr(pi), t.patValueLen(pi));
          if (c >= 0) {
            return at("pred", p) + ": exact patterns " + (pi - 1).toString() + " and " + pi.toString() + (c == 0 ? " are duplicates" : " are not sorted");
          }
        }
      }
      if (kind == <u8>PatternKind.TEMPLATE && field != <u8>Field.PATH) return at("pred", p) + ": TEMPLATE pattern " + pi.toString() + " on a field other than PATH";
      if (fold && hasUpperAscii(t.patValuePtr(pi), t.patValueLen(pi))) {
        return at("pred", p) + ": ignore-case pattern " + pi.toString() + " is not stored lower-case";
      }
    }
  }
  return "";
}

function validateSchemas(t: PolicyTable): string {
  for (let k: u32 = 0; k < t.skeyCount; k++) {
    const rec = t.skey + <usize>(k * SKEY_SIZE);
    const e = strProblem(t, rec, "schema key", k, "key");
    if (e.length != 0) return e;
    if (load<u32>(rec, 4) == 0) return "schema key " + k.toString() + " is empty";
  }
  const n = t.schemaCount;
  let cap: u32 = 0;
  if (n > 0) {
    cap = 4;
    while (cap < n * 2) cap <<= 1;
  }
  const slots = new StaticArray<u32>(<i32>cap);
  for (let s: u32 = 0; s < n; s++) {
    const rec = t.schm + <usize>(s * SCHM_SIZE);
    const e = strProblem(t, rec, "schema", s, "trust domain");
    if (e.length != 0) return e;
    const tdPtr = t.strPtr(load<u32>(rec));
    const tdLen = <i32>load<u32>(rec, 4);
    if (tdLen == 0) return at("schema", s) + ": empty trust domain";
    if (rangeExceeds(load<u32>(rec, 8), load<u32>(rec, 12), t.skeyCount)) {
      return at("schema", s) + ": keyStart+keyCount exceeds SKEY (" + t.skeyCount.toString() + " records)";
    }
    let i = hashFinish(hashBytes(HASH_SEED, tdPtr, tdLen)) & (cap - 1);
    while (true) {
      const v = unchecked(slots[i]);
      if (v == 0) {
        unchecked((slots[i] = s + 1));
        break;
      }
      const other = t.schm + <usize>((v - 1) * SCHM_SIZE);
      if (bytesEqual(t.strPtr(load<u32>(other)), <i32>load<u32>(other, 4), tdPtr, tdLen)) {
        return at("schema", s) + ": trust domain \"" + String.UTF8.decodeUnsafe(tdPtr, <usize>tdLen, false) + "\" already has schema " + (v - 1).toString();
      }
      i = (i + 1) & (cap - 1);
    }
  }
  t.schemaSlots = slots;
  return "";
}
