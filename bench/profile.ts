/**
 * In-process CPU profiles (V8's sampling profiler through `node:inspector`), summarised by where the time went:
 * inside the wasm module (by function), inside the TypeScript host (src/host/), or elsewhere (the benchmark loop,
 * the runtime, GC). The micro-benchmarks use it to split the time of the hook path into wasm time and host time,
 * and `npm run bench -- --profile` prints the top functions so a missed target points at code.
 */
import { Session } from "node:inspector/promises";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export type Category = "wasm" | "host" | "gc" | "other";

export interface ProfileSummary {
  /** sampled time in ms, all categories */
  totalMs: number;
  /**
   * Self time in ms of wasm functions (trampolines excluded) called, directly or not, from a function whose name
   * ends with one of `inclusiveOf` (see `profile`), by that name.
   */
  inclusiveWasmMs: Map<string, number>;
  byCategory: Record<Category, number>;
  /** self time in ms per function, heaviest first */
  functions: { name: string; category: Category; ms: number }[];
}

function categorize(frame: ProfileNode["callFrame"]): Category {
  if (frame.url.startsWith("wasm://") || frame.functionName.startsWith("$")) return "wasm";
  if (frame.url.includes("/src/host/")) return "host";
  if (frame.functionName === "(garbage collector)") return "gc";
  return "other";
}

function frameName(frame: ProfileNode["callFrame"]): string {
  const cat = categorize(frame);
  if (cat === "wasm") return frame.functionName || "(anonymous wasm)";
  const file = frame.url.split("/").slice(-2).join("/");
  return `${frame.functionName || "(anonymous)"} ${file}:${frame.lineNumber + 1}`;
}

let session: Session | null = null;

/**
 * Runs `fn` under the sampling profiler (`intervalUs` between samples) and summarises the profile. Only one
 * profile runs at a time.
 */
export async function profile(fn: () => void, intervalUs = 100, inclusiveOf: string[] = []): Promise<ProfileSummary> {
  if (session === null) {
    session = new Session();
    session.connect();
  }
  await session.post("Profiler.enable");
  await session.post("Profiler.setSamplingInterval", { interval: intervalUs });
  await session.post("Profiler.start");
  let p: CpuProfile;
  try {
    fn();
  } finally {
    // Always stop, so a throwing fn does not leave the profiler running.
    ({ profile: p } = (await session.post("Profiler.stop")) as unknown as { profile: CpuProfile });
    await session.post("Profiler.disable");
  }
  return summarize(p, inclusiveOf);
}

/** Self time per function and per category of a V8 CPU profile. */
export function summarize(p: CpuProfile, inclusiveOf: string[] = []): ProfileSummary {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclusiveWasmMs = new Map<string, number>(inclusiveOf.map((n) => [n, 0]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    selfUs.set(p.samples[i], (selfUs.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const byCategory: Record<Category, number> = { wasm: 0, host: 0, gc: 0, other: 0 };
  const byName = new Map<string, { category: Category; ms: number }>();
  let total = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (node === undefined) continue;
    const frame = node.callFrame;
    // The profiler's own bookkeeping nodes.
    if (frame.functionName === "(idle)" || frame.functionName === "(program)" || frame.functionName === "(root)") continue;
    const category = categorize(frame);
    const ms = us / 1000;
    total += ms;
    byCategory[category] += ms;
    const name = frameName(frame);
    const prev = byName.get(name);
    if (prev === undefined) byName.set(name, { category, ms });
    else prev.ms += ms;
    // Wasm self time under the functions asked for (the host's JavaScript under them is not counted).
    if (inclusiveOf.length > 0 && category === "wasm" && !isTrampoline(frame.functionName)) {
      const seen = new Set<string>();
      for (let cur = parent.get(id); cur !== undefined; cur = parent.get(cur)) {
        const fname = byId.get(cur)?.callFrame.functionName ?? "";
        for (const want of inclusiveOf) {
          if (!seen.has(want) && (fname === want || fname.endsWith("/" + want))) {
            seen.add(want);
            inclusiveWasmMs.set(want, (inclusiveWasmMs.get(want) ?? 0) + ms);
          }
        }
      }
      // The function itself.
      const own = frame.functionName;
      for (const want of inclusiveOf) {
        if (!seen.has(want) && (own === want || own.endsWith("/" + want))) inclusiveWasmMs.set(want, (inclusiveWasmMs.get(want) ?? 0) + ms);
      }
    }
  }
  const functions = [...byName].map(([name, v]) => ({ name, ...v })).sort((a, b) => b.ms - a.ms);
  return { totalMs: total, byCategory, functions, inclusiveWasmMs };
}

/** V8's wasm<->JavaScript call stubs. */
export function isTrampoline(name: string): boolean {
  return /^(wasm-to-js|js-to-wasm)/.test(name);
}

/** The heaviest `n` functions as aligned text lines, with their share of the total. */
export function formatTop(summary: ProfileSummary, n = 15, filter?: (c: Category) => boolean): string[] {
  const rows = summary.functions.filter((f) => filter === undefined || filter(f.category)).slice(0, n);
  return rows.map((f) => {
    const pct = summary.totalMs > 0 ? (100 * f.ms) / summary.totalMs : 0;
    return `${pct.toFixed(1).padStart(5)}%  ${f.category.padEnd(5)}  ${f.name}`;
  });
}
