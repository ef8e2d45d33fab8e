// The table encoder and decoder against docs/table-format.md (version 3): round trips, rule families, byte
// layout, determinism, and the decoder's rejection of malformed tables.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import zlib from "node:zlib";
import { describe, it } from "node:test";
import { compileTexts, isCompiledTable } from "../../src/compiler/index.ts";
import { decodeBody, decodeConfig, decodeEnvelope, parseConfig, TableFormatError } from "../../src/compiler/decode.ts";
import { normalizeIR, type PredicateIR, type RuleIR, type TableIR } from "../../src/compiler/ir.ts";
import {
  configString,
  crc32,
  encodeBody,
  encodeEnvelope,
  encodeTable,
  formFamilies,
  frontCode,
  readDirectory,
  transposeSections,
} from "../../src/compiler/table.ts";
import { compileYaml, istio, ours } from "./support/helpers.ts";

/** An IR that uses every field, pattern kind, flag and section, and a family with a hole. */
const everything: TableIR = {
  defaultAction: "deny",
  defaultKind: 1,
  maxBodyBytes: 0,
  grpcFirst: false,
  expr: null,
  label: "shop/everything",
  rules: [
    {
      id: "r-1",
      action: "deny",
      dryRun: true,
      sources: [
        {
          predicates: [
            { field: "principal", negate: false, ignoreCase: false, arg: "", patterns: [{ kind: "exact", value: "spiffe://b/x" }, { kind: "exact", value: "spiffe://a/x" }, { kind: "prefix", value: "spiffe://c/" }] },
            { field: "trustDomain", negate: true, ignoreCase: false, arg: "", patterns: [{ kind: "suffix", value: ".evil" }] },
            { field: "attribute", negate: false, ignoreCase: false, arg: "app", patterns: [{ kind: "present", value: "" }] },
          ],
        },
        { predicates: [] },
      ],
      operations: [
        {
          predicates: [
            { field: "method", negate: false, ignoreCase: false, arg: "", patterns: [{ kind: "exact", value: "GET" }] },
            { field: "path", negate: false, ignoreCase: false, arg: "", patterns: [{ kind: "template", value: "/a/{*}/{**}" }] },
            { field: "host", negate: false, ignoreCase: true, arg: "", patterns: [{ kind: "exact", value: "api.example.com" }] },
            { field: "port", negate: true, ignoreCase: false, arg: "", patterns: [{ kind: "exact", value: "8080" }] },
          ],
        },
      ],
      conditions: [
        { field: "header", negate: false, ignoreCase: false, arg: "x-tenant", patterns: [{ kind: "exact", value: "acme" }] },
        { field: "sni", negate: false, ignoreCase: false, arg: "", patterns: [{ kind: "suffix", value: ".example.com" }] },
      ],
      expr: null,
    },
    { id: "empty", action: "audit", dryRun: false, sources: [], operations: [], conditions: [], expr: null },
    { id: "ns[a]-policy[b]-rule[0]", action: "allow", dryRun: false, sources: [], operations: [], conditions: [], expr: null },
    ...["web", "api", "db"].map((app) => ({
      id: `app-${app}`,
      action: "allow" as const,
      dryRun: false,
      sources: [{ predicates: [attr("app", app), principal("spiffe://a/x")] }, { predicates: [principal("spiffe://ops/admin")] }],
      operations: [{ predicates: [{ field: "method" as const, negate: false, ignoreCase: false, arg: "", patterns: [{ kind: "exact" as const, value: "GET" }] }] }],
      conditions: [],
      expr: null,
    })),
  ],
  schemas: [
    { trustDomain: "z.example", keys: ["app"] },
    { trustDomain: "a.example", keys: ["cluster", "env"] },
  ],
};

function principal(v: string): PredicateIR {
  return { field: "principal", negate: false, ignoreCase: false, arg: "", patterns: [{ kind: "exact", value: v }] };
}
function attr(key: string, v: string): PredicateIR {
  return { field: "attribute", negate: false, ignoreCase: false, arg: key, patterns: [{ kind: "exact", value: v }] };
}
function allowFrom(id: string, ...preds: PredicateIR[]): RuleIR {
  return { id, action: "allow", dryRun: false, sources: [{ predicates: preds }], operations: [], conditions: [], expr: null };
}
function table(rules: RuleIR[]): TableIR {
  return { defaultAction: "deny", defaultKind: 2, maxBodyBytes: 0, grpcFirst: false, expr: null, label: "", rules, schemas: [] };
}

function expectFormatError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof TableFormatError && pattern.test(e.message), pattern.source);
}

describe("round trip", () => {
  it("encode -> decode gives the normalized IR back, for every field and kind", () => {
    const enc = encodeTable(everything);
    const dec = decodeConfig(enc.config);
    assert.deepEqual(dec.ir, normalizeIR(everything));
    assert.equal(dec.tableHash, enc.tableHash);
    assert.equal(dec.flags, 3, "deflate and byte-planar");
    assert.equal(dec.families, 4, "three singletons and one family of three rows");
    // Normalization: exact patterns first, sorted and deduplicated; schemas sorted by trust domain.
    assert.deepEqual(dec.ir.rules[0].sources[0].predicates[0].patterns.map((p) => p.value), ["spiffe://a/x", "spiffe://b/x", "spiffe://c/"]);
    assert.deepEqual(dec.ir.schemas.map((s) => s.trustDomain), ["a.example", "z.example"]);
  });

  it("compiled policies round-trip to the IR the compiler reports", () => {
    for (const f of ["examples/policies/orders-api.yaml", "examples/policies/istio-httpbin.yaml"]) {
      const r = compileTexts([{ file: f, text: readFileSync(f, "utf8") }]);
      const dec = decodeConfig(r.config);
      assert.deepEqual(dec.ir, r.ir, f);
      assert.equal(dec.tableHash, r.tableHash);
      assert.deepEqual(Buffer.from(dec.envelope), Buffer.from(r.envelope));
      assert.ok(isCompiledTable(r.config));
      assert.ok(isCompiledTable(r.config + "\n"), "the table emitter's trailing newline is fine");
    }
  });

  it("a table without rules round-trips", () => {
    const r = compileYaml(istio("deny-all", "{}"));
    assert.deepEqual(decodeConfig(r.config).ir, r.ir);
  });

  it("round-trips every envelope form the format allows (planar or not, deflated or not)", () => {
    const body = encodeBody(everything);
    for (const planar of [false, true]) {
      for (const deflate of [false, true]) {
        const dec = decodeConfig(configString(encodeEnvelope(body, { planar, deflate })));
        assert.deepEqual(dec.ir, normalizeIR(everything), `planar ${planar}, deflate ${deflate}`);
      }
    }
  });
});

describe("rule families", () => {
  it("runs of rules that differ in one exact principal form one family; anything else ends it", () => {
    const rules = [
      allowFrom("a0", principal("spiffe://t/a0")),
      allowFrom("a1", principal("spiffe://t/a1")),
      allowFrom("a2", principal("spiffe://t/a2")),
      allowFrom("b", principal("spiffe://t/b"), attr("ns", "x")), // another shape
      allowFrom("c0", attr("app", "x")),
      allowFrom("c1", attr("app", "y")),
      allowFrom("c2", attr("app", "x")), // a value the family has: a new family
      allowFrom("d0", attr("env", "x")), // another arg: another shape
      allowFrom("d1", attr("env", "y")),
    ];
    const fams = formFamilies(normalizeIR(table(rules)).rules);
    assert.deepEqual(
      fams.map((f) => [f.first, f.count, f.hole && [f.hole.clause, f.hole.pred]]),
      [[0, 3, [0, 0]], [3, 1, null], [4, 2, [0, 0]], [6, 1, null], [7, 2, [0, 0]]],
    );
    const dec = decodeConfig(encodeTable(table(rules)).config);
    assert.deepEqual(dec.ir, normalizeIR(table(rules)));
  });

  it("identical rules (ids aside) form a family without a hole; negated, prefix and multi-value predicates are no holes", () => {
    const same = { ...allowFrom("x", principal("spiffe://t/p")), operations: [] };
    const neg: PredicateIR = { ...principal("spiffe://t/n"), negate: true };
    const two: PredicateIR = { ...principal("spiffe://t/a"), patterns: [{ kind: "exact", value: "spiffe://t/a" }, { kind: "exact", value: "spiffe://t/b" }] };
    const rules = [
      { ...same, id: "s0" },
      { ...same, id: "s1" },
      allowFrom("n0", neg),
      allowFrom("n1", { ...neg, patterns: [{ kind: "exact", value: "spiffe://t/m" }] }),
      allowFrom("m0", two),
      allowFrom("m1", { ...two, patterns: [{ kind: "exact", value: "spiffe://t/c" }, { kind: "exact", value: "spiffe://t/d" }] }),
    ];
    const fams = formFamilies(normalizeIR(table(rules)).rules);
    assert.deepEqual(fams.map((f) => [f.first, f.count, f.hole]), [[0, 2, null], [2, 1, null], [3, 1, null], [4, 1, null], [5, 1, null]]);
    assert.deepEqual(decodeConfig(encodeTable(table(rules)).config).ir, normalizeIR(table(rules)));
  });

  it("a 1,000-rule policy of one exact id each is one family, a few bytes per rule", () => {
    const lines = ["rules:"];
    for (let i = 0; i < 1000; i++) lines.push(`  - from: [{ids: ["spiffe://bench.local/ns/bench/sa/svc-${String(i).padStart(5, "0")}"]}]`, `    to: [{methods: [GET]}]`);
    const r = compileYaml(ours("bench", lines.join("\n")));
    const dec = decodeConfig(r.config);
    assert.equal(dec.families, 1);
    assert.deepEqual(dec.ir, r.ir);
    assert.ok(dec.body.length < 1000 * 20, `${dec.body.length} bytes`);
  });
});

/** A hand-written reader of the v2 body: section directory, records, varints and front-coded lists. */
function reader(body: Uint8Array) {
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const dir = new Map<number, { off: number; len: number }>();
  const count = dv.getUint32(0, true);
  for (let i = 0; i < count; i++) dir.set(dv.getUint32(4 + 12 * i, true), { off: dv.getUint32(8 + 12 * i, true), len: dv.getUint32(12 + 12 * i, true) });
  const strs = dir.get(1)!;
  const str = (at: number) => Buffer.from(body.subarray(strs.off + dv.getUint32(at, true), strs.off + dv.getUint32(at, true) + dv.getUint32(at + 4, true))).toString();
  const varints = (from: number, to: number): number[] => {
    const out: number[] = [];
    let v = 0;
    let shift = 0;
    for (let p = from; p < to; p++) {
      v += (body[p] & 0x7f) * 2 ** shift;
      shift += 7;
      if (body[p] < 0x80) {
        out.push(v);
        v = 0;
        shift = 0;
      }
    }
    return out;
  };
  /** Entries of a front-coded list, with the offsets where each starts. */
  const frontCoded = (tag: number): { entries: string[]; starts: number[]; shared: number[] } => {
    const s = dir.get(tag)!;
    const entries: string[] = [];
    const starts: number[] = [];
    const shared: number[] = [];
    let p = s.off;
    let prev = Buffer.alloc(0);
    while (p < s.off + s.len) {
      starts.push(p - s.off);
      const [sh] = varints(p, p + 1);
      p++;
      let n = 0;
      let shift = 0;
      while (true) {
        n += (body[p] & 0x7f) * 2 ** shift;
        shift += 7;
        if (body[p++] < 0x80) break;
      }
      const e = Buffer.concat([prev.subarray(0, sh), body.subarray(p, p + n)]);
      p += n;
      entries.push(e.toString());
      shared.push(sh);
      prev = e;
    }
    return { entries, starts, shared };
  };
  return { dv, dir, count, str, varints, frontCoded };
}

describe("byte layout (read back by hand from docs/table-format.md, not with decode.ts)", () => {
  const body = encodeBody(everything);
  const { dv, dir, count, str, varints, frontCoded } = reader(body);

  it("has the fourteen sections, each once, with whole records", () => {
    assert.equal(count, 14);
    assert.deepEqual([...dir.keys()].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    const sizes: Record<number, number> = { 2: 32, 3: 48, 4: 8, 5: 8, 6: 24, 7: 12, 8: 16, 9: 8, 11: 4, 13: 4 };
    for (const [tag, s] of dir) if (sizes[tag]) assert.equal(s.len % sizes[tag], 0, `tag ${tag}`);
    assert.equal(dir.get(2)!.len, 32);
    assert.equal(dir.get(3)!.len, 4 * 48, "four families");
  });

  it("META holds the default, its kind, restart intervals, the label and the counts", () => {
    const m = dir.get(2)!.off;
    assert.deepEqual([body[m], body[m + 1], body[m + 2], body[m + 3]], [1, 1, 4, 3]);
    assert.equal(str(m + 8), "shop/everything");
    assert.equal(dv.getUint32(m + 16, true), 6, "ruleCount");
    assert.equal(dv.getUint32(m + 20, true), 3, "valueCount");
    assert.equal(dv.getUint32(m + 24, true), 0);
    assert.equal(dv.getUint32(m + 28, true), 0);
  });

  it("FAMS records carry action, dry-run flag, rows, ranges, no expression and the hole", () => {
    const f0 = dir.get(3)!.off;
    assert.equal(body[f0], 1, "DENY");
    assert.equal(body[f0 + 1], 1, "dry-run");
    assert.deepEqual([4, 8, 16, 24, 32].map((o) => dv.getUint32(f0 + o, true)), [0, 1, 2, 1, 2], "firstRule, rowCount, srcCount, opCount, condCount");
    assert.equal(dv.getUint32(f0 + 36, true), 0xffffffff, "no expression");
    assert.deepEqual([dv.getUint32(f0 + 40, true), dv.getUint32(f0 + 44, true)], [0xffffffff, 0xffffffff], "no hole");
    const f1 = f0 + 48;
    assert.equal(body[f1], 2, "AUDIT");
    assert.deepEqual([12, 16, 20, 24, 28, 32].map((o) => dv.getUint32(f1 + o, true)), [0, 0, 0, 0, 0, 0], "empty ranges are (0, 0)");
    const f3 = f0 + 3 * 48;
    assert.deepEqual([4, 8, 16].map((o) => dv.getUint32(f3 + o, true)), [3, 3, 2], "rules 3..5, two source clauses");
    const holeClause = dv.getUint32(f3 + 40, true);
    const holePred = dv.getUint32(f3 + 44, true);
    assert.equal(holeClause, dv.getUint32(f3 + 12, true), "the hole is in the first source clause");
    assert.equal(holePred, dv.getUint32(dir.get(4)!.off + 8 * holeClause, true), "the clause's first predicate, attribute app");
    const hp = dir.get(6)!.off + 24 * holePred;
    assert.deepEqual([body[hp], body[hp + 1], body[hp + 2]], [3, 0, 2], "ATTRIBUTE, not negated, flag HOLE");
    assert.equal(str(hp + 4), "app");
    assert.deepEqual([12, 16, 20].map((o) => dv.getUint32(hp + o, true)), [0, 0, 0], "a hole has no PATS range");
  });

  it("PRED puts the exact block first, sorted, and counts it", () => {
    const p0 = dir.get(6)!.off;
    assert.equal(body[p0], 1, "PRINCIPAL");
    assert.equal(dv.getUint32(p0 + 16, true), 3, "patCount");
    assert.equal(dv.getUint32(p0 + 20, true), 2, "exactCount");
    const pats = dir.get(7)!.off + 12 * dv.getUint32(p0 + 12, true);
    assert.deepEqual([0, 1, 2].map((i) => [body[pats + 12 * i], str(pats + 12 * i + 4)]), [
      [0, "spiffe://a/x"],
      [0, "spiffe://b/x"],
      [1, "spiffe://c/"],
    ]);
    const host = p0 + 24 * 5;
    assert.equal(body[host], 6, "HOST");
    assert.equal(body[host + 2], 1, "ignore-case flag");
    const header = p0 + 24 * 7;
    assert.equal(body[header], 8);
    assert.equal(str(header + 4), "x-tenant");
  });

  it("IDS front-codes the rule ids in rule order, restarting every 16 entries (IDSX)", () => {
    const ids = frontCoded(10);
    assert.deepEqual(ids.entries, ["r-1", "empty", "ns[a]-policy[b]-rule[0]", "app-web", "app-api", "app-db"]);
    assert.deepEqual(ids.shared, [0, 0, 0, 0, 4, 4], "a shared prefix with the previous id");
    assert.deepEqual([dv.getUint32(dir.get(11)!.off, true)], [0]);
    assert.equal(dir.get(11)!.len, 4, "one restart point for six ids");
  });

  it("VALS holds the hole values sorted and unique; ROWS maps each row to one by zig-zag deltas", () => {
    const vals = frontCoded(12);
    assert.deepEqual(vals.entries, ["api", "db", "web"]);
    const rows = dir.get(14)!;
    // Rows web (2), api (0), db (1): deltas +2, -2, +1 -> zig-zag 4, 3, 2.
    assert.deepEqual(varints(rows.off, rows.off + rows.len), [4, 3, 2]);
  });

  it("shares identical ranges: the GET operation of the family and the unchanged clause are stored once", () => {
    const opcl = dir.get(5)!;
    assert.equal(opcl.len / 8, 2, "r-1's operation clause and the family's");
    const text = Buffer.from(body.subarray(dir.get(1)!.off, dir.get(1)!.off + dir.get(1)!.len)).toString("latin1");
    assert.equal(text.split("spiffe://ops/admin").length - 1, 1);
    assert.equal(text.split("web").length - 1, 0, "hole values live in VALS, not STRS");
  });

  it("front coding restarts every 2^log2 entries with an offset table", () => {
    const strings = Array.from({ length: 20 }, (_, i) => Buffer.from(`svc-${String(i).padStart(3, "0")}`));
    const fc = frontCode(strings, 3);
    assert.equal(fc.restarts.length, 3 * 4);
    const offsets = [0, 1, 2].map((k) => fc.restarts.readUInt32LE(4 * k));
    assert.equal(offsets[0], 0);
    // Each restart entry is written whole: shared 0, suffix length 7.
    for (const o of offsets) assert.deepEqual([fc.entries[o], fc.entries[o + 1]], [0, 7]);
    // Between restarts, "svc-001" after "svc-000" shares 6 bytes and stores one.
    assert.deepEqual([...fc.entries.subarray(9, 12)], [6, 1, "1".charCodeAt(0)]);
  });
});

describe("envelope", () => {
  it("has magic, version 3, flags, hash of the row-major body, length and CRC-32 of the stored payload", () => {
    const enc = encodeTable(everything);
    const env = Buffer.from(enc.envelope);
    assert.equal(env.subarray(0, 4).toString(), "SPAZ");
    assert.equal(env.readUInt16LE(4), 3);
    assert.equal(env.readUInt16LE(6), 3);
    assert.equal(env.subarray(8, 16).toString("hex"), enc.tableHash);
    assert.equal(env.readUInt32LE(16), enc.body.length);
    assert.equal(env.readUInt32LE(20), crc32(env.subarray(24)), "the CRC covers the payload as stored");
    assert.equal(crc32(Buffer.from("123456789")), 0xcbf43926, "the IEEE check value");
    // The payload inflates to the byte-planar body; transposing back gives the row-major body.
    const stored = zlib.inflateRawSync(env.subarray(24));
    assert.deepEqual(Buffer.from(transposeSections(stored, readDirectory(stored), false)), Buffer.from(enc.body));
  });

  it("byte-planar storage is a permutation inside each section with records > 1 byte", () => {
    const body = encodeBody(everything);
    const dir = readDirectory(body);
    const planar = transposeSections(body, dir, true);
    const fams = dir.find((s) => s.tag === 3)!;
    const n = fams.length / 48;
    // Byte k of record i is stored at offset + k*n + i.
    for (const [i, k] of [[0, 0], [1, 8], [3, 47], [2, 12]]) assert.equal(planar[fams.offset + k * n + i], body[fams.offset + i * 48 + k]);
    for (const tag of [1, 10, 12, 14]) {
      const s = dir.find((d) => d.tag === tag)!;
      assert.deepEqual(Buffer.from(planar.subarray(s.offset, s.offset + s.length)), body.subarray(s.offset, s.offset + s.length), `byte stream ${tag}`);
    }
    assert.deepEqual(Buffer.from(planar.subarray(0, 4 + 12 * dir.length)), body.subarray(0, 4 + 12 * dir.length));
  });

  it("one table has one hash, however it is stored", () => {
    const body = encodeBody(everything);
    const hashes = new Set([false, true].flatMap((planar) => [false, true].map((deflate) => Buffer.from(encodeEnvelope(body, { planar, deflate }).subarray(8, 16)).toString("hex"))));
    assert.equal(hashes.size, 1);
  });

  it("the configuration is the exact JSON wrapper", () => {
    const enc = encodeTable(everything);
    assert.match(enc.config, /^\{"table":"[A-Za-z0-9+/]+={0,2}"\}$/);
    assert.deepEqual(Buffer.from(JSON.parse(enc.config).table, "base64"), Buffer.from(enc.envelope));
  });
});

describe("determinism", () => {
  it("the same input gives the same bytes and hash, twice", () => {
    const text = readFileSync("examples/policies/orders-api.yaml", "utf8");
    const a = compileTexts([{ file: "x.yaml", text }]);
    const b = compileTexts([{ file: "x.yaml", text }]);
    assert.equal(a.config, b.config);
    assert.equal(a.tableHash, b.tableHash);
  });

  it("the order of values inside a list does not change the hash; a rule change does", () => {
    const a = compileYaml(ours("p", 'rules:\n  - from: [{ids: ["spiffe://a/x", "spiffe://b/y"]}]'));
    const b = compileYaml(ours("p", 'rules:\n  - from: [{ids: ["spiffe://b/y", "spiffe://a/x", "spiffe://a/x"]}]'));
    const c = compileYaml(ours("p", 'rules:\n  - from: [{ids: ["spiffe://b/y"]}]'));
    assert.equal(a.tableHash, b.tableHash);
    assert.notEqual(a.tableHash, c.tableHash);
  });
});

describe("decoder rejects malformed tables", () => {
  const good = encodeTable(everything);
  const envWith = (patch: (b: Buffer) => void) => {
    const b = Buffer.from(good.envelope);
    patch(b);
    return b;
  };
  /** Re-wraps a (row-major) body whose content was changed, with a correct hash and CRC. */
  const rewrap = (patch: (b: Buffer) => void) => {
    const body = Buffer.from(good.body);
    patch(body);
    return configString(encodeEnvelope(body));
  };
  const dir = readDirectory(good.body);
  const off = (tag: number) => dir.find((s) => s.tag === tag)!.offset;
  const fam3 = off(3) + 3 * 48;

  it("wrapper: unknown keys (with position), non-JSON, bad base64", () => {
    expectFormatError(() => parseConfig('{\n  "table": "", "x": 1}'), /^2:16: unknown field "x"$/);
    expectFormatError(() => parseConfig("table: x"), /not JSON/);
    expectFormatError(() => parseConfig('{"table":"abc"}'), /base64/);
    expectFormatError(() => parseConfig('{"table":"YW Jj"}'), /base64/);
    assert.equal(isCompiledTable('{"table":""}'), false);
    assert.equal(isCompiledTable("apiVersion: v1"), false);
  });

  it("wrapper: the optional headers mode", () => {
    const table = (JSON.parse(good.config) as { table: string }).table;
    assert.equal(decodeConfig(good.config).headers, "hold");
    assert.equal(decodeConfig(`{"headers":"continue","table":"${table}"}`).headers, "continue");
    assert.equal(decodeConfig(`{"table":"${table}", "headers": "hold"}`).headers, "hold");
    expectFormatError(() => parseConfig(`{"table":"${table}",\n "headers": "stop"}`), /^2:13: field "headers" must be "hold" or "continue"$/);
    expectFormatError(() => parseConfig(`{"table":"${table}","headers":true}`), /field "headers" must be "hold" or "continue"$/);
    expectFormatError(() => parseConfig(`{"table":"${table}","header":"continue"}`), /unknown field "header"$/);
  });

  it("envelope: magic, version, flags, truncation, trailing bytes, CRC", () => {
    expectFormatError(() => decodeEnvelope(envWith((b) => (b[0] = 0x41))), /bad magic/);
    expectFormatError(() => decodeEnvelope(envWith((b) => b.writeUInt16LE(1, 4))), /unsupported table version 1/);
    expectFormatError(() => decodeEnvelope(envWith((b) => b.writeUInt16LE(7, 6))), /unknown envelope flags 0x7/);
    expectFormatError(() => decodeEnvelope(good.envelope.subarray(0, good.envelope.length - 3)), /crc32 mismatch/);
    expectFormatError(() => decodeEnvelope(envWith((b) => (b[20] ^= 1))), /crc32 mismatch/);
    expectFormatError(() => decodeEnvelope(envWith((b) => (b[30] ^= 1))), /crc32 mismatch/);
    expectFormatError(() => decodeEnvelope(envWith((b) => b.writeUInt32LE(b.readUInt32LE(16) + 1, 16))), /bytes/);
    // With a CRC that matches, what is wrong in the payload itself is reported.
    const trailing = Buffer.concat([good.envelope, Buffer.from([0])]);
    trailing.writeUInt32LE(crc32(trailing.subarray(24)), 20);
    expectFormatError(() => decodeEnvelope(trailing), /after the end/);
  });

  it("body: unknown tags, overlaps, partial records, strings and records out of range", () => {
    expectFormatError(() => decodeConfig(rewrap((b) => b.writeUInt32LE(42, 4))), /unknown section tag 42/);
    expectFormatError(() => decodeConfig(rewrap((b) => b.writeUInt32LE(b.readUInt32LE(20) - 4, 20))), /overlap/);
    expectFormatError(() => decodeBody(Buffer.from(good.body).fill(0, 0, 4)), /section STRS is missing/);
    expectFormatError(() => decodeConfig(rewrap((b) => b.writeUInt32LE(0xffff, off(2) + 8))), /outside STRS/);
    expectFormatError(() => decodeConfig(rewrap((b) => b.writeUInt32LE(99, off(3) + 16))), /outside SRCC/);
    expectFormatError(() => decodeConfig(rewrap((b) => (b[off(3)] = 3))), /unknown action 3/);
    expectFormatError(() => decodeConfig(rewrap((b) => b.writeUInt32LE(0, off(3) + 36))), /no EXPR section/);
    expectFormatError(() => decodeConfig(rewrap((b) => ((b[off(2)] = 0), (b[off(2) + 1] = 2)))), /defaultKind 2 requires defaultAction 1/);
    expectFormatError(() => decodeConfig(rewrap((b) => (b[off(2) + 1] = 3))), /defaultKind 3/);
    expectFormatError(() => decodeConfig(rewrap((b) => (b[off(2) + 2] = 5))), /restart interval 2\^5/);
  });

  it("families: counts, rows and holes", () => {
    expectFormatError(() => decodeConfig(rewrap((b) => b.writeUInt32LE(1, off(3) + 4))), /family 0: firstRule 1/);
    expectFormatError(() => decodeConfig(rewrap((b) => b.writeUInt32LE(0, off(3) + 8))), /family 0: no rows/);
    expectFormatError(() => decodeConfig(rewrap((b) => b.writeUInt32LE(4, fam3 + 8))), /family 3: rows exceed the 6 rules/);
    expectFormatError(() => decodeConfig(rewrap((b) => b.writeUInt32LE(7, off(2) + 16))), /families hold 6 rules, META says 7/);
    expectFormatError(() => decodeConfig(rewrap((b) => b.writeUInt32LE(0xffffffff, fam3 + 40))), /both be set or both be none/);
    expectFormatError(() => decodeConfig(rewrap((b) => b.writeUInt32LE(b.readUInt32LE(fam3 + 12) + 1, fam3 + 40))), /holePred \d+ is not in its hole clause/);
    // Without its hole, the family still reaches a HOLE predicate.
    expectFormatError(() => decodeConfig(rewrap((b) => (b.writeUInt32LE(0xffffffff, fam3 + 40), b.writeUInt32LE(0xffffffff, fam3 + 44)))), /outside its family's hole/);
    const rows = off(14);
    expectFormatError(() => decodeConfig(rewrap((b) => (b[rows] = 8))), /refers to value 4, outside VALS \(3 entries\)/);
    expectFormatError(() => decodeConfig(rewrap((b) => (b[rows + 1] = 0))), /rows have the same hole value/);
    expectFormatError(() => decodeConfig(rewrap((b) => (b[rows + 2] = 0x82))), /varint runs past the end/);
  });

  it("front-coded lists: restart offsets, shared prefixes, order of values, ids", () => {
    expectFormatError(() => decodeConfig(rewrap((b) => b.writeUInt32LE(1, off(11)))), /IDS entry 0: restart offset 1/);
    // "app-api" shares 4 bytes with "app-web"; 9 is more than "app-web" has.
    const ids = off(10);
    const apiAt = [...good.body.subarray(ids)].findIndex((_, i) => good.body.subarray(ids + i, ids + i + 5).toString() === "\x04\x03api") + ids;
    expectFormatError(() => decodeConfig(rewrap((b) => (b[apiAt] = 9))), /IDS entry 4: shares 9 bytes with an entry of 7/);
    expectFormatError(() => decodeConfig(rewrap((b) => b.write("web", apiAt + 2))), /rule 4: duplicate id "app-web"/);
    expectFormatError(() => decodeConfig(rewrap((b) => (b[apiAt + 2] = " ".charCodeAt(0)))), /rule 4: invalid id/);
    // VALS "api", "db", "web": make "db" sort before "api".
    const vals = off(12);
    expectFormatError(() => decodeConfig(rewrap((b) => (b[vals + 7] = "0".charCodeAt(0)))), /VALS entry 1: not greater than entry 0/);
  });

  it("predicates: unsorted exact blocks, bad kinds, templates off paths, holes with patterns", () => {
    const p0 = off(6);
    const pats = off(7);
    // Swap the first two (exact) patterns: the block is no longer sorted.
    expectFormatError(
      () =>
        decodeConfig(
          rewrap((b) => {
            const a = Buffer.from(b.subarray(pats, pats + 12));
            b.copy(b, pats, pats + 12, pats + 24);
            a.copy(b, pats + 12);
          }),
        ),
      /not sorted/,
    );
    expectFormatError(() => decodeConfig(rewrap((b) => (b[pats] = 9))), /unknown pattern kind 9/);
    expectFormatError(() => decodeConfig(rewrap((b) => b.writeUInt32LE(0, p0 + 16))), /at least one pattern/);
    expectFormatError(() => decodeConfig(rewrap((b) => (b[p0] = 15))), /unknown field 15/);
    // Predicate 4 is the PATH predicate with the template; as METHOD it is malformed.
    expectFormatError(() => decodeConfig(rewrap((b) => (b[p0 + 24 * 4] = 4))), /templates are for paths only/);
    // An ATTRIBUTE predicate needs its key.
    expectFormatError(() => decodeConfig(rewrap((b) => b.writeUInt32LE(0, p0 + 24 * 2 + 8))), /needs an arg/);
    const hole = p0 + 24 * Buffer.from(good.body).readUInt32LE(fam3 + 44);
    expectFormatError(() => decodeConfig(rewrap((b) => b.writeUInt32LE(1, hole + 16))), /a HOLE predicate has patterns/);
    expectFormatError(() => decodeConfig(rewrap((b) => (b[hole + 1] = 1))), /HOLE predicate is negated/);
  });

  it("the encoder refuses IRs the format cannot hold", () => {
    assert.throws(() => encodeBody({ ...everything, rules: [{ ...everything.rules[1], id: "bad id" }] }), /invalid rule id/);
    assert.throws(() => encodeBody({ ...everything, rules: [everything.rules[1], everything.rules[1]] }), /duplicate rule id/);
    assert.throws(() => encodeBody({ ...everything, defaultAction: "allow", defaultKind: 2 }), /defaultKind 2/);
  });
});
