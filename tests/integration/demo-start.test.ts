// `npm start` as a user runs it: start, paste the two printed curl commands from the repo root, see them in the
// streamed access log, Ctrl-C, and nothing is left running. Free ports and a temporary --out-dir keep it from
// touching a demo the user may be running.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, describe, test } from "node:test";
import { repoRoot } from "../../dev/envoy/binary.ts";
import { freePorts } from "../../dev/envoy/ports.ts";
import { demoClients } from "../../dev/demo/config.ts";
import { https } from "../support/clients.ts";
import { paste, pidAlive, portOpen, startDemo } from "../support/demo.ts";
import { eventually, tempDir } from "../support/envoy-fixture.ts";

const execFileAsync = promisify(execFile);

describe("npm start", () => {
  const dirs: string[] = [];
  const children: ChildProcess[] = [];
  after(async () => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  test("prints two working curl commands, streams the access log, and stops everything on Ctrl-C", async () => {
    const out = await tempDir("demo");
    dirs.push(out);
    const [listener, admin, http, grpcPort] = await freePorts(4);
    const demo = startDemo([
      "--port", String(listener), "--admin-port", String(admin),
      "--upstream-port", String(http), "--grpc-upstream-port", String(grpcPort), "--out-dir", out,
    ]);
    children.push(demo.child);
    try {
      await demo.waitFor(/Ctrl-C stops everything/, 120_000);
      const text = demo.output();
      const curls = text.split("\n").filter((l) => l.trim().startsWith("curl "));
      // Allowed, denied, and the template for a certificate made with `spiffe-authz cert`.
      assert.equal(curls.length, 3, text);
      assert.match(curls[2], /--cert \S+\/mine\/client\.crt/);
      assert.match(text, /npx spiffe-authz cert --id spiffe:\/\/demo\.example\.com\/app\/NAME --ca-dir \S+ --out \S+\/mine/);
      assert.match(text, new RegExp(`admin +http://127\\.0\\.0\\.1:${admin}/`));
      const envoyPid = Number(text.match(/pid (\d+)/)?.[1]);
      assert.ok(pidAlive(envoyPid), "envoy runs");

      assert.equal(await paste(curls[0]), 200);
      assert.equal(await paste(curls[1]), 403);
      const legacy = demoClients.find((c) => c.name === "legacy")!.uri!;
      const frontend = demoClients.find((c) => c.name === "frontend")!.uri!;
      await demo.waitFor(new RegExp(` 200  ${frontend}  GET /orders/42  via_upstream`), 5000);
      await demo.waitFor(new RegExp(` 403  ${legacy}  GET /orders/42  spiffe_authz_denied\\[deny-legacy\\]`), 5000);

      // A second start on the same ports and directory stops before touching anything: the running demo's
      // certificates stay as they are and it keeps serving.
      const certFiles = ["ca.crt", "ca.key", "server.crt", "frontend.crt"];
      const certsBefore = await Promise.all(certFiles.map((f) => readFile(join(out, "certs", f))));
      const second = startDemo([
        "--port", String(listener), "--admin-port", String(admin),
        "--upstream-port", String(http), "--grpc-upstream-port", String(grpcPort), "--out-dir", out, "--new-certs",
      ]);
      children.push(second.child);
      const secondCode = await new Promise<number | null>((resolve) => second.child.once("exit", (c) => resolve(c)));
      assert.equal(secondCode, 3, second.output());
      assert.match(second.output(), new RegExp(`port ${listener} \\(--port\\) is in use.*is the demo already running\\?.*nothing was changed`));
      const certsAfter = await Promise.all(certFiles.map((f) => readFile(join(out, "certs", f))));
      certFiles.forEach((f, i) => assert.ok(certsAfter[i].equals(certsBefore[i]), `${f} unchanged`));
      assert.equal(await paste(curls[0]), 200, "the first demo still serves with its certificates");

      demo.child.kill("SIGINT");
      const code = await new Promise<number | null>((resolve) => demo.child.once("exit", (c) => resolve(c)));
      assert.equal(code, 0, demo.output());
      assert.equal(pidAlive(envoyPid), false, "envoy was stopped");
      for (const port of [listener, admin, http, grpcPort]) assert.equal(await portOpen(port), false, `port ${port} closed`);
    } catch (err) {
      console.error(`--- npm start output ---\n${demo.output()}`);
      throw err;
    }
  });

  test("--prepare writes certificates and the config, starts nothing and exits 0", async () => {
    const out = await tempDir("prepare");
    dirs.push(out);
    const demo = startDemo(["--prepare", "--out-dir", out]);
    children.push(demo.child);
    const code = await new Promise<number | null>((resolve) => demo.child.once("exit", (c) => resolve(c)));
    assert.equal(code, 0, demo.output());
    assert.match(demo.output(), /^prepared: build\/release\.wasm/m);
    for (const file of ["envoy.yaml", "ecds/spiffe-authz.yaml", "certs/ca.crt", "certs/server.key", "certs/frontend.crt", "certs/legacy.key"]) {
      assert.ok((await stat(join(out, file))).size > 0, file);
    }
  });

  test("--policy FILE: a user's policy, applied again when edited; cert makes a client certificate for any SPIFFE ID", async () => {
    const out = await tempDir("playground");
    dirs.push(out);
    const policy = join(out, "mine.yaml");
    const rules = (app: string) => `apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata: {name: mine}
spec:
  rules:
    - id: only-${app}
      from: [{attributes: {app: ${app}}}]
`;
    await writeFile(policy, rules("billing"));
    const [listener, admin, http, grpcPort] = await freePorts(4);
    const demo = startDemo([
      "--policy", policy, "--port", String(listener), "--admin-port", String(admin),
      "--upstream-port", String(http), "--grpc-upstream-port", String(grpcPort), "--out-dir", out,
    ]);
    children.push(demo.child);
    try {
      await demo.waitFor(/Ctrl-C stops everything/, 120_000);
      const certs = join(out, "certs");
      // The cert command, as a user runs it (the CLI entry point), for an identity the demo did not make.
      const { stdout } = await execFileAsync(process.execPath, [
        join(repoRoot, "bin", "spiffe-authz.js"), "cert", "--id", "spiffe://demo.example.com/app/billing/env/prod", "--ca-dir", certs, "--out", join(out, "mine"),
      ]);
      assert.match(stdout, /^wrote .*client\.crt and .*client\.key \(spiffe:\/\/demo\.example\.com\/app\/billing\/env\/prod, 7 days\)\n  curl -i --cacert /);
      const billing = { cert: join(out, "mine", "client.crt"), key: join(out, "mine", "client.key") };
      const get = async (client: { cert: string; key: string }) =>
        (await https({ port: listener, ca: join(certs, "ca.crt"), client, path: "/anything" })).status;
      const frontend = { cert: join(certs, "frontend.crt"), key: join(certs, "frontend.key") };
      assert.equal(await get(billing), 200);
      assert.equal(await get(frontend), 403);
      // Edit the policy: the demo recompiles it and the filter swaps tables in place.
      await writeFile(policy, rules("frontend"));
      await demo.waitFor(/applied table [0-9a-f]{16} \(1 rules\) through ECDS/, 10_000);
      await eventually("the new table to decide", async () => (await get(frontend)) === 200);
      assert.equal(await get(billing), 403);
      // A broken edit is reported and the running table stays.
      await writeFile(policy, rules("frontend").replace("rules:", "rulez:"));
      await demo.waitFor(/policy not applied \(the filter keeps table [0-9a-f]{16}\):\n.*mine\.yaml:\d+:\d+: /, 10_000);
      assert.equal(await get(frontend), 200);
    } catch (err) {
      console.error(`--- npm start output ---\n${demo.output()}`);
      throw err;
    } finally {
      demo.child.kill("SIGINT");
      await new Promise((resolve) => demo.child.once("exit", resolve));
    }
  });

  test("a bad flag is a usage error (exit 2)", async () => {
    const demo = startDemo(["--port", "http"]);
    children.push(demo.child);
    const code = await new Promise<number | null>((resolve) => demo.child.once("exit", (c) => resolve(c)));
    assert.equal(code, 2);
    assert.match(demo.output(), /--port "http" is not a port number/);
  });
});
