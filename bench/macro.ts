/**
 * The macro benchmark: real Envoy, real mTLS, fortio as upstream and as load generator, and for the OPA variant the
 * external authorizer beside Envoy.
 *
 * Every variant runs in the same Envoy binary, with the same listener and upstream, started fresh for each run (so
 * no run inherits another's heap) and warmed up before it is measured. Three passes:
 *
 * 1. Capacity, one variant at a time: its maximum sustainable rate on one Envoy worker (`findCapacity`). A rate is
 *    sustained when every request succeeds, fortio achieves at least 98% of it (of what it achieves when nothing is
 *    slow: `expectedRate`), and the median latency stays within twice the variant's own median at a light load
 *    (beyond that, requests wait for each other: the worker is saturated and latency is queueing).
 * 2. Latency, in interleaved rounds (A B C, A B C, ...), so the machine's drift hits every variant alike: each
 *    variant at the knee rate (1000 rps, Istio's setting) when it sustains it, else, in rounds of its own after the
 *    others, at a rate it does sustain (half its maximum, from a fixed ladder), with the baseline measured at that
 *    same rate. Added latency is the median over rounds of the difference with the baseline of the same round and
 *    rate. No latency is ever reported at a rate the variant cannot sustain.
 * 3. Two workers (`--concurrency 2`) for a few variants: capacity and memory again.
 */
import { readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { createPki, type Pki } from "../src/envoy/pki.ts";
import { freePort } from "../dev/envoy/ports.ts";
import { renderStaticBootstrap } from "../src/envoy/render.ts";
import { startEnvoy, type EnvoyHandle } from "../dev/envoy/run.ts";
import { findFortio, fortioLoad, startFortioServer, type FortioServer, type LoadResult } from "./fortio.ts";
import { startOpaAuthz, writeOpaData, type OpaProcess } from "./opa.ts";
import { cpuSeconds, memoryUse } from "./proc.ts";
import { median, round } from "./stats.ts";
import { abacClientId, benchClientId, benchTable, benchTrustDomain, updateProbeId } from "./tables.ts";
import { deciding, type VariantSpec } from "./variants.ts";

const execFileAsync = promisify(execFile);

/** `knee`: at the common rate; `own`: a variant that cannot sustain it, at a rate it sustains. */
export type Phase = "knee" | "own";

export interface MacroOptions {
  variants: VariantSpec[];
  /** interleaved rounds of the variants that sustain the knee rate */
  rounds: number;
  /** rounds of the variants that do not (their added latency is milliseconds to seconds; one round shows it) */
  lastRounds: number;
  /** Envoy --concurrency of the capacity and latency passes */
  concurrency: number;
  /** variants measured again with `--concurrency 2` (capacity and memory); empty: no such pass */
  twoWorkers: string[];
  /** fortio -c */
  connections: number;
  /** the common latency rate */
  kneeRps: number;
  durationSec: number;
  warmupSec: number;
  /** one capacity step (closed loop, light load, each bisection step), seconds */
  stepSec: number;
  /** bisection steps after the first guess at 90% of the closed-loop rate */
  steps: number;
  /** fortio -r, seconds */
  resolutionSec: number;
  workDir: string;
  wasmPath: string;
  /** the OPA authorizer binary (needed when a variant has an authorizer) */
  opaBinary?: string;
  /** pin Envoy's threads to these CPUs and fortio (client and server) and the authorizer to the others */
  pin?: { envoy: string; load: string };
  log: (line: string) => void;
}

export interface RunRecord {
  variant: string;
  round: number;
  phase: Phase;
  concurrency: number;
  /** fortio -c (fewer than configured at low rates: `connectionsFor`) */
  connections: number;
  requested_rps: number;
  actual_rps: number;
  count: number;
  /** responses other than 200, and socket errors */
  errors: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  p999_us: number;
  avg_us: number;
  max_us: number;
  /** Envoy's CPU over the run */
  cpu_s: number;
  cpu_s_per_1k: number;
  /** the external authorizer's CPU over the run (0 without one) */
  authorizer_cpu_s: number;
  authorizer_cpu_s_per_1k: number;
  rss_mb: number;
  hwm_mb: number;
  authorizer_rss_mb: number | null;
  /** from spawn to the admin endpoint answering LIVE (after the authorizer serves) */
  startup_ms: number;
}

export interface CapacityStep {
  rps: number;
  actual_rps: number;
  p50_us: number;
  p99_us: number;
  errors: number;
  /** Envoy's CPU per request, µs */
  cpu_us: number;
  /** the authorizer's CPU per request, µs (0 without one) */
  authorizer_cpu_us: number;
  sustained: boolean;
}

export interface CapacityRecord {
  variant: string;
  concurrency: number;
  /** fortio as fast as it can (closed loop, `-qps 0`): an upper bound */
  closed_loop_rps: number;
  /** the light load the latency criterion is relative to, and the median there */
  light_rps: number;
  light_p50_us: number;
  /** the highest rate sustained (0: not even the light load) */
  max_rps: number;
  steps: CapacityStep[];
  rss_mb: number;
  hwm_mb: number;
  authorizer_rss_mb: number | null;
  startup_ms: number;
}

export interface MacroResult {
  capacity: CapacityRecord[];
  runs: RunRecord[];
  commandLines: { fortio: string };
}

const us = (s: number | undefined): number => round((s ?? NaN) * 1e6, 1);

/** Rates for the variants that cannot sustain the knee rate: the largest at most half their maximum. */
const ownRateLadder = [500, 200, 100, 50, 20, 10, 5, 2, 1, 0.5];

/** The rate a variant's latency is measured at: the knee rate when sustained, else from the ladder. */
export function latencyRate(maxRps: number, kneeRps: number): { phase: Phase; rps: number } {
  if (maxRps >= kneeRps) return { phase: "knee", rps: kneeRps };
  return { phase: "own", rps: ownRateLadder.find((r) => r <= maxRps / 2) ?? ownRateLadder[ownRateLadder.length - 1] };
}

/** 3 significant digits (2 below 100 rps): the precision a few seconds of load can tell apart. */
function roundRate(x: number): number {
  return x <= 0 ? 0 : Number(x.toPrecision(x >= 100 ? 3 : 2));
}

/**
 * fortio connections for a fixed rate: the configured number, fewer below 10 requests per second per connection
 * (a connection sends its first request up to one interval after the start, so a slow connection would spend a
 * good part of a short run waiting for it).
 */
export function connectionsFor(rps: number, max: number): number {
  return rps <= 0 ? max : Math.max(1, Math.min(max, Math.floor(rps / 10)));
}

/**
 * The rate fortio achieves at `rps` for `durationSec` when nothing is slow: with -uniform each connection starts up
 * to one interval late, so a run delivers about one interval's worth of requests per connection less (measured:
 * 994.7 of 1000 rps over 3 s with 16 connections, 142 of 152 over 1.5 s).
 */
export function expectedRate(rps: number, connections: number, durationSec: number): number {
  return Math.max(rps / 2, rps - connections / durationSec);
}

/** Whether a fixed-rate run sustained its rate (see the file comment). */
export function sustained(
  r: { rps: number; actual_rps: number; errors: number; p50_us: number }, lightP50Us: number, connections: number, durationSec: number,
): boolean {
  return r.errors === 0 && r.actual_rps >= 0.98 * expectedRate(r.rps, connections, durationSec) && r.p50_us <= 2 * lightP50Us;
}

interface Probe {
  client: string;
  method: string;
  path: string;
  body?: string;
  contentType?: string;
}

/** One HTTPS request with a client certificate; resolves with the status. */
function send(port: number, pki: Pki, p: Probe): Promise<number> {
  const c = pki.clients[p.client];
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: "127.0.0.1",
        port,
        method: p.method,
        path: p.path,
        cert: readFileSync(c.cert),
        key: readFileSync(c.key),
        ca: readFileSync(pki.ca.cert),
        agent: false,
        headers: p.contentType !== undefined ? { "content-type": p.contentType } : {},
        timeout: 30_000,
      },
      (res) => {
        res.resume();
        res.once("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.once("error", reject);
    req.once("timeout", () => req.destroy(new Error("probe timed out")));
    req.end(p.body);
  });
}

/**
 * The requests every deciding variant must answer correctly before it is measured: the benchmark request (200),
 * HEAD (a rule on GET covers it) and a query string (200), and 403 for a caller no rule names, another method,
 * another path, and, for the ABAC row, a body naming another app.
 */
export function decisionChecks(v: VariantSpec): { probe: Probe; want: number; what: string }[] {
  const body = v.body === undefined ? {} : { body: v.body.text, contentType: v.body.contentType };
  const ok: Probe = { client: v.client, method: v.method, path: v.path, ...body };
  const checks = [{ probe: ok, want: 200, what: "the benchmark request" }];
  if (!deciding.has(v.family)) return checks;
  const other = v.method === "GET" ? "DELETE" : "GET";
  checks.push(
    { probe: { ...ok, client: "bench-stranger" }, want: 403, what: "a caller no rule names" },
    { probe: { client: v.client, method: other, path: v.path }, want: 403, what: `${other} (no rule allows it)` },
    { probe: { ...ok, path: "/forbidden" }, want: 403, what: "a path no rule allows" },
    { probe: { ...ok, path: `${v.path}?q=1` }, want: 200, what: "the benchmark request with a query string" },
  );
  if (v.method === "GET") checks.push({ probe: { ...ok, method: "HEAD" }, want: 200, what: "HEAD (a rule on GET covers it)" });
  if (v.deniedBody !== undefined) checks.push({ probe: { ...ok, body: v.deniedBody }, want: 403, what: "a body the condition rejects" });
  return checks;
}

/** What the passes share: the PKI, the upstream, the ports, fortio. */
export interface Bench {
  pki: Pki;
  fortio: string;
  server: FortioServer;
  upstreamPort: number;
  listenerPort: number;
  /** fortio load against the listener, as `v`'s client */
  load(v: VariantSpec, qps: number, durationSec: number): Promise<LoadResult>;
  close(): Promise<void>;
}

export async function setUpBench(o: Pick<MacroOptions, "workDir" | "connections" | "resolutionSec" | "pin" | "log">): Promise<Bench> {
  const fortio = await findFortio(o.log);
  await mkdir(o.workDir, { recursive: true });
  const pki = await createPki(join(o.workDir, "certs"), {
    trustDomain: benchTrustDomain,
    clients: [
      { name: "bench-client", uri: benchClientId },
      { name: "bench-stranger", uri: `spiffe://${benchTrustDomain}/ns/bench/sa/stranger` },
      { name: "abac-client", uri: abacClientId },
      { name: "update-probe", uri: updateProbeId },
    ],
  });
  const upstreamPort = await freePort();
  let listenerPort = await freePort();
  while (listenerPort === upstreamPort) listenerPort = await freePort();
  const server = await startFortioServer(fortio, upstreamPort);
  if (o.pin !== undefined) await pinProcess(server.pid, o.pin.load);
  const payloads = new Map<string, string>();
  let counter = 0;
  return {
    pki, fortio, server, upstreamPort, listenerPort,
    async load(v, qps, durationSec) {
      const c = pki.clients[v.client];
      let payloadFile: string | undefined;
      if (v.body !== undefined) {
        payloadFile = payloads.get(v.body.text);
        if (payloadFile === undefined) {
          payloadFile = join(o.workDir, `body-${payloads.size}.json`);
          await writeFile(payloadFile, v.body.text);
          payloads.set(v.body.text, payloadFile);
        }
      }
      return fortioLoad(fortio, {
        url: `https://127.0.0.1:${listenerPort}${v.path}`,
        qps,
        connections: connectionsFor(qps, o.connections),
        durationSec,
        resolutionSec: o.resolutionSec,
        cert: c.cert,
        key: c.key,
        cacert: pki.ca.cert,
        jsonPath: join(o.workDir, `fortio-${++counter % 50}.json`),
        headers: v.body !== undefined ? [`content-type: ${v.body.contentType}`] : [],
        payloadFile,
        cpus: o.pin?.load,
      });
    },
    close: () => server.stop(),
  };
}

interface Measured {
  res: LoadResult;
  /** Envoy's and the authorizer's CPU seconds over the run */
  cpu: number;
  authCpu: number;
}

interface Running {
  envoy: EnvoyHandle;
  authorizer: OpaProcess | null;
  startupMs: number;
  stop(): Promise<void>;
}

/** Runs the macro benchmark: capacity, latency rounds, two workers. */
export async function runMacro(o: MacroOptions, bench: Bench): Promise<MacroResult> {
  const log = o.log;
  const { pki } = bench;
  const authorizerPort = await freePort();
  const configs = new Map<string, string>();

  /** The Envoy config of `v` (JSON: a 100k-policy RBAC config is tens of MB, which YAML renders slowly). */
  const configOf = async (v: VariantSpec): Promise<string> => {
    let path = configs.get(v.name);
    if (path !== undefined) return path;
    const ctx = { wasmPath: o.wasmPath, authorizerPort };
    path = join(o.workDir, `${v.name}.json`);
    const bootstrap = renderStaticBootstrap({
      admin: { port: 0 },
      upstream: { http: { port: bench.upstreamPort } },
      extraClusters: v.clusters?.(ctx) ?? [],
      listener: {
        endpoint: { port: bench.listenerPort },
        tls: { certChain: pki.server.cert, privateKey: pki.server.key, trustedCa: pki.ca.cert },
        requireClientCertificate: true,
        httpFilters: v.filters(ctx),
        accessLog: false,
      },
    });
    await writeFile(path, JSON.stringify(bootstrap));
    configs.set(v.name, path);
    return path;
  };

  const start = async (v: VariantSpec, concurrency: number): Promise<Running> => {
    const t0 = performance.now();
    let authorizer: OpaProcess | null = null;
    if (v.authorizer !== undefined) {
      if (o.opaBinary === undefined) throw new Error(`${v.name}: no OPA authorizer binary`);
      const t = benchTable(v.authorizer.rules);
      const data = await writeOpaData(t.ir(), join(o.workDir, "..", "opa"), `${t.name}-${t.tableHash}`);
      authorizer = await startOpaAuthz(o.opaBinary, authorizerPort, data, o.pin?.load);
    }
    const config = await configOf(v);
    let envoy: EnvoyHandle;
    try {
      envoy = await startEnvoy(config, { concurrency, logLevel: "warn", startTimeoutMs: 10 * 60_000 });
      try {
        await envoy.ready(10 * 60_000);
      } catch (e) {
        await envoy.stop();
        throw e;
      }
    } catch (e) {
      await authorizer?.stop();
      throw e;
    }
    if (o.pin !== undefined) await pinProcess(envoy.pid, o.pin.envoy);
    return {
      envoy,
      authorizer,
      startupMs: performance.now() - t0,
      async stop() {
        await envoy.stop();
        await authorizer?.stop();
      },
    };
  };

  const checked = new Set<string>();
  /** Once per variant, before it is measured: its decisions on the benchmark's allowed and denied requests. */
  const sanity = async (v: VariantSpec): Promise<void> => {
    if (checked.has(v.name)) return;
    for (const c of decisionChecks(v)) {
      const status = await send(bench.listenerPort, pki, c.probe);
      if (status !== c.want) throw new Error(`${v.name} decides wrongly: ${c.what} (${c.probe.method} ${c.probe.path} as ${c.probe.client}) got ${status}, expected ${c.want}`);
    }
    checked.add(v.name);
  };

  /** A measured load run with the CPU of Envoy and of the authorizer. */
  const measure = async (r: Running, v: VariantSpec, rps: number, sec: number): Promise<Measured> => {
    const cpu0 = cpuSeconds(r.envoy.pid);
    const auth0 = r.authorizer !== null ? cpuSeconds(r.authorizer.pid) : 0;
    const res = await bench.load(v, rps, sec);
    return { res, cpu: cpuSeconds(r.envoy.pid) - cpu0, authCpu: r.authorizer !== null ? cpuSeconds(r.authorizer.pid) - auth0 : 0 };
  };

  const errorsOf = (res: LoadResult): number => res.count - (res.codes["200"] ?? 0);

  /** A latency run's record. */
  const record = (v: VariantSpec, r: Running, m: Measured, round_: number, phase: Phase, rps: number, concurrency: number): RunRecord => {
    const mem = memoryUse(r.envoy.pid);
    const count = Math.max(1, m.res.count);
    return {
      variant: v.name,
      round: round_,
      phase,
      concurrency,
      connections: connectionsFor(rps, o.connections),
      requested_rps: rps,
      actual_rps: round(m.res.actualQps, 1),
      count: m.res.count,
      errors: errorsOf(m.res),
      p50_us: us(m.res.percentiles.get(50)),
      p90_us: us(m.res.percentiles.get(90)),
      p99_us: us(m.res.percentiles.get(99)),
      p999_us: us(m.res.percentiles.get(99.9)),
      avg_us: us(m.res.avg),
      max_us: us(m.res.max),
      cpu_s: round(m.cpu, 3),
      cpu_s_per_1k: round((m.cpu / count) * 1000, 4),
      authorizer_cpu_s: round(m.authCpu, 3),
      authorizer_cpu_s_per_1k: round((m.authCpu / count) * 1000, 4),
      rss_mb: round(mem.rssMb, 1),
      hwm_mb: round(mem.hwmMb, 1),
      authorizer_rss_mb: r.authorizer !== null ? round(memoryUse(r.authorizer.pid).rssMb, 1) : null,
      startup_ms: round(r.startupMs, 0),
    };
  };

  const logRun = (rec: RunRecord, rounds: number, n: number | null, total: number | null, authorizer: boolean): void => {
    log(
      `[round ${rec.round}/${rounds}${n !== null ? `, run ${n}/${total}` : ""}] ${rec.variant.padEnd(18)} @${String(rec.requested_rps).padStart(5)} rps: ` +
        `p50 ${rec.p50_us} p90 ${rec.p90_us} p99 ${rec.p99_us} p99.9 ${rec.p999_us} µs, ${rec.actual_rps} rps, ` +
        `cpu ${rec.cpu_s_per_1k}${authorizer ? ` + ${rec.authorizer_cpu_s_per_1k} (OPA)` : ""} s/1k, rss ${rec.rss_mb} MB` +
        (rec.errors > 0 ? `, ${rec.errors} non-200!` : ""),
    );
  };

  /**
   * Pass 1 (and 3): the highest rate `v` sustains with `concurrency` workers. In pass 1 the light load is the knee
   * rate for every variant that sustains it, measured as long as a latency run: it is the variant's first latency
   * round (`firstRound`).
   */
  const findCapacity = async (v: VariantSpec, concurrency: number, firstRound: RunRecord[] | null): Promise<CapacityRecord> => {
    const r = await start(v, concurrency);
    try {
      await sanity(v);
      // Warm-up (TLS sessions, V8 tiering of the wasm hot path, Envoy's pools, OPA's caches), closed loop.
      await bench.load(v, 0, Math.min(o.warmupSec, o.stepSec));
      const closed = await bench.load(v, 0, o.stepSec);
      let light = roundRate(Math.min(o.kneeRps, 0.25 * closed.actualQps));
      const step = async (rps: number, lightP50: number): Promise<CapacityStep> => {
        const asRound = firstRound !== null && rps === o.kneeRps && lightP50 === Infinity;
        const m = await measure(r, v, rps, asRound ? o.durationSec : o.stepSec);
        const s: CapacityStep = {
          rps,
          actual_rps: round(m.res.actualQps, 1),
          p50_us: us(m.res.percentiles.get(50)),
          p99_us: us(m.res.percentiles.get(99)),
          errors: errorsOf(m.res),
          cpu_us: round((m.cpu / Math.max(1, m.res.count)) * 1e6, 1),
          authorizer_cpu_us: round((m.authCpu / Math.max(1, m.res.count)) * 1e6, 1),
          sustained: false,
        };
        s.sustained = sustained(s, lightP50, connectionsFor(rps, o.connections), asRound ? o.durationSec : o.stepSec);
        if (asRound && s.sustained) {
          const rec = record(v, r, m, 1, "knee", rps, concurrency);
          firstRound.push(rec);
          logRun(rec, o.rounds, null, null, r.authorizer !== null);
        }
        return s;
      };
      // The light load: a quarter of the closed-loop rate (at most the knee rate), lower still if even that fails.
      let lightStep = await step(light, Infinity);
      const steps = [lightStep];
      for (let k = 0; k < 3 && !lightStep.sustained; k++) {
        light = roundRate(light / 4);
        lightStep = await step(light, Infinity);
        steps.push(lightStep);
      }
      let lo = lightStep.sustained ? light : 0;
      let hi = closed.actualQps * 1.02;
      // First 90% of the closed-loop rate (a variant whose latency is flat up to its limit), then halve the interval
      // on a log scale.
      let next = roundRate(0.9 * closed.actualQps);
      for (let i = 0; i <= o.steps && lo > 0; i++) {
        if (next <= lo || next >= hi) break;
        const s = await step(next, lightStep.p50_us);
        steps.push(s);
        if (s.sustained) lo = next;
        else hi = next;
        next = roundRate(Math.sqrt(lo * hi));
      }
      const mem = memoryUse(r.envoy.pid);
      const rec: CapacityRecord = {
        variant: v.name,
        concurrency,
        closed_loop_rps: round(closed.actualQps, 0),
        light_rps: light,
        light_p50_us: lightStep.p50_us,
        max_rps: lo,
        steps,
        rss_mb: round(mem.rssMb, 1),
        hwm_mb: round(mem.hwmMb, 1),
        authorizer_rss_mb: r.authorizer !== null ? round(memoryUse(r.authorizer.pid).rssMb, 1) : null,
        startup_ms: round(r.startupMs, 0),
      };
      log(
        `capacity ${v.name.padEnd(18)} --concurrency ${concurrency}: ${rec.max_rps} rps sustained ` +
          `(closed loop ${rec.closed_loop_rps} rps; ${steps.map((s) => `${s.rps}${s.sustained ? "+" : "-"} (${Math.round(s.actual_rps)} rps, p50 ${Math.round(s.p50_us)} µs${s.errors > 0 ? `, ${s.errors} errors` : ""})`).join(", ")}), rss ${rec.rss_mb} MB`,
      );
      return rec;
    } finally {
      await r.stop();
    }
  };

  const capacity: CapacityRecord[] = [];
  const runs: RunRecord[] = [];
  log(`capacity: each variant's highest sustained rate on ${o.concurrency} Envoy worker(s) (steps of ${o.stepSec} s)`);
  for (const v of o.variants) capacity.push(await findCapacity(v, o.concurrency, runs));
  const maxOf = new Map(capacity.map((c) => [c.variant, c.max_rps]));

  // Pass 2: latency at rates each variant sustains.
  const plan = o.variants.map((v) => ({ v, ...latencyRate(maxOf.get(v.name)!, o.kneeRps) }));
  const own = plan.filter((p) => p.phase === "own");
  // The baselines of the own-rate block: each variant's baseline at each own rate it runs at (unless it is itself
  // in the block at that rate).
  const ownBaselines = [...new Set(own.map((p) => p.rps))].flatMap((rps) =>
    o.variants
      .filter((b) => own.some((p) => p.rps === rps && (p.v.baseline ?? "baseline") === b.name))
      .filter((b) => !own.some((p) => p.v.name === b.name && p.rps === rps))
      .map((b) => ({ v: b, phase: "own" as const, rps })),
  );
  // Round 1 at the knee rate was, for most variants, the capacity pass's light load: it is not run again.
  const blocks = [
    { plan: plan.filter((p) => p.phase === "knee"), rounds: o.rounds },
    { plan: [...ownBaselines, ...own], rounds: Math.max(1, Math.min(o.lastRounds, o.rounds)) },
  ];
  const has = (name: string, round_: number, rps: number): boolean => runs.some((x) => x.variant === name && x.round === round_ && x.requested_rps === rps);
  const todo = blocks.flatMap((b) =>
    Array.from({ length: b.rounds }, (_, i) => i + 1).flatMap((round_) => b.plan.filter((p) => !has(p.v.name, round_, p.rps)).map((p) => ({ ...p, round_, rounds: b.rounds }))),
  );
  let done = 0;
  for (const p of todo) {
    const r = await start(p.v, o.concurrency);
    try {
      await sanity(p.v);
      // Warm-up: TLS sessions, V8 tiering of the wasm hot path, Envoy's pools, OPA's caches. Not measured.
      await bench.load(p.v, p.rps, o.warmupSec);
      const m = await measure(r, p.v, p.rps, o.durationSec);
      const rec = record(p.v, r, m, p.round_, p.phase, p.rps, o.concurrency);
      runs.push(rec);
      logRun(rec, p.rounds, ++done, todo.length, r.authorizer !== null);
    } finally {
      await r.stop();
    }
  }

  // Pass 3: two workers.
  const two = o.variants.filter((v) => o.twoWorkers.includes(v.name));
  if (two.length > 0) log(`two workers (--concurrency 2): ${two.map((v) => v.name).join(", ")}`);
  for (const v of two) capacity.push(await findCapacity(v, 2, null));
  return {
    capacity,
    runs,
    commandLines: {
      fortio:
        `fortio load -qps <rps> -c ${o.connections} -t <d> -r ${o.resolutionSec} -p 50,90,99,99.9 -uniform ` +
        `-cert bench-client.crt -key bench-client.key -cacert ca.crt -json out.json https://127.0.0.1:<port>/echo`,
    },
  };
}

/** Pins every thread of `pid` to `cpus` (taskset -a). */
export async function pinProcess(pid: number, cpus: string): Promise<void> {
  await execFileAsync("taskset", ["-a", "-p", "-c", cpus, String(pid)]);
}

export interface VariantSummary {
  name: string;
  family: string;
  phase: Phase;
  rps: number;
  actual_rps: number;
  rounds: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  p999_us: number;
  /** over the variant's baseline (`baseline`, or what `baselineOf` names) at the same rate */
  added_p50_us: number | null;
  added_p90_us: number | null;
  added_p99_us: number | null;
  added_p999_us: number | null;
  /** Envoy's CPU, seconds per 1000 requests */
  cpu_s_per_1k: number;
  /** the external authorizer's CPU, seconds per 1000 requests (0 without one) */
  authorizer_cpu_s_per_1k: number;
  rss_mb: number;
  hwm_mb: number;
  startup_ms: number;
  errors: number;
  /**
   * The least-disturbed estimate: each percentile's minimum over rounds, and its difference with the baseline's.
   * Interference from other processes only ever adds latency, so on a shared machine the best round is the one
   * closest to a quiet machine's.
   */
  best: { p50_us: number; p90_us: number; p99_us: number; p999_us: number };
  added_best: { p50_us: number | null; p90_us: number | null; p99_us: number | null; p999_us: number | null };
}

const pct = ["p50_us", "p90_us", "p99_us", "p999_us"] as const;

/**
 * Medians over rounds per variant and rate; added latency = median over rounds of (variant - its baseline in the
 * same round at the same rate).
 */
export function summarize(
  runs: RunRecord[], variantOrder: string[], baselineOf: Record<string, string> = {}, familyOf: Record<string, string> = {},
): VariantSummary[] {
  const out: VariantSummary[] = [];
  const baseName = (name: string): string | null =>
    baselineOf[name] ?? (name === "baseline" || name === "baseline-post" ? null : "baseline");
  const single = runs.filter((r) => (r.concurrency ?? 1) === (runs[0]?.concurrency ?? 1));
  const rates = [...new Set(single.map((r) => `${r.phase}\0${r.requested_rps}`))];
  for (const key of rates) {
    const [phase, rpsText] = key.split("\0");
    const at = single.filter((r) => r.phase === phase && String(r.requested_rps) === rpsText);
    for (const name of variantOrder) {
      const rs = at.filter((r) => r.variant === name);
      if (rs.length === 0) continue;
      const b = baseName(name);
      const base = new Map(at.filter((r) => r.variant === b).map((r) => [r.round, r]));
      const added = (k: (typeof pct)[number]): number | null => {
        if (b === null || base.size === 0) return null;
        const diffs = rs.flatMap((r) => {
          const x = base.get(r.round);
          return x === undefined ? [] : [r[k] - x[k]];
        });
        return diffs.length === 0 ? null : round(median(diffs), 1);
      };
      out.push({
        name,
        family: familyOf[name] ?? "",
        phase: phase as Phase,
        rps: rs[0].requested_rps,
        actual_rps: round(median(rs.map((r) => r.actual_rps)), 0),
        rounds: rs.length,
        p50_us: round(median(rs.map((r) => r.p50_us)), 1),
        p90_us: round(median(rs.map((r) => r.p90_us)), 1),
        p99_us: round(median(rs.map((r) => r.p99_us)), 1),
        p999_us: round(median(rs.map((r) => r.p999_us)), 1),
        added_p50_us: added("p50_us"),
        added_p90_us: added("p90_us"),
        added_p99_us: added("p99_us"),
        added_p999_us: added("p999_us"),
        cpu_s_per_1k: round(median(rs.map((r) => r.cpu_s_per_1k)), 4),
        authorizer_cpu_s_per_1k: round(median(rs.map((r) => r.authorizer_cpu_s_per_1k ?? 0)), 4),
        rss_mb: round(median(rs.map((r) => r.rss_mb)), 1),
        hwm_mb: round(median(rs.map((r) => r.hwm_mb)), 1),
        startup_ms: round(median(rs.map((r) => r.startup_ms)), 0),
        errors: rs.reduce((n, r) => n + r.errors, 0),
        best: {
          p50_us: Math.min(...rs.map((r) => r.p50_us)),
          p90_us: Math.min(...rs.map((r) => r.p90_us)),
          p99_us: Math.min(...rs.map((r) => r.p99_us)),
          p999_us: Math.min(...rs.map((r) => r.p999_us)),
        },
        added_best: { p50_us: null, p90_us: null, p99_us: null, p999_us: null },
      });
    }
  }
  // Least-disturbed differences, once every baseline is known.
  for (const s of out) {
    const b = baseName(s.name);
    const x = out.find((y) => y.name === b && y.phase === s.phase && y.rps === s.rps);
    if (x === undefined) continue;
    for (const k of pct) s.added_best[k] = round(s.best[k] - x.best[k], 1);
  }
  return out;
}
