/**
 * The demo: what `npm start`, the shipped `envoy/*.yaml`, docker compose and their tests share.
 *
 * Paths are relative to the repository root, the directory Envoy runs in, so the shipped configs work as
 * `envoy -c envoy/envoy.yaml` from there.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { compileTexts } from "../compiler/index.ts";
import type { CompileResult } from "../compiler/index.ts";
import { repoRoot } from "../envoy/binary.ts";
import type { ClientSpec } from "../envoy/pki.ts";
import type { Variant, VariantOptions } from "../envoy/render.ts";

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

/** The shipped configs, rendered from the demo policy. */
export const shippedConfigs: { file: string; variant: Variant }[] = [
  { file: "envoy/envoy.yaml", variant: "mtls" },
  { file: "envoy/envoy-optional-client-cert.yaml", variant: "optional-client-cert" },
  { file: "envoy/envoy-baseline.yaml", variant: "baseline" },
];

/**
 * The shipped configs listen on all addresses: docker compose publishes the listener port, and Docker forwards
 * published ports to the container's own address, never to its 127.0.0.1. `npm start` listens on 127.0.0.1.
 * Admin is always on 127.0.0.1.
 */
export const shippedListenerAddress = "0.0.0.0";

export interface DemoRenderOptions {
  ports?: DemoPorts;
  /** Listener address (default 127.0.0.1). */
  listenerAddress?: string;
  /** Relative to the repo root unless absolute. */
  certDir?: string;
  wasmPath?: string;
}

/** Renderer options of a demo variant. */
export function demoVariantOptions(variant: Variant, configuration: string, options: DemoRenderOptions = {}): VariantOptions {
  const ports = options.ports ?? demoPorts;
  const certDir = options.certDir ?? demoCertDir;
  const wasmPath = options.wasmPath ?? demoWasm;
  return {
    variant,
    admin: { port: ports.admin },
    listener: { address: options.listenerAddress ?? "127.0.0.1", port: ports.listener },
    upstream: { http: { port: ports.upstreamHttp }, grpc: { port: ports.upstreamGrpc } },
    tls: { certChain: `${certDir}/server.crt`, privateKey: `${certDir}/server.key`, trustedCa: `${certDir}/ca.crt` },
    wasm: variant === "baseline" ? undefined : { wasmPath, configuration },
    nodeId: `spiffe-authz-demo-${variant}`,
  };
}
