/**
 * k6 with docker compose, for users who have Docker: `npm run bench -- --prepare-compose` writes the Envoy configs
 * and certificates the k6 services of docker-compose.yml mount (out/bench/compose/), and `checkCompose()` holds
 * docker-compose.yml and those files to each other (run by `node --import tsx bench/compose-check.ts`; Docker is
 * not needed for the check).
 *
 * One Envoy per variant family (profiles `baseline`, `rbac-native`, `rbac-matcher`, `wasm`, `abac`, `opa`), all in
 * the upstream service's network namespace beside the demo's Envoy, each on its own listener and admin port and
 * with hot restart off (Envoys sharing a network namespace would otherwise share the hot-restart domain socket).
 * The `opa` family adds the OPA authorizer (bench/opa-authz, built by a golang container) on 127.0.0.1:21950:
 *
 *   docker compose --profile wasm run --rm k6-wasm
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parse } from "yaml";
import { repoRoot } from "../dev/envoy/binary.ts";
import { createPki } from "../src/envoy/pki.ts";
import { renderStaticBootstrap } from "../src/envoy/render.ts";
import { opaData } from "./opa.ts";
import { abacClientId, benchClientId, benchTable, benchTrustDomain } from "./tables.ts";
import { abacVariant, baselineVariant, opaVariant, rbacMatcherVariant, rbacVariant, wasmVariant, type VariantSpec } from "./variants.ts";

/** The families, their compose services, ports and k6 scripts. */
export const composeFamilies = [
  { family: "baseline", listenerPort: 21443, adminPort: 21901, script: "loadtest/baseline.ts", client: "bench-client" },
  { family: "rbac-native", listenerPort: 21444, adminPort: 21902, script: "loadtest/rbac-native.ts", client: "bench-client" },
  { family: "wasm", listenerPort: 21445, adminPort: 21903, script: "loadtest/wasm.ts", client: "bench-client" },
  { family: "abac", listenerPort: 21446, adminPort: 21904, script: "loadtest/abac.ts", client: "abac-client" },
  { family: "rbac-matcher", listenerPort: 21447, adminPort: 21905, script: "loadtest/rbac-matcher.ts", client: "bench-client" },
  { family: "opa", listenerPort: 21448, adminPort: 21906, script: "loadtest/opa.ts", client: "bench-client" },
] as const;

/** The OPA authorizer of the `opa` family: its service and port (in the upstream's network namespace). */
export const composeOpa = { service: "opa-authz-bench", port: 21950, data: "opa-data.json" } as const;

/** Where the generated files go, relative to the repository root (the compose services mount it at /app/<this>). */
export const composeDir = "out/bench/compose";
/** The demo upstream's HTTP port (docker-compose.yml's `upstream` service). */
export const composeUpstreamPort = 20080;

export const composeConfigFile = (family: string): string => `${composeDir}/${family}.json`;
export const composeCertFile = (name: string): string => `${composeDir}/certs/${name}`;

/** Writes out/bench/compose: certificates and one Envoy config per family (`rules` in the rbac and wasm tables). */
export async function prepareCompose(rules: number, log: (line: string) => void): Promise<void> {
  const dir = join(repoRoot, composeDir);
  await mkdir(dir, { recursive: true });
  await createPki(join(dir, "certs"), {
    trustDomain: benchTrustDomain,
    days: 30,
    clients: [
      { name: "bench-client", uri: benchClientId },
      { name: "abac-client", uri: abacClientId },
    ],
  });
  const specs: Record<string, VariantSpec> = {
    baseline: baselineVariant(),
    "rbac-native": rbacVariant(rules),
    "rbac-matcher": rbacMatcherVariant(rules),
    wasm: wasmVariant(rules),
    abac: abacVariant(),
    opa: opaVariant(rules),
  };
  // The OPA authorizer's data: the same table as the other families', as Rego data.
  await writeFile(join(dir, composeOpa.data), JSON.stringify(opaData(benchTable(rules, log).ir())));
  for (const f of composeFamilies) {
    const v = specs[f.family];
    const ctx = { wasmPath: "build/release.wasm", authorizerPort: composeOpa.port };
    // Paths relative to /app, the working directory of the compose services.
    const bootstrap = renderStaticBootstrap({
      admin: { port: f.adminPort },
      upstream: { http: { port: composeUpstreamPort } },
      extraClusters: v.clusters?.(ctx) ?? [],
      listener: {
        endpoint: { port: f.listenerPort },
        tls: {
          certChain: composeCertFile("server.crt"),
          privateKey: composeCertFile("server.key"),
          trustedCa: composeCertFile("ca.crt"),
        },
        requireClientCertificate: true,
        httpFilters: v.filters(ctx),
        accessLog: false,
      },
    });
    await writeFile(join(repoRoot, composeConfigFile(f.family)), JSON.stringify(bootstrap, null, 1) + "\n");
    log(`compose: wrote ${composeConfigFile(f.family)} (${v.name})`);
  }
}

interface ComposeService {
  image?: string;
  profiles?: string[];
  command?: string[];
  volumes?: string[];
  working_dir?: string;
  network_mode?: string;
  depends_on?: string[] | Record<string, unknown>;
  environment?: Record<string, string>;
}

/**
 * Problems of docker-compose.yml's k6 part (empty when it is consistent): every family has an Envoy and a k6
 * service in its own profile, in the upstream's network namespace; the Envoy runs the config `prepareCompose`
 * writes for it on hot restart off; k6 runs the family's script, which exists, against that Envoy's port, with the
 * client certificate `prepareCompose` writes; every mounted host path exists or is one the project generates.
 */
export function checkCompose(text = readFileSync(join(repoRoot, "docker-compose.yml"), "utf8")): string[] {
  const problems: string[] = [];
  let doc: { services?: Record<string, ComposeService> };
  try {
    doc = parse(text) as typeof doc;
  } catch (e) {
    return [`docker-compose.yml does not parse: ${(e as Error).message}`];
  }
  const services = doc.services ?? {};
  if (services.upstream === undefined || services.envoy === undefined) problems.push("the demo services upstream and envoy are gone");
  if (services.envoy?.profiles !== undefined) problems.push("the demo envoy must stay outside any profile (plain `docker compose up`)");
  const generated = ["./build", `./${composeDir}`];
  const mountsOf = (s: ComposeService): Map<string, string> => {
    const m = new Map<string, string>();
    for (const v of s.volumes ?? []) {
      const [host, container] = v.split(":");
      m.set(container, host);
    }
    return m;
  };
  const hostPathFor = (s: ComposeService, containerPath: string): string | null => {
    for (const [container, host] of mountsOf(s)) {
      if (containerPath === container || containerPath.startsWith(container + "/")) return host + containerPath.slice(container.length);
    }
    return null;
  };
  for (const f of composeFamilies) {
    const envoyName = `envoy-bench-${f.family}`;
    const k6Name = `k6-${f.family}`;
    const envoy = services[envoyName];
    const k6 = services[k6Name];
    if (envoy === undefined || k6 === undefined) {
      problems.push(`family ${f.family}: services ${envoyName} and ${k6Name} are expected`);
      continue;
    }
    for (const [name, s] of [[envoyName, envoy], [k6Name, k6]] as const) {
      if (JSON.stringify(s.profiles) !== JSON.stringify([f.family])) problems.push(`${name}: profiles should be ["${f.family}"]`);
      if (s.network_mode !== "service:upstream") problems.push(`${name}: network_mode should be "service:upstream"`);
      for (const [container, host] of mountsOf(s)) {
        if (!generated.some((g) => host === g || host.startsWith(g + "/")) && !existsSync(join(repoRoot, host))) {
          problems.push(`${name}: mounted "${host}" (${container}) does not exist`);
        }
      }
    }
    if (envoy.image !== "envoyproxy/envoy:v1.40-latest") problems.push(`${envoyName}: image should be envoyproxy/envoy:v1.40-latest`);
    const cmd = envoy.command ?? [];
    const config = cmd[cmd.indexOf("-c") + 1];
    const expected = `${envoy.working_dir}/${composeConfigFile(f.family)}`;
    if (config !== expected) problems.push(`${envoyName}: runs "${config}", prepareCompose writes "${expected}"`);
    else if (hostPathFor(envoy, config) === null) problems.push(`${envoyName}: "${config}" is not mounted`);
    if (!cmd.includes("--disable-hot-restart")) problems.push(`${envoyName}: needs --disable-hot-restart (Envoys share the upstream's network namespace)`);
    if (hostPathFor(envoy, `${envoy.working_dir}/build/release.wasm`) === null && (f.family === "wasm" || f.family === "abac")) {
      problems.push(`${envoyName}: build/release.wasm is not mounted`);
    }
    if (!(k6.image ?? "").startsWith("grafana/k6")) problems.push(`${k6Name}: image should be grafana/k6`);
    const kcmd = k6.command ?? [];
    if (kcmd[0] !== "run") problems.push(`${k6Name}: command should be ["run", "<script>"]`);
    const script = kcmd[kcmd.length - 1];
    const scriptInContainer = script?.startsWith("/") ? script : `${k6.working_dir}/${script}`;
    const scriptHost = hostPathFor(k6, scriptInContainer);
    if (scriptHost === null) problems.push(`${k6Name}: script "${script}" is not mounted`);
    else if (scriptHost.replace(/^\.\//, "") !== f.script) problems.push(`${k6Name}: runs "${scriptHost}", expected ${f.script}`);
    if (!existsSync(join(repoRoot, f.script))) problems.push(`${k6Name}: ${f.script} does not exist`);
    const deps = Array.isArray(k6.depends_on) ? k6.depends_on : Object.keys(k6.depends_on ?? {});
    if (!deps.includes(envoyName)) problems.push(`${k6Name}: should depend on ${envoyName}`);
    const env = k6.environment ?? {};
    if (env.TARGET !== `https://127.0.0.1:${f.listenerPort}`) problems.push(`${k6Name}: TARGET should be https://127.0.0.1:${f.listenerPort}`);
    for (const [key, file] of [["CERT", `${f.client}.crt`], ["KEY", `${f.client}.key`]] as const) {
      const want = `${k6.working_dir}/${composeCertFile(file)}`;
      if (env[key] !== want) problems.push(`${k6Name}: ${key} should be ${want}`);
      else if (hostPathFor(k6, want) === null) problems.push(`${k6Name}: ${want} is not mounted`);
    }
    if (f.family === "opa") problems.push(...checkOpaService(services, envoyName, envoy, mountsOf, hostPathFor));
  }
  return problems;
}

/** The OPA authorizer service: built from bench/opa-authz, serving the data prepareCompose writes, before Envoy. */
function checkOpaService(
  services: Record<string, ComposeService>, envoyName: string, envoy: ComposeService,
  mountsOf: (s: ComposeService) => Map<string, string>, hostPathFor: (s: ComposeService, p: string) => string | null,
): string[] {
  const problems: string[] = [];
  const name = composeOpa.service;
  const opa = services[name];
  if (opa === undefined) return [`family opa: service ${name} (the OPA authorizer) is expected`];
  if (JSON.stringify(opa.profiles) !== JSON.stringify(["opa"])) problems.push(`${name}: profiles should be ["opa"]`);
  if (opa.network_mode !== "service:upstream") problems.push(`${name}: network_mode should be "service:upstream"`);
  if (!(opa.image ?? "").startsWith("golang:1.26")) problems.push(`${name}: image should be golang:1.26 (bench/opa-authz/go.mod)`);
  if (hostPathFor(opa, `${opa.working_dir}/go.mod`) !== "./bench/opa-authz/go.mod") problems.push(`${name}: working_dir should be bench/opa-authz, mounted`);
  const command = (opa.command ?? []).join(" ");
  if (!command.includes(`-addr 127.0.0.1:${composeOpa.port}`)) problems.push(`${name}: should serve on 127.0.0.1:${composeOpa.port}`);
  const data = /-data (\S+)/.exec(command)?.[1];
  const want = `/app/${composeDir}/${composeOpa.data}`;
  if (data !== want) problems.push(`${name}: -data should be ${want}`);
  else if (hostPathFor(opa, want) === null) problems.push(`${name}: ${want} is not mounted`);
  for (const [container, host] of mountsOf(opa)) {
    if (host !== `./${composeDir}` && !existsSync(join(repoRoot, host))) problems.push(`${name}: mounted "${host}" (${container}) does not exist`);
  }
  const deps = Array.isArray(envoy.depends_on) ? envoy.depends_on : Object.keys(envoy.depends_on ?? {});
  if (!deps.includes(name)) problems.push(`${envoyName}: should depend on ${name}`);
  return problems;
}
