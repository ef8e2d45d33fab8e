// Test-only helpers: a small table builder that writes bodies and envelopes by docs/table-format.md without the
// TypeScript compiler, a RequestView over fixed data, and a seeded random generator.

import { crc32 } from "../../assembly/engine/crc32";
import { Slice } from "../../assembly/engine/bytes";
import { BodyState, RequestView } from "../../assembly/engine/request";
import { SpiffeId } from "../../assembly/engine/spiffe";
import { decodeEnvelope } from "../../assembly/engine/table/load";
import { PolicyTable, TableResult } from "../../assembly/engine/table/policy-table";
import { Decision, DecisionKind } from "../../assembly/engine/decision";
import { writeDenyDetails, writeReason, writeExplain } from "../../assembly/engine/explain";
import { ByteWriter } from "../../assembly/engine/writer";
import { EXPR_SECTION_VERSION } from "../../assembly/engine/cel/program";

// ---- deterministic data ----

const TOKENS: string[] = ["spiffe://", "cluster.local", "/ns/", "shop", "/sa/", "orders", " allow", " deny", " ", "\n", "rule-", "{**}"];

/** The same generator as the fixture script: text for the DEFLATE cases. */
export function sampleText(n: i32, seed: u32): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  let o = 0;
  while (o < n) {
    x = x * 1103515245 + 12345;
    const r = x >>> 16;
    if (r % 7 == 0) {
      out[o++] = <u8>(48 + (r % 10));
      continue;
    }
    const t = TOKENS[r % <u32>TOKENS.length];
    for (let i = 0; i < t.length && o < n; i++) out[o++] = <u8>t.charCodeAt(i);
  }
  return out;
}

export function xorshiftBytes(n: i32, seed: u32): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = <u8>x;
  }
  return out;
}

/** A small seeded PRNG (xorshift32) for randomized tests. */
export class Rng {
  constructor(public x: u32) {
    if (x == 0) this.x = 1;
  }
  next(): u32 {
    let x = this.x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.x = x;
    return x;
  }
  below(n: i32): i32 {
    return <i32>(this.next() % <u32>n);
  }
  chance(percent: i32): bool {
    return this.below(100) < percent;
  }
}

// ---- byte helpers ----

export function bytesOf(s: string): Uint8Array {
  return Uint8Array.wrap(String.UTF8.encode(s, false));
}

export function ptrOf(a: Uint8Array): usize {
  return a.dataStart;
}

// ---- table builder ----

export const EXACT: u8 = 0;
export const PREFIX: u8 = 1;
export const SUFFIX: u8 = 2;
export const PRESENT: u8 = 3;
export const TEMPLATE: u8 = 4;

export const F_PRINCIPAL: u8 = 1;
export const F_TD: u8 = 2;
export const F_ATTR: u8 = 3;
export const F_METHOD: u8 = 4;
export const F_PATH: u8 = 5;
export const F_HOST: u8 = 6;
export const F_PORT: u8 = 7;
export const F_HEADER: u8 = 8;
export const F_SNI: u8 = 9;

export const ALLOW: u8 = 0;
export const DENY: u8 = 1;
export const AUDIT: u8 = 2;

export class PatB {
  constructor(public kind: u8, public value: string) {}
}
export function ex(v: string): PatB {
  return new PatB(EXACT, v);
}
export function pre(v: string): PatB {
  return new PatB(PREFIX, v);
}
export function suf(v: string): PatB {
  return new PatB(SUFFIX, v);
}
export function any(): PatB {
  return new PatB(PRESENT, "");
}
export function tpl(v: string): PatB {
  return new PatB(TEMPLATE, v);
}

export class PredB {
  constructor(public field: u8, public arg: string, public pats: PatB[], public negate: bool = false, public ignoreCase: bool = false) {}
}
export function pred(field: u8, pats: PatB[], negate: bool = false): PredB {
  return new PredB(field, "", pats, negate, field == F_HOST);
}
export function attr(key: string, pats: PatB[], negate: bool = false): PredB {
  return new PredB(F_ATTR, key, pats, negate, false);
}
export function header(name: string, pats: PatB[], negate: bool = false): PredB {
  return new PredB(F_HEADER, name, pats, negate, false);
}

export class ClauseB {
  constructor(public preds: PredB[]) {}
}
export function clause(preds: PredB[]): ClauseB {
  return new ClauseB(preds);
}

export class RuleB {
  /** Index of the rule's CEL condition program in TableB.programs; -1 = none. */
  expr: i32 = -1;
  constructor(
    public id: string, public action: u8, public sources: ClauseB[], public ops: ClauseB[], public conds: PredB[],
    public dryRun: bool = false,
  ) {}
  withExpr(i: i32): RuleB {
    this.expr = i;
    return this;
  }
}
export function rule(id: string, action: u8, sources: ClauseB[], ops: ClauseB[] = [], conds: PredB[] = [], dryRun: bool = false): RuleB {
  return new RuleB(id, action, sources, ops, conds, dryRun);
}

export class SchemaB {
  constructor(public td: string, public keys: string[]) {}
}

export class Buf {
  data: Uint8Array = new Uint8Array(256);
  len: i32 = 0;
  ensure(n: i32): void {
    if (this.len + n <= this.data.length) return;
    let cap = this.data.length * 2;
    while (cap < this.len + n) cap *= 2;
    const d = new Uint8Array(cap);
    d.set(this.data.subarray(0, this.len));
    this.data = d;
  }
  u8(v: u32): void {
    this.ensure(1);
    this.data[this.len++] = <u8>v;
  }
  u16(v: u32): void {
    this.u8(v & 0xff);
    this.u8((v >> 8) & 0xff);
  }
  u32(v: u32): void {
    this.u16(v & 0xffff);
    this.u16(v >>> 16);
  }
  varint(v: u32): void {
    while (v >= 0x80) {
      this.u8((v & 0x7f) | 0x80);
      v >>>= 7;
    }
    this.u8(v);
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.data.set(b, this.len);
    this.len += b.length;
  }
  result(): Uint8Array {
    return this.data.slice(0, this.len);
  }
}

function compareStrings(a: string, b: string): i32 {
  const x = bytesOf(a);
  const y = bytesOf(b);
  const n = x.length < y.length ? x.length : y.length;
  for (let i = 0; i < n; i++) if (x[i] != y[i]) return <i32>x[i] - <i32>y[i];
  return x.length - y.length;
}

/** Front-codes `strings` (docs/table-format.md "Front-coded lists") into `entries` and its restart table. */
export function frontCode(strings: string[], log2: i32, entries: Buf, restarts: Buf): void {
  let prev = new Uint8Array(0);
  for (let i = 0; i < strings.length; i++) {
    const s = bytesOf(strings[i]);
    let shared = 0;
    if ((i & ((1 << log2) - 1)) == 0) {
      restarts.u32(<u32>entries.len);
    } else {
      const n = prev.length < s.length ? prev.length : s.length;
      while (shared < n && prev[shared] == s[shared]) shared++;
    }
    entries.varint(<u32>shared);
    entries.varint(<u32>(s.length - shared));
    entries.bytes(s.subarray(shared));
    prev = s;
  }
}

/** A run of consecutive rules written as one family: rules first..first+count-1, the hole at (clause, pred). */
export class FamB {
  constructor(public first: i32, public count: i32, public holeClause: i32, public holePred: i32) {}
}

/** Section tags and record sizes of docs/table-format.md version 3. */
export const T_STRS: u32 = 1;
export const T_META: u32 = 2;
export const T_FAMS: u32 = 3;
export const T_SRCC: u32 = 4;
export const T_OPCL: u32 = 5;
export const T_PRED: u32 = 6;
export const T_PATS: u32 = 7;
export const T_SCHM: u32 = 8;
export const T_SKEY: u32 = 9;
export const T_IDS: u32 = 10;
export const T_IDSX: u32 = 11;
export const T_VALS: u32 = 12;
export const T_VALX: u32 = 13;
export const T_ROWS: u32 = 14;
export const T_EXPR: u32 = 15;
const RECORD_SIZES: i32[] = [0, 1, 32, 48, 8, 8, 24, 12, 16, 8, 1, 4, 1, 4, 1, 1];

/**
 * A hand-assembled CEL program record (docs/cel.md "EXPR section"): constants are strings, bools or ints given as
 * text ("s:x-h", "b:1", "i:7"), `code` the instruction bytes.
 */
export function programRecord(maxStack: u32, consts: string[], code: u8[]): Uint8Array {
  const b = new Buf();
  b.u16(maxStack);
  b.u16(<u32>consts.length);
  for (let i = 0; i < consts.length; i++) {
    const c = consts[i];
    const v = c.substring(2);
    if (c.startsWith("s:")) {
      b.u8(5);
      const bytes = bytesOf(v);
      b.u32(<u32>bytes.length);
      b.bytes(bytes);
    } else if (c.startsWith("b:")) {
      b.u8(1);
      b.u8(v == "1" ? 1 : 0);
    } else {
      b.u8(2);
      const n = I64.parseInt(v);
      b.u32(<u32>n);
      b.u32(<u32>(n >> 32));
    }
  }
  b.u32(<u32>code.length);
  for (let i = 0; i < code.length; i++) b.u8(code[i]);
  return b.result();
}

/**
 * An EXPR section: the programs, and dyn paths `request.json.<key>` (root 10, one key segment) for each of
 * `jsonKeys` (DYN_GET operand i is jsonKeys[i]).
 */
export function exprSection(programs: Uint8Array[], jsonKeys: string[] = []): Uint8Array {
  const b = new Buf();
  b.u32(EXPR_SECTION_VERSION);
  b.u32(<u32>jsonKeys.length);
  for (let i = 0; i < jsonKeys.length; i++) {
    b.u8(10);
    b.u8(0);
    b.u16(1);
    b.u8(0);
    const k = bytesOf(jsonKeys[i]);
    b.u32(<u32>k.length);
    b.bytes(k);
  }
  b.u32(0); // closed enums
  b.u32(0); // message schemas
  b.u32(0); // methods
  b.u32(0); // proto paths
  b.u32(<u32>programs.length);
  for (let i = 0; i < programs.length; i++) {
    b.u32(<u32>programs[i].length);
    b.bytes(programs[i]);
  }
  return b.result();
}

/**
 * Builds table bodies the way docs/table-format.md lays them out (exact patterns sorted, deduplicated), with rule
 * families formed as the compiler forms them: consecutive rules that differ only in their id and the one EXACT
 * value of an identity predicate share a template. Records are written per family, without interning.
 */
export class TableB {
  rules: RuleB[] = [];
  schemas: SchemaB[] = [];
  defaultAction: u8 = 1;
  defaultKind: u8 = 2;
  label: string = "test";
  /** Leave the patterns as given (for tests of the validator). */
  raw: bool = false;
  /** Group rules into families (off: one family per rule). */
  families: bool = true;
  /** The families of the last body(). */
  fams: FamB[] = [];
  /** CEL program records (programRecord): an EXPR section is written when there are any. */
  programs: Uint8Array[] = [];
  /** META.maxBodyBytes (must be set when a program reads a body). */
  maxBodyBytes: u32 = 0;
  /** The request.json keys of the EXPR section's dyn paths (exprSection). */
  jsonKeys: string[] = [];

  private strs: Buf = new Buf();
  private strIndex: Map<string, u64> = new Map<string, u64>();
  private predBuf: Buf = new Buf();
  private pats: Buf = new Buf();
  private predCount: u32 = 0;
  private patCount: u32 = 0;

  add(r: RuleB): TableB {
    this.rules.push(r);
    return this;
  }

  private str(s: string): u64 {
    if (s.length == 0) return 0;
    if (this.strIndex.has(s)) return this.strIndex.get(s);
    const b = bytesOf(s);
    const v = (<u64>this.strs.len) | (<u64>b.length << 32);
    this.strs.bytes(b);
    this.strIndex.set(s, v);
    return v;
  }

  private writeStr(out: Buf, s: string): void {
    const v = this.str(s);
    out.u32(<u32>v);
    out.u32(<u32>(v >> 32));
  }

  private orderPatterns(p: PredB): PatB[] {
    if (this.raw) return p.pats;
    const exact: string[] = [];
    const rest: PatB[] = [];
    for (let i = 0; i < p.pats.length; i++) {
      const pt = p.pats[i];
      const v = p.ignoreCase ? pt.value.toLowerCase() : pt.value;
      if (pt.kind == EXACT) {
        if (!exact.includes(v)) exact.push(v);
      } else {
        rest.push(new PatB(pt.kind, v));
      }
    }
    exact.sort((a: string, b: string): i32 => compareStrings(a, b));
    const out: PatB[] = [];
    for (let i = 0; i < exact.length; i++) out.push(new PatB(EXACT, exact[i]));
    for (let i = 0; i < rest.length; i++) out.push(rest[i]);
    return out;
  }

  // ---- families ----

  private predShape(p: PredB, hole: bool): string {
    let s = p.field.toString() + "|" + (p.negate ? "n" : "") + (p.ignoreCase ? "i" : "") + "|" + p.arg + "|";
    if (hole) return s + "HOLE;";
    const pats = this.orderPatterns(p);
    for (let i = 0; i < pats.length; i++) s += pats[i].kind.toString() + ":" + pats[i].value + ",";
    return s + ";";
  }

  /** The rule without its id, the predicate at (hc, hp) reduced to its field and arg. */
  private shape(r: RuleB, hc: i32, hp: i32): string {
    let s = r.action.toString() + (r.dryRun ? "d" : "") + "E" + r.expr.toString() + "S";
    for (let c = 0; c < r.sources.length; c++) {
      for (let p = 0; p < r.sources[c].preds.length; p++) s += this.predShape(r.sources[c].preds[p], c == hc && p == hp);
      s += "/";
    }
    s += "O";
    for (let c = 0; c < r.ops.length; c++) {
      for (let p = 0; p < r.ops[c].preds.length; p++) s += this.predShape(r.ops[c].preds[p], false);
      s += "/";
    }
    s += "C";
    for (let p = 0; p < r.conds.length; p++) s += this.predShape(r.conds[p], false);
    return s;
  }

  private eligible(r: RuleB, c: i32, p: i32): bool {
    if (c >= r.sources.length || p >= r.sources[c].preds.length) return false;
    const pr = r.sources[c].preds[p];
    if (pr.field > F_ATTR || pr.negate || pr.ignoreCase) return false;
    const pats = this.orderPatterns(pr);
    return pats.length == 1 && pats[0].kind == EXACT;
  }

  private holeValue(r: RuleB, c: i32, p: i32): string {
    return this.orderPatterns(r.sources[c].preds[p])[0].value;
  }

  private formFamilies(): FamB[] {
    const out: FamB[] = [];
    const n = this.rules.length;
    let i = 0;
    while (i < n) {
      let end = i + 1;
      let hc = -1;
      let hp = -1;
      if (this.families && end < n) {
        const full = this.shape(this.rules[i], -1, -1);
        if (this.shape(this.rules[end], -1, -1) == full) {
          while (end < n && this.shape(this.rules[end], -1, -1) == full) end++;
        } else {
          const r = this.rules[i];
          for (let c = 0; c < r.sources.length && hc < 0; c++) {
            for (let p = 0; p < r.sources[c].preds.length && hc < 0; p++) {
              if (!this.eligible(r, c, p)) continue;
              const shape = this.shape(r, c, p);
              const next = this.rules[end];
              if (!this.eligible(next, c, p) || this.shape(next, c, p) != shape) continue;
              hc = c;
              hp = p;
              const seen: string[] = [this.holeValue(r, c, p)];
              while (end < n) {
                const x = this.rules[end];
                if (!this.eligible(x, c, p) || this.shape(x, c, p) != shape || seen.includes(this.holeValue(x, c, p))) break;
                seen.push(this.holeValue(x, c, p));
                end++;
              }
            }
          }
        }
      }
      out.push(new FamB(i, end - i, hc, hp));
      i = end;
    }
    return out;
  }

  // Records are laid out as the compiler lays them out (src/compiler/table.ts encodeBody), so that both write the
  // same bytes for the same table (table.spec.ts): identical pattern, predicate and clause ranges are written once
  // and found again by their content; an empty range is (0, 0).
  private patRanges: Map<string, u32> = new Map<string, u32>();
  private predRanges: Map<string, u32> = new Map<string, u32>();

  private patRange(pats: PatB[]): u32 {
    if (pats.length == 0) return 0;
    let key = "";
    for (let j = 0; j < pats.length; j++) key += pats[j].kind.toString() + ":" + pats[j].value + "\u0000";
    if (this.patRanges.has(key)) return this.patRanges.get(key);
    const start = this.patCount;
    for (let j = 0; j < pats.length; j++) {
      this.pats.u8(pats[j].kind);
      this.pats.u8(0);
      this.pats.u16(0);
      this.writeStr(this.pats, pats[j].value);
      this.patCount++;
    }
    this.patRanges.set(key, start);
    return start;
  }

  /** The predicates of one clause (or the conditions); `hole` is the index of the hole predicate or -1. */
  private writePreds(preds: PredB[], hole: i32): u32 {
    if (preds.length == 0) return 0;
    const starts: u32[] = [];
    const counts: i32[] = [];
    const exacts: i32[] = [];
    let key = "";
    for (let i = 0; i < preds.length; i++) {
      const p = preds[i];
      const isHole = i == hole;
      const pats = isHole ? new Array<PatB>(0) : this.orderPatterns(p);
      // The leading EXACT patterns form the exact block (sorted unless `raw`).
      let exactCount = 0;
      while (exactCount < pats.length && pats[exactCount].kind == EXACT) exactCount++;
      starts.push(this.patRange(pats));
      counts.push(pats.length);
      exacts.push(exactCount);
      key += p.field.toString() + "," + (p.negate ? "1" : "0") + "," + ((p.ignoreCase ? 1 : 0) | (isHole ? 2 : 0)).toString() +
        "," + p.arg + "\u0000," + starts[i].toString() + "," + counts[i].toString() + "," + exactCount.toString() + ";";
    }
    if (this.predRanges.has(key)) return this.predRanges.get(key);
    const start = this.predCount;
    for (let i = 0; i < preds.length; i++) {
      const p = preds[i];
      this.predBuf.u8(p.field);
      this.predBuf.u8(p.negate ? 1 : 0);
      this.predBuf.u8((p.ignoreCase ? 1 : 0) | (i == hole ? 2 : 0));
      this.predBuf.u8(0);
      this.writeStr(this.predBuf, p.arg);
      this.predBuf.u32(starts[i]);
      this.predBuf.u32(<u32>counts[i]);
      this.predBuf.u32(<u32>exacts[i]);
      this.predCount++;
    }
    this.predRanges.set(key, start);
    return start;
  }

  /** The clause records of `clauses` in `out` (interned in `seen`); the hole is (holeClause, holePred) or (-1, -1). */
  private writeClauses(clauses: ClauseB[], holeClause: i32, holePred: i32, out: Buf, seen: Map<string, u32>, count: u32[]): u32 {
    if (clauses.length == 0) return 0;
    const starts: u32[] = [];
    let key = "";
    for (let c = 0; c < clauses.length; c++) {
      const n = clauses[c].preds.length;
      const s = n == 0 ? 0 : this.writePreds(clauses[c].preds, c == holeClause ? holePred : -1);
      starts.push(s);
      key += s.toString() + "," + n.toString() + ";";
    }
    if (seen.has(key)) return seen.get(key);
    const start = count[0];
    for (let c = 0; c < clauses.length; c++) {
      out.u32(starts[c]);
      out.u32(<u32>clauses[c].preds.length);
      count[0]++;
    }
    seen.set(key, start);
    return start;
  }

  /** Pools the strings group by group as the compiler does: label, args, pattern values, schemas. */
  private poolStrings(fams: FamB[]): void {
    this.str(this.label);
    const all: PredB[] = [];
    for (let f = 0; f < fams.length; f++) {
      const fb = fams[f];
      const r = this.rules[fb.first];
      for (let c = 0; c < r.sources.length; c++) {
        for (let p = 0; p < r.sources[c].preds.length; p++) {
          const pr = r.sources[c].preds[p];
          if (c == fb.holeClause && p == fb.holePred) this.str(pr.arg);
          else all.push(pr);
        }
      }
      for (let c = 0; c < r.ops.length; c++) for (let p = 0; p < r.ops[c].preds.length; p++) all.push(r.ops[c].preds[p]);
      for (let p = 0; p < r.conds.length; p++) all.push(r.conds[p]);
    }
    for (let i = 0; i < all.length; i++) this.str(all[i].arg);
    for (let i = 0; i < all.length; i++) {
      const pats = this.orderPatterns(all[i]);
      for (let j = 0; j < pats.length; j++) this.str(pats[j].value);
    }
    for (let i = 0; i < this.schemas.length; i++) {
      this.str(this.schemas[i].td);
      for (let k = 0; k < this.schemas[i].keys.length; k++) this.str(this.schemas[i].keys[k]);
    }
  }

  /** The row-major body. */
  body(): Uint8Array {
    this.strs = new Buf();
    this.strIndex = new Map<string, u64>();
    this.predBuf = new Buf();
    this.pats = new Buf();
    this.predCount = 0;
    this.patCount = 0;
    this.patRanges = new Map<string, u32>();
    this.predRanges = new Map<string, u32>();
    const fams = this.formFamilies();
    this.fams = fams;
    const label = this.label;
    this.poolStrings(fams);

    // Hole values: sorted, unique.
    const values: string[] = [];
    for (let f = 0; f < fams.length; f++) {
      const fb = fams[f];
      if (fb.holeClause < 0) continue;
      for (let k = 0; k < fb.count; k++) {
        const v = this.holeValue(this.rules[fb.first + k], fb.holeClause, fb.holePred);
        if (!values.includes(v)) values.push(v);
      }
    }
    values.sort((a: string, b: string): i32 => compareStrings(a, b));

    const famBuf = new Buf();
    const srcc = new Buf();
    const opcl = new Buf();
    const rows = new Buf();
    const srcSeen = new Map<string, u32>();
    const opSeen = new Map<string, u32>();
    const srcCount: u32[] = [0];
    const opCount: u32[] = [0];
    for (let f = 0; f < fams.length; f++) {
      const fb = fams[f];
      const rb = this.rules[fb.first];
      const srcStart = this.writeClauses(rb.sources, fb.holeClause, fb.holePred, srcc, srcSeen, srcCount);
      let holeClause: u32 = 0xffffffff;
      let holePred: u32 = 0xffffffff;
      if (fb.holeClause >= 0) {
        holeClause = srcStart + <u32>fb.holeClause;
        holePred = peek32(srcc.result(), <i32>holeClause * 8) + <u32>fb.holePred;
      }
      const opStart = this.writeClauses(rb.ops, -1, -1, opcl, opSeen, opCount);
      const condStart = this.writePreds(rb.conds, -1);
      famBuf.u8(rb.action);
      famBuf.u8(rb.dryRun ? 1 : 0);
      famBuf.u16(0);
      famBuf.u32(<u32>fb.first);
      famBuf.u32(<u32>fb.count);
      famBuf.u32(srcStart);
      famBuf.u32(<u32>rb.sources.length);
      famBuf.u32(opStart);
      famBuf.u32(<u32>rb.ops.length);
      famBuf.u32(condStart);
      famBuf.u32(<u32>rb.conds.length);
      famBuf.u32(rb.expr < 0 ? 0xffffffff : <u32>rb.expr);
      famBuf.u32(holeClause);
      famBuf.u32(holePred);
      if (fb.holeClause >= 0) {
        let prev: i32 = 0;
        for (let k = 0; k < fb.count; k++) {
          const v = values.indexOf(this.holeValue(this.rules[fb.first + k], fb.holeClause, fb.holePred));
          const d = v - prev;
          rows.varint(d >= 0 ? <u32>(d * 2) : <u32>(-d * 2 - 1));
          prev = v;
        }
      }
    }
    const schm = new Buf();
    const skey = new Buf();
    let keyCount: u32 = 0;
    for (let s = 0; s < this.schemas.length; s++) {
      const sb = this.schemas[s];
      this.writeStr(schm, sb.td);
      schm.u32(sb.keys.length == 0 ? 0 : keyCount);
      schm.u32(<u32>sb.keys.length);
      for (let k = 0; k < sb.keys.length; k++) {
        this.writeStr(skey, sb.keys[k]);
        keyCount++;
      }
    }
    const ids: string[] = [];
    for (let r = 0; r < this.rules.length; r++) ids.push(this.rules[r].id);
    const idBuf = new Buf();
    const idx = new Buf();
    frontCode(ids, 4, idBuf, idx);
    const valBuf = new Buf();
    const valx = new Buf();
    frontCode(values, 3, valBuf, valx);
    const meta = new Buf();
    meta.u8(this.defaultAction);
    meta.u8(this.defaultKind);
    meta.u8(4);
    meta.u8(3);
    meta.u32(this.maxBodyBytes);
    this.writeStr(meta, label);
    meta.u32(<u32>this.rules.length);
    meta.u32(<u32>values.length);
    meta.u32(0);
    meta.u32(0);
    // Sections in tag order after the directory.
    const sections: Uint8Array[] = [
      this.strs.result(), meta.result(), famBuf.result(), srcc.result(), opcl.result(), this.predBuf.result(),
      this.pats.result(), schm.result(), skey.result(), idBuf.result(), idx.result(), valBuf.result(), valx.result(),
      rows.result(),
    ];
    if (this.programs.length > 0) sections.push(exprSection(this.programs, this.jsonKeys));
    const out = new Buf();
    out.u32(<u32>sections.length);
    let off: u32 = 4 + <u32>sections.length * 12;
    for (let i = 0; i < sections.length; i++) {
      out.u32(<u32>(i + 1));
      out.u32(off);
      out.u32(<u32>sections[i].length);
      off += <u32>sections[i].length;
    }
    for (let i = 0; i < sections.length; i++) out.bytes(sections[i]);
    return out.result();
  }

  /** The uncompressed envelope (flags 0) of this table. */
  envelope(): Uint8Array {
    return wrap(this.body(), 0, 0x0123456789abcdef);
  }

  load(): PolicyTable {
    const r = loadEnvelope(this.envelope());
    if (r.error.length != 0) {
      trace("unexpected load error: " + r.error);
    }
    return r.table!;
  }
}

/** Wraps a body in an envelope with `flags` as given and the body as payload (the CRC covers the payload). */
export function wrap(body: Uint8Array, flags: u32, hash: u64): Uint8Array {
  const out = new Uint8Array(24 + body.length);
  out[0] = 0x53;
  out[1] = 0x50;
  out[2] = 0x41;
  out[3] = 0x5a;
  store<u16>(out.dataStart, 3, 4);
  store<u16>(out.dataStart, <u16>flags, 6);
  store<u64>(out.dataStart, bswap<u64>(hash), 8);
  store<u32>(out.dataStart, <u32>body.length, 16);
  store<u32>(out.dataStart, crc32(body.dataStart, <usize>body.length), 20);
  out.set(body, 24);
  return out;
}

/** A byte-planar envelope (flag bit 1) of a row-major body: the payload (and its CRC) is the planar form. */
export function wrapPlanar(body: Uint8Array, hash: u64): Uint8Array {
  return wrap(toPlanar(body), 2, hash);
}

/** as-pect's toContain is for arrays: substring expectations go through here. */
export function expectContains(s: string, sub: string): void {
  expect(s.includes(sub)).toBe(true, "\"" + s + "\" does not contain \"" + sub + "\"");
}

/** Stores a body byte-planar (flag bit 1): every section with records wider than a byte as R planes of n bytes. */
export function toPlanar(body: Uint8Array): Uint8Array {
  const out = body.slice(0);
  const count = <i32>load<u32>(body.dataStart);
  for (let e = 0; e < count; e++) {
    const tag = <i32>load<u32>(body.dataStart + 4 + <usize>(e * 12));
    const off = <i32>load<u32>(body.dataStart + 8 + <usize>(e * 12));
    const len = <i32>load<u32>(body.dataStart + 12 + <usize>(e * 12));
    const r = RECORD_SIZES[tag];
    if (r <= 1) continue;
    const n = len / r;
    for (let i = 0; i < n; i++) for (let k = 0; k < r; k++) out[off + k * n + i] = body[off + i * r + k];
  }
  return out;
}

export function loadEnvelope(env: Uint8Array): TableResult {
  return decodeEnvelope(env.dataStart, env.length);
}

/** Writes a u32 into a byte array (little-endian). */
export function poke32(a: Uint8Array, off: i32, v: u32): void {
  store<u32>(a.dataStart + <usize>off, v);
}
export function peek32(a: Uint8Array, off: i32): u32 {
  return load<u32>(a.dataStart + <usize>off);
}

/** Offset of a section in a body, by tag. */
export function sectionOffset(body: Uint8Array, tag: u32): i32 {
  const count = <i32>peek32(body, 0);
  for (let e = 0; e < count; e++) {
    if (peek32(body, 4 + e * 12) == tag) return <i32>peek32(body, 8 + e * 12);
  }
  return -1;
}

// ---- requests and peers ----

/** A RequestView over fixed strings (null = absent). Headers repeat by appearing twice. */
export class TestRequest extends RequestView {
  private m: Uint8Array | null = null;
  private p: Uint8Array | null = null;
  private h: Uint8Array | null = null;
  private po: Uint8Array | null = null;
  private s: Uint8Array | null = null;
  private names: string[] = [];
  private values: Uint8Array[] = [];
  private ct: Uint8Array | null = null;
  private bodyBytes: Uint8Array = new Uint8Array(0);
  /** What the host has buffered of the body (readBufferedBody); null: the buffer cannot be read. */
  buffered: Uint8Array | null = new Uint8Array(0);
  /** How many times the buffered body was read, and the most asked for last. */
  bufferReads: i32 = 0;
  lastReadMax: u32 = 0;
  /** How many times each accessor was called (tests of laziness). */
  calls: i32 = 0;

  static of(method: string | null, path: string | null): TestRequest {
    const r = new TestRequest();
    if (method !== null) r.m = bytesOf(method);
    if (path !== null) r.p = bytesOf(path);
    return r;
  }
  withHost(v: string): TestRequest {
    this.h = bytesOf(v);
    return this;
  }
  withPort(v: string): TestRequest {
    this.po = bytesOf(v);
    return this;
  }
  withSni(v: string): TestRequest {
    this.s = bytesOf(v);
    return this;
  }
  withHeader(name: string, v: string): TestRequest {
    this.names.push(name.toLowerCase());
    this.values.push(bytesOf(v));
    if (name.toLowerCase() == "content-type") this.ct = bytesOf(v);
    return this;
  }
  /** The body as the filter would present it (PENDING: not arrived yet). */
  withBody(state: BodyState, text: string = ""): TestRequest {
    this.bodyBytes = bytesOf(text);
    this.setBody(state, this.bodyBytes.dataStart, this.bodyBytes.length);
    return this;
  }
  /** Appends a chunk to the host's body buffer, as Envoy does while the filter answers StopIterationAndBuffer. */
  bufferChunk(chunk: Uint8Array): TestRequest {
    const old = this.buffered!;
    const b = new Uint8Array(old.length + chunk.length);
    b.set(old);
    b.set(chunk, old.length);
    this.buffered = b;
    return this;
  }
  readBufferedBody(max: u32, out: Slice): bool {
    this.bufferReads++;
    this.lastReadMax = max;
    const b = this.buffered;
    if (b === null) {
      out.clear();
      return false;
    }
    out.set(b.dataStart, <u32>b.length < max ? b.length : <i32>max);
    return true;
  }
  contentType(out: Slice): bool {
    return this.fill(this.ct, out);
  }

  private fill(v: Uint8Array | null, out: Slice): bool {
    this.calls++;
    if (v === null) return false;
    out.set(v.dataStart, v.length);
    return true;
  }
  method(out: Slice): bool {
    return this.fill(this.m, out);
  }
  path(out: Slice): bool {
    return this.fill(this.p, out);
  }
  host(out: Slice): bool {
    return this.fill(this.h, out);
  }
  port(out: Slice): bool {
    return this.fill(this.po, out);
  }
  sni(out: Slice): bool {
    return this.fill(this.s, out);
  }
  headerValue(namePtr: usize, nameLen: i32, index: i32, out: Slice): bool {
    this.calls++;
    const name = String.UTF8.decodeUnsafe(namePtr, <usize>nameLen, false);
    let n = 0;
    for (let i = 0; i < this.names.length; i++) {
      if (this.names[i] == name) {
        if (n == index) {
          out.set(this.values[i].dataStart, this.values[i].length);
          return true;
        }
        n++;
      }
    }
    out.clear();
    return false;
  }

  // The connection's identity facts (engine/identity.ts).
  private san: Uint8Array | null = null;
  private mtlsFlag: i32 = -1;
  private meta: Uint8Array | null = null;
  /** A client certificate whose first URI SAN is `uri` (null: a certificate without one). */
  withCertificate(uri: string | null): TestRequest {
    this.mtlsFlag = 1;
    this.san = uri === null ? null : bytesOf(uri);
    return this;
  }
  withoutCertificate(): TestRequest {
    this.mtlsFlag = 0;
    this.san = null;
    return this;
  }
  withMetadata(b: Uint8Array): TestRequest {
    this.meta = b;
    return this;
  }
  uriSan(out: Slice): bool {
    return this.fill(this.san, out) && out.len > 0;
  }
  mtls(): i32 {
    return this.mtlsFlag;
  }
  dynamicMetadata(out: Slice): bool {
    return this.fill(this.meta, out) && out.len > 0;
  }
}

// Peers keep their bytes alive here (a SpiffeId refers to them).
const peerBytes: Uint8Array[] = [];

/** A parsed peer ID (null = no identity). */
export function peerOf(id: string | null): SpiffeId {
  const p = new SpiffeId();
  if (id === null) {
    p.setAbsent();
    return p;
  }
  const b = bytesOf(id);
  peerBytes.push(b);
  p.parse(b.dataStart, b.length);
  return p;
}

export function peerOfBytes(b: Uint8Array): SpiffeId {
  const p = new SpiffeId();
  peerBytes.push(b);
  p.parse(b.dataStart, b.length);
  return p;
}

/** "allow:<rule>" / "deny:<rule>" / "allow:default" / "deny:default" / "deny:no_table". */
export function outcome(d: Decision): string {
  const verdict = d.allow ? "allow:" : "deny:";
  if (d.kind == DecisionKind.RULE) return verdict + d.table!.ruleId(d.rule);
  if (d.kind == DecisionKind.NO_TABLE) return verdict + "no_table";
  if (d.kind == DecisionKind.PENDING) return "pending";
  if (d.kind == DecisionKind.NEEDS_BODY) return "needs_body";
  return verdict + "default";
}

export function reasonOf(d: Decision, peer: SpiffeId): string {
  const w = new ByteWriter(64);
  writeReason(w, d, peer);
  return w.toString();
}

export function explainOf(d: Decision, peer: SpiffeId): string {
  const w = new ByteWriter(64);
  writeExplain(w, d, peer);
  return w.toString();
}

/** The rules of the last decision's shadow ranges, ascending. */
export function shadowRules(d: Decision): u32[] {
  const out: u32[] = [];
  const s = d.table!.shadowScratch;
  for (let i = 0; i < d.shadowRanges; i++) {
    for (let r = s[2 * i]; r < s[2 * i] + s[2 * i + 1]; r++) out.push(r);
  }
  return out;
}

/** Shadow matches of the last decision as "id,id". */
export function shadowsOf(d: Decision): string {
  const rules = shadowRules(d);
  let s = "";
  for (let i = 0; i < rules.length; i++) {
    if (i > 0) s += ",";
    s += d.table!.ruleId(rules[i]);
  }
  return s;
}

/** Envoy response code details of a deny ("" for an allow). */
export function detailsOf(d: Decision, peer: SpiffeId): string {
  if (d.allow) return "";
  const w = new ByteWriter(64);
  writeDenyDetails(w, d, peer);
  return w.toString();
}
