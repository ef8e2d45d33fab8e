// Every Envoy config the project ships or renders is one Envoy 1.40 accepts (`envoy --mode validate`, which also
// loads the wasm module and runs its onConfigure), the shipped files are exactly what the renderer produces now,
// and docker-compose.yml points at files that exist.
import { checkCompose } from "../../bench/compose.ts";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { access, constants, copyFile, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { parse } from "yaml";
import { repoRoot } from "../../dev/envoy/binary.ts";
import { createPki } from "../../src/envoy/pki.ts";
import type { Pki } from "../../src/envoy/pki.ts";
import {
  ecdsFilterName,
  jwtPayloadMetadata,
  parseAccessLogLine,
  renderLdsBootstrap,
  renderLdsResponse,
  renderListener,
  renderVariant,
  sdsCluster,
  sdsClusterName,
  staticCluster,
  toYaml,
  typedExtensionConfigTypeUrl,
  variantListener,
  variants,
  wasmTypeUrl,
} from "../../src/envoy/render.ts";
import type { EnvoyObject, Variant } from "../../src/envoy/render.ts";
import { validateEnvoyConfig } from "../../dev/envoy/run.ts";
import { ensureWasm } from "../../dev/envoy/wasm.ts";
import {
  compileDemoPolicy,
  demoCertDir,
  demoClients,
  demoEnvoySpiffeId,
  demoTrustDomain,
  demoWasm,
  shippedConfigs,
  shippedEcdsFile,
  spireDefaultAgentSocket,
} from "../../dev/demo/config.ts";
import { renderShippedConfigs, staleShippedConfigs } from "../../dev/demo/shipped.ts";
import { tempDir } from "../support/envoy-fixture.ts";
import { createSigningKey, jwksOf } from "../support/jwt.ts";

const execFileAsync = promisify(execFile);

async function assertValid(path: string, cwd?: string): Promise<void> {
  const result = await validateEnvoyConfig(path, { cwd });
  assert.ok(result.ok, `envoy --mode validate rejected ${path}:\n${result.output}`);
}

/** Every `filename:` in a config (data sources: certificates, keys, the wasm module). */
function filenames(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const item of node) filenames(item, out);
  else if (node !== null && typeof node === "object") {
    for (const [key, value] of Object.entries(node)) {
      if (key === "filename" && typeof value === "string") out.push(value);
      else filenames(value, out);
    }
  }
  return out;
}

/** Every `envoy.filters.http.wasm` entry's plugin config in a config, in order. */
function wasmPluginConfigs(node: unknown, out: Record<string, unknown>[] = []): Record<string, unknown>[] {
  if (Array.isArray(node)) for (const item of node) wasmPluginConfigs(item, out);
  else if (node !== null && typeof node === "object") {
    const o = node as Record<string, unknown>;
    const typed = o.typed_config as { "@type"?: string; config: Record<string, unknown> } | undefined;
    // Inline (`envoy.filters.http.wasm`) or an ECDS resource (a TypedExtensionConfig named after the filter).
    if (typed?.["@type"] === wasmTypeUrl) out.push(typed.config);
    else for (const value of Object.values(o)) wasmPluginConfigs(value, out);
  }
  return out;
}

/** `config` with every ECDS-discovered HTTP filter replaced by the resource of the same name in `ecds`. */
function inlineEcds(config: unknown, ecds: { resources: { name: string; typed_config: unknown }[] }): unknown {
  if (Array.isArray(config)) return config.map((c) => inlineEcds(c, ecds));
  if (config === null || typeof config !== "object") return config;
  const o = config as Record<string, unknown>;
  if (o.config_discovery !== undefined) {
    const resource = ecds.resources.find((r) => r.name === o.name);
    assert.ok(resource !== undefined, `no ECDS resource named "${String(o.name)}"`);
    return { name: o.name, typed_config: resource.typed_config };
  }
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, inlineEcds(v, ecds)]));
}

/** The names of the HTTP filters of the first listener's connection manager, in order. */
function httpFilterNames(config: EnvoyObject): string[] {
  const text = JSON.stringify(config);
  return [...text.matchAll(/"name":"(envoy\.filters\.http\.[a-z_]+)"/g)].map((m) => m[1]);
}

describe("shipped Envoy configs", () => {
  test("every wasm filter sets allow_on_headers_stop_iteration: true (body rules hold the headers)", () => {
    let seen = 0;
    for (const [file, text] of renderShippedConfigs()) {
      for (const config of wasmPluginConfigs(parse(text))) {
        assert.equal(config.allow_on_headers_stop_iteration, true, file);
        seen++;
      }
    }
    // One plugin configuration, in the ECDS file both filtered variants read.
    assert.equal(seen, 1);
  });

  test("the filtered variants take the filter from the ECDS file, the baseline has none", () => {
    const rendered = renderShippedConfigs();
    for (const { file, variant } of shippedConfigs) {
      const text = rendered.get(file)!;
      assert.equal(wasmPluginConfigs(parse(text)).length, 0, `${file} carries no inline table`);
      const discovery = [...text.matchAll(/path: (envoy\/ecds\/[^\s]+)/g)].map((m) => m[1]);
      assert.deepEqual(discovery, variant === "baseline" ? [] : [shippedEcdsFile], file);
    }
    const ecds = parse(rendered.get(shippedEcdsFile)!) as { resources: { "@type": string; name: string }[] };
    assert.deepEqual(ecds.resources.map((r) => [r["@type"], r.name]), [[typedExtensionConfigTypeUrl, ecdsFilterName]]);
  });

  test("envoy/*.yaml equal what the renderer produces from the demo policy now", async () => {
    assert.deepEqual(await staleShippedConfigs(), [], 'regenerate them with "npm run envoy:render"');
  });

  test("reference only build/release.wasm and the demo certificates, by paths relative to the repo root", () => {
    const spireFiles = new Set(shippedConfigs.filter((c) => c.identity === "spire").map((c) => c.file));
    for (const [file, text] of renderShippedConfigs()) {
      const names = filenames(parse(text));
      // A SPIRE config has no certificate files (SDS delivers them); the filter's module is named in the ECDS file.
      const expected =
        file === shippedEcdsFile
          ? [demoWasm]
          : spireFiles.has(file)
            ? []
            : [`${demoCertDir}/server.crt`, `${demoCertDir}/server.key`, `${demoCertDir}/ca.crt`];
      assert.deepEqual(names.sort(), expected.sort(), file);
    }
  });

  test("the SPIRE config takes Envoy's SVID and the demo trust domain's bundle over SDS from SPIRE's default agent socket", () => {
    const [spire] = shippedConfigs.filter((c) => c.identity === "spire");
    assert.equal(spire.file, "envoy/envoy-spire.yaml");
    const config = parse(renderShippedConfigs().get(spire.file)!) as {
      static_resources: { listeners: EnvoyObject[]; clusters: { name: string; load_assignment: unknown }[] };
    };
    const tls = JSON.parse(JSON.stringify(config.static_resources.listeners[0])).filter_chains[0].transport_socket.typed_config;
    assert.equal(tls.require_client_certificate, true);
    const context = tls.common_tls_context;
    const source = {
      resource_api_version: "V3",
      initial_fetch_timeout: "0s",
      api_config_source: { api_type: "GRPC", transport_api_version: "V3", grpc_services: [{ envoy_grpc: { cluster_name: sdsClusterName } }] },
    };
    assert.deepEqual(context.tls_certificate_sds_secret_configs, [{ name: demoEnvoySpiffeId, sds_config: source }]);
    assert.deepEqual(context.validation_context_sds_secret_config, { name: `spiffe://${demoTrustDomain}`, sds_config: source });
    assert.equal(context.tls_certificates, undefined);
    assert.equal(context.validation_context, undefined);
    const agent = config.static_resources.clusters.find((c) => c.name === sdsClusterName);
    assert.deepEqual(agent, sdsCluster(spireDefaultAgentSocket));
    assert.equal(spireDefaultAgentSocket, "/tmp/spire-agent/public/api.sock");
  });

  test("envoy --mode validate accepts each of them, run from a repo-like root", async () => {
    // A copy of the layout the configs expect (build/, out/demo/certs, envoy/), so the test neither needs nor
    // overwrites the user's out/demo.
    const root = await tempDir("shipped");
    try {
      const wasm = await ensureWasm();
      await mkdir(join(root, "build"));
      await mkdir(join(root, "envoy", "ecds"), { recursive: true });
      await copyFile(wasm, join(root, demoWasm));
      await copyFile(join(repoRoot, shippedEcdsFile), join(root, shippedEcdsFile));
      await createPki(join(root, demoCertDir), { trustDomain: demoTrustDomain, clients: demoClients });
      for (const { file } of shippedConfigs) {
        await copyFile(join(repoRoot, file), join(root, file));
        await assertValid(file, root);
        // Validation mode does not read ECDS: validate the listener again with the ECDS file's filter put inline,
        // which loads the module and runs onConfigure on the shipped table.
        const inlined = join(root, file.replace(/\.yaml$/, ".inline.yaml"));
        await writeFile(inlined, toYaml(<EnvoyObject>inlineEcds(parse(await readFile(join(root, file), "utf8")), parse(await readFile(join(root, shippedEcdsFile), "utf8")))));
        await assertValid(inlined, root);
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe("rendered configs", () => {
  let dir: string;
  let pki: Pki;
  let wasmPath: string;
  let table: string;
  const tls = () => ({ certChain: pki.server.cert, privateKey: pki.server.key, trustedCa: pki.ca.cert });
  const upstream = { http: { port: 21080 }, grpc: { port: 21081 } };

  before(async () => {
    dir = await tempDir("render");
    [pki, wasmPath] = await Promise.all([
      createPki(join(dir, "certs"), { trustDomain: "prod.example.com", clients: [] }),
      ensureWasm(),
    ]);
    table = compileDemoPolicy().config;
  });
  after(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  for (const variant of variants) {
    test(`variant "${variant}" validates, with any concurrency-independent ports and absolute paths`, async () => {
      const path = join(dir, `${variant}.yaml`);
      const config = renderVariant({
        variant,
        admin: { port: 0 },
        listener: { port: 21443 },
        upstream,
        tls: tls(),
        wasm: { wasmPath, configuration: table },
      });
      await writeFile(path, toYaml(config));
      await assertValid(path);
    });
  }

  test("a listener with its certificate and bundle over SDS from a SPIRE agent validates, with the agent's cluster", async () => {
    const sds = { socketPath: join(dir, "agent.sock"), certificate: "spiffe://prod.example.com/app/envoy", validation: "ALL" };
    for (const variant of ["mtls", "optional-client-cert"] as const) {
      const config = renderVariant({ variant, admin: { port: 0 }, listener: { port: 21448 }, upstream, tls: { sds }, wasm: { wasmPath, configuration: table } });
      const clusters = (config.static_resources as { clusters: EnvoyObject[] }).clusters;
      assert.deepEqual(clusters.filter((c) => c.name === sdsClusterName), [sdsCluster(sds.socketPath)]);
      const path = join(dir, `sds-${variant}.yaml`);
      await writeFile(path, toYaml(config));
      await assertValid(path);
    }
    // File-based TLS has no agent cluster.
    const files = renderVariant({ variant: "mtls", admin: { port: 0 }, listener: { port: 21449 }, upstream, tls: tls(), wasm: { wasmPath, configuration: table } });
    assert.equal(JSON.stringify(files).includes(sdsClusterName), false);
  });

  test("the variants differ only where they should", () => {
    const render = (variant: Variant) =>
      renderVariant({ variant, admin: { port: 1 }, listener: { port: 2 }, upstream, tls: tls(), wasm: { wasmPath, configuration: table } });
    const tlsContext = (c: EnvoyObject) => JSON.stringify(c).match(/"require_client_certificate":(true|false)/)?.[1];
    const filterNames = (c: EnvoyObject) => [...JSON.stringify(c).matchAll(/"name":"(envoy\.filters\.http\.[a-z_]+)"/g)].map((m) => m[1]);
    assert.equal(tlsContext(render("mtls")), "true");
    assert.equal(tlsContext(render("optional-client-cert")), "false");
    assert.equal(tlsContext(render("baseline")), "true");
    assert.deepEqual(filterNames(render("mtls")), ["envoy.filters.http.wasm", "envoy.filters.http.router"]);
    assert.deepEqual(filterNames(render("baseline")), ["envoy.filters.http.router"]);
    assert.throws(
      () => renderVariant({ variant: "mtls", admin: { port: 1 }, listener: { port: 2 }, upstream, tls: tls() }),
      /variant "mtls" needs the wasm options or an ECDS source/,
    );
    assert.throws(
      () => renderVariant({ variant: "baseline", admin: { address: "0.0.0.0", port: 1 }, listener: { port: 2 }, upstream, tls: tls() }),
      /admin address "0.0.0.0" is not a loopback address/,
    );
  });

  test("jwt_authn runs before the wasm filter and validates, with an inline JWKS and with a remote JWKS", async () => {
    const key = await createSigningKey("render-test");
    const inline = renderVariant({
      variant: "mtls",
      admin: { port: 0 },
      listener: { port: 21446 },
      upstream,
      tls: tls(),
      wasm: { wasmPath, configuration: table },
      jwt: { issuer: "https://issuer.example.com", audiences: ["config-service"], jwks: { inline: jwksOf([key]) } },
    });
    assert.deepEqual(httpFilterNames(inline), ["envoy.filters.http.jwt_authn", "envoy.filters.http.wasm", "envoy.filters.http.router"]);
    const jwtConfig = JSON.parse(JSON.stringify(inline)).static_resources.listeners[0].filter_chains[0].filters[0]
      .typed_config.http_filters[0].typed_config;
    const provider = jwtConfig.providers.spiffe_authz_jwt;
    assert.equal(provider.payload_in_metadata, jwtPayloadMetadata.key);
    assert.equal(provider.forward, false);
    assert.deepEqual(JSON.parse(provider.local_jwks.inline_string).keys[0].kid, "render-test");
    assert.deepEqual(jwtConfig.rules, [
      { match: { prefix: "/" }, requires: { requires_any: { requirements: [{ provider_name: "spiffe_authz_jwt" }, { allow_missing: {} }] } } },
    ]);
    const inlinePath = join(dir, "jwt-inline.yaml");
    await writeFile(inlinePath, toYaml(inline));
    await assertValid(inlinePath);

    const remote = renderVariant({
      variant: "optional-client-cert",
      admin: { port: 0 },
      listener: { port: 21447 },
      upstream,
      tls: tls(),
      wasm: { wasmPath, configuration: table },
      jwt: {
        issuer: "https://issuer.example.com",
        jwks: { remote: { uri: "http://127.0.0.1:21082/.well-known/jwks.json", cluster: "jwks" } },
      },
      extraClusters: [staticCluster("jwks", { port: 21082 })],
    });
    const remotePath = join(dir, "jwt-remote.yaml");
    await writeFile(remotePath, toYaml(remote));
    await assertValid(remotePath);
    for (const config of [...wasmPluginConfigs(inline), ...wasmPluginConfigs(remote)]) {
      assert.equal(config.allow_on_headers_stop_iteration, true);
    }
  });

  test("the LDS bootstrap and its listener file validate", async () => {
    const ldsDir = join(dir, "lds");
    await mkdir(ldsDir, { recursive: true });
    const ldsPath = join(ldsDir, "listeners.yaml");
    const listener = renderListener(
      variantListener({ variant: "mtls", listener: { port: 21444 }, tls: tls(), wasm: { wasmPath, configuration: table } }),
    );
    await writeFile(ldsPath, toYaml(renderLdsResponse([listener], "1")));
    const bootstrap = join(dir, "lds-bootstrap.yaml");
    await writeFile(bootstrap, toYaml(renderLdsBootstrap({ admin: { port: 0 }, upstream, ldsPath, ldsDirectory: ldsDir })));
    await assertValid(bootstrap);
    // Validation mode does not read dynamic resources: validate the file's listener inside a static bootstrap.
    const lds = parse(await readFile(ldsPath, "utf8")) as { resources: EnvoyObject[] };
    assert.equal(lds.resources.length, 1);
    const { "@type": type, ...fromFile } = lds.resources[0];
    assert.equal(type, "type.googleapis.com/envoy.config.listener.v3.Listener");
    const wrapper = renderVariant({ variant: "baseline", admin: { port: 0 }, listener: { port: 0 }, upstream, tls: tls() });
    (wrapper.static_resources as { listeners: EnvoyObject[] }).listeners = [fromFile];
    const wrapperPath = join(dir, "lds-listener.yaml");
    await writeFile(wrapperPath, toYaml(wrapper));
    await assertValid(wrapperPath);
  });

  test("validation runs the filter: a configuration that is not a table is rejected", async () => {
    const path = join(dir, "not-a-table.yaml");
    const configuration = JSON.stringify({ table: Buffer.from("not a table").toString("base64") });
    await writeFile(
      path,
      toYaml(renderVariant({ variant: "mtls", admin: { port: 0 }, listener: { port: 21445 }, upstream, tls: tls(), wasm: { wasmPath, configuration } })),
    );
    const result = await validateEnvoyConfig(path);
    assert.equal(result.ok, false, result.output);
    assert.match(result.output, /Unable to create Wasm plugin spiffe_authz/);
  });

  test("the access log format parses back, with and without a peer", () => {
    const entry = parseAccessLogLine(
      '[2026-01-02T03:04:05.678Z] spiffe://td/app/x "GET /orders/1 HTTP/1.1" 403 spiffe_authz_denied[deny-legacy] grpc=- 1ms upstream=-',
    );
    assert.deepEqual(entry, {
      start: "2026-01-02T03:04:05.678Z",
      peer: "spiffe://td/app/x",
      method: "GET",
      path: "/orders/1",
      protocol: "HTTP/1.1",
      status: 403,
      details: "spiffe_authz_denied[deny-legacy]",
      grpcStatus: null,
      durationMs: 1,
      upstream: null,
    });
    assert.equal(parseAccessLogLine("[2026-01-02 03:04:05.678][1][info][main] starting"), null);
  });
});

describe("docker-compose.yml", () => {
  test("runs the official Envoy 1.40 image on envoy/envoy.yaml with everything it references mounted", async () => {
    const compose = parse(await readFile(join(repoRoot, "docker-compose.yml"), "utf8")) as {
      services: Record<string, { image: string; command: string[]; volumes?: string[]; working_dir?: string; network_mode?: string; ports?: string[] }>;
    };
    const { envoy, upstream } = compose.services;
    assert.equal(envoy.image, "envoyproxy/envoy:v1.40-latest");
    assert.equal(envoy.network_mode, "service:upstream");
    const configArg = envoy.command[envoy.command.indexOf("-c") + 1];
    assert.equal(configArg, "/app/envoy/envoy.yaml");
    const mounts = new Map<string, string>();
    for (const service of [envoy, upstream]) {
      for (const volume of service.volumes ?? []) {
        const [host, container] = volume.split(":");
        mounts.set(container, host);
      }
    }
    // Each file envoy.yaml names (relative to working_dir /app) lies under a mount of the envoy service.
    const envoyMounts = (envoy.volumes ?? []).map((v) => v.split(":")[1]);
    const shipped = parse(await readFile(join(repoRoot, "envoy/envoy.yaml"), "utf8"));
    const ecds = parse(await readFile(join(repoRoot, shippedEcdsFile), "utf8"));
    for (const name of [...filenames(shipped), ...filenames(ecds), "envoy/envoy.yaml", shippedEcdsFile]) {
      const inContainer = `${envoy.working_dir}/${name}`;
      assert.ok(envoyMounts.some((m) => inContainer.startsWith(m + "/")), `"${name}" is not mounted into the envoy service`);
    }
    // Host sides exist, except the demo certificates, which `npm start -- --prepare` writes.
    for (const [container, host] of mounts) {
      if (host === `./${demoCertDir}`) continue;
      if (host === "./build") continue; // npm run build
      await access(join(repoRoot, host), constants.R_OK).catch(() => assert.fail(`mounted "${host}" (${container}) does not exist`));
    }
    // The upstream's script exists and the published port is the shipped listener's.
    const script = upstream.command.find((a) => a.endsWith(".ts"));
    assert.ok(script !== undefined);
    await access(join(repoRoot, script), constants.R_OK);
    const listenerPort = (shipped.static_resources.listeners[0].address.socket_address.port_value as number).toString();
    assert.deepEqual(upstream.ports, [`127.0.0.1:${listenerPort}:${listenerPort}`]);
    assert.match(await readFile(join(repoRoot, "docker-compose.yml"), "utf8"), /# {3}docker compose --profile wasm run --rm k6-wasm\n/);
  });

  test("the k6 services run loadtest/ scripts against the bench Envoys with the files they need", () => {
    // checkCompose lists every k6/bench service that names a missing script, config or certificate path.
    assert.deepEqual(checkCompose(), []);
  });

  test("the upstream script runs under node's type stripping (erasable syntax, node: imports only)", async () => {
    const tsc = join(repoRoot, "node_modules", "typescript", "bin", "tsc");
    const args = [
      tsc, "--noEmit", "--erasableSyntaxOnly", "--verbatimModuleSyntax", "--allowImportingTsExtensions",
      "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022", "--types", "node",
      "--strict", "--skipLibCheck", "dev/demo/upstream-main.ts",
    ];
    await execFileAsync(process.execPath, args, { cwd: repoRoot }).catch((err: { stdout?: string }) =>
      assert.fail(`tsc: ${err.stdout ?? String(err)}`),
    );
    const source = await readFile(join(repoRoot, "dev/envoy/upstream.ts"), "utf8");
    for (const m of source.matchAll(/from "([^"]+)"/g)) assert.match(m[1], /^node:/, `import "${m[1]}"`);
  });
});

describe(".ci/run", () => {
  test("is an executable bash script that stops on errors, installs, and runs npm test", async () => {
    const path = join(repoRoot, ".ci/run");
    assert.ok(((await stat(path)).mode & 0o111) !== 0, ".ci/run is executable");
    const text = await readFile(path, "utf8");
    assert.match(text, /^#!\/usr\/bin\/env bash\n/);
    assert.match(text, /^set -euo pipefail$/m);
    assert.match(text, /^npm ci\b/m);
    assert.match(text, /^npm test$/m);
    await execFileAsync("bash", ["-n", path]);
  });
});
