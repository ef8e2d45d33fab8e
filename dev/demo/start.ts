/**
 * `npm start`: the demo, end to end. Builds the filter when needed, makes demo certificates, compiles the demo
 * policy, starts the echo upstream and Envoy (the `mtls` config), prints what runs where and two curl commands to
 * paste (one allowed, one denied), then streams a compact access log. Ctrl-C stops everything it started.
 *
 *   npm start [-- --port N --admin-port N --upstream-port N --grpc-upstream-port N --concurrency N]
 *   npm start -- --prepare     # build, certificates, config; start nothing (for `envoy -c envoy/envoy.yaml`)
 *   npm start -- --out-dir DIR # certificates and config in DIR instead of out/demo (tests use a temp dir)
 *   npm start -- --policy FILE # your policy instead of the demo's; edits to it are applied while the demo runs
 *   npm start -- --spire       # identities from SPIRE: a server and an agent of the demo's trust domain, Envoy's
 *                              # certificate over SDS, the clients' SVIDs fetched from the agent (see docs/spire.md)
 *
 * Before it writes anything it checks that its ports are free, so a second `npm start` next to a running demo
 * stops without touching that demo's certificates or config. An existing demo CA (and the certificates made from it
 * with `spiffe-authz cert`) is kept across runs while it is valid for another day; `--new-certs` makes new ones.
 * The filter reaches Envoy through ECDS (out/demo/ecds/spiffe-authz.yaml): a policy change is written there and the
 * running filter swaps its table in place, open connections included.
 */
import { X509Certificate } from "node:crypto";
import { watch } from "node:fs";
import { access, mkdir, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { compileFiles, PolicyError } from "../../src/compiler/index.ts";
import type { CompileResult } from "../../src/compiler/index.ts";
import { findEnvoy, repoRoot } from "../envoy/binary.ts";
import { createPki } from "../../src/envoy/pki.ts";
import { parseAccessLogLine, renderVariant, toYaml } from "../../src/envoy/render.ts";
import type { AccessLogEntry } from "../../src/envoy/render.ts";
import { startEnvoy, writeWatchedFile } from "../envoy/run.ts";
import type { EnvoyHandle } from "../envoy/run.ts";
import { startUpstream } from "../envoy/upstream.ts";
import type { Upstream } from "../envoy/upstream.ts";
import { ensureWasm } from "../envoy/wasm.ts";
import { findSpire } from "../spire/binary.ts";
import {
  compileDemoPolicy, demoClients, demoEcdsName, demoEcdsResponse, demoEnvoySpiffeId, demoOutDir, demoPolicyFile, demoPorts,
  demoTrustDomain, demoVariantOptions,
} from "./config.ts";
import type { DemoPorts } from "./config.ts";
import { startDemoSpire } from "./spire.ts";
import type { DemoSpire } from "./spire.ts";

const usage = `usage: npm start [-- --policy FILE]... [--port N] [--admin-port N] [--upstream-port N] [--grpc-upstream-port N]
                 [--concurrency N] [--log-level LEVEL] [--out-dir DIR] [--prepare | --spire] [--new-certs]`;

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
      spire: { type: "boolean" },
      "out-dir": { type: "string" },
      policy: { type: "string", multiple: true },
      "new-certs": { type: "boolean" },
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

  if (values.prepare && values.spire) throw new UsageError("--prepare and --spire cannot be combined");
  const say = (line: string): void => console.log(line);
  // 0. Nothing is touched while another process holds one of the ports (e.g. a demo already running: its
  // certificates must stay as they are).
  const busy = await busyPorts(ports);
  if (busy.length > 0) {
    throw new PortsInUse(
      busy.map(({ port, flag }) => `port ${port} (${flag}) is in use`).join("; ") +
        "; is the demo already running? stop it (Ctrl-C) or choose free ports with the flags named; nothing was changed",
    );
  }
  // Paths inside the repository are printed relative to it (the curl commands are pasted from there).
  const rel = (p: string): string => {
    const r = relative(repoRoot, p);
    return r.startsWith("..") || isAbsolute(r) ? p : r;
  };
  // npm runs scripts in the package root; a relative --policy means the directory `npm start` was typed in.
  const invokedIn = process.env.INIT_CWD ?? process.cwd();
  const policyFiles = values.policy?.map((f) => resolve(invokedIn, f)) ?? [demoPolicyFile];
  const userPolicy = values.policy !== undefined;
  // Compiled before anything is written: a policy error leaves the previous demo's files alone.
  const compilePolicies = (): CompileResult =>
    userPolicy ? compileFiles(policyFiles) : compileDemoPolicy();
  let table = compilePolicies();
  for (const w of table.warnings) console.error(`${w.file}:${w.line}:${w.col}: warning: ${w.message}`);

  // 1. The filter, certificates (or, with --spire, SPIRE below), the table, the config.
  await ensureWasm((m) => say(m));
  const outDir = resolve(repoRoot, values["out-dir"] ?? demoOutDir);
  const certDir = join(outDir, "certs");
  const spireDir = join(outDir, "spire");
  const ecdsPath = join(outDir, demoEcdsName);
  const configPath = join(outDir, values.spire ? "envoy-spire.yaml" : "envoy.yaml");
  await mkdir(dirname(ecdsPath), { recursive: true });
  await writeWatchedFile(ecdsPath, toYaml(demoEcdsResponse(table.config, { version: table.tableHash }), [
    `Written by npm start from ${policyFiles.join(", ")} (table hash ${table.tableHash}); Envoy reads it through ECDS.`,
  ]));
  /** Envoy's config: certificates from `certDir`, or with `agentSocket` over SDS from that SPIRE agent. */
  const writeConfig = (agentSocket?: string): Promise<void> =>
    writeFile(
      configPath,
      toYaml(
        renderVariant(
          demoVariantOptions("mtls", table.config, {
            ports,
            certDir: rel(certDir),
            ecdsFile: rel(ecdsPath),
            identity: agentSocket === undefined ? "openssl" : "spire",
            agentSocket,
          }),
        ),
        [`Written by npm start (the filter's configuration is in ${rel(ecdsPath)}); paths are relative to the repo root.`],
      ),
    );
  if (!values.spire) {
    const kept = values["new-certs"] ? null : await reusablePki(certDir);
    if (kept === null) await createPki(certDir, { trustDomain: demoTrustDomain, clients: demoClients, days: 30 });
    await writeConfig();
    if (kept !== null) say(`kept the demo certificates in ${rel(certDir)}/ (CA valid until ${kept}; --new-certs makes new ones)`);
  }
  if (values.prepare) {
    say(`prepared: build/release.wasm, certificates in ${rel(certDir)}/, ${rel(configPath)} (table ${table.tableHash})`);
    // No findEnvoy here: docker compose users prepare with this and need no local Envoy.
    say("run Envoy from the repository root: envoy -c envoy/envoy.yaml --file-flush-interval-msec 100");
    return 0;
  }
  // Both are installed (SPIRE built) on first use, before anything starts.
  if (values.spire) await findSpire((line) => say(line));
  await findEnvoy();

  // 2. The upstream and Envoy.
  let upstream: Upstream | undefined;
  let envoy: EnvoyHandle | undefined;
  let spire: DemoSpire | undefined;
  let stopping = false;
  const recentFilterLines = new Map<string, number>();
  const stopAll = async (): Promise<void> => {
    await envoy?.stop();
    await upstream?.close();
    await spire?.stop();
  };
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    say(`\n${signal}: stopping Envoy, the upstream${spire === undefined ? "" : " and SPIRE"}`);
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
  if (values.spire) {
    try {
      spire = await startDemoSpire(spireDir, say);
    } catch (err) {
      await stopAll();
      throw err;
    }
    await writeConfig(rel(spire.agent.socketPath));
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
  const url = `https://localhost:${ports.listener}/orders/42`;
  say("");
  say(`spiffe-authz demo is running (table ${table.tableHash}, ${table.ruleCount} rules from ${policyFiles.join(", ")})`);
  say(`  envoy     https://localhost:${ports.listener}  (mTLS; pid ${envoy.pid}, --concurrency ${concurrency}, config ${rel(configPath)})`);
  say(`  admin     ${envoy.adminUrl}/  (stats: ${envoy.adminUrl}/stats?filter=spiffe_authz)`);
  say(`  upstream  http://127.0.0.1:${upstream.httpPort} (HTTP/1.1), h2c 127.0.0.1:${upstream.grpcPort} (gRPC)`);
  /** A curl command as the demo client `name`, with its openssl certificate or its SVID from SPIRE. */
  let curl: (name: string, target: string) => string;
  if (spire !== undefined) {
    const svids = rel(spire.svidDir);
    say(`  spire     server pid ${spire.server.pid}, agent pid ${spire.agent.pid}; Workload API and SDS on ${rel(spire.agent.socketPath)}`);
    say(`            Envoy = ${demoEnvoySpiffeId} (uid ${spire.envoyWorkload.uid}; certificate and bundle over SDS)`);
    for (const c of spire.clients) say(`            ${c.name} = ${c.spiffeId} (uid ${c.workload.uid})`);
    say(`  SVIDs     fetched from the agent into ${svids}/<app>/ (svid.pem, svid.key, bundle.pem), again every minute`);
    curl = (name, target) =>
      `curl -i --cacert ${svids}/${name}/bundle.pem --cert ${svids}/${name}/svid.pem --key ${svids}/${name}/svid.key ${target}`;
  } else {
    say(`  identities in ${certs}/: ${demoClients.map((c) => `${c.name} = ${c.uri}`).join(", ")}`);
    curl = (name, target) => `curl -i --cacert ${certs}/ca.crt --cert ${certs}/${name}.crt --key ${certs}/${name}.key ${target}`;
  }
  say("");
  if (!userPolicy) {
    say("Paste from the repository root. Allowed (frontend may GET orders):");
    say(`  ${curl("frontend", url)}`);
    say("Denied (rule deny-legacy; 403 with response details in the access log):");
    say(`  ${curl("legacy", url)}`);
  } else {
    say(`Your policy: edits to ${policyFiles.join(", ")} are compiled and applied while the demo runs.`);
    say("Try it from the repository root with a demo identity:");
    say(`  ${curl("frontend", `https://localhost:${ports.listener}/`)}`);
  }
  if (spire === undefined) {
    say("Any other SPIFFE ID: make a client certificate from the demo CA, then curl with it:");
    say(`  npx spiffe-authz cert --id spiffe://${demoTrustDomain}/app/NAME --ca-dir ${certs} --out ${certs}/mine`);
    say(`  curl -i --cacert ${certs}/ca.crt --cert ${certs}/mine/client.crt --key ${certs}/mine/client.key https://localhost:${ports.listener}/`);
  }
  say("");
  say("Access log (time, status, peer, request, response details). Ctrl-C stops everything.");
  const stopWatching = userPolicy
    ? watchPolicies(policyFiles, async () => {
        let next: CompileResult;
        try {
          next = compilePolicies();
        } catch (err) {
          if (err instanceof PolicyError) {
            console.error(`policy not applied (the filter keeps table ${table.tableHash}):\n${err.message}`);
            return;
          }
          throw err;
        }
        if (next.tableHash === table.tableHash) return;
        await writeWatchedFile(ecdsPath, toYaml(demoEcdsResponse(next.config, { version: next.tableHash })));
        table = next;
        say(`applied table ${next.tableHash} (${next.ruleCount} rules) through ECDS; open connections use it from their next request`);
      })
    : () => undefined;

  const { code, signal } = await envoy.exited;
  stopWatching();
  // Ctrl-C in a terminal signals the whole process group, Envoy included, and Envoy exits 0 only when told to
  // stop: that is a normal shutdown, whichever of Envoy's exit and our own SIGINT handler comes first.
  await envoy.stop(); // already exited: only removes its scratch directory
  if (stopping || code === 0) {
    stopping = true;
    await upstream.close();
    await spire?.stop();
    say("stopped");
    return 0;
  }
  await upstream.close();
  await spire?.stop();
  console.error(`spiffe-authz: envoy exited unexpectedly (${signal ?? `exit code ${code}`}); its log:\n${envoy.logs()}`);
  return 1;
}

class PortsInUse extends Error {}

/** The demo's ports that some process already listens on (tried by binding each on 127.0.0.1). */
async function busyPorts(ports: DemoPorts): Promise<{ port: number; flag: string }[]> {
  const named = [
    { port: ports.listener, flag: "--port" },
    { port: ports.admin, flag: "--admin-port" },
    { port: ports.upstreamHttp, flag: "--upstream-port" },
    { port: ports.upstreamGrpc, flag: "--grpc-upstream-port" },
  ];
  const busy: { port: number; flag: string }[] = [];
  for (const entry of named) {
    const free = await new Promise<boolean>((done) => {
      const server = createServer();
      server.once("error", () => done(false));
      server.listen({ port: entry.port, host: "127.0.0.1", exclusive: true }, () => server.close(() => done(true)));
    });
    if (!free) busy.push(entry);
  }
  return busy;
}

/**
 * The expiry date of the demo CA in `certDir` when it and every demo certificate exist and the CA and the server
 * certificate are valid for at least another day; null when new ones are needed.
 */
async function reusablePki(certDir: string): Promise<string | null> {
  try {
    const names = ["ca", "server", ...demoClients.map((c) => c.name)];
    for (const n of names) await access(join(certDir, `${n}.key`));
    const ca = new X509Certificate(await readFile(join(certDir, "ca.crt")));
    const server = new X509Certificate(await readFile(join(certDir, "server.crt")));
    const dayFromNow = Date.now() + 24 * 3600 * 1000;
    if (Date.parse(ca.validTo) < dayFromNow || Date.parse(server.validTo) < dayFromNow) return null;
    for (const c of demoClients) {
      const cert = new X509Certificate(await readFile(join(certDir, `${c.name}.crt`)));
      if (!cert.checkIssued(ca) || Date.parse(cert.validTo) < dayFromNow) return null;
    }
    if (!server.checkIssued(ca)) return null;
    return new Date(Date.parse(ca.validTo)).toISOString().slice(0, 10);
  } catch {
    return null;
  }
}

/** Calls `onChange` (one call at a time, after writes settle) when one of `files` changes. Returns a stop function. */
function watchPolicies(files: string[], onChange: () => Promise<void>): () => void {
  let timer: NodeJS.Timeout | undefined;
  let running = Promise.resolve();
  const trigger = (): void => {
    clearTimeout(timer);
    // Editors write in several steps (truncate, write, rename): act once they are done.
    timer = setTimeout(() => {
      running = running.then(onChange).catch((err: Error) => console.error(`spiffe-authz: ${err.message}`));
    }, 150);
  };
  // The directories are watched (not the files): an editor that saves by renaming replaces the watched inode.
  const watchers = [...new Set(files.map((f) => dirname(resolve(f))))].map((dir) =>
    watch(dir, (_event, name) => {
      if (name !== null && files.some((f) => resolve(f) === join(dir, name.toString()))) trigger();
    }),
  );
  return () => {
    clearTimeout(timer);
    for (const w of watchers) w.close();
  };
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`spiffe-authz: ${err.message}`);
    if (err instanceof UsageError) console.error(usage);
    // Exit codes as the CLI's: 2 for a usage or policy error (the message has file:line:col), 1 otherwise (3 when
    // the ports are taken, so scripts can tell "already running" apart).
    process.exit(err instanceof UsageError || err instanceof PolicyError ? 2 : err instanceof PortsInUse ? 3 : 1);
  },
);
