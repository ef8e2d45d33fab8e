// The proof that Istio input decides as Istio does: seeded, generated AuthorizationPolicies
// (tests/istio-oracle/generate.ts) are compiled to the table and to `--emit rbac`, and both are loaded into ONE real
// Envoy 1.40, one listener each, behind the same jwt_authn (payload_in_metadata: payload, as istiod configures it)
// and the same x-forwarded-for handling (use_remote_address, one trusted hop). The same generated requests (client
// certificates per SPIFFE ID, DNS SAN and subject of odd shapes, JWTs from a local JWKS, x-forwarded-for chains,
// hosts, paths, repeated and empty headers) go to both listeners; every decision must agree.
//
// A short seeded run is part of `npm test`; a long one: ISTIO_DIFF_CASES=400 ISTIO_DIFF_REQUESTS=80
// ISTIO_DIFF_SEED=<n> node --import tsx --test tests/integration/istio-differential.test.ts

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { compileTexts, PolicyError } from "../../src/compiler/index.ts";
import { rbacFilters } from "../../src/compiler/emit/rbac.ts";
import { createPki, type Pki } from "../../src/envoy/pki.ts";
import { freePort } from "../../dev/envoy/ports.ts";
import { jwtAuthnFilter, renderListener, renderStaticBootstrap, toYaml, wasmFilter, type EnvoyObject } from "../../src/envoy/render.ts";
import { startEnvoy, type EnvoyHandle } from "../../dev/envoy/run.ts";
import { startUpstream, type Upstream } from "../../dev/envoy/upstream.ts";
import { ensureWasm } from "../../dev/envoy/wasm.ts";
import { createSigningKey, jwksOf, mintToken, type SigningKey } from "../support/jwt.ts";
import { ProxyWasmHost } from "../../src/host/index.ts";
import { parityConfig, perValueHeaders, REFUSED } from "../istio-oracle/compare.ts";
import {
  CLIENTS, generateCases, generateRequests, ISSUER, OTHER_ISSUER, repeatedHeaders, type GenRequest, type PolicyCase,
} from "../istio-oracle/generate.ts";

const SEED = Number(process.env.ISTIO_DIFF_SEED ?? 20261205);
const CASES = Number(process.env.ISTIO_DIFF_CASES ?? 96);
const REQUESTS = Number(process.env.ISTIO_DIFF_REQUESTS ?? 40);
/** Listener pairs per Envoy (a long run starts several Envoys in turn). */
const PER_ENVOY = 24;

let dir = "";
let pki: Pki;
let upstream: Upstream;
let key: SigningKey;
let wasmPath = "";

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "spiffe-authz-istio-diff-"));
  [wasmPath, pki, key] = await Promise.all([
    ensureWasm(),
    createPki(join(dir, "certs"), {
      trustDomain: "cluster.local",
      clients: CLIENTS.map((c) => ({ name: c.name, uri: c.uri, dns: c.dns, cn: c.cn })),
    }),
    createSigningKey("k1"),
  ]);
  upstream = await startUpstream();
});

after(async () => {
  await upstream?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** jwt_authn as istiod configures it for RequestAuthentication: the payload under `payload`, tokens optional. */
function jwtFilter(): EnvoyObject {
  const f = jwtAuthnFilter({ provider: "p1", issuer: ISSUER, jwks: { inline: jwksOf([key]) }, payloadInMetadata: "payload" });
  const cfg = f.typed_config as EnvoyObject & { providers: Record<string, EnvoyObject>; rules: EnvoyObject[] };
  cfg.providers.p2 = { ...cfg.providers.p1, issuer: OTHER_ISSUER };
  cfg.rules = [{
    match: { prefix: "/" },
    requires: { requires_any: { requirements: [{ provider_name: "p1" }, { provider_name: "p2" }, { allow_missing: {} }] } },
  }];
  return f;
}

/** A listener whose HCM derives the remote address from x-forwarded-for with one trusted hop. */
function listener(name: string, port: number, filters: EnvoyObject[]): EnvoyObject {
  const l = renderListener({
    name,
    endpoint: { port },
    tls: { certChain: pki.server.cert, privateKey: pki.server.key, trustedCa: pki.ca.cert },
    requireClientCertificate: false,
    httpFilters: [jwtFilter(), ...filters],
    accessLog: false,
  });
  const hcm = ((l.filter_chains as EnvoyObject[])[0].filters as EnvoyObject[])[0].typed_config as EnvoyObject;
  hcm.use_remote_address = true;
  hcm.xff_num_trusted_hops = 1;
  return l;
}

interface Pair {
  c: PolicyCase;
  tablePort: number;
  rbacPort: number;
}

function hostOf(authority: string): string {
  return authority.split(":")[0];
}

async function send(port: number, r: GenRequest): Promise<number> {
  const c = r.client === null ? null : pki.clients[r.client];
  const headers: Record<string, string | string[]> = { host: r.authority };
  for (const [k, v] of r.headers) {
    const prev = headers[k];
    headers[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  if (r.xff !== null) headers["x-forwarded-for"] = r.xff;
  if (r.jwt !== null) {
    const { iss, sub, ...rest } = r.jwt as { iss: string; sub: string };
    headers.authorization = `Bearer ${await mintToken(key, rest, { issuer: iss, subject: sub })}`;
  }
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: "127.0.0.1", port, method: r.method, path: r.path, headers,
        cert: c ? readFileSync(c.cert) : undefined, key: c ? readFileSync(c.key) : undefined,
        ca: readFileSync(pki.ca.cert), servername: hostOf(r.authority).toLowerCase(),
        checkServerIdentity: () => undefined, agent: false,
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

/** A free port none of the pairs uses (the bootstrap's own, unused listener). */
async function uniquePort(pairs: Pair[]): Promise<number> {
  for (;;) {
    const p = await freePort();
    if (!pairs.some((x) => x.tablePort === p || x.rbacPort === p)) return p;
  }
}

async function runBatch(pairs: Pair[], requests: GenRequest[]): Promise<{ compared: number; allowed: number; mismatches: string[] }> {
  const configPath = join(dir, `envoy-${pairs[0].tablePort}.yaml`);
  const listeners: EnvoyObject[] = [];
  for (const p of pairs) {
    const table = compileTexts([{ file: `${p.c.id}.yaml`, text: p.c.yaml }], { namespace: "foo" }, { trustDomain: p.c.trustDomain, trustDomainAliases: p.c.aliases });
    listeners.push(listener(`table-${p.c.id}`, p.tablePort, [wasmFilter({ wasmPath, configuration: parityConfig(table.config) })]));
    listeners.push(listener(`rbac-${p.c.id}`, p.rbacPort, rbacFilters(table.ir)));
  }
  const bootstrap = renderStaticBootstrap({
    admin: { port: 0 },
    upstream: { http: { port: upstream.httpPort }, grpc: { port: upstream.grpcPort } },
    listener: {
      endpoint: { port: await uniquePort(pairs) },
      tls: { certChain: pki.server.cert, privateKey: pki.server.key, trustedCa: pki.ca.cert },
      requireClientCertificate: false, httpFilters: [], accessLog: false,
    },
  });
  (bootstrap.static_resources as { listeners: EnvoyObject[] }).listeners.push(...listeners);
  await writeFile(configPath, toYaml(bootstrap));
  let envoy: EnvoyHandle | undefined;
  const mismatches: string[] = [];
  let compared = 0;
  let allowed = 0;
  try {
    envoy = await startEnvoy(configPath);
    await envoy.ready();
    for (const p of pairs) {
      for (const r of requests) {
        const [a, b] = [await send(p.tablePort, r), await send(p.rbacPort, r)];
        // Envoy itself answers some requests before any filter (an escaped slash is redirected by the listener's
        // path_with_escaped_slashes_action): then both listeners must answer alike.
        if (a !== b) {
          mismatches.push(`${p.c.id} (trust domain ${p.c.trustDomain}, aliases [${p.c.aliases}]):\n${p.c.yaml}request ${JSON.stringify(r)}: table ${a}, --emit rbac ${b}`);
        }
        compared++;
        if (a === 200) allowed++;
      }
    }
  } catch (err) {
    if (envoy) console.error(envoy.logs().split("\n").slice(-60).join("\n"));
    throw err;
  } finally {
    await envoy?.stop();
  }
  return { compared, allowed, mismatches };
}

test(`generated Istio policies decide alike as the table and as --emit rbac in one Envoy 1.40 (seed ${SEED})`, { timeout: 1_800_000 }, async (t) => {
  const cases = generateCases(SEED, CASES, { listenerPort: 0 });
  const all = generateRequests(SEED, REQUESTS);
  const perValue = await perValueHeaders(await ProxyWasmHost.load({ wasmPath }));
  const requests = perValue ? all : all.filter((r) => !repeatedHeaders(r));
  const usable: PolicyCase[] = [];
  let rejected = 0;
  for (const c of cases) {
    try {
      const table = compileTexts([{ file: `${c.id}.yaml`, text: c.yaml }], { namespace: "foo" }, { trustDomain: c.trustDomain, trustDomainAliases: c.aliases });
      rbacFilters(table.ir);
      usable.push(c);
    } catch (e) {
      if (!(e instanceof PolicyError)) throw e;
      rejected++;
      if (REFUSED.test(c.yaml)) continue;
    }
  }
  let compared = 0;
  let allowed = 0;
  const mismatches: string[] = [];
  for (let i = 0; i < usable.length; i += PER_ENVOY) {
    const pairs: Pair[] = [];
    // freePort() answers a port free now, not a reserved one: two calls may answer the same port.
    const taken = new Set<number>();
    const port = async (): Promise<number> => {
      for (;;) {
        const p = await freePort();
        if (!taken.has(p)) {
          taken.add(p);
          return p;
        }
      }
    };
    for (const c of usable.slice(i, i + PER_ENVOY)) pairs.push({ c, tablePort: await port(), rbacPort: await port() });
    const r = await runBatch(pairs, requests);
    compared += r.compared;
    allowed += r.allowed;
    mismatches.push(...r.mismatches);
  }
  t.diagnostic(`${cases.length} cases (${usable.length} compiled, ${rejected} rejected), ${compared} requests per listener (${allowed} allowed, ${compared - allowed} denied), ${compared * 2} in all${perValue ? "" : `; ${all.length - requests.length} requests with repeated headers left out (the filter joins them)`}`);
  assert.deepEqual(mismatches.slice(0, 10), []);
  assert.ok(usable.length >= cases.length / 2, `only ${usable.length} of ${cases.length} cases compiled`);
  // A differential that only ever sees one answer proves nothing.
  assert.ok(allowed > compared / 10 && compared - allowed > compared / 10, `${allowed} of ${compared} allowed: the corpus does not exercise both decisions`);
});
