/**
 * `npm run bench`: the filter against every alternative at its best, in the same run, at rates each sustains. See
 * docs/benchmarks.md.
 *
 *   npm run bench                       full run (about 75 minutes)
 *   npm run bench -- --quick            the same, shorter (under ten minutes on a fresh clone)
 *   npm run bench -- --out results.json --chart latency.svg --rounds 5
 *
 * Steps: build the filter, the null filters and the OPA authorizer (when stale), compile the tables (cached in
 * .cache/bench), the micro-benchmarks through the TypeScript host, then the macro benchmark (Envoy + fortio over
 * mTLS: capacity, latency rounds, two workers), the table updates under load, then the tables, the targets line,
 * the chart and the JSON.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { createHash } from "node:crypto";
import { copyFile, mkdir, readdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { parseArgs } from "node:util";
import { envoyVersion, findEnvoy, repoRoot } from "../dev/envoy/binary.ts";
import { validateEnvoyConfig } from "../dev/envoy/run.ts";
import { ensureWasm } from "../dev/envoy/wasm.ts";
import { checkCompose, composeConfigFile, composeFamilies, prepareCompose } from "./compose.ts";
import { findFortio } from "./fortio.ts";
import { runMacro, setUpBench, summarize, type CapacityRecord, type MacroResult, type RunRecord, type VariantSummary } from "./macro.ts";
import { runMicro, type MicroResult } from "./micro.ts";
import { ensureOpaAuthz } from "./opa.ts";
import { machineInfo } from "./proc.ts";
import {
  bestTable, capacityTable, diagnoseTable, evaluateTargets, kneeTable, latencyChartPng, latencyChartSvg, microTable, ownRateTable,
  Results, targetsLine, targetsTable, twoWorkersTable, updatesTable,
} from "./report.ts";
import { benchTable, ruleSizes } from "./tables.ts";
import { runUpdates, type UpdatePath, type UpdateRecord } from "./updates.ts";
import {
  abacVariant, baselinePostVariant, baselineVariant, ensureNullFilters, nullVariants, opaVariant, probeModules, probeVariants,
  rbacMatcherVariant, rbacVariant, wasmVariant, type VariantSpec,
} from "./variants.ts";

const execFileAsync = promisify(execFile);

const usage = `usage: npm run bench -- [options]

  --quick              short version of everything (2 rounds of 3 s, capacity in 4 steps of 1.5 s, native RBAC
                       with 100k principals left out, LDS updates left out, micro-benchmarks of 10 and 100k rules
                       with fewer requests)
  --rounds N           interleaved latency rounds (default 5; quick 2)
  --duration S         seconds per measured latency run (default 15; quick 3)
  --warmup S           seconds of unmeasured load after each Envoy start (default 3; quick 0.5)
  --step S             seconds per capacity step (default 4; quick 1.5)
  --rps N              the common latency rate (default 1000)
  --connections N      fortio connections (default 16)
  --concurrency N      Envoy --concurrency of the capacity and latency passes (default 1)
  --resolution SEC     fortio histogram resolution (default 0.00001, 10 µs)
  --only A,B           run only these variants (names as printed; baseline and wasm-null are always kept)
  --no-rbac-100k       leave out native RBAC (policies form) with 100k principals (left out by --quick)
  --no-two-workers     leave out the --concurrency 2 pass
  --no-updates         leave out the table updates under load
  --pin                pin Envoy to CPU 1 and fortio and OPA to CPU 0 (2+ core machines)
  --skip-micro         macro benchmark only
  --skip-macro         micro-benchmarks only
  --diagnose           add the probes of bench/null-filter/ and print where the filter's cost inside Envoy goes
  --profile            print CPU profiles of the hook path (builds a copy of the module with function names)
  --prepare-compose    only write out/bench/compose (Envoy configs and certificates for the k6 services of
                       docker-compose.yml), validate the configs with envoy --mode validate, and exit
  --compose-rules N    rules in the compose stack's tables (default 1000)
  --from FILE.json     measure nothing: render the tables, targets and chart again from a saved --out file
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

/** What a saved run holds (the `--out` JSON), for `--from`. */
interface SavedRun {
  machine: Record<string, unknown>;
  settings: Record<string, unknown> & { kneeRps: number; rounds: number; concurrency: number; connections: number; fortio?: string };
  micro: MicroResult[];
  runs: RunRecord[];
  capacity: CapacityRecord[];
  updates: UpdateRecord[];
  families: Record<string, string>;
  baselines: Record<string, string>;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean" },
      rounds: { type: "string" },
      duration: { type: "string" },
      warmup: { type: "string" },
      step: { type: "string" },
      rps: { type: "string" },
      connections: { type: "string" },
      concurrency: { type: "string" },
      resolution: { type: "string" },
      only: { type: "string" },
      "no-rbac-100k": { type: "boolean" },
      "no-two-workers": { type: "boolean" },
      "no-updates": { type: "boolean" },
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
    rounds: num(values.rounds, quick ? 2 : 5, "rounds"),
    // The variants that cannot sustain the common rate: their added latency is milliseconds to seconds.
    lastRounds: quick ? 1 : 3,
    durationSec: num(values.duration, quick ? 3 : 15, "duration"),
    warmupSec: num(values.warmup, quick ? 0.5 : 3, "warmup"),
    stepSec: num(values.step, quick ? 1.5 : 4, "step"),
    steps: quick ? 1 : 5,
    kneeRps: num(values.rps, 1000, "rps"),
    connections: num(values.connections, 16, "connections"),
    concurrency: num(values.concurrency, 1, "concurrency"),
    resolutionSec: num(values.resolution, 0.00001, "resolution"),
    twoWorkers: values["no-two-workers"] ? [] : ["baseline", "wasm-10", "wasm-100k", ...(quick ? [] : ["rbac-matcher-100k", "opa-100k"])],
    // To 100k rules from 10k, and back; LDS (the slower path: a new listener) in the full run only.
    updates: values["no-updates"] ? null : { updates: [[10_000, 100_000], [100_000, 10_000]] as [number, number][], paths: (quick ? ["ecds"] : ["ecds", "lds"]) as UpdatePath[] },
    pin: values.pin === true,
  };
  const outPath = resolve(values.out ?? join(repoRoot, "out", "bench", "results.json"));
  const chartPath = resolve(values.chart ?? join(repoRoot, "out", "bench", "latency.svg"));
  const mdPath = resolve(values.markdown ?? join(repoRoot, "out", "bench", "results.md"));
  const started = Date.now();

  // Variants, in the order every round runs them (and the tables list them).
  const plain: VariantSpec[] = [
    baselineVariant(),
    ...ruleSizes.filter((n) => n < 100_000 || !(quick || values["no-rbac-100k"])).map((n) => rbacVariant(n)),
    ...ruleSizes.map((n) => rbacMatcherVariant(n)),
    ...ruleSizes.map((n) => wasmVariant(n)),
    ...ruleSizes.map((n) => opaVariant(n)),
    baselinePostVariant(),
    abacVariant(),
  ];
  const baselineOf: Record<string, string> = { "wasm-null-body": "baseline-post", "wasm-abac": "wasm-null-body" };

  let micro: MicroResult[] = [];
  let macro: MacroResult | null = null;
  let updates: UpdateRecord[] = [];
  let machine: Record<string, unknown>;
  let familyOf: Record<string, string>;
  let order: string[];
  if (values.from !== undefined) {
    // Re-render a saved run: the same tables and chart as the run itself would print with this code.
    const saved = JSON.parse(await readFile(resolve(values.from), "utf8")) as SavedRun;
    Object.assign(settings, saved.settings);
    machine = saved.machine;
    micro = saved.micro ?? [];
    macro = { runs: saved.runs ?? [], capacity: saved.capacity ?? [], commandLines: { fortio: saved.settings.fortio ?? "" } };
    updates = saved.updates ?? [];
    familyOf = saved.families ?? {};
    Object.assign(baselineOf, saved.baselines ?? {});
    order = [...new Set([...macro.capacity.map((c) => c.variant), ...macro.runs.map((r) => r.variant)])];
    log(`rendering ${values.from} again (${macro.runs.length} runs, ${micro.length} micro rows)`);
  } else {
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

    const modules = await ensureNullFilters(log);
    let all: VariantSpec[] = [plain[0], ...nullVariants(modules), ...(values.diagnose ? probeVariants(modules) : []), ...plain.slice(1)];
    if (values.only !== undefined) {
      const wanted = new Set(values.only.split(",").map((x) => x.trim()).filter((x) => x !== ""));
      for (const w of wanted) if (!all.some((v) => v.name === w)) throw new Error(`--only: unknown variant "${w}" (known: ${all.map((v) => v.name).join(", ")})`);
      // The baselines a wanted variant is measured against stay, and so do the null filter and the probes.
      for (let changed = true; changed; ) {
        changed = false;
        for (const w of [...wanted]) {
          const b = baselineOf[w];
          if (b !== undefined && !wanted.has(b)) (wanted.add(b), (changed = true));
        }
      }
      all = all.filter((v) => v.name === "baseline" || v.name === "wasm-null" || v.family === "diagnostic" || wanted.has(v.name));
    }
    familyOf = Object.fromEntries(all.map((v) => [v.name, v.family]));
    order = all.map((v) => v.name);
    log(`spiffe-authz benchmark${quick ? " (quick)" : ""}: ${order.join(", ")}`);

    // Everything the run needs is built and compiled first: a variant that cannot be built fails the run here.
    const needsOpa = all.some((v) => v.authorizer !== undefined);
    const [opaBinary] = await Promise.all([
      needsOpa && !values["skip-macro"] ? ensureOpaAuthz(log) : Promise.resolve(undefined),
      values["skip-macro"] ? Promise.resolve() : findFortio(log).then(() => undefined),
    ]);
    for (const n of ruleSizes) benchTable(n, log);

    if (!values["skip-micro"]) {
      log("micro-benchmarks through the TypeScript host on build/release.wasm");
      micro = await runMicro({
        wasmPath,
        // --quick: the two sizes the targets compare.
        sizes: quick ? [10, 100_000] : [...ruleSizes],
        batchRequests: 20_000,
        batches: quick ? 5 : 15,
        // Five profiled runs in --quick too: with 2 runs of 100k requests the decision share came out 40% low at 10
        // rules (217-256 ns against 393-419 ns), which made the 10-vs-100k ratio meaningless.
        profileRuns: 5,
        profileRequests: quick ? 100_000 : 200_000,
        warmupRequests: 50_000,
        heapRequests: quick ? 300_000 : 1_000_000,
        configureRepeats: quick ? 3 : 7,
        printProfiles: values.profile === true,
        namedWasmPath: await namedBuild(log),
        log,
      });
    }

    if (!values["skip-macro"]) {
      const workDir = runDir;
      log(`macro benchmark: Envoy --concurrency ${settings.concurrency}, fortio -c ${settings.connections}; work files in ${workDir}`);
      const bench = await setUpBench({ workDir, connections: settings.connections, resolutionSec: settings.resolutionSec, pin: settings.pin ? { envoy: "1", load: "0" } : undefined, log });
      try {
        macro = await runMacro(
          {
            variants: all,
            rounds: settings.rounds,
            lastRounds: settings.lastRounds,
            concurrency: settings.concurrency,
            twoWorkers: settings.twoWorkers,
            connections: settings.connections,
            kneeRps: settings.kneeRps,
            durationSec: settings.durationSec,
            warmupSec: settings.warmupSec,
            stepSec: settings.stepSec,
            steps: settings.steps,
            resolutionSec: settings.resolutionSec,
            workDir,
            wasmPath,
            opaBinary,
            pin: settings.pin ? { envoy: "1", load: "0" } : undefined,
            log,
          },
          bench,
        );
        if (settings.updates !== null) {
          log(`table updates under load: ${settings.updates.paths.map((p) => p.toUpperCase()).join(" and ")}, ${settings.updates.updates.map(([a, b]) => `${a} -> ${b} rules`).join(" and ")}, at ${settings.kneeRps} rps`);
          updates = await runUpdates(
            {
              updates: settings.updates.updates,
              paths: [...settings.updates.paths],
              concurrency: settings.concurrency,
              rps: settings.kneeRps,
              durationSec: Math.max(4, settings.durationSec),
              warmupSec: settings.warmupSec,
              wasmPath,
              workDir,
              log,
            },
            bench,
          );
        }
      } finally {
        await bench.close();
      }
    }
  }

  const summaries: VariantSummary[] = macro === null ? [] : summarize(macro.runs, order, baselineOf, familyOf);
  const results = new Results(summaries, macro?.capacity ?? [], settings.kneeRps, baselineOf);
  const verdicts = evaluateTargets(results, micro, ruleSizes);
  const verdictLine = targetsLine(verdicts);
  const title = `spiffe-authz: latency through Envoy 1.40 (--concurrency ${settings.concurrency}), fortio over mTLS, ${settings.connections} connections, median of ${settings.rounds} round(s)`;

  const md: string[] = [];
  if (summaries.length > 0) {
    md.push(
      `### Capacity and cost: the highest rate each variant sustains on ${settings.concurrency} Envoy worker(s), CPU per request\n`,
      capacityTable(results),
      "`max rps sustained`: every request succeeds, fortio achieves at least 98% of the rate (less one interval per connection), " +
        "and the median latency stays within twice its value at a light load. " +
        `CPU per request at ${settings.kneeRps} rps, or at the highest rate sustained for a variant that cannot sustain ${settings.kneeRps} rps ` +
        "(Envoy's; the authorizer's beside it); `added CPU`: over the variant's baseline at the same rate (`wasm-abac` over " +
        "`wasm-null-body`, which buffers the same body).\n",
      `### Latency at ${settings.kneeRps} rps, median of ${settings.rounds} interleaved round(s)\n`,
      kneeTable(results),
      "`+pXX`: added latency over `baseline` in µs (median over rounds of the per-round difference); `wasm-null-body` is measured " +
        "against `baseline-post` (the same POST without a filter) and `wasm-abac` against `wasm-null-body`.\n",
    );
    const own = ownRateTable(results);
    if (own !== "") md.push(`### The variants that cannot sustain ${settings.kneeRps} rps, at a rate they sustain\n`, own, "Added latency over `baseline` at the same rate, in the same round.\n");
    md.push(
      `### Least-disturbed round at ${settings.kneeRps} rps (each percentile's minimum over rounds)\n`,
      "Other processes on a shared machine only ever add latency; the best round of each variant is the closest to a quiet machine's.\n",
      bestTable(results),
    );
    const two = twoWorkersTable(results);
    if (two !== "") md.push("### Two workers (`--concurrency 2`)\n", two, "Every worker has its own wasm VM and its own copy of the table.\n");
    if (summaries.some((x) => x.family === "diagnostic")) md.push(`### Where the filter's cost inside Envoy goes (--diagnose, ${settings.kneeRps} rps)\n`, diagnoseTable(results, probeModules));
  }
  if (updates.length > 0) md.push(`### Table updates under load (${settings.kneeRps} rps)\n`, updatesTable(updates));
  if (micro.length > 0) md.push("### Micro-benchmarks: build/release.wasm through the TypeScript host\n", microTable(micro));
  md.push("### Targets\n", targetsTable(verdicts), verdictLine + "\n");
  if (verdicts.some((v) => v.met === false) && !summaries.some((x) => x.family === "diagnostic")) {
    md.push("Where the time goes: `npm run bench -- --diagnose --only wasm-10 --no-two-workers --no-updates --skip-micro`.\n");
  }
  const markdown = md.join("\n");

  const capacityOf = (name: string): CapacityRecord | undefined => macro?.capacity.find((c) => c.variant === name && c.concurrency === settings.concurrency);
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
      family: s.family,
      rps: s.rps,
      p50_us: s.p50_us,
      p90_us: s.p90_us,
      p99_us: s.p99_us,
      p999_us: s.p999_us,
      cpu_s_per_1k: s.cpu_s_per_1k,
      authorizer_cpu_s_per_1k: s.authorizer_cpu_s_per_1k,
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
      max_rps: capacityOf(s.name)?.max_rps ?? null,
      // Whether the variant sustains the common latency rate (its latency is then at that rate, else at `rps`).
      sustained: s.phase === "knee",
    })),
    micro,
    targets: verdicts,
    targets_line: verdictLine,
    capacity: macro?.capacity ?? [],
    updates,
    families: familyOf,
    baselines: baselineOf,
    peak_rps: capacityOf("baseline")?.max_rps ?? null,
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
  log(verdictLine);
  log(`wrote ${outPath}, ${mdPath}${summaries.length > 0 ? `, ${chartPath} and .png` : ""} (${json.duration_s} s in all)`);
  return 0;
}

// Ctrl-C or a kill: exit through process.exit, so the exit hooks of dev/envoy/run.ts and fortio.ts kill the
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
