/**
 * One real Envoy with the real filter for an integration test file: certificates, the echo upstream, a config
 * rendered by the project's renderer with a table from the real compiler, and teardown.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compileTexts } from "../../src/compiler/index.ts";
import { createPki } from "../../src/envoy/pki.ts";
import type { ClientSpec, Pki } from "../../src/envoy/pki.ts";
import { freePort } from "../../dev/envoy/ports.ts";
import { renderVariant, toYaml } from "../../src/envoy/render.ts";
import type { Endpoint, EnvoyObject, JwtAuthnOptions, ListenerOptions, Variant } from "../../src/envoy/render.ts";
import { startEnvoy } from "../../dev/envoy/run.ts";
import type { EnvoyHandle } from "../../dev/envoy/run.ts";
import { startUpstream } from "../../dev/envoy/upstream.ts";
import type { Upstream } from "../../dev/envoy/upstream.ts";
import { ensureWasm } from "../../dev/envoy/wasm.ts";

export interface PolicyText {
  file: string;
  text: string;
}

export interface AuthzEnvoyOptions {
  variant: Variant;
  trustDomain: string;
  clients: ClientSpec[];
  /** Policies compiled with the real compiler into the plugin configuration (not needed by `baseline`). */
  policies?: PolicyText[];
  /**
   * A plugin configuration compiled elsewhere (e.g. by the CLI with `--proto`, see `compileWithCli`); used instead
   * of `policies`.
   */
  configuration?: string;
  /** Where gRPC requests go (the `upstream_grpc` cluster; default: the echo upstream's h2c listener). */
  grpcUpstream?: Endpoint;
  /** jwt_authn before the wasm filter. */
  jwt?: JwtAuthnOptions;
  /** More clusters (e.g. the one a remote JWKS is fetched over). */
  extraClusters?: EnvoyObject[];
  /** The wasm filter's allow_on_headers_stop_iteration (default true; false: as under an Istio WasmPlugin). */
  allowOnHeadersStopIteration?: boolean;
  /** Where plain HTTP requests go (the `upstream_http` cluster; default: the echo upstream). */
  httpUpstream?: Endpoint;
  /** Plugin settings added to the configuration string (docs/table-format.md §1), e.g. `{xfcc: "ignore"}`. */
  settings?: Record<string, string>;
  /** The access log (default: the shipped JSON format on stdout; `{istioFile}`: the shape istiod writes, see render.ts). */
  accessLog?: ListenerOptions["accessLog"];
  /** The listener's `path_with_escaped_slashes_action` (default: the renderer's, UNESCAPE_AND_REDIRECT). */
  escapedSlashes?: ListenerOptions["escapedSlashes"];
  /** The listener's `forward_client_cert_details` (default: the renderer's, SANITIZE_SET). */
  forwardClientCert?: ListenerOptions["forwardClientCert"];
}

export interface AuthzEnvoy {
  dir: string;
  pki: Pki;
  upstream: Upstream;
  envoy: EnvoyHandle;
  /** The HTTPS listener's port. */
  port: number;
  configPath: string;
  /** The compiled table's hash (null for `baseline` and for a precompiled `configuration`). */
  tableHash: string | null;
  /** Stops Envoy and the upstream and removes the temporary directory. Safe to call twice. */
  close(): Promise<void>;
}

/** Makes a temporary directory under the OS temp dir, removed by the caller. */
export function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `spiffe-authz-${prefix}-`));
}

export async function startAuthzEnvoy(options: AuthzEnvoyOptions): Promise<AuthzEnvoy> {
  const dir = await tempDir(options.variant);
  let upstream: Upstream | undefined;
  let envoy: EnvoyHandle | undefined;
  const close = async (): Promise<void> => {
    await envoy?.stop();
    await upstream?.close();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const [wasmPath, pki] = await Promise.all([
      ensureWasm(),
      createPki(join(dir, "certs"), { trustDomain: options.trustDomain, clients: options.clients }),
    ]);
    const table = options.policies === undefined ? null : compileTexts(options.policies);
    const compiled = options.configuration ?? table?.config;
    const configuration = compiled === undefined || options.settings === undefined
      ? compiled
      : JSON.stringify({ ...(JSON.parse(compiled) as object), ...options.settings });
    upstream = await startUpstream();
    const port = await freePort();
    const configPath = join(dir, "envoy.yaml");
    const config = renderVariant({
      variant: options.variant,
      admin: { port: 0 },
      listener: { port },
      upstream: { http: options.httpUpstream ?? { port: upstream.httpPort }, grpc: options.grpcUpstream ?? { port: upstream.grpcPort } },
      tls: { certChain: pki.server.cert, privateKey: pki.server.key, trustedCa: pki.ca.cert },
      wasm: configuration === undefined ? undefined : { wasmPath, configuration, allowOnHeadersStopIteration: options.allowOnHeadersStopIteration },
      jwt: options.jwt,
      extraClusters: options.extraClusters,
      escapedSlashes: options.escapedSlashes,
      forwardClientCert: options.forwardClientCert,
      accessLog: options.accessLog,
    });
    await writeFile(configPath, toYaml(config));
    envoy = await startEnvoy(configPath);
    await envoy.ready();
    return { dir, pki, upstream, envoy, port, configPath, tableHash: table?.tableHash ?? null, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * Runs `fn`; when it throws, prints Envoy's log and access log (the first thing anyone asks for when a real-Envoy
 * test fails) and rethrows.
 */
export async function explainFailure(envoy: EnvoyHandle | undefined, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (envoy !== undefined) {
      // Envoy lists its ~40 extension categories at startup: noise when looking for why a test failed.
      const log = envoy
        .logs()
        .split("\n")
        .filter((l) => !/\[source\/server\/server\.cc:\d+\]  ( \S+:|statically linked extensions)/.test(l))
        .slice(-200)
        .join("\n");
      console.error(`--- envoy log (last 200 lines) ---\n${log}\n--- access log ---\n${envoy.stdout()}---`);
    }
    throw err;
  }
}

/** Polls `check` until it returns true or the time is up. */
export async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
