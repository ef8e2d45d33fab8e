/**
 * `npm run bench`: the filter against the alternatives, side by side (issue 4). See docs/benchmarks.md.
 *
 *   npm run bench                       full run (about 40 minutes)
 *   npm run bench -- --quick            the same, shorter (under five minutes once the tables are cached)
 *   npm run bench -- --out results.json --chart latency.svg --rounds 5 --concurrency 1
 *
 * Steps: build the filter (when stale), compile the tables (cached in .cache/bench), the micro-benchmarks through
 * the TypeScript host, then the macro benchmark (Envoy + fortio over mTLS), then the tables, the chart and the JSON.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { createHash } from "node:crypto";
import { copyFile, mkdir, readdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { parseArgs } from "node:util";
import { envoyVersion, findEnvoy, repoRoot } from "../src/envoy/binary.ts";
import { validateEnvoyConfig } from "../src/envoy/run.ts";
import { ensureWasm } from "../src/envoy/wasm.ts";
import { checkCompose, composeConfigFile, composeFamilies, prepareCompose } from "./compose.ts";
import { runMacro, summarize, type MacroResult, type VariantSummary } from "./macro.ts";
import { runMicro, type MicroResult } from "./micro.ts";
import { machineInfo } from "./proc.ts";
import { bestTable, diagnoseTable, evaluateTargets, latencyChartPng, latencyChartSvg, macroTable, microTable, targetsTable } from "./report.ts";
import { ruleSizes } from "./tables.ts";
import {
  abacVariant, baselinePostVariant, baselineVariant, ensureProbeFilters, opaSkipReason, probeModules, probeVariants, rbacVariant, wasmVariant,
  type VariantSpec,
} from "./variants.ts";

const execFileAsync = promisify(execFile);

const usage = `usage: npm run bench -- [options]

  --quick              short version of everything (3 rounds of 4 s runs, native RBAC from 1k principals in one
                       round, fewer micro batches)
  --rounds N           interleaved rounds of every variant (default 7; quick 2)
  --duration S         seconds per measured run at the knee rate (default 20; quick 5)
  --peak-duration S    seconds per measured run at the peak rate (default 10; quick 3)
  --warmup S           seconds of unmeasured load after each Envoy start (default 3; quick 1)
  --rps N              the below-the-knee rate (default 1000)
  --peak-rps N         the peak rate (default: found with a ramp on the baseline; 0: no peak phase)
  --connections N      fortio connections (default 16)
  --concurrency N      Envoy --concurrency (default 1)
  --resolution SEC     fortio histogram resolution (default 0.00001, 10 µs)
  --only A,B           run only these variants (names as printed; baseline, and with --diagnose the probes,
                       are always kept)
  --no-rbac-100k       leave out native RBAC with 100k principals (left out by --quick)
  --pin                pin Envoy to CPU 1 and fortio to CPU 0 (2+ core machines)
  --skip-micro         macro benchmark only
  --skip-macro         micro-benchmarks only
  --diagnose           add the null filter and the host-call probes (bench/null-filter/) and print where the
                       filter's cost inside Envoy goes
  --profile            print CPU profiles of the hook path (builds a copy of the module with function names)
  --prepare-compose    only write out/bench/compose (Envoy configs and certificates for the k6 services of
                       docker-compose.yml), validate the configs with envoy --mode validate, and exit
  --compose-rules N    rules in the compose stack's rbac-native and wasm tables (default 1000)
  --from FILE.json     measure nothing: render the tables, targets and chart again from a saved --out file
                       (e.g. after the report code changed)
  --out FILE           write the results as JSON (default out/bench/results.json)
  --chart FILE         write the latency chart as SVG (default out/bench/latency.svg), and beside it the same
                       chart as PNG (FILE with .png)
  --markdown FILE      write the markdown tables (default out/bench/results.md)
  -h, --help           this help`;

function log(line: string): void {
  const t = new Date().toISOString().slice(11, 19);
  process.stderr.write(`[${t}] ${line}\n`);
}

function num(v: string | undefined, fallback: number, name: string): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} needs a non-negative number, got "${v}"`);
  return n;
}

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? await newestMtime(p) : (await stat(p)).mtimeMs);
  }
  return newest;
}

/**
 * build/release.wasm's sources built again with a name section (`--debug`, same optimisation), for the decision
 * time and readable profiles; rebuilt when assembly/ or asconfig.json is newer.
 */
async function namedBuild(log: (line: string) => void): Promise<string> {
  const out = join(repoRoot, ".cache", "bench", "release-names.wasm");
  const built = await stat(out).catch(() => null);
  const sources = Math.max(await newestMtime(join(repoRoot, "assembly")), (await stat(join(repoRoot, "asconfig.json"))).mtimeMs);
  if (built !== null && built.mtimeMs >= sources) return out;
  log(`building ${out} (build/release.wasm's sources with function names, for the decision time and profiles)`);
  await mkdir(dirname(out), { recursive: true });
  const asc = join(repoRoot, "node_modules", "assemblyscript", "bin", "asc.js");
  const tmp = `${out}.${process.pid}.tmp`;
  await execFileAsync(process.execPath, [asc, "assembly/index.ts", "--target", "release", "--debug", "--outFile", tmp], { cwd: repoRoot });
  await rename(tmp, out);
  return out;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean" },
      rounds: { type: "string" },
      duration: { type: "string" },
      "peak-duration": { type: "string" },
      warmup: { type: "string" },
      rps: { type: "string" },
      "peak-rps": { type: "string" },
      connections: { type: "string" },
      concurrency: { type: "string" },
      resolution: { type: "string" },
      only: { type: "string" },
      "no-rbac-100k": { type: "boolean" },
      pin: { type: "boolean" },
      "skip-micro": { type: "boolean" },
      "skip-macro": { type: "boolean" },
      profile: { type: "boolean" },
      diagnose: { type: "boolean" },
      "prepare-compose": { type: "boolean" },
      "compose-rules": { type: "string" },
      from: { type: "string" },
      out: { type: "string" },
      chart: { type: "string" },
      markdown: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(usage + "\n");
    return 0;
  }
  if (values["prepare-compose"]) {
    await ensureWasm(log);
    await prepareCompose(num(values["compose-rules"], 1000, "compose-rules"), log);
    for (const f of composeFamilies) {
      const path = join(repoRoot, composeConfigFile(f.family));
      if (!existsSync(path)) continue;
      const r = await validateEnvoyConfig(path, { cwd: repoRoot });
      if (!r.ok) throw new Error(`envoy --mode validate rejected ${path}:\n${r.output}`);
      log(`compose: envoy --mode validate accepts ${composeConfigFile(f.family)}`);
    }
    const problems = checkCompose();
    for (const p of problems) log(`compose: docker-compose.yml: ${p}`);
    log("then: docker compose --profile wasm run --rm k6-wasm (see docker-compose.yml and docs/benchmarks.md)");
    return problems.length === 0 ? 0 : 1;
  }
  const quick = values.quick === true;
  const settings = {
    quick,
    // Many moderate rounds rather than a few long ones: interference from other processes comes in bursts, and the
    // median over rounds drops the rounds a burst hit.
    // Quick: three short rounds rather than two longer ones, so that the median drops one disturbed round.
    rounds: num(values.rounds, quick ? 3 : 7, "rounds"),
    lastRounds: quick ? 1 : undefined,
    durationSec: num(values.duration, quick ? 4 : 20, "duration"),
    peakDurationSec: num(values["peak-duration"], quick ? 2 : 10, "peak-duration"),
    warmupSec: num(values.warmup, quick ? 1 : 3, "warmup"),
    rampSec: quick ? 2 : 4,
    kneeRps: num(values.rps, 1000, "rps"),
    peakRps: values["peak-rps"] === undefined ? undefined : num(values["peak-rps"], 0, "peak-rps"),
    connections: num(values.connections, 16, "connections"),
    concurrency: num(values.concurrency, 1, "concurrency"),
    resolutionSec: num(values.resolution, 0.00001, "resolution"),
    pin: values.pin === true,
  };
  const outPath = resolve(values.out ?? join(repoRoot, "out", "bench", "results.json"));
  const chartPath = resolve(values.chart ?? join(repoRoot, "out", "bench", "latency.svg"));
  const mdPath = resolve(values.markdown ?? join(repoRoot, "out", "bench", "results.md"));
  const started = Date.now();

  // Variants, in the order every round runs them.
  const all: VariantSpec[] = [
    baselineVariant(),
    ...(quick ? [] : [rbacVariant(10)]),
    rbacVariant(1_000),
    rbacVariant(10_000),
    ...(quick || values["no-rbac-100k"] ? [] : [rbacVariant(100_000)]),
    ...ruleSizes.map((n) => wasmVariant(n)),
  ];
  const abac = abacVariant();
  // The ABAC row is measured against the same POST through Envoy without a filter.
  if (abac.skip === undefined) all.push(baselinePostVariant());
  all.push(abac);
  if (values.diagnose) all.splice(1, 0, ...probeVariants(await ensureProbeFilters(log)));
  let variants = all;
  if (values.only !== undefined) {
    const wanted = new Set(values.only.split(",").map((s) => s.trim()).filter((s) => s !== ""));
    for (const w of wanted) if (!all.some((v) => v.name === w)) throw new Error(`--only: unknown variant "${w}" (known: ${all.map((v) => v.name).join(", ")})`);
    // Baselines stay (a wanted variant may be measured against baseline-post), and so do the probes of --diagnose.
    if (wanted.has("wasm-abac")) wanted.add("baseline-post");
    variants = all.filter((v) => v.name === "baseline" || v.family === "diagnostic" || wanted.has(v.name));
  }

  const baselineOf: Record<string, string> = Object.fromEntries(
    all.filter((v) => v.baseline !== undefined).map((v) => [v.name, v.baseline!]),
  );
  let micro: MicroResult[] = [];
  let macro: MacroResult | null = null;
  let summaries: VariantSummary[] = [];
  let machine: Record<string, unknown>;
  if (values.from !== undefined) {
    // Re-render a saved run: same tables and chart as the run itself would print with this code.
    const saved = JSON.parse(await readFile(resolve(values.from), "utf8")) as {
      machine: Record<string, unknown>;
      settings: typeof settings & { fortio?: string };
      micro: MicroResult[];
      runs: MacroResult["runs"];
      ramp: MacroResult["ramp"];
      peak_rps: number | null;
      skipped: MacroResult["skipped"];
    };
    Object.assign(settings, saved.settings);
    machine = saved.machine;
    micro = saved.micro ?? [];
    macro = {
      peakRps: saved.peak_rps,
      ramp: saved.ramp ?? [],
      runs: saved.runs ?? [],
      skipped: (saved.skipped ?? []).filter((x) => x.name !== "opa-envoy"),
      commandLines: { fortio: saved.settings.fortio ?? "" },
    };
    summaries = summarize(macro.runs, [...new Set(macro.runs.map((r) => r.variant))], baselineOf);
    log(`rendering ${values.from} again (${macro.runs.length} runs, ${micro.length} micro rows)`);
  } else {
    log(`spiffe-authz benchmark${quick ? " (quick)" : ""}: ${variants.map((v) => v.name).join(", ")}`);
    log(`skip opa-envoy: ${opaSkipReason}`);
    // One artefact for the whole run: others may rebuild build/release.wasm while a long run goes on.
    const runDir = join(repoRoot, "out", "bench", "run");
    await mkdir(runDir, { recursive: true });
    const wasmPath = join(runDir, "release.wasm");
    await copyFile(await ensureWasm(log), wasmPath);
    const wasmSha256 = createHash("sha256").update(await readFile(wasmPath)).digest("hex");
    const envoy = await findEnvoy();
    machine = {
      ...machineInfo(), envoy: await envoyVersion(envoy), concurrency: settings.concurrency, wasm_sha256: wasmSha256,
    };

    if (!values["skip-micro"]) {
      log("micro-benchmarks through the TypeScript host on build/release.wasm");
      micro = await runMicro({
        wasmPath,
        sizes: [...ruleSizes],
        batchRequests: 20_000,
        batches: quick ? 5 : 15,
        // The same profiles in --quick: with 2 runs of 100k requests the decision share came out 40% low at 10 rules
        // (217-256 ns against 393-419 ns), which made the 10-vs-100k ratio meaningless.
        profileRuns: 5,
        profileRequests: 200_000,
        warmupRequests: 50_000,
        heapRequests: 1_000_000,
        configureRepeats: quick ? 3 : 7,
        printProfiles: values.profile === true,
        namedWasmPath: await namedBuild(log),
        log,
      });
    }

    if (!values["skip-macro"]) {
      const workDir = runDir;
      log(`macro benchmark: Envoy --concurrency ${settings.concurrency}, fortio -c ${settings.connections}, ${settings.rounds} round(s); work files in ${workDir}`);
      macro = await runMacro({
        variants,
        rounds: settings.rounds,
        concurrency: settings.concurrency,
        connections: settings.connections,
        kneeRps: settings.kneeRps,
        peakRps: settings.peakRps,
        durationSec: settings.durationSec,
        peakDurationSec: settings.peakDurationSec,
        warmupSec: settings.warmupSec,
        // Native RBAC from 1k principals cannot serve the knee rate on one worker (see macro.ts).
        runLast: (v) => v.family === "rbac-native" && (v.rules ?? 0) >= 1_000,
        lastRounds: settings.lastRounds,
        rampSec: settings.rampSec,
        resolutionSec: settings.resolutionSec,
        workDir,
        wasmPath,
        pin: settings.pin ? { envoy: "1", load: "0" } : undefined,
        log,
      });
      summaries = summarize(macro.runs, variants.map((v) => v.name), baselineOf);
    }


  }

  const verdicts = evaluateTargets(summaries, micro);
  const skipped = [...(macro?.skipped ?? variants.filter((v) => v.skip).map((v) => ({ name: v.name, reason: v.skip! }))), { name: "opa-envoy", reason: opaSkipReason }];
  const title = `spiffe-authz: latency through Envoy 1.40 (--concurrency ${settings.concurrency}), fortio over mTLS, ${settings.connections} connections, median of ${settings.rounds} round(s)`;

  const md: string[] = [];
  if (summaries.length > 0) {
    md.push(`### Envoy at ${settings.kneeRps} rps (below the knee), median of ${settings.rounds} interleaved round(s)\n`, macroTable(summaries, "knee"));
    if (macro?.peakRps) md.push(`### Envoy at ${macro.peakRps} rps (the highest rate the baseline sustains)\n`, macroTable(summaries, "peak"));
    md.push(
      "`+pXX`: added latency over `baseline` in µs (median over rounds of the per-round difference); `wasm-abac` is " +
        "measured against `baseline-post`, the same POST with the same JSON body through Envoy without a filter.\n",
    );
    md.push(
      `### Least-disturbed round at ${settings.kneeRps} rps (each percentile's minimum over rounds)\n`,
      "Other processes on a shared machine only ever add latency; the best round of each variant is the closest to a quiet machine's.\n",
      bestTable(summaries, "knee"),
    );
    if (summaries.some((x) => x.name === "wasm-null")) md.push("### Where the filter's cost inside Envoy goes (--diagnose, 1000 rps)\n", diagnoseTable(summaries, [...probeModules]));
  }
  if (micro.length > 0) md.push("### Micro-benchmarks: build/release.wasm through the TypeScript host\n", microTable(micro));
  md.push("### Targets (issue 4)\n", targetsTable(verdicts));
  md.push("Not run:\n" + skipped.map((s) => `- ${s.name}: ${s.reason}`).join("\n") + "\n");
  const markdown = md.join("\n");

  const json = {
    machine,
    settings: {
      ...settings,
      // A re-rendered run keeps the command that measured it.
      command: (settings as { command?: string }).command ?? `npm run bench -- ${process.argv.slice(2).join(" ")}`.trim(),
      fortio: macro?.commandLines.fortio,
    },
    variants: summaries.map((s) => ({
      name: s.name,
      rps: s.rps,
      p50_us: s.p50_us,
      p90_us: s.p90_us,
      p99_us: s.p99_us,
      p999_us: s.p999_us,
      cpu_s_per_1k: s.cpu_s_per_1k,
      rss_mb: s.rss_mb,
      phase: s.phase,
      actual_rps: s.actual_rps,
      added_p50_us: s.added_p50_us,
      added_p90_us: s.added_p90_us,
      added_p99_us: s.added_p99_us,
      added_p999_us: s.added_p999_us,
      best: s.best,
      added_best: s.added_best,
      hwm_mb: s.hwm_mb,
      startup_ms: s.startup_ms,
      rounds: s.rounds,
      errors: s.errors,
    })),
    micro,
    targets: verdicts,
    skipped,
    peak_rps: macro?.peakRps ?? null,
    ramp: macro?.ramp ?? [],
    runs: macro?.runs ?? [],
    duration_s: Math.round((Date.now() - started) / 1000),
  };
  await mkdir(dirname(outPath), { recursive: true });
  await writeFile(outPath, JSON.stringify(json, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2) + "\n");
  await mkdir(dirname(mdPath), { recursive: true });
  await writeFile(mdPath, markdown);
  if (summaries.length > 0) {
    await mkdir(dirname(chartPath), { recursive: true });
    await writeFile(chartPath, latencyChartSvg(summaries, title));
    await writeFile(chartPath.replace(/\.svg$/, "") + ".png", latencyChartPng(summaries, title));
  }
  process.stdout.write("\n" + markdown + "\n");
  log(`wrote ${outPath}, ${mdPath}${summaries.length > 0 ? `, ${chartPath} and .png` : ""} (${json.duration_s} s in all)`);
  return 0;
}

// Ctrl-C or a kill: exit through process.exit, so the exit hooks of src/envoy/run.ts and fortio.ts kill the
// Envoys and fortios this run started.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    process.stderr.write(`bench: ${signal}, stopping\n`);
    process.exit(130);
  });
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
