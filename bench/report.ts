/**
 * What the benchmark prints and writes: the markdown tables, the targets of issue 4 with their verdicts, and the
 * latency chart (SVG written here, no dependencies).
 */
import type { VariantSummary } from "./macro.ts";
import type { MicroResult } from "./micro.ts";
import { Canvas, hexColor } from "./png.ts";
import { ratio } from "./stats.ts";

export interface TargetVerdict {
  target: string;
  measured: string;
  /** true met, false missed, null not measured in this run */
  met: boolean | null;
}

const fmt = (x: number | null | undefined, digits = 0): string =>
  x === null || x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(digits);

const signed = (x: number | null | undefined, digits = 0): string =>
  x === null || x === undefined || !Number.isFinite(x) ? "-" : `${x >= 0 ? "+" : ""}${x.toFixed(digits)}`;

/** The macro table of one phase. */
export function macroTable(summaries: VariantSummary[], phase: "knee" | "peak"): string {
  const rows = summaries.filter((s) => s.phase === phase);
  if (rows.length === 0) return "";
  const head =
    "| variant | rps (actual) | p50 µs | p90 µs | p99 µs | p99.9 µs | +p50 | +p90 | +p99 | +p99.9 | Envoy CPU s/1k req | RSS MB | start ms |\n" +
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  const body = rows
    .map(
      (s) =>
        `| ${s.name} | ${s.rps} (${fmt(s.actual_rps)}) | ${fmt(s.p50_us)} | ${fmt(s.p90_us)} | ${fmt(s.p99_us)} | ${fmt(s.p999_us)} | ` +
        `${signed(s.added_p50_us)} | ${signed(s.added_p90_us)} | ${signed(s.added_p99_us)} | ${signed(s.added_p999_us)} | ` +
        `${fmt(s.cpu_s_per_1k, 3)} | ${fmt(s.rss_mb, 0)} | ${fmt(s.startup_ms)} |` +
        (s.errors > 0 ? ` ${s.errors} errors` : ""),
    )
    .join("\n");
  return head + body + "\n";
}

/**
 * `--diagnose`: the filter's cost inside Envoy, step by step (CPU per request is the precise measure here; the
 * latency columns of the macro table carry the same steps with more noise).
 */
export function diagnoseTable(summaries: VariantSummary[], steps: { name: string; adds: string }[]): string {
  const rows = summaries.filter((s) => s.phase === "knee");
  const chain = [{ name: "baseline", adds: "no wasm filter" }, ...steps, { name: "wasm-10", adds: "the real filter (parse the ID, decide, pool the request state)" }];
  const lines: string[] = [];
  let prev: VariantSummary | undefined;
  for (const step of chain) {
    const s = rows.find((r) => r.name === step.name);
    if (s === undefined) continue;
    const cpuUs = s.cpu_s_per_1k * 1000;
    const delta = prev === undefined ? "-" : signed(cpuUs - prev.cpu_s_per_1k * 1000);
    lines.push(`| ${step.name} | ${step.adds} | ${cpuUs.toFixed(1)} | ${delta} | ${signed(s.added_p50_us)} |`);
    prev = s;
  }
  if (lines.length === 0) return "";
  return "| step | adds | Envoy CPU µs/req | change | +p50 µs |\n|---|---|---:|---:|---:|\n" + lines.join("\n") + "\n";
}

/** The least-disturbed estimate (minimum over rounds) of one phase. */
export function bestTable(summaries: VariantSummary[], phase: "knee" | "peak"): string {
  const rows = summaries.filter((s) => s.phase === phase);
  if (rows.length === 0) return "";
  return (
    "| variant | best p50 µs | best p90 µs | best p99 µs | best p99.9 µs | +p50 | +p90 | +p99 | +p99.9 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n" +
    rows
      .map(
        (s) =>
          `| ${s.name} | ${fmt(s.best.p50_us)} | ${fmt(s.best.p90_us)} | ${fmt(s.best.p99_us)} | ${fmt(s.best.p999_us)} | ` +
          `${signed(s.added_best.p50_us)} | ${signed(s.added_best.p90_us)} | ${signed(s.added_best.p99_us)} | ${signed(s.added_best.p999_us)} |`,
      )
      .join("\n") +
    "\n"
  );
}

/** The micro-benchmark table. */
export function microTable(micro: MicroResult[]): string {
  const head =
    "| rules | wasm ns/req | decision ns | host path ns/req | configure ms | table bytes | config bytes | VM memory MiB | heap growth B/1M req |\n" +
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  const body = micro
    .map(
      (m) =>
        `| ${m.rules === 0 ? "trivial" : m.rules} | ${fmt(m.ns_per_request)} | ${fmt(m.decision_ns ?? m.trivial_decision_ns)} | ${fmt(m.host_path_ns_per_request)} | ` +
        `${fmt(m.configure_ms, 2)} | ${m.table_bytes} | ${m.config_bytes} | ${fmt(m.vm_memory_bytes / 2 ** 20, 2)} | ${m.heap_growth_bytes_per_1m} |`,
    )
    .join("\n");
  return head + body + "\n";
}

/** The targets of issue 4, judged on this run. */
export function evaluateTargets(summaries: VariantSummary[], micro: MicroResult[]): TargetVerdict[] {
  const out: TargetVerdict[] = [];
  const knee = (name: string): VariantSummary | undefined => summaries.find((s) => s.phase === "knee" && s.name === name);
  const m = (rules: number): MicroResult | undefined => micro.find((x) => x.rules === rules);
  const na = (target: string, why: string): void => {
    out.push({ target, measured: why, met: null });
  };

  const w10 = knee("wasm-10");
  if (w10 && w10.added_p50_us !== null && w10.added_p99_us !== null) {
    // One decimal: a verdict must never contradict the figure printed beside it (+20.1 is over 20).
    const best = (x: number | null): string => ` (least-disturbed round: ${signed(x, 1)} µs)`;
    out.push({ target: "wasm-10 added p50 at 1000 rps <= 20 µs", measured: `${signed(w10.added_p50_us, 1)} µs${best(w10.added_best.p50_us)}`, met: w10.added_p50_us <= 20 });
    out.push({ target: "wasm-10 added p99 at 1000 rps <= 60 µs", measured: `${signed(w10.added_p99_us, 1)} µs${best(w10.added_best.p99_us)}`, met: w10.added_p99_us <= 60 });
  } else na("wasm-10 added latency at 1000 rps", "not measured (no wasm-10 or baseline run)");

  for (const [size, bound, label] of [["1k", 1.2, "<= 1.2x"], ["10k", 1, "below"]] as const) {
    const w = knee(`wasm-${size}`);
    const r = knee(`rbac-native-${size}`);
    if (w && r && w.added_p99_us !== null && r.added_p99_us !== null) {
      const met = bound === 1 ? w.added_p99_us < r.added_p99_us : w.added_p99_us <= bound * Math.max(r.added_p99_us, 0);
      out.push({
        target: `wasm-${size} added p99 ${label} rbac-native-${size}'s`,
        measured: `${signed(w.added_p99_us, 1)} µs vs ${signed(r.added_p99_us, 1)} µs`,
        met,
      });
    } else na(`wasm-${size} added p99 against rbac-native-${size}`, "not measured");
  }

  const m10 = m(10);
  const m100k = m(100_000);
  if (m10 && m100k && m10.decision_ns !== null && m100k.decision_ns !== null) {
    out.push({
      target: "wasm-100k decision time <= 1.2x wasm-10's",
      measured: `${m100k.decision_ns} ns vs ${m10.decision_ns} ns (${ratio(m100k.decision_ns, m10.decision_ns)})`,
      met: m100k.decision_ns <= 1.2 * m10.decision_ns,
    });
  } else na("wasm-100k decision time against wasm-10", "not measured");
  const w100k = knee("wasm-100k");
  if (w10 && w100k && w10.added_p99_us !== null && w100k.added_p99_us !== null) {
    out.push({
      target: "wasm-100k added p99 <= 1.2x wasm-10's",
      measured:
        `${signed(w100k.added_p99_us, 1)} µs vs ${signed(w10.added_p99_us, 1)} µs ` +
        `(least-disturbed rounds: ${signed(w100k.added_best.p99_us, 1)} vs ${signed(w10.added_best.p99_us, 1)} µs)`,
      met: w100k.added_p99_us <= 1.2 * Math.max(w10.added_p99_us, 0),
    });
  } else na("wasm-100k added p99 against wasm-10", "not measured");

  if (m10) out.push({ target: "wasm time per request at 10 rules <= 1 µs", measured: `${m10.ns_per_request} ns`, met: m10.ns_per_request <= 1000 });
  if (m100k) {
    out.push({ target: "wasm time per request at 100k rules <= 1.5 µs", measured: `${m100k.ns_per_request} ns`, met: m100k.ns_per_request <= 1500 });
    out.push({ target: "100k-rule table loads in < 50 ms", measured: `${m100k.configure_ms} ms`, met: m100k.configure_ms < 50 });
    out.push({
      target: "100k-rule table needs <= 8 MiB of VM memory",
      measured: `${(m100k.vm_memory_bytes / 2 ** 20).toFixed(2)} MiB`,
      met: m100k.vm_memory_bytes <= 8 * 2 ** 20,
    });
    out.push({
      target: "100k-rule configuration string < 1 MiB",
      measured: `${m100k.config_bytes} bytes (${((100 * m100k.config_bytes) / 2 ** 20).toFixed(1)}% of 1 MiB)`,
      met: m100k.config_bytes < 2 ** 20,
    });
  } else na("100k-rule table targets", "not measured");
  if (micro.length > 0) {
    const worst = Math.max(...micro.map((x) => x.heap_growth_bytes_per_1m));
    out.push({ target: "heap growth after warm-up over 1M requests: zero", measured: `${worst} bytes (largest of all tables)`, met: worst === 0 });
  }
  return out;
}

export function targetsTable(verdicts: TargetVerdict[]): string {
  return (
    "| target | measured | verdict |\n|---|---|---|\n" +
    verdicts.map((v) => `| ${v.target} | ${v.measured} | ${v.met === null ? "not measured" : v.met ? "met" : "**missed**"} |`).join("\n") +
    "\n"
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Chart

const PCTS = [
  { key: "p50_us", label: "p50", color: "#4e79a7" },
  { key: "p90_us", label: "p90", color: "#59a14f" },
  { key: "p99_us", label: "p99", color: "#f28e2b" },
  { key: "p999_us", label: "p99.9", color: "#e15759" },
] as const;

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** What the chart is made of, drawn by the SVG writer and the PNG rasterizer alike. */
type Prim =
  | { kind: "rect"; x: number; y: number; w: number; h: number; color: string; title?: string }
  | { kind: "line"; x1: number; y1: number; x2: number; y2: number; color: string }
  | { kind: "text"; x: number; y: number; text: string; size: number; anchor: "start" | "middle" | "end"; bold?: boolean; middle?: boolean };

/** Splits a variant name over two lines at its last "-" when it is long (`rbac-native` / `100k`). */
function labelLines(name: string): string[] {
  const cut = name.lastIndexOf("-");
  return name.length > 10 && cut > 0 ? [name.slice(0, cut), name.slice(cut + 1)] : [name];
}

/**
 * A grouped bar chart of latency percentiles per variant, one panel per phase, on a log scale (native RBAC with
 * 10k principals is three orders of magnitude slower than the rest).
 */
function chartPrimitives(summaries: VariantSummary[], title: string): { width: number; height: number; prims: Prim[] } {
  const phases = (["knee", "peak"] as const).filter((p) => summaries.some((s) => s.phase === p));
  const panelW = 920;
  const panelH = 300;
  const left = 70;
  const top = 60;
  const gap = 90;
  const width = left + panelW + 20;
  const height = top + phases.length * (panelH + gap);
  const values = summaries.flatMap((s) => PCTS.map((p) => s[p.key])).filter((v) => Number.isFinite(v) && v > 0);
  const lo = 10 ** Math.floor(Math.log10(Math.min(...values, 100)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...values, 1000)));
  const y = (v: number): number => panelH - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * panelH;
  const prims: Prim[] = [{ kind: "text", x: left, y: 24, text: title, size: 14, anchor: "start", bold: true }];
  PCTS.forEach((p, i) => {
    const x = left + panelW - 4 * 80 + i * 80;
    prims.push({ kind: "rect", x, y: 34, w: 12, h: 12, color: p.color }, { kind: "text", x: x + 16, y: 45, text: p.label, size: 12, anchor: "start" });
  });
  phases.forEach((phase, pi) => {
    const rows = summaries.filter((s) => s.phase === phase);
    const oy = top + 20 + pi * (panelH + gap);
    const rps = rows[0]?.rps ?? 0;
    prims.push({
      kind: "text", x: left, y: oy - 8, size: 12, anchor: "start", bold: true,
      text: `${phase === "knee" ? "below the knee" : "the baseline's peak rate"}: ${rps} rps; latency, log scale`,
    });
    for (let d = lo; d <= hi; d *= 10) {
      const yy = oy + y(d);
      prims.push(
        { kind: "line", x1: left, x2: left + panelW, y1: yy, y2: yy, color: "#dddddd" },
        { kind: "text", x: left - 6, y: yy, text: d >= 1e6 ? `${d / 1e6} s` : d >= 1000 ? `${d / 1000} ms` : `${d} µs`, size: 12, anchor: "end", middle: true },
      );
    }
    const groupW = panelW / Math.max(1, rows.length);
    const barW = Math.min(22, (groupW - 12) / PCTS.length);
    rows.forEach((s, i) => {
      const gx = left + i * groupW + (groupW - barW * PCTS.length) / 2;
      PCTS.forEach((p, j) => {
        const v = s[p.key];
        if (!Number.isFinite(v) || v <= 0) return;
        const yy = y(v);
        prims.push({ kind: "rect", x: gx + j * barW, y: oy + yy, w: barW - 2, h: panelH - yy, color: p.color, title: `${s.name} ${p.label}: ${v.toFixed(0)} µs` });
      });
      labelLines(s.name).forEach((line, k) => {
        prims.push({ kind: "text", x: left + i * groupW + groupW / 2, y: oy + panelH + 16 + k * 14, text: line, size: 11, anchor: "middle" });
      });
    });
    prims.push({ kind: "line", x1: left, x2: left + panelW, y1: oy + panelH, y2: oy + panelH, color: "#333333" });
  });
  return { width, height, prims };
}

/** The chart as SVG. */
export function latencyChartSvg(summaries: VariantSummary[], title: string): string {
  const { width, height, prims } = chartPrimitives(summaries, title);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
  ];
  for (const p of prims) {
    if (p.kind === "rect") {
      out.push(`<rect x="${p.x.toFixed(1)}" y="${p.y.toFixed(1)}" width="${p.w.toFixed(1)}" height="${p.h.toFixed(1)}" fill="${p.color}">${p.title ? `<title>${esc(p.title)}</title>` : ""}</rect>`);
    } else if (p.kind === "line") {
      out.push(`<line x1="${p.x1.toFixed(1)}" y1="${p.y1.toFixed(1)}" x2="${p.x2.toFixed(1)}" y2="${p.y2.toFixed(1)}" stroke="${p.color}"/>`);
    } else {
      out.push(
        `<text x="${p.x.toFixed(1)}" y="${p.y.toFixed(1)}" font-size="${p.size}" text-anchor="${p.anchor}"${p.bold ? ' font-weight="bold"' : ""}${p.middle ? ' dominant-baseline="middle"' : ""}>${esc(p.text)}</text>`,
      );
    }
  }
  out.push("</svg>");
  return out.join("\n") + "\n";
}

/** The same chart as a PNG (twice the SVG's pixel size, bitmap font). */
export function latencyChartPng(summaries: VariantSummary[], title: string): Buffer {
  const k = 2;
  const { width, height, prims } = chartPrimitives(summaries, title);
  const c = new Canvas(width * k, height * k);
  for (const p of prims) {
    if (p.kind === "rect") c.fillRect(p.x * k, p.y * k, p.w * k, p.h * k, hexColor(p.color));
    else if (p.kind === "line") c.line(p.x1 * k, p.y1 * k, p.x2 * k, p.y2 * k, hexColor(p.color));
    else {
      // The title at 3x when it fits, else 2x like the rest.
      const scale = p.size >= 14 && Canvas.textWidth(p.text, 3) <= c.width - p.x * k ? 3 : 2;
      // SVG's y is the baseline (or the middle); the bitmap font's y is its top.
      const top = p.middle ? p.y * k - 3.5 * scale : p.y * k - 7 * scale;
      c.text(p.x * k, top, p.text, [0, 0, 0], scale, p.anchor);
      if (p.bold) c.text(p.x * k + 1, top, p.text, [0, 0, 0], scale, p.anchor);
    }
  }
  return c.toPng();
}
