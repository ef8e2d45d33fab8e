// `npm start -- --spire` as a user runs it: SPIRE starts with the demo's trust domain, Envoy gets its certificate
// over SDS, the two printed curl commands use SVIDs fetched from the agent and get 200 and 403, and Ctrl-C stops
// Envoy, the upstream and SPIRE. Free ports and a temporary --out-dir keep it from touching a running demo.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFile, rm, stat } from "node:fs/promises";
import { resolve } from "node:path";
import { after, describe, test } from "node:test";
import { repoRoot } from "../../dev/envoy/binary.ts";
import { freePorts } from "../../dev/envoy/ports.ts";
import { demoEnvoySpiffeId, demoSpireClients } from "../../dev/demo/config.ts";
import { paste, pidAlive, portOpen, startDemo } from "../support/demo.ts";
import { tempDir } from "../support/envoy-fixture.ts";

describe("npm start -- --spire", () => {
  const dirs: string[] = [];
  const children: ChildProcess[] = [];
  after(async () => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  test("runs the demo with SPIRE-issued identities, prints two working curls, and Ctrl-C stops SPIRE too", async () => {
    const out = await tempDir("demo-spire");
    dirs.push(out);
    const [listener, admin, http, grpcPort] = await freePorts(4);
    const demo = startDemo([
      "--spire", "--port", String(listener), "--admin-port", String(admin),
      "--upstream-port", String(http), "--grpc-upstream-port", String(grpcPort), "--out-dir", out,
    ]);
    children.push(demo.child);
    try {
      // SPIRE may be built first on a fresh machine (CI builds it in a step of its own before the tests).
      await demo.waitFor(/Ctrl-C stops everything/, 600_000);
      const text = demo.output();
      const curls = text.split("\n").filter((l) => l.trim().startsWith("curl "));
      assert.equal(curls.length, 2, text);
      for (const curl of curls) assert.match(curl, /--cert \S+\/svid\.pem --key \S+\/svid\.key/);
      const envoyPid = Number(text.match(/\(mTLS; pid (\d+)/)?.[1]);
      const serverPid = Number(text.match(/server pid (\d+)/)?.[1]);
      const agentPid = Number(text.match(/agent pid (\d+)/)?.[1]);
      for (const pid of [envoyPid, serverPid, agentPid]) assert.ok(pidAlive(pid), `pid ${pid} runs`);
      const socket = text.match(/Workload API and SDS on (\S+)/)![1];
      assert.ok((await stat(resolve(repoRoot, socket))).isSocket(), `${socket} is the agent's socket`);
      for (const c of demoSpireClients) assert.match(text, new RegExp(`${c.name} = ${c.spiffeId} \\(uid \\d+\\)`));
      assert.match(text, new RegExp(`Envoy = ${demoEnvoySpiffeId}`));

      // The files the curls use are SVIDs the agent issued: the frontend's carries its SPIFFE ID.
      const frontendCert = curls[0].match(/--cert (\S+)/)![1];
      const leaf = new X509Certificate(await readFile(resolve(repoRoot, frontendCert)));
      assert.equal(leaf.subjectAltName, `URI:${demoSpireClients.find((c) => c.name === "frontend")!.spiffeId}`);

      assert.equal(await paste(curls[0]), 200);
      assert.equal(await paste(curls[1]), 403);
      const frontend = demoSpireClients.find((c) => c.name === "frontend")!.spiffeId;
      const legacy = demoSpireClients.find((c) => c.name === "legacy")!.spiffeId;
      await demo.waitFor(new RegExp(` 200  ${frontend}  GET /orders/42  via_upstream`), 5000);
      await demo.waitFor(new RegExp(` 403  ${legacy}  GET /orders/42  spiffe_authz_denied\\[deny-legacy\\]`), 5000);

      demo.child.kill("SIGINT");
      const code = await new Promise<number | null>((resolve) => demo.child.once("exit", (c) => resolve(c)));
      assert.equal(code, 0, demo.output());
      for (const pid of [envoyPid, serverPid, agentPid]) assert.equal(pidAlive(pid), false, `pid ${pid} was stopped`);
      for (const port of [listener, admin, http, grpcPort]) assert.equal(await portOpen(port), false, `port ${port} closed`);
      await assert.rejects(stat(resolve(repoRoot, socket)), "the agent's socket is gone");
    } catch (err) {
      console.error(`--- npm start -- --spire output ---\n${demo.output()}`);
      throw err;
    }
  });

  test("--spire with --prepare is a usage error (exit 2)", async () => {
    const demo = startDemo(["--spire", "--prepare"]);
    children.push(demo.child);
    const code = await new Promise<number | null>((resolve) => demo.child.once("exit", (c) => resolve(c)));
    assert.equal(code, 2);
    assert.match(demo.output(), /--prepare and --spire cannot be combined/);
  });
});
