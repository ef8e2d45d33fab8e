// Policy updates through a listener reload: Envoy takes its listener from a watched file (LDS path_config_source
// with watched_directory), the test replaces the file atomically, and Envoy rebuilds the listener with the new plugin
// configuration. (The shipped configs deliver the table through ECDS instead, which updates the filter in place;
// the last test shows what LDS does to connections that are already open.) A configuration that is not a table must be rejected (onConfigure returns false, Envoy NACKs the
// update) while the previous policy keeps serving; a later valid update must take effect.
import assert from "node:assert/strict";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { compileTexts } from "../../src/compiler/index.ts";
import { createPki } from "../../src/envoy/pki.ts";
import type { Pki } from "../../src/envoy/pki.ts";
import { freePort } from "../../dev/envoy/ports.ts";
import { renderLdsBootstrap, renderLdsResponse, renderListener, toYaml, variantListener } from "../../src/envoy/render.ts";
import { startEnvoy, writeLdsFile } from "../../dev/envoy/run.ts";
import type { EnvoyHandle } from "../../dev/envoy/run.ts";
import { startUpstream } from "../../dev/envoy/upstream.ts";
import type { Upstream } from "../../dev/envoy/upstream.ts";
import { ensureWasm } from "../../dev/envoy/wasm.ts";
import { https } from "../support/clients.ts";
import { holdHttp1 } from "../support/held-connections.ts";
import { eventually, explainFailure, tempDir } from "../support/envoy-fixture.ts";

const td = "prod.example.com";
const ids = {
  frontend: `spiffe://${td}/app/frontend/env/prod`,
  reports: `spiffe://${td}/app/reports/env/prod`,
};

const policy = (rules: string): string => `
apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata:
  name: reload
spec:
  default: deny
  rules:
${rules}`;

const v1 = policy(`
    - id: frontend-reads-orders
      action: allow
      from: [{attributes: {app: frontend}}]
      to: [{methods: [GET], paths: ["/orders/*"]}]
`);

const v3 = policy(`
    - id: freeze-frontend
      action: deny
      from: [{attributes: {app: frontend}}]
    - id: reports-reads-orders
      action: allow
      from: [{attributes: {app: reports}}]
      to: [{methods: [GET], paths: ["/orders/*"]}]
`);

/** A JSON wrapper of the right shape around bytes that are not a table (no SPAZ magic). */
const notATable = JSON.stringify({ table: Buffer.from("not a table").toString("base64") });

describe("listener updates from a watched LDS file", () => {
  let dir: string;
  let pki: Pki;
  let upstream: Upstream;
  let envoy: EnvoyHandle;
  let port: number;
  let wasmPath: string;
  let ldsPath: string;

  const listenerFile = (configuration: string, version: string): string =>
    toYaml(
      renderLdsResponse(
        [
          renderListener(
            variantListener({
              variant: "mtls",
              listener: { port },
              tls: { certChain: pki.server.cert, privateKey: pki.server.key, trustedCa: pki.ca.cert },
              wasm: { wasmPath, configuration },
            }),
          ),
        ],
        version,
      ),
    );

  const status = async (client: "frontend" | "reports"): Promise<number> =>
    (await https({ port, ca: pki.ca.cert, client: pki.clients[client], path: "/orders/1" })).status;

  const counter = async (name: string): Promise<number> => (await envoy.stat(name)) ?? 0;

  before(async () => {
    dir = await tempDir("lds");
    [wasmPath, pki] = await Promise.all([
      ensureWasm(),
      createPki(join(dir, "certs"), {
        trustDomain: td,
        clients: Object.entries(ids).map(([name, uri]) => ({ name, uri })),
      }),
    ]);
    upstream = await startUpstream();
    port = await freePort();
    const ldsDir = join(dir, "lds");
    ldsPath = join(ldsDir, "listeners.yaml");
    await mkdir(ldsDir);
    await writeLdsFile(ldsPath, listenerFile(compileTexts([{ file: "v1.yaml", text: v1 }]).config, "v1"));
    const bootstrapPath = join(dir, "bootstrap.yaml");
    await writeFile(
      bootstrapPath,
      toYaml(
        renderLdsBootstrap({
          admin: { port: 0 },
          upstream: { http: { port: upstream.httpPort }, grpc: { port: upstream.grpcPort } },
          ldsPath,
          ldsDirectory: ldsDir,
        }),
      ),
    );
    envoy = await startEnvoy(bootstrapPath);
    await envoy.ready();
  });

  after(async () => {
    await envoy?.stop();
    await upstream?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  test("serves the initial policy", () =>
    explainFailure(envoy, async () => {
      assert.equal(await status("frontend"), 200);
      assert.equal(await status("reports"), 403);
      assert.equal(await counter("listener_manager.lds.update_success"), 1);
    }));

  test("rejects a listener whose wasm configuration is not a table and keeps serving the previous policy", () =>
    explainFailure(envoy, async () => {
      const rejected = await counter("listener_manager.lds.update_rejected");
      const succeeded = await counter("listener_manager.lds.update_success");
      await writeLdsFile(ldsPath, listenerFile(notATable, "v2-bad"));
      await eventually("listener_manager.lds.update_rejected to increment", async () =>
        (await counter("listener_manager.lds.update_rejected")) > rejected,
      );
      assert.equal(await counter("listener_manager.lds.update_success"), succeeded);
      // The filter says why; Envoy names the plugin it could not create.
      assert.match(envoy.logs(), /spiffe-authz: rejected configuration/);
      // New connections still get the previous listener and its policy.
      assert.equal(await status("frontend"), 200);
      assert.equal(await status("reports"), 403);
      assert.equal((await envoy.admin("/ready")).trim(), "LIVE");
    }));

  test("applies a later valid update: the new policy decides new connections, open ones keep the old listener", () =>
    explainFailure(envoy, async () => {
      // Why the shipped configs deliver tables through ECDS instead (tests/integration/revocation.test.ts): an LDS
      // update builds a new listener and drains the old one, and a connection opened before the update stays on
      // the old listener, with the old table, until it closes or the drain ends.
      const held = await holdHttp1({ port, ca: pki.ca.cert, client: pki.clients.frontend });
      try {
        assert.equal(await held.get("/orders/1"), 200);
        const succeeded = await counter("listener_manager.lds.update_success");
        await writeLdsFile(ldsPath, listenerFile(compileTexts([{ file: "v3.yaml", text: v3 }]).config, "v3"));
        await eventually("listener_manager.lds.update_success to increment", async () =>
          (await counter("listener_manager.lds.update_success")) > succeeded,
        );
        // The new listener may still be warming for a moment after the update is accepted.
        await eventually("the new policy to decide", async () => (await status("reports")) === 200);
        assert.equal(await status("frontend"), 403);
        const line = await envoy.waitForAccessLog((e) => e.peer === ids.frontend && e.details === "spiffe_authz_denied[freeze-frontend]");
        assert.equal(line.status, 403);
        // The connection opened before the update: still the old listener and its table.
        assert.equal(await held.get("/orders/2"), 200, "an LDS update leaves open connections on the old table");
        assert.ok(held.open());
        // Envoy 1.40 updates the listener in place and drains the old filter chain, with its filter and table.
        assert.equal(await counter("listener_manager.total_filter_chains_draining"), 1);
      } finally {
        held.close();
      }
    }));
});
