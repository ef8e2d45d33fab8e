// PolicyTable: decoding and validation of the binary policy table (docs/table-format.md, version 2). Every
// offset, count, range, varint and front-coded entry is checked once here, at load; after that the request path
// reads records without bounds checks. Errors are strings that say what is wrong and where.

import { cidrProblem, globProblem, globScratch } from "./glob";
import { bytesCompare, bytesEqual, hashBytes, hashFinish, HASH_SEED, hasUpperAscii, uninitializedBuffer } from "./bytes";
import { crc32 } from "./crc32";
import { FrontCoded, VarintCursor } from "./frontcode";
import { inflateRaw } from "./inflate";
import { IndexPlan, PrincipalIndex } from "./principal-index";
import { META_FLAG_GRPC_FIRST, TableConditions } from "./conditions";

/** META.flags bit 1: allowed requests are sampled for the decision record (threshold at META offset 28). */
export const META_FLAG_SAMPLE_ALLOWS: u32 = 2;
import { CelProgramSet, celLoadError, STANDARD_VAR_KINDS, VAR_REQUEST_GRPC_MESSAGE, VAR_REQUEST_JSON, VAR_REQUEST_PATH } from "./cel/index";

export const TAG_STRS: u32 = 1;
export const TAG_META: u32 = 2;
export const TAG_FAMS: u32 = 3;
export const TAG_SRCC: u32 = 4;
export const TAG_OPCL: u32 = 5;
export const TAG_PRED: u32 = 6;
export const TAG_PATS: u32 = 7;
export const TAG_SCHM: u32 = 8;
export const TAG_SKEY: u32 = 9;
export const TAG_IDS: u32 = 10;
export const TAG_IDSX: u32 = 11;
export const TAG_VALS: u32 = 12;
export const TAG_VALX: u32 = 13;
export const TAG_ROWS: u32 = 14;
/** CEL condition programs (docs/cel.md "EXPR section"); present only in tables with conditions. */
export const TAG_EXPR: u32 = 15;
/** Deny replies and their headers; present (together) only when some rule has its own reply. */
export const TAG_RESP: u32 = 16;
export const TAG_RHDR: u32 = 17;
const TAG_COUNT = 17;
export const RESP_SIZE: u32 = 20;
export const RHDR_SIZE: u32 = 16;
/** RESP.grpcStatus when not given: the reply of a gRPC request carries 7 (PERMISSION_DENIED). */
export const RESP_GRPC_DEFAULT: u8 = 0xff;
export const RESP_FLAG_REQUEST_ID: u8 = 1;
export const RESP_FLAG_DEFAULT: u8 = 2;

export const META_SIZE: u32 = 32;
export const FAM_SIZE: u32 = 48;
export const CLAUSE_SIZE: u32 = 8;
export const PRED_SIZE: u32 = 24;
export const PAT_SIZE: u32 = 12;
export const SCHM_SIZE: u32 = 16;
export const SKEY_SIZE: u32 = 8;

const RECORD_SIZE: StaticArray<u32> = [0, 1, 32, 48, 8, 8, 24, 12, 16, 8, 1, 4, 1, 4, 1, 1, 20, 16];
const SECTION_NAME: StaticArray<string> = [
  "", "STRS", "META", "FAMS", "SRCC", "OPCL", "PRED", "PATS", "SCHM", "SKEY", "IDS", "IDSX", "VALS", "VALX", "ROWS",
  "EXPR", "RESP", "RHDR",
];

export const ENVELOPE_SIZE: i32 = 24;
/** The version the compiler writes. Version 2 tables (no fields above SNI, no GLOB or CIDR) are read too. */
export const VERSION: u32 = 3;
export const OLDEST_VERSION: u32 = 2;
export const FLAG_DEFLATE: u32 = 1;
/** Records stored byte-planar (docs/table-format.md §2). */
export const FLAG_PLANAR: u32 = 2;
export const MAX_BODY_BYTES: u32 = 64 << 20;
/** The largest META.maxBodyBytes: what one request may make the filter buffer. */
export const MAX_REQUEST_BODY_BYTES: u32 = 64 << 20;
export const MAX_RULES: u32 = 1 << 24;
export const MAX_RULE_ID_BYTES: u32 = 200;
/** The longest hole value: an identity longer than the 64 KiB the engine parses never matches anyway. */
export const MAX_VALUE_BYTES: u32 = 65536;
/** Memory a load may ask for beyond the body (index, scratch); more is refused rather than risk a trap. */
const MAX_LOAD_BYTES: u64 = 512 << 20;
/** Shadow ranges one decision may record (the scratch is allocated at load). */
const MAX_SHADOW_RANGES: u64 = 1 << 24;
/** "no expression" in FAMS.expr. */
export const NO_EXPR: u32 = 0xffffffff;
/** "no hole" in FAMS.holeClause / holePred. */
export const NO_HOLE: u32 = 0xffffffff;

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
  PEER_NAME = 10,
  REQUEST_PRINCIPAL = 11,
  JWT_CLAIM = 12,
  REMOTE_IP = 13,
  DESTINATION_IP = 14,
}

/** The highest field code (docs/table-format.md §3, PRED). */
export const MAX_FIELD: u8 = 14;

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
  GLOB = 5,
  CIDR = 6,
}

export const FAM_FLAG_DRY_RUN: u8 = 1;
/** Record every request the family's rules allow, whatever META's sampling says. */
export const FAM_FLAG_RECORD_ALLOWS: u8 = 2;
/** Count the family's rules' decisions in metrics of their own. */
export const FAM_FLAG_METRICS: u8 = 4;
export const PRED_FLAG_IGNORE_CASE: u8 = 1;
/** The predicate is its family's hole: its one EXACT pattern is each row's value (VALS). */
export const PRED_FLAG_HOLE: u8 = 2;
/** HOST only: the subject is the authority's host name (userinfo, port and one trailing dot removed). */
export const PRED_FLAG_HOST_NAME: u8 = 4;

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

/** Where `decodeRuleId` writes (ids are at most 200 bytes); overwritten by the next call. */
export const RULE_ID_BUF: usize = memory.data(256);

/** A decoded, validated, indexed policy table. Immutable once built. */
export class PolicyTable {
  /** The row-major body; every pointer below points into it. */
  body: ArrayBuffer;
  base: usize;
  bodyLen: u32;
  /** The envelope hash as 16 lower-case hex digits. */
  hashHex: string = "";
  /** The envelope's version (2 or 3). */
  version: u32 = VERSION;
  strs: usize = 0;
  strsLen: u32 = 0;
  meta: usize = 0;
  fams: usize = 0;
  famCount: u32 = 0;
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
  rows: usize = 0;
  rowsLen: u32 = 0;
  /** Rule ids in rule order. */
  ids: FrontCoded = new FrontCoded();
  /** Hole values, sorted and unique. */
  vals: FrontCoded = new FrontCoded();
  ruleCount: u32 = 0;
  valueCount: u32 = 0;
  defaultAction: u8 = 0;
  defaultKind: u8 = 0;
  /** Rules that are AUDIT or dry-run: their matches are reported, never decide. */
  shadowRuleCount: u32 = 0;
  /**
   * Matching shadow rules of the decision in progress as (first rule, count) ranges; after the decision sorted,
   * merged and disjoint. Room for every range one decision can record (a shadow family is reached at most once
   * through each source clause and once through its hole or the scan list).
   */
  shadowScratch: StaticArray<u32> = new StaticArray<u32>(0);
  /** Open-addressing map trust domain -> schema index + 1 (0 = empty slot). */
  schemaSlots: StaticArray<u32> = new StaticArray<u32>(0);
  index: PrincipalIndex | null = null;
  /** The CEL conditions (EXPR section), or null when no rule has one. */
  cond: TableConditions | null = null;
  exprPtr: usize = 0;
  exprLen: u32 = 0;
  hasExpr: bool = false;
  maxBodyBytes: u32 = 0;
  metaFlags: u32 = 0;
  /** Some predicate or condition reads the request path (engine/path.ts: such tables refuse ambiguous paths). */
  readsPath: bool = false;
  /** RESP and RHDR (0 / 0 without them). */
  resp: usize = 0;
  respCount: u32 = 0;
  rhdr: usize = 0;
  rhdrCount: u32 = 0;
  /** The RESP record the default deny replies with, or -1 for the built-in 403. */
  defaultResponse: i32 = -1;
  /** Allowed requests are sampled for the record: recorded when the x-request-id hash is below `sampleThreshold`. */
  sampleAllows: bool = false;
  sampleThreshold: u32 = 0;
  /** Some family has the METRICS flag (per-rule metrics to define at configure). */
  hasRuleMetrics: bool = false;

  /** RESP record `i`. */
  @inline respRec(i: u32): usize {
    return this.resp + <usize>(i * RESP_SIZE);
  }

  /** The RESP record family `f` replies with when it denies, or -1 for the default reply. */
  @inline famResponse(f: u32): i32 {
    return <i32>load<u16>(this.fam(f), 2) - 1;
  }

  /** FAMS flags of family `f`. */
  @inline famFlags(f: u32): u32 {
    return <u32>load<u8>(this.fam(f), 1);
  }

  constructor(body: ArrayBuffer) {
    this.body = body;
    this.base = changetype<usize>(body);
    this.bodyLen = <u32>body.byteLength;
  }

  // Records. INVARIANT: validate() has checked every index and string range these accessors can reach.

  @inline strPtr(off: u32): usize {
    return this.strs + <usize>off;
  }

  @inline fam(f: u32): usize {
    return this.fams + <usize>(f * FAM_SIZE);
  }
  @inline famAction(f: u32): u32 {
    return <u32>load<u8>(this.fam(f));
  }
  @inline famFirst(f: u32): u32 {
    return load<u32>(this.fam(f), 4);
  }
  @inline famRows(f: u32): u32 {
    return load<u32>(this.fam(f), 8);
  }
  @inline famHoleClause(f: u32): u32 {
    return load<u32>(this.fam(f), 40);
  }
  @inline famHolePred(f: u32): u32 {
    return load<u32>(this.fam(f), 44);
  }
  /** AUDIT or dry-run: reported, never decides. */
  @inline famIsShadow(f: u32): bool {
    const rec = this.fam(f);
    return load<u8>(rec) == <u8>Action.AUDIT || (load<u8>(rec, 1) & FAM_FLAG_DRY_RUN) != 0;
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

  /** The family holding rule `r` (binary search over FAMS.firstRule). */
  familyOf(r: u32): u32 {
    let lo: u32 = 0;
    let hi = this.famCount;
    while (hi - lo > 1) {
      const mid = (lo + hi) >>> 1;
      if (this.famFirst(mid) <= r) lo = mid;
      else hi = mid;
    }
    return lo;
  }

  /** The action of rule `r`. */
  /** Whether rule `r`'s family has the METRICS flag. */
  ruleHasMetrics(r: u32): bool {
    return (this.famFlags(this.familyOf(r)) & FAM_FLAG_METRICS) != 0;
  }

  /** Whether rule `r`'s family has the RECORD_ALLOWS flag. */
  ruleRecordsAllows(r: u32): bool {
    return (this.famFlags(this.familyOf(r)) & FAM_FLAG_RECORD_ALLOWS) != 0;
  }

  ruleAction(r: u32): u32 {
    return this.famAction(this.familyOf(r));
  }

  /** Writes rule `r`'s id to RULE_ID_BUF and returns its length (reports only: deny details, logs, explain). */
  decodeRuleId(r: u32): i32 {
    return this.ids.decodeInto(r, RULE_ID_BUF);
  }

  /** The rule's id as a GC string (explain and tests only). */
  ruleId(r: u32): string {
    const n = this.decodeRuleId(r);
    return String.UTF8.decodeUnsafe(RULE_ID_BUF, <usize>n, false);
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

export function hex32(v: u32): string {
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
  if (version < OLDEST_VERSION || version > VERSION) {
    return fail(r, "table: unsupported version " + version.toString() + " (this filter reads versions 2 and 3)");
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
  // The CRC describes the payload as stored (compressed): a corrupt payload is caught before anything is
  // inflated or allocated, at the cost of hashing the small compressed form rather than the body.
  const actual = crc32(payload, <usize>payloadLen);
  if (actual != crc) {
    return fail(r, "table: crc32 mismatch (envelope 0x" + hex32(crc) + ", payload 0x" + hex32(actual) + ")");
  }
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
  // AssemblyScript's allocator grows memory by at least its current size, so a scratch block requested after
  // the body could double the VM's memory for good (wasm memory never shrinks).
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
  t.version = version;
  let err = readDirectory(t, planar, scratch, scratchLen);
  if (scratch != 0) heap.free(scratch);
  if (err.length != 0) return fail(r, "table: " + err);
  err = validate(t);
  if (err.length != 0) return fail(r, "table: " + err);
  r.table = t;
  return r;
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
  for (let tag: u32 = 1; tag <= <u32>TAG_COUNT; tag++) {
    // EXPR (conditions), RESP and RHDR (deny replies) are optional: tables without them do not carry them.
    if (unchecked(secOff[tag]) == 0xffffffff && tag < TAG_EXPR) return "section " + unchecked(SECTION_NAME[tag]) + " is missing";
  }
  const hasResp = unchecked(secOff[TAG_RESP]) != 0xffffffff;
  if (hasResp != (unchecked(secOff[TAG_RHDR]) != 0xffffffff)) return "sections RESP and RHDR go together";
  if (hasResp && t.version < 3) return "section RESP in a version " + t.version.toString() + " table";
  if (hasResp && unchecked(secLen[TAG_RESP]) == 0) return "section RESP holds no records (leave RESP and RHDR out instead)";
  if (unchecked(secLen[TAG_META]) != META_SIZE) {
    return "section META: length " + unchecked(secLen[TAG_META]).toString() + ", expected exactly one 32-byte record";
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
  t.fams = base + <usize>unchecked(secOff[TAG_FAMS]);
  t.famCount = unchecked(secLen[TAG_FAMS]) / FAM_SIZE;
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
  t.ids.ptr = base + <usize>unchecked(secOff[TAG_IDS]);
  t.ids.restarts = base + <usize>unchecked(secOff[TAG_IDSX]);
  t.vals.ptr = base + <usize>unchecked(secOff[TAG_VALS]);
  t.vals.restarts = base + <usize>unchecked(secOff[TAG_VALX]);
  t.rows = base + <usize>unchecked(secOff[TAG_ROWS]);
  t.rowsLen = unchecked(secLen[TAG_ROWS]);
  t.hasExpr = unchecked(secOff[TAG_EXPR]) != 0xffffffff;
  if (t.hasExpr) {
    t.exprPtr = base + <usize>unchecked(secOff[TAG_EXPR]);
    t.exprLen = unchecked(secLen[TAG_EXPR]);
  }
  if (hasResp) {
    t.resp = base + <usize>unchecked(secOff[TAG_RESP]);
    t.respCount = unchecked(secLen[TAG_RESP]) / RESP_SIZE;
    t.rhdr = base + <usize>unchecked(secOff[TAG_RHDR]);
    t.rhdrCount = unchecked(secLen[TAG_RHDR]) / RHDR_SIZE;
  }
  return "";
}

/**
 * Byte-planar -> row-major, per section with records wider than one byte: stored byte `off + k*n + i` is body
 * byte `off + i*R + k`. Uses one scratch buffer the size of the largest section.
 */
function unplane(base: usize, scratch: usize, scratchLen: u32): void {
  let maxLen: u32 = 0;
  for (let tag = 1; tag <= TAG_COUNT; tag++) {
    if (unchecked(RECORD_SIZE[tag]) > 1 && unchecked(secLen[tag]) > maxLen) maxLen = unchecked(secLen[tag]);
  }
  if (maxLen == 0) return;
  // The caller's scratch came from a peek at the same directory; allocate here only if that peek fell short.
  const own = scratchLen < maxLen;
  const buf = own ? heap.alloc(<usize>maxLen) : scratch;
  for (let tag = 1; tag <= TAG_COUNT; tag++) {
    const R = unchecked(RECORD_SIZE[tag]);
    const len = unchecked(secLen[tag]);
    if (R == 1 || len == 0) continue;
    const sec = base + <usize>unchecked(secOff[tag]);
    memory.copy(buf, sec, <usize>len);
    transpose(sec, buf, <usize>R, <usize>(len / R));
  }
  if (own) heap.free(buf);
}

/**
 * The largest length of a section with records wider than one byte in the directory at the start of the stored
 * body, read without inflating the rest; 0 when the directory cannot be read (readDirectory then reports why).
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
      if (tag >= 1 && tag <= <u32>TAG_COUNT && unchecked(RECORD_SIZE[tag]) > 1 && len <= bodyLen && len > max) max = len;
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

/** "family 12" etc. Built only when reporting an error (validation runs over 100k-record tables). */
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

/**
 * Validates every record of the body, then sizes and builds the index. The index's arrays are allocated before
 * the rule ids and values are checked: the id check borrows the index's slot array as its scratch set, and the
 * one reservation below makes memory grow once, to what the whole load needs.
 */
function validate(t: PolicyTable): string {
  let e = validateMeta(t);
  if (e.length != 0) return e;
  e = validateExpr(t);
  if (e.length != 0) return e;
  e = validatePatterns(t);
  if (e.length != 0) return e;
  e = validatePreds(t);
  if (e.length != 0) return e;
  e = validateClauses(t, t.srcc, t.srccCount, "source clause ");
  if (e.length != 0) return e;
  e = validateClauses(t, t.opcl, t.opclCount, "operation clause ");
  if (e.length != 0) return e;
  e = validateResponses(t);
  if (e.length != 0) return e;
  e = validateFamilies(t);
  if (e.length != 0) return e;
  e = validateSchemas(t);
  if (e.length != 0) return e;
  e = checkRestarts(t, TAG_IDSX, "IDSX", t.ruleCount, t.ids.log2);
  if (e.length != 0) return e;
  e = checkRestarts(t, TAG_VALX, "VALX", t.valueCount, t.vals.log2);
  if (e.length != 0) return e;

  // Every entry of a front-coded list takes at least its two varints: counts that the sections cannot hold are
  // refused before they size any allocation.
  if (<u64>t.ruleCount * 2 > <u64>secLenOf(TAG_IDS)) {
    return "IDS: " + secLenOf(TAG_IDS).toString() + " bytes cannot hold the " + t.ruleCount.toString() + " ids of META";
  }
  if (<u64>t.valueCount * 2 > <u64>secLenOf(TAG_VALS)) {
    return "VALS: " + secLenOf(TAG_VALS).toString() + " bytes cannot hold the " + t.valueCount.toString() + " values of META";
  }
  const plan = IndexPlan.of(t);
  if (plan.error.length != 0) return plan.error;
  const need = <u64>plan.bytes + <u64>t.valueCount * 4 + <u64>min<u32>(secLenOf(TAG_VALS), MAX_VALUE_BYTES) + 1024;
  // A failed memory.grow inside the allocator is a trap: refuse what no sensible table needs instead.
  if (need > MAX_LOAD_BYTES) return "loading the table needs " + need.toString() + " bytes of memory (at most 536870912)";
  reserveHeap(<usize>need);
  const ix = new PrincipalIndex(t, plan);
  e = validateIds(t, ix);
  if (e.length != 0) return e;
  const valueHash = t.valueCount > 0 ? heap.alloc(<usize>t.valueCount * 4) : 0;
  e = validateValues(t, valueHash);
  if (e.length == 0) e = ix.build(t, valueHash);
  if (valueHash != 0) heap.free(valueHash);
  if (e.length != 0) return e;
  t.index = ix;
  return "";
}

// @ts-ignore: decorator
@inline function secLenOf(tag: u32): u32 {
  return unchecked(secLen[tag]);
}

/**
 * Makes the heap hold `bytes` of free memory in one piece, by allocating and freeing a block that size. The
 * allocator then grows memory once, by what the load needs, instead of doubling it whenever a piece does not
 * fit (AssemblyScript's TLSF grows by at least the current size, and wasm memory never shrinks).
 */
function reserveHeap(bytes: usize): void {
  if (bytes < (256 << 10)) return;
  heap.free(heap.alloc(bytes));
}

function validateMeta(t: PolicyTable): string {
  const m = t.meta;
  const action = load<u8>(m);
  const kind = load<u8>(m, 1);
  if (action > 1) return "meta: defaultAction " + action.toString() + " is not 0 (ALLOW) or 1 (DENY)";
  if (kind > 2) return "meta: defaultKind " + kind.toString() + " is not 0, 1 or 2";
  if (kind == 2 && action != 1) return "meta: defaultKind 2 requires defaultAction 1 (DENY)";
  const idLog2 = load<u8>(m, 2);
  const valLog2 = load<u8>(m, 3);
  if (idLog2 != 3 && idLog2 != 4) return "meta: id restart interval 2^" + idLog2.toString() + " is not 8 or 16";
  if (valLog2 != 3 && valLog2 != 4) return "meta: value restart interval 2^" + valLog2.toString() + " is not 8 or 16";
  const e = strProblem(t, m + 8, "", 0, "meta: label");
  if (e.length != 0) return e;
  const rules = load<u32>(m, 16);
  if (rules > MAX_RULES) return "meta: " + rules.toString() + " rules exceed the limit of 16777216";
  const flags = load<u32>(m, 24);
  const known = META_FLAG_GRPC_FIRST | META_FLAG_SAMPLE_ALLOWS;
  if ((flags & ~known) != 0) return "meta: unknown flags 0x" + hex32(flags & ~known);
  t.metaFlags = flags;
  t.maxBodyBytes = load<u32>(m, 4);
  t.sampleAllows = (flags & META_FLAG_SAMPLE_ALLOWS) != 0;
  t.sampleThreshold = load<u32>(m, 28);
  if (!t.sampleAllows && t.sampleThreshold != 0) return "meta: bytes 28..31 are not 0, but allowed requests are not sampled";
  t.defaultAction = action;
  t.defaultKind = kind;
  t.ruleCount = rules;
  t.valueCount = load<u32>(m, 20);
  t.ids.count = rules;
  t.ids.log2 = idLog2;
  t.vals.count = t.valueCount;
  t.vals.log2 = valLog2;
  return "";
}

/**
 * The EXPR section: every program validated by CelProgramSet.decode (docs/cel.md "Validation at load"), and META's
 * body settings consistent with what the programs read: maxBodyBytes is set exactly when some program reads a
 * body, and the grpcMessages flag only when some program reads request.grpc.message.
 */
function validateExpr(t: PolicyTable): string {
  let readsBody = false;
  let readsGrpc = false;
  if (t.hasExpr) {
    const set = CelProgramSet.decode(t.exprPtr, <i32>t.exprLen, STANDARD_VAR_KINDS);
    if (set === null) return "EXPR: " + celLoadError;
    if (set.count == 0) return "EXPR: the section holds no programs (leave it out instead)";
    readsGrpc = set.readsVariable(VAR_REQUEST_GRPC_MESSAGE);
    if (set.readsVariable(VAR_REQUEST_PATH)) t.readsPath = true;
    readsBody = readsGrpc || set.readsVariable(VAR_REQUEST_JSON);
    t.cond = new TableConditions(set, t.maxBodyBytes, (t.metaFlags & META_FLAG_GRPC_FIRST) != 0);
  }
  if (readsBody && t.maxBodyBytes == 0) return "meta: maxBodyBytes is 0, but a condition reads the request body";
  if (!readsBody && t.maxBodyBytes != 0) return "meta: maxBodyBytes is " + t.maxBodyBytes.toString() + ", but no condition reads the request body";
  if (t.maxBodyBytes > MAX_REQUEST_BODY_BYTES) return "meta: maxBodyBytes " + t.maxBodyBytes.toString() + " exceeds 64 MiB";
  if ((t.metaFlags & META_FLAG_GRPC_FIRST) != 0 && !readsGrpc) return "meta: the grpcMessages flag is set, but no condition reads request.grpc.message";
  return "";
}

function validatePatterns(t: PolicyTable): string {
  for (let i: u32 = 0; i < t.patCount; i++) {
    const rec = t.pat(i);
    const kind = load<u8>(rec);
    const maxKind: u8 = t.version >= 3 ? 6 : 4;
    if (kind > maxKind) return "pattern " + i.toString() + ": kind " + kind.toString() + " is not 0.." + maxKind.toString() + " (table version " + t.version.toString() + ")";
    if (load<u8>(rec, 1) != 0 || load<u16>(rec, 2) != 0) return "pattern " + i.toString() + ": reserved bytes 1..3 are not 0";
    const e = strProblem(t, rec + 4, "pattern", i, "value");
    if (e.length != 0) return e;
    if (kind == <u8>PatternKind.PRESENT && load<u32>(rec, 8) != 0) return "pattern " + i.toString() + ": PRESENT pattern has a value";
    if (kind == <u8>PatternKind.TEMPLATE) {
      const te = templateProblem(t.patValuePtr(i), t.patValueLen(i));
      if (te.length != 0) return "pattern " + i.toString() + ": " + te;
    }
    if (kind == <u8>PatternKind.GLOB) {
      const ge = globProblem(t.patValuePtr(i), t.patValueLen(i));
      if (ge.length != 0) return "pattern " + i.toString() + ": " + ge;
      globScratch();
    }
    if (kind == <u8>PatternKind.CIDR) {
      const ce = cidrProblem(t.patValuePtr(i), t.patValueLen(i));
      if (ce.length != 0) return "pattern " + i.toString() + ": " + ce;
    }
    if ((kind == <u8>PatternKind.PREFIX || kind == <u8>PatternKind.SUFFIX) && load<u32>(rec, 8) == 0) {
      return "pattern " + i.toString() + ": empty " + (kind == <u8>PatternKind.PREFIX ? "PREFIX" : "SUFFIX") + " pattern";
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
    const maxField: u8 = t.version >= 3 ? MAX_FIELD : <u8>Field.SNI;
    if (field < 1 || field > maxField) return at("pred", p) + ": field " + field.toString() + " is not 1.." + maxField.toString() + " (table version " + t.version.toString() + ")";
    const negate = load<u8>(rec, 1);
    if (negate > 1) return at("pred", p) + ": negate " + negate.toString() + " is not 0 or 1";
    if (field == <u8>Field.PATH) t.readsPath = true;
    const flags = load<u8>(rec, 2);
    if ((flags & ~(PRED_FLAG_IGNORE_CASE | PRED_FLAG_HOLE | PRED_FLAG_HOST_NAME)) != 0) return at("pred", p) + ": unknown flags 0x" + hex32(flags).substring(6);
    if ((flags & PRED_FLAG_HOST_NAME) != 0 && field != <u8>Field.HOST) return at("pred", p) + ": the HOST_NAME flag on field " + field.toString() + " (only HOST)";
    if (load<u8>(rec, 3) != 0) return at("pred", p) + ": reserved byte 3 is not 0";
    const e = strProblem(t, rec + 4, "pred", p, "arg");
    if (e.length != 0) return e;
    const argLen = load<u32>(rec, 8);
    const argPtr = t.strPtr(load<u32>(rec, 4));
    if (field == <u8>Field.ATTRIBUTE || field == <u8>Field.HEADER || field == <u8>Field.JWT_CLAIM) {
      if (argLen == 0) return at("pred", p) + ": " + (field == <u8>Field.HEADER ? "HEADER" : field == <u8>Field.JWT_CLAIM ? "JWT_CLAIM" : "ATTRIBUTE") + " predicate has an empty arg";
      if (field == <u8>Field.HEADER && hasUpperAscii(argPtr, <i32>argLen)) return at("pred", p) + ": header name is not lower-case";
    } else if (argLen != 0) {
      return at("pred", p) + ": field " + field.toString() + " takes no arg";
    }
    const patStart = load<u32>(rec, 12);
    const patCount = load<u32>(rec, 16);
    const exactCount = load<u32>(rec, 20);
    if ((flags & PRED_FLAG_HOLE) != 0) {
      // A hole is an identity predicate that the index can prove exactly (docs/table-format.md "Rule families").
      if (field > <u8>Field.ATTRIBUTE) return at("pred", p) + ": HOLE predicate on field " + field.toString() + " (only 1..3)";
      if (negate != 0 || (flags & PRED_FLAG_IGNORE_CASE) != 0) return at("pred", p) + ": HOLE predicate is negated or ignores case";
      if (patStart != 0 || patCount != 0 || exactCount != 0) return at("pred", p) + ": HOLE predicate has patterns";
      continue;
    }
    if (patCount == 0) return at("pred", p) + ": patCount is 0";
    if (rangeExceeds(patStart, patCount, t.patCount)) {
      return at("pred", p) + ": patStart+patCount exceeds PATS (" + t.patCount.toString() + " records)";
    }
    if (exactCount > patCount) return at("pred", p) + ": exactCount " + exactCount.toString() + " exceeds patCount " + patCount.toString();
    const fold = (flags & PRED_FLAG_IGNORE_CASE) != 0;
    const ipField = field == <u8>Field.REMOTE_IP || field == <u8>Field.DESTINATION_IP;
    if (field == <u8>Field.REQUEST_PRINCIPAL) {
      // (iss, sub) pairs: no exact block, no case folding.
      if ((patCount & 1) != 0) return at("pred", p) + ": REQUEST_PRINCIPAL patterns do not come in (iss, sub) pairs";
      if (exactCount != 0 || fold) return at("pred", p) + ": REQUEST_PRINCIPAL predicate has an exact block or ignores case";
    }
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
      if ((kind == <u8>PatternKind.CIDR) != ipField) return at("pred", p) + ": pattern " + pi.toString() + (ipField ? " on an IP field is not CIDR" : " is CIDR on a field that is not an IP address");
      if (fold && hasUpperAscii(t.patValuePtr(pi), t.patValueLen(pi))) {
        return at("pred", p) + ": ignore-case pattern " + pi.toString() + " is not stored lower-case";
      }
    }
  }
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

// @ts-ignore: decorator
@inline function isHole(t: PolicyTable, p: u32): bool {
  return (load<u8>(t.pred(p), 2) & PRED_FLAG_HOLE) != 0;
}

/** A HOLE predicate in the range other than `allowed` (NO_HOLE: none allowed), or NO_HOLE. */
function strayHole(t: PolicyTable, start: u32, count: u32, allowed: u32): u32 {
  for (let p = start; p < start + count; p++) {
    if (p != allowed && isHole(t, p)) return p;
  }
  return NO_HOLE;
}

/**
 * RESP and RHDR: statuses 300..599, gRPC statuses 1..16 (or "not given"), known flags, one default reply at most,
 * header ranges inside RHDR, header names lower-case tokens and values free of control characters (Envoy would
 * refuse them), strings inside STRS.
 */
function validateResponses(t: PolicyTable): string {
  for (let i: u32 = 0; i < t.respCount; i++) {
    const rec = t.respRec(i);
    const status = load<u16>(rec);
    if (status < 300 || status > 599) return at("deny response", i) + ": status " + status.toString() + " is not 300..599";
    const grpc = load<u8>(rec, 2);
    if (grpc != RESP_GRPC_DEFAULT && (grpc < 1 || grpc > 16)) return at("deny response", i) + ": grpc status " + grpc.toString() + " is not 1..16";
    const flags = load<u8>(rec, 3);
    if ((flags & ~(RESP_FLAG_REQUEST_ID | RESP_FLAG_DEFAULT)) != 0) return at("deny response", i) + ": unknown flags 0x" + hex32(flags).substring(6);
    if ((flags & RESP_FLAG_DEFAULT) != 0) {
      if (t.defaultResponse >= 0) return at("deny response", i) + ": a second default deny response";
      t.defaultResponse = <i32>i;
    }
    let e = strProblem(t, rec + 4, "deny response", i, "body");
    if (e.length != 0) return e;
    const hs = load<u32>(rec, 12);
    const hn = load<u32>(rec, 16);
    if (rangeExceeds(hs, hn, t.rhdrCount)) return at("deny response", i) + ": headers exceed RHDR (" + t.rhdrCount.toString() + " records)";
    for (let k = hs; k < hs + hn; k++) {
      const h = t.rhdr + <usize>(k * RHDR_SIZE);
      e = strProblem(t, h, "deny response", i, "header name");
      if (e.length != 0) return e;
      e = strProblem(t, h + 8, "deny response", i, "header value");
      if (e.length != 0) return e;
      const np = t.strPtr(load<u32>(h));
      const nl = <i32>load<u32>(h, 4);
      if (nl == 0) return at("deny response", i) + ": empty header name";
      for (let j = 0; j < nl; j++) {
        const c = <u32>load<u8>(np + <usize>j);
        if (!isTokenChar(c) || (c >= 65 && c <= 90)) return at("deny response", i) + ": header name is not a lower-case token";
      }
      const vp = t.strPtr(load<u32>(h, 8));
      const vl = <i32>load<u32>(h, 12);
      for (let j = 0; j < vl; j++) {
        const c = <u32>load<u8>(vp + <usize>j);
        if ((c < 0x20 && c != 9) || c == 0x7f) return at("deny response", i) + ": header value has a control character";
      }
    }
  }
  return "";
}

/** An RFC 9110 token character. */
function isTokenChar(c: u32): bool {
  if (c >= 48 && c <= 57) return true;
  if ((c | 0x20) >= 97 && (c | 0x20) <= 122) return true;
  return c == 33 || c == 35 || c == 36 || c == 37 || c == 38 || c == 39 || c == 42 || c == 43 || c == 45 || c == 46 ||
    c == 94 || c == 95 || c == 96 || c == 124 || c == 126;
}

function validateFamilies(t: PolicyTable): string {
  let next: u32 = 0;
  let shadowRules: u32 = 0;
  let shadowRanges: u64 = 0;
  for (let f: u32 = 0; f < t.famCount; f++) {
    const rec = t.fam(f);
    const action = load<u8>(rec);
    const flags = load<u8>(rec, 1);
    if (action > 2) return at("family", f) + ": action " + action.toString() + " is not 0 (ALLOW), 1 (DENY) or 2 (AUDIT)";
    if ((flags & ~(FAM_FLAG_DRY_RUN | FAM_FLAG_RECORD_ALLOWS | FAM_FLAG_METRICS)) != 0) return at("family", f) + ": unknown flags 0x" + hex32(flags).substring(6);
    if ((flags & FAM_FLAG_RECORD_ALLOWS) != 0 && load<u8>(rec) != <u8>Action.ALLOW) return at("family", f) + ": record-allows on a family that is not ALLOW";
    if ((flags & FAM_FLAG_METRICS) != 0) t.hasRuleMetrics = true;
    const respRef = <u32>load<u16>(rec, 2);
    if (respRef > t.respCount) return at("family", f) + ": deny response " + (respRef - 1).toString() + " exceeds RESP (" + t.respCount.toString() + " records)";
    if (respRef != 0 && load<u8>(rec) != <u8>Action.DENY) return at("family", f) + ": a deny response on a family that is not DENY";
    const first = load<u32>(rec, 4);
    const rows = load<u32>(rec, 8);
    if (first != next) return at("family", f) + ": firstRule " + first.toString() + ", but the families before it hold " + next.toString() + " rules";
    if (rows == 0) return at("family", f) + ": rowCount is 0";
    if (rows > t.ruleCount - next) return at("family", f) + ": rows exceed the " + t.ruleCount.toString() + " rules of META";
    next += rows;
    const srcStart = load<u32>(rec, 12);
    const srcCount = load<u32>(rec, 16);
    if (rangeExceeds(srcStart, srcCount, t.srccCount)) {
      return at("family", f) + ": srcStart+srcCount exceeds SRCC (" + t.srccCount.toString() + " records)";
    }
    const opStart = load<u32>(rec, 20);
    const opCount = load<u32>(rec, 24);
    if (rangeExceeds(opStart, opCount, t.opclCount)) {
      return at("family", f) + ": opStart+opCount exceeds OPCL (" + t.opclCount.toString() + " records)";
    }
    const condStart = load<u32>(rec, 28);
    const condCount = load<u32>(rec, 32);
    if (rangeExceeds(condStart, condCount, t.predCount)) {
      return at("family", f) + ": condStart+condCount exceeds PRED (" + t.predCount.toString() + " records)";
    }
    const expr = load<u32>(rec, 36);
    if (expr != NO_EXPR) {
      const cond = t.cond;
      if (cond === null) {
        return at("family", f) + ": expr " + expr.toString() + " refers to a condition program, and the table has no EXPR section";
      }
      if (expr >= <u32>cond.set.count) {
        return at("family", f) + ": expr " + expr.toString() + " exceeds the " + cond.set.count.toString() + " programs of EXPR";
      }
    }
    const holeClause = load<u32>(rec, 40);
    const holePred = load<u32>(rec, 44);
    if ((holeClause == NO_HOLE) != (holePred == NO_HOLE)) return at("family", f) + ": holeClause and holePred must both be set or both be none";
    if (holeClause != NO_HOLE) {
      if (holeClause < srcStart || holeClause - srcStart >= srcCount) return at("family", f) + ": holeClause " + holeClause.toString() + " is not one of its source clauses";
      const c = t.srcClause(holeClause);
      const ps = load<u32>(c);
      if (holePred < ps || holePred - ps >= load<u32>(c, 4)) return at("family", f) + ": holePred " + holePred.toString() + " is not in its hole clause";
      if (!isHole(t, holePred)) return at("family", f) + ": holePred " + holePred.toString() + " is not a HOLE predicate";
    }
    // The hole is the only HOLE predicate a family reaches: anywhere else there is no row value to give it.
    for (let c = srcStart; c < srcStart + srcCount; c++) {
      const crec = t.srcClause(c);
      const stray = strayHole(t, load<u32>(crec), load<u32>(crec, 4), c == holeClause ? holePred : NO_HOLE);
      if (stray != NO_HOLE) return at("family", f) + ": HOLE predicate " + stray.toString() + " outside its family's hole";
    }
    for (let c = opStart; c < opStart + opCount; c++) {
      const crec = t.opClause(c);
      const stray = strayHole(t, load<u32>(crec), load<u32>(crec, 4), NO_HOLE);
      if (stray != NO_HOLE) return at("family", f) + ": HOLE predicate " + stray.toString() + " outside its family's hole";
    }
    const stray = strayHole(t, condStart, condCount, NO_HOLE);
    if (stray != NO_HOLE) return at("family", f) + ": HOLE predicate " + stray.toString() + " outside its family's hole";
    if (action == <u8>Action.AUDIT || (flags & FAM_FLAG_DRY_RUN) != 0) {
      shadowRules += rows;
      shadowRanges += <u64>srcCount + 1;
    }
  }
  if (next != t.ruleCount) return "FAMS: families hold " + next.toString() + " rules, META says " + t.ruleCount.toString();
  if (shadowRanges > MAX_SHADOW_RANGES) {
    return "FAMS: AUDIT and dry-run families reach " + shadowRanges.toString() + " source clauses (at most 16777216)";
  }
  t.shadowRuleCount = shadowRules;
  t.shadowScratch = new StaticArray<u32>(<i32>(shadowRanges * 2));
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

/** The restart table of a front-coded list has one u32 per 2^log2 entries. */
function checkRestarts(t: PolicyTable, tag: u32, name: string, count: u32, log2: u32): string {
  const want = <u64>((<u64>count + (<u64>1 << log2) - 1) >> log2) * 4;
  const have = <u64>secLenOf(tag);
  if (have != want) {
    return name + ": " + (have / 4).toString() + " restart offsets, " + count.toString() + " entries need " + (want / 4).toString();
  }
  return "";
}

/**
 * Walks a front-coded list once with every bound checked: restart offsets, varints, shared prefixes, entry
 * lengths. `onEntry` sees each entry decoded in `buf` (before it, `buf` still holds the previous entry beyond
 * the shared prefix, which is what the sortedness check of VALS compares).
 */
class FrontCodedWalk {
  cur: VarintCursor;
  /** Decoded entry (room for maxLen bytes). */
  buf: usize;
  len: u32 = 0;
  i: u32 = 0;
  shared: u32 = 0;
  suffix: usize = 0;
  suffixLen: u32 = 0;
  error: string = "";

  constructor(public list: FrontCoded, public start: usize, public end: usize, public name: string, public maxLen: u32) {
    this.cur = new VarintCursor(start, end);
    this.buf = heap.alloc(<usize>max<u32>(1, min<u32>(maxLen, <u32>(end - start))));
  }

  /** Reads the header and suffix of entry `i` (not yet copied into buf); false with `error` when malformed. */
  step(): bool {
    const i = this.i;
    const interval: u32 = 1 << this.list.log2;
    if ((i & (interval - 1)) == 0) {
      const want = load<u32>(this.list.restarts + (<usize>(i >> this.list.log2) << 2));
      const here = <u32>(this.cur.pos - this.start);
      if (want != here) {
        this.error = this.name + " entry " + i.toString() + ": restart offset " + want.toString() + ", but the entry starts at " + here.toString();
        return false;
      }
    }
    if (!this.cur.next()) return this.bad(this.cur.error);
    const shared = this.cur.value;
    if (!this.cur.next()) return this.bad(this.cur.error);
    const suffix = this.cur.value;
    if ((i & (interval - 1)) == 0 && shared != 0) return this.bad("a restart entry shares " + shared.toString() + " bytes");
    if (shared > this.len) return this.bad("shares " + shared.toString() + " bytes with an entry of " + this.len.toString());
    if (<u64>shared + <u64>suffix > <u64>this.maxLen) return this.bad((<u64>shared + <u64>suffix).toString() + " bytes exceed " + this.maxLen.toString());
    if (<u64>suffix > <u64>(this.end - this.cur.pos)) return this.bad("suffix runs past the end of the section");
    this.shared = shared;
    this.suffix = this.cur.pos;
    this.suffixLen = suffix;
    this.cur.pos += <usize>suffix;
    return true;
  }

  /** Completes entry `i`: appends its suffix to the shared prefix in buf. */
  commit(): void {
    memory.copy(this.buf + <usize>this.shared, this.suffix, <usize>this.suffixLen);
    this.len = this.shared + this.suffixLen;
    this.i++;
  }

  bad(why: string): bool {
    this.error = this.name + " entry " + this.i.toString() + ": " + why;
    return false;
  }

  /** "" when the list ended exactly at the end of its section. */
  finish(): string {
    heap.free(this.buf);
    if (this.error.length != 0) return this.error;
    if (this.cur.pos != this.end) return this.name + ": " + (this.end - this.cur.pos).toString() + " bytes after the last entry";
    return "";
  }
}

/**
 * Rule ids: 1..200 bytes of the id alphabet, unique. Uniqueness uses an open-addressing set of (hash, rule + 1)
 * pairs, held in the index's slot array before the index is built (or in a scratch block when that is smaller).
 */
function validateIds(t: PolicyTable, ix: PrincipalIndex): string {
  const n = t.ruleCount;
  const w = new FrontCodedWalk(t.ids, t.ids.ptr, t.ids.ptr + <usize>secLenOf(TAG_IDS), "IDS", MAX_RULE_ID_BYTES);
  let cap: u32 = n + (n >> 1) + 8;
  let set: usize = ix.borrowSlots(<usize>cap * 8);
  const own = set == 0;
  if (own) set = heap.alloc(<usize>cap * 8);
  memory.fill(set, 0, <usize>cap * 8);
  let err = "";
  for (let r: u32 = 0; r < n; r++) {
    if (!w.step()) break;
    w.commit();
    const p = w.buf;
    const len = w.len;
    if (len == 0) {
      err = at("rule", r) + ": id length 0 is not 1..200 bytes";
      break;
    }
    let bad: i32 = -1;
    for (let i: u32 = 0; i < len; i++) {
      if (unchecked(ID_CHAR[load<u8>(p + <usize>i)]) == 0) {
        bad = <i32>i;
        break;
      }
    }
    if (bad >= 0) {
      err = at("rule", r) + ": id has byte 0x" + hex32(load<u8>(p + <usize>bad)).substring(6) + " at " + bad.toString() + ", outside [A-Za-z0-9._:/-[]#@]";
      break;
    }
    const h = hashFinish(hashBytes(HASH_SEED, p, <i32>len));
    let s = <u32>((<u64>h * <u64>cap) >> 32);
    while (true) {
      const e = set + (<usize>s << 3);
      const v = load<u32>(e, 4);
      if (v == 0) {
        store<u32>(e, h);
        store<u32>(e, r + 1, 4);
        break;
      }
      if (load<u32>(e) == h && t.ids.equals(v - 1, p, <i32>len)) {
        err = at("rule", r) + ": id \"" + String.UTF8.decodeUnsafe(p, <usize>len, false) + "\" is already used by rule " + (v - 1).toString();
        break;
      }
      s++;
      if (s == cap) s = 0;
    }
    if (err.length != 0) break;
  }
  if (own) heap.free(set);
  const fe = w.finish();
  return err.length != 0 ? err : fe;
}

/**
 * Hole values: at most 64 KiB each, strictly increasing by bytes (sorted and unique), so equal values always
 * have the same index. Stores hashBytes(HASH_SEED, value) of each at `valueHash` for the index.
 */
function validateValues(t: PolicyTable, valueHash: usize): string {
  const n = t.valueCount;
  const w = new FrontCodedWalk(t.vals, t.vals.ptr, t.vals.ptr + <usize>secLenOf(TAG_VALS), "VALS", MAX_VALUE_BYTES);
  let err = "";
  for (let v: u32 = 0; v < n; v++) {
    if (!w.step()) break;
    if (v > 0) {
      // Entry v = prev[0..shared) + suffix: it is greater than prev when suffix > prev[shared..] by bytes.
      const c = bytesCompare(w.suffix, <i32>w.suffixLen, w.buf + <usize>w.shared, <i32>(w.len - w.shared));
      if (c <= 0) {
        err = "VALS entry " + v.toString() + ": not greater than entry " + (v - 1).toString() + " (values must be sorted and unique)";
        break;
      }
    }
    w.commit();
    store<u32>(valueHash + (<usize>v << 2), hashBytes(HASH_SEED, w.buf, <i32>w.len));
  }
  const fe = w.finish();
  return err.length != 0 ? err : fe;
}
