// The filter in a real Envoy 1.40 whose certificate and trust bundle come from a real SPIRE agent over SDS, with
// clients that are workloads of their own uid holding X509-SVIDs the agent issued them. Allow, deny by rule and deny
// by attribute schema behave exactly as with openssl certificates; certificates from another trust domain or another
// CA never get past TLS; and `spiffe-authz check` decides every SPIRE-issued identity exactly as Envoy did.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { denialDetails } from "../../src/check/checker.ts";
import { compileTexts } from "../../src/compiler/index.ts";
import { repoRoot } from "../../dev/envoy/binary.ts";
import { freePort } from "../../dev/envoy/ports.ts";
import { renderVariant, toYaml } from "../../src/envoy/render.ts";
import { startEnvoy } from "../../dev/envoy/run.ts";
import { ensureWasm } from "../../dev/envoy/wasm.ts";
import { createPki, specialClients } from "../../src/envoy/pki.ts";
import type { Pki } from "../../src/envoy/pki.ts";
import type { EchoBody } from "../../dev/envoy/upstream.ts";
import { currentWorkload, startSpire, uidSelector, workloadAs } from "../../dev/spire/run.ts";
import type { Spire } from "../../dev/spire/run.ts";
import type { X509Svid } from "../../dev/spire/svid.ts";
import { tempDir } from "../support/envoy-fixture.ts";
import { explainSpireFailure, startSpireEnvoy } from "../support/spire-fixture.ts";
import type { SpireEnvoy } from "../support/spire-fixture.ts";
import { spireTestEnvoyId, spireTestIds, spireTestPolicy, spireTestTrustDomain } from "../support/spire-policy.ts";
import { svidRequest } from "../support/svid-client.ts";

const execFileAsync = promisify(execFile);

const td = spireTestTrustDomain;
const envoyId = spireTestEnvoyId;
const ids = spireTestIds;
const policy = spireTestPolicy;

const deniedBody = "spiffe-authz: access denied\n";

describe("Envoy with its identity from SPIRE (SDS), clients with SPIRE-issued SVIDs", () => {
  let env: SpireEnvoy;
  let stranger: Spire | undefined;
  let strangerSvid: X509Svid;
  let pkiDir: string;
  let pki: Pki;

  before(async () => {
    pkiDir = await tempDir("spire-openssl");
    // A SPIRE deployment of another trust domain that nothing federates with, started alongside.
    const strangerStarted = (async () => {
      stranger = await startSpire({ trustDomain: "stranger.example.com" });
      const workload = workloadAs(20);
      const id = "spiffe://stranger.example.com/cluster/c1/app/frontend/env/prod";
      await stranger.server.createEntry({ spiffeId: id, parentId: stranger.agent.spiffeId, selectors: [uidSelector(workload)] });
      strangerSvid = await stranger.agent.waitForSvid(id, workload);
    })();
    const [started] = await Promise.all([
      startSpireEnvoy({
        trustDomain: td,
        envoyId,
        clients: Object.entries(ids).map(([name, spiffeId]) => ({ name, spiffeId })),
        policies: [{ file: "orders-spire.yaml", text: policy }],
      }),
      strangerStarted,
      // openssl certificates with SPIFFE IDs of the same trust domain, from CAs SPIRE never heard of.
      createPki(pkiDir, { trustDomain: td, clients: [{ name: "frontend", uri: ids.frontend }] }).then((p) => (pki = p)),
    ]);
    env = started;
  });
  after(async () => {
    await env?.close();
    await stranger?.stop();
    if (pkiDir !== undefined) await rm(pkiDir, { recursive: true, force: true });
  });

  const get = async (name: keyof typeof ids, path: string, method = "GET") =>
    svidRequest({ port: env.port, svid: await env.svid(name), serverId: envoyId, path, method });

  test("each workload's SVID carries the SPIFFE ID its entry names, issued by the trust domain's CA", () =>
    explainSpireFailure(env, async () => {
      const cas = env.envoySvid.bundlePem
        .split(/(?<=-----END CERTIFICATE-----\n)/)
        .filter((p) => p.includes("BEGIN CERTIFICATE"))
        .map((p) => new X509Certificate(p));
      assert.ok(cas.length > 0);
      for (const [name, id] of Object.entries(ids)) {
        const svid = await env.svid(name);
        assert.equal(svid.spiffeId, id);
        const leaf = new X509Certificate(svid.certChainPem);
        assert.equal(leaf.subjectAltName, `URI:${id}`);
        assert.ok(cas.some((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey)), `${name}'s SVID is signed by the trust domain's CA`);
      }
      // Workloads are told apart by uid: the frontend's uid is not issued the legacy app's identity.
      const frontendSvids = await env.spire.agent.fetchX509(env.clients.frontend.workload);
      if (env.clients.frontend.workload.uid !== env.clients.legacy.workload.uid) {
        assert.deepEqual(frontendSvids.map((s) => s.spiffeId), [ids.frontend]);
      }
    }));

  test("Envoy presents the SVID SPIRE issued to it, received over SDS", () =>
    explainSpireFailure(env, async () => {
      const res = await get("frontend", "/orders/1");
      assert.equal(res.status, 200);
      assert.equal(res.serverSerial, env.envoySvid.serial);
      const certs = JSON.parse(await env.envoy.admin("/certs")) as {
        certificates: { cert_chain: { serial_number: string; subject_alt_names: { uri?: string }[] }[] }[];
      };
      const chains = certs.certificates.flatMap((c) => c.cert_chain);
      const served = chains.find((c) => c.subject_alt_names.some((s) => s.uri === envoyId));
      assert.ok(served !== undefined, JSON.stringify(certs));
      assert.equal(served.serial_number.toLowerCase(), env.envoySvid.serial.toLowerCase());
    }));

  test("allows what a rule allows and forwards the verified SPIRE identity upstream", () =>
    explainSpireFailure(env, async () => {
      const res = await get("frontend", "/orders/7");
      assert.equal(res.status, 200);
      const echo = JSON.parse(res.body) as EchoBody;
      assert.match(String(echo.headers["x-forwarded-client-cert"]), new RegExp(`URI=${ids.frontend}$`));
      const line = await env.envoy.waitForAccessLog((e) => e.path === "/orders/7");
      assert.equal(line.peer, ids.frontend);
      assert.equal(line.details, "via_upstream");
    }));

  test("denies by a DENY rule, by default, and by the allowing rule's attributes", () =>
    explainSpireFailure(env, async () => {
      const cases: [keyof typeof ids, string, string, string][] = [
        ["legacy", "GET", "/orders/8", "spiffe_authz_denied[deny-legacy]"],
        ["reports", "GET", "/orders/9", "spiffe_authz_denied[default]"],
        ["frontend", "POST", "/orders/10", "spiffe_authz_denied[default]"],
        ["staging", "GET", "/orders/11", "spiffe_authz_denied[default]"],
      ];
      for (const [name, method, path, details] of cases) {
        const res = await get(name, path, method);
        assert.equal(res.status, 403, `${name} ${method} ${path}`);
        assert.equal(res.body, deniedBody);
        const line = await env.envoy.waitForAccessLog((e) => e.path === path);
        assert.equal(line.peer, ids[name]);
        assert.equal(line.details, details, `${name} ${method} ${path}`);
        assert.equal(line.upstream, null);
      }
      assert.equal(env.upstream.requests.some((r) => ["/orders/8", "/orders/9", "/orders/10", "/orders/11"].includes(r.path)), false);
    }));

  test("denies an SVID whose ID fails the trust domain's attribute schema, though its app would be allowed", () =>
    explainSpireFailure(env, async () => {
      const res = await get("noEnv", "/orders/12");
      assert.equal(res.status, 403);
      const line = await env.envoy.waitForAccessLog((e) => e.path === "/orders/12");
      assert.equal(line.peer, ids.noEnv);
      assert.equal(line.details, "spiffe_authz_denied[default:schema_failure]");
    }));

  test("rejects at TLS an SVID of a trust domain nobody federates with, and openssl certificates of other CAs", () =>
    explainSpireFailure(env, async () => {
      const statName = `listener.127.0.0.1_${env.port}.ssl.fail_verify_error`;
      const before = (await env.envoy.stat(statName)) ?? 0;
      // The stranger's SVID with Envoy's bundle, so only Envoy's verdict on the client certificate can fail.
      const strangerAsClient: X509Svid = { ...strangerSvid, bundlePem: env.envoySvid.bundlePem, federatedBundles: {} };
      await assert.rejects(svidRequest({ port: env.port, svid: strangerAsClient, serverId: envoyId, path: "/orders/13" }));
      const opensslClient = (name: string): X509Svid => ({
        ...strangerAsClient,
        spiffeId: pki.clients[name].uri ?? "",
        certChainPem: readFileSync(pki.clients[name].cert, "utf8"),
        keyPem: readFileSync(pki.clients[name].key, "utf8"),
      });
      // A valid ID of this very trust domain, signed by a CA that is not the trust domain's.
      await assert.rejects(svidRequest({ port: env.port, svid: opensslClient("frontend"), serverId: envoyId, path: "/orders/14" }));
      await assert.rejects(svidRequest({ port: env.port, svid: opensslClient(specialClients.otherCa), serverId: envoyId, path: "/orders/15" }));
      assert.equal((await env.envoy.stat(statName)) ?? 0, before + 3);
      await new Promise((r) => setTimeout(r, 300)); // an access log line would have been flushed by now
      for (const path of ["/orders/13", "/orders/14", "/orders/15"]) {
        assert.equal(env.envoy.accessLog().some((e) => e.path === path), false, `no HTTP request ${path} was logged`);
        assert.equal(env.upstream.requests.some((r) => r.path === path), false);
      }
    }));

  test("an Envoy whose SPIFFE ID has no entry yet opens no listener, and serves once the entry exists", () =>
    explainSpireFailure(env, async () => {
      const lateId = `spiffe://${td}/cluster/c1/app/late/env/prod`;
      const port = await freePort();
      const configPath = join(env.dir, "late-envoy.yaml");
      const config = renderVariant({
        variant: "mtls",
        admin: { port: 0 },
        listener: { port },
        upstream: { http: { port: env.upstream.httpPort } },
        tls: { sds: { socketPath: env.spire.agent.socketPath, certificate: lateId, validation: `spiffe://${td}` } },
        wasm: { wasmPath: await ensureWasm(), configuration: compileTexts([{ file: "orders-spire.yaml", text: policy }]).config },
      });
      await writeFile(configPath, toYaml(config));
      const late = await startEnvoy(configPath);
      try {
        // The agent refuses the SDS request (this uid is not entitled to the ID); Envoy keeps asking.
        await assert.rejects(late.ready(3000), /was not ready/);
        assert.equal((await (await fetch(`${late.adminUrl}/ready`)).text()).trim(), "INITIALIZING");
        await assert.rejects(svidRequest({ port, svid: await env.svid("frontend"), serverId: lateId, path: "/orders/30" }), /ECONNREFUSED/);
        assert.match(late.logs(), /workload is not authorized for the requested identities \["spiffe:\/\/prod\.example\.com\/cluster\/c1\/app\/late\/env\/prod"\]/);
        await env.spire.server.createEntry({ spiffeId: lateId, parentId: env.spire.agent.spiffeId, selectors: [uidSelector(currentWorkload())] });
        // Envoy retries the SDS stream with a backoff of up to 30 s.
        await late.ready(90_000);
        const res = await svidRequest({ port, svid: await env.svid("frontend"), serverId: lateId, path: "/orders/31" });
        assert.equal(res.status, 200);
      } catch (err) {
        console.error(`--- late envoy log ---\n${late.logs().split("\n").slice(-40).join("\n")}`);
        throw err;
      } finally {
        await late.stop();
      }
    }));

  test("spiffe-authz check decides every SPIRE-issued identity exactly as Envoy did", () =>
    explainSpireFailure(env, async () => {
      const requests: { name: keyof typeof ids; method: string; path: string }[] = [];
      for (const name of Object.keys(ids) as (keyof typeof ids)[]) {
        for (const [method, path] of [["GET", "/orders/21"], ["POST", "/orders/21"], ["GET", "/admin"]]) {
          requests.push({ name, method, path: `${path}?who=${name}` });
        }
      }
      const envoySaw: { status: number; details: string; peer: string | null }[] = [];
      for (const r of requests) {
        const res = await get(r.name, r.path, r.method);
        const line = await env.envoy.waitForAccessLog((e) => e.path === r.path && e.method === r.method);
        envoySaw.push({ status: res.status, details: line.details, peer: line.peer });
      }
      // The peer IDs come from the certificates SPIRE issued, as Envoy read them, not from the test's table.
      const batch = requests.map((r, i) => JSON.stringify({ peer: envoySaw[i].peer, method: r.method, path: r.path })).join("\n");
      const dir = env.dir;
      await writeFile(join(dir, "policy.yaml"), policy);
      await writeFile(join(dir, "requests.jsonl"), batch + "\n");
      const { stdout } = await execFileAsync(
        process.execPath,
        [join(repoRoot, "bin", "spiffe-authz.js"), "check", "--policy", join(dir, "policy.yaml"), "--batch", join(dir, "requests.jsonl")],
        { cwd: repoRoot, timeout: 120_000 },
      );
      const results = stdout.trim().split("\n").map((l) => JSON.parse(l) as { decision: string; status: number; rule: string | null; reason: string; tableHash: string; reasonCode: string });
      assert.equal(results.length, requests.length);
      let allowed = 0;
      for (const [i, r] of results.entries()) {
        const saw = envoySaw[i];
        const what = `${requests[i].name} ${requests[i].method} ${requests[i].path}: check says ${JSON.stringify(r)}, Envoy ${JSON.stringify(saw)}`;
        assert.equal(r.tableHash, env.tableHash);
        assert.equal(r.status, saw.status, what);
        assert.equal(saw.details, r.decision === "allow" ? "via_upstream" : r.rule !== null ? `spiffe_authz_denied[${r.rule}]` : denialDetails(r.reasonCode), what);
        if (r.decision === "allow") allowed++;
        const schema = /does not satisfy the schema of trust domain "prod\.example\.com": missing attribute "env"/;
        if (requests[i].name === "noEnv") assert.match(r.reason, schema, what);
        else assert.doesNotMatch(r.reason, schema, what);
      }
      assert.equal(allowed, 1, "only the frontend's GET is allowed");
    }));
});
