// The conformance cases of @bufbuild/cel-spec inside our subset must all pass; the counts are printed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CelHarness } from "../cel/wasm-harness.ts";
import { runConformance } from "../cel/conformance.ts";

test("cel-spec conformance cases inside the supported subset pass", async () => {
  const r = runConformance(await CelHarness.create());
  const skipped = Object.entries(r.skipped).sort((a, b) => b[1] - a[1]);
  console.log(`cel conformance: ${r.total} cases, ${r.run} run, ${r.passed} passed, ${r.failures.length} failed, ` +
    `${r.total - r.run} skipped:\n${skipped.map(([why, n]) => `  ${String(n).padStart(4)}  ${why}`).join("\n")}`);
  assert.deepEqual(r.failures, []);
  assert.equal(r.passed + r.failures.length, r.run);
  assert.equal(r.run + skipped.reduce((n, [, k]) => n + k, 0), r.total);
  // The subset covers the arithmetic, comparison, logic, string and conversion suites: hundreds of cases.
  assert.ok(r.run >= 600, `only ${r.run} conformance cases ran`);
});
