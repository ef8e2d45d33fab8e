/**
 * The configuration-service example, end to end on this machine: builds the filter when needed, makes certificates
 * for three callers, compiles policy.yaml with the proto (`spiffe-authz compile --proto`), starts the gRPC server
 * and Envoy (mTLS listener, the filter, gRPC routed to the server), prints client commands to paste, then streams
 * a compact access log. Ctrl-C stops everything it started.
 *
 *   npx tsx examples/config-service/start.ts [--port 20444] [--admin-port 20902] [--service-port 20082]
 *   npx tsx examples/config-service/start.ts --prepare   # certificates and out/config-service/envoy.yaml only
 */
import { execFile } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { parseArgs, promisify } from "node:util";
import { repoRoot } from "../../dev/envoy/binary.ts";
import { createPki } from "../../src/envoy/pki.ts";
import { renderVariant, toYaml } from "../../src/envoy/render.ts";
import { startEnvoy } from "../../dev/envoy/run.ts";
import type { EnvoyHandle } from "../../dev/envoy/run.ts";
import { ensureWasm } from "../../dev/envoy/wasm.ts";
import { startConfigService } from "./server.ts";
import type { ConfigService } from "./server.ts";

const exampleDir = join(repoRoot, "examples", "config-service");
const outDir = join(repoRoot, "out", "config-service");
const trustDomain = "config.example.com";

/** The callers: `<name>.crt` / `<name>.key` in out/config-service/certs. */
const exampleCallers = [
  { name: "billing-prod", uri: `spiffe://${trustDomain}/app/billing/env/prod` },
  { name: "orders-prod", uri: `spiffe://${trustDomain}/app/orders/env/prod` },
  { name: "billing-staging", uri: `spiffe://${trustDomain}/app/billing/env/staging` },
];

/** `spiffe-authz compile policy.yaml --proto config_service.proto`, through the CLI a user would run. */
async function compileExample(): Promise<string> {
  const cli = join(repoRoot, "bin", "spiffe-authz.js");
  const args = [cli, "compile", join(exampleDir, "policy.yaml"), "--proto", join(exampleDir, "config_service.proto")];
  const { stdout } = await promisify(execFile)(process.execPath, args, { cwd: repoRoot }).catch((err: { stderr?: string; message: string }) => {
    throw new Error(`compiling the example policy failed:\n${err.stderr ?? err.message}`);
  });
  return stdout.trim();
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: "string", default: "20444" },
      "admin-port": { type: "string", default: "20902" },
      "service-port": { type: "string", default: "20082" },
      prepare: { type: "boolean", default: false },
    },
    strict: true,
  });
  const ports = { listener: Number(values.port), admin: Number(values["admin-port"]), service: Number(values["service-port"]) };
  const [wasmPath, configuration, pki] = await Promise.all([
    ensureWasm(),
    compileExample(),
    createPki(join(outDir, "certs"), { trustDomain, clients: exampleCallers }),
  ]);
  const configPath = join(outDir, "envoy.yaml");
  const config = renderVariant({
    variant: "mtls",
    admin: { port: ports.admin },
    listener: { port: ports.listener },
    // Only gRPC is served here: both clusters point at the gRPC server (plain HTTP/1.1 requests would fail).
    upstream: { http: { port: ports.service }, grpc: { port: ports.service } },
    tls: { certChain: pki.server.cert, privateKey: pki.server.key, trustedCa: pki.ca.cert },
    wasm: { wasmPath, configuration },
    nodeId: "spiffe-authz-config-service",
  });
  await mkdir(outDir, { recursive: true });
  await writeFile(configPath, toYaml(config, ["Written by examples/config-service/start.ts."]));
  const rel = (p: string) => relative(repoRoot, p);
  if (values.prepare) {
    console.log(`wrote ${rel(configPath)} and certificates in ${rel(pki.dir)}`);
    return;
  }

  let service: ConfigService | undefined;
  let envoy: EnvoyHandle | undefined;
  const stop = async () => {
    await envoy?.stop();
    await service?.close();
  };
  try {
    service = await startConfigService({
      port: ports.service,
      onCall: (c) => console.log(`  server: FetchResource appname=${c.appname} resource_id=${c.resourceId}${c.redacted ? " redacted" : ""}`),
    });
    envoy = await startEnvoy(configPath, {
      onStdoutLine: (line) => console.log(`  envoy:  ${line}`),
    });
    await envoy.ready();
  } catch (err) {
    await stop();
    throw err;
  }
  const client = (as: string, appname: string, extra = "") =>
    `npx tsx examples/config-service/client.ts --port ${ports.listener} --certs ${rel(pki.dir)} --as ${as} --appname ${appname} --resource db-url${extra}`;
  console.log(`config service (h2c) on 127.0.0.1:${ports.service}; Envoy (mTLS) on 127.0.0.1:${ports.listener}, admin ${envoy.adminUrl}

Try, from the repository root:
  ${client("billing-prod", "billing")}            # OK: its own configuration
  ${client("billing-prod", "orders")}             # PERMISSION_DENIED: another app's (ABAC)
  ${client("billing-prod", "orders", " --redacted")} # OK: another app's, secrets masked
  ${client("billing-staging", "billing")}         # PERMISSION_DENIED: not env=prod (RBAC)
  ${client("billing-prod", "billing", " --gzip")}     # PERMISSION_DENIED: compressed message

Ctrl-C stops.`);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => void stop().then(() => process.exit(0)));
  }
}

main().catch((err: Error) => {
  console.error(`config-service: ${err.message}`);
  process.exitCode = 1;
});
