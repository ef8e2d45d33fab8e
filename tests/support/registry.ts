/**
 * A real OCI registry on this machine for the image tests: go-containerregistry's `crane registry serve`, built from
 * its Go module at an exact version into .cache/go/ (the module and build caches live there too, so a second run
 * builds nothing; a cold build takes about 35 s on the project's 2-core machine). `crane` is also the standard client
 * the tests pull back with.
 */
import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { repoRoot } from "../../dev/envoy/binary.ts";
import { freePort } from "../../dev/envoy/ports.ts";

const execFileAsync = promisify(execFile);

/** The exact module version (the Go module proxy refuses `@latest` here, and CI must be reproducible). */
export const CRANE_MODULE = "github.com/google/go-containerregistry/cmd/crane@v0.22.1";
const cacheDir = join(repoRoot, ".cache", "go");
export const cranePath = join(cacheDir, "bin", "crane");

function goEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GOBIN: join(cacheDir, "bin"),
    GOMODCACHE: join(cacheDir, "mod"),
    GOCACHE: join(cacheDir, "build"),
    GOPATH: join(cacheDir, "path"),
    // Module files read-only by default would make .cache/ hard to delete; the toolchain on the machine is used.
    GOFLAGS: "-modcacherw",
    GOTOOLCHAIN: "local",
  };
}

/** Builds crane unless the cached binary is there. Returns the path. */
export async function ensureCrane(log: (m: string) => void = (m) => process.stderr.write(m + "\n")): Promise<string> {
  if (existsSync(cranePath)) return cranePath;
  const started = Date.now();
  try {
    await execFileAsync("go", ["install", CRANE_MODULE], { env: goEnv(), cwd: repoRoot, timeout: 600_000, maxBuffer: 16 << 20 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === "ENOENT") throw new Error("the go command is needed to build the test registry (crane) and was not found on PATH");
    throw new Error(`go install ${CRANE_MODULE} failed: ${e.stderr ?? e.message}`);
  }
  log(`built crane (${CRANE_MODULE}) into .cache/go/bin in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return cranePath;
}

export interface LocalRegistry {
  /** `127.0.0.1:<port>` */
  host: string;
  /** Runs crane against it (plain HTTP); resolves with stdout as a Buffer. */
  crane(...args: string[]): Promise<Buffer>;
  stop(): Promise<void>;
}

/** Starts `crane registry serve` on a free loopback port (blobs in memory) and waits until /v2/ answers. */
export async function startRegistry(): Promise<LocalRegistry> {
  const crane = await ensureCrane();
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const child: ChildProcess = spawn(crane, ["registry", "serve", "--address", host], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr!.on("data", (c: Buffer) => (log = (log + c.toString("utf8")).slice(-20_000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const until = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`crane registry serve exited (${child.exitCode}):\n${log}`);
    const ok = await fetch(`http://${host}/v2/`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > until) {
      child.kill("SIGKILL");
      throw new Error(`crane registry serve did not answer on ${host}:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    host,
    crane: async (...args: string[]) =>
      (await execFileAsync(crane, [...args, "--insecure"], { encoding: "buffer", maxBuffer: 64 << 20 })).stdout,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await exited;
      }
    },
  };
}
