/**
 * The benchmark variants: one Envoy listener (HTTPS, client certificate required, no access log) in front of the
 * same upstream, differing only in the HTTP filters before the router (and, for the OPA variant, the external
 * authorizer those filters call).
 */
import { execFile } from "node:child_process";
import { mkdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { repoRoot } from "../dev/envoy/binary.ts";
import type { EnvoyObject } from "../src/envoy/render.ts";
import { wasmFilter } from "../src/envoy/render.ts";
import { rbacFilters } from "../src/compiler/emit/rbac.ts";
import { rbacMatcherFilters } from "../src/compiler/emit/rbac-matcher.ts";
import { extAuthzFilter, opaClusterConfig } from "./opa.ts";
import { abacBody, abacTable, benchMethod, benchPath, benchTable } from "./tables.ts";

const execFileAsync = promisify(execFile);

/**
 * - `baseline`: no filter (GET, and `baseline-post`: the ABAC row's POST with its body)
 * - `null`: a wasm module that does nothing (`wasm-null`), or only holds and buffers the body (`wasm-null-body`)
 * - `rbac-native`: Envoy's RBAC filter, `policies` form (`compile --emit rbac`)
 * - `rbac-matcher`: Envoy's RBAC filter, indexed `matcher` form (`compile --emit rbac-matcher`)
 * - `wasm`: this filter; `abac`: this filter with a CEL condition on the JSON body
 * - `opa`: OPA behind ext_authz (bench/opa-authz)
 * - `diagnostic`: the probes of `--diagnose`
 */
export type Family = "baseline" | "null" | "rbac-native" | "rbac-matcher" | "wasm" | "abac" | "opa" | "diagnostic";

/** What a variant's filters may refer to: the module and, for the OPA variant, the authorizer's port. */
export interface FilterContext {
  wasmPath: string;
  /** the external authorizer's gRPC port (variants with `authorizer`) */
  authorizerPort?: number;
}

export interface VariantSpec {
  /** e.g. `baseline`, `rbac-native-1k`, `wasm-10k` */
  name: string;
  family: Family;
  /** rule count of the table, null for baselines and null filters */
  rules: number | null;
  /** the HTTP filters before the router (built lazily: a 100k-rule RBAC config is large) */
  filters(ctx: FilterContext): EnvoyObject[];
  /** clusters the filters need besides the upstream's (the authorizer's) */
  clusters?(ctx: FilterContext): EnvoyObject[];
  /** an external authorizer run beside Envoy, its CPU counted with Envoy's (the rule count's data file) */
  authorizer?: { kind: "opa"; rules: number };
  /** the client certificate to use (a name in the bench PKI) */
  client: "bench-client" | "abac-client";
  method: string;
  path: string;
  /** request body (POST) and its content type */
  body?: { text: string; contentType: string };
  /** the variant its added latency is measured against (default `baseline`) */
  baseline?: string;
  /** a body the variant must deny for the client (checked once before measuring: the condition really runs) */
  deniedBody?: string;
}

/** Families whose variants decide: before measuring, their allowed and denied requests are checked. */
export const deciding: ReadonlySet<Family> = new Set<Family>(["rbac-native", "rbac-matcher", "wasm", "abac", "opa"]);

/** `1000` -> `1k`, `100000` -> `100k`. */
export function sizeLabel(n: number): string {
  return n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n);
}

const get = { client: "bench-client" as const, method: benchMethod, path: benchPath };

export function baselineVariant(): VariantSpec {
  return { name: "baseline", family: "baseline", rules: null, filters: () => [], ...get };
}

export function wasmVariant(n: number): VariantSpec {
  return {
    name: `wasm-${sizeLabel(n)}`,
    family: "wasm",
    rules: n,
    filters: (ctx) => [wasmFilter({ wasmPath: ctx.wasmPath, configuration: benchTable(n).config })],
    ...get,
  };
}

/** Envoy's RBAC filter with the same rules, `policies` form: one policy per rule, evaluated in turn. */
export function rbacVariant(n: number): VariantSpec {
  return { name: `rbac-native-${sizeLabel(n)}`, family: "rbac-native", rules: n, filters: () => rbacFilters(benchTable(n).ir()), ...get };
}

/** Envoy's RBAC filter with the same rules, indexed `matcher` form: a map keyed by the URI SAN. */
export function rbacMatcherVariant(n: number): VariantSpec {
  return { name: `rbac-matcher-${sizeLabel(n)}`, family: "rbac-matcher", rules: n, filters: () => rbacMatcherFilters(benchTable(n).ir()), ...get };
}

/** OPA behind ext_authz (gRPC) with the same rules as Rego data. */
export function opaVariant(n: number): VariantSpec {
  return {
    name: `opa-${sizeLabel(n)}`,
    family: "opa",
    rules: n,
    filters: () => [extAuthzFilter()],
    clusters: (ctx) => {
      if (ctx.authorizerPort === undefined) throw new Error("the OPA variant needs the authorizer's port");
      return [opaClusterConfig(ctx.authorizerPort)];
    },
    authorizer: { kind: "opa", rules: n },
    ...get,
  };
}

const post = { client: "abac-client" as const, method: "POST", path: benchPath, body: { text: abacBody, contentType: "application/json" } };

/**
 * The same POST with the same JSON body through Envoy without a filter (a body costs Envoy and the upstream more
 * than a GET).
 */
export function baselinePostVariant(): VariantSpec {
  return { name: "baseline-post", family: "baseline", rules: null, filters: () => [], ...post };
}

/** The ABAC variant: the config-service example's condition on the JSON body. Throws when it does not compile. */
export function abacVariant(): VariantSpec {
  const table = abacTable();
  return {
    name: "wasm-abac",
    family: "abac",
    rules: 1,
    // The body rule must see the body before the upstream does.
    filters: (ctx) => [wasmFilter({ wasmPath: ctx.wasmPath, configuration: table.config, allowOnHeadersStopIteration: true })],
    ...post,
    baseline: "wasm-null-body",
    deniedBody: abacBody.replace('"bench"', '"someone-else"'),
  };
}

/** The null wasm filter and its body-buffering twin (bench/null-filter/), and the probes of --diagnose. */
export const nullModules = [
  { name: "wasm-null", src: "null.ts", adds: "any wasm filter: Envoy's per-stream context and hook calls" },
  { name: "wasm-null-body", src: "null-body.ts", adds: "holding the headers and buffering the body until the end of the stream" },
] as const;

/** The diagnostic modules of bench/null-filter/, in the order each adds one thing to the previous one. */
export const probeModules = [
  { name: "wasm-null-hooks", src: "all-hooks.ts", adds: "the other HTTP hooks the real filter exports (request body and trailers), doing nothing" },
  { name: "probe-peer", src: "probe-peer.ts", adds: "proxy_get_property(connection.uri_san_peer_certificate) + malloc/free" },
  { name: "probe-headers", src: "probe-headers.ts", adds: "the request headers as one pair list (proxy_get_header_map_pairs)" },
  { name: "probe-metric", src: "probe-metric.ts", adds: "one proxy_increment_metric" },
  { name: "probe-record", src: "probe-record.ts", adds: "the decision record: one proxy_set_property of a 156-byte google.protobuf.Struct" },
] as const;

/** Builds the null filters and the probes into .cache/bench when missing or stale; returns their paths by name. */
export async function ensureNullFilters(log: (line: string) => void): Promise<Map<string, string>> {
  const srcDir = join(repoRoot, "bench", "null-filter");
  const outDir = join(repoRoot, ".cache", "bench");
  await mkdir(outDir, { recursive: true });
  const asc = join(repoRoot, "node_modules", "assemblyscript", "bin", "asc.js");
  const modules = [...nullModules, ...probeModules];
  const sources = ["base.ts", "hooks.ts", "host.ts", "asconfig.json", ...modules.map((m) => m.src)];
  const newest = Math.max(...(await Promise.all(sources.map(async (f) => (await stat(join(srcDir, f))).mtimeMs))));
  const out = new Map<string, string>();
  // asc takes a few seconds per module, mostly its own start: the modules build side by side.
  await Promise.all(modules.map(async (m) => {
    const dest = join(outDir, `${m.name}.wasm`);
    out.set(m.name, dest);
    const built = await stat(dest).catch(() => null);
    if (built !== null && built.mtimeMs >= newest) return;
    log(`building ${dest} from bench/null-filter/${m.src}`);
    try {
      await execFileAsync(process.execPath, [asc, join(srcDir, m.src), "--config", join(srcDir, "asconfig.json"), "--outFile", dest], { cwd: repoRoot });
    } catch (err) {
      throw new Error(`building bench/null-filter/${m.src} failed: ${((err as { stderr?: string }).stderr ?? String(err)).trim()}`);
    }
  }));
  return out;
}

/** The null filter (`wasm-null`, GET) and the body-buffering one (`wasm-null-body`, the ABAC row's POST). */
export function nullVariants(paths: Map<string, string>): VariantSpec[] {
  return [
    {
      name: "wasm-null", family: "null", rules: null, ...get,
      filters: () => [wasmFilter({ wasmPath: paths.get("wasm-null")!, configuration: "", vmId: "wasm-null" })],
    },
    {
      name: "wasm-null-body", family: "null", rules: null, ...post, baseline: "baseline-post",
      filters: () => [wasmFilter({ wasmPath: paths.get("wasm-null-body")!, configuration: "", vmId: "wasm-null-body", allowOnHeadersStopIteration: true })],
    },
  ];
}

/**
 * Diagnostic variants (`--diagnose`): the probes. Between `wasm-null` and `wasm-10` they split the filter's cost in
 * Envoy into exported no-op hooks, each host call the filter makes, and the filter's own work.
 */
export function probeVariants(paths: Map<string, string>): VariantSpec[] {
  return probeModules.map((m) => ({
    name: m.name,
    family: "diagnostic" as const,
    rules: null,
    filters: () => [wasmFilter({ wasmPath: paths.get(m.name)!, configuration: "", vmId: m.name })],
    ...get,
  }));
}
