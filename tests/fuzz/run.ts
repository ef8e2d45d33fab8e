// The long run of the fuzz targets: `npm run fuzz -- [--iterations N] [--seed S] [--target tables|hooks|requests|json|protobuf]`.
// Each target runs in a child process under a watchdog: an input that makes the filter spin (no progress for
// 60 s) is reported as a hang with the iteration it reached, instead of freezing the run. Prints one summary line
// per target and exits 1 on any trap, hang or contradiction.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { TARGETS, setProgress } from "./targets.ts";
import type { FuzzReport, TargetName } from "./targets.ts";

const STALL_MS = 60_000;

async function child(target: TargetName, seed: number, iterations: number): Promise<void> {
  setProgress((_t, n) => process.stdout.write(JSON.stringify({ progress: n }) + "\n"));
  const report = await TARGETS[target](seed, iterations);
  process.stdout.write(JSON.stringify({ report }) + "\n");
}

function runChild(target: TargetName, seed: number, iterations: number): Promise<FuzzReport> {
  return new Promise((resolve) => {
    const self = fileURLToPath(import.meta.url);
    const p = spawn(process.execPath, ["--import", "tsx", self, "--child", target, String(seed), String(iterations)], { stdio: ["ignore", "pipe", "inherit"] });
    let last = 0;
    let report: FuzzReport | null = null;
    let pending = "";
    let timer = setTimeout(stall, STALL_MS);
    function stall(): void {
      p.kill("SIGKILL");
      resolve({
        target, seed, inputs: last, accepted: 0, rejected: 0, traps: [],
        hangs: [`no progress for ${STALL_MS / 1000} s after input ${last} (seed ${seed}): rerun with --target ${target} --seed ${seed} --iterations ${last + 1000}`],
        contradictions: [], memoryWarm: 0, memoryEnd: 0, reasons: {}, ms: 0,
      });
    }
    p.stdout.on("data", (c: Buffer) => {
      pending += c.toString();
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const msg = JSON.parse(pending.slice(0, nl)) as { progress?: number; report?: FuzzReport };
        pending = pending.slice(nl + 1);
        if (msg.progress !== undefined) last = msg.progress;
        if (msg.report) report = msg.report;
        clearTimeout(timer);
        timer = setTimeout(stall, STALL_MS);
      }
    });
    p.on("exit", (code) => {
      clearTimeout(timer);
      if (report) resolve(report);
      else resolve({ target, seed, inputs: last, accepted: 0, rejected: 0, traps: [`the fuzz process exited with code ${code}`], hangs: [], contradictions: [], memoryWarm: 0, memoryEnd: 0, reasons: {}, ms: 0 });
    });
  });
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] === "--child") {
    await child(argv[1] as TargetName, Number(argv[2]), Number(argv[3]));
    return 0;
  }
  const opt = (name: string, dflt: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : dflt;
  };
  const iterations = Number(opt("iterations", "350000"));
  const seed = Number(opt("seed", String(Date.now() % 1_000_000_007)));
  const only = opt("target", "");
  const names = (Object.keys(TARGETS) as TargetName[]).filter((n) => only === "" || n === only);
  let bad = 0;
  let total = 0;
  for (const name of names) {
    const r = await runChild(name, seed, iterations);
    total += r.inputs;
    const problems = r.traps.length + r.hangs.length + r.contradictions.length;
    bad += problems;
    const top = Object.entries(r.reasons).sort((a, b) => b[1] - a[1]).slice(0, 5).map(([k, v]) => `${k} x${v}`).join("; ");
    console.log(`${name}: seed ${seed}, ${r.inputs} inputs in ${(r.ms / 1000).toFixed(1)} s, accepted ${r.accepted}, rejected ${r.rejected}, ` +
      `traps ${r.traps.length}, hangs ${r.hangs.length}, contradictions ${r.contradictions.length}, ` +
      `memory ${r.memoryWarm} -> ${r.memoryEnd} bytes${top ? `; top rejections: ${top}` : ""}`);
    for (const line of [...r.traps, ...r.hangs, ...r.contradictions].slice(0, 10)) console.log(`  ${line}`);
  }
  console.log(`total: ${total} inputs, ${bad} problems`);
  return bad === 0 ? 0 : 1;
}

process.exitCode = await main(process.argv.slice(2));
