/**
 * The macro benchmark: real Envoy, real mTLS, fortio as upstream and as load generator.
 *
 * Every variant runs in the same Envoy binary, with the same listener, upstream and `--concurrency`, started
 * fresh for each run (so no run inherits another's heap) and warmed up before it is measured. Runs are
 * interleaved and repeated, round by round (A B C, A B C, ...), so the machine's drift hits every variant alike;
 * the added latency of a variant is the median over rounds of its difference with the baseline of the same round.
 * Each run is measured at two rates: below the knee (1000 rps, 16 connections, Istio's setting) and at the
 * highest rate the baseline sustains, found first with a short ramp. Variants that saturate Envoy at these rates
 * run after all the others, in rounds of their own (`runLast`).
 */
import { readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { createPki, type Pki } from "../src/envoy/pki.ts";
import { freePort } from "../src/envoy/ports.ts";
import { renderStaticBootstrap } from "../src/envoy/render.ts";
import { startEnvoy, type EnvoyHandle } from "../src/envoy/run.ts";
import { findFortio, fortioLoad, startFortioServer, type FortioServer, type LoadResult } from "./fortio.ts";
import { cpuSeconds, memoryUse } from "./proc.ts";
import { median, round } from "./stats.ts";
import { abacClientId, benchClientId, benchTrustDomain } from "./tables.ts";
import type { VariantSpec } from "./variants.ts";

const execFileAsync = promisify(execFile);

export type Phase = "knee" | "peak";

export interface MacroOptions {
  variants: VariantSpec[];
  rounds: number;
  /** Envoy --concurrency */
  concurrency: number;
  /** fortio -c */
  connections: number;
  /** the below-the-knee rate */
  kneeRps: number;
  /** the peak rate; undefined: found with a ramp on the baseline; 0: no peak phase */
  peakRps?: number;
  durationSec: number;
  peakDurationSec: number;
  warmupSec: number;
  /**
   * Variants measured in a block of their own, after all rounds of the others (rounds numbered alike, so each is
   * still compared with the baseline of its round number). For the variants that cannot sustain the rate (native
   * RBAC with thousands of principals): their Envoy spends the whole run at 100% CPU, hundreds of MB at 100k
   * principals, and the machine is slower for a while afterwards. Interleaved, that would land on whichever variant
   * follows, the baseline included; their own added latency (milliseconds to seconds) does not depend on tens of
   * microseconds of drift.
   */
  runLast?: (v: VariantSpec) => boolean;
  /** Rounds of the `runLast` block (default `rounds`): one is enough to see milliseconds to seconds of queueing. */
  lastRounds?: number;
  rampSec: number;
  /** fortio -r, seconds */
  resolutionSec: number;
  workDir: string;
  wasmPath: string;
  /** pin Envoy's threads to these CPUs and fortio (client and server) to the others, e.g. `{envoy: "1", load: "0"}` */
  pin?: { envoy: string; load: string };
  log: (line: string) => void;
}

export interface RunRecord {
  variant: string;
  round: number;
  phase: Phase;
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
  cpu_s: number;
  cpu_s_per_1k: number;
  rss_mb: number;
  hwm_mb: number;
  /** from spawn to the admin endpoint answering LIVE */
  startup_ms: number;
}

export interface MacroResult {
  peakRps: number | null;
  ramp: { rps: number; actual_rps: number; p99_us: number }[];
  runs: RunRecord[];
  skipped: { name: string; reason: string }[];
  commandLines: { fortio: string };
}

const us = (s: number | undefined): number => round((s ?? NaN) * 1e6, 1);

/** One HTTPS request with a client certificate; resolves with the status and response code details header. */
function probe(port: number, pki: Pki, client: string, v: VariantSpec, body = v.body?.text): Promise<number> {
  const c = pki.clients[client];
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: "127.0.0.1",
        port,
        method: v.method,
        path: v.path,
        cert: readFileSync(c.cert),
        key: readFileSync(c.key),
        ca: readFileSync(pki.ca.cert),
        agent: false,
        headers: v.body !== undefined ? { "content-type": v.body.contentType } : {},
        timeout: 10_000,
      },
      (res) => {
        res.resume();
        res.once("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.once("error", reject);
    req.once("timeout", () => req.destroy(new Error("probe timed out")));
    req.end(body);
  });
}

/** Runs the macro benchmark. */
export async function runMacro(o: MacroOptions): Promise<MacroResult> {
  const log = o.log;
  const fortio = await findFortio(log);
  await mkdir(o.workDir, { recursive: true });
  const pki = await createPki(join(o.workDir, "certs"), {
    trustDomain: benchTrustDomain,
    clients: [
      { name: "bench-client", uri: benchClientId },
      { name: "bench-stranger", uri: `spiffe://${benchTrustDomain}/ns/bench/sa/stranger` },
      { name: "abac-client", uri: abacClientId },
    ],
  });
  const upstreamPort = await freePort();
  const listenerPort = await freePort();
  const server: FortioServer = await startFortioServer(fortio, upstreamPort);
  if (o.pin !== undefined) await pinProcess(server.pid, o.pin.load);
  const skipped: { name: string; reason: string }[] = [];
  const runnable: VariantSpec[] = [];
  for (const v of o.variants) {
    if (v.skip !== undefined) {
      skipped.push({ name: v.name, reason: v.skip });
      log(`skip ${v.name}: ${v.skip}`);
    } else runnable.push(v);
  }

  // Configs, written once (JSON: a 100k-policy RBAC config is tens of MB, which YAML renders slowly).
  const configs = new Map<string, string>();
  for (const v of runnable) {
    const path = join(o.workDir, `${v.name}.json`);
    const bootstrap = renderStaticBootstrap({
      admin: { port: 0 },
      upstream: { http: { port: upstreamPort } },
      listener: {
        endpoint: { port: listenerPort },
        tls: { certChain: pki.server.cert, privateKey: pki.server.key, trustedCa: pki.ca.cert },
        requireClientCertificate: true,
        httpFilters: v.filters(o.wasmPath),
        accessLog: false,
      },
    });
    await writeFile(path, JSON.stringify(bootstrap));
    configs.set(v.name, path);
  }

  const url = (v: VariantSpec): string => `https://127.0.0.1:${listenerPort}${v.path}`;
  const payloads = new Map<string, string>();
  for (const v of runnable) {
    if (v.body !== undefined) {
      const p = join(o.workDir, `${v.name}.body`);
      await writeFile(p, v.body.text);
      payloads.set(v.name, p);
    }
  }
  let jsonCounter = 0;
  const load = async (v: VariantSpec, qps: number, durationSec: number): Promise<LoadResult> => {
    const c = pki.clients[v.client];
    return fortioLoad(fortio, {
      url: url(v),
      qps,
      connections: o.connections,
      durationSec,
      resolutionSec: o.resolutionSec,
      cert: c.cert,
      key: c.key,
      cacert: pki.ca.cert,
      jsonPath: join(o.workDir, `fortio-${++jsonCounter}.json`),
      headers: v.body !== undefined ? [`content-type: ${v.body.contentType}`] : [],
      payloadFile: payloads.get(v.name),
      cpus: o.pin?.load,
    });
  };

  const start = async (v: VariantSpec): Promise<{ envoy: EnvoyHandle; startupMs: number }> => {
    const t0 = performance.now();
    const envoy = await startEnvoy(configs.get(v.name)!, {
      concurrency: o.concurrency,
      logLevel: "warn",
      startTimeoutMs: 10 * 60_000,
    });
    try {
      await envoy.ready(10 * 60_000);
    } catch (e) {
      await envoy.stop();
      throw e;
    }
    const startupMs = performance.now() - t0;
    if (o.pin !== undefined) await pinProcess(envoy.pid, o.pin.envoy);
    return { envoy, startupMs };
  };

  const checked = new Set<string>();
  /** The first time a variant runs: the allowed request gets 200, an unlisted caller 403 (authz variants). */
  const sanity = async (v: VariantSpec): Promise<void> => {
    if (checked.has(v.name)) return;
    const ok = await probe(listenerPort, pki, v.client, v);
    if (ok !== 200) throw new Error(`${v.name}: the bench request got ${ok}, expected 200`);
    if (v.family !== "baseline" && v.family !== "diagnostic") {
      const denied = await probe(listenerPort, pki, "bench-stranger", v);
      if (denied !== 403) throw new Error(`${v.name}: a caller the table does not list got ${denied}, expected 403`);
    }
    if (v.deniedBody !== undefined) {
      const denied = await probe(listenerPort, pki, v.client, v, v.deniedBody);
      if (denied !== 403) throw new Error(`${v.name}: a body the condition rejects got ${denied}, expected 403`);
    }
    checked.add(v.name);
  };

  const runs: RunRecord[] = [];
  const ramp: MacroResult["ramp"] = [];
  let peakRps: number | null = o.peakRps === 0 ? null : o.peakRps ?? null;
  try {
    // The peak rate: what the baseline sustains.
    const baseline = runnable.find((v) => v.family === "baseline");
    if (o.peakRps === undefined && baseline !== undefined) {
      const { envoy } = await start(baseline);
      try {
        await sanity(baseline);
        await load(baseline, o.kneeRps, o.warmupSec);
        const max = await load(baseline, 0, o.rampSec);
        ramp.push({ rps: 0, actual_rps: round(max.actualQps, 0), p99_us: us(max.percentiles.get(99)) });
        log(`ramp: baseline closed-loop maximum ${max.actualQps.toFixed(0)} rps (p99 ${us(max.percentiles.get(99))} µs)`);
        for (const f of [0.95, 0.9, 0.8, 0.7, 0.6, 0.5]) {
          const rps = Math.max(o.kneeRps, Math.floor((max.actualQps * f) / 100) * 100);
          const r = await load(baseline, rps, o.rampSec);
          const errors = r.count - (r.codes["200"] ?? 0);
          ramp.push({ rps, actual_rps: round(r.actualQps, 0), p99_us: us(r.percentiles.get(99)) });
          const sustained = r.actualQps >= 0.97 * rps && errors === 0;
          log(`ramp: ${rps} rps -> ${r.actualQps.toFixed(0)} rps, p99 ${us(r.percentiles.get(99))} µs${sustained ? " (sustained)" : ""}`);
          if (sustained || rps === o.kneeRps) {
            peakRps = rps;
            break;
          }
        }
      } finally {
        await envoy.stop();
      }
      log(`peak rate for every variant: ${peakRps} rps`);
    }

    const phases: { phase: Phase; rps: number; durationSec: number }[] = [
      { phase: "knee", rps: o.kneeRps, durationSec: o.durationSec },
    ];
    if (peakRps !== null) phases.push({ phase: "peak", rps: peakRps, durationSec: o.peakDurationSec });
    let done = 0;
    const last = o.runLast ?? ((): boolean => false);
    const lastRounds = Math.max(1, Math.min(o.lastRounds ?? o.rounds, o.rounds));
    const blocks = [
      { variants: runnable.filter((v) => !last(v)), rounds: o.rounds },
      { variants: runnable.filter(last), rounds: lastRounds },
    ].filter((b) => b.variants.length > 0);
    const total = blocks.reduce((n, b) => n + b.rounds * b.variants.length, 0);
    if (blocks.length > 1) {
      log(`measured after all rounds of the others, in ${lastRounds} round(s) of their own: ${blocks[1].variants.map((v) => v.name).join(", ")}`);
    }
    for (const block of blocks) for (let r = 1; r <= block.rounds; r++) {
      for (const v of block.variants) {
        const { envoy, startupMs } = await start(v);
        try {
          await sanity(v);
          // Warm-up: TLS sessions, V8 tiering of the wasm hot path, Envoy's pools. Not measured.
          await load(v, o.kneeRps, o.warmupSec);
          for (const ph of phases) {
            const cpu0 = cpuSeconds(envoy.pid);
            const res = await load(v, ph.rps, ph.durationSec);
            const cpu = cpuSeconds(envoy.pid) - cpu0;
            const mem = memoryUse(envoy.pid);
            const errors = res.count - (res.codes["200"] ?? 0);
            const rec: RunRecord = {
              variant: v.name,
              round: r,
              phase: ph.phase,
              requested_rps: ph.rps,
              actual_rps: round(res.actualQps, 1),
              count: res.count,
              errors,
              p50_us: us(res.percentiles.get(50)),
              p90_us: us(res.percentiles.get(90)),
              p99_us: us(res.percentiles.get(99)),
              p999_us: us(res.percentiles.get(99.9)),
              avg_us: us(res.avg),
              max_us: us(res.max),
              cpu_s: round(cpu, 3),
              cpu_s_per_1k: round((cpu / Math.max(1, res.count)) * 1000, 4),
              rss_mb: round(mem.rssMb, 1),
              hwm_mb: round(mem.hwmMb, 1),
              startup_ms: round(startupMs, 0),
            };
            runs.push(rec);
            log(
              `[round ${r}/${o.rounds}, run ${done + 1}/${total}] ${v.name.padEnd(17)} @${String(ph.rps).padStart(5)} rps: ` +
                `p50 ${rec.p50_us} p90 ${rec.p90_us} p99 ${rec.p99_us} p99.9 ${rec.p999_us} µs, ` +
                `${rec.actual_rps} rps, cpu ${rec.cpu_s_per_1k} s/1k, rss ${rec.rss_mb} MB` +
                (errors > 0 ? `, ${errors} non-200!` : ""),
            );
          }
        } finally {
          await envoy.stop();
        }
        done++;
      }
    }
  } finally {
    await server.stop();
  }
  return {
    peakRps,
    ramp,
    runs,
    skipped,
    commandLines: {
      fortio:
        `fortio load -qps <rps> -c ${o.connections} -t <d> -r ${o.resolutionSec} -p 50,90,99,99.9 -uniform ` +
        `-cert bench-client.crt -key bench-client.key -cacert ca.crt -json out.json https://127.0.0.1:<port>/echo`,
    },
  };
}

/** Pins every thread of `pid` to `cpus` (taskset -a). */
async function pinProcess(pid: number, cpus: string): Promise<void> {
  await execFileAsync("taskset", ["-a", "-p", "-c", cpus, String(pid)]);
}

export interface VariantSummary {
  name: string;
  phase: Phase;
  rps: number;
  actual_rps: number;
  rounds: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  p999_us: number;
  added_p50_us: number | null;
  added_p90_us: number | null;
  added_p99_us: number | null;
  added_p999_us: number | null;
  cpu_s_per_1k: number;
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
 * Medians over rounds per variant and phase; added latency = median over rounds of (variant - baseline of the
 * same round and phase).
 */
export function summarize(runs: RunRecord[], variantOrder: string[], baselineOf: Record<string, string> = {}): VariantSummary[] {
  const out: VariantSummary[] = [];
  const isBaseline = (name: string): boolean => name === "baseline" || Object.values(baselineOf).includes(name);
  for (const phase of ["knee", "peak"] as const) {
    for (const name of variantOrder) {
      const baseName = baselineOf[name] ?? "baseline";
      const base = new Map(runs.filter((r) => r.variant === baseName && r.phase === phase).map((r) => [r.round, r]));
      const rs = runs.filter((r) => r.variant === name && r.phase === phase);
      if (rs.length === 0) continue;
      const bestOf = (runs: RunRecord[]): VariantSummary["best"] => ({
        p50_us: Math.min(...runs.map((r) => r.p50_us)),
        p90_us: Math.min(...runs.map((r) => r.p90_us)),
        p99_us: Math.min(...runs.map((r) => r.p99_us)),
        p999_us: Math.min(...runs.map((r) => r.p999_us)),
      });
      const added = (key: (typeof pct)[number]): number | null => {
        if (isBaseline(name) || base.size === 0) return null;
        const diffs = rs.flatMap((r) => {
          const b = base.get(r.round);
          return b === undefined ? [] : [r[key] - b[key]];
        });
        return diffs.length === 0 ? null : round(median(diffs), 1);
      };
      out.push({
        name,
        phase,
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
        rss_mb: round(median(rs.map((r) => r.rss_mb)), 1),
        hwm_mb: round(median(rs.map((r) => r.hwm_mb)), 1),
        startup_ms: round(median(rs.map((r) => r.startup_ms)), 0),
        errors: rs.reduce((n, r) => n + r.errors, 0),
        best: bestOf(rs),
        added_best: { p50_us: null, p90_us: null, p99_us: null, p999_us: null },
      });
    }
  }
  // Least-disturbed differences, once every baseline is known.
  for (const s of out) {
    const b = out.find((x) => x.name === (baselineOf[s.name] ?? "baseline") && x.phase === s.phase);
    if (b === undefined || isBaseline(s.name)) continue;
    for (const k of pct) s.added_best[k] = round(s.best[k] - b.best[k], 1);
  }
  return out;
}
