/**
 * The OPA variant: OPA behind Envoy's `ext_authz` filter over gRPC, as OPA-Envoy users deploy it. The authorizer is
 * bench/opa-authz (Go: github.com/open-policy-agent/opa v1.22.4, go-control-plane envoy v1.40.0, grpc v1.85.0),
 * built here into .cache/bench/opa-authz from its committed go.mod/go.sum (the Go module cache lives in .cache/go,
 * shared with the test registry); the rules are bench/opa-authz/policy.rego with the table's rules as data.
 */
import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readdir, rename, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { TableIR } from "../src/compiler/index.ts";
import { repoRoot } from "../dev/envoy/binary.ts";
import { staticCluster, type EnvoyObject } from "../src/envoy/render.ts";

const execFileAsync = promisify(execFile);

export const opaSourceDir = join(repoRoot, "bench", "opa-authz");
export const opaPolicyPath = join(opaSourceDir, "policy.rego");
export const opaBinaryPath = join(repoRoot, ".cache", "bench", "opa-authz");
/** The decision the authorizer evaluates (opa-envoy-plugin's default path `envoy/authz/allow`). */
export const opaQuery = "data.envoy.authz.allow";
/** The Envoy cluster of the authorizer. */
export const opaCluster = "opa_authz";

const goCache = join(repoRoot, ".cache", "go");

function goEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GOMODCACHE: join(goCache, "mod"),
    GOCACHE: join(goCache, "build"),
    GOPATH: join(goCache, "path"),
    // Module files read-only by default would make .cache/ hard to delete; the toolchain on the machine is used.
    GOFLAGS: "-modcacherw -mod=readonly",
    GOTOOLCHAIN: "local",
  };
}

async function newestSource(): Promise<number> {
  let newest = 0;
  for (const f of await readdir(opaSourceDir)) {
    if (/\.(go|mod|sum)$/.test(f)) newest = Math.max(newest, (await stat(join(opaSourceDir, f))).mtimeMs);
  }
  return newest;
}

/**
 * Builds the authorizer when the binary is missing or older than its sources (about 70 s from a cold module cache
 * on the project's 2-core machine; a message says so). Throws with go's output when the build fails.
 */
export async function ensureOpaAuthz(log: (line: string) => void): Promise<string> {
  const built = await stat(opaBinaryPath).catch(() => null);
  if (built !== null && built.mtimeMs >= (await newestSource())) return opaBinaryPath;
  log(`building the OPA authorizer (bench/opa-authz, opa v1.22.4) into ${opaBinaryPath}; the first build downloads its modules into .cache/go (about 70 s)`);
  const started = Date.now();
  await mkdir(join(repoRoot, ".cache", "bench"), { recursive: true });
  const tmp = `${opaBinaryPath}.${process.pid}.tmp`;
  try {
    await execFileAsync("go", ["build", "-trimpath", "-o", tmp, "."], { cwd: opaSourceDir, env: goEnv(), timeout: 20 * 60_000, maxBuffer: 16 << 20 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === "ENOENT") throw new Error("the OPA variant needs the go command (Go 1.26) to build bench/opa-authz, and it was not found on PATH");
    throw new Error(`building bench/opa-authz failed:\n${(e.stderr ?? e.message).trim()}`);
  }
  await rename(tmp, opaBinaryPath);
  log(`built the OPA authorizer in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return opaBinaryPath;
}

interface OpaRule {
  id: string;
  methods: string[];
  exact_paths: string[];
  path_prefixes: string[];
}

/**
 * The table's rules as the data document of policy.rego: `{spiffe_authz: {principals: {<id>: [rule...]}}}`.
 * policy.rego covers what the benchmark's tables use: ALLOW rules with exact principals, exact methods and exact or
 * prefix paths, under the default deny. Anything else is refused: the OPA row must decide as the table does.
 */
export function opaData(ir: TableIR): { spiffe_authz: { principals: Record<string, OpaRule[]> } } {
  const problems: string[] = [];
  if (ir.defaultAction !== "deny") problems.push("the table's default is allow");
  const principals: Record<string, OpaRule[]> = {};
  for (const rule of ir.rules) {
    const bad = (why: string): void => void problems.push(`rule "${rule.id}": ${why}`);
    if (rule.action !== "allow" || rule.dryRun) bad("not an enforced allow rule");
    if (rule.expr !== null || rule.conditions.length > 0) bad("has conditions");
    if (rule.operations.length !== 1) bad("needs exactly one operation");
    const r: OpaRule = { id: rule.id, methods: [], exact_paths: [], path_prefixes: [] };
    for (const p of rule.operations[0]?.predicates ?? []) {
      if (p.negate || p.ignoreCase) bad(`negated or case-insensitive "${p.field}"`);
      else if (p.field === "method" && p.patterns.every((x) => x.kind === "exact")) r.methods.push(...p.patterns.map((x) => x.value));
      else if (p.field === "path" && p.patterns.every((x) => x.kind === "exact" || x.kind === "prefix")) {
        for (const x of p.patterns) (x.kind === "exact" ? r.exact_paths : r.path_prefixes).push(x.value);
      } else bad(`field "${p.field}" with these patterns`);
    }
    if (r.methods.length === 0 || r.exact_paths.length + r.path_prefixes.length === 0) bad("needs methods and paths");
    for (const source of rule.sources) {
      const [p, ...rest] = source.predicates;
      if (rest.length > 0 || p?.field !== "principal" || p.negate || p.patterns.some((x) => x.kind !== "exact")) {
        bad("sources other than exact ids");
        continue;
      }
      for (const x of p.patterns) (principals[x.value] ??= []).push(r);
    }
    if (rule.sources.length === 0) bad("no sources");
  }
  if (problems.length > 0) throw new Error(`bench/opa-authz/policy.rego cannot express this table:\n  ${problems.slice(0, 5).join("\n  ")}`);
  return { spiffe_authz: { principals } };
}

/** Writes the data document of `ir` (once per table) and returns its path. */
export async function writeOpaData(ir: TableIR, dir: string, name: string): Promise<string> {
  const path = join(dir, `opa-data-${name}.json`);
  if (!existsSync(path)) {
    await mkdir(dir, { recursive: true });
    await writeFile(`${path}.tmp`, JSON.stringify(opaData(ir)));
    await rename(`${path}.tmp`, path);
  }
  return path;
}

/**
 * Envoy's ext_authz filter asking the authorizer over gRPC, as an OPA-Envoy deployment configures it: API v3, a
 * deny when the authorizer fails or times out (`failure_mode_allow: false`), no request body.
 */
export function extAuthzFilter(): EnvoyObject {
  return {
    name: "envoy.filters.http.ext_authz",
    typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
      transport_api_version: "V3",
      grpc_service: { envoy_grpc: { cluster_name: opaCluster }, timeout: "1s" },
      failure_mode_allow: false,
    },
  };
}

/** The cluster of the authorizer on 127.0.0.1:`port` (HTTP/2 for gRPC). */
export function opaClusterConfig(port: number): EnvoyObject {
  return staticCluster(opaCluster, { port }, true);
}

export interface OpaProcess {
  pid: number;
  /** from spawn to "serving" (data loaded, query prepared, port open) */
  startupMs: number;
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();
let hooked = false;

/** Starts the authorizer on 127.0.0.1:`port` with `dataPath` and waits until it serves. */
export async function startOpaAuthz(binary: string, port: number, dataPath: string, cpus?: string): Promise<OpaProcess> {
  const t0 = performance.now();
  const args = ["-addr", `127.0.0.1:${port}`, "-policy", opaPolicyPath, "-data", dataPath, "-query", opaQuery];
  const [cmd, argv] = cpus !== undefined ? ["taskset", ["-c", cpus, binary, ...args]] : [binary, args];
  const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  if (!hooked) {
    hooked = true;
    process.on("exit", () => {
      for (const c of children) c.kill("SIGKILL");
    });
  }
  const exited = new Promise<void>((resolve) => child.once("exit", () => {
    children.delete(child);
    resolve();
  }));
  let output = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the OPA authorizer did not start within 5 minutes:\n${output}`)), 5 * 60_000);
    const onData = (c: Buffer): void => {
      output = (output + c.toString("utf8")).slice(-20_000);
      if (/opa-authz: serving /.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the OPA authorizer exited (code ${code}) before serving:\n${output}`));
    });
  });
  return {
    pid: child.pid ?? -1,
    startupMs: performance.now() - t0,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * Decides requests with the authorizer's own Check path, without Envoy (`opa-authz -decide`): one
 * `{"principal","method","path"}` per request, "allow"/"deny" per answer.
 */
export async function opaDecide(binary: string, dataPath: string, requests: { principal: string; method: string; path: string }[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, ["-policy", opaPolicyPath, "-data", dataPath, "-query", opaQuery, "-decide"], { stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString("utf8")));
    child.stderr.on("data", (c: Buffer) => (err += c.toString("utf8")));
    child.once("error", reject);
    child.once("exit", (code) => {
      if (code !== 0) reject(new Error(`opa-authz -decide exited with ${code}: ${err}`));
      else resolve(out.split("\n").filter((l) => l !== ""));
    });
    child.stdin.end(requests.map((r) => JSON.stringify(r)).join("\n") + "\n");
  });
}
