/**
 * Does the OPA authorizer decide as the table does? Builds bench/opa-authz when stale (about 70 s cold), then
 * decides requests around the benchmark tables' edges with the authorizer's own Check path (`opa-authz -decide`:
 * the CheckRequest Envoy would send, opa-envoy-plugin's input, policy.rego) and with the filter itself
 * (build/release.wasm through the TypeScript host), and compares every decision.
 *
 *   npm run bench:opa-check
 *
 * The benchmark checks the same through Envoy's ext_authz before it measures an OPA variant (decisionChecks in
 * macro.ts); this covers more requests, and a change to policy.rego or main.go, without a benchmark run.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ProxyWasmHost } from "../src/host/index.ts";
import { ensureWasm } from "../dev/envoy/wasm.ts";
import { ensureOpaAuthz, opaDecide, writeOpaData } from "./opa.ts";
import { benchClientId, benchTable, rulePrincipal } from "./tables.ts";

const log = (line: string): void => void process.stderr.write(`${line}\n`);

async function main(): Promise<number> {
  const [binary, wasmPath] = await Promise.all([ensureOpaAuthz(log), ensureWasm(log)]);
  const host = await ProxyWasmHost.load({ wasmPath });
  const work = await mkdtemp(join(tmpdir(), "spiffe-authz-opa-check-"));
  let compared = 0;
  const mismatches: string[] = [];
  try {
    for (const n of [10, 1_000]) {
      const table = benchTable(n, log);
      if (!host.configure(table.config)) throw new Error(`the filter refused the ${n}-rule table`);
      const principals = [
        benchClientId, rulePrincipal(0, n), rulePrincipal(Math.floor(n / 2), n), `${rulePrincipal(0, n)}x`,
        "spiffe://bench.example.org/ns/bench/sa/stranger", "spiffe://other.example.org/ns/bench/sa/client",
      ];
      const methods = ["GET", "HEAD", "POST", "DELETE", "get"];
      const paths = ["/echo", "/echo?x=1", "/echo/deeper", "/echoes", "/ech", "/other", "/", "/other?/echo"];
      const requests = principals.flatMap((principal) => methods.flatMap((method) => paths.map((path) => ({ principal, method, path }))));
      const data = await writeOpaData(table.ir(), work, String(n));
      const opa = await opaDecide(binary, data, requests);
      if (opa.length !== requests.length) throw new Error(`opa-authz answered ${opa.length} of ${requests.length} requests`);
      requests.forEach((r, i) => {
        const want = host.request({ peer: r.principal, method: r.method, path: r.path }).continued ? "allow" : "deny";
        compared++;
        if (opa[i] !== want) mismatches.push(`${n} rules: ${JSON.stringify(r)}: OPA says ${opa[i]}, the filter ${want}`);
      });
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  for (const m of mismatches) process.stdout.write(`mismatch ${m}\n`);
  process.stdout.write(`${compared - mismatches.length}/${compared} decisions agree (OPA authorizer and the filter)\n`);
  return mismatches.length === 0 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`opa-check: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
