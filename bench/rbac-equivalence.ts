/**
 * Does `compile --emit rbac` (or `--emit rbac-matcher`) say what the table says? Replays the golden cases
 * (tests/cases/<case>/) through a real Envoy running the emitted RBAC filters, with real client certificates carrying
 * each request's SPIFFE ID, and compares every decision with the case's expected.jsonl (which the filter itself is
 * held to).
 *
 *   node --import tsx bench/rbac-equivalence.ts [--matcher] [case...]
 *
 * `--matcher` replays the indexed form (the RBAC filter's `matcher` field) instead of the `policies` form; cases
 * whose rules it cannot index (patterns instead of exact IDs, header rules) are skipped with the emitter's reason.
 *
 * A request is "allowed" when the upstream receives it. Cases the emitter refuses (trust-domain schemas, CEL) and
 * requests this harness cannot reproduce (a destination port other than the listener's, a body) are counted as
 * skipped, with the reason. Known, documented differences (src/compiler/emit/rbac.ts) show up as mismatches with
 * the request named: a trust domain longer than 255 bytes is invalid to the filter and not to the RBAC regexes.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compileTexts, PolicyError } from "../src/compiler/index.ts";
import { RbacEmitError, rbacFilters } from "../src/compiler/emit/rbac.ts";
import { rbacMatcherFilters } from "../src/compiler/emit/rbac-matcher.ts";
import { repoRoot } from "../dev/envoy/binary.ts";
import { createPki, specialClients, type Pki } from "../src/envoy/pki.ts";
import { freePort } from "../dev/envoy/ports.ts";
import { renderStaticBootstrap } from "../src/envoy/render.ts";
import { startEnvoy } from "../dev/envoy/run.ts";
import { startUpstream } from "../dev/envoy/upstream.ts";

interface CaseRequest {
  peer?: string | null;
  mtls?: boolean;
  method?: string;
  path?: string;
  authority?: string;
  headers?: Record<string, string | string[]>;
  port?: number;
  body?: string;
  jwt?: Record<string, unknown>;
  sourceAddress?: string;
  destinationAddress?: string;
  peerDns?: string;
  peerSubject?: string;
}

export interface CaseOutcome {
  name: string;
  compared: number;
  mismatches: string[];
  skipped: string[];
}

function hostOf(authority: string): string {
  const colon = authority.lastIndexOf(":");
  return colon > 0 && !authority.endsWith("]") ? authority.slice(0, colon) : authority;
}

function send(port: number, pki: Pki, client: string | null, r: CaseRequest): Promise<number> {
  const authority = r.authority ?? "localhost";
  const host = hostOf(authority);
  const c = client === null ? null : pki.clients[client];
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: "127.0.0.1",
        port,
        method: r.method ?? "GET",
        path: r.path ?? "/",
        headers: { ...(r.headers ?? {}), host: authority },
        cert: c ? readFileSync(c.cert) : undefined,
        key: c ? readFileSync(c.key) : undefined,
        ca: readFileSync(pki.ca.cert),
        // The filter's SNI is the authority's host name (as the host tests assume); IP literals send none.
        servername: /^[\d.]+$|^\[/.test(host) ? "" : host,
        checkServerIdentity: () => undefined,
        agent: false,
      },
      (res) => {
        res.resume();
        res.once("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.once("error", reject);
    req.end();
  });
}

/** The two shapes of Envoy RBAC the compiler emits: `policies` (`--emit rbac`) and `matcher` (`--emit rbac-matcher`). */
export type RbacForm = "policies" | "matcher";

/** Replays one case; null when the case is not an RBAC-expressible policy with requests. */
export async function replayCase(dir: string, form: RbacForm = "policies"): Promise<CaseOutcome | null> {
  const name = dir.split("/").pop()!;
  // As the host tests read a case (tests/host/helpers/cases.ts): every *.yaml, sorted, and an optional workload.
  const files = readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort();
  if (files.length === 0 || !existsSync(join(dir, "requests.jsonl")) || !existsSync(join(dir, "expected.jsonl"))) return null;
  const workload = existsSync(join(dir, "workload.json")) ? JSON.parse(readFileSync(join(dir, "workload.json"), "utf8")) : undefined;
  let filters: ReturnType<typeof rbacFilters>;
  try {
    filters = (form === "matcher" ? rbacMatcherFilters : rbacFilters)(compileTexts(files.map((f) => ({ file: f, text: readFileSync(join(dir, f), "utf8") })), workload).ir);
  } catch (e) {
    if (e instanceof PolicyError) return null;
    if (e instanceof RbacEmitError) return { name, compared: 0, mismatches: [], skipped: [`whole case: ${e.problems.join("; ")}`] };
    throw e;
  }
  const requests = readFileSync(join(dir, "requests.jsonl"), "utf8").split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as CaseRequest);
  const expected = readFileSync(join(dir, "expected.jsonl"), "utf8").split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as { decision: string });

  const work = await mkdtemp(join(tmpdir(), "spiffe-authz-rbac-eq-"));
  const outcome: CaseOutcome = { name, compared: 0, mismatches: [], skipped: [] };
  const upstream = await startUpstream();
  try {
    // One client certificate per distinct peer. openssl cannot put a comma or newline in a SAN, and reads "#" in
    // the extension file pki.ts writes as the start of a comment (the certificate would carry a shorter ID).
    const peers = [...new Set(requests.map((r) => r.peer).filter((p): p is string => typeof p === "string" && !/[,\n#]/.test(p)))];
    const clientOf = new Map(peers.map((p, i) => [p, `peer-${i}`]));
    const pki = await createPki(join(work, "certs"), { trustDomain: "example.org", clients: peers.map((p) => ({ name: clientOf.get(p)!, uri: p })) });
    const listenerPort = await freePort();
    const config = join(work, "envoy.json");
    await writeFile(
      config,
      JSON.stringify(
        renderStaticBootstrap({
          admin: { port: 0 },
          upstream: { http: { port: upstream.httpPort }, grpc: { port: upstream.grpcPort } },
          listener: {
            endpoint: { port: listenerPort },
            tls: { certChain: pki.server.cert, privateKey: pki.server.key, trustedCa: pki.ca.cert },
            requireClientCertificate: false,
            httpFilters: filters,
            accessLog: false,
          },
        }),
      ),
    );
    const envoy = await startEnvoy(config, { logLevel: "warn" });
    try {
      await envoy.ready();
      for (let i = 0; i < requests.length; i++) {
        const r = requests[i];
        const label = `#${i + 1} ${JSON.stringify(r)}`;
        if (r.port !== undefined && r.port !== listenerPort) {
          outcome.skipped.push(`${label}: destination port ${r.port} (the listener is on ${listenerPort})`);
          continue;
        }
        if (r.method !== undefined && r.method !== r.method.toUpperCase()) {
          outcome.skipped.push(`${label}: node's HTTP client upper-cases the method`);
          continue;
        }
        if (r.body !== undefined) {
          outcome.skipped.push(`${label}: has a body`);
          continue;
        }
        // No jwt_authn here, and the certificates carry a URI SAN only: tests/integration/istio-differential.test.ts
        // replays tokens, addresses and certificate names in Envoy.
        const extra = (["jwt", "sourceAddress", "destinationAddress", "peerDns", "peerSubject"] as const).find((k) => r[k] !== undefined);
        if (extra !== undefined) {
          outcome.skipped.push(`${label}: carries ${extra}, which this harness does not reproduce`);
          continue;
        }
        let client: string | null = null;
        if (typeof r.peer === "string") {
          const c = clientOf.get(r.peer);
          if (c === undefined) {
            outcome.skipped.push(`${label}: the peer cannot be put in a certificate`);
            continue;
          }
          client = c;
        } else if (r.mtls === true) client = specialClients.noUriSan;
        const before = upstream.requests.length;
        const status = await send(listenerPort, pki, client, r);
        const allowed = upstream.requests.length > before;
        outcome.compared++;
        const want = expected[i]?.decision;
        if ((allowed ? "allow" : "deny") !== want) {
          outcome.mismatches.push(`${label}: Envoy RBAC (${form}) ${allowed ? "allowed" : `denied (${status})`}, the table says ${want}`);
        }
      }
    } finally {
      await envoy.stop();
    }
  } finally {
    await upstream.close();
    await rm(work, { recursive: true, force: true });
  }
  return outcome;
}

async function main(): Promise<void> {
  const casesDir = join(repoRoot, "tests", "cases");
  const form: RbacForm = process.argv.includes("--matcher") ? "matcher" : "policies";
  const wanted = process.argv.slice(2).filter((a) => a !== "--matcher");
  const names = wanted.length > 0 ? wanted : readdirSync(casesDir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  let compared = 0;
  let mismatched = 0;
  for (const n of names) {
    const o = await replayCase(join(casesDir, n), form);
    if (o === null) continue;
    compared += o.compared;
    mismatched += o.mismatches.length;
    process.stdout.write(`${o.name}: ${o.compared - o.mismatches.length}/${o.compared} agree${o.skipped.length ? `, ${o.skipped.length} skipped` : ""}\n`);
    for (const m of o.mismatches) process.stdout.write(`  mismatch ${m}\n`);
    for (const s of o.skipped) process.stdout.write(`  skipped ${s}\n`);
  }
  process.stdout.write(`${compared - mismatched}/${compared} decisions agree\n`);
  if (mismatched > 0) process.exitCode = 1;
}

if (process.argv[1]?.endsWith("rbac-equivalence.ts")) await main();
