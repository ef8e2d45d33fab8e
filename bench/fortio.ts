/**
 * fortio, Istio's load generator: found or installed, run as the upstream (`fortio server`, its echo handler) and
 * as the client (`fortio load` at a fixed rate over mTLS), its JSON result read back.
 *
 * fortio 1.66.0 is the newest release the Go module proxy here can build (later ones need grol.io/grol, which it
 * refuses). It is installed with `go install` into `.cache/bin` (GOBIN) the first time, with a message.
 */
import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { constants } from "node:fs";
import { access, mkdir, readFile } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";
import { repoRoot } from "../dev/envoy/binary.ts";

const execFileAsync = promisify(execFile);

export const fortioModule = "fortio.org/fortio@v1.66.0";
export const fortioBinDir = join(repoRoot, ".cache", "bin");

async function executable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The fortio binary: `FORTIO_BIN`, else `.cache/bin/fortio`, else `fortio` on PATH, else installed into
 * `.cache/bin` with `go install fortio.org/fortio@v1.66.0` (a message says so).
 */
export async function findFortio(log: (line: string) => void): Promise<string> {
  const fromEnv = process.env.FORTIO_BIN;
  if (fromEnv !== undefined && fromEnv !== "") {
    if (!(await executable(fromEnv))) throw new Error(`FORTIO_BIN "${fromEnv}" is not executable`);
    return fromEnv;
  }
  const local = join(fortioBinDir, "fortio");
  if (await executable(local)) return local;
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir !== "" && (await executable(join(dir, "fortio")))) return join(dir, "fortio");
  }
  log(`fortio not found; installing ${fortioModule} into ${fortioBinDir} with "go install" (first run only)`);
  await mkdir(fortioBinDir, { recursive: true });
  const started = Date.now();
  try {
    await execFileAsync("go", ["install", fortioModule], {
      env: { ...process.env, GOBIN: fortioBinDir },
      timeout: 15 * 60_000,
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === "ENOENT") throw new Error("fortio is needed and the go command to install it was not found; install Go or set FORTIO_BIN");
    throw new Error(`go install ${fortioModule} failed: ${(e.stderr ?? e.message).trim()}`);
  }
  if (!(await executable(local))) throw new Error(`go install ${fortioModule} did not produce ${local}`);
  log(`installed fortio in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return local;
}

export interface FortioServer {
  port: number;
  pid: number;
  stop(): Promise<void>;
}

/** Starts `fortio server` (echo on every path but its UI, which is turned off) on 127.0.0.1:`port`. */
export async function startFortioServer(fortio: string, port: number): Promise<FortioServer> {
  const child = spawn(
    fortio,
    [
      "server",
      "-http-port", `127.0.0.1:${port}`,
      "-grpc-port", "disabled",
      "-redirect-port", "disabled",
      "-ui-path", "",
      "-loglevel", "Warning",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr?.on("data", (c: Buffer) => {
    stderr = (stderr + c.toString("utf8")).slice(-20_000);
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  trackChild(child);
  // Ready once it answers.
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`fortio server exited at start: ${stderr}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/echo`);
      await res.arrayBuffer();
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`fortio server did not answer on port ${port}: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    pid: child.pid ?? -1,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(timer);
    },
  };
}

const children = new Set<ChildProcess>();
let hooked = false;
/** Kills every fortio this process started if it exits without stopping them. */
function trackChild(child: ChildProcess): void {
  children.add(child);
  child.once("exit", () => children.delete(child));
  if (!hooked) {
    hooked = true;
    process.on("exit", () => {
      for (const c of children) c.kill("SIGKILL");
    });
  }
}

export interface LoadOptions {
  url: string;
  /** requests per second in total; 0 = as fast as possible (closed loop) */
  qps: number;
  /** connections (fortio -c) */
  connections: number;
  durationSec: number;
  /** histogram resolution in seconds (fortio -r) */
  resolutionSec: number;
  cert: string;
  key: string;
  cacert: string;
  /** where fortio writes its JSON result */
  jsonPath: string;
  /** extra request headers */
  headers?: string[];
  /** request body (switches fortio to POST) */
  payloadFile?: string;
  /** CPU list for `taskset -c` (keeps the client off Envoy's core), or undefined */
  cpus?: string;
}

export interface LoadResult {
  /** requests/s fortio asked for (0: max) */
  requestedQps: number;
  actualQps: number;
  count: number;
  /** responses by HTTP status ("-1": socket errors) */
  codes: Record<string, number>;
  /** seconds */
  avg: number;
  min: number;
  max: number;
  /** percentile (50, 90, 99, 99.9) -> seconds */
  percentiles: Map<number, number>;
  /** measured wall time of the run in seconds */
  durationSec: number;
}

/** fortio's -p list. */
const percentileList = [50, 90, 99, 99.9];

interface FortioJson {
  RequestedQPS: string | number;
  ActualQPS: number;
  ActualDuration: number;
  RetCodes: Record<string, number>;
  DurationHistogram: {
    Count: number;
    Min: number;
    Max: number;
    Avg: number;
    Percentiles: { Percentile: number; Value: number }[] | null;
  };
}

/** Runs `fortio load` over mTLS and returns its result. Rejects when fortio fails. */
export async function fortioLoad(fortio: string, o: LoadOptions): Promise<LoadResult> {
  const args = [
    "load",
    "-qps", String(o.qps),
    "-c", String(o.connections),
    "-t", `${o.durationSec}s`,
    "-r", String(o.resolutionSec),
    "-p", percentileList.join(","),
    "-cert", o.cert,
    "-key", o.key,
    "-cacert", o.cacert,
    "-json", o.jsonPath,
    "-quiet",
    // A saturated variant (native RBAC with 10k+ principals) answers in seconds: slow is a result, not an error.
    "-timeout", "120s",
    // A 1000 rps run at 16 connections is 62.5 rps per connection: fortio starts the connections spread over
    // the first interval instead of all at once, so they do not fire in lock step.
    "-uniform",
    "-allow-initial-errors",
  ];
  for (const h of o.headers ?? []) args.push("-H", h);
  if (o.payloadFile !== undefined) args.push("-payload-file", o.payloadFile);
  args.push(o.url);
  const [cmd, argv] = o.cpus !== undefined ? ["taskset", ["-c", o.cpus, fortio, ...args]] : [fortio, args];
  try {
    await execFileAsync(cmd, argv, { timeout: (o.durationSec + 180) * 1000, maxBuffer: 64 * 1024 * 1024 });
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`fortio load failed: ${(e.stderr ?? e.message).trim().slice(-2000)}`);
  }
  const j = JSON.parse(await readFile(o.jsonPath, "utf8")) as FortioJson;
  const percentiles = new Map<number, number>();
  for (const p of j.DurationHistogram.Percentiles ?? []) percentiles.set(p.Percentile, p.Value);
  return {
    requestedQps: Number(j.RequestedQPS) || 0,
    actualQps: j.ActualQPS,
    count: j.DurationHistogram.Count,
    codes: j.RetCodes ?? {},
    avg: j.DurationHistogram.Avg,
    min: j.DurationHistogram.Min,
    max: j.DurationHistogram.Max,
    percentiles,
    durationSec: j.ActualDuration / 1e9,
  };
}
