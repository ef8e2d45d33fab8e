// Stage 4, encode: the only writer of the policy table (docs/table-format.md, version 1).
//
// Deterministic by construction: the IR is normalized first, sections are written in tag order, strings are pooled
// in a fixed order (first use while walking the IR), and DEFLATE at a fixed level gives the same bytes for the same
// input on the same zlib. Same IR => same body => same tableHash.

import { createHash } from "node:crypto";
import zlib from "node:zlib";
import {
  ACTION_CODE,
  FIELD_CODE,
  PATTERN_CODE,
  RULE_ID_PATTERN,
  normalizeIR,
  type PredicateIR,
  type TableIR,
} from "./ir.ts";

export const MAGIC = [0x53, 0x50, 0x41, 0x5a]; // "SPAZ"
export const VERSION = 1;
export const FLAG_DEFLATE = 1;
/** docs/table-format.md, "Byte-planar records": records stored byte plane by byte plane so DEFLATE finds repeats. */
export const FLAG_PLANAR = 2;
export const ENVELOPE_HEADER = 24;
export const MAX_BODY = 64 * 1024 * 1024;
export const MAX_RULES = 1 << 24;
export const NO_EXPR = 0xffffffff;

export const TAG = { STRS: 1, META: 2, RULE: 3, SRCC: 4, OPCL: 5, PRED: 6, PATS: 7, SCHM: 8, SKEY: 9 } as const;
/** Record size of every section by tag (STRS is a byte pool). */
export const RECORD_SIZE: Record<number, number> = { 1: 1, 2: 24, 3: 40, 4: 8, 5: 8, 6: 24, 7: 12, 8: 16, 9: 8 };
export const TAG_NAME: Record<number, string> = {
  1: "STRS",
  2: "META",
  3: "RULE",
  4: "SRCC",
  5: "OPCL",
  6: "PRED",
  7: "PATS",
  8: "SCHM",
  9: "SKEY",
};

/** The encoded table and what callers report about it. */
export interface EncodedTable {
  /** the row-major body of section 3 (what hash and crc32 describe) */
  body: Uint8Array;
  /** the envelope of section 2 (header + compressed, byte-planar payload) */
  envelope: Uint8Array;
  /** first 8 bytes of SHA-256(body), 16 lower-case hex digits */
  tableHash: string;
  /** the plugin configuration string of section 1, without a trailing newline */
  config: string;
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
    let r = this.index.get(s);
    if (!r) {
      const b = Buffer.from(s, "utf8");
      r = [this.w.len, b.length];
      this.w.bytes(b);
      this.index.set(s, r);
    }
    return r;
  }
  done(): Buffer {
    return this.w.done();
  }
}

function checkPredicate(p: PredicateIR, where: string): void {
  if (!(p.field in FIELD_CODE)) throw new Error(`${where}: unknown field ${JSON.stringify(p.field)}`);
  if (p.patterns.length === 0) throw new Error(`${where}: a predicate needs at least one pattern`);
  const needsArg = p.field === "attribute" || p.field === "header";
  if (needsArg !== (p.arg.length > 0)) throw new Error(`${where}: arg ${JSON.stringify(p.arg)} does not fit field ${p.field}`);
  for (const pat of p.patterns) {
    if (pat.kind === "template" && p.field !== "path") throw new Error(`${where}: templates are for paths only`);
    if (pat.kind === "present" && pat.value !== "") throw new Error(`${where}: a present pattern has no value`);
    if (pat.kind !== "present" && pat.kind !== "exact" && pat.value === "") {
      throw new Error(`${where}: an empty ${pat.kind} pattern`);
    }
  }
}

/** Writes the row-major body of a (normalized) IR. Throws on an IR the format cannot hold. */
export function encodeBody(input: TableIR): Buffer {
  const ir = normalizeIR(input);
  if (ir.rules.length > MAX_RULES) throw new Error(`too many rules: ${ir.rules.length} (at most ${MAX_RULES})`);
  const ids = new Set<string>();
  for (const r of ir.rules) {
    if (!RULE_ID_PATTERN.test(r.id)) throw new Error(`invalid rule id ${JSON.stringify(r.id)}`);
    if (ids.has(r.id)) throw new Error(`duplicate rule id ${JSON.stringify(r.id)}`);
    ids.add(r.id);
  }
  if (ir.defaultKind === 2 && ir.defaultAction !== "deny") throw new Error("defaultKind 2 implies defaultAction deny");

  // Strings are pooled group by group (ids, then args, then pattern values, then schemas): neighbours alike
  // compress better than ids and values interleaved.
  const pool = new StringPool();
  const label = pool.ref(ir.label);
  const ruleIds = ir.rules.map((r) => pool.ref(r.id));
  const allPreds: PredicateIR[] = [];
  for (const r of ir.rules) {
    for (const c of r.sources) allPreds.push(...c.predicates);
    for (const c of r.operations) allPreds.push(...c.predicates);
    allPreds.push(...r.conditions);
  }
  for (const p of allPreds) pool.ref(p.arg);
  for (const p of allPreds) for (const pat of p.patterns) pool.ref(pat.value);
  for (const s of ir.schemas) {
    pool.ref(s.trustDomain);
    for (const k of s.keys) pool.ref(k);
  }

  const rule = new Writer(40 * ir.rules.length + 8);
  const srcc = new Writer();
  const opcl = new Writer();
  const pred = new Writer();
  const pats = new Writer();
  let nSrc = 0;
  let nOp = 0;
  let nPred = 0;
  let nPat = 0;

  const writePred = (p: PredicateIR, where: string): void => {
    checkPredicate(p, where);
    let exactCount = 0;
    while (exactCount < p.patterns.length && p.patterns[exactCount].kind === "exact") exactCount++;
    const arg = pool.ref(p.arg);
    pred.u8(FIELD_CODE[p.field]);
    pred.u8(p.negate ? 1 : 0);
    pred.u8(p.ignoreCase ? 1 : 0);
    pred.u8(0);
    pred.u32(arg[0]);
    pred.u32(arg[1]);
    pred.u32(nPat);
    pred.u32(p.patterns.length);
    pred.u32(exactCount);
    nPred++;
    for (const pat of p.patterns) {
      const v = pool.ref(pat.value);
      pats.u8(PATTERN_CODE[pat.kind]);
      pats.zeros(3);
      pats.u32(v[0]);
      pats.u32(v[1]);
      nPat++;
    }
  };

  ir.rules.forEach((r, i) => {
    const where = `rule ${JSON.stringify(r.id)}`;
    const srcStart = nSrc;
    for (const c of r.sources) {
      srcc.u32(nPred);
      srcc.u32(c.predicates.length);
      nSrc++;
      for (const p of c.predicates) writePred(p, where);
    }
    const opStart = nOp;
    for (const c of r.operations) {
      opcl.u32(nPred);
      opcl.u32(c.predicates.length);
      nOp++;
      for (const p of c.predicates) writePred(p, where);
    }
    const condStart = nPred;
    for (const p of r.conditions) writePred(p, where);
    // An empty range points at 0, so tables do not depend on where an unused range would have started.
    rule.u32(ruleIds[i][0]);
    rule.u32(ruleIds[i][1]);
    rule.u8(ACTION_CODE[r.action]);
    rule.u8(r.dryRun ? 1 : 0);
    rule.u16(0);
    rule.u32(r.sources.length ? srcStart : 0);
    rule.u32(r.sources.length);
    rule.u32(r.operations.length ? opStart : 0);
    rule.u32(r.operations.length);
    rule.u32(r.conditions.length ? condStart : 0);
    rule.u32(r.conditions.length);
    rule.u32(r.expr === null ? NO_EXPR : r.expr);
  });

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

  const meta = new Writer(24);
  meta.u8(ir.defaultAction === "deny" ? 1 : 0);
  meta.u8(ir.defaultKind);
  meta.u16(0);
  meta.u32(ir.maxBodyBytes);
  meta.u32(label[0]);
  meta.u32(label[1]);
  meta.u32(0);
  meta.u32(0);

  const sections: [number, Buffer][] = [
    [TAG.STRS, pool.done()],
    [TAG.META, meta.done()],
    [TAG.RULE, rule.done()],
    [TAG.SRCC, srcc.done()],
    [TAG.OPCL, opcl.done()],
    [TAG.PRED, pred.done()],
    [TAG.PATS, pats.done()],
    [TAG.SCHM, schm.done()],
    [TAG.SKEY, skey.done()],
  ];
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
  return out.done();
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

export function crc32(data: Uint8Array): number {
  // node:zlib has crc32 since Node 20.15 (the project needs Node >= 20; the CI image has 20.20).
  return zlib.crc32(data) >>> 0;
}

export function sha256Prefix(data: Uint8Array): Buffer {
  return createHash("sha256").update(data).digest().subarray(0, 8);
}

/** Wraps a body into the envelope: header, then the byte-planar body compressed with raw DEFLATE level 9. */
export function encodeEnvelope(body: Uint8Array): Uint8Array {
  const planar = transposeSections(body, readDirectory(body), true);
  const payload = zlib.deflateRawSync(planar, { level: 9 });
  const env = Buffer.alloc(ENVELOPE_HEADER + payload.length);
  env.set(MAGIC, 0);
  env.writeUInt16LE(VERSION, 4);
  env.writeUInt16LE(FLAG_DEFLATE | FLAG_PLANAR, 6);
  sha256Prefix(body).copy(env, 8);
  env.writeUInt32LE(body.length, 16);
  env.writeUInt32LE(crc32(body), 20);
  env.set(payload, ENVELOPE_HEADER);
  return env;
}

/** The plugin configuration string of docs/table-format.md section 1. */
export function configString(envelope: Uint8Array): string {
  return `{"table":"${Buffer.from(envelope).toString("base64")}"}`;
}

/** Encodes an IR into body, envelope, hash and configuration string. */
export function encodeTable(ir: TableIR): EncodedTable {
  const body = encodeBody(ir);
  const envelope = encodeEnvelope(body);
  return { body, envelope, tableHash: sha256Prefix(body).toString("hex"), config: configString(envelope) };
}
