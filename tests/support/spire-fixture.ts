/**
 * A real SPIRE server and agent, and a real Envoy 1.40 with the real filter that takes its certificate and trust
 * bundle from the agent over SDS, for the SPIRE tests. Clients are workloads of their own uid (when the tests run as
 * root) that fetch their X509-SVIDs from the agent's Workload API.
 */
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { compileTexts } from "../../src/compiler/index.ts";
import { freePort } from "../../dev/envoy/ports.ts";
import { renderVariant, toYaml } from "../../src/envoy/render.ts";
import type { EnvoyObject } from "../../src/envoy/render.ts";
import { startEnvoy } from "../../dev/envoy/run.ts";
import type { EnvoyHandle } from "../../dev/envoy/run.ts";
import { startUpstream } from "../../dev/envoy/upstream.ts";
import type { Upstream } from "../../dev/envoy/upstream.ts";
import { ensureWasm } from "../../dev/envoy/wasm.ts";
import { currentWorkload, startSpire, uidSelector, workloadAs } from "../../dev/spire/run.ts";
import type { Spire, Workload } from "../../dev/spire/run.ts";
import type { X509Svid } from "../../dev/spire/svid.ts";
import { tempDir } from "./envoy-fixture.ts";
import type { PolicyText } from "./envoy-fixture.ts";

/** A workload the tests register: a name, the SPIFFE ID its entry gives it, the uid it runs as. */
export interface SpireClient {
  name: string;
  spiffeId: string;
  workload: Workload;
}

export interface SpireEnvoyOptions {
  trustDomain: string;
  /** Envoy's own SPIFFE ID (its SDS certificate secret). */
  envoyId: string;
  /** Client workloads to register, each under a uid of its own (numbered from 1; Envoy runs as this process). */
  clients: { name: string; spiffeId: string }[];
  policies: PolicyText[];
  /** X509-SVID lifetime of every entry, seconds (default: the server's 1h). */
  svidTtlSeconds?: number;
  /** The SDS validation secret (default `spiffe://<trust domain>`). */
  validationSecret?: string;
  /** Trust domains (`spiffe://...`) Envoy's entry federates with. */
  envoyFederatesWith?: string[];
  /** Start the server with a federation bundle endpoint. */
  bundleEndpoint?: boolean;
  /** Called after SPIRE started and before Envoy's entry is created (federation needs it). */
  beforeEntries?: (spire: Spire) => Promise<void>;
}

export interface SpireEnvoy {
  spire: Spire;
  envoy: EnvoyHandle;
  upstream: Upstream;
  port: number;
  dir: string;
  configPath: string;
  tableHash: string;
  clients: Record<string, SpireClient>;
  /** The SVID Envoy's entry produced when Envoy started. */
  envoySvid: X509Svid;
  /** A client's current SVID from the agent (waits for it on first use). */
  svid(name: string): Promise<X509Svid>;
  close(): Promise<void>;
}

export async function startSpireEnvoy(options: SpireEnvoyOptions): Promise<SpireEnvoy> {
  const dir = await tempDir("spire-envoy");
  let spire: Spire | undefined;
  let upstream: Upstream | undefined;
  let envoy: EnvoyHandle | undefined;
  const close = async (): Promise<void> => {
    await envoy?.stop();
    await upstream?.close();
    await spire?.stop();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const [wasmPath, started] = await Promise.all([
      ensureWasm(),
      startSpire({ trustDomain: options.trustDomain, bundleEndpoint: options.bundleEndpoint }),
    ]);
    spire = started;
    await options.beforeEntries?.(spire);
    const { server, agent } = spire;
    const ttl = options.svidTtlSeconds;
    await server.createEntry({
      spiffeId: options.envoyId,
      parentId: agent.spiffeId,
      selectors: [uidSelector(currentWorkload())],
      x509SvidTtlSeconds: ttl,
      federatesWith: options.envoyFederatesWith,
    });
    const clients: Record<string, SpireClient> = {};
    for (const [i, c] of options.clients.entries()) {
      const workload = workloadAs(i + 1);
      clients[c.name] = { ...c, workload };
      await server.createEntry({ spiffeId: c.spiffeId, parentId: agent.spiffeId, selectors: [uidSelector(workload)], x509SvidTtlSeconds: ttl });
    }
    // Envoy would wait for its certificate anyway (initial_fetch_timeout 0s), but waiting here says why when
    // the entry never arrives.
    const envoySvid = await agent.waitForSvid(options.envoyId, currentWorkload());
    const table = compileTexts(options.policies);
    upstream = await startUpstream();
    const port = await freePort();
    const configPath = join(dir, "envoy.yaml");
    const config: EnvoyObject = renderVariant({
      variant: "mtls",
      admin: { port: 0 },
      listener: { port },
      upstream: { http: { port: upstream.httpPort }, grpc: { port: upstream.grpcPort } },
      tls: {
        sds: {
          socketPath: agent.socketPath,
          certificate: options.envoyId,
          validation: options.validationSecret ?? `spiffe://${options.trustDomain}`,
        },
      },
      wasm: { wasmPath, configuration: table.config },
    });
    await writeFile(configPath, toYaml(config));
    envoy = await startEnvoy(configPath);
    await envoy.ready(60_000);
    const svid = async (name: string): Promise<X509Svid> => {
      const client = clients[name];
      if (client === undefined) throw new Error(`no client "${name}"`);
      return agent.waitForSvid(client.spiffeId, client.workload);
    };
    return { spire, envoy, upstream, port, dir, configPath, tableHash: table.tableHash, clients, envoySvid, svid, close };
  } catch (err) {
    const logs = spire?.logs() ?? "";
    await close();
    throw new Error(`${(err as Error).message}\n${logs}`);
  }
}

/**
 * Runs `fn`; when it throws, prints SPIRE's and Envoy's logs and Envoy's access log, then rethrows.
 */
export async function explainSpireFailure(env: SpireEnvoy | undefined, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (env !== undefined) {
      const tail = (text: string, lines: number) => text.split("\n").slice(-lines).join("\n");
      const envoyLog = env.envoy
        .logs()
        .split("\n")
        .filter((l) => !/\[source\/server\/server\.cc:\d+\]  ( \S+:|statically linked extensions)/.test(l))
        .join("\n");
      console.error(
        `${env.spire.logs(150)}\n--- envoy log (last 200 lines) ---\n${tail(envoyLog, 200)}\n` +
          `--- access log (last 100 lines) ---\n${tail(env.envoy.stdout(), 100)}---`,
      );
    }
    throw err;
  }
}
