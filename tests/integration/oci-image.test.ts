// The filter as an OCI image, end to end: `spiffe-authz image` pushes both variants of Istio's Wasm image spec to a
// real registry (go-containerregistry's, built from its Go module), crane pulls them back and the media types, the
// layer content (build/release.wasm byte for byte) and the digests are checked; then the WasmPlugin that
// `compile --emit wasmplugin` pins to that image is delivered the way Istio delivers it (istiod's ECDS resource, the
// agent's download and checksum check) to a real Envoy 1.40, which enforces the policy; a checksum that does not
// match makes the agent substitute a deny-all RBAC filter, as istio-agent does for FAIL_CLOSE.
import assert from "node:assert/strict";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { parse } from "yaml";
import { main } from "../../src/cli/main.ts";
import type { CliIO } from "../../src/cli/io.ts";
import { validateIstioManifest } from "../../src/compiler/emit/validate.ts";
import { agentConvert, wasmPluginToExtensionConfig } from "../../dev/envoy/istio-agent.ts";
import type { WasmPluginSpec } from "../../dev/envoy/istio-agent.ts";
import { createPki } from "../../src/envoy/pki.ts";
import type { Pki } from "../../src/envoy/pki.ts";
import { freePort } from "../../dev/envoy/ports.ts";
import { ecdsFilter, renderEcdsResponse, renderStaticBootstrap, toYaml, variantListener } from "../../src/envoy/render.ts";
import type { EnvoyObject } from "../../src/envoy/render.ts";
import { startEnvoy, writeWatchedFile } from "../../dev/envoy/run.ts";
import type { EnvoyHandle } from "../../dev/envoy/run.ts";
import { startUpstream } from "../../dev/envoy/upstream.ts";
import type { Upstream } from "../../dev/envoy/upstream.ts";
import { ensureWasm } from "../../dev/envoy/wasm.ts";
import { buildWasmImage, MEDIA_TYPES, untar } from "../../src/oci/image.ts";
import { https } from "../support/clients.ts";
import { eventually, explainFailure, tempDir } from "../support/envoy-fixture.ts";
import { startRegistry } from "../support/registry.ts";
import type { LocalRegistry } from "../support/registry.ts";

async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const io: CliIO = {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    readStdin: async () => "",
  };
  const code = await main(argv, io);
  return { code, stdout, stderr };
}

/** compile writes to process.stdout/stderr directly: capture them. */
async function captured(fn: () => Promise<number>): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((c: string | Uint8Array) => ((stdout += String(c)), true)) as typeof process.stdout.write;
  process.stderr.write = ((c: string | Uint8Array) => ((stderr += String(c)), true)) as typeof process.stderr.write;
  try {
    return { code: await fn(), stdout, stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
}

const td = "prod.example.com";
const policyText = `apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata:
  name: orders
spec:
  rules:
    - id: frontend-reads-orders
      from: [{attributes: {app: frontend}}]
      to: [{methods: [GET], paths: ["/orders/*"]}]
`;

describe("the OCI image in a real registry", () => {
  let registry: LocalRegistry;
  let dir: string;
  let wasm: Buffer;
  let pushed: { variant: string; digest: string; pushed: string }[];

  before(async () => {
    dir = await tempDir("oci");
    const [wasmPath, reg] = await Promise.all([ensureWasm(), startRegistry()]);
    registry = reg;
    wasm = await readFile(wasmPath);
  });
  after(async () => {
    await registry?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  test("spiffe-authz image pushes both variants and writes an OCI layout", async () => {
    const r = await cli("image", "--variant", "both", "--out", join(dir, "layout"), "--push", `oci://${registry.host}/spiffe-authz:0.1.0`, "--json");
    assert.equal(r.code, 0, r.stderr);
    pushed = (JSON.parse(r.stdout) as { images: typeof pushed }).images;
    assert.deepEqual(pushed.map((p) => p.variant), ["compat", "oci"]);
    assert.equal(pushed[0].pushed, `oci://${registry.host}/spiffe-authz:0.1.0@${pushed[0].digest}`);
    assert.equal(pushed[1].pushed, `oci://${registry.host}/spiffe-authz:0.1.0-oci@${pushed[1].digest}`);
    // The digest is a function of the module alone.
    assert.equal(pushed[0].digest, buildWasmImage(wasm).digest);
    assert.equal(pushed[1].digest, buildWasmImage(wasm, { variant: "oci" }).digest);
    const index = JSON.parse(await readFile(join(dir, "layout", "index.json"), "utf8")) as { manifests: { digest: string }[] };
    assert.deepEqual(index.manifests.map((m) => m.digest), pushed.map((p) => p.digest));
  });

  test("crane pulls the compat variant: media types, annotation, plugin.wasm equal to build/release.wasm, digest", async () => {
    const ref = `${registry.host}/spiffe-authz:0.1.0`;
    const manifest = JSON.parse((await registry.crane("manifest", ref)).toString()) as {
      mediaType: string; config: { mediaType: string }; layers: { mediaType: string }[]; annotations: Record<string, string>;
    };
    assert.equal(manifest.mediaType, MEDIA_TYPES.manifest);
    assert.equal(manifest.config.mediaType, "application/vnd.oci.image.config.v1+json");
    assert.deepEqual(manifest.layers.map((l) => l.mediaType), ["application/vnd.oci.image.layer.v1.tar+gzip"]);
    assert.equal(manifest.annotations["module.wasm.image/variant"], "compat");
    assert.equal((await registry.crane("digest", ref)).toString().trim(), pushed[0].digest);
    // crane export writes the image's filesystem (its one layer, unpacked) as a tar.
    const files = untar(await registry.crane("export", ref, "-"));
    const plugin = files.find((f) => f.name === "plugin.wasm");
    assert.ok(plugin !== undefined, `files: ${files.map((f) => f.name).join(", ")}`);
    assert.ok(plugin.data.equals(wasm), "plugin.wasm is build/release.wasm");
    // crane's own consistency check: blob digests and sizes, config diff_ids against the uncompressed layer.
    await registry.crane("validate", "--remote", ref);
  });

  test("crane pulls the oci variant: two layers, the module layer is build/release.wasm", async () => {
    const ref = `${registry.host}/spiffe-authz:0.1.0-oci`;
    const manifest = JSON.parse((await registry.crane("manifest", ref)).toString()) as {
      config: { mediaType: string }; layers: { mediaType: string; digest: string }[];
    };
    assert.equal(manifest.config.mediaType, "application/vnd.module.wasm.config.v1+json");
    assert.deepEqual(manifest.layers.map((l) => l.mediaType), [
      "application/vnd.module.wasm.config.v1+json",
      "application/vnd.module.wasm.content.layer.v1+wasm",
    ]);
    const module = await registry.crane("blob", `${registry.host}/spiffe-authz@${manifest.layers[1].digest}`);
    assert.ok(module.equals(wasm));
    const config = JSON.parse((await registry.crane("config", ref)).toString()) as { type: string; config: { root_ids: string[] } };
    assert.deepEqual([config.type, config.config.root_ids], ["envoy_proxy", ["spiffe_authz"]]);
    assert.equal((await registry.crane("digest", ref)).toString().trim(), pushed[1].digest);
  });

  describe("delivered as Istio delivers a WasmPlugin", () => {
    let pki: Pki;
    let upstream: Upstream;
    let envoy: EnvoyHandle;
    let port: number;
    let ecdsPath: string;
    let plugin: WasmPluginSpec;
    const name = "shop.orders-authz";

    before(async () => {
      const policy = join(dir, "policy.yaml");
      await writeFile(policy, policyText);
      const { runCompile } = await import("../../src/cli/compile.ts");
      const r = await captured(() =>
        runCompile([policy, "--emit", "wasmplugin", "--namespace", "shop", "--name", "orders-authz", "--label", "app=orders", "--wasm-url", `oci://${registry.host}/spiffe-authz:0.1.0`]),
      );
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(validateIstioManifest(r.stdout), []);
      plugin = (parse(r.stdout) as { spec: WasmPluginSpec }).spec;
      // The pin is the pushed image's digest.
      assert.equal(plugin.sha256, pushed[0].digest.slice("sha256:".length));

      pki = await createPki(join(dir, "certs"), {
        trustDomain: td,
        clients: [{ name: "frontend", uri: `spiffe://${td}/app/frontend` }, { name: "reports", uri: `spiffe://${td}/app/reports` }],
      });
      upstream = await startUpstream();
      port = await freePort();
      await mkdir(join(dir, "ecds"));
      ecdsPath = join(dir, "ecds", "plugins.yaml");
      await writeWatchedFile(ecdsPath, toYaml(renderEcdsResponse([await delivered(plugin)], "1")));
      const listener = variantListener({
        variant: "mtls",
        listener: { port },
        tls: { certChain: pki.server.cert, privateKey: pki.server.key, trustedCa: pki.ca.cert },
        ecds: { path: ecdsPath, directory: join(dir, "ecds") },
      });
      // istiod names the listener's filter after the resource.
      listener.httpFilters = [ecdsFilter({ path: ecdsPath, directory: join(dir, "ecds") }, name)];
      const bootstrap = join(dir, "envoy.yaml");
      await writeFile(bootstrap, toYaml(renderStaticBootstrap({
        admin: { port: 0 }, upstream: { http: { port: upstream.httpPort }, grpc: { port: upstream.grpcPort } }, listener,
      })));
      envoy = await startEnvoy(bootstrap);
      await envoy.ready();
    });
    after(async () => {
      await envoy?.stop();
      await upstream?.close();
    });

    /** istiod's resource for the plugin, then the agent's conversion (download from the registry, checksum). */
    async function delivered(spec: WasmPluginSpec): Promise<EnvoyObject> {
      const { resource, failure } = await agentConvert(wasmPluginToExtensionConfig("shop", "orders-authz", spec), {
        cacheDir: join(dir, "wasm-cache"),
      });
      lastFailure = failure;
      return resource;
    }
    let lastFailure: string | null = null;

    const status = async (client: string): Promise<{ status: number; body: string }> =>
      https({ port, ca: pki.ca.cert, client: pki.clients[client], path: "/orders/1" });

    test("the module pulled from the registry enforces the policy (pluginConfig in headers-continue mode)", () =>
      explainFailure(envoy, async () => {
        assert.equal(lastFailure, null);
        assert.equal((await status("frontend")).status, 200);
        const denied = await status("reports");
        assert.equal(denied.status, 403);
        assert.equal(denied.body, "spiffe-authz: access denied\n");
        assert.match(envoy.logs(), /spiffe-authz: loaded table [0-9a-f]{16} \(1 rules, headers continue\)/);
      }));

    test("a checksum that does not match the image: the agent serves a deny-all RBAC filter (FAIL_CLOSE)", () =>
      explainFailure(envoy, async () => {
        const applied = (await envoy.stat(`extension_config_discovery.http_filter.${name}.update_success`)) ?? 0;
        await writeWatchedFile(ecdsPath, toYaml(renderEcdsResponse([await delivered({ ...plugin, sha256: "0".repeat(64) })], "2")));
        assert.match(lastFailure ?? "", /does not match/);
        await eventually("the substitute to be applied", async () =>
          ((await envoy.stat(`extension_config_discovery.http_filter.${name}.update_success`)) ?? 0) > applied);
        const r = await status("frontend");
        assert.equal(r.status, 403);
        assert.equal(r.body, "RBAC: access denied");
      }));

    test("an image that does not exist is treated the same way", async () => {
      const resource = await delivered({ ...plugin, url: `oci://${registry.host}/no-such-image:1` });
      assert.match(lastFailure ?? "", /404|MANIFEST_UNKNOWN|unknown/i);
      assert.deepEqual(resource, { name, typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC", rules: { action: "ALLOW" } } });
    });
  });
});
