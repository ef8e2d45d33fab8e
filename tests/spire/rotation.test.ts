// SVIDs that live 30 seconds: SPIRE rotates Envoy's certificate (pushed over SDS) and the clients' (fetched again
// from the Workload API) several times while a steady load runs, over new connections and over keep-alive
// connections opened before the first rotation. No request fails, and every decision stays what it was.
import assert from "node:assert/strict";
import { Agent } from "node:https";
import { after, before, describe, test } from "node:test";
import type { X509Svid } from "../../dev/spire/svid.ts";
import { explainSpireFailure, startSpireEnvoy } from "../support/spire-fixture.ts";
import type { SpireEnvoy } from "../support/spire-fixture.ts";
import { svidRequest } from "../support/svid-client.ts";
import { spireTestEnvoyId, spireTestIds, spireTestPolicy, spireTestTrustDomain } from "../support/spire-policy.ts";

const td = spireTestTrustDomain;
const envoyId = spireTestEnvoyId;
const { frontend, legacy, reports } = spireTestIds;
const ids = { frontend, legacy, reports };
type Name = keyof typeof ids;
/** What each client must get on every request, before, during and after rotations. */
const expected: Record<Name, { status: number; details: string }> = {
  frontend: { status: 200, details: "via_upstream" },
  legacy: { status: 403, details: "spiffe_authz_denied[deny-legacy]" },
  reports: { status: 403, details: "spiffe_authz_denied[default]" },
};

/** SVID lifetime: SPIRE rotates at about half of it, so several rotations fit in `loadMs`. */
const ttlSeconds = 30;
const loadMs = 45_000;
/** Pause between two requests of one lane (6 lanes: about 60 requests per second in all). */
const lanePauseMs = 100;
/** How often a client asks the agent for its current SVID (a workload watching the Workload API would be told). */
const refreshMs = 2_000;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

describe("SVID rotation under load", () => {
  let env: SpireEnvoy;
  before(async () => {
    env = await startSpireEnvoy({
      trustDomain: td,
      envoyId,
      svidTtlSeconds: ttlSeconds,
      clients: Object.entries(ids).map(([name, spiffeId]) => ({ name, spiffeId })),
      policies: [{ file: "orders-spire.yaml", text: spireTestPolicy }],
    });
  });
  after(async () => {
    await env?.close();
  });

  test("Envoy's and the clients' certificates rotate while requests flow: none fails, no decision changes", () =>
    explainSpireFailure(env, async () => {
      const names = Object.keys(ids) as Name[];
      const current = new Map<Name, X509Svid>();
      for (const name of names) current.set(name, await env.svid(name));
      const clientSerials = new Map<Name, Set<string>>(names.map((n) => [n, new Set([current.get(n)!.serial])]));
      const envoySerials = new Set<string>();
      const failures: string[] = [];
      const statuses = new Map<Name, Map<number, number>>(names.map((n) => [n, new Map()]));
      let sent = 0;
      let overNewConnections = 0;
      let overKeptConnections = 0;
      const envoyPid = env.envoy.pid;
      const stopAt = Date.now() + loadMs;

      // Each client asks the agent for its SVID every few seconds and uses the newest for new connections.
      const refreshers = names.map(async (name) => {
        const client = env.clients[name];
        while (Date.now() < stopAt) {
          await sleep(refreshMs);
          try {
            const svid = (await env.spire.agent.fetchX509(client.workload)).find((s) => s.spiffeId === client.spiffeId);
            if (svid === undefined) {
              failures.push(`${name}: the agent issued no SVID on a refresh`);
              continue;
            }
            current.set(name, svid);
            clientSerials.get(name)!.add(svid.serial);
          } catch (err) {
            failures.push(`${name}: refresh failed: ${(err as Error).message}`);
          }
        }
      });

      const record = (name: Name, status: number): void => {
        const counts = statuses.get(name)!;
        counts.set(status, (counts.get(status) ?? 0) + 1);
      };

      // A new TLS connection per request, with the client's newest SVID: sees every rotation on both sides.
      const newConnectionLane = async (name: Name): Promise<void> => {
        let i = 0;
        while (Date.now() < stopAt) {
          const path = `/orders/${name}-new-${i++}`;
          sent++;
          try {
            const res = await svidRequest({ port: env.port, svid: current.get(name)!, serverId: envoyId, path });
            overNewConnections++;
            envoySerials.add(res.serverSerial);
            record(name, res.status);
          } catch (err) {
            failures.push(`${name} ${path}: ${(err as Error).message}`);
          }
          await sleep(lanePauseMs);
        }
      };

      // One keep-alive connection per client, opened with the SVID it had at the start: the certificates on both
      // ends of it expire during the run, and it keeps serving (TLS checks certificates at the handshake only).
      const keptConnectionLane = async (name: Name): Promise<{ name: Name; sockets: number; serverSerials: Set<string>; clientExpiry: Date }> => {
        const agent = new Agent({ keepAlive: true, maxSockets: 1 });
        const svid = current.get(name)!;
        const serverSerials = new Set<string>();
        let reusedAll = true;
        let i = 0;
        try {
          while (Date.now() < stopAt) {
            const path = `/orders/${name}-kept-${i}`;
            sent++;
            try {
              const res = await svidRequest({ port: env.port, svid, serverId: envoyId, path, agent });
              overKeptConnections++;
              if (i > 0 && !res.reused) reusedAll = false;
              serverSerials.add(res.serverSerial);
              record(name, res.status);
            } catch (err) {
              failures.push(`${name} ${path}: ${(err as Error).message}`);
            }
            i++;
            await sleep(lanePauseMs);
          }
        } finally {
          agent.destroy();
        }
        return { name, sockets: reusedAll ? 1 : 2, serverSerials, clientExpiry: svid.notAfter };
      };

      const started = Date.now();
      const [, , kept] = await Promise.all([
        Promise.all(refreshers),
        Promise.all(names.map(newConnectionLane)),
        Promise.all(names.map(keptConnectionLane)),
      ]);
      const seconds = (Date.now() - started) / 1000;

      const envoyRotations = envoySerials.size - 1;
      const clientRotations = Object.fromEntries(names.map((n) => [n, clientSerials.get(n)!.size - 1]));
      console.log(
        `rotation under load: ${sent} requests in ${seconds.toFixed(1)} s (${overNewConnections} on new connections, ` +
          `${overKeptConnections} on ${names.length} kept connections), ${failures.length} failed; ` +
          `Envoy's certificate rotated ${envoyRotations} times, the clients' ${JSON.stringify(clientRotations)}; ` +
          `SVID lifetime ${ttlSeconds} s`,
      );
      assert.deepEqual(failures, [], "no request fails across rotations");
      assert.equal(overNewConnections + overKeptConnections, sent);
      assert.ok(sent > 500, `a steady load ran (${sent} requests)`);
      assert.equal(env.envoy.pid, envoyPid);
      // Every served certificate is one SPIRE issued to Envoy's entry, and it changed at least twice.
      assert.ok(envoyRotations >= 2, `Envoy's certificate rotated at least twice (${envoyRotations})`);
      for (const name of names) {
        assert.ok(clientRotations[name] >= 2, `${name}'s SVID rotated at least twice (${clientRotations[name]})`);
        assert.deepEqual([...statuses.get(name)!.keys()], [expected[name].status], `${name} always got ${expected[name].status}`);
      }
      for (const lane of kept) {
        assert.equal(lane.sockets, 1, `${lane.name}'s kept connection served its whole lane`);
        assert.equal(lane.serverSerials.size, 1, `${lane.name}'s kept connection kept the server certificate of its handshake`);
        assert.ok(lane.clientExpiry.getTime() < Date.now(), `${lane.name}'s kept connection outlived the client SVID it was opened with`);
      }

      // Envoy's own record: every request of the run, the same peer and the same response details per client.
      await sleep(500);
      const log = env.envoy.accessLog().filter((e) => /^\/orders\/\w+-(new|kept)-\d+$/.test(e.path));
      assert.equal(log.length, sent, "Envoy logged every request");
      for (const name of names) {
        const mine = log.filter((e) => e.path.startsWith(`/orders/${name}-`));
        assert.deepEqual([...new Set(mine.map((e) => e.peer))], [ids[name]]);
        assert.deepEqual([...new Set(mine.map((e) => e.details))], [expected[name].details]);
      }
      // SDS delivered each rotation: Envoy took the new certificate without a failed update.
      const sds = await env.envoy.stats("^sds\\.");
      const rejected = [...sds].filter(([k, v]) => k.endsWith(".update_rejected") && v > 0);
      assert.deepEqual(rejected, []);
    }));
});
