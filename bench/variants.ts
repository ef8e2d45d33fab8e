/**
 * The benchmark variants: one Envoy listener (HTTPS, client certificate required, no access log) in front of the
 * same upstream, differing only in the HTTP filters before the router.
 */
import { execFile } from "node:child_process";
import { mkdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { repoRoot } from "../src/envoy/binary.ts";
import type { EnvoyObject } from "../src/envoy/render.ts";
import { wasmFilter } from "../src/envoy/render.ts";
import { rbacFilters } from "../src/compiler/emit/rbac.ts";
import { abacBody, abacTable, benchMethod, benchPath, benchTable } from "./tables.ts";

const execFileAsync = promisify(execFile);

export type Family = "baseline" | "rbac-native" | "wasm" | "abac" | "diagnostic";

export interface VariantSpec {
  /** e.g. `baseline`, `rbac-native-1k`, `wasm-10k` */
  name: string;
  family: Family;
  /** rule count of the table, null for baseline */
  rules: number | null;
  /** the HTTP filters before the router (built lazily: a 100k-rule RBAC config is large) */
  filters(wasmPath: string): EnvoyObject[];
  /** the client certificate to use (a name in the bench PKI) */
  client: "bench-client" | "abac-client";
  method: string;
  path: string;
  /** request body (POST) and its content type */
  body?: { text: string; contentType: string };
  /** why the variant cannot run here, or undefined */
  skip?: string;
  /** the variant its added latency is measured against (default `baseline`) */
  baseline?: string;
  /** a body the variant must deny for the client (checked once before measuring: the condition really runs) */
  deniedBody?: string;
}

/** `1000` -> `1k`, `100000` -> `100k`. */
export function sizeLabel(n: number): string {
  return n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n);
}

export function baselineVariant(): VariantSpec {
  return { name: "baseline", family: "baseline", rules: null, filters: () => [], client: "bench-client", method: benchMethod, path: benchPath };
}

export function wasmVariant(n: number): VariantSpec {
  return {
    name: `wasm-${sizeLabel(n)}`,
    family: "wasm",
    rules: n,
    filters: (wasmPath) => [wasmFilter({ wasmPath, configuration: benchTable(n).config })],
    client: "bench-client",
    method: benchMethod,
    path: benchPath,
  };
}

export function rbacVariant(n: number): VariantSpec {
  return {
    name: `rbac-native-${sizeLabel(n)}`,
    family: "rbac-native",
    rules: n,
    filters: () => rbacFilters(benchTable(n).ir()),
    client: "bench-client",
    method: benchMethod,
    path: benchPath,
  };
}

/**
 * The baseline of the ABAC variant: the same POST with the same JSON body through Envoy without a filter (a body
 * costs Envoy and the upstream more than a GET; the ABAC row is measured against this, not against `baseline`).
 */
export function baselinePostVariant(): VariantSpec {
  return {
    name: "baseline-post",
    family: "baseline",
    rules: null,
    filters: () => [],
    client: "abac-client",
    method: "POST",
    path: benchPath,
    body: { text: abacBody, contentType: "application/json" },
  };
}

/** The ABAC variant, or the same with `skip` set when the compiler does not take the example yet. */
export function abacVariant(): VariantSpec {
  const t = abacTable();
  const spec: VariantSpec = {
    name: "wasm-abac",
    family: "abac",
    rules: 1,
    filters: (wasmPath) => {
      if ("skip" in t) throw new Error(t.skip);
      // The body rule must see the body before the upstream does (issue 3).
      return [wasmFilter({ wasmPath, configuration: t.table.config, allowOnHeadersStopIteration: true })];
    },
    client: "abac-client",
    method: "POST",
    path: benchPath,
    body: { text: abacBody, contentType: "application/json" },
    baseline: "baseline-post",
    deniedBody: abacBody.replace('"bench"', '"someone-else"'),
  };
  if ("skip" in t) spec.skip = t.skip;
  return spec;
}

/** The opa-envoy row is always left out here; this is the reason printed and written. */
export const opaSkipReason =
  "opa-envoy-plugin is not served by the Go module proxy here (403 on github.com/open-policy-agent/opa-envoy-plugin), so there is no OPA ext_authz row; see the anchors (OPA docs: handler p99 4.6 ms at 1000 rps) for other people's numbers";

/** The diagnostic modules of bench/null-filter/, in the order each adds one thing to the previous one. */
export const probeModules = [
  { name: "wasm-null", src: "null.ts", adds: "any wasm filter: Envoy's per-stream context and hook calls" },
  { name: "wasm-null-hooks", src: "all-hooks.ts", adds: "the no-op hooks the real filter exports (response headers/body/trailers, log, ...)" },
  { name: "probe-peer", src: "probe-peer.ts", adds: "proxy_get_property(connection.uri_san_peer_certificate) + malloc/free" },
  { name: "probe-headers", src: "probe-headers.ts", adds: "two proxy_get_header_map_value reads (:method, :path)" },
  { name: "probe-metric", src: "probe-metric.ts", adds: "one proxy_increment_metric" },
] as const;

/** Builds the diagnostic modules into .cache/bench when missing or stale; returns their paths by name. */
export async function ensureProbeFilters(log: (line: string) => void): Promise<Map<string, string>> {
  const srcDir = join(repoRoot, "bench", "null-filter");
  const outDir = join(repoRoot, ".cache", "bench");
  await mkdir(outDir, { recursive: true });
  const asc = join(repoRoot, "node_modules", "assemblyscript", "bin", "asc.js");
  const sources = ["base.ts", "hooks.ts", "host.ts", "asconfig.json", ...probeModules.map((m) => m.src)];
  const newest = Math.max(...(await Promise.all(sources.map(async (f) => (await stat(join(srcDir, f))).mtimeMs))));
  const out = new Map<string, string>();
  for (const m of probeModules) {
    const dest = join(outDir, `${m.name}.wasm`);
    out.set(m.name, dest);
    const built = await stat(dest).catch(() => null);
    if (built !== null && built.mtimeMs >= newest) continue;
    log(`building ${dest} from bench/null-filter/${m.src}`);
    await execFileAsync(process.execPath, [asc, join(srcDir, m.src), "--config", join(srcDir, "asconfig.json"), "--outFile", dest], { cwd: repoRoot });
  }
  return out;
}

/**
 * Diagnostic variants (`--diagnose`): the null filter and the probes. Against `baseline` and `wasm-10` they split
 * the filter's cost in Envoy into the price of any wasm filter, of exported no-op hooks, of each host call the
 * filter makes, and the filter's own work.
 */
export function probeVariants(paths: Map<string, string>): VariantSpec[] {
  return probeModules.map((m) => ({
    name: m.name,
    family: "diagnostic" as const,
    rules: null,
    filters: () => [wasmFilter({ wasmPath: paths.get(m.name)!, configuration: "", vmId: m.name })],
    client: "bench-client" as const,
    method: benchMethod,
    path: benchPath,
  }));
}
