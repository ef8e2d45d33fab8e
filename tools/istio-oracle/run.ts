// Runs istiod's translation (tools/istio-oracle, built here with Go) over generated cases.
//
//   node --import tsx tools/istio-oracle/run.ts golden [--seed N] [--count N]
//       regenerates tests/istio-oracle/golden.jsonl: the corpus of seed N and istiod's output for it
//   node --import tsx tools/istio-oracle/run.ts check [--seed N] [--count N] [--requests N]
//       a fresh seed (default: the time) straight against the compiler, the filter and --emit rbac
//
// Needs Go and the module proxy (istio.io/istio, about 2.5 minutes for a cold build); `npm test` does not: it
// replays the committed golden file (tests/unit/istio-oracle.test.ts).

import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repoRoot } from "../../dev/envoy/binary.ts";
import { ProxyWasmHost } from "../../src/host/index.ts";
import { compareCase, LISTENER_PORT, type OracleOutput } from "../../tests/istio-oracle/compare.ts";
import { generateCases, generateRequests, type PolicyCase } from "../../tests/istio-oracle/generate.ts";

export const GOLDEN = join(repoRoot, "tests", "istio-oracle", "golden.jsonl");

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

/** Builds the oracle and runs it over the cases. */
export function runOracle(cases: PolicyCase[]): OracleOutput[] {
  const dir = mkdtempSync(join(tmpdir(), "istio-oracle-"));
  const bin = join(dir, "istio-oracle");
  execFileSync("go", ["build", "-o", bin, "."], { cwd: join(repoRoot, "tools", "istio-oracle"), stdio: "inherit" });
  const input = cases.map((c) => JSON.stringify({ id: c.id, yaml: c.yaml, trustDomain: c.trustDomain, aliases: c.aliases, namespace: "foo" })).join("\n") + "\n";
  const r = spawnSync(bin, { input, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`istio-oracle failed: ${r.stderr}`);
  // istiod's logger writes to standard output too: keep the result lines.
  return r.stdout.toString().split("\n").filter((l) => l.startsWith("{\"id\":")).map((l) => JSON.parse(l) as OracleOutput);
}

async function main(): Promise<void> {
  const mode = process.argv[2];
  if (mode === "golden") {
    const seed = arg("seed", 1);
    const cases = generateCases(seed, arg("count", 150), { listenerPort: LISTENER_PORT });
    const outs = runOracle(cases);
    writeFileSync(GOLDEN, [JSON.stringify({ seed, count: cases.length }), ...cases.map((c, i) => JSON.stringify({ case: c, oracle: outs[i] }))].join("\n") + "\n");
    console.log(`wrote ${GOLDEN}: ${cases.length} cases (seed ${seed})`);
    return;
  }
  if (mode === "check") {
    const seed = arg("seed", Date.now() % 1_000_000);
    const cases = generateCases(seed, arg("count", 200), { listenerPort: LISTENER_PORT });
    const requests = generateRequests(seed, arg("requests", 80));
    const outs = runOracle(cases);
    const host = await ProxyWasmHost.load();
    let compiled = 0;
    let compared = 0;
    let bad = 0;
    for (let i = 0; i < cases.length; i++) {
      const r = await compareCase(cases[i], outs[i], requests, host);
      if (r.compiled) compiled++;
      compared += r.requests;
      if (r.mismatches.length > 0) {
        bad++;
        console.log(`--- ${cases[i].id} (trust domain ${cases[i].trustDomain}, aliases ${cases[i].aliases.join(",")})\n${cases[i].yaml}${r.mismatches.slice(0, 5).join("\n")}`);
      }
    }
    console.log(`seed ${seed}: ${cases.length} cases, ${compiled} compiled, ${compared} decisions compared, ${bad} cases disagree`);
    process.exitCode = bad === 0 ? 0 : 1;
    return;
  }
  console.error("usage: run.ts golden|check [--seed N] [--count N] [--requests N]");
  process.exitCode = 2;
}

if (process.argv[1]?.endsWith("run.ts")) await main();
