/**
 * A generated differential for `compile --emit rbac-matcher`: seeded random policies over exact SPIFFE IDs (allow,
 * deny and audit rules, dry-run rules, rules without `from`, methods, paths of every kind, hosts, ports, SNI and
 * their negations) and requests that hit their edges (HEAD for GET, query strings, case of the authority, another
 * port, certificates without identity, with an invalid ID, with two URI SANs, with an over-long trust domain). Every
 * case runs as its own listener of one real Envoy with the emitted filters, and each request's decision must equal
 * the filter's own (build/release.wasm through the TypeScript host) on the same table.
 *
 *   node --import tsx bench/rbac-generated.ts [--seed N] [--cases N] [--layout auto|by-request|by-principal]
 */
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compileTexts } from "../src/compiler/index.ts";
import { rbacMatcherFilters, type MatcherLayout } from "../src/compiler/emit/rbac-matcher.ts";
import { ProxyWasmHost } from "../src/host/index.ts";
import { createPki, invalidSpiffeId, specialClients, type ClientSpec, type Pki } from "../src/envoy/pki.ts";
import { freePort } from "../dev/envoy/ports.ts";
import { renderListener, renderStaticBootstrap, type EnvoyObject } from "../src/envoy/render.ts";
import { startEnvoy } from "../dev/envoy/run.ts";
import { startUpstream } from "../dev/envoy/upstream.ts";
import { ensureWasm } from "../dev/envoy/wasm.ts";

const td = "example.org";
/** The identities rules name. */
const IDS = [`spiffe://${td}/ns/a/sa/one`, `spiffe://${td}/ns/a/sa/two`, `spiffe://${td}/ns/b/sa/one`, `spiffe://other.test/ns/a/sa/one`];
/**
 * Clients: one per ID, one whose trust domain is 256 bytes (invalid to the filter, and to the compiler in a
 * policy), one with two URI SANs, and the special ones of every test PKI (plus no certificate).
 */
const CLIENTS: ClientSpec[] = [
  ...IDS.map((uri, i) => ({ name: `id-${i}`, uri })),
  { name: "long-td", uri: `spiffe://${"a".repeat(256)}/x` },
  { name: "two-sans", uri: IDS[0], extraUris: [IDS[1]] },
];
const PEERS: (string | null)[] = [...CLIENTS.map((c) => c.name), specialClients.invalidSpiffeId, specialClients.noUriSan, null];

const METHODS = ["GET", "HEAD", "POST", "DELETE"];
// No fragments: Envoy's HTTP connection manager answers 400 to a path with "#" before any filter runs.
const PATHS = ["/a", "/a?x=1", "/a/b", "/ab", "/b.json", "/b.json?q=/a", "/t/1/x", "/t/1/2/x", "/", "/a.json?x=%2F"];
const HOSTS = ["svc.example.org", "SVC.Example.ORG", "other.test"];

/** mulberry32: a small seeded PRNG, so a failing seed can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface GenRequest {
  /** client name, or null for no certificate */
  client: string | null;
  method: string;
  path: string;
  authority: string;
}

export interface GeneratedCase {
  name: string;
  yaml: string;
  port: number;
}

/** One policy document: 1-4 rules over the ID pool; `port` is the listener the case runs on. */
export function generatePolicy(rand: () => number, name: string, port: number): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const some = <T>(xs: readonly T[], max: number): T[] => {
    const n = 1 + Math.floor(rand() * max);
    return [...new Set(Array.from({ length: n }, () => pick(xs)))];
  };
  const list = (xs: (string | number)[]): string => `[${xs.map((x) => JSON.stringify(x)).join(", ")}]`;
  const lines = ["apiVersion: spiffe-authz.dev/v1", "kind: AuthzPolicy", `metadata: {name: ${name}}`, "spec:", "  rules:"];
  const rules = 1 + Math.floor(rand() * 4);
  for (let i = 0; i < rules; i++) {
    const r = rand();
    lines.push(`    - id: r${i}`, `      action: ${r < 0.55 ? "allow" : r < 0.85 ? "deny" : "audit"}`);
    if (rand() < 0.1) lines.push("      dryRun: true");
    if (rand() < 0.85) {
      lines.push("      from:");
      for (let c = 0, n = 1 + Math.floor(rand() * 2); c < n; c++) lines.push(`        - ids: ${list(some(IDS, 2))}`);
    }
    if (rand() < 0.75) {
      lines.push("      to:");
      for (let c = 0, n = 1 + Math.floor(rand() * 2); c < n; c++) {
        const fields: string[] = [];
        if (rand() < 0.5) fields.push(`${rand() < 0.8 ? "methods" : "notMethods"}: ${list(some(["GET", "POST", "DELETE"], 2))}`);
        if (rand() < 0.6) fields.push(`${rand() < 0.8 ? "paths" : "notPaths"}: ${list(some(["/a", "/a*", "*.json", "/t/{*}/x", "/t/{**}", "*", "/ab"], 2))}`);
        if (rand() < 0.25) fields.push(`${rand() < 0.8 ? "hosts" : "notHosts"}: ${list(some(["svc.example.org", "*.example.org", "other.*"], 2))}`);
        if (rand() < 0.2) fields.push(`${rand() < 0.8 ? "ports" : "notPorts"}: ${list(rand() < 0.7 ? [port] : [port + 1])}`);
        lines.push(`        - {${fields.join(", ")}}`);
      }
    }
    if (rand() < 0.15) {
      const key = rand() < 0.5 ? "connection.sni" : "destination.port";
      const values = key === "connection.sni" ? some(["svc.example.org", "other.test"], 1) : [String(rand() < 0.7 ? port : port + 1)];
      lines.push("      when:", `        - {key: ${key}, ${rand() < 0.8 ? "values" : "notValues"}: ${list(values)}}`);
    }
  }
  return lines.join("\n") + "\n";
}

/** `count` requests for a case. */
export function generateRequests(rand: () => number, count: number): GenRequest[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  return Array.from({ length: count }, () => ({ client: pick(PEERS), method: pick(METHODS), path: pick(PATHS), authority: pick(HOSTS) }));
}

/** The client certificate of `client` as the TypeScript host takes it: its URI SANs (none, one or several). */
function certificateOf(client: string | null): { peer: string | null; mtls: boolean; peerUris: string[] } {
  if (client === null) return { peer: null, mtls: false, peerUris: [] };
  if (client === specialClients.invalidSpiffeId) return { peer: invalidSpiffeId, mtls: true, peerUris: [invalidSpiffeId] };
  const spec = CLIENTS.find((c) => c.name === client);
  const uris = spec === undefined || spec.uri === undefined ? [] : [spec.uri, ...(spec.extraUris ?? [])];
  return { peer: uris[0] ?? null, mtls: true, peerUris: uris };
}

function send(port: number, pki: Pki, r: GenRequest): Promise<number> {
  const c = r.client === null ? null : pki.clients[r.client];
  const host = r.authority;
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: "127.0.0.1",
        port,
        method: r.method,
        path: r.path,
        headers: { host },
        cert: c ? readFileSync(c.cert) : undefined,
        key: c ? readFileSync(c.key) : undefined,
        ca: readFileSync(pki.ca.cert),
        // SNI is the authority's host name, as the host assumes by default.
        servername: host,
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

export interface GeneratedOutcome {
  cases: number;
  /** cases the emitter refused (it must not refuse any generated policy) */
  refused: string[];
  compared: number;
  mismatches: string[];
}

/** Runs `cases` generated cases of `seed` through one Envoy and the TypeScript host. */
export async function replayGenerated(seed: number, cases: number, layout: MatcherLayout = "auto", requestsPerCase = 24): Promise<GeneratedOutcome> {
  const rand = prng(seed);
  const work = await mkdtemp(join(tmpdir(), "spiffe-authz-rbac-gen-"));
  const outcome: GeneratedOutcome = { cases, refused: [], compared: 0, mismatches: [] };
  const upstream = await startUpstream();
  const host = await ProxyWasmHost.load({ wasmPath: await ensureWasm() });
  try {
    const pki = await createPki(join(work, "certs"), {
      trustDomain: td,
      server: { dns: ["localhost", ...HOSTS.map((h) => h.toLowerCase())] },
      clients: CLIENTS,
    });
    const generated: { c: GeneratedCase; config: string; filters: EnvoyObject[]; requests: GenRequest[] }[] = [];
    const taken = new Set<number>();
    for (let i = 0; i < cases; i++) {
      // Distinct ports: nothing listens on them until Envoy starts, so the kernel may offer one twice.
      let port = await freePort();
      while (taken.has(port)) port = await freePort();
      taken.add(port);
      const c: GeneratedCase = { name: `gen-${seed}-${i}`, yaml: "", port };
      c.yaml = generatePolicy(rand, c.name, port);
      const requests = generateRequests(rand, requestsPerCase);
      const compiled = compileTexts([{ file: `${c.name}.yaml`, text: c.yaml }]);
      let filters: EnvoyObject[];
      try {
        filters = rbacMatcherFilters(compiled.ir, layout);
      } catch (e) {
        outcome.refused.push(`${c.name}: ${(e as Error).message}\n${c.yaml}`);
        continue;
      }
      generated.push({ c, config: compiled.config, filters, requests });
    }
    const tls = { certChain: pki.server.cert, privateKey: pki.server.key, trustedCa: pki.ca.cert };
    const bootstrap = renderStaticBootstrap({
      admin: { port: 0 },
      upstream: { http: { port: upstream.httpPort } },
      listener: { name: "unused", endpoint: { port: 0 }, tls, requireClientCertificate: false, httpFilters: [], accessLog: false },
    });
    (bootstrap.static_resources as { listeners: EnvoyObject[] }).listeners = generated.map((g) => ({
      ...renderListener({ name: g.c.name, endpoint: { port: g.c.port }, tls, requireClientCertificate: false, httpFilters: g.filters, accessLog: false }),
      // Envoy 1.40 knows a connection's SNI (connection.requested_server_name, RBAC's requested_server_name, the
      // matcher's ServerNameInput) only from the TLS inspector; the TypeScript host assumes it is known.
      listener_filters: [{ name: "envoy.filters.listener.tls_inspector", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector" } }],
    }));
    const config = join(work, "envoy.json");
    await writeFile(config, JSON.stringify(bootstrap));
    const envoy = await startEnvoy(config, { logLevel: "warn" });
    try {
      await envoy.ready();
      for (const g of generated) {
        if (!host.configure(g.config)) throw new Error(`${g.c.name}: the filter refused its own table`);
        for (const r of g.requests) {
          const want = host.request({
            ...certificateOf(r.client),
            method: r.method,
            path: r.path,
            authority: r.authority,
            // The server name as Envoy reports it: lower-case, whatever the case of the client's authority.
            sni: r.authority.toLowerCase(),
            port: g.c.port,
          });
          const wantAllowed = want.continued;
          const before = upstream.requests.length;
          const status = await send(g.c.port, pki, r);
          const allowed = upstream.requests.length > before;
          outcome.compared++;
          if (allowed !== wantAllowed) {
            outcome.mismatches.push(
              `${g.c.name} ${JSON.stringify(r)}: Envoy RBAC (matcher, ${layout}) ${allowed ? "allowed" : `denied (${status})`}, ` +
                `the filter ${wantAllowed ? "allows" : `denies (${want.localReply?.details})`}\n${g.c.yaml}`,
            );
          }
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
  const arg = (name: string, fallback: number): number => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? Number(process.argv[i + 1]) : fallback;
  };
  const seed = arg("seed", Date.now() % 1_000_000);
  const i = process.argv.indexOf("--layout");
  const layout = (i > 0 ? process.argv[i + 1] : "auto") as MatcherLayout;
  const o = await replayGenerated(seed, arg("cases", 40), layout);
  for (const r of o.refused) process.stdout.write(`refused ${r}\n`);
  for (const m of o.mismatches.slice(0, 20)) process.stdout.write(`mismatch ${m}\n`);
  process.stdout.write(`seed ${seed}: ${o.cases} cases, ${o.refused.length} refused, ${o.compared - o.mismatches.length}/${o.compared} decisions agree\n`);
  if (o.mismatches.length > 0 || o.refused.length > 0) process.exitCode = 1;
}

if (process.argv[1]?.endsWith("rbac-generated.ts")) await main();
