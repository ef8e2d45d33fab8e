// Revocation reaches open connections: with the filter delivered through ECDS (as the shipped configs and `npm start`
// deliver it), a table update replaces the filter in place, so the next request on an HTTP/2 session and on an
// HTTP/1.1 keep-alive connection that were open before the update is decided by the new table. Through an LDS
// listener update the same requests would keep the old table until the old listener has drained (up to
// drain_time_s, 600 s by default): run this file with SPIFFE_AUTHZ_DELIVERY=lds to see it fail that way.
import assert from "node:assert/strict";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { compileTexts } from "../../src/compiler/index.ts";
import { createPki } from "../../src/envoy/pki.ts";
import type { Pki } from "../../src/envoy/pki.ts";
import { freePort } from "../../dev/envoy/ports.ts";
import {
  renderEcdsResponse, renderLdsBootstrap, renderLdsResponse, renderListener, renderVariant, toYaml, variantListener,
  wasmExtensionConfig,
} from "../../src/envoy/render.ts";
import type { EcdsSource } from "../../src/envoy/render.ts";
import { startEnvoy, writeWatchedFile } from "../../dev/envoy/run.ts";
import type { EnvoyHandle } from "../../dev/envoy/run.ts";
import { startUpstream } from "../../dev/envoy/upstream.ts";
import type { Upstream } from "../../dev/envoy/upstream.ts";
import { ensureWasm } from "../../dev/envoy/wasm.ts";
import { holdHttp1, holdHttp2 } from "../support/held-connections.ts";
import type { HeldConnection } from "../support/held-connections.ts";
import { eventually, explainFailure, tempDir } from "../support/envoy-fixture.ts";

const delivery = process.env.SPIFFE_AUTHZ_DELIVERY === "lds" ? "lds" : "ecds";
const td = "prod.example.com";
const frontend = `spiffe://${td}/app/frontend/env/prod`;

const policy = (rules: string): string =>
  compileTexts([{ file: "revocation.yaml", text: `
apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata:
  name: revocation
spec:
  default: deny
  rules:
${rules}` }]).config;

const granted = policy(`
    - id: frontend-reads-orders
      from: [{attributes: {app: frontend}}]
      to: [{methods: [GET], paths: ["/orders/*"]}]
`);
// The grant is gone; the only rule left is for someone else.
const revoked = policy(`
    - id: reports-reads-orders
      from: [{attributes: {app: reports}}]
      to: [{methods: [GET], paths: ["/orders/*"]}]
`);

describe(`revocation on connections held open across a table update (${delivery})`, () => {
  let dir: string;
  let pki: Pki;
  let upstream: Upstream;
  let envoy: EnvoyHandle;
  let port: number;
  let wasmPath: string;
  let update: (configuration: string, version: string) => Promise<void>;
  let updatesApplied: () => Promise<number>;

  before(async () => {
    dir = await tempDir("revocation");
    [wasmPath, pki] = await Promise.all([
      ensureWasm(),
      createPki(join(dir, "certs"), { trustDomain: td, clients: [{ name: "frontend", uri: frontend }] }),
    ]);
    upstream = await startUpstream();
    port = await freePort();
    const tls = { certChain: pki.server.cert, privateKey: pki.server.key, trustedCa: pki.ca.cert };
    const bootstrapPath = join(dir, "bootstrap.yaml");
    const upstreams = { http: { port: upstream.httpPort }, grpc: { port: upstream.grpcPort } };
    if (delivery === "ecds") {
      const ecds: EcdsSource = { path: join(dir, "ecds", "spiffe-authz.yaml"), directory: join(dir, "ecds") };
      await mkdir(ecds.directory);
      update = (configuration, version) =>
        writeWatchedFile(ecds.path, toYaml(renderEcdsResponse([wasmExtensionConfig({ wasmPath, configuration })], version)));
      updatesApplied = async () => (await envoy.stat("extension_config_discovery.http_filter.spiffe-authz.update_success")) ?? 0;
      await update(granted, "granted");
      await writeFile(bootstrapPath, toYaml(renderVariant({ variant: "mtls", admin: { port: 0 }, listener: { port }, upstream: upstreams, tls, ecds })));
    } else {
      const ldsDir = join(dir, "lds");
      const ldsPath = join(ldsDir, "listeners.yaml");
      await mkdir(ldsDir);
      update = (configuration, version) =>
        writeWatchedFile(ldsPath, toYaml(renderLdsResponse([
          renderListener(variantListener({ variant: "mtls", listener: { port }, tls, wasm: { wasmPath, configuration } })),
        ], version)));
      updatesApplied = async () => (await envoy.stat("listener_manager.lds.update_success")) ?? 0;
      await update(granted, "granted");
      await writeFile(bootstrapPath, toYaml(renderLdsBootstrap({ admin: { port: 0 }, upstream: upstreams, ldsPath, ldsDirectory: ldsDir })));
    }
    envoy = await startEnvoy(bootstrapPath);
    await envoy.ready();
  });

  after(async () => {
    await envoy?.stop();
    await upstream?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  test("the next request on an open HTTP/2 session and on an open HTTP/1.1 keep-alive connection is denied", (t) =>
    explainFailure(envoy, async () => {
      const client = { port, ca: pki.ca.cert, client: pki.clients.frontend };
      const held: HeldConnection[] = [await holdHttp2(client), await holdHttp1(client)];
      try {
        assert.deepEqual(held.map((c) => c.protocol), ["h2", "http/1.1"]);
        for (const c of held) {
          assert.equal(await c.get("/orders/1"), 200, `${c.protocol} before the update`);
          assert.equal(await c.get("/orders/2"), 200, `${c.protocol} keeps its connection`);
        }
        const connections = await envoy.stat("http.ingress_http.downstream_cx_total");

        const applied = await updatesApplied();
        const written = Date.now();
        await update(revoked, "revoked");
        await eventually("Envoy to apply the update", async () => (await updatesApplied()) > applied, 5000);
        // The very next request on each connection that was open before the update.
        const statuses = await Promise.all(held.map((c) => c.get("/orders/3")));
        const elapsed = Date.now() - written;
        assert.deepEqual(
          held.map((c, i) => `${c.protocol} ${statuses[i]}`),
          ["h2 403", "http/1.1 403"],
          "the revoked grant must not decide requests on connections opened before the update",
        );
        t.diagnostic(`denied on both held connections ${elapsed} ms after the update was written`);
        assert.ok(elapsed < 1000, `revocation took ${elapsed} ms from writing the update (limit 1000 ms)`);
        // Same connections: nothing was reconnected behind the test's back.
        for (const c of held) assert.ok(c.open(), `${c.protocol} connection still open`);
        assert.equal(await envoy.stat("http.ingress_http.downstream_cx_total"), connections, "no new downstream connection");
        const denied = await envoy.waitForAccessLog((e) => e.path === "/orders/3" && e.status === 403);
        assert.equal(denied.details, "spiffe_authz_denied[default]");
        // The filter was updated in place: no listener or filter chain is draining.
        assert.equal((await envoy.stat("listener_manager.total_listeners_draining")) ?? 0, 0);
        assert.equal((await envoy.stat("listener_manager.total_filter_chains_draining")) ?? 0, 0);
      } finally {
        for (const c of held) c.close();
      }
    }));
});
