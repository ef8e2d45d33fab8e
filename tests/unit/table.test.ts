// The table encoder and decoder against docs/table-format.md: round trips, byte layout, determinism, and the
// decoder's rejection of malformed tables.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import zlib from "node:zlib";
import { describe, it } from "node:test";
import { compileTexts, isCompiledTable } from "../../src/compiler/index.ts";
import { decodeBody, decodeConfig, decodeEnvelope, parseConfig, TableFormatError } from "../../src/compiler/decode.ts";
import { normalizeIR, type TableIR } from "../../src/compiler/ir.ts";
import { configString, crc32, encodeBody, encodeEnvelope, encodeTable, readDirectory, transposeSections } from "../../src/compiler/table.ts";
import { compileYaml, istio, ours } from "./support/helpers.ts";

/** An IR that uses every field, pattern kind, flag and section. */
const everything: TableIR = {
  defaultAction: "deny",
  defaultKind: 1,
  maxBodyBytes: 0,
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
  ],
  schemas: [
    { trustDomain: "z.example", keys: ["app"] },
    { trustDomain: "a.example", keys: ["cluster", "env"] },
  ],
};

function expectFormatError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof TableFormatError && pattern.test(e.message));
}

describe("round trip", () => {
  it("encode -> decode gives the normalized IR back, for every field and kind", () => {
    const enc = encodeTable(everything);
    const dec = decodeConfig(enc.config);
    assert.deepEqual(dec.ir, normalizeIR(everything));
    assert.equal(dec.tableHash, enc.tableHash);
    assert.equal(dec.flags, 3, "deflate and byte-planar");
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
});

describe("byte layout (read back by hand from docs/table-format.md, not with decode.ts)", () => {
  const body = encodeBody(everything);
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const dir = new Map<number, { off: number; len: number }>();
  const count = dv.getUint32(0, true);
  for (let i = 0; i < count; i++) dir.set(dv.getUint32(4 + 12 * i, true), { off: dv.getUint32(8 + 12 * i, true), len: dv.getUint32(12 + 12 * i, true) });
  const strs = dir.get(1)!;
  const str = (at: number) => body.subarray(strs.off + dv.getUint32(at, true), strs.off + dv.getUint32(at, true) + dv.getUint32(at + 4, true)).toString();

  it("has the nine sections, each once, with whole records", () => {
    assert.equal(count, 9);
    assert.deepEqual([...dir.keys()].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const sizes: Record<number, number> = { 2: 24, 3: 40, 4: 8, 5: 8, 6: 24, 7: 12, 8: 16, 9: 8 };
    for (const [tag, s] of dir) if (sizes[tag]) assert.equal(s.len % sizes[tag], 0, `tag ${tag}`);
    assert.equal(dir.get(2)!.len, 24);
    assert.equal(dir.get(3)!.len, 3 * 40);
  });

  it("META holds the default, its kind and the label", () => {
    const m = dir.get(2)!.off;
    assert.equal(body[m], 1);
    assert.equal(body[m + 1], 1);
    assert.equal(str(m + 8), "shop/everything");
  });

  it("RULE records carry id, action, dry-run flag, ranges and no expression", () => {
    const r0 = dir.get(3)!.off;
    assert.equal(str(r0), "r-1");
    assert.equal(body[r0 + 8], 1, "DENY");
    assert.equal(body[r0 + 9], 1, "dry-run");
    assert.equal(dv.getUint32(r0 + 16, true), 2, "srcCount");
    assert.equal(dv.getUint32(r0 + 24, true), 1, "opCount");
    assert.equal(dv.getUint32(r0 + 32, true), 2, "condCount");
    assert.equal(dv.getUint32(r0 + 36, true), 0xffffffff);
    const r1 = r0 + 40;
    assert.equal(body[r1 + 8], 2, "AUDIT");
    assert.deepEqual([12, 16, 20, 24, 28, 32].map((o) => dv.getUint32(r1 + o, true)), [0, 0, 0, 0, 0, 0]);
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

  it("STRS stores each distinct string once", () => {
    const r = encodeBody({
      ...everything,
      rules: [0, 1, 2].map((i) => ({
        id: `r${i}`,
        action: "allow" as const,
        dryRun: false,
        sources: [{ predicates: [{ field: "principal" as const, negate: false, ignoreCase: false, arg: "", patterns: [{ kind: "exact" as const, value: "spiffe://same/id" }] }] }],
        operations: [],
        conditions: [],
        expr: null,
      })),
    });
    const text = r.subarray(readDirectory(r).find((s) => s.tag === 1)!.offset).toString("latin1");
    assert.equal(text.split("spiffe://same/id").length - 1, 1);
  });
});

describe("envelope", () => {
  it("has magic, version, flags, hash, length and CRC-32 of the row-major body", () => {
    const enc = encodeTable(everything);
    const env = Buffer.from(enc.envelope);
    assert.equal(env.subarray(0, 4).toString(), "SPAZ");
    assert.equal(env.readUInt16LE(4), 1);
    assert.equal(env.readUInt16LE(6), 3);
    assert.equal(env.subarray(8, 16).toString("hex"), enc.tableHash);
    assert.equal(env.readUInt32LE(16), enc.body.length);
    assert.equal(env.readUInt32LE(20), crc32(enc.body));
    assert.equal(crc32(Buffer.from("123456789")), 0xcbf43926, "the IEEE check value");
    // The payload inflates to the byte-planar body; transposing back gives the row-major body.
    const stored = zlib.inflateRawSync(env.subarray(24));
    assert.deepEqual(Buffer.from(transposeSections(stored, readDirectory(stored), false)), Buffer.from(enc.body));
  });

  it("byte-planar storage is a permutation inside each section with records > 1 byte", () => {
    const body = encodeBody(everything);
    const dir = readDirectory(body);
    const planar = transposeSections(body, dir, true);
    const rule = dir.find((s) => s.tag === 3)!;
    const n = rule.length / 40;
    // Byte k of record i is stored at offset + k*n + i.
    for (const [i, k] of [[0, 0], [1, 8], [2, 39], [2, 12]]) assert.equal(planar[rule.offset + k * n + i], body[rule.offset + i * 40 + k]);
    const strs = dir.find((s) => s.tag === 1)!;
    assert.deepEqual(Buffer.from(planar.subarray(strs.offset, strs.offset + strs.length)), body.subarray(strs.offset, strs.offset + strs.length));
    assert.deepEqual(Buffer.from(planar.subarray(0, 4 + 12 * dir.length)), body.subarray(0, 4 + 12 * dir.length));
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

  it("wrapper: unknown keys (with position), non-JSON, bad base64", () => {
    expectFormatError(() => parseConfig('{\n  "table": "", "x": 1}'), /^2:16: unknown field "x"$/);
    expectFormatError(() => parseConfig("table: x"), /not JSON/);
    expectFormatError(() => parseConfig('{"table":"abc"}'), /base64/);
    expectFormatError(() => parseConfig('{"table":"YW Jj"}'), /base64/);
    assert.equal(isCompiledTable('{"table":""}'), false);
    assert.equal(isCompiledTable("apiVersion: v1"), false);
  });

  it("envelope: magic, version, flags, truncation, trailing bytes, CRC", () => {
    expectFormatError(() => decodeEnvelope(envWith((b) => (b[0] = 0x41))), /bad magic/);
    expectFormatError(() => decodeEnvelope(envWith((b) => b.writeUInt16LE(2, 4))), /unsupported table version 2/);
    expectFormatError(() => decodeEnvelope(envWith((b) => b.writeUInt16LE(7, 6))), /unknown envelope flags 0x7/);
    expectFormatError(() => decodeEnvelope(good.envelope.subarray(0, good.envelope.length - 3)), /inflate|bytes/);
    expectFormatError(() => decodeEnvelope(Buffer.concat([good.envelope, Buffer.from([0])])), /after the end/);
    expectFormatError(() => decodeEnvelope(envWith((b) => (b[20] ^= 1))), /crc32 mismatch/);
    expectFormatError(() => decodeEnvelope(envWith((b) => b.writeUInt32LE(b.readUInt32LE(16) + 1, 16))), /bytes/);
  });

  it("body: unknown tags, overlaps, partial records, strings and records out of range", () => {
    expectFormatError(() => decodeConfig(rewrap((b) => b.writeUInt32LE(42, 4))), /unknown section tag 42/);
    expectFormatError(() => decodeConfig(rewrap((b) => b.writeUInt32LE(b.readUInt32LE(20) - 4, 20))), /overlap/);
    expectFormatError(() => decodeBody(Buffer.from(good.body).fill(0, 0, 4)), /section STRS is missing/);
    expectFormatError(() => decodeConfig(rewrap((b) => b.writeUInt32LE(0xffff, off(3) + 4))), /outside STRS/);
    expectFormatError(() => decodeConfig(rewrap((b) => b.writeUInt32LE(99, off(3) + 16))), /outside SRCC/);
    expectFormatError(() => decodeConfig(rewrap((b) => (b[off(3) + 8] = 3))), /unknown action 3/);
    expectFormatError(() => decodeConfig(rewrap((b) => b.writeUInt32LE(0, off(3) + 36))), /no EXPR section/);
    expectFormatError(() => decodeConfig(rewrap((b) => ((b[off(2)] = 0), (b[off(2) + 1] = 2)))), /defaultKind 2 requires defaultAction 1/);
    expectFormatError(() => decodeConfig(rewrap((b) => (b[off(2) + 1] = 3))), /defaultKind 3/);
  });

  it("predicates: unsorted exact blocks, bad kinds, templates off paths", () => {
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
    expectFormatError(() => decodeConfig(rewrap((b) => (b[p0] = 12))), /unknown field 12/);
    // Predicate 4 is the PATH predicate with the template; as METHOD it is malformed.
    expectFormatError(() => decodeConfig(rewrap((b) => (b[p0 + 24 * 4] = 4))), /templates are for paths only/);
    // An ATTRIBUTE predicate needs its key.
    expectFormatError(() => decodeConfig(rewrap((b) => b.writeUInt32LE(0, p0 + 24 * 2 + 8))), /needs an arg/);
  });

  it("the encoder refuses IRs the format cannot hold", () => {
    assert.throws(() => encodeBody({ ...everything, rules: [{ ...everything.rules[1], id: "bad id" }] }), /invalid rule id/);
    assert.throws(() => encodeBody({ ...everything, rules: [everything.rules[1], everything.rules[1]] }), /duplicate rule id/);
    assert.throws(() => encodeBody({ ...everything, defaultAction: "allow", defaultKind: 2 }), /defaultKind 2/);
  });
});
