// `npm start` as a user runs it: start, paste the two printed curl commands from the repo root, see them in the
// streamed access log, Ctrl-C, and nothing is left running. Free ports and a temporary --out-dir keep it from
// touching a demo the user may be running.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { rm, stat } from "node:fs/promises";
import { connect } from "node:net";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { after, describe, test } from "node:test";
import { repoRoot } from "../../src/envoy/binary.ts";
import { freePorts } from "../../src/envoy/ports.ts";
import { demoClients } from "../../src/demo/config.ts";
import { https } from "../support/clients.ts";
import { tempDir } from "../support/envoy-fixture.ts";

const execFileAsync = promisify(execFile);

function startDemo(args: string[]): { child: ChildProcess; output: () => string; waitFor: (re: RegExp, ms: number) => Promise<RegExpMatchArray> } {
  const child = spawn(process.execPath, ["--import", "tsx", "src/demo/start.ts", ...args], {
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let text = "";
  child.stdout!.on("data", (c: Buffer) => (text += c.toString("utf8")));
  child.stderr!.on("data", (c: Buffer) => (text += c.toString("utf8")));
  const waitFor = async (re: RegExp, ms: number): Promise<RegExpMatchArray> => {
    const until = Date.now() + ms;
    for (;;) {
      const m = text.match(re);
      if (m !== null) return m;
      if (child.exitCode !== null || Date.now() > until) {
        throw new Error(`npm start did not print ${re} (exit code ${child.exitCode}); it printed:\n${text}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  return { child, output: () => text, waitFor };
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/**
 * Runs a printed curl command from the repo root and returns the HTTP status. Without curl on the machine, the
 * same request is made from the command's flags with node (the point is that the flags and files are right).
 */
async function paste(command: string): Promise<number> {
  const words = command.trim().split(/\s+/);
  assert.equal(words[0], "curl");
  try {
    const { stdout } = await execFileAsync("curl", [...words.slice(1), "--silent", "--show-error"], { cwd: repoRoot });
    const status = stdout.match(/^HTTP\/[\d.]+ (\d{3})/m);
    assert.ok(status !== null, `no status line in curl output:\n${stdout}`);
    return Number(status[1]);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const flag = (name: string): string => {
    const i = words.indexOf(name);
    assert.ok(i > 0, `the command has ${name}`);
    return resolve(repoRoot, words[i + 1]);
  };
  const url = new URL(words[words.length - 1]);
  const res = await https({
    port: Number(url.port),
    ca: flag("--cacert"),
    client: { cert: flag("--cert"), key: flag("--key") },
    path: url.pathname,
  });
  return res.status;
}

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
      assert.equal(curls.length, 2, text);
      assert.match(text, new RegExp(`admin +http://127\\.0\\.0\\.1:${admin}/`));
      const envoyPid = Number(text.match(/pid (\d+)/)?.[1]);
      assert.ok(pidAlive(envoyPid), "envoy runs");

      assert.equal(await paste(curls[0]), 200);
      assert.equal(await paste(curls[1]), 403);
      const legacy = demoClients.find((c) => c.name === "legacy")!.uri!;
      const frontend = demoClients.find((c) => c.name === "frontend")!.uri!;
      await demo.waitFor(new RegExp(` 200  ${frontend}  GET /orders/42  via_upstream`), 5000);
      await demo.waitFor(new RegExp(` 403  ${legacy}  GET /orders/42  spiffe_authz_denied\\[deny-legacy\\]`), 5000);

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
    for (const file of ["envoy.yaml", "certs/ca.crt", "certs/server.key", "certs/frontend.crt", "certs/legacy.key"]) {
      assert.ok((await stat(join(out, file))).size > 0, file);
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
