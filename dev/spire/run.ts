/**
 * Running SPIRE on one machine: a server and an agent on a scratch directory, registration entries, SVIDs fetched
 * from the agent's Workload API. Shared by the SPIRE tests and `npm start -- --spire`.
 *
 * The agent attests workloads with the unix attestor, by the uid of the process calling its socket. A test or the
 * demo running as root gives each workload a uid of its own (`workloadAs`) and runs `spire-agent api fetch` as
 * that uid, so the agent tells the workloads apart exactly as it would on a real host; without root every
 * workload shares this process's uid and picks its SVID by SPIFFE ID from the ones the agent issues to that uid.
 */
import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { chmod, copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../envoy/ports.ts";
import { findSpire } from "./binary.ts";
import type { SpireBinaries } from "./binary.ts";
import { renderAgentConfig, renderServerConfig } from "./config.ts";
import { parseX509SvidResponse } from "./svid.ts";
import type { X509Svid } from "./svid.ts";

/** The process identity a workload calls the agent with: what the unix attestor turns into selectors. */
export interface Workload {
  uid: number;
  gid: number;
}

/** This process's own uid and gid. */
export function currentWorkload(): Workload {
  return { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
}

/** First uid handed to workloads by `workloadAs` when running as root; far above any login user's. */
export const workloadUidBase = 61000;

/**
 * The uid and gid the workload numbered `index` (0, 1, ...) runs as: a uid of its own when this process is root
 * (no account is needed for it: the unix attestor reads the caller's uid from the socket), else this process's.
 */
export function workloadAs(index: number): Workload {
  const self = currentWorkload();
  if (self.uid !== 0) return self;
  return { uid: workloadUidBase + index, gid: workloadUidBase + index };
}

/** The unix attestor's selector for a workload. */
export function uidSelector(workload: Workload): string {
  return `unix:uid:${workload.uid}`;
}

export interface EntrySpec {
  spiffeId: string;
  /** The agent the workload runs under (`SpireAgent.spiffeId`). */
  parentId: string;
  /** `type:value` selectors, e.g. `unix:uid:61000`. */
  selectors: string[];
  /** X509-SVID lifetime in seconds (default: the server's `default_x509_svid_ttl`). */
  x509SvidTtlSeconds?: number;
  /** Trust domains (`spiffe://other.example.com`) whose bundles the workload also receives. */
  federatesWith?: string[];
  /** DNS SANs of the SVID besides its SPIFFE ID (a server that clients such as curl verify by host name). */
  dnsNames?: string[];
}

const maxLogBytes = 2 * 1024 * 1024;

/** Every SPIRE process this process started and has not seen exit: killed if this process exits first. */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const child of running) child.kill("SIGKILL");
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a SPIRE command (as `workload` when that is another uid) and resolves with its exit code and output. */
function runCli(binary: string, args: string[], options: { workload?: Workload; timeoutMs?: number } = {}): Promise<CliResult> {
  const self = currentWorkload();
  const other = options.workload !== undefined && (options.workload.uid !== self.uid || options.workload.gid !== self.gid);
  return new Promise((resolve, reject) => {
    execFile(
      binary,
      args,
      {
        timeout: options.timeoutMs ?? 60_000,
        maxBuffer: 16 * 1024 * 1024,
        // As another uid this process's cwd may not be reachable; "/" always is.
        cwd: other ? "/" : undefined,
        uid: other ? options.workload!.uid : undefined,
        gid: other ? options.workload!.gid : undefined,
      },
      (err, stdout, stderr) => {
        if (err === null) return resolve({ code: 0, stdout, stderr });
        const e = err as NodeJS.ErrnoException & { code?: number | string; killed?: boolean };
        if (typeof e.code === "number") return resolve({ code: e.code, stdout, stderr });
        if (e.killed) return resolve({ code: -1, stdout, stderr: `${stderr}\n(timed out)` });
        reject(err);
      },
    );
  });
}

class LoggedProcess {
  readonly child: ChildProcess;
  private text = "";
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(readonly name: string, binary: string, args: string[], cwd: string) {
    installExitHook();
    this.child = spawn(binary, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    running.add(this.child);
    const append = (chunk: Buffer): void => {
      this.text += chunk.toString("utf8");
      if (this.text.length > maxLogBytes) this.text = this.text.slice(this.text.length - maxLogBytes / 2);
    };
    this.child.stdout!.on("data", append);
    this.child.stderr!.on("data", append);
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => {
        this.exitInfo = { code, signal };
        running.delete(this.child);
        resolve(this.exitInfo);
      });
      this.child.once("error", (err) => {
        this.text += `spawn error: ${err.message}\n`;
        this.exitInfo = { code: -1, signal: null };
        running.delete(this.child);
        resolve(this.exitInfo);
      });
    });
  }

  get hasExited(): boolean {
    return this.exitInfo !== null;
  }

  describeExit(): string {
    return `${this.name} exited (${this.exitInfo?.signal ?? `code ${this.exitInfo?.code}`}); its log:\n${this.text}`;
  }

  logs(): string {
    return this.text;
  }

  async stop(graceMs = 5000): Promise<void> {
    if (this.exitInfo === null) {
      this.child.kill("SIGTERM");
      const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
  }
}

/** Polls `check` every `intervalMs` until it returns true; throws with `proc`'s log when it exits or time is up. */
async function pollUntil(
  what: string,
  proc: LoggedProcess,
  check: () => Promise<boolean>,
  timeoutMs: number,
  intervalMs = 250,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (proc.hasExited) throw new Error(`${proc.describeExit()}`);
    if (await check()) return;
    if (Date.now() > until) throw new Error(`${what} within ${timeoutMs} ms; ${proc.name}'s log:\n${proc.logs()}`);
    await sleep(intervalMs);
  }
}

export interface SpireServerOptions {
  trustDomain: string;
  /** A directory of its own (created; removed by `stop()` only when this function made it). */
  dir?: string;
  /** Default X509-SVID lifetime (SPIRE's default 1h). */
  defaultX509SvidTtl?: string;
  /** Serve this trust domain's bundle for federation (profile https_spiffe) on a free port. */
  bundleEndpoint?: boolean;
  logLevel?: string;
  /** How long to wait for the server to be healthy (default 60 s). */
  startTimeoutMs?: number;
}

export interface SpireServer {
  pid: number;
  trustDomain: string;
  /** `spiffe://<trust domain>` */
  trustDomainId: string;
  /** The server's own SPIFFE ID, which its bundle endpoint presents. */
  serverId: string;
  port: number;
  socketPath: string;
  /** The federation bundle endpoint's port, or null without `bundleEndpoint`. */
  bundleEndpointPort: number | null;
  dir: string;
  /** Runs `spire-server <command...> -socketPath <socket> <args...>` and returns stdout; throws on failure. */
  cli(command: string[], args?: string[]): Promise<string>;
  /** The trust domain's bundle: PEM (X.509 authorities) or SPIFFE bundle JSON (what federation exchanges). */
  bundle(format?: "pem" | "spiffe"): Promise<string>;
  /** A one-time join token for an agent. */
  joinToken(): Promise<string>;
  /** Creates a registration entry and returns its ID. */
  createEntry(entry: EntrySpec): Promise<string>;
  /**
   * Federates with another server: stores its bundle now and keeps it fresh from its bundle endpoint (profile
   * https_spiffe, authenticated by the other server's SVID).
   */
  federateWith(other: SpireServer): Promise<void>;
  logs(): string;
  stop(): Promise<void>;
}

export interface SpireAgentOptions {
  server: SpireServer;
  /** A directory of its own (created; removed by `stop()` only when this function made it). */
  dir?: string;
  logLevel?: string;
  startTimeoutMs?: number;
}

export interface SpireAgent {
  pid: number;
  trustDomain: string;
  /** The agent's SPIFFE ID (`spiffe://<td>/spire/agent/join_token/<token>`): the parent of its workloads' entries. */
  spiffeId: string;
  /** The Workload API socket, which also serves Envoy's SDS. */
  socketPath: string;
  dir: string;
  /** The SVIDs the agent issues to `workload` right now (empty when it has none for it). */
  fetchX509(workload: Workload): Promise<X509Svid[]>;
  /**
   * Waits until the agent issues `spiffeId` to `workload` (a new entry takes a sync or two to arrive) and returns
   * that SVID.
   */
  waitForSvid(spiffeId: string, workload: Workload, options?: { timeoutMs?: number }): Promise<X509Svid>;
  logs(): string;
  stop(): Promise<void>;
}

/** Linux's limit for a Unix socket path (sun_path is 108 bytes with the NUL; SPIRE needs a little slack). */
const maxSocketPathBytes = 100;

function checkSocketPath(path: string): void {
  if (Buffer.byteLength(path) > maxSocketPathBytes) {
    throw new Error(`the socket path "${path}" is longer than a Unix socket path may be (${maxSocketPathBytes} bytes); use a shorter directory`);
  }
}

async function scratchDir(prefix: string, given: string | undefined): Promise<{ dir: string; owned: boolean }> {
  if (given !== undefined) {
    await mkdir(given, { recursive: true });
    return { dir: given, owned: false };
  }
  return { dir: await mkdtemp(join(tmpdir(), `spiffe-authz-${prefix}-`)), owned: true };
}

/**
 * A directory of its own under the OS temp dir for a socket, whatever the state directory: a Unix socket path must
 * stay under about 100 bytes, which a deep repository path may not, and workloads of other uids must be able to
 * reach the agent's socket, which a private directory (a test's temp dir, a home directory) would not let them.
 */
async function socketDir(prefix: string, otherUidsConnect: boolean): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `spiffe-authz-${prefix}-`));
  // The socket itself is world-writable (SPIRE sets 0777 on the agent's); the directory must be searchable.
  if (otherUidsConnect) await chmod(dir, 0o755);
  return dir;
}

/** Starts a SPIRE server and waits until it is healthy. */
export async function startSpireServer(options: SpireServerOptions): Promise<SpireServer> {
  const binaries = await findSpire();
  const { dir, owned } = await scratchDir("spire-server", options.dir);
  const dataDir = join(dir, "data");
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const port = await freePort();
  const bundleEndpointPort = options.bundleEndpoint ? await freePort() : null;
  const sockets = await socketDir("spire-server-socket", false);
  const socketPath = join(sockets, "api.sock");
  checkSocketPath(socketPath);
  const configPath = join(dir, "server.conf");
  await writeFile(
    configPath,
    renderServerConfig({
      trustDomain: options.trustDomain,
      port,
      socketPath,
      dataDir,
      logLevel: options.logLevel,
      defaultX509SvidTtl: options.defaultX509SvidTtl,
      bundleEndpointPort: bundleEndpointPort ?? undefined,
    }),
  );
  const proc = new LoggedProcess(`spire-server (${options.trustDomain})`, binaries.server, ["run", "-config", configPath], dir);
  const stop = async (): Promise<void> => {
    await proc.stop();
    await rm(sockets, { recursive: true, force: true });
    if (owned) await rm(dir, { recursive: true, force: true });
  };
  const cli = async (command: string[], args: string[] = []): Promise<string> => {
    const result = await runCli(binaries.server, [...command, "-socketPath", socketPath, ...args]);
    if (result.code !== 0) {
      throw new Error(`spire-server ${command.join(" ")} failed (exit code ${result.code}): ${(result.stderr || result.stdout).trim()}`);
    }
    return result.stdout;
  };
  try {
    await pollUntil(
      `spire-server (${options.trustDomain}) was not healthy`,
      proc,
      async () => (await runCli(binaries.server, ["healthcheck", "-socketPath", socketPath], { timeoutMs: 10_000 })).code === 0,
      options.startTimeoutMs ?? 60_000,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  const trustDomainId = `spiffe://${options.trustDomain}`;
  const server: SpireServer = {
    pid: proc.child.pid ?? -1,
    trustDomain: options.trustDomain,
    trustDomainId,
    serverId: `${trustDomainId}/spire/server`,
    port,
    socketPath,
    bundleEndpointPort,
    dir,
    cli,
    bundle: (format = "pem") => cli(["bundle", "show"], ["-format", format]),
    async joinToken(): Promise<string> {
      const out = JSON.parse(await cli(["token", "generate"], ["-ttl", "600", "-output", "json"])) as { value?: string };
      if (typeof out.value !== "string") throw new Error(`spire-server token generate printed no token`);
      return out.value;
    },
    async createEntry(entry: EntrySpec): Promise<string> {
      const args = ["-parentID", entry.parentId, "-spiffeID", entry.spiffeId, "-output", "json"];
      for (const selector of entry.selectors) args.push("-selector", selector);
      if (entry.x509SvidTtlSeconds !== undefined) args.push("-x509SVIDTTL", String(entry.x509SvidTtlSeconds));
      for (const td of entry.federatesWith ?? []) args.push("-federatesWith", td);
      for (const name of entry.dnsNames ?? []) args.push("-dns", name);
      const out = JSON.parse(await cli(["entry", "create"], args)) as {
        results?: { status?: { code?: number; message?: string }; entry?: { id?: string } }[];
      };
      const result = out.results?.[0];
      if (result?.status?.code !== 0 || typeof result.entry?.id !== "string") {
        throw new Error(`spire-server entry create "${entry.spiffeId}" failed: ${result?.status?.message ?? JSON.stringify(out)}`);
      }
      return result.entry.id;
    },
    async federateWith(other: SpireServer): Promise<void> {
      if (other.bundleEndpointPort === null) throw new Error(`spire-server "${other.trustDomain}" has no bundle endpoint`);
      const bundlePath = join(dir, `bundle-${other.trustDomain}.json`);
      await writeFile(bundlePath, await other.bundle("spiffe"));
      await cli(["federation", "create"], [
        "-trustDomain", other.trustDomain,
        "-bundleEndpointURL", `https://127.0.0.1:${other.bundleEndpointPort}`,
        "-bundleEndpointProfile", "https_spiffe",
        "-endpointSpiffeID", other.serverId,
        "-trustDomainBundlePath", bundlePath,
        "-trustDomainBundleFormat", "spiffe",
      ]);
    },
    logs: () => proc.logs(),
    stop,
  };
  return server;
}

/**
 * The `spire-agent` a workload of another uid can execute: the one found, or, when that uid cannot reach it (a
 * repository under a private home directory), a copy in `dir` (one that uid can reach).
 */
export async function agentBinaryFor(binaries: SpireBinaries, dir: string, probe: Workload): Promise<string> {
  if (probe.uid === currentWorkload().uid) return binaries.agent;
  try {
    const result = await runCli(binaries.agent, ["--version"], { workload: probe, timeoutMs: 30_000 });
    if (result.code === 0) return binaries.agent;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EACCES") throw err;
  }
  const copy = join(dir, "spire-agent");
  await copyFile(binaries.agent, copy);
  await chmod(copy, 0o755);
  return copy;
}

/** Starts a SPIRE agent attested to `server` with a fresh join token and waits until it is healthy. */
export async function startSpireAgent(options: SpireAgentOptions): Promise<SpireAgent> {
  const { server } = options;
  const binaries = await findSpire();
  const { dir, owned } = await scratchDir("spire-agent", options.dir);
  const dataDir = join(dir, "data");
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const sockets = await socketDir("spire-agent-socket", true);
  const socketPath = join(sockets, "api.sock");
  checkSocketPath(socketPath);
  const bundlePath = join(dir, "bootstrap-bundle.pem");
  await writeFile(bundlePath, await server.bundle("pem"));
  const configPath = join(dir, "agent.conf");
  await writeFile(
    configPath,
    renderAgentConfig({
      trustDomain: server.trustDomain,
      serverPort: server.port,
      socketPath,
      dataDir,
      trustBundlePath: bundlePath,
      logLevel: options.logLevel,
    }),
  );
  const token = await server.joinToken();
  const proc = new LoggedProcess(`spire-agent (${server.trustDomain})`, binaries.agent, ["run", "-config", configPath, "-joinToken", token], dir);
  const stop = async (): Promise<void> => {
    await proc.stop();
    await rm(sockets, { recursive: true, force: true });
    if (owned) await rm(dir, { recursive: true, force: true });
  };
  try {
    await pollUntil(
      `spire-agent (${server.trustDomain}) was not healthy`,
      proc,
      async () => (await runCli(binaries.agent, ["healthcheck", "-socketPath", socketPath], { timeoutMs: 10_000 })).code === 0,
      options.startTimeoutMs ?? 60_000,
    );
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n--- spire-server log ---\n${server.logs()}`);
  }
  const agentBinaries = new Map<number, Promise<string>>();
  const agentBinary = (workload: Workload): Promise<string> => {
    let binary = agentBinaries.get(workload.uid);
    if (binary === undefined) {
      binary = agentBinaryFor(binaries, sockets, workload);
      agentBinaries.set(workload.uid, binary);
    }
    return binary;
  };
  const fetchX509 = async (workload: Workload): Promise<X509Svid[]> => {
    const binary = await agentBinary(workload);
    const result = await runCli(binary, ["api", "fetch", "x509", "-socketPath", socketPath, "-output", "json", "-timeout", "10s"], {
      workload,
      timeoutMs: 30_000,
    });
    if (result.code === 0) return parseX509SvidResponse(result.stdout);
    // The agent answers PermissionDenied "no identity issued" to a workload no entry selects (yet).
    if (/no identity issued/.test(result.stderr)) return [];
    throw new Error(`spire-agent api fetch x509 as uid ${workload.uid} failed (exit code ${result.code}): ${result.stderr.trim()}`);
  };
  return {
    pid: proc.child.pid ?? -1,
    trustDomain: server.trustDomain,
    spiffeId: `spiffe://${server.trustDomain}/spire/agent/join_token/${token}`,
    socketPath,
    dir,
    fetchX509,
    async waitForSvid(spiffeId, workload, waitOptions = {}): Promise<X509Svid> {
      const timeoutMs = waitOptions.timeoutMs ?? 60_000;
      let found: X509Svid | undefined;
      await pollUntil(
        `spire-agent did not issue "${spiffeId}" to uid ${workload.uid}`,
        proc,
        async () => {
          found = (await fetchX509(workload)).find((s) => s.spiffeId === spiffeId);
          return found !== undefined;
        },
        timeoutMs,
        500,
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n--- spire-server log ---\n${server.logs()}`);
      });
      return found!;
    },
    logs: () => proc.logs(),
    stop,
  };
}

/** A server and one agent of a trust domain. */
export interface Spire {
  server: SpireServer;
  agent: SpireAgent;
  /** Both logs (at most the last `lines` lines of each), labelled: what to print when a test fails. */
  logs(lines?: number): string;
  /** Stops the agent, then the server. Safe to call twice. */
  stop(): Promise<void>;
}

export async function startSpire(options: SpireServerOptions & { agentDir?: string }): Promise<Spire> {
  const server = await startSpireServer(options);
  let agent: SpireAgent;
  try {
    agent = await startSpireAgent({ server, dir: options.agentDir, logLevel: options.logLevel, startTimeoutMs: options.startTimeoutMs });
  } catch (err) {
    await server.stop();
    throw err;
  }
  return {
    server,
    agent,
    logs: (lines = Infinity) =>
      `--- spire-server (${server.trustDomain}) log ---\n${lastLines(server.logs(), lines)}\n` +
      `--- spire-agent (${server.trustDomain}) log ---\n${lastLines(agent.logs(), lines)}`,
    async stop(): Promise<void> {
      await agent.stop();
      await server.stop();
    },
  };
}

function lastLines(text: string, lines: number): string {
  return Number.isFinite(lines) ? text.split("\n").slice(-lines).join("\n") : text;
}
