// The conformance cases of @bufbuild/cel-spec inside the supported subset must all pass, on the VM alone and in
// the shipped filter; the counts are printed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ensureWasm } from "../../dev/envoy/wasm.ts";
import { CelHarness } from "../cel/wasm-harness.ts";
import { runConformance, runConformanceOnRelease, type ConformanceReport } from "../cel/conformance.ts";
import { releaseEvaluator } from "../cel/differential.ts";

function report(label: string, r: ConformanceReport): void {
  const skipped = Object.entries(r.skipped).sort((a, b) => b[1] - a[1]);
  console.log(`cel conformance (${label}): ${r.total} cases, ${r.run} run, ${r.passed} passed, ${r.failures.length} failed, ` +
    `${r.total - r.run} skipped:\n${skipped.map(([why, n]) => `  ${String(n).padStart(4)}  ${why}`).join("\n")}`);
  assert.deepEqual(r.failures, []);
  assert.equal(r.passed + r.failures.length, r.run);
  assert.equal(r.run + skipped.reduce((n, [, k]) => n + k, 0), r.total);
}

test("cel-spec conformance cases inside the supported subset pass (VM alone)", async () => {
  const r = runConformance(await CelHarness.create());
  report("cel harness", r);
  // The subset covers the arithmetic, comparison, logic, string and conversion suites: hundreds of cases.
  assert.ok(r.run >= 600, `only ${r.run} conformance cases ran`);
});

test("cel-spec conformance cases without declarations pass as rule conditions in build/release.wasm", { timeout: 120_000 }, async () => {
  await ensureWasm(() => {});
  const r = runConformanceOnRelease(await releaseEvaluator());
  report("build/release.wasm", r);
  assert.ok(r.run >= 600, `only ${r.run} conformance cases ran`);
});
