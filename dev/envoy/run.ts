/**
 * Running Envoy: start, wait until ready, read stats and logs, stop. Shared by the integration tests, `npm start`
 * and the benchmarks.
 *
 * Each instance gets its own `--base-id` (the hot-restart shared memory and domain sockets are keyed by it, so two
 * Envoys with the same id on one machine fail to start) and writes its admin address to a file
 * (`--admin-address-path`), so configs may use admin port 0 and never race for it.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { findEnvoy } from "./binary.ts";
import { parseAccessLogLine } from "../../src/envoy/render.ts";
import type { AccessLogEntry } from "../../src/envoy/render.ts";

export interface EnvoyOptions {
  /** `--concurrency`: worker threads (default 1; benchmarks set it on purpose). */
  concurrency?: number;
  /** `--log-level` (default `info`, which includes the filter's configuration messages). */
  logLevel?: string;
  /** `--component-log-level`, e.g. `wasm:debug`. */
  componentLogLevel?: string;
  /** `--base-id` (default: unique per process and instance). */
  baseId?: number;
  /** Envoy's working directory: relative paths in the config resolve against it (default: this process's). */
  cwd?: string;
  /**
   * `--file-flush-interval-msec` (default 100). Envoy buffers access logs, stdout included, and flushes every
   * 10 s by default: too late for a test or a person watching the log.
   */
  flushIntervalMs?: number;
  /** More command-line arguments. */
  extraArgs?: string[];
  /** Called with each line Envoy writes to stdout (the access log). */
  onStdoutLine?: (line: string) => void;
  /** Called with each line Envoy writes to stderr (its own log). */
  onStderrLine?: (line: string) => void;
  /** How long to wait for the admin address (default 30 s). */
  startTimeoutMs?: number;
}

export interface EnvoyHandle {
  pid: number;
  adminPort: number;
  /** `http://127.0.0.1:<adminPort>` */
  adminUrl: string;
  /** Resolves when the admin `/ready` endpoint answers `LIVE`; rejects when Envoy exits or the time is up. */
  ready(timeoutMs?: number): Promise<void>;
  /** Counters and gauges from admin `/stats` (histograms are left out), by full name. */
  stats(filter?: string): Promise<Map<string, number>>;
  /** One counter or gauge, undefined when Envoy does not have it (yet). */
  stat(name: string): Promise<number | undefined>;
  /** GET an admin path, e.g. `/config_dump`; returns the body (throws on a non-2xx status). */
  admin(path: string): Promise<string>;
  /** Envoy's own log (stderr), the last few megabytes. */
  logs(): string;
  /** Everything written to stdout (the access log). */
  stdout(): string;
  /** The access log lines parsed so far (lines of another format are skipped). */
  accessLog(): AccessLogEntry[];
  /** Waits until an access log line satisfies `predicate` and returns it. */
  waitForAccessLog(predicate: (entry: AccessLogEntry) => boolean, timeoutMs?: number): Promise<AccessLogEntry>;
  /** Resolves with the exit code or signal once the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after `graceMs` (default 5 s); resolves once the process is gone. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

const maxLogBytes = 4 * 1024 * 1024;
let instanceCounter = 0;

/**
 * Every Envoy this process started and has not seen exit, with its scratch directory: killed (and the directory
 * removed) if this process exits without stopping them, so a crashed test run leaves no Envoy behind.
 */
const running = new Map<ChildProcess, string>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const [child, workDir] of running) {
      child.kill("SIGKILL");
      rmSync(workDir, { recursive: true, force: true });
    }
  });
}

function uniqueBaseId(): number {
  // Distinct per process (pid) and per instance within it; Envoy takes a uint32.
  return ((process.pid % 100_000) * 1000 + (instanceCounter++ % 1000)) % 4_000_000_000;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function lineSplitter(onLine: (line: string) => void): (chunk: Buffer) => void {
  let pending = "";
  return (chunk) => {
    pending += chunk.toString("utf8");
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      onLine(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
    }
  };
}

/** Parses admin `/stats` text (`name: value` lines); histogram lines do not have an integer value and are skipped. */
export function parseStats(text: string): Map<string, number> {
  const stats = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^(\S+): (\d+)$/.exec(line);
    if (m !== null) stats.set(m[1], Number(m[2]));
  }
  return stats;
}

/**
 * Starts Envoy on `configPath` and resolves once its admin endpoint is bound (call `ready()` to wait for the
 * listeners). Rejects, with Envoy's log, when Envoy exits first.
 */
export async function startEnvoy(configPath: string, options: EnvoyOptions = {}): Promise<EnvoyHandle> {
  const envoy = await findEnvoy();
  const workDir = await mkdtemp(join(tmpdir(), "spiffe-authz-envoy-"));
  const adminAddressPath = join(workDir, "admin-address");
  const args = [
    "-c", configPath,
    "--concurrency", String(options.concurrency ?? 1),
    "--log-level", options.logLevel ?? "info",
    "--base-id", String(options.baseId ?? uniqueBaseId()),
    "--admin-address-path", adminAddressPath,
    "--file-flush-interval-msec", String(options.flushIntervalMs ?? 100),
  ];
  if (options.componentLogLevel !== undefined) args.push("--component-log-level", options.componentLogLevel);
  args.push(...(options.extraArgs ?? []));

  installExitHook();
  const child = spawn(envoy, args, { cwd: options.cwd, stdio: ["ignore", "pipe", "pipe"] });
  running.set(child, workDir);
  let stderrText = "";
  let stdoutText = "";
  const entries: AccessLogEntry[] = [];
  child.stderr.on(
    "data",
    lineSplitter((line) => {
      stderrText += line + "\n";
      if (stderrText.length > maxLogBytes) stderrText = stderrText.slice(stderrText.length - maxLogBytes / 2);
      options.onStderrLine?.(line);
    }),
  );
  child.stdout.on(
    "data",
    lineSplitter((line) => {
      stdoutText += line + "\n";
      if (stdoutText.length > maxLogBytes) stdoutText = stdoutText.slice(stdoutText.length - maxLogBytes / 2);
      const entry = parseAccessLogLine(line);
      if (entry !== null) entries.push(entry);
      options.onStdoutLine?.(line);
    }),
  );

  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => {
      exitInfo = { code, signal };
      running.delete(child);
      resolve(exitInfo);
    });
    child.once("error", (err) => {
      stderrText += `spawn error: ${err.message}\n`;
      exitInfo = { code: -1, signal: null };
      running.delete(child);
      resolve(exitInfo);
    });
  });
  // Resolves once the process is gone and its scratch directory removed.
  const cleanedUp = exited.then(() => rm(workDir, { recursive: true, force: true }));

  const describeExit = (): string =>
    `envoy exited (${exitInfo?.signal ?? `code ${exitInfo?.code}`}) before it was ready; its log:\n${stderrText}`;

  const stop = async (graceMs = 5000): Promise<void> => {
    if (exitInfo === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    }
    await cleanedUp;
  };

  // Wait for the admin address file (written once the admin listener is bound).
  const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
  let adminPort = 0;
  for (;;) {
    if (exitInfo !== null) throw new Error(describeExit());
    const text = await readFile(adminAddressPath, "utf8").catch(() => "");
    const m = /:(\d+)\s*$/.exec(text);
    if (m !== null) {
      adminPort = Number(m[1]);
      break;
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`envoy did not bind its admin address within the time limit; its log:\n${stderrText}`);
    }
    await sleep(25);
  }
  const adminUrl = `http://127.0.0.1:${adminPort}`;

  const admin = async (path: string): Promise<string> => {
    const res = await fetch(adminUrl + path);
    const body = await res.text();
    if (!res.ok) throw new Error(`admin "${path}" answered ${res.status}: ${body.trim()}`);
    return body;
  };

  const stats = async (filter?: string): Promise<Map<string, number>> => {
    const query = filter === undefined ? "" : `?filter=${encodeURIComponent(filter)}`;
    return parseStats(await admin(`/stats${query}`));
  };

  return {
    pid: child.pid ?? -1,
    adminPort,
    adminUrl,
    exited,
    async ready(timeoutMs = 30_000): Promise<void> {
      const until = Date.now() + timeoutMs;
      for (;;) {
        if (exitInfo !== null) throw new Error(describeExit());
        try {
          const res = await fetch(`${adminUrl}/ready`);
          if ((await res.text()).trim() === "LIVE" && res.ok) return;
        } catch {
          // Admin not answering yet.
        }
        if (Date.now() > until) throw new Error(`envoy was not ready within ${timeoutMs} ms; its log:\n${stderrText}`);
        await sleep(50);
      }
    },
    stats,
    async stat(name: string): Promise<number | undefined> {
      // The admin filter is a regex: anchor and escape the name so `a.b` does not also match `a.b.c` or `axb`.
      const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      return (await stats(`^${escaped}$`)).get(name);
    },
    admin,
    logs: () => stderrText,
    stdout: () => stdoutText,
    accessLog: () => [...entries],
    async waitForAccessLog(predicate, timeoutMs = 5000): Promise<AccessLogEntry> {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const hit = entries.find(predicate);
        if (hit !== undefined) return hit;
        if (Date.now() > until) {
          throw new Error(`no matching access log line within ${timeoutMs} ms; access log:\n${stdoutText}`);
        }
        await sleep(20);
      }
    },
    stop,
  };
}

/**
 * Replaces a watched xDS file (LDS or ECDS) atomically: writes a temporary file in the same directory, then renames
 * it over `path`. Envoy's path_config_source with watched_directory reloads on the rename (a write in place could be
 * read half-written).
 */
export async function writeWatchedFile(path: string, content: string): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.${++tempCounter}.tmp`);
  await writeFile(temp, content);
  await rename(temp, path);
}
let tempCounter = 0;

/** {@link writeWatchedFile} for an LDS file. */
export const writeLdsFile = writeWatchedFile;

export interface ValidationResult {
  ok: boolean;
  /** Envoy's output (its log and the final verdict line). */
  output: string;
}

/**
 * `envoy --mode validate -c configPath`: parses the config and builds every listener, cluster and filter without
 * serving. For the wasm filter that includes loading the module and calling its onConfigure (Envoy 1.40 configures
 * a canary VM), so a table the filter rejects fails validation too.
 */
export async function validateEnvoyConfig(configPath: string, options: { cwd?: string } = {}): Promise<ValidationResult> {
  const envoy = await findEnvoy();
  return new Promise((resolve, reject) => {
    const child = spawn(envoy, ["--mode", "validate", "-c", configPath, "--log-level", "warn"], {
      cwd: options.cwd,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (c: Buffer) => (output += c.toString("utf8")));
    child.stderr.on("data", (c: Buffer) => (output += c.toString("utf8")));
    child.once("error", reject);
    child.once("exit", (code) => resolve({ ok: code === 0, output }));
  });
}
