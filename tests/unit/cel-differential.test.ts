// Differential test: generated expressions and inputs, evaluated by our VM and by @bufbuild/cel, must give the
// same value or the same error class. CEL_DIFF_SEED and CEL_DIFF_CASES override the seed and the case count;
// a failure prints the seed and each disagreeing case with its inputs.
//
// Two runs of the same generator:
// - through build/release.wasm (the filter that ships) in the TypeScript proxy-wasm host: each expression is a
//   rule's condition, its variables travel in a real request (tests/cel/wasm-evaluator.ts);
// - through build/cel-harness.wasm, the VM alone with every variable bound directly: it sees non-bool values
//   as they are (the filter shows them only through probe conditions) and inputs no request can carry (maps
//   unrelated to the ID, unframed messages). CEL_DIFF_HARNESS_CASES sets its size (default 2,000).
import { test } from "node:test";
import assert from "node:assert/strict";
import { ensureWasm } from "../../dev/envoy/wasm.ts";
import { harnessEvaluator, releaseEvaluator, runDifferential, type DifferentialReport } from "../cel/differential.ts";

const seed = process.env.CEL_DIFF_SEED !== undefined ? Number(process.env.CEL_DIFF_SEED) : 20250611;
const cases = process.env.CEL_DIFF_CASES !== undefined ? Number(process.env.CEL_DIFF_CASES) : 10000;
const harnessCases = process.env.CEL_DIFF_HARNESS_CASES !== undefined ? Number(process.env.CEL_DIFF_HARNESS_CASES) : 2000;

function check(r: DifferentialReport, label: string, t0: number, extra = ""): void {
  const shown = r.mismatches.slice(0, 10).map((m) =>
    `case ${m.index}: ${m.expr}\n  ours:      ${m.ours}\n  reference: ${m.reference}\n  inputs:    ${JSON.stringify(m.inputs)}`);
  console.log(`cel differential (${label}): seed ${seed}, ${r.cases} cases, ${r.agreed} agreed, ${r.mismatches.length} disagreed, ` +
    `${r.compileFailures.length} did not compile (${Date.now() - t0} ms)${extra}; outcomes ${JSON.stringify(r.outcomes)}`);
  assert.deepEqual(r.compileFailures.slice(0, 5), [], `generated expressions must compile (seed ${seed})`);
  assert.equal(r.mismatches.length, 0, `seed ${seed} (rerun with CEL_DIFF_SEED=${seed}):\n${shown.join("\n")}`);
  assert.equal(r.agreed, r.cases);
  // The cases must exercise both answers and errors, or agreement would mean little.
  for (const k of ["value:bool:true", "value:bool:false", "error:access", "error:overload", "error:overflow"]) {
    assert.ok((r.outcomes[k] ?? 0) > r.cases / 1000, `too few '${k}' outcomes`);
  }
}

test("CEL_DIFF_SEED and CEL_DIFF_CASES are integers", () => {
  assert.ok(Number.isInteger(seed) && Number.isInteger(cases) && cases > 0 && Number.isInteger(harnessCases) && harnessCases >= 0);
});

test(`build/release.wasm agrees with @bufbuild/cel on ${cases} generated cases (seed ${seed})`, { timeout: 300_000 }, async () => {
  await ensureWasm(() => {});
  const t0 = Date.now();
  const evaluator = await releaseEvaluator();
  const r = await runDifferential({ seed, cases, evaluator });
  const s = evaluator.stats;
  check(r, "build/release.wasm", t0, `, ${s.tables} tables, ${s.requests} requests, ${s.probes} value probes`);
  // Non-bool results were confirmed by probes, not taken on trust.
  assert.ok(s.probes > cases / 50, `only ${s.probes} value probes`);
});

test(`the VM alone (cel harness) agrees on ${harnessCases} cases with directly bound variables (seed ${seed})`, { skip: harnessCases === 0 }, async () => {
  const t0 = Date.now();
  const r = await runDifferential({ seed, cases: harnessCases, evaluator: await harnessEvaluator() });
  check(r, "cel harness", t0);
});
