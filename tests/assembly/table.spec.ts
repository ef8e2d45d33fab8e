import { loadConfiguration } from "../../assembly/engine/config";
import { decide, Decision } from "../../assembly/engine/decision";
import { PolicyTable } from "../../assembly/engine/table";
import { COMPILED_CONFIG, COMPILED_HASH } from "./fixtures";
import {
  ALLOW, any, attr, AUDIT, bytesOf, clause, DENY, ex, F_HOST, F_METHOD, F_PATH, F_PRINCIPAL, header, loadEnvelope,
  outcome, peek32, peerOf, poke32, pre, pred, Rng, rule, SchemaB, sectionOffset, TableB, TestRequest, toPlanar, tpl,
  wrap, wrapPlanar, expectContains,
} from "./helpers";

/** A small table touching every section. */
function sample(): TableB {
  const t = new TableB();
  t.add(rule("deny-evil", DENY, [clause([pred(F_PRINCIPAL, [ex("spiffe://td/app/evil")])])]));
  t.add(rule("allow-orders", ALLOW, [clause([attr("app", [ex("orders"), ex("billing")])])],
    [clause([pred(F_METHOD, [ex("GET")]), pred(F_PATH, [pre("/api/"), tpl("/v1/{*}/x/{**}")])])],
    [header("x-env", [any()])]));
  t.add(rule("audit", AUDIT, [], [clause([pred(F_HOST, [ex("Example.COM")])])]));
  t.schemas.push(new SchemaB("strict.td", ["app", "env"]));
  return t;
}

function errorOfBody(body: Uint8Array): string {
  return loadEnvelope(wrap(body, 0, 1)).error;
}

/** Patches a u32 at `delta` bytes into section `tag` of the sample body and returns the load error. */
function patched(tag: u32, delta: i32, value: u32): string {
  const body = sample().body();
  poke32(body, sectionOffset(body, tag) + delta, value);
  return errorOfBody(body);
}

function patchedByte(tag: u32, delta: i32, value: u8): string {
  const body = sample().body();
  body[sectionOffset(body, tag) + delta] = value;
  return errorOfBody(body);
}

const RULE: u32 = 3;
const PRED: u32 = 6;
const PATS: u32 = 7;
const META: u32 = 2;
const SCHM: u32 = 8;

describe("decodeEnvelope", () => {
  it("loads the builder's table", () => {
    const r = loadEnvelope(sample().envelope());
    expect(r.error).toBe("");
    const t = r.table!;
    expect(t.ruleCount).toBe(3);
    expect(t.hashHex).toBe("0123456789abcdef");
    expect(t.shadowRuleCount).toBe(1);
    expect(t.ruleId(1)).toBe("allow-orders");
  });
  it("checks the envelope header", () => {
    const env = sample().envelope();
    expect(loadEnvelope(env.slice(0, 10)).error).toBe("table: envelope is 10 bytes, shorter than its 24-byte header");
    const bad = env.slice(0);
    bad[0] = 0x58;
    expect(loadEnvelope(bad).error).toBe("table: bad magic (not a spiffe-authz policy table)");
    const v2 = env.slice(0);
    v2[4] = 2;
    expect(loadEnvelope(v2).error).toBe("table: unsupported version 2 (this filter reads version 1)");
    const fl = env.slice(0);
    fl[6] = 4;
    expect(loadEnvelope(fl).error).toBe("table: unknown envelope flags 0x00000004");
    const big = env.slice(0);
    poke32(big, 16, (64 << 20) + 1);
    expect(loadEnvelope(big).error).toBe("table: bodyLen 67108865 exceeds 64 MiB");
    const short = env.slice(0);
    poke32(short, 16, peek32(env, 16) + 1);
    expectContains(loadEnvelope(short).error, "uncompressed payload is");
    const crc = env.slice(0);
    crc[30] = crc[30] ^ 1;
    expectContains(loadEnvelope(crc).error, "table: crc32 mismatch");
    const bomb = env.slice(0, 40);
    bomb[6] = 1;
    poke32(bomb, 16, 60 << 20);
    expect(loadEnvelope(bomb).error).toBe("table: bodyLen 62914560 is more than 16 compressed bytes can hold");
  });
  it("returns an error, never traps, for every truncation of the envelope", () => {
    const env = sample().envelope();
    for (let n = 0; n < env.length; n++) {
      expect(loadEnvelope(env.slice(0, n)).error.length).toBeGreaterThan(0, "truncated to " + n.toString());
    }
  });
  it("returns an error for every truncation of the body, even with a matching envelope", () => {
    const body = sample().body();
    for (let n = 0; n < body.length; n++) {
      expect(errorOfBody(body.slice(0, n)).length).toBeGreaterThan(0, "body truncated to " + n.toString());
    }
  });
  it("never traps on corrupted bodies with a valid CRC, and tables that load still decide", () => {
    const body = sample().body();
    const d = new Decision();
    const req = TestRequest.of("GET", "/api/x").withHost("example.com").withHeader("x-env", "1");
    const peer = peerOf("spiffe://td/app/orders");
    let loaded = 0;
    for (let i = 0; i < body.length; i++) {
      for (let v = 0; v < 3; v++) {
        const b = body.slice(0);
        b[i] = v == 0 ? 0 : v == 1 ? 0xff : b[i] + 1;
        const r = loadEnvelope(wrap(b, 0, 1));
        if (r.table !== null) {
          loaded++;
          decide(r.table, peer, req, d);
        }
      }
    }
    // Flips inside strings keep the table valid; flips in indexes and counts do not.
    expect(loaded).toBeGreaterThan(0);
  });
  it("reads byte-planar bodies (flag bit 1)", () => {
    const body = sample().body();
    const planar = loadEnvelope(wrapPlanar(body, 7));
    expect(planar.error).toBe("");
    const plain = loadEnvelope(wrap(body, 0, 7)).table!;
    const t = planar.table!;
    expect(t.ruleCount).toBe(plain.ruleCount);
    for (let i: u32 = 0; i < t.bodyLen; i++) expect(load<u8>(t.base + i)).toBe(load<u8>(plain.base + i));
    // The CRC describes the row-major body: a planar payload flagged as row-major fails it.
    expect(loadEnvelope(wrap(toPlanar(body), 0, 7)).error.length).toBeGreaterThan(0);
  });
  it("loads a compressed, byte-planar table from the real compiler", () => {
    const cfg = bytesOf(COMPILED_CONFIG);
    const r = loadConfiguration(cfg.dataStart, cfg.length);
    expect(r.error).toBe("");
    const t = r.table!;
    expect(t.hashHex).toBe(COMPILED_HASH);
    expect(t.ruleCount).toBe(3);
    const d = new Decision();
    decide(t, peerOf("spiffe://prod.example.com/app/billing"), TestRequest.of("GET", "/api/v1"), d);
    expect(outcome(d)).toBe("allow:allow-orders-read");
    decide(t, peerOf("spiffe://prod.example.com/app/evil"), TestRequest.of("GET", "/api/v1"), d);
    expect(outcome(d)).toBe("deny:deny-evil");
    decide(t, peerOf("spiffe://prod.example.com/team/x"), TestRequest.of("GET", "/admin"), d);
    expect(outcome(d)).toBe("deny:default");
    expect(d.shadowCount).toBe(1);
  });
});

describe("section directory", () => {
  it("rejects a directory larger than the body", () => {
    const body = sample().body();
    poke32(body, 0, 1000);
    expectContains(errorOfBody(body), "table: section directory of 1000 entries exceeds the body");
  });
  it("rejects unknown, duplicate and missing tags", () => {
    let body = sample().body();
    poke32(body, 4 + 12 * 8, 10);
    expect(errorOfBody(body)).toBe("table: section directory entry 8: unknown section tag 10");
    body = sample().body();
    poke32(body, 4 + 12 * 8, 1);
    expect(errorOfBody(body)).toBe("table: section STRS appears more than once");
    body = sample().body();
    poke32(body, 0, 8);
    expect(errorOfBody(body)).toBe("table: section SKEY is missing");
  });
  it("rejects sections outside the body, over the directory, overlapping, or of the wrong size", () => {
    let body = sample().body();
    poke32(body, 4 + 8, 0xfffffff0);
    expectContains(errorOfBody(body), "table: section STRS: offset 112 + length 4294967280 exceeds the body");
    body = sample().body();
    poke32(body, 4 + 4, 8);
    expect(errorOfBody(body)).toBe("table: section STRS overlaps the section directory");
    body = sample().body();
    poke32(body, 4 + 12 * 2 + 4, peek32(body, 4 + 4)); // RULE at STRS' offset
    expect(errorOfBody(body)).toBe("table: sections STRS and RULE overlap");
    body = sample().body();
    poke32(body, 4 + 12 * 2 + 8, peek32(body, 4 + 12 * 2 + 8) - 1);
    expect(errorOfBody(body)).toBe("table: section RULE: length 119 is not a multiple of its record size 40");
    body = sample().body();
    poke32(body, 4 + 12 + 8, 0);
    expect(errorOfBody(body)).toBe("table: section META: length 0, expected exactly one 24-byte record");
  });
});

describe("record validation", () => {
  it("checks META", () => {
    expect(patchedByte(META, 0, 2)).toBe("table: meta: defaultAction 2 is not 0 (ALLOW) or 1 (DENY)");
    expect(patchedByte(META, 1, 3)).toBe("table: meta: defaultKind 3 is not 0, 1 or 2");
    expect(patchedByte(META, 0, 0)).toBe("table: meta: defaultKind 2 requires defaultAction 1 (DENY)");
    expect(patched(META, 12, 1000)).toBe("table: meta: label string (offset 112, length 1000) exceeds STRS (116 bytes)");
    expect(patched(META, 16, 1)).toBe("table: meta: flags are not 0");
  });
  it("checks RULE", () => {
    expect(patched(RULE, 40 + 16, 9)).toBe("table: rule 1: srcStart+srcCount exceeds SRCC (2 records)");
    expect(patched(RULE, 40 + 12, 0xffffffff)).toBe("table: rule 1: srcStart+srcCount exceeds SRCC (2 records)");
    expect(patched(RULE, 40 + 24, 3)).toBe("table: rule 1: opStart+opCount exceeds OPCL (2 records)");
    expect(patched(RULE, 40 + 32, 100)).toBe("table: rule 1: condStart+condCount exceeds PRED (6 records)");
    expect(patched(RULE, 40 + 36, 0)).toBe("table: rule 1: expr 0 refers to a condition program, and the table has no EXPR section");
    expect(patchedByte(RULE, 40 + 8, 3)).toBe("table: rule 1: action 3 is not 0 (ALLOW), 1 (DENY) or 2 (AUDIT)");
    expect(patchedByte(RULE, 40 + 9, 2)).toBe("table: rule 1: unknown flags 0x02");
    expect(patchedByte(RULE, 40 + 10, 1)).toBe("table: rule 1: reserved bytes 10..11 are not 0");
    expect(patched(RULE, 4, 0)).toBe("table: rule 0: id length 0 is not 1..200 bytes");
    expect(patched(RULE, 4, 201)).toBe("table: rule 0: id string (offset 20, length 201) exceeds STRS (116 bytes)");
    expect(patched(RULE, 40 + 4, 1000)).toBe("table: rule 1: id string (offset 72, length 1000) exceeds STRS (116 bytes)");
  });
  it("checks rule ids: characters and uniqueness", () => {
    const t = new TableB();
    t.add(rule("a b", ALLOW, []));
    expect(loadEnvelope(t.envelope()).error).toBe("table: rule 0: id has byte 0x20 at 1, outside [A-Za-z0-9._:/-[]#@]");
    const u = new TableB();
    u.add(rule("ok:/[x]#@1.-_", ALLOW, []));
    u.add(rule("dup", ALLOW, []));
    u.add(rule("dup", DENY, []));
    expect(loadEnvelope(u.envelope()).error).toBe("table: rule 2: id \"dup\" is already used by rule 1");
  });
  it("checks PRED", () => {
    // Predicate 0 is deny-evil's principal predicate.
    expect(patchedByte(PRED, 0, 0)).toBe("table: pred 0: field 0 is not 1..9");
    expect(patchedByte(PRED, 0, 10)).toBe("table: pred 0: field 10 is not 1..9");
    expect(patchedByte(PRED, 1, 2)).toBe("table: pred 0: negate 2 is not 0 or 1");
    expect(patchedByte(PRED, 2, 2)).toBe("table: pred 0: unknown flags 0x02");
    expect(patchedByte(PRED, 3, 1)).toBe("table: pred 0: reserved byte 3 is not 0");
    expect(patched(PRED, 8, 1)).toBe("table: pred 0: field 1 takes no arg");
    expect(patched(PRED, 16, 0)).toBe("table: pred 0: patCount is 0");
    expect(patched(PRED, 16, 100)).toBe("table: pred 0: patStart+patCount exceeds PATS (8 records)");
    expect(patched(PRED, 20, 2)).toBe("table: pred 0: exactCount 2 exceeds patCount 1");
    // Predicate 2 is allow-orders' METHOD predicate, pattern 3 its "GET".
    expect(patchedByte(PRED, 2 * 24 + 2, 1)).toBe("table: pred 2: ignore-case pattern 3 is not stored lower-case");
  });
  it("checks the exact block: EXACT, sorted, no duplicates", () => {
    const t = new TableB();
    t.raw = true;
    t.add(rule("r", ALLOW, [clause([attr("app", [ex("b"), ex("a")])])]));
    expect(loadEnvelope(t.envelope()).error).toBe("table: pred 0: exact patterns 0 and 1 are not sorted");
    const d = new TableB();
    d.raw = true;
    d.add(rule("r", ALLOW, [clause([attr("app", [ex("a"), ex("a")])])]));
    expect(loadEnvelope(d.envelope()).error).toBe("table: pred 0: exact patterns 0 and 1 are duplicates");
    const k = new TableB();
    k.raw = true;
    k.add(rule("r", ALLOW, [clause([attr("app", [ex("a"), pre("b")])])]));
    const body = k.body();
    poke32(body, sectionOffset(body, PRED) + 20, 2);
    expect(errorOfBody(body)).toBe("table: pred 0: pattern 1 is in the exact block but is not EXACT");
  });
  it("checks args of ATTRIBUTE and HEADER", () => {
    const t = new TableB();
    t.add(rule("r", ALLOW, [clause([attr("", [ex("a")])])]));
    expect(loadEnvelope(t.envelope()).error).toBe("table: pred 0: ATTRIBUTE predicate has an empty arg");
    const h = new TableB();
    h.add(rule("r", ALLOW, [], [clause([header("X-Env", [ex("a")])])]));
    // The builder lower-cases nothing for headers: the table is wrong.
    expect(loadEnvelope(h.envelope()).error).toBe("table: pred 0: header name is not lower-case");
  });
  it("checks PATS", () => {
    expect(patchedByte(PATS, 0, 5)).toBe("table: pattern 0: kind 5 is not 0..4");
    expect(patchedByte(PATS, 1, 1)).toBe("table: pattern 0: reserved bytes 1..3 are not 0");
    expectContains(patched(PATS, 8, 1000), "table: pattern 0: value string (offset");
    const t = new TableB();
    t.add(rule("r", ALLOW, [], [clause([pred(F_METHOD, [tpl("/a/{*}")])])]));
    expect(loadEnvelope(t.envelope()).error).toBe("table: pred 0: TEMPLATE pattern 0 on a field other than PATH");
    const p = new TableB();
    p.add(rule("r", ALLOW, [], [clause([pred(F_PATH, [tpl("/a/{**}/b")])])]));
    expect(loadEnvelope(p.envelope()).error).toBe("table: pattern 0: template {**} is not the last segment");
    const q = new TableB();
    q.add(rule("r", ALLOW, [], [clause([pred(F_PATH, [tpl("/a/{x}")])])]));
    expect(loadEnvelope(q.envelope()).error).toBe("table: pattern 0: template segment at byte 3 uses braces other than {*} or {**}");
    const v = new TableB();
    v.add(rule("r", ALLOW, [], [clause([pred(F_PATH, [tpl("/a/x{*}")])])]));
    expect(loadEnvelope(v.envelope()).error).toBe("table: pattern 0: template segment at byte 3 uses braces other than {*} or {**}");
  });
  it("checks SCHM and SKEY", () => {
    expect(patched(SCHM, 12, 5)).toBe("table: schema 0: keyStart+keyCount exceeds SKEY (2 records)");
    expect(patched(SCHM, 4, 0)).toBe("table: schema 0: empty trust domain");
    const t = sample();
    t.schemas.push(new SchemaB("strict.td", ["x"]));
    expect(loadEnvelope(t.envelope()).error).toBe("table: schema 1: trust domain \"strict.td\" already has schema 0");
    const k = sample();
    k.schemas.push(new SchemaB("other.td", [""]));
    expect(loadEnvelope(k.envelope()).error).toBe("table: schema key 2 is empty");
  });
});

describe("tables of many rules", () => {
  it("load quickly and index every principal", () => {
    const t = new TableB();
    for (let i = 0; i < 3000; i++) {
      t.add(rule("r" + i.toString(), ALLOW, [clause([pred(F_PRINCIPAL, [ex("spiffe://td/svc/" + i.toString())])])]));
    }
    const table = loadEnvelope(t.envelope()).table!;
    expect(table.index!.keyCount).toBe(3000);
    expect(table.index!.scanCount).toBe(0);
    const d = new Decision();
    decide(table, peerOf("spiffe://td/svc/2999"), TestRequest.of("GET", "/"), d);
    expect(outcome(d)).toBe("allow:r2999");
    decide(table, peerOf("spiffe://td/svc/3000"), TestRequest.of("GET", "/"), d);
    expect(outcome(d)).toBe("deny:default");
  });
});
