// A seeded short run of every fuzz target (tests/fuzz/targets.ts) in `npm test`; `npm run fuzz` runs them long.
// FUZZ_SEED and FUZZ_ITERATIONS override the seed and the number of inputs per target.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { requireReleaseWasm } from "../host/helpers/release.ts";
import { TARGETS } from "./targets.ts";
import type { TargetName } from "./targets.ts";

const seed = Number(process.env.FUZZ_SEED ?? 20261205);
// json: tests/unit/json-differential.test.ts runs 20,000 with its own assertions; here it checks the wiring.
// protobuf: its own short run is tests/fuzz/protobuf-differential.test.ts; here only the common invariants.
const SHORT: Record<TargetName, number> = { tables: 1500, hooks: 4000, requests: 3000, json: 2000, protobuf: 300 };

describe("fuzzing the shipped filter (seeded short run)", () => {
  requireReleaseWasm();
  for (const name of Object.keys(TARGETS) as TargetName[]) {
    it(`${name}: no trap, no hang, no contradiction, memory bounded`, { timeout: 300_000 }, async () => {
      const n = Number(process.env.FUZZ_ITERATIONS ?? SHORT[name]);
      const r = await TARGETS[name](seed, n);
      assert.equal(r.inputs, n);
      assert.deepEqual(r.traps.slice(0, 5), [], `${r.traps.length} traps`);
      assert.deepEqual(r.hangs.slice(0, 5), [], `${r.hangs.length} hangs`);
      assert.deepEqual(r.contradictions.slice(0, 5), [], `${r.contradictions.length} contradictions`);
      // The run explored both outcomes (a fuzzer that only ever sees rejections tests nothing).
      assert.ok(r.accepted > 0 && r.rejected > 0, `accepted ${r.accepted}, rejected ${r.rejected}`);
      assert.ok(r.memoryEnd <= r.memoryWarm * 2 + (8 << 20), `memory grew from ${r.memoryWarm} to ${r.memoryEnd} bytes`);
    });
  }
});
