/**
 * `npm start`: the demo, end to end. Builds the filter when needed, makes demo certificates, compiles the demo
 * policy, starts the echo upstream and Envoy (the `mtls` config), prints what runs where and two curl commands to
 * paste (one allowed, one denied), then streams a compact access log. Ctrl-C stops everything it started.
 *
 *   npm start [-- --port N --admin-port N --upstream-port N --grpc-upstream-port N --concurrency N]
 *   npm start -- --prepare     # build, certificates, config; start nothing (for `envoy -c envoy/envoy.yaml`)
 *   npm start -- --out-dir DIR # certificates and config in DIR instead of out/demo (tests use a temp dir)
 */
import { mkdir, writeFile } from "node:fs/promises";
import { isAbsolute, join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { PolicyError } from "../compiler/index.ts";
import { findEnvoy, repoRoot } from "../envoy/binary.ts";
import { createPki } from "../envoy/pki.ts";
import { parseAccessLogLine, renderVariant, toYaml } from "../envoy/render.ts";
import type { AccessLogEntry } from "../envoy/render.ts";
import { startEnvoy } from "../envoy/run.ts";
import type { EnvoyHandle } from "../envoy/run.ts";
import { startUpstream } from "../envoy/upstream.ts";
import type { Upstream } from "../envoy/upstream.ts";
import { ensureWasm } from "../envoy/wasm.ts";
import { compileDemoPolicy, demoClients, demoOutDir, demoPolicyFile, demoPorts, demoTrustDomain, demoVariantOptions } from "./config.ts";
import type { DemoPorts } from "./config.ts";

const usage = `usage: npm start [-- --port N] [--admin-port N] [--upstream-port N] [--grpc-upstream-port N]
                 [--concurrency N] [--log-level LEVEL] [--out-dir DIR] [--prepare]`;

function parsePort(value: string | undefined, fallback: number, flag: string): number {
  if (value === undefined) return fallback;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`${flag} "${value}" is not a port number`);
  return port;
}

class UsageError extends Error {}

function time(entry: AccessLogEntry): string {
  // 2026-11-28T16:42:43.458Z -> 16:42:43.458
  return entry.start.slice(11, 23);
}

/** One short line per request: when, status, who, what, why. */
function compactAccessLine(entry: AccessLogEntry): string {
  const who = entry.peer ?? "(no client certificate)";
  const grpc = entry.grpcStatus === null ? "" : ` grpc-status=${entry.grpcStatus}`;
  return `${time(entry)}  ${entry.status}  ${who}  ${entry.method} ${entry.path}  ${entry.details}${grpc}`;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      port: { type: "string" },
      "admin-port": { type: "string" },
      "upstream-port": { type: "string" },
      "grpc-upstream-port": { type: "string" },
      concurrency: { type: "string" },
      "log-level": { type: "string" },
      prepare: { type: "boolean" },
      "out-dir": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const ports: DemoPorts = {
    listener: parsePort(values.port, demoPorts.listener, "--port"),
    admin: parsePort(values["admin-port"], demoPorts.admin, "--admin-port"),
    upstreamHttp: parsePort(values["upstream-port"], demoPorts.upstreamHttp, "--upstream-port"),
    upstreamGrpc: parsePort(values["grpc-upstream-port"], demoPorts.upstreamGrpc, "--grpc-upstream-port"),
  };
  const concurrency = values.concurrency === undefined ? 1 : Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new UsageError(`--concurrency "${values.concurrency}" is not a positive integer`);
  }

  const say = (line: string): void => console.log(line);
  // 1. The filter, certificates, the table, the config.
  await ensureWasm((m) => say(m));
  // Paths inside the repository are printed relative to it (the curl commands are pasted from there).
  const outDir = resolve(repoRoot, values["out-dir"] ?? demoOutDir);
  const rel = (p: string): string => {
    const r = relative(repoRoot, p);
    return r.startsWith("..") || isAbsolute(r) ? p : r;
  };
  const certDir = join(outDir, "certs");
  await createPki(certDir, { trustDomain: demoTrustDomain, clients: demoClients, days: 30 });
  const table = compileDemoPolicy();
  const configPath = join(outDir, "envoy.yaml");
  await mkdir(outDir, { recursive: true });
  await writeFile(
    configPath,
    toYaml(renderVariant(demoVariantOptions("mtls", table.config, { ports, certDir: rel(certDir) })), [
      `Written by npm start from ${demoPolicyFile} (table hash ${table.tableHash}); paths are relative to the repo root.`,
    ]),
  );
  if (values.prepare) {
    say(`prepared: build/release.wasm, certificates in ${rel(certDir)}/, ${rel(configPath)} (table ${table.tableHash})`);
    // No findEnvoy here: docker compose users prepare with this and need no local Envoy.
    say("run Envoy from the repository root: envoy -c envoy/envoy.yaml --file-flush-interval-msec 100");
    return 0;
  }
  await findEnvoy(); // installs it on first use, before anything else starts

  // 2. The upstream and Envoy.
  let upstream: Upstream | undefined;
  let envoy: EnvoyHandle | undefined;
  let stopping = false;
  const recentFilterLines = new Map<string, number>();
  const stopAll = async (): Promise<void> => {
    await envoy?.stop();
    await upstream?.close();
  };
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    say(`\n${signal}: stopping Envoy and the upstream`);
    if (envoy === undefined) {
      // Still starting: nothing to wait for below. (An Envoy being spawned right now is killed by run.ts's exit
      // hook.)
      stopAll().finally(() => process.exit(0));
      return;
    }
    // Envoy's exit (awaited at the end of main) ends the demo; the upstream is closed there.
    void envoy.stop();
  };
  process.on("SIGINT", () => shutdown("SIGINT"));
  process.on("SIGTERM", () => shutdown("SIGTERM"));

  try {
    upstream = await startUpstream({ httpPort: ports.upstreamHttp, grpcPort: ports.upstreamGrpc });
  } catch (err) {
    throw new Error(`${(err as Error).message} (choose other ports with --upstream-port and --grpc-upstream-port)`);
  }
  try {
    envoy = await startEnvoy(configPath, {
      cwd: repoRoot,
      concurrency,
      logLevel: values["log-level"] ?? "info",
      onStdoutLine: (line) => {
        const entry = parseAccessLogLine(line);
        console.log(entry === null ? line : compactAccessLine(entry));
      },
      onStderrLine: (line) => {
        if (stopping || /caught (ENVOY_)?SIG/.test(line)) return;
        // The filter's own log lines (configuration loaded or rejected) come once per VM (canary, main thread,
        // each worker): show each message once, without Envoy's prefix.
        const wasm = /\]\[(\w+)\]\[wasm\] \[[^\]]+\] wasm log \S+ \S+: (.*)$/.exec(line);
        if (wasm !== null) {
          const [, level, message] = wasm;
          const now = Date.now();
          if ((recentFilterLines.get(message) ?? 0) > now - 5000) return;
          recentFilterLines.set(message, now);
          console.error(`filter (${level}): ${message}`);
          return;
        }
        // Envoy's info-level chatter stays out of the way; warnings and errors are shown.
        if (/\]\[(warning|error|critical)\]/.test(line)) console.error(line);
      },
    });
    await envoy.ready();
  } catch (err) {
    await stopAll();
    throw new Error(`${(err as Error).message}\n(is port ${ports.listener} or ${ports.admin} in use? see --port and --admin-port)`);
  }

  const certs = rel(certDir);
  const client = (name: string): string => `--cert ${certs}/${name}.crt --key ${certs}/${name}.key`;
  const url = `https://localhost:${ports.listener}/orders/42`;
  say("");
  say(`spiffe-authz demo is running (table ${table.tableHash}, ${table.ruleCount} rules from ${demoPolicyFile})`);
  say(`  envoy     https://localhost:${ports.listener}  (mTLS; pid ${envoy.pid}, --concurrency ${concurrency}, config ${rel(configPath)})`);
  say(`  admin     ${envoy.adminUrl}/  (stats: ${envoy.adminUrl}/stats?filter=spiffe_authz)`);
  say(`  upstream  http://127.0.0.1:${upstream.httpPort} (HTTP/1.1), h2c 127.0.0.1:${upstream.grpcPort} (gRPC)`);
  say(`  identities in ${certs}/: ${demoClients.map((c) => `${c.name} = ${c.uri}`).join(", ")}`);
  say("");
  say("Paste from the repository root. Allowed (frontend may GET orders):");
  say(`  curl -i --cacert ${certs}/ca.crt ${client("frontend")} ${url}`);
  say("Denied (rule deny-legacy; 403 with response details in the access log):");
  say(`  curl -i --cacert ${certs}/ca.crt ${client("legacy")} ${url}`);
  say("");
  say("Access log (time, status, peer, request, response details). Ctrl-C stops everything.");

  const { code, signal } = await envoy.exited;
  // Ctrl-C in a terminal signals the whole process group, Envoy included, and Envoy exits 0 only when told to
  // stop: that is a normal shutdown, whichever of Envoy's exit and our own SIGINT handler comes first.
  await envoy.stop(); // already exited: only removes its scratch directory
  if (stopping || code === 0) {
    stopping = true;
    await upstream.close();
    say("stopped");
    return 0;
  }
  await upstream.close();
  console.error(`spiffe-authz: envoy exited unexpectedly (${signal ?? `exit code ${code}`}); its log:\n${envoy.logs()}`);
  return 1;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`spiffe-authz: ${err.message}`);
    if (err instanceof UsageError) console.error(usage);
    // Exit codes as the CLI's: 2 for a usage or policy error (the message has file:line:col), 1 otherwise.
    process.exit(err instanceof UsageError || err instanceof PolicyError ? 2 : 1);
  },
);
