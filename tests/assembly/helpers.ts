// Test-only helpers: a small table builder that writes bodies and envelopes by docs/table-format.md without the
// TypeScript compiler, a RequestView over fixed data, and a seeded random generator.

import { crc32 } from "../../assembly/engine/crc32";
import { Slice } from "../../assembly/engine/bytes";
import { RequestView } from "../../assembly/engine/request";
import { SpiffeId } from "../../assembly/engine/spiffe";
import { decodeEnvelope, TableResult, PolicyTable } from "../../assembly/engine/table";
import { Decision, DecisionKind } from "../../assembly/engine/decision";
import { writeReason, writeExplain } from "../../assembly/engine/explain";
import { ByteWriter } from "../../assembly/engine/writer";

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
  constructor(
    public id: string, public action: u8, public sources: ClauseB[], public ops: ClauseB[], public conds: PredB[],
    public dryRun: bool = false,
  ) {}
}
export function rule(id: string, action: u8, sources: ClauseB[], ops: ClauseB[] = [], conds: PredB[] = [], dryRun: bool = false): RuleB {
  return new RuleB(id, action, sources, ops, conds, dryRun);
}

export class SchemaB {
  constructor(public td: string, public keys: string[]) {}
}

class Buf {
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

/** Builds table bodies the way docs/table-format.md lays them out (exact patterns sorted, deduplicated). */
export class TableB {
  rules: RuleB[] = [];
  schemas: SchemaB[] = [];
  defaultAction: u8 = 1;
  defaultKind: u8 = 2;
  label: string = "test";
  /** Leave the patterns as given (for tests of the validator). */
  raw: bool = false;

  private strs: Buf = new Buf();
  private strIndex: Map<string, u64> = new Map<string, u64>();
  private srcc: Buf = new Buf();
  private opcl: Buf = new Buf();
  private predBuf: Buf = new Buf();
  private pats: Buf = new Buf();
  private predCount: u32 = 0;
  private patCount: u32 = 0;

  add(r: RuleB): TableB {
    this.rules.push(r);
    return this;
  }

  private str(s: string): u64 {
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

  private writePreds(preds: PredB[]): u32 {
    const start = this.predCount;
    // Patterns first (records are written in order, so reserve pattern indexes per predicate).
    for (let i = 0; i < preds.length; i++) {
      const p = preds[i];
      const pats = this.orderPatterns(p);
      // The leading EXACT patterns form the exact block (sorted unless `raw`).
      let exactCount = 0;
      while (exactCount < pats.length && pats[exactCount].kind == EXACT) exactCount++;
      const patStart = this.patCount;
      for (let j = 0; j < pats.length; j++) {
        this.pats.u8(pats[j].kind);
        this.pats.u8(0);
        this.pats.u16(0);
        this.writeStr(this.pats, pats[j].value);
        this.patCount++;
      }
      this.predBuf.u8(p.field);
      this.predBuf.u8(p.negate ? 1 : 0);
      this.predBuf.u8(p.ignoreCase ? 1 : 0);
      this.predBuf.u8(0);
      this.writeStr(this.predBuf, p.arg);
      this.predBuf.u32(patStart);
      this.predBuf.u32(<u32>pats.length);
      this.predBuf.u32(<u32>exactCount);
      this.predCount++;
    }
    return start;
  }

  /** The row-major body. */
  body(): Uint8Array {
    this.strs = new Buf();
    this.strIndex = new Map<string, u64>();
    this.srcc = new Buf();
    this.opcl = new Buf();
    this.predBuf = new Buf();
    this.pats = new Buf();
    this.predCount = 0;
    this.patCount = 0;
    const rules = new Buf();
    let srcCount: u32 = 0;
    let opCount: u32 = 0;
    for (let r = 0; r < this.rules.length; r++) {
      const rb = this.rules[r];
      const srcStart = srcCount;
      for (let c = 0; c < rb.sources.length; c++) {
        const s = this.writePreds(rb.sources[c].preds);
        this.srcc.u32(s);
        this.srcc.u32(<u32>rb.sources[c].preds.length);
        srcCount++;
      }
      const opStart = opCount;
      for (let c = 0; c < rb.ops.length; c++) {
        const s = this.writePreds(rb.ops[c].preds);
        this.opcl.u32(s);
        this.opcl.u32(<u32>rb.ops[c].preds.length);
        opCount++;
      }
      const condStart = this.writePreds(rb.conds);
      this.writeStr(rules, rb.id);
      rules.u8(rb.action);
      rules.u8(rb.dryRun ? 1 : 0);
      rules.u16(0);
      rules.u32(srcStart);
      rules.u32(<u32>rb.sources.length);
      rules.u32(opStart);
      rules.u32(<u32>rb.ops.length);
      rules.u32(condStart);
      rules.u32(<u32>rb.conds.length);
      rules.u32(0xffffffff);
    }
    const schm = new Buf();
    const skey = new Buf();
    let keyCount: u32 = 0;
    for (let s = 0; s < this.schemas.length; s++) {
      const sb = this.schemas[s];
      this.writeStr(schm, sb.td);
      schm.u32(keyCount);
      schm.u32(<u32>sb.keys.length);
      for (let k = 0; k < sb.keys.length; k++) {
        this.writeStr(skey, sb.keys[k]);
        keyCount++;
      }
    }
    const meta = new Buf();
    meta.u8(this.defaultAction);
    meta.u8(this.defaultKind);
    meta.u16(0);
    meta.u32(0);
    this.writeStr(meta, this.label);
    meta.u32(0);
    meta.u32(0);
    // Sections in tag order after the directory.
    const sections: Uint8Array[] = [
      this.strs.result(), meta.result(), rules.result(), this.srcc.result(), this.opcl.result(),
      this.predBuf.result(), this.pats.result(), schm.result(), skey.result(),
    ];
    const out = new Buf();
    out.u32(9);
    let off: u32 = 4 + 9 * 12;
    for (let i = 0; i < 9; i++) {
      out.u32(<u32>(i + 1));
      out.u32(off);
      out.u32(<u32>sections[i].length);
      off += <u32>sections[i].length;
    }
    for (let i = 0; i < 9; i++) out.bytes(sections[i]);
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

/** Wraps a body in an uncompressed envelope (or with `flags` as given and the body as payload). */
export function wrap(body: Uint8Array, flags: u32, hash: u64): Uint8Array {
  const out = new Uint8Array(24 + body.length);
  out[0] = 0x53;
  out[1] = 0x50;
  out[2] = 0x41;
  out[3] = 0x5a;
  store<u16>(out.dataStart, 1, 4);
  store<u16>(out.dataStart, <u16>flags, 6);
  store<u64>(out.dataStart, bswap<u64>(hash), 8);
  store<u32>(out.dataStart, <u32>body.length, 16);
  store<u32>(out.dataStart, crc32(body.dataStart, <usize>body.length), 20);
  out.set(body, 24);
  return out;
}

/** A byte-planar envelope (flag bit 1) of a row-major body: the CRC describes the row-major body. */
export function wrapPlanar(body: Uint8Array, hash: u64): Uint8Array {
  const out = wrap(toPlanar(body), 2, hash);
  store<u32>(out.dataStart, crc32(body.dataStart, <usize>body.length), 20);
  return out;
}

/** as-pect's toContain is for arrays: substring expectations go through here. */
export function expectContains(s: string, sub: string): void {
  expect(s.includes(sub)).toBe(true, "\"" + s + "\" does not contain \"" + sub + "\"");
}

/** Stores a body byte-planar (flag bit 1): every section but STRS as R planes of n bytes. */
export function toPlanar(body: Uint8Array): Uint8Array {
  const out = body.slice(0);
  const sizes: i32[] = [0, 1, 24, 40, 8, 8, 24, 12, 16, 8];
  const count = <i32>load<u32>(body.dataStart);
  for (let e = 0; e < count; e++) {
    const tag = <i32>load<u32>(body.dataStart + 4 + <usize>(e * 12));
    const off = <i32>load<u32>(body.dataStart + 8 + <usize>(e * 12));
    const len = <i32>load<u32>(body.dataStart + 12 + <usize>(e * 12));
    const r = sizes[tag];
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
  private joined: Uint8Array[] = [];
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
    return this;
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
  header(namePtr: usize, nameLen: i32, out: Slice): bool {
    this.calls++;
    const name = String.UTF8.decodeUnsafe(namePtr, <usize>nameLen, false);
    let value = "";
    let n = 0;
    for (let i = 0; i < this.names.length; i++) {
      if (this.names[i] == name) {
        const v = String.UTF8.decodeUnsafe(this.values[i].dataStart, <usize>this.values[i].length, false);
        value = n == 0 ? v : value + "," + v;
        n++;
      }
    }
    if (n == 0) return false;
    const b = bytesOf(value);
    this.joined.push(b); // keep alive for the request
    out.set(b.dataStart, b.length);
    return true;
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

/** Shadow matches of the last decision as "id,id". */
export function shadowsOf(d: Decision): string {
  let s = "";
  for (let i = 0; i < d.shadowCount; i++) {
    if (i > 0) s += ",";
    s += d.table!.ruleId(d.table!.shadowScratch[i]);
  }
  return s;
}
