/**
 * Micro-benchmarks of build/release.wasm through the TypeScript proxy-wasm host (the module that ships, driven
 * the way Envoy drives it), on the same generated tables as the macro bench.
 *
 * Per table size:
 * - `configure_ms`: proxy_on_configure on a fresh VM (JSON wrapper, base64, inflate, validation, index), the
 *   median over fresh VMs after one discarded warm-up VM (V8's compilation of the module is not the table's cost;
 *   `configure_first_ms` is the first, colder call).
 * - `table_bytes` (the binary table as it travels, compressed), `config_bytes` (the configuration string),
 *   `body_bytes` (the table inflated), `vm_memory_bytes` (linear memory after configure: what the VM needs).
 * - the hook path of allowed requests (GET /echo from the principals of the table's last 16 rules, in turn),
 *   exactly as Envoy calls it: proxy_on_context_create, proxy_on_request_headers (peer read, decision),
 *   proxy_on_log, proxy_on_done, proxy_on_delete.
 *   `host_path_ns_per_request` is its wall time through the TypeScript host (median of interleaved batches).
 *   `ns_per_request` is the part spent in the module's own code: the host path times the share of CPU-profile
 *   samples whose innermost frame is a wasm function (V8's sampling profiler; the wasm<->JS trampolines and the
 *   host's JavaScript, which stand in for Envoy's C++, are counted apart as `boundary_ns` and `host_ns`).
 * - `decision_ns`: the wasm time spent inside the engine's `decide` (index lookups, candidate rules, predicate
 *   matching, the request view's bookkeeping for the method and path reads), without the host's time answering
 *   those reads: the share of profile samples whose innermost frame is a wasm function called from `decide`,
 *   times the host path. It needs function names, so it is taken on a build of the same sources with a name
 *   section (`asc --target release --debug`: the same optimisation, plus names). `trivial_decision_ns` of the
 *   trivial table (one rule without `from`/`to`) is the floor. `decision_host_path_ns` is the host-path wall time
 *   minus the trivial table's (it includes the host's answers to the method and path reads).
 * - heap: linear memory and the heap frontier (the highest non-zero byte below the allocator's tail: memory the
 *   allocator has ever handed out) after warm-up and again after 1,000,000 more requests.
 */
import { readFileSync } from "node:fs";
import { ProxyWasmHost, Wasm } from "../src/host/index.ts";
import type { PreparedRequest, WasmModule } from "../src/host/index.ts";
import { formatTop, isTrampoline, profile, type ProfileSummary } from "./profile.ts";
import { median, round } from "./stats.ts";
import { benchClientId, benchMethod, benchPath, benchTable, rulePrincipal, trivialTable, type BenchTable } from "./tables.ts";

export interface MicroOptions {
  wasmPath: string;
  /** rule counts to measure (the trivial table is always added as the reference) */
  sizes: number[];
  /** requests per timed batch */
  batchRequests: number;
  /** timed batches per size (interleaved across sizes) */
  batches: number;
  /** profiled runs per size (interleaved), and requests in each */
  profileRuns: number;
  profileRequests: number;
  /** requests before anything is measured */
  warmupRequests: number;
  /** requests between the two heap readings */
  heapRequests: number;
  /** fresh VMs configured per size (after one discarded) */
  configureRepeats: number;
  /** print the top functions of each profile */
  printProfiles: boolean;
  /** a build of the same sources with a name section: decision time and readable profiles */
  namedWasmPath: string;
  log: (line: string) => void;
}

export interface MicroResult {
  /** rule count; 0 for the trivial reference table */
  rules: number;
  table: string;
  ns_per_request: number;
  decision_ns: number | null;
  trivial_decision_ns: number;
  configure_ms: number;
  table_bytes: number;
  heap_growth_bytes_per_1m: number;
  host_path_ns_per_request: number;
  host_ns: number;
  boundary_ns: number;
  decision_host_path_ns: number | null;
  configure_first_ms: number;
  config_bytes: number;
  body_bytes: number;
  vm_memory_bytes: number;
  vm_memory_bytes_after_warmup: number;
  vm_memory_bytes_after_1m: number;
  heap_frontier_bytes_after_warmup: number;
  heap_frontier_bytes_after_1m: number;
  profile_shares: { wasm: number; boundary: number; host: number; other: number };
  top_wasm_functions: string[];
}

interface Subject {
  table: BenchTable;
  rules: number;
  host: ProxyWasmHost;
  request: PreparedRequest[];
  batchNs: number[];
  shares: { wasm: number; boundary: number; host: number; other: number }[];
  named: ProxyWasmHost;
  namedRequest: PreparedRequest[];
  decisionShares: number[];
  configureMs: number[];
  configureFirstMs: number;
  vmMemoryBytes: number;
  top: string[];
}

/**
 * The requests a micro-benchmark sends, in turn: the principals of the table's last rules (the last one is the
 * bench client of the macro bench). One principal's cost depends on where its key lands in the index's probe
 * sequence; rotating through the last 16 averages that luck out, so the figure is the table's, not one key's.
 */
function benchRequests(host: ProxyWasmHost, rules: number): PreparedRequest[] {
  const n = Math.max(1, rules);
  const out: PreparedRequest[] = [];
  for (let i = Math.max(0, n - 16); i < n; i++) {
    const peer = rules === 0 ? benchClientId : rulePrincipal(i, n);
    out.push(host.prepare({ peer, method: benchMethod, path: benchPath, authority: "127.0.0.1:10000" }));
  }
  return out;
}

/** Runs `n` requests through the whole hook path. */
function hookPath(host: ProxyWasmHost, requests: PreparedRequest[], n: number): void {
  const k = requests.length;
  for (let i = 0; i < n; i++) {
    const id = host.createContext(requests[i % k]);
    host.onRequestHeaders(id, true);
    host.onLog(id);
    host.onDone(id);
    host.onDelete(id);
  }
}

/**
 * The linear memory of a VM. The host keeps it private (it exposes only `memoryBytes()`); the heap frontier needs
 * the bytes, so this reads the field and fails clearly if the host changes shape.
 */
function linearMemory(host: ProxyWasmHost): Uint8Array {
  const memory = (host as unknown as { memory?: { buffer: ArrayBuffer } }).memory;
  if (memory === undefined) throw new Error("the host no longer has a `memory` field: the heap frontier cannot be read");
  return new Uint8Array(memory.buffer);
}

/**
 * The highest non-zero byte of linear memory, ignoring the last 64 bytes (the TLSF allocator's tail block lives at
 * the end of memory). Fresh pages are zero and the allocator hands out memory from the bottom of its big free
 * block, so this is the high-water mark of what the allocator has ever given out: it rises when requests leak.
 */
export function heapFrontier(host: ProxyWasmHost): number {
  const u8 = linearMemory(host);
  let i = u8.length - 65;
  while (i > 0 && u8[i] === 0) i--;
  return i + 1;
}

function nowNs(): bigint {
  return process.hrtime.bigint();
}

/** Share of samples by category, the trampolines split out of "wasm". */
function shares(s: ProfileSummary): { wasm: number; boundary: number; host: number; other: number } {
  let wasm = 0;
  let boundary = 0;
  for (const f of s.functions) {
    if (f.category !== "wasm") continue;
    if (isTrampoline(f.name)) boundary += f.ms;
    else wasm += f.ms;
  }
  const total = s.totalMs || 1;
  return {
    wasm: wasm / total,
    boundary: boundary / total,
    host: s.byCategory.host / total,
    other: (s.byCategory.other + s.byCategory.gc) / total,
  };
}

/** Runs the micro-benchmarks and returns one result per size (the trivial reference first). */
export async function runMicro(o: MicroOptions): Promise<MicroResult[]> {
  const module: WasmModule = await Wasm.compile(readFileSync(o.wasmPath));
  const namedModule: WasmModule = await Wasm.compile(readFileSync(o.namedWasmPath));
  const tables: { table: BenchTable; rules: number }[] = [
    { table: trivialTable(), rules: 0 },
    ...o.sizes.map((n) => ({ table: benchTable(n, o.log), rules: n })),
  ];

  // Configure: a discarded VM first, then fresh VMs, per table.
  const subjects: Subject[] = [];
  for (const { table, rules } of tables) {
    const times: number[] = [];
    let first = NaN;
    let vmMemoryBytes = 0;
    let host: ProxyWasmHost | null = null;
    for (let k = 0; k <= o.configureRepeats; k++) {
      const h = ProxyWasmHost.fromModule(module, { logLevel: "warn" });
      const t0 = nowNs();
      const ok = h.configure(table.config);
      const ms = Number(nowNs() - t0) / 1e6;
      if (!ok) throw new Error(`the filter rejected the ${table.name} table: ${h.logs.map((l) => l.message).join("; ")}`);
      if (k === 0) first = ms;
      else times.push(ms);
      vmMemoryBytes = h.memoryBytes();
      host = h;
    }
    const request = benchRequests(host!, rules);
    const named = ProxyWasmHost.fromModule(namedModule, { logLevel: "warn" });
    if (!named.configure(table.config)) throw new Error(`the named build rejected the ${table.name} table`);
    const namedRequest = benchRequests(named, rules);
    for (const req of request) {
      const check = host!.request(req);
      if (!check.continued) {
        throw new Error(`the ${table.name} table did not allow a bench request: ${JSON.stringify(check.explain ?? check.localReply)}`);
      }
    }
    subjects.push({
      table, rules, host: host!, request, batchNs: [], shares: [], configureMs: times, configureFirstMs: first,
      vmMemoryBytes, top: [], named, namedRequest, decisionShares: [],
    });
    o.log(
      `micro: ${table.name.padStart(7)} table: configure ${median(times).toFixed(2)} ms (first ${first.toFixed(2)} ms), ` +
        `${table.envelope.length} table bytes, ${table.config.length} config bytes, VM memory ${(vmMemoryBytes / 2 ** 20).toFixed(2)} MiB`,
    );
  }

  // Warm-up (V8 tiers the hot path up), then interleaved timed batches.
  for (const s of subjects) {
    hookPath(s.host, s.request, o.warmupRequests);
    hookPath(s.named, s.namedRequest, o.warmupRequests);
  }
  for (let b = 0; b < o.batches; b++) {
    for (const s of subjects) {
      const t0 = nowNs();
      hookPath(s.host, s.request, o.batchRequests);
      s.batchNs.push(Number(nowNs() - t0) / o.batchRequests);
    }
  }

  // Profiles, interleaved too, on the same VMs: the shipped module for the wasm share, the named build for the
  // decision and the function listing.
  for (let r = 0; r < o.profileRuns; r++) {
    for (const s of subjects) {
      const summary = await profile(() => hookPath(s.host, s.request, o.profileRequests), 50);
      s.shares.push(shares(summary));
      const named = await profile(() => hookPath(s.named, s.namedRequest, o.profileRequests), 50, ["decide"]);
      s.decisionShares.push((named.inclusiveWasmMs.get("decide") ?? 0) / (named.totalMs || 1));
      if (r === 0) {
        s.top = formatTop(named, 40, (c) => c === "wasm").filter((l) => !isTrampoline(l.replace(/^.*wasm\s+/, ""))).slice(0, 12);
        if (o.printProfiles) {
          o.log(`micro: profile of the hook path, ${s.table.name} table (self time, share of all samples, named build):`);
          for (const line of formatTop(named, 14)) o.log(`    ${line}`);
        }
      }
    }
  }

  const results: MicroResult[] = [];
  const wasmNs = (s: Subject): number => median(s.batchNs) * median(s.shares.map((x) => x.wasm));
  const decisionNs = (s: Subject): number => median(s.batchNs) * median(s.decisionShares);
  const reference = subjects[0];
  for (const s of subjects) {
    // Heap: after warm-up, then after heapRequests more.
    const memWarm = s.host.memoryBytes();
    const frontierWarm = heapFrontier(s.host);
    hookPath(s.host, s.request, o.heapRequests);
    const mem1m = s.host.memoryBytes();
    const frontier1m = heapFrontier(s.host);
    const growth = ((frontier1m - frontierWarm) * 1_000_000) / o.heapRequests;

    const hostPath = median(s.batchNs);
    const sh = {
      wasm: median(s.shares.map((x) => x.wasm)),
      boundary: median(s.shares.map((x) => x.boundary)),
      host: median(s.shares.map((x) => x.host)),
      other: median(s.shares.map((x) => x.other)),
    };
    const isRef = s === reference;
    // Paired differences, batch by batch (the batches of one round ran back to back).
    const pairedHostPath = isRef ? null : median(s.batchNs.map((ns, i) => ns - reference.batchNs[i]));
    results.push({
      rules: s.rules,
      table: s.table.name,
      ns_per_request: round(wasmNs(s), 0),
      decision_ns: isRef ? null : round(decisionNs(s), 0),
      trivial_decision_ns: round(decisionNs(reference), 0),
      configure_ms: round(median(s.configureMs), 2),
      table_bytes: s.table.envelope.length,
      heap_growth_bytes_per_1m: Math.round(growth),
      host_path_ns_per_request: round(hostPath, 0),
      host_ns: round(hostPath * sh.host, 0),
      boundary_ns: round(hostPath * sh.boundary, 0),
      decision_host_path_ns: pairedHostPath === null ? null : round(pairedHostPath, 0),
      configure_first_ms: round(s.configureFirstMs, 2),
      config_bytes: s.table.config.length,
      body_bytes: s.table.bodyBytes,
      vm_memory_bytes: s.vmMemoryBytes,
      vm_memory_bytes_after_warmup: memWarm,
      vm_memory_bytes_after_1m: mem1m,
      heap_frontier_bytes_after_warmup: frontierWarm,
      heap_frontier_bytes_after_1m: frontier1m,
      profile_shares: {
        wasm: round(sh.wasm, 3), boundary: round(sh.boundary, 3), host: round(sh.host, 3), other: round(sh.other, 3),
      },
      top_wasm_functions: s.top,
    });
    const r = results[results.length - 1];
    o.log(
      `micro: ${s.table.name.padStart(7)} table: ${r.ns_per_request} ns wasm of ${r.host_path_ns_per_request} ns through the host ` +
        `(decision ${r.decision_ns ?? "-"} ns), heap growth over ${o.heapRequests} requests ${r.heap_growth_bytes_per_1m} B/1M`,
    );
  }
  return results;
}
