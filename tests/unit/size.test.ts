// A 100,000-rule table (one distinct exact principal per rule) must travel in under 1 MiB of configuration: a
// Kubernetes object (WasmPlugin) must stay under etcd's 1.5 MiB limit. Its body (what the filter holds in memory)
// must stay near 20 bytes per rule: the rules are one family, ids and principals front-coded (docs/table-format.md).
// The compile time is printed, not asserted.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { compileTexts, decodeConfig } from "../../src/compiler/index.ts";
import { evaluate } from "./support/reference.ts";

const RULES = 100_000;
const MIB = 1024 * 1024;

function benchPolicy(n: number): string {
  const lines = ["apiVersion: spiffe-authz.dev/v1", "kind: AuthzPolicy", "metadata:", "  name: bench", "spec:", "  rules:"];
  for (let i = 0; i < n; i++) {
    lines.push(`    - from: [{ids: ["spiffe://bench.local/ns/bench/sa/svc-${String(i).padStart(5, "0")}"]}]`);
  }
  return lines.join("\n") + "\n";
}

describe("table size", () => {
  it(`${RULES} rules compile to a configuration under 1 MiB`, { timeout: 600_000 }, (t) => {
    const text = benchPolicy(RULES);
    const t0 = performance.now();
    const r = compileTexts([{ file: "bench.yaml", text }]);
    const ms = performance.now() - t0;
    const dec = decodeConfig(r.config);
    const line = `${RULES} rules: compiled in ${(ms / 1000).toFixed(1)} s; configuration ${r.config.length} bytes (${((100 * r.config.length) / MIB).toFixed(1)}% of 1 MiB), envelope ${r.envelope.length} bytes, body ${dec.body.length} bytes (${(dec.body.length / RULES).toFixed(1)} per rule), ${dec.families} families`;
    t.diagnostic(line);
    assert.equal(r.ruleCount, RULES);
    assert.ok(r.config.length < MIB, line);
    assert.ok(dec.body.length < 20 * RULES, line);

    // The big table is a real one: it decodes to the same IR, and a principal near the end picks its own rule.
    assert.equal(dec.tableHash, r.tableHash);
    assert.equal(dec.ir.rules.length, RULES);
    assert.deepEqual(dec.ir.rules[RULES - 3], r.ir.rules[RULES - 3]);
    const peer = `spiffe://bench.local/ns/bench/sa/svc-${RULES - 3}`;
    assert.deepEqual(evaluate(dec.ir, { peer }), { decision: "allow", rule: `bench[${RULES - 3}]`, shadow: [] });
    assert.deepEqual(evaluate(dec.ir, { peer: "spiffe://bench.local/ns/bench/sa/other" }), { decision: "deny", rule: null, shadow: [] });
  });
});
