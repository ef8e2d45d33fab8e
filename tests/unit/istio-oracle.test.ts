// Istio input decides exactly as istiod's RBAC: tests/istio-oracle/golden.jsonl holds a seeded corpus of generated
// AuthorizationPolicies and what istiod's own code (tools/istio-oracle: validation and the RBAC builder) made of
// each. Every case istiod rejects must be rejected here; every case it accepts must compile (but for the fields
// Envoy cannot show a wasm filter), and on generated requests istiod's RBAC (evaluated by tests/support/rbac-eval.ts),
// our `--emit rbac`, our table in the real filter (build/release.wasm in the TypeScript host) and the docs'
// reference evaluator must all decide alike. `npm run test:istio-oracle` rebuilds the oracle for a fresh seed.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { repoRoot } from "../../dev/envoy/binary.ts";
import { ProxyWasmHost } from "../../src/host/index.ts";
import { compareCase, perValueHeaders, type OracleOutput } from "../istio-oracle/compare.ts";
import { generateRequests, repeatedHeaders, type PolicyCase } from "../istio-oracle/generate.ts";
import { requireReleaseWasm } from "../host/helpers/release.ts";

const lines = readFileSync(join(repoRoot, "tests", "istio-oracle", "golden.jsonl"), "utf8").trim().split("\n");
const { seed } = JSON.parse(lines[0]) as { seed: number };
const cases = lines.slice(1).map((l) => JSON.parse(l) as { case: PolicyCase; oracle: OracleOutput });

test(`istiod's translation of ${cases.length} generated policy sets (seed ${seed}) decides as the filter and --emit rbac`, { timeout: 300_000 }, async (t) => {
  requireReleaseWasm();
  const host = await ProxyWasmHost.load();
  const perValue = await perValueHeaders(host);
  const all = generateRequests(seed, 60);
  const requests = perValue ? all : all.filter((r) => !repeatedHeaders(r));
  let accepted = 0;
  let rejected = 0;
  let compared = 0;
  const failures: string[] = [];
  for (const { case: c, oracle } of cases) {
    if (oracle.errors.length > 0) rejected++;
    else accepted++;
    const r = await compareCase(c, oracle, requests, host);
    compared += r.requests;
    if (r.mismatches.length > 0) failures.push(`${c.id}:\n${c.yaml}\n${r.mismatches.slice(0, 3).join("\n")}`);
  }
  t.diagnostic(`${cases.length} cases (${accepted} accepted by istiod, ${rejected} rejected), ${compared} decisions compared${perValue ? "" : `; ${all.length - requests.length} requests with repeated headers left out (the filter joins them)`}`);
  assert.deepEqual(failures, []);
  assert.ok(accepted >= 100 && rejected >= 1, `the corpus should exercise both outcomes (${accepted} accepted, ${rejected} rejected)`);
  assert.ok(compared >= 5000, `only ${compared} decisions compared`);
});
