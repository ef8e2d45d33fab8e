// Stage 4, encode: the only writer of the policy table (docs/table-format.md, version 3).
//
// The IR is a flat list of rules; the table stores them as rule families (consecutive rules that differ only in
// their id and the one exact value of an identity predicate share one template), front-coded rule ids and hole
// values, and template records interned so identical ranges are stored once.
//
// Deterministic by construction: the IR is normalized first, families are formed greedily in rule order, records
// and strings are interned in first-use order, sections are written in tag order, and DEFLATE at a fixed level
// gives the same bytes for the same input on the same zlib. Same IR => same body => same tableHash.

import { createHash } from "node:crypto";
import zlib from "node:zlib";
import { decodeSection } from "../cel/section.ts";
import {
  ACTION_CODE,
  FIELD_CODE,
  PATTERN_CODE,
  RULE_ID_PATTERN,
  cidrBytes,
  compareBytes,
  normalizeIR,
  type ClauseIR,
  type PatternIR,
  type PredicateIR,
  type RuleIR,
  type TableIR,
} from "./ir.ts";

import { globProblem } from "../vocabulary/glob.ts";

export const MAGIC = [0x53, 0x50, 0x41, 0x5a]; // "SPAZ"
export const VERSION = 3;
/** The oldest version readers accept (version 2: no field above SNI, no GLOB or CIDR). */
export const OLDEST_VERSION = 2;
export const FLAG_DEFLATE = 1;
/** docs/table-format.md, "Byte-planar records": records stored byte plane by byte plane so DEFLATE finds repeats. */
export const FLAG_PLANAR = 2;
export const ENVELOPE_HEADER = 24;
export const MAX_BODY = 64 * 1024 * 1024;
export const MAX_RULES = 1 << 24;
export const NO_EXPR = 0xffffffff;
/** "no hole" in FAMS.holeClause / holePred. */
export const NO_HOLE = 0xffffffff;
/** PRED flags. */
export const PRED_IGNORE_CASE = 1;
export const PRED_HOLE = 2;
export const PRED_HOST_NAME = 4;
/** The longest hole value (an identity longer than the 64 KiB the engine parses can never match). */
export const MAX_VALUE_BYTES = 65536;
export const MAX_RULE_ID_BYTES = 200;
/** Restart intervals (log2) the compiler writes: ids are read only to report, values on every indexed decision. */
export const ID_RESTART_LOG2 = 4;
export const VALUE_RESTART_LOG2 = 3;

export const TAG = {
  STRS: 1,
  META: 2,
  FAMS: 3,
  SRCC: 4,
  OPCL: 5,
  PRED: 6,
  PATS: 7,
  SCHM: 8,
  SKEY: 9,
  IDS: 10,
  IDSX: 11,
  VALS: 12,
  VALX: 13,
  ROWS: 14,
  /** CEL condition programs (docs/cel.md "EXPR section"): present only when some rule has a condition. */
  EXPR: 15,
  /** Deny replies (status, body, headers) and their headers: present only when some reply is not the default. */
  RESP: 16,
  RHDR: 17,
} as const;
/** Sections every table has (EXPR, RESP and RHDR are optional). */
export const OPTIONAL_TAGS: readonly number[] = [TAG.EXPR, TAG.RESP, TAG.RHDR];
export const REQUIRED_TAGS: readonly number[] = Object.values(TAG).filter((t) => !OPTIONAL_TAGS.includes(t));
/** Record size of every section by tag (1 = a byte stream). */
export const RECORD_SIZE: Record<number, number> = {
  1: 1, 2: 32, 3: 48, 4: 8, 5: 8, 6: 24, 7: 12, 8: 16, 9: 8, 10: 1, 11: 4, 12: 1, 13: 4, 14: 1, 15: 1, 16: 20, 17: 16,
};
/** META.flags bit 0: grpcMessages "first". */
export const META_FLAG_GRPC_FIRST = 1;
/** META.flags bit 1: allowed requests are sampled for the record; META offset 28 holds the threshold. */
export const META_FLAG_SAMPLE_ALLOWS = 2;
/** FAMS.flags: bit 0 dry-run, bit 1 record every allow, bit 2 per-rule metrics. */
export const FAM_DRY_RUN = 1;
export const FAM_RECORD_ALLOWS = 2;
export const FAM_METRICS = 4;
/** RESP.flags bit 0: the reply carries the request's x-request-id; bit 1: the default deny's reply (one record at most). */
export const RESP_REQUEST_ID = 1;
export const RESP_DEFAULT = 2;
/** RESP.grpcStatus meaning "7, PERMISSION_DENIED" (not given). */
export const RESP_GRPC_DEFAULT = 0xff;
/** The largest META.maxBodyBytes the engine accepts. */
export const MAX_REQUEST_BODY_BYTES = 64 * 1024 * 1024;
export const TAG_NAME: Record<number, string> = Object.fromEntries(Object.entries(TAG).map(([k, v]) => [v, k]));

/** The encoded table and what callers report about it. */
export interface EncodedTable {
  /** the row-major body of section 3 (what the hash describes) */
  body: Uint8Array;
  /** the envelope of section 2 (header + compressed, byte-planar payload) */
  envelope: Uint8Array;
  /** first 8 bytes of SHA-256(body), 16 lower-case hex digits */
  tableHash: string;
  /** the plugin configuration string of section 1, without a trailing newline */
  config: string;
  /** how the rules were grouped (an encoding detail, reported for tests and size work) */
  families: number;
}

/** A growable little-endian byte writer. */
class Writer {
  buf: Buffer;
  len = 0;
  constructor(initial = 1024) {
    this.buf = Buffer.alloc(initial);
  }
  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
  u8(v: number): void {
    this.room(1);
    this.buf[this.len++] = v;
  }
  u16(v: number): void {
    this.room(2);
    this.buf.writeUInt16LE(v, this.len);
    this.len += 2;
  }
  u32(v: number): void {
    this.room(4);
    this.buf.writeUInt32LE(v >>> 0, this.len);
    this.len += 4;
  }
  /** Unsigned LEB128. */
  varint(v: number): void {
    let x = v >>> 0;
    while (x >= 0x80) {
      this.u8((x & 0x7f) | 0x80);
      x >>>= 7;
    }
    this.u8(x);
  }
  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  zeros(n: number): void {
    this.room(n);
    this.buf.fill(0, this.len, this.len + n);
    this.len += n;
  }
  done(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}

/** The string pool: every distinct string stored once, in order of first use. */
class StringPool {
  private readonly index = new Map<string, [number, number]>();
  private readonly w = new Writer(4096);
  ref(s: string): [number, number] {
    if (s.length === 0) return [0, 0];
    return this.refBytes(s, () => Buffer.from(s, "utf8"));
  }
  /** A pattern's value: CIDR patterns are stored as bytes (docs/table-format.md, PATS), the rest as UTF-8. */
  refPattern(p: PatternIR): [number, number] {
    if (p.kind !== "cidr") return this.ref(p.value);
    return this.refBytes("\u0001cidr:" + p.value, () => cidrBytes(p.value));
  }
  private refBytes(key: string, bytes: () => Buffer): [number, number] {
    let r = this.index.get(key);
    if (!r) {
      const b = bytes();
      r = [this.w.len, b.length];
      this.w.bytes(b);
      this.index.set(key, r);
    }
    return r;
  }
  done(): Buffer {
    return this.w.done();
  }
}

/**
 * A front-coded string list (docs/table-format.md "Front-coded lists"): entry i is `varint shared, varint
 * suffixLen, suffix`, sharing `shared` leading bytes with entry i-1; every 2^log2-th entry is a restart point
 * (shared 0) whose byte offset goes into the restart table.
 */
export function frontCode(strings: Uint8Array[], log2: number): { entries: Buffer; restarts: Buffer } {
  const entries = new Writer(1024);
  const restarts = new Writer(64);
  const interval = 1 << log2;
  let prev: Uint8Array = new Uint8Array(0);
  strings.forEach((s, i) => {
    let shared = 0;
    if (i % interval === 0) {
      restarts.u32(entries.len);
    } else {
      const n = Math.min(prev.length, s.length);
      while (shared < n && prev[shared] === s[shared]) shared++;
    }
    entries.varint(shared);
    entries.varint(s.length - shared);
    entries.bytes(s.subarray(shared));
    prev = s;
  });
  return { entries: entries.done(), restarts: restarts.done() };
}

function checkPredicate(p: PredicateIR, where: string): void {
  if (!(p.field in FIELD_CODE)) throw new Error(`${where}: unknown field ${JSON.stringify(p.field)}`);
  if (p.patterns.length === 0) throw new Error(`${where}: a predicate needs at least one pattern`);
  const needsArg = p.field === "attribute" || p.field === "header" || p.field === "jwtClaim";
  if (needsArg !== (p.arg.length > 0)) throw new Error(`${where}: arg ${JSON.stringify(p.arg)} does not fit field ${p.field}`);
  const ipField = p.field === "remoteIp" || p.field === "destinationIp";
  if (p.field === "requestPrincipal" && p.patterns.length % 2 !== 0) throw new Error(`${where}: requestPrincipal patterns come in (iss, sub) pairs`);
  for (const pat of p.patterns) {
    if (pat.kind === "template" && p.field !== "path") throw new Error(`${where}: templates are for paths only`);
    if ((pat.kind === "cidr") !== ipField) throw new Error(`${where}: CIDR patterns go with IP fields, and only they`);
    if (pat.kind === "glob") {
      const problem = globProblem(pat.value);
      if (problem) throw new Error(`${where}: glob ${JSON.stringify(pat.value)}: ${problem}`);
    }
    if (pat.kind === "present" && pat.value !== "") throw new Error(`${where}: a present pattern has no value`);
    if (pat.kind !== "present" && pat.kind !== "exact" && pat.kind !== "glob" && pat.value === "") {
      throw new Error(`${where}: an empty ${pat.kind} pattern`);
    }
  }
}

// ---- rule families ----

/** Where a family's hole is: source clause `clause`, predicate `pred` of that clause. */
export interface HolePos {
  clause: number;
  pred: number;
}

/** A run of consecutive rules stored as one template plus rows (docs/table-format.md "Rule families"). */
export interface Family {
  first: number;
  count: number;
  /** null: the rows differ only in their ids */
  hole: HolePos | null;
}

/** Whether a predicate can be a family's hole: an identity predicate with exactly one EXACT pattern, not negated. */
export function holeEligible(p: PredicateIR): boolean {
  return (
    (p.field === "principal" || p.field === "attribute" || p.field === "trustDomain") &&
    !p.negate &&
    !p.ignoreCase &&
    p.patterns.length === 1 &&
    p.patterns[0].kind === "exact" &&
    Buffer.byteLength(p.patterns[0].value, "utf8") <= MAX_VALUE_BYTES
  );
}

/** The structure of a rule without its id, with the predicate at `hole` (if any) reduced to its field and arg. */
function shapeOf(r: RuleIR, hole: HolePos | null): string {
  const sources = r.sources.map((c, ci) => ({
    predicates: c.predicates.map((p, pi) =>
      hole !== null && hole.clause === ci && hole.pred === pi ? { hole: p.field, arg: p.arg } : p,
    ),
  }));
  return JSON.stringify([r.action, r.dryRun, r.expr, sources, r.operations, r.conditions, r.recordAllows ?? false, r.metrics ?? false, r.denyResponse ?? -1]);
}

function holeValue(r: RuleIR, h: HolePos): string {
  return r.sources[h.clause].predicates[h.pred].patterns[0].value;
}

function eligibleHoles(r: RuleIR): HolePos[] {
  const out: HolePos[] = [];
  r.sources.forEach((c, ci) => c.predicates.forEach((p, pi) => holeEligible(p) && out.push({ clause: ci, pred: pi })));
  return out;
}

/**
 * Groups consecutive rules into families, greedily in rule order: a family grows while the next rule has the
 * family's shape; two rules start a hole family when they differ only in the value of one eligible predicate.
 * The rows of a hole family have distinct values (the engine relies on it: one lookup reaches at most one row).
 */
export function formFamilies(rules: RuleIR[]): Family[] {
  const full = rules.map((r) => shapeOf(r, null));
  const out: Family[] = [];
  let i = 0;
  while (i < rules.length) {
    let end = i + 1;
    let hole: HolePos | null = null;
    if (end < rules.length && full[end] === full[i]) {
      while (end < rules.length && full[end] === full[i]) end++;
    } else if (end < rules.length) {
      for (const h of eligibleHoles(rules[i])) {
        const shape = shapeOf(rules[i], h);
        const fits = (r: RuleIR) => {
          const c = r.sources[h.clause];
          const p = c?.predicates[h.pred];
          return p !== undefined && holeEligible(p) && shapeOf(r, h) === shape;
        };
        if (!fits(rules[end])) continue;
        hole = h;
        const values = new Set([holeValue(rules[i], h)]);
        while (end < rules.length && fits(rules[end]) && !values.has(holeValue(rules[end], h))) {
          values.add(holeValue(rules[end], h));
          end++;
        }
        break;
      }
    }
    out.push({ first: i, count: end - i, hole });
    i = end;
  }
  return out;
}

/** Writes the row-major body of a (normalized) IR. Throws on an IR the format cannot hold. */
export function encodeBody(input: TableIR): Buffer {
  return encodeBodyWithFamilies(input).body;
}

function encodeBodyWithFamilies(input: TableIR): { body: Buffer; families: number } {
  const ir = normalizeIR(input);
  if (ir.rules.length > MAX_RULES) throw new Error(`too many rules: ${ir.rules.length} (at most ${MAX_RULES})`);
  const ids = new Set<string>();
  for (const r of ir.rules) {
    if (!RULE_ID_PATTERN.test(r.id)) throw new Error(`invalid rule id ${JSON.stringify(r.id)}`);
    if (ids.has(r.id)) throw new Error(`duplicate rule id ${JSON.stringify(r.id)}`);
    ids.add(r.id);
    const where = `rule ${JSON.stringify(r.id)}`;
    for (const c of [...r.sources, ...r.operations]) for (const p of c.predicates) checkPredicate(p, where);
    for (const p of r.conditions) checkPredicate(p, where);
  }
  if (ir.defaultKind === 2 && ir.defaultAction !== "deny") throw new Error("defaultKind 2 implies defaultAction deny");
  const programCount = ir.expr === null ? 0 : exprProgramCount(ir.expr);
  for (const r of ir.rules) {
    if (r.expr !== null && (!Number.isInteger(r.expr) || r.expr < 0 || r.expr >= programCount)) {
      throw new Error(`rule ${JSON.stringify(r.id)}: expr ${r.expr} is not one of the ${programCount} programs`);
    }
  }
  if (ir.maxBodyBytes < 0 || ir.maxBodyBytes > MAX_REQUEST_BODY_BYTES || !Number.isInteger(ir.maxBodyBytes)) {
    throw new Error(`maxBodyBytes ${ir.maxBodyBytes} is not 0..${MAX_REQUEST_BODY_BYTES}`);
  }

  const families = formFamilies(ir.rules);

  // Hole values: one sorted, deduplicated list for the whole table.
  const valueSet = new Set<string>();
  for (const f of families) {
    if (f.hole === null) continue;
    for (let k = 0; k < f.count; k++) valueSet.add(holeValue(ir.rules[f.first + k], f.hole));
  }
  const values = [...valueSet].sort(compareBytes);
  const valueIndex = new Map(values.map((v, i) => [v, i]));

  // Strings are pooled group by group (label, args, pattern values, schemas): neighbours alike compress better.
  const pool = new StringPool();
  const label = pool.ref(ir.label);
  const allPreds: PredicateIR[] = [];
  for (const f of families) {
    const r = ir.rules[f.first];
    r.sources.forEach((c, ci) => c.predicates.forEach((p, pi) => {
      // A hole's value is per row (VALS); only its arg goes to the pool.
      if (f.hole !== null && f.hole.clause === ci && f.hole.pred === pi) pool.ref(p.arg);
      else allPreds.push(p);
    }));
    for (const c of r.operations) allPreds.push(...c.predicates);
    allPreds.push(...r.conditions);
  }
  for (const p of allPreds) pool.ref(p.arg);
  for (const p of allPreds) for (const pat of p.patterns) pool.refPattern(pat);
  for (const s of ir.schemas) {
    pool.ref(s.trustDomain);
    for (const k of s.keys) pool.ref(k);
  }

  // Template records, interned by content: identical ranges (the operations every rule of a policy shares, the
  // hole clause of every family) are written once. An empty range is (0, 0).
  const pats = new Writer();
  const pred = new Writer();
  const srcc = new Writer();
  const opcl = new Writer();
  const patRanges = new Map<string, number>();
  const predRanges = new Map<string, number>();
  const srcRanges = new Map<string, number>();
  const opRanges = new Map<string, number>();
  let nPat = 0;
  let nPred = 0;
  let nSrc = 0;
  let nOp = 0;

  const patRange = (patterns: PatternIR[]): number => {
    if (patterns.length === 0) return 0;
    const key = JSON.stringify(patterns.map((p) => [p.kind, p.value]));
    let start = patRanges.get(key);
    if (start === undefined) {
      start = nPat;
      for (const p of patterns) {
        const v = pool.refPattern(p);
        pats.u8(PATTERN_CODE[p.kind]);
        pats.zeros(3);
        pats.u32(v[0]);
        pats.u32(v[1]);
        nPat++;
      }
      patRanges.set(key, start);
    }
    return start;
  };
  /** `hole`: index of the predicate (in `preds`) that is the family's hole, or -1. */
  const predRange = (preds: PredicateIR[], hole: number): number => {
    if (preds.length === 0) return 0;
    const recs = preds.map((p, i) => {
      const isHole = i === hole;
      let exactCount = 0;
      // requestPrincipal patterns are (iss, sub) pairs: no exact block.
      while (!isHole && p.field !== "requestPrincipal" && exactCount < p.patterns.length && p.patterns[exactCount].kind === "exact") exactCount++;
      const patStart = isHole ? 0 : patRange(p.patterns);
      return [FIELD_CODE[p.field], p.negate ? 1 : 0, (p.ignoreCase ? PRED_IGNORE_CASE : 0) | (isHole ? PRED_HOLE : 0) | (p.hostName ? PRED_HOST_NAME : 0), p.arg, patStart, isHole ? 0 : p.patterns.length, exactCount] as const;
    });
    const key = JSON.stringify(recs);
    let start = predRanges.get(key);
    if (start === undefined) {
      start = nPred;
      for (const [field, negate, flags, arg, patStart, patCount, exactCount] of recs) {
        const a = pool.ref(arg);
        pred.u8(field);
        pred.u8(negate);
        pred.u8(flags);
        pred.u8(0);
        pred.u32(a[0]);
        pred.u32(a[1]);
        pred.u32(patStart);
        pred.u32(patCount);
        pred.u32(exactCount);
        nPred++;
      }
      predRanges.set(key, start);
    }
    return start;
  };
  const clauseRange = (clauses: ClauseIR[], hole: HolePos | null, w: Writer, seen: Map<string, number>, count: () => number, bump: () => void): number => {
    if (clauses.length === 0) return 0;
    const recs = clauses.map((c, ci) => [predRange(c.predicates, hole !== null && hole.clause === ci ? hole.pred : -1), c.predicates.length]);
    for (const r of recs) if (r[1] === 0) r[0] = 0;
    const key = JSON.stringify(recs);
    let start = seen.get(key);
    if (start === undefined) {
      start = count();
      for (const [ps, pn] of recs) {
        w.u32(ps);
        w.u32(pn);
        bump();
      }
      seen.set(key, start);
    }
    return start;
  };

  const fams = new Writer(48 * families.length + 8);
  for (const f of families) {
    const r = ir.rules[f.first];
    const srcStart = clauseRange(r.sources, f.hole, srcc, srcRanges, () => nSrc, () => nSrc++);
    const opStart = clauseRange(r.operations, null, opcl, opRanges, () => nOp, () => nOp++);
    const condStart = predRange(r.conditions, -1);
    fams.u8(ACTION_CODE[r.action]);
    fams.u8((r.dryRun ? FAM_DRY_RUN : 0) | (r.recordAllows ? FAM_RECORD_ALLOWS : 0) | (r.metrics ? FAM_METRICS : 0));
    fams.u16(r.denyResponse === undefined ? 0 : r.denyResponse + 1);
    fams.u32(f.first);
    fams.u32(f.count);
    fams.u32(srcStart);
    fams.u32(r.sources.length);
    fams.u32(opStart);
    fams.u32(r.operations.length);
    fams.u32(condStart);
    fams.u32(r.conditions.length);
    fams.u32(r.expr === null ? NO_EXPR : r.expr);
    if (f.hole === null) {
      fams.u32(NO_HOLE);
      fams.u32(NO_HOLE);
    } else {
      const clause = srcStart + f.hole.clause;
      fams.u32(clause);
      fams.u32(srcc.buf.readUInt32LE(clause * 8) + f.hole.pred);
    }
  }

  // Rows: per hole family, the VALS index of each row as a zig-zag delta from the previous row's (0 before the
  // first), so runs of rules in value order cost one byte each.
  const rows = new Writer(families.length + 16);
  for (const f of families) {
    if (f.hole === null) continue;
    let prev = 0;
    for (let k = 0; k < f.count; k++) {
      const v = valueIndex.get(holeValue(ir.rules[f.first + k], f.hole))!;
      const d = v - prev;
      rows.varint(d >= 0 ? d * 2 : -d * 2 - 1);
      prev = v;
    }
  }

  const idList = frontCode(ir.rules.map((r) => Buffer.from(r.id, "utf8")), ID_RESTART_LOG2);
  const valList = frontCode(values.map((v) => Buffer.from(v, "utf8")), VALUE_RESTART_LOG2);

  const schm = new Writer();
  const skey = new Writer();
  let nKey = 0;
  const tds = new Set<string>();
  for (const s of ir.schemas) {
    if (tds.has(s.trustDomain)) throw new Error(`two schemas for trust domain ${JSON.stringify(s.trustDomain)}`);
    tds.add(s.trustDomain);
    const td = pool.ref(s.trustDomain);
    schm.u32(td[0]);
    schm.u32(td[1]);
    schm.u32(s.keys.length ? nKey : 0);
    schm.u32(s.keys.length);
    for (const k of s.keys) {
      const kr = pool.ref(k);
      skey.u32(kr[0]);
      skey.u32(kr[1]);
      nKey++;
    }
  }

  const meta = new Writer(32);
  meta.u8(ir.defaultAction === "deny" ? 1 : 0);
  meta.u8(ir.defaultKind);
  meta.u8(ID_RESTART_LOG2);
  meta.u8(VALUE_RESTART_LOG2);
  meta.u32(ir.maxBodyBytes);
  meta.u32(label[0]);
  meta.u32(label[1]);
  meta.u32(ir.rules.length);
  meta.u32(values.length);
  // Offset 28: with flag bit 1, an allowed request is recorded when the hash of its x-request-id is below this.
  const sample = ir.allowSampleRate !== undefined && ir.allowSampleRate < 1;
  meta.u32((ir.grpcFirst ? META_FLAG_GRPC_FIRST : 0) | (sample ? META_FLAG_SAMPLE_ALLOWS : 0));
  meta.u32(sample ? sampleThreshold(ir.allowSampleRate!) : 0);

  const resp = new Writer();
  const rhdr = new Writer();
  let nHdr = 0;
  (ir.denyResponses ?? []).forEach((d, i) => {
    if (!Number.isInteger(d.status) || d.status < 300 || d.status > 599) throw new Error(`deny response ${i}: status ${d.status} is not 300..599`);
    resp.u16(d.status);
    resp.u8(d.grpcStatus ?? RESP_GRPC_DEFAULT);
    resp.u8((d.requestId ? RESP_REQUEST_ID : 0) | (ir.defaultDenyResponse === i ? RESP_DEFAULT : 0));
    const body = pool.ref(d.body);
    resp.u32(body[0]);
    resp.u32(body[1]);
    resp.u32(d.headers.length ? nHdr : 0);
    resp.u32(d.headers.length);
    for (const [k, v] of d.headers) {
      const kr = pool.ref(k);
      const vr = pool.ref(v);
      rhdr.u32(kr[0]);
      rhdr.u32(kr[1]);
      rhdr.u32(vr[0]);
      rhdr.u32(vr[1]);
      nHdr++;
    }
  });

  const sections: [number, Buffer][] = [
    [TAG.STRS, pool.done()],
    [TAG.META, meta.done()],
    [TAG.FAMS, fams.done()],
    [TAG.SRCC, srcc.done()],
    [TAG.OPCL, opcl.done()],
    [TAG.PRED, pred.done()],
    [TAG.PATS, pats.done()],
    [TAG.SCHM, schm.done()],
    [TAG.SKEY, skey.done()],
    [TAG.IDS, idList.entries],
    [TAG.IDSX, idList.restarts],
    [TAG.VALS, valList.entries],
    [TAG.VALX, valList.restarts],
    [TAG.ROWS, rows.done()],
  ];
  if (ir.expr !== null) sections.push([TAG.EXPR, Buffer.from(ir.expr)]);
  if (ir.denyResponses?.length) sections.push([TAG.RESP, resp.done()], [TAG.RHDR, rhdr.done()]);
  const dirLen = 4 + 12 * sections.length;
  let total = dirLen;
  for (const [, b] of sections) total += b.length;
  if (total > MAX_BODY) throw new Error(`table body of ${total} bytes exceeds the ${MAX_BODY}-byte limit`);
  const out = new Writer(total);
  out.u32(sections.length);
  let off = dirLen;
  for (const [tag, b] of sections) {
    out.u32(tag);
    out.u32(off);
    out.u32(b.length);
    off += b.length;
  }
  for (const [, b] of sections) out.bytes(b);
  return { body: out.done(), families: families.length };
}

/** A section of the directory. */
export interface SectionEntry {
  tag: number;
  offset: number;
  length: number;
}

/** Reads the section directory at the start of a body (no validation beyond bounds of the directory itself). */
export function readDirectory(body: Uint8Array): SectionEntry[] {
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
  if (body.length < 4) throw new Error("body shorter than its section count");
  const n = dv.getUint32(0, true);
  if (n > 64 || 4 + 12 * n > body.length) throw new Error(`section directory of ${n} entries does not fit the body`);
  const out: SectionEntry[] = [];
  for (let i = 0; i < n; i++) {
    const o = 4 + 12 * i;
    out.push({ tag: dv.getUint32(o, true), offset: dv.getUint32(o + 4, true), length: dv.getUint32(o + 8, true) });
  }
  return out;
}

/**
 * Converts between the row-major body and its byte-planar storage (flag bit 1). `toPlanar` = true goes
 * row-major -> planar. Sections must already be checked to lie inside the body with whole records.
 */
export function transposeSections(body: Uint8Array, sections: SectionEntry[], toPlanar: boolean): Uint8Array {
  const out = Uint8Array.from(body);
  for (const s of sections) {
    const R = RECORD_SIZE[s.tag];
    if (!R || R === 1) continue;
    const n = s.length / R;
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < R; k++) {
        const row = s.offset + i * R + k;
        const plane = s.offset + k * n + i;
        if (toPlanar) out[plane] = body[row];
        else out[row] = body[plane];
      }
    }
  }
  return out;
}

/** The program count of an EXPR section (decoded as docs/cel.md says; the engine validates the programs' code). */
export function exprProgramCount(section: Uint8Array): number {
  return decodeSection(section).programs.length;
}

export function crc32(data: Uint8Array): number {
  // node:zlib has crc32 since Node 20.15 (the project needs Node >= 20; the CI image has 20.20).
  return zlib.crc32(data) >>> 0;
}

export function sha256Prefix(data: Uint8Array): Buffer {
  return createHash("sha256").update(data).digest().subarray(0, 8);
}

/**
 * Wraps a body into the envelope: header, then the byte-planar body compressed with raw DEFLATE level 9. The
 * hash describes the row-major body (one table, one hash); the CRC describes the payload as stored, so the
 * engine checks it before inflating, over the compressed bytes.
 */
export function encodeEnvelope(body: Uint8Array, opts: { planar?: boolean; deflate?: boolean } = {}): Uint8Array {
  const planar = opts.planar ?? true;
  const deflate = opts.deflate ?? true;
  const stored = planar ? transposeSections(body, readDirectory(body), true) : body;
  const payload = deflate ? zlib.deflateRawSync(stored, { level: 9 }) : Buffer.from(stored);
  const env = Buffer.alloc(ENVELOPE_HEADER + payload.length);
  env.set(MAGIC, 0);
  env.writeUInt16LE(VERSION, 4);
  env.writeUInt16LE((deflate ? FLAG_DEFLATE : 0) | (planar ? FLAG_PLANAR : 0), 6);
  sha256Prefix(body).copy(env, 8);
  env.writeUInt32LE(body.length, 16);
  env.writeUInt32LE(crc32(payload), 20);
  env.set(payload, ENVELOPE_HEADER);
  return env;
}

/**
 * META's sampling threshold for `allowSampleRate` r: an allowed request is recorded when the 32-bit hash of its
 * x-request-id is below it, so r of them on average (r = 0: none).
 */
export function sampleThreshold(rate: number): number {
  return Math.max(0, Math.min(0xffffffff, Math.round(rate * 2 ** 32)));
}

/** The plugin configuration string of docs/table-format.md section 1. */
export function configString(envelope: Uint8Array): string {
  return `{"table":"${Buffer.from(envelope).toString("base64")}"}`;
}

/** Encodes an IR into body, envelope, hash and configuration string. */
export function encodeTable(ir: TableIR): EncodedTable {
  const { body, families } = encodeBodyWithFamilies(ir);
  const envelope = encodeEnvelope(body);
  return { body, envelope, tableHash: sha256Prefix(body).toString("hex"), config: configString(envelope), families };
}
