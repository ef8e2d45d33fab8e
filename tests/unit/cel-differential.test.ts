// Differential test: generated expressions and inputs, evaluated by our VM and by @bufbuild/cel, must give the
// same value or the same error class. CEL_DIFF_SEED and CEL_DIFF_CASES override the seed and the case count;
// a failure prints the seed and each disagreeing case with its inputs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { runDifferential } from "../cel/differential.ts";

const seed = process.env.CEL_DIFF_SEED !== undefined ? Number(process.env.CEL_DIFF_SEED) : 20250611;
const cases = process.env.CEL_DIFF_CASES !== undefined ? Number(process.env.CEL_DIFF_CASES) : 10000;

test(`our VM agrees with @bufbuild/cel on ${cases} generated cases (seed ${seed})`, async () => {
  assert.ok(Number.isInteger(seed) && Number.isInteger(cases) && cases > 0, "CEL_DIFF_SEED and CEL_DIFF_CASES must be integers");
  const t0 = Date.now();
  const r = await runDifferential({ seed, cases });
  const shown = r.mismatches.slice(0, 10).map((m) =>
    `case ${m.index}: ${m.expr}\n  ours:      ${m.ours}\n  reference: ${m.reference}\n  inputs:    ${JSON.stringify(m.inputs)}`);
  console.log(`cel differential: seed ${seed}, ${r.cases} cases, ${r.agreed} agreed, ${r.mismatches.length} disagreed, ` +
    `${r.compileFailures.length} did not compile (${Date.now() - t0} ms); outcomes ${JSON.stringify(r.outcomes)}`);
  assert.deepEqual(r.compileFailures.slice(0, 5), [], `generated expressions must compile (seed ${seed})`);
  assert.equal(r.mismatches.length, 0, `seed ${seed} (rerun with CEL_DIFF_SEED=${seed}):\n${shown.join("\n")}`);
  assert.equal(r.agreed, cases);
  // The cases must exercise both answers and errors, or agreement would mean little.
  for (const k of ["value:bool:true", "value:bool:false", "error:access", "error:overload", "error:overflow"]) {
    assert.ok((r.outcomes[k] ?? 0) > cases / 1000, `too few '${k}' outcomes`);
  }
});
