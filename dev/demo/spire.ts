/**
 * The SPIRE side of `npm start -- --spire`: a SPIRE server of the demo's trust domain and an agent, registration
 * entries for Envoy and the demo's client apps, and the clients' X509-SVIDs fetched from the agent's Workload API
 * into files curl can use (kept current while the demo runs).
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { currentWorkload, startSpireAgent, startSpireServer, uidSelector, workloadAs } from "../spire/run.ts";
import type { SpireAgent, SpireServer, Workload } from "../spire/run.ts";
import { writeSvidFiles } from "../spire/svid.ts";
import type { SvidFiles } from "../spire/svid.ts";
import { demoEnvoySpiffeId, demoSpireClients, demoTrustDomain } from "./config.ts";

export interface DemoSpireClient {
  name: string;
  spiffeId: string;
  workload: Workload;
  files: SvidFiles;
}

export interface DemoSpire {
  server: SpireServer;
  agent: SpireAgent;
  /** Envoy's workload: this process's uid (Envoy runs as this process's child). */
  envoyWorkload: Workload;
  clients: DemoSpireClient[];
  /** Where the clients' SVID files are, one directory per client. */
  svidDir: string;
  logs(): string;
  /** Stops refreshing the SVID files, then the agent and the server. Safe to call twice. */
  stop(): Promise<void>;
}

/** How often the clients' SVID files are fetched again (their SVIDs live an hour; SPIRE rotates them at half). */
const refreshMs = 60_000;

/**
 * Starts SPIRE under `spireDir` (its previous state removed: join tokens are single-use, and a fresh server makes
 * a fresh trust domain CA), registers the demo's entries and writes each client's SVID to `<spireDir>/svids/<name>/`.
 */
export async function startDemoSpire(spireDir: string, say: (line: string) => void): Promise<DemoSpire> {
  await rm(spireDir, { recursive: true, force: true });
  const server = await startSpireServer({ trustDomain: demoTrustDomain, dir: join(spireDir, "server") });
  let agent: SpireAgent | undefined;
  let timer: NodeJS.Timeout | undefined;
  const stop = async (): Promise<void> => {
    if (timer !== undefined) clearInterval(timer);
    await agent?.stop();
    await server.stop();
  };
  try {
    agent = await startSpireAgent({ server, dir: join(spireDir, "agent") });
    const envoyWorkload = currentWorkload();
    // Envoy's SVID also names localhost, so curl can verify it by host name (a SPIFFE-aware client checks the ID).
    await server.createEntry({
      spiffeId: demoEnvoySpiffeId,
      parentId: agent.spiffeId,
      selectors: [uidSelector(envoyWorkload)],
      dnsNames: ["localhost"],
    });
    const registered = demoSpireClients.map((c, i) => ({ ...c, workload: workloadAs(i + 1) }));
    for (const c of registered) {
      await server.createEntry({ spiffeId: c.spiffeId, parentId: agent.spiffeId, selectors: [uidSelector(c.workload)] });
    }
    say(`SPIRE: registered ${registered.length + 1} entries; waiting for the agent to issue the SVIDs`);
    const svidDir = join(spireDir, "svids");
    await agent.waitForSvid(demoEnvoySpiffeId, envoyWorkload);
    const clients: DemoSpireClient[] = [];
    const serials = new Map<string, string>();
    for (const c of registered) {
      const svid = await agent.waitForSvid(c.spiffeId, c.workload);
      serials.set(c.name, svid.serial);
      clients.push({ ...c, files: await writeSvidFiles(join(svidDir, c.name), svid) });
    }
    const started = agent;
    timer = setInterval(() => {
      void (async () => {
        for (const c of clients) {
          const svid = (await started.fetchX509(c.workload).catch(() => [])).find((s) => s.spiffeId === c.spiffeId);
          if (svid !== undefined && serials.get(c.name) !== svid.serial) {
            serials.set(c.name, svid.serial);
            await writeSvidFiles(join(svidDir, c.name), svid);
          }
        }
      })();
    }, refreshMs);
    timer.unref();
    return {
      server,
      agent,
      envoyWorkload,
      clients,
      svidDir,
      logs: () => `--- spire-server log ---\n${server.logs()}\n--- spire-agent log ---\n${started.logs()}`,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
