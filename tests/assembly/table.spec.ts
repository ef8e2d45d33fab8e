import { loadConfiguration } from "../../assembly/engine/config";
import { decide, decideLinear, Decision } from "../../assembly/engine/decision";
import { PolicyTable } from "../../assembly/engine/table/policy-table";
import { COMPILED_CONFIG, COMPILED_HASH, OVERLAP_CONFIG } from "./fixtures";
import {
  ALLOW, any, attr, AUDIT, bytesOf, clause, DENY, ex, F_HOST, F_METHOD, F_PATH, F_PORT, F_PRINCIPAL, F_SNI, F_TD, header,
  loadEnvelope, suf,
  outcome, peek32, peerOf, poke32, pre, pred, rule, SchemaB, sectionOffset, shadowsOf, TableB, TestRequest, toPlanar,
  tpl, wrap, wrapPlanar, expectContains, T_FAMS, T_IDS, T_IDSX, T_META, T_PATS, T_PRED, T_ROWS, T_SCHM, T_VALS,
  T_VALX,
} from "./helpers";

/**
 * A small table touching every section: three singleton families, then fam-a..fam-c, a family whose hole is the
 * principal (rules 3..5).
 */
function sample(): TableB {
  const t = new TableB();
  t.add(rule("deny-evil", DENY, [clause([pred(F_PRINCIPAL, [ex("spiffe://td/app/evil")])])]));
  t.add(rule("allow-orders", ALLOW, [clause([attr("app", [ex("orders"), ex("billing")])])],
    [clause([pred(F_METHOD, [ex("GET")]), pred(F_PATH, [pre("/api/"), tpl("/v1/{*}/x/{**}")])])],
    [header("x-env", [any()])]));
  t.add(rule("audit", AUDIT, [], [clause([pred(F_HOST, [ex("Example.COM")])])]));
  t.add(rule("fam-a", ALLOW, [clause([pred(F_PRINCIPAL, [ex("spiffe://td/fam/c")])])], [clause([pred(F_METHOD, [ex("GET")])])]));
  t.add(rule("fam-b", ALLOW, [clause([pred(F_PRINCIPAL, [ex("spiffe://td/fam/a")])])], [clause([pred(F_METHOD, [ex("GET")])])]));
  t.add(rule("fam-c", ALLOW, [clause([pred(F_PRINCIPAL, [ex("spiffe://td/fam/b")])])], [clause([pred(F_METHOD, [ex("GET")])])]));
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

/** Family 3 (fam-a..fam-c) starts here in FAMS. */
const FAM3: i32 = 3 * 48;

describe("decodeEnvelope", () => {
  it("loads the builder's table", () => {
    const b = sample();
    const r = loadEnvelope(b.envelope());
    expect(r.error).toBe("");
    const t = r.table!;
    expect(t.ruleCount).toBe(6);
    expect(t.famCount).toBe(4);
    expect(b.fams[3].count).toBe(3);
    expect(t.valueCount).toBe(3);
    expect(t.hashHex).toBe("0123456789abcdef");
    expect(t.shadowRuleCount).toBe(1);
    expect(t.ruleId(1)).toBe("allow-orders");
    expect(t.ruleId(5)).toBe("fam-c");
    expect(t.familyOf(4)).toBe(3);
    expect(t.ruleAction(2)).toBe(AUDIT);
  });
  it("checks the envelope header", () => {
    const env = sample().envelope();
    expect(loadEnvelope(env.slice(0, 10)).error).toBe("table: envelope is 10 bytes, shorter than its 24-byte header");
    const bad = env.slice(0);
    bad[0] = 0x58;
    expect(loadEnvelope(bad).error).toBe("table: bad magic (not a spiffe-authz policy table)");
    const v1 = env.slice(0);
    v1[4] = 1;
    expect(loadEnvelope(v1).error).toBe("table: unsupported version 1 (this filter reads versions 2 and 3)");
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
    expectContains(loadEnvelope(crc).error, "table: crc32 mismatch (envelope 0x");
    const bomb = wrap(new Uint8Array(16), 1, 0);
    poke32(bomb, 16, 60 << 20);
    expect(loadEnvelope(bomb).error).toBe("table: bodyLen 62914560 is more than 16 compressed bytes can hold");
  });
  it("checks the CRC of the payload before inflating it", () => {
    // A payload that is not DEFLATE at all, flagged as compressed: the CRC fails first.
    const env = wrap(new Uint8Array(40), 1, 0);
    poke32(env, 16, 100);
    expect(loadEnvelope(env).error.startsWith("table: inflate: ")).toBe(true);
    env[30] = 1;
    expectContains(loadEnvelope(env).error, "table: crc32 mismatch");
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
  it("returns an error for every truncation of a byte stream section, directory adjusted", () => {
    // Shorten IDS, VALS or ROWS by k bytes, moving the sections after it: varints and entries run out.
    const tags: u32[] = [T_IDS, T_VALS, T_ROWS];
    for (let ti = 0; ti < tags.length; ti++) {
      const body = sample().body();
      const off = sectionOffset(body, tags[ti]);
      let entry = -1;
      for (let e = 0; e < 14; e++) if (peek32(body, 4 + e * 12) == tags[ti]) entry = e;
      const len = <i32>peek32(body, 12 + entry * 12);
      for (let k = 1; k <= len; k++) {
        const cut = new Uint8Array(body.length - k);
        cut.set(body.subarray(0, off + len - k));
        cut.set(body.subarray(off + len), off + len - k);
        poke32(cut, 12 + entry * 12, <u32>(len - k));
        for (let e = 0; e < 14; e++) {
          const o = peek32(cut, 8 + e * 12);
          if (<i32>o > off) poke32(cut, 8 + e * 12, o - <u32>k);
        }
        expect(errorOfBody(cut).length).toBeGreaterThan(0, "section " + tags[ti].toString() + " cut by " + k.toString());
      }
    }
  });
  it("never traps on corrupted bodies with a valid CRC, and tables that load still decide", () => {
    const body = sample().body();
    const d = new Decision();
    const e = new Decision();
    const req = TestRequest.of("GET", "/api/x").withHost("example.com").withHeader("x-env", "1");
    const peers: string[] = ["spiffe://td/app/orders", "spiffe://td/fam/b", "spiffe://td/fam/x"];
    let loaded = 0;
    for (let i = 0; i < body.length; i++) {
      for (let v = 0; v < 3; v++) {
        const b = body.slice(0);
        b[i] = v == 0 ? 0 : v == 1 ? 0xff : b[i] + 1;
        const r = loadEnvelope(wrap(b, 0, 1));
        if (r.table !== null) {
          loaded++;
          for (let p = 0; p < peers.length; p++) {
            decide(r.table, peerOf(peers[p]), req, d);
            decideLinear(r.table, peerOf(peers[p]), req, e);
            expect(outcome(d) + " " + shadowsOf(d)).toBe(outcome(e) + " " + shadowsOf(e), "byte " + i.toString());
          }
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
    // Planar records read as row-major are garbage: the load fails rather than deciding with them.
    expect(loadEnvelope(wrap(toPlanar(body), 0, 7)).error.length).toBeGreaterThan(0);
  });
  it("loads a compressed, byte-planar table from the real compiler", () => {
    const cfg = bytesOf(COMPILED_CONFIG);
    const r = loadConfiguration(cfg.dataStart, cfg.length);
    expect(r.error).toBe("");
    const t = r.table!;
    expect(t.hashHex).toBe(COMPILED_HASH);
    expect(t.ruleCount).toBe(5);
    const d = new Decision();
    decide(t, peerOf("spiffe://prod.example.com/app/billing"), TestRequest.of("GET", "/api/v1"), d);
    expect(outcome(d)).toBe("allow:allow-orders-read");
    decide(t, peerOf("spiffe://prod.example.com/app/evil"), TestRequest.of("GET", "/api/v1"), d);
    expect(outcome(d)).toBe("deny:deny-evil");
    decide(t, peerOf("spiffe://prod.example.com/team/x"), TestRequest.of("GET", "/admin"), d);
    expect(outcome(d)).toBe("deny:default");
    expect(d.shadowCount).toBe(1);
    decide(t, peerOf("spiffe://prod.example.com/app/web/env/prod"), TestRequest.of("GET", "/"), d);
    expect(outcome(d)).toBe("allow:read-web");
    expect(t.famCount).toBe(4);
  });
  it("decodes the base64 over its own input when asked", () => {
    const cfg = bytesOf(COMPILED_CONFIG);
    const r = loadConfiguration(cfg.dataStart, cfg.length, true);
    expect(r.error).toBe("");
    expect(r.table!.hashHex).toBe(COMPILED_HASH);
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
    poke32(body, 4 + 12 * 13, 18);
    expect(errorOfBody(body)).toBe("table: section directory entry 13: unknown section tag 18");
    body = sample().body();
    poke32(body, 4 + 12 * 8, 1);
    expect(errorOfBody(body)).toBe("table: section STRS appears more than once");
    body = sample().body();
    poke32(body, 0, 13);
    expect(errorOfBody(body)).toBe("table: section ROWS is missing");
  });
  it("rejects sections outside the body, over the directory, overlapping, or of the wrong size", () => {
    let body = sample().body();
    poke32(body, 4 + 8, 0xfffffff0);
    expectContains(errorOfBody(body), "table: section STRS: offset 172 + length 4294967280 exceeds the body");
    body = sample().body();
    poke32(body, 4 + 4, 8);
    expect(errorOfBody(body)).toBe("table: section STRS overlaps the section directory");
    body = sample().body();
    poke32(body, 4 + 12 * 2 + 4, peek32(body, 4 + 4)); // FAMS at STRS' offset
    expect(errorOfBody(body)).toBe("table: sections STRS and FAMS overlap");
    body = sample().body();
    poke32(body, 4 + 12 * 2 + 8, peek32(body, 4 + 12 * 2 + 8) - 1);
    expect(errorOfBody(body)).toBe("table: section FAMS: length 191 is not a multiple of its record size 48");
    body = sample().body();
    poke32(body, 4 + 12 + 8, 0);
    expect(errorOfBody(body)).toBe("table: section META: length 0, expected exactly one 32-byte record");
  });
});

describe("record validation", () => {
  it("checks META", () => {
    expect(patchedByte(T_META, 0, 2)).toBe("table: meta: defaultAction 2 is not 0 (ALLOW) or 1 (DENY)");
    expect(patchedByte(T_META, 1, 3)).toBe("table: meta: defaultKind 3 is not 0, 1 or 2");
    expect(patchedByte(T_META, 0, 0)).toBe("table: meta: defaultKind 2 requires defaultAction 1 (DENY)");
    expect(patchedByte(T_META, 2, 5)).toBe("table: meta: id restart interval 2^5 is not 8 or 16");
    expect(patchedByte(T_META, 3, 2)).toBe("table: meta: value restart interval 2^2 is not 8 or 16");
    expect(patched(T_META, 12, 1000)).toBe("table: meta: label string (offset 0, length 1000) exceeds STRS (90 bytes)");
    expect(patched(T_META, 16, (1 << 24) + 1)).toBe("table: meta: 16777217 rules exceed the limit of 16777216");
    expect(patched(T_META, 24, 4)).toBe("table: meta: unknown flags 0x00000004");
    // Bit 0 (grpcMessages "first") needs a condition that reads gRPC messages; maxBodyBytes one that reads a body.
    expect(patched(T_META, 24, 1)).toBe("table: meta: the grpcMessages flag is set, but no condition reads request.grpc.message");
    expect(patched(T_META, 4, 65536)).toBe("table: meta: maxBodyBytes is 65536, but no condition reads the request body");
    expect(patched(T_META, 28, 1)).toBe("table: meta: bytes 28..31 are not 0, but allowed requests are not sampled");
    // Bit 1: allowed requests are sampled for the decision record below the threshold at offset 28.
    expect(patched(T_META, 24, 2)).toBe("");
  });
  it("checks FAMS", () => {
    expect(patched(T_FAMS, 48 + 16, 9)).toBe("table: family 1: srcStart+srcCount exceeds SRCC (3 records)");
    expect(patched(T_FAMS, 48 + 12, 0xffffffff)).toBe("table: family 1: srcStart+srcCount exceeds SRCC (3 records)");
    expect(patched(T_FAMS, 48 + 24, 4)).toBe("table: family 1: opStart+opCount exceeds OPCL (3 records)");
    expect(patched(T_FAMS, 48 + 32, 100)).toBe("table: family 1: condStart+condCount exceeds PRED (8 records)");
    expect(patched(T_FAMS, 48 + 36, 0)).toBe("table: family 1: expr 0 refers to a condition program, and the table has no EXPR section");
    expect(patchedByte(T_FAMS, 48, 3)).toBe("table: family 1: action 3 is not 0 (ALLOW), 1 (DENY) or 2 (AUDIT)");
    expect(patchedByte(T_FAMS, 48 + 1, 8)).toBe("table: family 1: unknown flags 0x08");
    expect(patchedByte(T_FAMS, 48 + 2, 1)).toBe("table: family 1: deny response 0 exceeds RESP (0 records)");
    expect(patched(T_FAMS, 48 + 4, 2)).toBe("table: family 1: firstRule 2, but the families before it hold 1 rules");
    expect(patched(T_FAMS, 48 + 8, 0)).toBe("table: family 1: rowCount is 0");
    expect(patched(T_FAMS, FAM3 + 8, 4)).toBe("table: family 3: rows exceed the 6 rules of META");
    expect(patched(T_FAMS, FAM3 + 8, 2)).toBe("table: FAMS: families hold 5 rules, META says 6");
    expect(patched(T_META, 16, 7)).toBe("table: FAMS: families hold 6 rules, META says 7");
  });
  it("checks each family's hole", () => {
    expect(patched(T_FAMS, FAM3 + 40, 0xffffffff)).toBe("table: family 3: holeClause and holePred must both be set or both be none");
    expect(patched(T_FAMS, FAM3 + 40, 0)).toBe("table: family 3: holeClause 0 is not one of its source clauses");
    expect(patched(T_FAMS, FAM3 + 44, 0)).toBe("table: family 3: holePred 0 is not in its hole clause");
    // Family 0 (deny-evil) has no hole, but its principal predicate is flagged HOLE.
    expect(patchedByte(T_PRED, 2, 2)).toBe("table: pred 0: HOLE predicate has patterns");
    const body = sample().body();
    const p0 = sectionOffset(body, T_PRED);
    body[p0 + 2] = 2;
    poke32(body, p0 + 12, 0);
    poke32(body, p0 + 16, 0);
    poke32(body, p0 + 20, 0);
    expect(errorOfBody(body)).toBe("table: family 0: HOLE predicate 0 outside its family's hole");
    // Family 3 without its hole still reaches the HOLE predicate.
    const nb = sample().body();
    poke32(nb, sectionOffset(nb, T_FAMS) + FAM3 + 40, 0xffffffff);
    poke32(nb, sectionOffset(nb, T_FAMS) + FAM3 + 44, 0xffffffff);
    expect(errorOfBody(nb)).toBe("table: family 3: HOLE predicate 6 outside its family's hole");
    // The hole predicate itself: a hole must be an identity field, not negated.
    expect(patchedByte(T_PRED, 6 * 24, 4)).toBe("table: pred 6: HOLE predicate on field 4 (only 1..3)");
    expect(patchedByte(T_PRED, 6 * 24 + 1, 1)).toBe("table: pred 6: HOLE predicate is negated or ignores case");
    expect(patchedByte(T_PRED, 6 * 24 + 2, 3)).toBe("table: pred 6: HOLE predicate is negated or ignores case");
  });
  it("checks ROWS: values inside VALS, distinct within a family, nothing after the last row", () => {
    // Rows c, a, b of VALS [a, b, c]: deltas +2, -2, +1 -> zig-zag 4, 3, 2.
    expect(patchedByte(T_ROWS, 0, 6)).toBe("table: ROWS: family 3 row 0: value 3 outside VALS (3 entries)");
    expect(patchedByte(T_ROWS, 1, 5)).toBe("table: ROWS: family 3 row 1: value -1 outside VALS (3 entries)");
    expect(patchedByte(T_ROWS, 1, 0)).toBe("table: family 3: rows 0 and 1 have the same hole value");
    expect(patchedByte(T_ROWS, 2, 0x80)).toBe("table: ROWS: family 3 row 2: varint runs past the end of the section");
    const t = new TableB();
    t.add(rule("a", ALLOW, [clause([pred(F_PRINCIPAL, [ex("spiffe://td/a")])])]));
    t.add(rule("b", ALLOW, [clause([pred(F_PRINCIPAL, [ex("spiffe://td/b")])])]));
    const body = t.body();
    // Six-byte varint: 0x80 x5 then 0x01 in a ROWS section grown to hold it.
    const rows = sectionOffset(body, T_ROWS);
    expect(rows + 2).toBe(body.length);
    const grown = new Uint8Array(body.length + 4);
    grown.set(body);
    grown[rows] = 0x80;
    grown[rows + 1] = 0x80;
    grown[rows + 2] = 0x80;
    grown[rows + 3] = 0x80;
    grown[rows + 4] = 0x80;
    grown[rows + 5] = 0x01;
    poke32(grown, 12 + 13 * 12, 6);
    expect(errorOfBody(grown)).toBe("table: ROWS: family 0 row 0: varint is longer than 5 bytes");
    grown[rows + 4] = 0x1f;
    expect(errorOfBody(grown)).toBe("table: ROWS: family 0 row 0: varint exceeds 32 bits");
    grown[rows] = 0x00;
    grown[rows + 1] = 0x02;
    poke32(grown, 12 + 13 * 12, 3);
    expect(errorOfBody(grown)).toBe("table: ROWS: 1 bytes after the last row");
  });
  it("checks IDS: restart offsets, shared prefixes, lengths, characters, uniqueness", () => {
    expect(patched(T_IDSX, 0, 1)).toBe("table: IDS entry 0: restart offset 1, but the entry starts at 0");
    expect(patchedByte(T_IDS, 0, 1)).toBe("table: IDS entry 0: a restart entry shares 1 bytes");
    // Entry 0 is "deny-evil" (shared 0, suffix 9): as 0 bytes it is an empty id.
    expect(patchedByte(T_IDS, 1, 0)).toBe("table: rule 0: id length 0 is not 1..200 bytes");
    expect(patchedByte(T_IDS, 1, 73)).toBe("table: IDS entry 0: suffix runs past the end of the section");
    expect(patchedByte(T_IDS, 2, 0x20)).toBe("table: rule 0: id has byte 0x20 at 0, outside [A-Za-z0-9._:/-[]#@]");
    // Entry 1 ("allow-orders") starts at byte 11 with its shared length.
    expect(patchedByte(T_IDS, 11, 100)).toBe("table: IDS entry 1: shares 100 bytes with an entry of 9");
    const t = new TableB();
    t.add(rule("a b", ALLOW, []));
    expect(loadEnvelope(t.envelope()).error).toBe("table: rule 0: id has byte 0x20 at 1, outside [A-Za-z0-9._:/-[]#@]");
    const u = new TableB();
    u.add(rule("ok:/[x]#@1.-_", ALLOW, []));
    u.add(rule("dup", ALLOW, [], [clause([pred(F_METHOD, [ex("GET")])])]));
    u.add(rule("dup", DENY, []));
    expect(loadEnvelope(u.envelope()).error).toBe("table: rule 2: id \"dup\" is already used by rule 1");
    const long = new TableB();
    let id = "";
    for (let i = 0; i < 201; i++) id += "x";
    long.add(rule(id, ALLOW, []));
    expect(loadEnvelope(long.envelope()).error).toBe("table: IDS entry 0: 201 bytes exceed 200");
  });
  it("checks VALS: sorted, unique, restart table size", () => {
    // VALS: "spiffe://td/fam/a", "…/b", "…/c"; entry 1 = shared 16, suffix "b". Make it "a": a duplicate.
    const body = sample().body();
    const v = sectionOffset(body, T_VALS);
    expect(body[v + 19]).toBe(16);
    expect(body[v + 21]).toBe(<u8>98);
    body[v + 21] = 97;
    expect(errorOfBody(body)).toBe("table: VALS entry 1: not greater than entry 0 (values must be sorted and unique)");
    body[v + 21] = 96;
    expect(errorOfBody(body)).toBe("table: VALS entry 1: not greater than entry 0 (values must be sorted and unique)");
    expect(patched(T_VALX, 0, 3)).toBe("table: VALS entry 0: restart offset 3, but the entry starts at 0");
    // 16 values at one restart point each 16: the 25 bytes of VALS cannot hold them (each takes two varints at least).
    const many = sample().body();
    const m = sectionOffset(many, T_META);
    many[m + 3] = 4;
    poke32(many, m + 20, 16);
    expect(errorOfBody(many)).toBe("table: VALS: 25 bytes cannot hold the 16 values of META");
    expect(patched(T_META, 20, 9)).toBe("table: VALX: 1 restart offsets, 9 entries need 2");
  });
  it("checks PRED", () => {
    // Predicate 0 is deny-evil's principal predicate.
    expect(patchedByte(T_PRED, 0, 0)).toBe("table: pred 0: field 0 is not 1..14 (table version 3)");
    expect(patchedByte(T_PRED, 0, 15)).toBe("table: pred 0: field 15 is not 1..14 (table version 3)");
    expect(patchedByte(T_PRED, 1, 2)).toBe("table: pred 0: negate 2 is not 0 or 1");
    expect(patchedByte(T_PRED, 2, 8)).toBe("table: pred 0: unknown flags 0x08");
    expect(patchedByte(T_PRED, 2, 4)).toBe("table: pred 0: the HOST_NAME flag on field 1 (only HOST)");
    expect(patchedByte(T_PRED, 3, 1)).toBe("table: pred 0: reserved byte 3 is not 0");
    expect(patched(T_PRED, 8, 1)).toBe("table: pred 0: field 1 takes no arg");
    expect(patched(T_PRED, 16, 0)).toBe("table: pred 0: patCount is 0");
    // Eight records: the GET pattern of allow-orders and of the fam rules is written once.
    expect(patched(T_PRED, 16, 100)).toBe("table: pred 0: patStart+patCount exceeds PATS (8 records)");
    expect(patched(T_PRED, 20, 2)).toBe("table: pred 0: exactCount 2 exceeds patCount 1");
    // Predicate 2 is allow-orders' METHOD predicate, pattern 3 its "GET".
    expect(patchedByte(T_PRED, 2 * 24 + 2, 1)).toBe("table: pred 2: ignore-case pattern 3 is not stored lower-case");
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
    poke32(body, sectionOffset(body, T_PRED) + 20, 2);
    expect(errorOfBody(body)).toBe("table: pred 0: pattern 1 is in the exact block but is not EXACT");
  });
  it("checks args of ATTRIBUTE and HEADER", () => {
    const t = new TableB();
    t.add(rule("r", ALLOW, [clause([attr("", [ex("a"), ex("b")])])]));
    expect(loadEnvelope(t.envelope()).error).toBe("table: pred 0: ATTRIBUTE predicate has an empty arg");
    const h = new TableB();
    h.add(rule("r", ALLOW, [], [clause([header("X-Env", [ex("a")])])]));
    // The builder lower-cases nothing for headers: the table is wrong.
    expect(loadEnvelope(h.envelope()).error).toBe("table: pred 0: header name is not lower-case");
  });
  it("checks PATS", () => {
    expect(patchedByte(T_PATS, 0, 7)).toBe("table: pattern 0: kind 7 is not 0..6 (table version 3)");
    expect(patchedByte(T_PATS, 1, 1)).toBe("table: pattern 0: reserved bytes 1..3 are not 0");
    expectContains(patched(T_PATS, 8, 1000), "table: pattern 0: value string (offset");
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
    expect(patched(T_SCHM, 12, 5)).toBe("table: schema 0: keyStart+keyCount exceeds SKEY (2 records)");
    expect(patched(T_SCHM, 4, 0)).toBe("table: schema 0: empty trust domain");
    const t = sample();
    t.schemas.push(new SchemaB("strict.td", ["x"]));
    expect(loadEnvelope(t.envelope()).error).toBe("table: schema 1: trust domain \"strict.td\" already has schema 0");
    const k = sample();
    k.schemas.push(new SchemaB("other.td", [""]));
    expect(loadEnvelope(k.envelope()).error).toBe("table: schema key 2 is empty");
  });
});

describe("rule families", () => {
  it("a hole row matches by its own value; a shared clause makes every row match, the first reported", () => {
    const t = new TableB();
    for (let i = 0; i < 5; i++) {
      t.add(rule("a" + i.toString(), AUDIT, [clause([pred(F_PRINCIPAL, [ex("spiffe://td/svc/" + i.toString())])]), clause([attr("ns", [ex("ops")])])]));
    }
    for (let i = 0; i < 5; i++) {
      t.add(rule("r" + i.toString(), ALLOW, [clause([pred(F_PRINCIPAL, [ex("spiffe://td/svc/" + i.toString())])]), clause([attr("ns", [ex("ops")])])]));
    }
    const table = t.load();
    expect(table.famCount).toBe(2);
    const d = new Decision();
    decide(table, peerOf("spiffe://td/svc/3"), TestRequest.of("GET", "/"), d);
    expect(outcome(d) + " [" + shadowsOf(d) + "]").toBe("allow:r3 [a3]");
    decide(table, peerOf("spiffe://td/ns/ops/svc/3"), TestRequest.of("GET", "/"), d);
    expect(outcome(d) + " [" + shadowsOf(d) + "]").toBe("allow:r0 [a0,a1,a2,a3,a4]");
    expect(d.shadowRanges).toBe(1);
    decide(table, peerOf("spiffe://td/svc/9"), TestRequest.of("GET", "/"), d);
    expect(outcome(d)).toBe("deny:default");
  });
  it("tables of many rules load quickly and index every principal", () => {
    const t = new TableB();
    for (let i = 0; i < 3000; i++) {
      t.add(rule("r" + i.toString(), ALLOW, [clause([pred(F_PRINCIPAL, [ex("spiffe://td/svc/" + i.toString())])])]));
    }
    const table = loadEnvelope(t.envelope()).table!;
    expect(table.famCount).toBe(1);
    expect(table.index!.keyCount).toBe(3000);
    expect(table.index!.scanCount).toBe(0);
    const d = new Decision();
    decide(table, peerOf("spiffe://td/svc/2999"), TestRequest.of("GET", "/"), d);
    expect(outcome(d)).toBe("allow:r2999");
    decide(table, peerOf("spiffe://td/svc/1234"), TestRequest.of("GET", "/"), d);
    expect(outcome(d)).toBe("allow:r1234");
    decide(table, peerOf("spiffe://td/svc/3000"), TestRequest.of("GET", "/"), d);
    expect(outcome(d)).toBe("deny:default");
  });
  it("the same table without families decides the same", () => {
    const a = new TableB();
    const b = new TableB();
    b.families = false;
    for (let i = 0; i < 40; i++) {
      const r = rule("r" + i.toString(), i % 7 == 0 ? DENY : ALLOW, [clause([attr("app", [ex("a" + (i % 13).toString())])])], [clause([pred(F_METHOD, [ex("GET")])])]);
      a.add(r);
      b.add(r);
    }
    const ta = a.load();
    const tb = b.load();
    expect(ta.famCount).toBeLessThan(tb.famCount);
    const d = new Decision();
    const e = new Decision();
    for (let i = 0; i < 14; i++) {
      decide(ta, peerOf("spiffe://td/app/a" + i.toString()), TestRequest.of("GET", "/"), d);
      decide(tb, peerOf("spiffe://td/app/a" + i.toString()), TestRequest.of("GET", "/"), e);
      expect(outcome(d)).toBe(outcome(e));
    }
  });
});

/** The row-major body of a table loaded from a plugin configuration, as bytes. */
function loadedBody(config: string): Uint8Array {
  const cfg = bytesOf(config);
  const r = loadConfiguration(cfg.dataStart, cfg.length);
  expect(r.error).toBe("");
  const t = r.table!;
  const out = new Uint8Array(<i32>t.bodyLen);
  for (let i: u32 = 0; i < t.bodyLen; i++) out[i] = load<u8>(t.base + i);
  return out;
}

/** The index of the first byte where `a` and `b` differ, or -1 when they are equal. */
function firstDifference(a: Uint8Array, b: Uint8Array): i32 {
  const n = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < n; i++) if (a[i] != b[i]) return i;
  return a.length == b.length ? -1 : n;
}

describe("the test encoder and the real encoder", () => {
  // The same tables as COMPILED_IR and OVERLAP_IR in tests/support/assembly-fixtures.ts, written by TableB.
  it("write the same bytes for the compiled fixture's table", () => {
    const t = new TableB();
    t.label = "fixture";
    t.defaultAction = 1;
    t.defaultKind = 2;
    t.schemas.push(new SchemaB("prod.example.com", ["app"]));
    t.add(rule("deny-evil", DENY, [clause([pred(F_PRINCIPAL, [ex("spiffe://prod.example.com/app/evil")])])]));
    t.add(rule("allow-orders-read", ALLOW, [clause([attr("app", [ex("billing"), ex("orders")])])],
      [clause([pred(F_METHOD, [ex("GET")]), pred(F_PATH, [pre("/api/")])])]));
    t.add(rule("audit-admin", AUDIT, [], [clause([pred(F_PATH, [pre("/admin")])])]));
    t.add(rule("read-web", ALLOW, [clause([attr("app", [ex("web")])])], [clause([pred(F_METHOD, [ex("GET")])])]));
    t.add(rule("read-api", ALLOW, [clause([attr("app", [ex("api")])])], [clause([pred(F_METHOD, [ex("GET")])])]));
    expect(firstDifference(t.body(), loadedBody(COMPILED_CONFIG))).toBe(-1);
  });

  it("write the same bytes for a table with negation, hosts, headers, every pattern kind, families and schemas", () => {
    const t = new TableB();
    t.label = "overlap";
    t.defaultAction = 0;
    t.defaultKind = 1;
    t.schemas.push(new SchemaB("a.td", ["app", "env"]));
    t.schemas.push(new SchemaB("td", ["env"]));
    const names = ["a", "b", "c"];
    for (let i = 0; i < names.length; i++) {
      t.add(rule("hole-" + names[i], ALLOW, [clause([pred(F_PRINCIPAL, [ex("spiffe://td/" + names[i])]), attr("env", [ex("x")])])],
        [clause([pred(F_METHOD, [ex("GET")])])]));
    }
    for (let i = 1; i <= 2; i++) {
      t.add(rule("same-" + i.toString(), DENY, [clause([pred(F_TD, [ex("evil.td")])])], [clause([pred(F_PATH, [suf(".php")])])]));
    }
    t.add(rule("mixed", DENY,
      [clause([pred(F_PRINCIPAL, [ex("spiffe://td/z"), ex("spiffe://td/y")])]), clause([pred(F_TD, [ex("other.td")])])],
      [clause([pred(F_HOST, [ex("api.example.com"), suf(".internal")])]), clause([pred(F_PATH, [tpl("/v1/{*}/items")]), pred(F_PORT, [ex("8443")], true)])],
      [header("x-tenant", [any()]), pred(F_SNI, [pre("api.")], true)]));
    t.add(rule("dry", ALLOW, [clause([attr("app", [ex("web"), ex("api")])])], [], [], true));
    t.add(rule("audit-all", AUDIT, []));
    expect(firstDifference(t.body(), loadedBody(OVERLAP_CONFIG))).toBe(-1);
  });
});
