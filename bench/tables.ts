/**
 * The one generator of benchmark policy tables, shared by the macro bench (Envoy + fortio), the micro-benchmarks
 * (TypeScript host) and the rbac-native variant (the same rules as Envoy RBAC).
 *
 * A table of N rules has N distinct principals: rule i allows `GET /echo*` to exactly one SPIFFE ID. Rule N-1
 * (the last one) names the benchmark client, so the request's principal matches the rule at the end of the
 * table: the worst case for an engine that walks rules in order (Envoy's RBAC evaluates its policies in name
 * order, and the zero-padded ids keep name order equal to rule order), and no help at all for an indexed one.
 *
 * Everything goes through the real compiler (`compileTexts`) from policy YAML, as a user's policies would.
 */
import { createHash } from "node:crypto";
import { type Dirent, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { compileTexts, decodeConfig, type TableIR } from "../src/compiler/index.ts";
import { repoRoot } from "../dev/envoy/binary.ts";

/** The trust domain of every benchmark identity. */
export const benchTrustDomain = "bench.example.org";

/** The SPIFFE ID in the benchmark client's certificate; the last rule of every generated table names it. */
export const benchClientId = `spiffe://${benchTrustDomain}/ns/bench/sa/client`;

/** The request every variant serves: fortio's echo handler. */
export const benchPath = "/echo";
export const benchMethod = "GET";

/** The table sizes every rule-count family runs with. */
export const ruleSizes = [10, 1_000, 10_000, 100_000] as const;

/** Width of the zero-padded rule number (ids sort in rule order up to 10^7 rules). */
const idWidth = 7;

/** The id of rule `i`. */
export function ruleId(i: number): string {
  return `r-${String(i).padStart(idWidth, "0")}`;
}

/** The principal of rule `i` of an `n`-rule table. */
export function rulePrincipal(i: number, n: number): string {
  if (i === n - 1) return benchClientId;
  return `spiffe://${benchTrustDomain}/ns/ns-${String(i % 1000).padStart(3, "0")}/sa/svc-${String(i).padStart(idWidth, "0")}`;
}

/** Policy YAML (our format) of an `n`-rule table, one AuthzPolicy with `n` ALLOW rules. */
export function rbacPolicyYaml(n: number): string {
  if (!Number.isInteger(n) || n < 1) throw new Error(`a benchmark table needs at least one rule (got ${n})`);
  const lines = [
    "apiVersion: spiffe-authz.dev/v1",
    "kind: AuthzPolicy",
    `metadata: {name: bench-${n}}`,
    "spec:",
    "  rules:",
  ];
  for (let i = 0; i < n; i++) {
    lines.push(
      `    - id: ${ruleId(i)}`,
      `      from: [{ids: ["${rulePrincipal(i, n)}"]}]`,
      `      to: [{methods: [${benchMethod}], paths: ["${benchPath}*"]}]`,
    );
  }
  return lines.join("\n") + "\n";
}

/**
 * The table whose decision is as trivial as a table can make it: one rule without `from` or `to` (it sits on the
 * engine's scan list and matches without reading anything). The micro-benchmark subtracts its hook time from the
 * others' to get the decision time alone.
 */
export function trivialPolicyYaml(): string {
  return [
    "apiVersion: spiffe-authz.dev/v1",
    "kind: AuthzPolicy",
    "metadata: {name: bench-trivial}",
    "spec:",
    "  rules:",
    "    - id: allow-all",
    "",
  ].join("\n");
}

/**
 * The config-service ABAC example: RBAC on the caller's `env`, then a CEL condition comparing the JSON body's
 * `appname` with the caller's `app` attribute.
 */
export function abacPolicyYaml(): string {
  return [
    "apiVersion: spiffe-authz.dev/v1",
    "kind: AuthzPolicy",
    "metadata: {name: bench-abac}",
    "spec:",
    "  rules:",
    "    - id: fetch-own-config",
    "      from: [{attributes: {env: prod}}]",
    `      to: [{methods: [POST], paths: ["${benchPath}*"]}]`,
    "      condition: request.json.appname == source.attributes.app",
    "",
  ].join("\n");
}

/** The identity the ABAC variant's client carries (its `app` equals the body's `appname`). */
export const abacClientId = `spiffe://${benchTrustDomain}/app/bench/env/prod`;
/** The JSON body the ABAC variant posts. */
export const abacBody = '{"appname":"bench","resource_id":"r1"}';

/** A compiled benchmark table. */
export interface BenchTable {
  /** `trivial` or the rule count */
  name: string;
  ruleCount: number;
  /** the plugin configuration string */
  config: string;
  tableHash: string;
  /** the decoded base64 of `config` (what the table costs on the wire, compressed) */
  envelope: Uint8Array;
  /** the uncompressed table body size in bytes (envelope header field bodyLen) */
  bodyBytes: number;
  /** the table IR, decoded from `config` on first use (the rbac-native variant needs it) */
  ir(): TableIR;
  /** how long the compiler took, or null when the table came from the cache */
  compileMs: number | null;
}

/** Compiled tables are cached here, keyed by the policy text and the compiler's own sources. */
export const tableCacheDir = join(repoRoot, ".cache", "bench", "tables");

let compilerDigest: string | undefined;

/** A digest of every source the compiler's output depends on: a cached table is stale once any of them changes. */
function compilerSourcesDigest(): string {
  if (compilerDigest !== undefined) return compilerDigest;
  const h = createHash("sha256");
  const walk = (dir: string): void => {
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) h.update(p.slice(repoRoot.length)).update("\0").update(readFileSync(p));
    }
  };
  for (const d of ["src/vocabulary", "src/compiler", "src/policy", "src/cel", "schemas/spiffe-authz"]) walk(join(repoRoot, d));
  compilerDigest = h.digest("hex");
  return compilerDigest;
}

const memo = new Map<string, BenchTable>();

function fromConfig(name: string, config: string, compileMs: number | null): BenchTable {
  const decoded = decodeConfig(config);
  let ir: TableIR | undefined;
  return {
    name,
    ruleCount: decoded.ir.rules.length,
    config,
    tableHash: decoded.tableHash,
    envelope: decoded.envelope,
    bodyBytes: decoded.body.length,
    ir: () => (ir ??= decodeConfig(config).ir),
    compileMs,
  };
}

/**
 * Compiles `yaml` with the real compiler, or takes the result from `.cache/bench/tables` when the same text was
 * compiled by the same compiler sources before (a 100,000-rule policy takes the YAML parser tens of seconds).
 */
function compileCached(name: string, yaml: string, log?: (line: string) => void): BenchTable {
  const hit = memo.get(name);
  if (hit !== undefined) return hit;
  const key = createHash("sha256").update(compilerSourcesDigest()).update("\0").update(yaml).digest("hex").slice(0, 24);
  const file = join(tableCacheDir, `${name}-${key}.json`);
  let table: BenchTable;
  if (existsSync(file)) {
    table = fromConfig(name, (JSON.parse(readFileSync(file, "utf8")) as { config: string }).config, null);
  } else {
    if (Number(name) >= 10_000) log?.(`compiling the ${name}-rule benchmark table (cached afterwards in ${tableCacheDir})`);
    const t0 = performance.now();
    const r = compileTexts([{ file: `bench-${name}.yaml`, text: yaml }]);
    const ms = performance.now() - t0;
    mkdirSync(tableCacheDir, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify({ config: r.config, tableHash: r.tableHash, compileMs: ms }));
    renameSync(tmp, file);
    table = fromConfig(name, r.config, ms);
  }
  memo.set(name, table);
  return table;
}

/** The `n`-rule table (compiled once per compiler version; see `compileCached`). */
export function benchTable(n: number, log?: (line: string) => void): BenchTable {
  return compileCached(String(n), rbacPolicyYaml(n), log);
}

/** The trivial table. */
export function trivialTable(): BenchTable {
  return compileCached("trivial", trivialPolicyYaml());
}

/** The ABAC table. Throws, with the compiler's diagnostics, when the example does not compile. */
export function abacTable(): BenchTable {
  try {
    return compileCached("abac", abacPolicyYaml());
  } catch (e) {
    throw new Error(`the ABAC example (bench/tables.ts abacPolicyYaml) does not compile: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/**
 * The identity of the table-update probe: rule 50,000 of the 100,000-rule table names it, no rule of the smaller
 * tables does. An update from 10k to 100k rules turns its 403 into 200, an update back turns it into 403 again.
 */
export const updateProbeId = rulePrincipal(50_000, 100_000);
