/**
 * Running `npm start` as a user would, for the tests of the demo: start it, wait for what it prints, paste the curl
 * commands it prints, check that what it started is gone afterwards.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { connect } from "node:net";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { repoRoot } from "../../dev/envoy/binary.ts";
import { https } from "./clients.ts";

const execFileAsync = promisify(execFile);

export function startDemo(args: string[]): { child: ChildProcess; output: () => string; waitFor: (re: RegExp, ms: number) => Promise<RegExpMatchArray> } {
  const child = spawn(process.execPath, ["--import", "tsx", "dev/demo/start.ts", ...args], {
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

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function portOpen(port: number): Promise<boolean> {
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
export async function paste(command: string): Promise<number> {
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

