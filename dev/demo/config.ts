/**
 * The demo: what `npm start`, the shipped `envoy/*.yaml`, docker compose and their tests share.
 *
 * Paths are relative to the repository root, the directory Envoy runs in, so the shipped configs work as
 * `envoy -c envoy/envoy.yaml` from there.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { compileTexts } from "../../src/compiler/index.ts";
import type { CompileResult } from "../../src/compiler/index.ts";
import { repoRoot } from "../envoy/binary.ts";
import type { ClientSpec } from "../../src/envoy/pki.ts";
import { renderEcdsResponse, wasmExtensionConfig } from "../../src/envoy/render.ts";
import type { EnvoyObject, Variant, VariantOptions } from "../../src/envoy/render.ts";

export const demoTrustDomain = "demo.example.com";

export const demoPolicyFile = "examples/demo/policy.yaml";

/**
 * Compiles the demo policy. The file is named relative to the repo root, so diagnostics and the table read the
 * same on every machine (the shipped configs embed the table).
 */
export function compileDemoPolicy(): CompileResult {
  return compileTexts([{ file: demoPolicyFile, text: readFileSync(join(repoRoot, demoPolicyFile), "utf8") }]);
}

/** Where `npm start` writes certificates (the shipped configs reference these files). */
export const demoCertDir = "out/demo/certs";

/** Where `npm start` writes the config it runs. */
export const demoOutDir = "out/demo";

export const demoWasm = "build/release.wasm";

/** Fixed ports of the demo (20000-29999); `npm start` takes overrides on its command line. */
export interface DemoPorts {
  listener: number;
  admin: number;
  upstreamHttp: number;
  upstreamGrpc: number;
}

export const demoPorts: DemoPorts = { listener: 20443, admin: 20901, upstreamHttp: 20080, upstreamGrpc: 20081 };

/** Demo identities: `spiffe://demo.example.com/app/<app>/env/prod`. */
export const demoClients: ClientSpec[] = [
  { name: "frontend", uri: `spiffe://${demoTrustDomain}/app/frontend/env/prod` },
  { name: "legacy", uri: `spiffe://${demoTrustDomain}/app/legacy/env/prod` },
  { name: "reports", uri: `spiffe://${demoTrustDomain}/app/reports/env/prod` },
];

/**
 * Where the demo's identities come from: certificates made with openssl (`npm start`), or SPIRE (`npm start --
 * --spire`), which hands Envoy its certificate and bundle over SDS and the clients their X509-SVIDs.
 */
export type DemoIdentity = "openssl" | "spire";

/** Where `npm start -- --spire` keeps SPIRE's state and sockets, and the clients' SVID files. */
export const demoSpireDir = "out/demo/spire";

/**
 * SPIRE's default agent socket (`socket_path`), which the shipped SPIRE config names: it works with an agent
 * installed with SPIRE's defaults. `npm start -- --spire` renders its config with its own agent's socket.
 */
export const spireDefaultAgentSocket = "/tmp/spire-agent/public/api.sock";

/** The SPIRE demo's identities follow the design's shape: `spiffe://demo.example.com/cluster/c1/app/<app>/env/<env>`. */
export function demoSpireId(app: string, env = "prod"): string {
  return `spiffe://${demoTrustDomain}/cluster/c1/app/${app}/env/${env}`;
}

/** Envoy's own SPIFFE ID in the SPIRE demo: it fronts the orders app. */
export const demoEnvoySpiffeId = demoSpireId("orders");

/** The SPIRE demo's client workloads (the same apps as `demoClients`). */
export const demoSpireClients: { name: string; spiffeId: string }[] = ["frontend", "legacy", "reports"].map((app) => ({
  name: app,
  spiffeId: demoSpireId(app),
}));

/** The shipped configs, rendered from the demo policy. */
export const shippedConfigs: { file: string; variant: Variant; identity: DemoIdentity }[] = [
  { file: "envoy/envoy.yaml", variant: "mtls", identity: "openssl" },
  { file: "envoy/envoy-optional-client-cert.yaml", variant: "optional-client-cert", identity: "openssl" },
  { file: "envoy/envoy-baseline.yaml", variant: "baseline", identity: "openssl" },
  { file: "envoy/envoy-spire.yaml", variant: "mtls", identity: "spire" },
];

/**
 * The shipped configs listen on all addresses: docker compose publishes the listener port, and Docker forwards
 * published ports to the container's own address, never to its 127.0.0.1. `npm start` listens on 127.0.0.1.
 * Admin is always on 127.0.0.1.
 */
export const shippedListenerAddress = "0.0.0.0";

/**
 * The ECDS file the shipped configs read the filter's configuration from (the demo table), relative to the repo
 * root. Replacing it (atomically: write a temporary file in envoy/ecds/ and rename it over this one, as
 * `spiffe-authz compile --emit ecds -o FILE` does) updates the running filter in place.
 */
export const shippedEcdsFile = "envoy/ecds/spiffe-authz.yaml";

/** The ECDS file of `npm start`, relative to its output directory. */
export const demoEcdsName = "ecds/spiffe-authz.yaml";

export interface DemoRenderOptions {
  ports?: DemoPorts;
  /** Listener address (default 127.0.0.1). */
  listenerAddress?: string;
  /** Relative to the repo root unless absolute. */
  certDir?: string;
  wasmPath?: string;
  /** The ECDS file the listener's filter reads (default: the shipped one). */
  ecdsFile?: string;
  /** openssl certificates from `certDir` (default), or SPIRE over SDS from the agent at `agentSocket`. */
  identity?: DemoIdentity;
  /** The SPIRE agent's Workload API socket (default `spireDefaultAgentSocket`). */
  agentSocket?: string;
}

/** Renderer options of a demo variant. */
export function demoVariantOptions(variant: Variant, configuration: string, options: DemoRenderOptions = {}): VariantOptions {
  const ports = options.ports ?? demoPorts;
  const certDir = options.certDir ?? demoCertDir;
  const wasmPath = options.wasmPath ?? demoWasm;
  const ecdsFile = options.ecdsFile ?? shippedEcdsFile;
  return {
    variant,
    admin: { port: ports.admin },
    listener: { address: options.listenerAddress ?? "127.0.0.1", port: ports.listener },
    upstream: { http: { port: ports.upstreamHttp }, grpc: { port: ports.upstreamGrpc } },
    tls:
      options.identity === "spire"
        ? {
            sds: {
              socketPath: options.agentSocket ?? spireDefaultAgentSocket,
              certificate: demoEnvoySpiffeId,
              validation: `spiffe://${demoTrustDomain}`,
            },
          }
        : { certChain: `${certDir}/server.crt`, privateKey: `${certDir}/server.key`, trustedCa: `${certDir}/ca.crt` },
    // The filter reaches the listener through ECDS, so a table update replaces it in place (docs/deployment.md).
    wasm: variant === "baseline" ? undefined : { wasmPath, configuration },
    ecds: variant === "baseline" ? undefined : { path: ecdsFile, directory: dirname(ecdsFile) },
    nodeId: `spiffe-authz-demo-${variant}${options.identity === "spire" ? "-spire" : ""}`,
  };
}

/** The ECDS file's content: the filter with the demo's (or the user's) table. */
export function demoEcdsResponse(configuration: string, options: { wasmPath?: string; version: string }): EnvoyObject {
  return renderEcdsResponse([wasmExtensionConfig({ wasmPath: options.wasmPath ?? demoWasm, configuration })], options.version);
}
