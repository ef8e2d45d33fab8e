// The compiler's SPIFFE ID checks against the spec (SPIFFE-ID.md section 2), sweeping every byte value the way
// go-spiffe's spiffeid tests do.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { segmentProblem, spiffeIdProblem, trustDomainOf, trustDomainProblem } from "../../src/policy/spiffe.ts";

const TD_OK = new Set("abcdefghijklmnopqrstuvwxyz0123456789.-_");
const PATH_OK = new Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_");

describe("SPIFFE IDs", () => {
  it("trust domain characters: exactly a-z 0-9 . - _", () => {
    for (let c = 0; c < 256; c++) {
      const ch = String.fromCharCode(c);
      if (ch === "/") continue;
      const ok = spiffeIdProblem(`spiffe://a${ch}b/x`) === null;
      assert.equal(ok, TD_OK.has(ch), `byte 0x${c.toString(16)} in the trust domain`);
    }
  });

  it("path characters: exactly a-z A-Z 0-9 . - _", () => {
    for (let c = 0; c < 256; c++) {
      const ch = String.fromCharCode(c);
      if (ch === "/") continue;
      const ok = spiffeIdProblem(`spiffe://td/a${ch}b`) === null;
      assert.equal(ok, PATH_OK.has(ch), `byte 0x${c.toString(16)} in the path`);
    }
  });

  it("structure: scheme, empty parts, dot segments, trailing slash, length", () => {
    const valid = ["spiffe://td", "spiffe://td/a", "spiffe://td/a/b.c/..d/-_", "spiffe://" + "a".repeat(255) + "/x", "spiffe://td/" + "x".repeat(2030)];
    const invalid: [string, RegExp][] = [
      ["SPIFFE://td/a", /lower-case/],
      ["spiffe:/td/a", /starts with/],
      ["https://td/a", /starts with/],
      ["spiffe://", /empty/],
      ["spiffe:///a", /empty/],
      ["spiffe://td/", /end with/],
      ["spiffe://td/a/", /end with/],
      ["spiffe://td//a", /empty segment/],
      ["spiffe://td/./a", /"\." segment/],
      ["spiffe://td/a/..", /"\.\." segment/],
      ["spiffe://td/a%20b", /percent-encoding/],
      ["spiffe://" + "a".repeat(256) + "/x", /longer than 255/],
      ["spiffe://td:8080/a", /contains ":"/],
      ["spiffe://user@td/a", /contains "@"/],
    ];
    for (const id of valid) assert.equal(spiffeIdProblem(id), null, id);
    for (const [id, why] of invalid) assert.match(spiffeIdProblem(id) ?? "", why, id);
    assert.equal(trustDomainOf("spiffe://td.example/a/b"), "td.example");
    assert.equal(trustDomainOf("spiffe://td.example"), "td.example");
    assert.equal(trustDomainProblem("Td"), "the trust domain must be lower-case");
    assert.equal(segmentProblem(".."), 'the path has a ".." segment');
  });
});
