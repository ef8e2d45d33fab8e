/**
 * Table updates under load: how long after a configuration update with N rules the first request is decided by the
 * new table, in a real Envoy, and what the update does to the latency of the requests around it.
 *
 * Two delivery paths, both from a watched file (Envoy reloads on the rename of a new file into the directory):
 * - ECDS, the shipped configs' path (envoy/, src/envoy/render.ts `ecdsFilter`): the filter's TypedExtensionConfig
 *   is replaced in place; the listener is not rebuilt and open connections see the new table.
 * - LDS: the whole listener, the table inline, is replaced; Envoy builds a new listener for new connections and
 *   drains the old one (open connections keep the old table while they last).
 *
 * The load (fortio at a fixed rate, as the benchmark client, allowed by every table) runs once without an update
 * and once across one. An update to 100,000 rules replaces the 10,000-rule table, an update to 10,000 rules the
 * 100,000-rule one; the update probe's identity is in the larger table only (`updateProbeId`). A probe loop, a new
 * TLS connection per request as the update probe, times the first answer of the new table after the rename (200
 * after an update to 100k rules, 403 after one to 10k). The probe's round trip is the resolution of that time.
 */
import { readFileSync } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { basename, dirname, join } from "node:path";
import {
  ecdsFilter, renderEcdsResponse, renderLdsBootstrap, renderLdsResponse, renderListener, renderStaticBootstrap, toYaml,
  wasmExtensionConfig, wasmFilter, type EnvoyObject,
} from "../src/envoy/render.ts";
import { startEnvoy } from "../dev/envoy/run.ts";
import type { Bench } from "./macro.ts";
import { cpuSeconds } from "./proc.ts";
import { round } from "./stats.ts";
import { benchTable } from "./tables.ts";
import { baselineVariant } from "./variants.ts";

export type UpdatePath = "ecds" | "lds";

export interface LoadWindow {
  p50_us: number;
  p99_us: number;
  p999_us: number;
  max_us: number;
  actual_rps: number;
  errors: number;
  /** Envoy's CPU over the run */
  cpu_ms: number;
}

export interface UpdateRecord {
  path: UpdatePath;
  /** rules of the table before and after the update */
  from_rules: number;
  rules: number;
  concurrency: number;
  load_rps: number;
  /** bytes of the file Envoy reloads */
  file_bytes: number;
  /** from the rename of the new file to the end of the first request decided by the new table */
  time_to_new_table_ms: number;
  /** the probe's mean round trip (a new TLS connection each): the resolution of the time above */
  probe_round_trip_ms: number;
  /** the load without an update, and across the update (same Envoy, same length) */
  steady: LoadWindow;
  during: LoadWindow;
}

export interface UpdateOptions {
  /** updates as [rules before, rules after]; the update probe must be allowed by exactly one of the two tables */
  updates: [number, number][];
  paths: UpdatePath[];
  concurrency: number;
  rps: number;
  durationSec: number;
  warmupSec: number;
  wasmPath: string;
  workDir: string;
  log: (line: string) => void;
}

const us = (s: number | undefined): number => round((s ?? NaN) * 1e6, 1);

function probeOnce(bench: Bench, client: string): Promise<number> {
  const c = bench.pki.clients[client];
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: "127.0.0.1",
        port: bench.listenerPort,
        path: "/echo",
        cert: readFileSync(c.cert),
        key: readFileSync(c.key),
        ca: readFileSync(bench.pki.ca.cert),
        agent: false,
        timeout: 10_000,
      },
      (res) => {
        res.resume();
        res.once("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.once("error", reject);
    req.once("timeout", () => req.destroy(new Error("probe timed out")));
    req.end();
  });
}

/** Measures every path and size; one Envoy per measurement. */
export async function runUpdates(o: UpdateOptions, bench: Bench): Promise<UpdateRecord[]> {
  const out: UpdateRecord[] = [];
  const v = baselineVariant(); // the benchmark request as the benchmark client
  const tls = { certChain: bench.pki.server.cert, privateKey: bench.pki.server.key, trustedCa: bench.pki.ca.cert };
  for (const [from, n] of o.updates) {
    const before = benchTable(from, o.log);
    const after = benchTable(n, o.log);
    const allowedAfter = n > from;
    for (const path of o.paths) {
      const dir = join(o.workDir, `update-${path}-${from}-${n}`);
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true });
      const watched = join(dir, path === "ecds" ? "spiffe-authz.yaml" : "lds.yaml");
      const listener = (filters: EnvoyObject[]): EnvoyObject =>
        renderListener({ endpoint: { port: bench.listenerPort }, tls, requireClientCertificate: true, httpFilters: filters, accessLog: false });
      // What the shipped configs write (YAML, the table one long string).
      const fileFor = (config: string, version: string): string =>
        path === "ecds"
          ? toYaml(renderEcdsResponse([wasmExtensionConfig({ wasmPath: o.wasmPath, configuration: config })], version))
          : toYaml(renderLdsResponse([listener([wasmFilter({ wasmPath: o.wasmPath, configuration: config })])], version));
      await writeFile(watched, fileFor(before.config, "before"));
      const upstream = { http: { port: bench.upstreamPort } };
      const bootstrap =
        path === "ecds"
          ? renderStaticBootstrap({
              admin: { port: 0 }, upstream,
              listener: { endpoint: { port: bench.listenerPort }, tls, requireClientCertificate: true, httpFilters: [ecdsFilter({ path: watched, directory: dir })], accessLog: false },
            })
          : renderLdsBootstrap({ admin: { port: 0 }, upstream, ldsPath: watched, ldsDirectory: dir });
      const config = join(dir, "envoy.json");
      await writeFile(config, JSON.stringify(bootstrap));
      const envoy = await startEnvoy(config, { concurrency: o.concurrency, logLevel: "warn", startTimeoutMs: 10 * 60_000 });
      try {
        await envoy.ready(10 * 60_000);
        // The listener serves once the filter's first configuration has loaded.
        const deadline = Date.now() + 120_000;
        while ((await probeOnce(bench, "bench-client").catch(() => 0)) !== 200) {
          if (Date.now() > deadline) throw new Error(`update ${path} ${n}: the benchmark request is not allowed by the first table:\n${envoy.logs().slice(-3000)}`);
          await new Promise((r) => setTimeout(r, 50));
        }
        const [oldStatus, newStatus] = allowedAfter ? [403, 200] : [200, 403];
        const probeBefore = await probeOnce(bench, "update-probe");
        if (probeBefore !== oldStatus) throw new Error(`update ${path} ${from} -> ${n}: the update probe got ${probeBefore} before the update, expected ${oldStatus}`);
        await bench.load(v, o.rps, o.warmupSec);
        const window = async (run: () => Promise<void> = async () => {}): Promise<LoadWindow> => {
          const cpu0 = cpuSeconds(envoy.pid);
          const [res] = await Promise.all([bench.load(v, o.rps, o.durationSec), run()]);
          return {
            p50_us: us(res.percentiles.get(50)),
            p99_us: us(res.percentiles.get(99)),
            p999_us: us(res.percentiles.get(99.9)),
            max_us: us(res.max),
            actual_rps: round(res.actualQps, 0),
            errors: res.count - (res.codes["200"] ?? 0),
            cpu_ms: round((cpuSeconds(envoy.pid) - cpu0) * 1000, 0),
          };
        };
        const steady = await window();
        let timeToNew = NaN;
        let roundTrip = NaN;
        const content = fileFor(after.config, "after");
        const during = await window(async () => {
          // Into the load, then the update: the new file is written beside the watched one, then renamed over it.
          await new Promise((r) => setTimeout(r, Math.min(1000, (o.durationSec * 1000) / 4)));
          const temp = join(dirname(watched), `.${basename(watched)}.next`);
          await writeFile(temp, content);
          const t0 = performance.now();
          await rename(temp, watched);
          let probes = 0;
          for (;;) {
            const status = await probeOnce(bench, "update-probe");
            probes++;
            if (status === newStatus) break;
            if (status !== oldStatus) throw new Error(`update ${path} ${from} -> ${n}: the update probe got ${status}`);
            if (performance.now() - t0 > 120_000) throw new Error(`update ${path} ${n}: no request was decided by the new table within 120 s`);
          }
          timeToNew = performance.now() - t0;
          roundTrip = timeToNew / probes;
        });
        const rec: UpdateRecord = {
          path,
          from_rules: from,
          rules: n,
          concurrency: o.concurrency,
          load_rps: o.rps,
          file_bytes: Buffer.byteLength(content),
          time_to_new_table_ms: round(timeToNew, 1),
          probe_round_trip_ms: round(roundTrip, 1),
          steady,
          during,
        };
        out.push(rec);
        o.log(
          `update ${path.toUpperCase()} ${from} -> ${n} rules: new table after ${rec.time_to_new_table_ms} ms ` +
            `(probe round trip ${rec.probe_round_trip_ms} ms); load p99 ${steady.p99_us} -> ${during.p99_us} µs, max ${steady.max_us} -> ${during.max_us} µs, ` +
            `Envoy CPU ${steady.cpu_ms} -> ${during.cpu_ms} ms${during.errors > 0 ? `, ${during.errors} non-200!` : ""}`,
        );
      } finally {
        await envoy.stop();
      }
    }
  }
  return out;
}
