// `compile --emit rbac` and `--emit rbac-matcher` must say what the table says: every golden case (tests/cases/)
// whose policy Envoy RBAC can express is replayed through a real Envoy running the emitted RBAC filters, with client
// certificates carrying each request's SPIFFE ID, and each decision must equal the case's expected.jsonl (which the
// wasm filter is held to). The indexed form also runs generated policies over exact IDs against the filter itself.

import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { replayCase, type RbacForm } from "../../bench/rbac-equivalence.ts";
import { replayGenerated } from "../../bench/rbac-generated.ts";
import { repoRoot } from "../../dev/envoy/binary.ts";

// The one documented difference of the `policies` form (src/compiler/emit/rbac.ts): Envoy refuses RE2 programs over
// 100 instructions, so the emitted regexes cannot count a trust domain to 255 bytes; a 256-byte trust domain is
// invalid to the filter only. The indexed form decides SPIFFE validity of its exact keys at compile time.
const KNOWN: Record<RbacForm, RegExp | null> = { policies: /spiffe:\/\/a{256}/, matcher: null };
const MIN_COMPARED: Record<RbacForm, number> = { policies: 100, matcher: 40 };

const casesDir = join(repoRoot, "tests", "cases");
const names = readdirSync(casesDir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();

for (const form of ["policies", "matcher"] as const) {
  describe(`compile --emit ${form === "policies" ? "rbac" : "rbac-matcher"} agrees with the table in a real Envoy`, () => {
    let compared = 0;
    for (const name of names) {
      test(name, { timeout: 120_000 }, async (t) => {
        const o = await replayCase(join(casesDir, name), form);
        if (o === null) return t.skip("no policy with requests");
        if (o.compared === 0) return t.skip(o.skipped.join("; "));
        compared += o.compared;
        const known = KNOWN[form];
        const unexpected = o.mismatches.filter((m) => known === null || !known.test(m));
        assert.deepEqual(unexpected, [], `${name}: ${o.compared - o.mismatches.length}/${o.compared} agree`);
      });
    }
    test("compared a meaningful number of decisions", () => {
      assert.ok(compared >= MIN_COMPARED[form], `only ${compared} decisions compared`);
    });
  });
}

describe("compile --emit rbac-matcher on generated policies over exact IDs", () => {
  // A fixed seed keeps npm test reproducible; `node --import tsx bench/rbac-generated.ts` runs fresh seeds. Both
  // layouts run on every case (`auto` picks by request for tables of this size).
  for (const layout of ["by-request", "by-principal"] as const) {
    test(`decides every request as the filter does, laid out ${layout} (seed 1, 40 policies, 960 requests)`, { timeout: 180_000 }, async () => {
      const o = await replayGenerated(1, 40, layout);
      assert.deepEqual(o.refused, [], "every generated policy is indexable");
      assert.deepEqual(o.mismatches, []);
      assert.equal(o.compared, 960);
    });
  }
});
