// The benchmark's method in code (bench/): when a rate counts as sustained, at which rate a variant's latency is
// measured, how added latency and CPU are taken against the right baseline, what the targets line says, which
// requests every deciding variant must answer correctly, and the OPA variant's data. No Envoy, no load.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  connectionsFor, decisionChecks, expectedRate, latencyRate, summarize, sustained, type CapacityRecord, type RunRecord,
} from "../../bench/macro.ts";
import { opaData } from "../../bench/opa.ts";
import { evaluateTargets, Results, targetsLine } from "../../bench/report.ts";
import { benchTable } from "../../bench/tables.ts";
import { opaVariant, rbacMatcherVariant, wasmVariant, baselineVariant } from "../../bench/variants.ts";
import { compileYaml } from "./support/helpers.ts";

describe("bench: a sustained rate", () => {
  it("expects one interval per connection less than the rate (fortio -uniform), never less than half", () => {
    assert.equal(expectedRate(1000, 16, 3), 1000 - 16 / 3);
    assert.equal(expectedRate(152, 16, 1.5), 152 - 16 / 1.5);
    assert.equal(expectedRate(2, 16, 1), 1);
  });

  it("uses fewer connections below 10 requests per second per connection", () => {
    assert.equal(connectionsFor(1000, 16), 16);
    assert.equal(connectionsFor(100, 16), 10);
    assert.equal(connectionsFor(2, 16), 1);
    assert.equal(connectionsFor(0, 16), 16, "closed loop keeps every connection");
  });

  it("needs no error, 98% of the expected rate and a median within twice the light load's", () => {
    const run = { rps: 1000, actual_rps: 994.7, errors: 0, p50_us: 400 };
    assert.equal(sustained(run, 300, 16, 3), true);
    assert.equal(sustained({ ...run, errors: 1 }, 300, 16, 3), false);
    assert.equal(sustained({ ...run, actual_rps: 960 }, 300, 16, 3), false);
    assert.equal(sustained({ ...run, p50_us: 601 }, 300, 16, 3), false, "queueing: the median more than doubled");
  });

  it("measures latency at the common rate when sustained, else at half the maximum or less from a fixed ladder", () => {
    assert.deepEqual(latencyRate(2400, 1000), { phase: "knee", rps: 1000 });
    assert.deepEqual(latencyRate(1000, 1000), { phase: "knee", rps: 1000 });
    assert.deepEqual(latencyRate(589, 1000), { phase: "own", rps: 200 });
    assert.deepEqual(latencyRate(60, 1000), { phase: "own", rps: 20 });
    assert.deepEqual(latencyRate(5, 1000), { phase: "own", rps: 2 });
    assert.deepEqual(latencyRate(0, 1000), { phase: "own", rps: 0.5 });
  });
});

/** A latency run with only what the summaries read. */
function run(variant: string, round: number, rps: number, p50: number, cpuUs: number, phase: "knee" | "own" = rps === 1000 ? "knee" : "own"): RunRecord {
  return {
    variant, round, phase, concurrency: 1, connections: 16, requested_rps: rps, actual_rps: rps, count: rps * 3, errors: 0,
    p50_us: p50, p90_us: p50 * 2, p99_us: p50 * 5, p999_us: p50 * 10, avg_us: p50, max_us: p50 * 20,
    cpu_s: 0, cpu_s_per_1k: cpuUs / 1000, authorizer_cpu_s: 0, authorizer_cpu_s_per_1k: variant.startsWith("opa") ? 0.4 : 0,
    rss_mb: 70, hwm_mb: 70, authorizer_rss_mb: null, startup_ms: 100,
  };
}

function capacity(variant: string, max: number, cpuAtMax: number): CapacityRecord {
  return {
    variant, concurrency: 1, closed_loop_rps: max * 1.2, light_rps: max / 4, light_p50_us: 400, max_rps: max,
    steps: [
      { rps: max / 4, actual_rps: max / 4, p50_us: 400, p99_us: 900, errors: 0, cpu_us: cpuAtMax + 50, authorizer_cpu_us: 0, sustained: true },
      { rps: max, actual_rps: max, p50_us: 700, p99_us: 1500, errors: 0, cpu_us: cpuAtMax, authorizer_cpu_us: 0, sustained: true },
      { rps: max * 1.1, actual_rps: max, p50_us: 2000, p99_us: 9000, errors: 0, cpu_us: cpuAtMax - 10, authorizer_cpu_us: 0, sustained: false },
    ],
    rss_mb: 70, hwm_mb: 70, authorizer_rss_mb: null, startup_ms: 100,
  };
}

describe("bench: summaries and costs", () => {
  const runs = [
    run("baseline", 1, 1000, 400, 220), run("baseline", 2, 1000, 420, 222),
    run("wasm-10", 1, 1000, 420, 245), run("wasm-10", 2, 1000, 445, 247),
    run("baseline", 1, 200, 500, 300), run("rbac-native-1k", 1, 200, 2000, 1500),
  ];
  const summaries = summarize(runs, ["baseline", "wasm-10", "rbac-native-1k"], {}, { "wasm-10": "wasm", "rbac-native-1k": "rbac-native" });
  const r = new Results(summaries, [capacity("baseline", 2400, 210), capacity("wasm-10", 2200, 240), capacity("rbac-native-1k", 589, 1450)], 1000, {});

  it("takes added latency per round against the baseline of the same rate", () => {
    const w = summaries.find((s) => s.name === "wasm-10")!;
    assert.equal(w.added_p50_us, 22.5, "median of +20 and +25");
    const n = summaries.find((s) => s.name === "rbac-native-1k")!;
    assert.equal(n.phase, "own");
    assert.equal(n.added_p50_us, 1500, "against the baseline at 200 rps, not at 1000");
  });

  it("takes CPU at the common rate, or at the highest sustained capacity step for a variant that does not sustain it", () => {
    assert.deepEqual(r.cost("wasm-10"), { envoy: 246, authorizer: 0, rps: 1000 });
    assert.deepEqual(r.cost("rbac-native-1k"), { envoy: 1450, authorizer: 0, rps: 589 });
    assert.equal(r.addedCpu("rbac-native-1k"), 1450 - 221);
    assert.equal(r.addedP50("rbac-native-1k"), null, "no latency at the common rate for a variant that cannot sustain it");
  });

  it("judges the targets it can and says which it could not, in one line", () => {
    const verdicts = evaluateTargets(r, [], [10, 1000]);
    const line = targetsLine(verdicts);
    assert.match(line, /^targets: \d+ of \d+ hold/);
    const oneK = verdicts.find((v) => v.target.startsWith("wasm-1k added CPU per request >= 20x"))!;
    assert.equal(oneK.met, null, "wasm-1k was not measured");
    assert.match(line, /not measured: \d+/);
  });
});

describe("bench: before measuring", () => {
  it("checks the allowed request, HEAD and a query string, and denies a stranger, another method and another path", () => {
    const checks = decisionChecks(wasmVariant(10)).map((c) => `${c.probe.method} ${c.probe.path} ${c.probe.client} -> ${c.want}`);
    assert.deepEqual(checks, [
      "GET /echo bench-client -> 200",
      "GET /echo bench-stranger -> 403",
      "DELETE /echo bench-client -> 403",
      "GET /forbidden bench-client -> 403",
      "GET /echo?q=1 bench-client -> 200",
      "HEAD /echo bench-client -> 200",
    ]);
    assert.equal(decisionChecks(opaVariant(10)).length, 6);
    assert.equal(decisionChecks(rbacMatcherVariant(10)).length, 6);
    assert.equal(decisionChecks(baselineVariant()).length, 1, "a baseline decides nothing");
  });
});

describe("bench: the OPA variant's data", () => {
  it("keys the rules by principal, with the table's methods (GET covers HEAD) and path prefixes", () => {
    const data = opaData(benchTable(10).ir());
    const principals = Object.keys(data.spiffe_authz.principals);
    assert.equal(principals.length, 10);
    assert.deepEqual(data.spiffe_authz.principals["spiffe://bench.example.org/ns/bench/sa/client"], [
      { id: "r-0000009", methods: ["GET", "HEAD"], exact_paths: [], path_prefixes: ["/echo"] },
    ]);
  });

  it("refuses a table policy.rego cannot express rather than measure something else", () => {
    const ir = compileYaml(
      "apiVersion: spiffe-authz.dev/v1\nkind: AuthzPolicy\nmetadata: {name: p}\nspec:\n  rules:\n" +
        "    - {id: td, from: [{trustDomains: [example.org]}], to: [{methods: [GET], paths: [\"/x\"]}]}\n",
    ).ir;
    assert.throws(() => opaData(ir), /policy\.rego cannot express this table:\n {2}rule "td": sources other than exact ids/);
  });
});
