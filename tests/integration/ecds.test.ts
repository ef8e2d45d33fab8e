// The filter delivered through ECDS, as the shipped configs deliver it: Envoy 1.40 reads the filter's
// TypedExtensionConfig from a watched file (a filesystem config source; istiod serves the same resource over ADS).
// A new table is applied without restarting Envoy or rebuilding the listener, tables swap under a steady request
// stream without one failed request, an invalid table is rejected while the previous one keeps serving, and a module
// Envoy cannot load never lets a request through.
import assert from "node:assert/strict";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { compileTexts } from "../../src/compiler/index.ts";
import { createPki } from "../../src/envoy/pki.ts";
import type { Pki } from "../../src/envoy/pki.ts";
import { freePort } from "../../dev/envoy/ports.ts";
import { parseAccessLogLine, renderEcdsResponse, renderVariant, toYaml, wasmExtensionConfig } from "../../src/envoy/render.ts";
import type { EcdsSource } from "../../src/envoy/render.ts";
import { startEnvoy, writeWatchedFile } from "../../dev/envoy/run.ts";
import type { EnvoyHandle } from "../../dev/envoy/run.ts";
import { startUpstream } from "../../dev/envoy/upstream.ts";
import type { Upstream } from "../../dev/envoy/upstream.ts";
import { ensureWasm } from "../../dev/envoy/wasm.ts";
import { https } from "../support/clients.ts";
import { holdHttp1, holdHttp2 } from "../support/held-connections.ts";
import { eventually, explainFailure, tempDir } from "../support/envoy-fixture.ts";

const td = "prod.example.com";
const stat = (s: string) => `extension_config_discovery.http_filter.spiffe-authz.${s}`;

/** A table that allows frontend GET /orders/*, and has `extra` rules that change its hash, not its decisions. */
const table = (extra: number) =>
  compileTexts([{ file: "ecds.yaml", text: `
apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata:
  name: ecds
spec:
  rules:
    - id: frontend-reads-orders
      from: [{attributes: {app: frontend}}]
      to: [{methods: [GET], paths: ["/orders/*"]}]
${Array.from({ length: extra }, (_, i) => `    - id: other-${i}\n      from: [{attributes: {app: other-${i}}}]\n`).join("")}` }]);

const freeze = compileTexts([{ file: "freeze.yaml", text: `
apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata:
  name: freeze
spec:
  rules:
    - id: freeze-frontend
      action: deny
      from: [{attributes: {app: frontend}}]
    - id: reports-reads-orders
      from: [{attributes: {app: reports}}]
      to: [{methods: [GET], paths: ["/orders/*"]}]
` }]);

interface Setup {
  dir: string;
  pki: Pki;
  upstream: Upstream;
  envoy: EnvoyHandle;
  port: number;
  ecds: EcdsSource;
  wasmPath: string;
}

async function setup(initial: (wasmPath: string, ecdsPath: string) => string): Promise<Setup> {
  const dir = await tempDir("ecds");
  const [wasmPath, pki] = await Promise.all([
    ensureWasm(),
    createPki(join(dir, "certs"), {
      trustDomain: td,
      clients: [{ name: "frontend", uri: `spiffe://${td}/app/frontend` }, { name: "reports", uri: `spiffe://${td}/app/reports` }],
    }),
  ]);
  const upstream = await startUpstream();
  const port = await freePort();
  const ecds: EcdsSource = { path: join(dir, "ecds", "spiffe-authz.yaml"), directory: join(dir, "ecds") };
  await mkdir(ecds.directory);
  await writeWatchedFile(ecds.path, initial(wasmPath, ecds.path));
  const bootstrap = join(dir, "envoy.yaml");
  await writeFile(bootstrap, toYaml(renderVariant({
    variant: "mtls", admin: { port: 0 }, listener: { port },
    upstream: { http: { port: upstream.httpPort }, grpc: { port: upstream.grpcPort } },
    tls: { certChain: pki.server.cert, privateKey: pki.server.key, trustedCa: pki.ca.cert },
    ecds,
  })));
  const envoy = await startEnvoy(bootstrap, { concurrency: 2 });
  await envoy.ready();
  return { dir, pki, upstream, envoy, port, ecds, wasmPath };
}

async function teardown(s: Setup | undefined): Promise<void> {
  await s?.envoy.stop();
  await s?.upstream.close();
  if (s !== undefined) await rm(s.dir, { recursive: true, force: true });
}

const ecdsFile = (wasmPath: string, configuration: string, version: string): string =>
  toYaml(renderEcdsResponse([wasmExtensionConfig({ wasmPath, configuration })], version));

describe("the filter delivered through ECDS", () => {
  let s: Setup;
  before(async () => {
    s = await setup((wasmPath) => ecdsFile(wasmPath, table(0).config, "v0"));
  });
  after(() => teardown(s));

  const get = (client: string, path = "/orders/1") =>
    https({ port: s.port, ca: s.pki.ca.cert, client: s.pki.clients[client], path });
  const counter = async (name: string) => (await s.envoy.stat(name)) ?? 0;

  test("a new table is applied in place: same Envoy, same listener, nothing drains", () =>
    explainFailure(s.envoy, async () => {
      assert.equal((await get("frontend")).status, 200);
      assert.equal((await get("reports")).status, 403);
      const before = {
        lds: await counter("listener_manager.lds.update_success"),
        created: await counter("listener_manager.listener_create_success"),
        modified: await counter("listener_manager.listener_modified"),
        success: await counter(stat("update_success")),
      };
      await writeWatchedFile(s.ecds.path, ecdsFile(s.wasmPath, freeze.config, "freeze"));
      await eventually("the update", async () => (await counter(stat("update_success"))) > before.success);
      const denied = await get("frontend");
      assert.equal(denied.status, 403);
      assert.equal((await get("reports")).status, 200);
      await s.envoy.waitForAccessLog((e) => e.details === "spiffe_authz_denied[freeze-frontend]");
      assert.equal(await counter("listener_manager.lds.update_success"), before.lds);
      assert.equal(await counter("listener_manager.listener_create_success"), before.created, "no listener was built");
      assert.equal(await counter("listener_manager.listener_modified"), before.modified, "the listener was not modified");
      assert.equal(await counter("listener_manager.total_filter_chains_draining"), 0);
      assert.equal(await counter("listener_manager.total_listeners_draining"), 0);
      assert.equal(await counter("server.hot_restart_epoch"), 0);
    }));

  test("an invalid table is rejected and the previous one keeps serving", () =>
    explainFailure(s.envoy, async () => {
      const rejected = await counter(stat("update_rejected"));
      const notATable = JSON.stringify({ table: Buffer.from("not a table").toString("base64") });
      await writeWatchedFile(s.ecds.path, ecdsFile(s.wasmPath, notATable, "bad"));
      await eventually("the rejection", async () => (await counter(stat("update_rejected"))) > rejected);
      assert.match(s.envoy.logs(), /spiffe-authz: rejected configuration: table: /);
      assert.equal((await get("frontend")).status, 403, "still the freeze table");
      assert.equal((await get("reports")).status, 200);
      // A module that is not wasm at all: rejected the same way.
      const before = await counter(stat("update_rejected"));
      await writeWatchedFile(s.ecds.path, ecdsFile(s.ecds.path, table(0).config, "not-wasm"));
      await eventually("the rejection", async () => (await counter(stat("update_rejected"))) > before);
      assert.equal((await get("frontend")).status, 403);
      assert.equal((await get("reports")).status, 200);
    }));

  test("tables swap under a steady request stream without a single failed request", { timeout: 60_000 }, () =>
    explainFailure(s.envoy, async () => {
      await writeWatchedFile(s.ecds.path, ecdsFile(s.wasmPath, table(0).config, "load-0"));
      await eventually("frontend allowed again", async () => (await get("frontend")).status === 200);
      const client = { port: s.port, ca: s.pki.ca.cert, client: s.pki.clients.frontend };
      // Held connections (the stream never reconnects) plus a new connection per request.
      const held = [await holdHttp2(client), await holdHttp1(client), await holdHttp2(client)];
      const statuses = new Map<string, number>();
      const failures: string[] = [];
      let stop = false;
      let total = 0;
      const count = (what: string, status: number) => {
        total++;
        statuses.set(`${what} ${status}`, (statuses.get(`${what} ${status}`) ?? 0) + 1);
        if (status !== 200) failures.push(`${what} ${status}`);
      };
      const loops = [
        ...held.map(async (c, i) => {
          while (!stop) count(`held-${i}-${c.protocol}`, await c.get(`/orders/${total}`).catch(() => -1));
        }),
        (async () => {
          while (!stop) count("new-connection", await get("frontend", `/orders/${total}`).then((r) => r.status, () => -1));
        })(),
      ];
      const swaps = 12;
      const initial = await counter(stat("update_success"));
      try {
        for (let i = 1; i <= swaps; i++) {
          await writeWatchedFile(s.ecds.path, ecdsFile(s.wasmPath, table(i % 3 + 1).config, `load-${i}`));
          await eventually(`swap ${i}`, async () => (await counter(stat("update_success"))) >= initial + i);
          await new Promise((r) => setTimeout(r, 150));
        }
      } finally {
        stop = true;
        await Promise.all(loops);
        for (const c of held) c.close();
      }
      assert.equal(await counter(stat("update_success")), initial + swaps, "every swap applied");
      assert.deepEqual(failures, [], `${failures.length} of ${total} requests failed: ${JSON.stringify([...statuses])}`);
      assert.ok(total > 100, `a steady stream (${total} requests)`);
      for (const c of held) assert.ok(!c.open(), "closed by the test");
    }));
});

describe("fail closed when the module cannot be loaded", () => {
  let s: Setup | undefined;
  after(() => teardown(s));

  test("a module Envoy cannot load at start: no request reaches the upstream", async () => {
    // Not wasm at all (the ECDS file itself stands in for the module): the update is rejected, the filter has no
    // configuration, and Envoy 1.40 answers every request with a 500 instead of skipping the filter.
    s = await setup((_wasm, ecdsPath) => ecdsFile(ecdsPath, table(0).config, "not-wasm"));
    const setupNow = s;
    await explainFailure(setupNow.envoy, async () => {
      await eventually("the rejection", async () => ((await setupNow.envoy.stat(stat("update_rejected"))) ?? 0) > 0);
      for (const client of ["frontend", "reports"]) {
        const r = await https({ port: setupNow.port, ca: setupNow.pki.ca.cert, client: setupNow.pki.clients[client], path: "/orders/1" });
        assert.equal(r.status, 500, client);
      }
      assert.equal(setupNow.upstream.requests.length, 0, "nothing reached the upstream");
      // Two 500s in the access log, neither with an upstream.
      await eventually("the access log", async () => {
        const lines = setupNow.envoy.stdout().split("\n").map(parseAccessLogLine).filter((e) => e !== null);
        return lines.filter((e) => e.status === 500 && e.upstream === null).length === 2;
      });
    });
  });
});
