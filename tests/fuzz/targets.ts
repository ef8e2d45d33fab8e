// Fuzz targets on the shipped build/release.wasm, run in the TypeScript proxy-wasm host as Envoy would drive it.
// The invariants: no input traps the VM or makes it wait forever, every request gets a decision its explanation
// agrees with, a rejected configuration leaves the previous table serving, and memory stops growing once warm.
//
// - tables:  compiled tables (every golden case) with their body mutated (bit flips, bytes, u32 fields set to
//            boundary values, truncation, section directory edits), re-wrapped with a valid CRC (and deflated or
//            not, planar or not) so the mutation reaches the decoder and validator, not just the CRC check;
// - hooks:   random orders of the proxy-wasm hooks, unknown and reused context ids, configurations between them;
// - requests: random header maps (repeated, empty, huge, odd bytes), paths, identities (several URI SANs, forged
//            x-forwarded-client-cert), bodies, against policies that read all of it;
// - json:    the JSON body differential of tests/cel/json-fuzz.ts (body-parser, JSON.parse, other readers).

import { readdirSync, readFileSync, existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { toCheckResult } from "../../src/check/checker.ts";
import { type CompileResult, compileTexts } from "../../src/compiler/index.ts";
import { decodeEnvelope } from "../../src/compiler/decode.ts";
import { deflateRawSync } from "node:zlib";
import { configString, crc32, readDirectory, transposeSections } from "../../src/compiler/table.ts";
import { ProxyWasmHost, VmFailedError } from "../../src/host/index.ts";
import type { HttpRequest } from "../../src/host/index.ts";
import { Rng } from "./rng.ts";
import { runJsonFuzz } from "../cel/json-fuzz.ts";
import { fuzzProtobuf } from "./protobuf-differential.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export interface FuzzReport {
  target: string;
  seed: number;
  inputs: number;
  /** inputs the filter accepted (a table it loaded, a request it allowed, a configuration between hooks) */
  accepted: number;
  rejected: number;
  /** VM failures (traps, proc_exit): must be 0 */
  traps: string[];
  /** inputs slower than the hang threshold: must be 0 */
  hangs: string[];
  /** decisions whose explanation contradicts what the filter did: must be 0 */
  contradictions: string[];
  /** linear memory after warm-up and at the end (bytes) */
  memoryWarm: number;
  memoryEnd: number;
  /** why tables were rejected, by the first words of the message */
  reasons: Record<string, number>;
  ms: number;
}

/** Called every PROGRESS_EVERY inputs (the long-run watchdog listens to it). */
export let onProgress: ((target: string, inputs: number) => void) | null = null;
export function setProgress(fn: ((target: string, inputs: number) => void) | null): void {
  onProgress = fn;
}
const PROGRESS_EVERY = 1000;

/** A single input slower than this is reported as a hang (the slowest legitimate inputs take a few ms). */
const HANG_MS = 2000;

function newReport(target: string, seed: number): FuzzReport {
  return { target, seed, inputs: 0, accepted: 0, rejected: 0, traps: [], hangs: [], contradictions: [], memoryWarm: 0, memoryEnd: 0, reasons: {}, ms: 0 };
}

const wasmPath = path.join(ROOT, "build/release.wasm");
let wasmBytes: Uint8Array | null = null;
async function freshHost(): Promise<ProxyWasmHost> {
  wasmBytes ??= new Uint8Array(readFileSync(wasmPath));
  return ProxyWasmHost.load({ wasmBytes, allowOnHeadersStopIteration: true, logLevel: "error", maxLogEntries: 100 });
}

interface CaseTable {
  name: string;
  config: string;
  body: Uint8Array;
  requests: HttpRequest[];
}

/** Every golden case that compiles, with its requests as host requests. */
export function corpus(): CaseTable[] {
  const dir = path.join(ROOT, "tests/cases");
  const out: CaseTable[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).sort((a, b) => a.name.localeCompare(b.name))) {
    const name = entry.name;
    const d = path.join(dir, name);
    const files = readdirSync(d).filter((f) => f.endsWith(".yaml")).sort();
    if (files.length === 0 || existsSync(path.join(d, "expected-error.txt"))) continue;
    const workload = existsSync(path.join(d, "workload.json")) ? JSON.parse(readFileSync(path.join(d, "workload.json"), "utf8")) : undefined;
    const protos = readdirSync(d).filter((f) => f.endsWith(".proto")).map((f) => path.join(d, f));
    let compiled: CompileResult;
    try {
      compiled = compileTexts(files.map((f) => ({ file: f, text: readFileSync(path.join(d, f), "utf8") })), workload, { protos });
    } catch {
      continue;
    }
    const requests: HttpRequest[] = [];
    if (existsSync(path.join(d, "requests.jsonl"))) {
      for (const line of readFileSync(path.join(d, "requests.jsonl"), "utf8").split("\n")) {
        if (line.trim() === "") continue;
        const r = JSON.parse(line) as Record<string, unknown>;
        requests.push({
          peer: typeof r.peer === "string" ? r.peer : null, method: r.method as string | undefined, path: r.path as string | undefined,
          authority: r.authority as string | undefined, port: r.port as number | undefined,
          headers: Object.entries((r.headers ?? {}) as Record<string, string | string[]>).flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((x): [string, string] => [k, x])),
          body: typeof r.body === "string" ? r.body : typeof r.bodyBase64 === "string" ? new Uint8Array(Buffer.from(r.bodyBase64, "base64")) : undefined,
          jwtPayload: r.jwt as Record<string, unknown> | undefined,
        });
      }
    }
    out.push({ name, config: compiled.config, body: decodeEnvelope(Buffer.from(JSON.parse(compiled.config).table, "base64")).body, requests });
  }
  return out;
}

const INTERESTING_U32 = [0, 1, 2, 3, 4, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

function mutateBody(rng: Rng, body: Uint8Array): Uint8Array {
  let b = new Uint8Array(body);
  const n = 1 + rng.int(rng.chance(0.8) ? 3 : 12);
  for (let k = 0; k < n && b.length > 0; k++) {
    switch (rng.int(8)) {
      case 0: {
        const i = rng.int(b.length);
        b[i] ^= 1 << rng.int(8);
        break;
      }
      case 1:
        b[rng.int(b.length)] = rng.int(256);
        break;
      case 2:
      case 3: {
        // A u32 field (most of the format is u32 records): a boundary value, the body length, or nearby.
        if (b.length < 4) break;
        const i = Math.min(rng.int(b.length - 3) & ~3, b.length - 4);
        const v = rng.chance(0.7) ? rng.pick(INTERESTING_U32) : rng.chance(0.5) ? b.length + rng.int(9) - 4 : rng.u32();
        new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(i, v >>> 0, true);
        break;
      }
      case 4: {
        // The section directory: offsets and lengths of a section.
        if (b.length < 4) break;
        const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
        const count = dv.getUint32(0, true);
        if (count > 0 && count < 64 && 4 + count * 12 <= b.length) {
          const e = 4 + rng.int(count) * 12 + 4 * (1 + rng.int(2));
          dv.setUint32(e, rng.chance(0.5) ? rng.pick(INTERESTING_U32) : rng.int(b.length + 8), true);
        }
        break;
      }
      case 5:
        b = b.slice(0, rng.int(b.length));
        break;
      case 6: {
        const extra = rng.bytes(1 + rng.int(16));
        const out = new Uint8Array(b.length + extra.length);
        out.set(b);
        out.set(extra, b.length);
        b = out;
        break;
      }
      default: {
        // Copy a run of bytes over another place (repeats records, strings, varints).
        const len = 1 + rng.int(Math.min(32, b.length));
        const from = rng.int(b.length - len + 1);
        const to = rng.int(b.length - len + 1);
        b.copyWithin(to, from, from + len);
      }
    }
  }
  return b;
}

/**
 * The envelope of docs/table-format.md §2 around `stored` (the body as stored: byte-planar when `planar`), with a
 * valid CRC over the payload; `bodyLen` is what the header claims.
 */
function wrap(stored: Uint8Array, planar: boolean, deflate: boolean, bodyLen: number): Uint8Array {
  const payload = deflate ? deflateRawSync(stored) : Buffer.from(stored);
  const env = Buffer.alloc(24 + payload.length);
  env.write("SPAZ", 0, "latin1");
  env.writeUInt16LE(2, 4);
  env.writeUInt16LE((deflate ? 1 : 0) | (planar ? 2 : 0), 6);
  env.writeUInt32LE(bodyLen >>> 0, 16);
  env.writeUInt32LE(crc32(payload), 20);
  env.set(payload, 24);
  return env;
}

/**
 * A mutated table as the filter receives it: the body stored as the compiler stores it (planar or not), the
 * stored bytes mutated (what an attacker controls), then wrapped with a valid CRC so the mutation reaches the
 * decoder and the validators. Sometimes the header's own fields are mutated instead.
 */
function mutatedEnvelope(rng: Rng, body: Uint8Array): Uint8Array {
  const planar = rng.chance(0.7);
  const deflate = rng.chance(0.7);
  const stored = planar ? transposeSections(body, readDirectory(body), true) : body;
  if (rng.chance(0.1)) {
    const env = wrap(stored, planar, deflate, body.length);
    const dv = new DataView(env.buffer, env.byteOffset, env.byteLength);
    switch (rng.int(4)) {
      case 0: dv.setUint16(4, rng.pick([0, 1, 3, 0xffff]), true); break;
      case 1: dv.setUint16(6, rng.int(16), true); break;
      case 2: dv.setUint32(16, rng.pick(INTERESTING_U32), true); break;
      default: dv.setUint32(16, body.length + rng.int(64) - 32, true);
    }
    dv.setUint32(20, crc32(env.subarray(24)), true);
    return env;
  }
  const m = mutateBody(rng, stored);
  return wrap(m, planar, deflate, rng.chance(0.9) ? m.length : rng.pick(INTERESTING_U32));
}

function reasonKey(logs: { message: string }[]): string {
  const line = [...logs].reverse().find((l) => l.message.includes("rejected configuration"));
  if (!line) return "(no log line)";
  const why = line.message.replace(/^.*rejected configuration:\s*/, "");
  return why.replace(/\d+/g, "N").split(":").slice(0, 2).join(":").slice(0, 60);
}

function timed<T>(report: FuzzReport, what: () => string, fn: () => T): T {
  if (onProgress !== null && report.inputs % PROGRESS_EVERY === 0) onProgress(report.target, report.inputs);
  const start = performance.now();
  const r = fn();
  const ms = performance.now() - start;
  if (ms > HANG_MS) report.hangs.push(`${what()} took ${ms.toFixed(0)} ms`);
  return r;
}

/**
 * Checks one request result: no VM failure, and an action the explanation agrees with. `count` adds the decision
 * to accepted (allow) or rejected (deny).
 */
function checkResult(report: FuzzReport, host: ProxyWasmHost, req: HttpRequest, what: string, count = true): boolean {
  const r = timed(report, () => what, () => host.request(req));
  if (r.vmFailure) {
    report.traps.push(`${what}: ${r.vmFailure.reason}`);
    return false;
  }
  try {
    const c = toCheckResult(r);
    if (count && c.decision === "allow") report.accepted++;
    else if (count) report.rejected++;
  } catch (err) {
    report.contradictions.push(`${what}: ${(err as Error).message}`);
  }
  return true;
}

export async function fuzzTables(seed: number, iterations: number): Promise<FuzzReport> {
  const report = newReport("tables", seed);
  const started = performance.now();
  const cases = corpus();
  const rng = new Rng(seed);
  let host = await freshHost();
  const fallback = cases[0];
  host.configure(fallback.config);
  for (let i = 0; i < iterations; i++) {
    const c = rng.pick(cases);
    const what = `tables seed ${seed} iteration ${i} (case ${c.name})`;
    const env = mutatedEnvelope(rng, c.body);
    const config = rng.chance(0.05) ? configString(env).replace("\"}", `","headers":"continue"}`) : configString(env);
    host.clearLogs();
    if (process.env.FUZZ_TRACE) {
      console.error(what);
      (await import("node:fs")).writeFileSync(`${process.env.FUZZ_TRACE}.${i}`, config);
    }
    const ok = timed(report, () => what, () => host.configure(config));
    report.inputs++;
    if (host.failure) {
      report.traps.push(`${what}: ${host.failure.reason}`);
      host = await freshHost();
      host.configure(fallback.config);
      continue;
    }
    if (!ok) {
      report.rejected++;
      const k = reasonKey(host.logs);
      report.reasons[k] = (report.reasons[k] ?? 0) + 1;
    } else {
      report.accepted++;
      if (process.env.FUZZ_TRACE) (await import("node:fs")).writeFileSync(process.env.FUZZ_TRACE + ".accepted", config);
    }
    // Whatever table serves now (the mutated one, or the last good one), requests get decisions.
    const reqs = c.requests.length > 0 ? c.requests : [{ path: "/" }];
    for (let k = 0; k < 2; k++) {
      const req = rng.pick(reqs);
      if (process.env.FUZZ_TRACE) (await import("node:fs")).writeFileSync(process.env.FUZZ_TRACE + ".request", JSON.stringify(req, (_k, v) => v instanceof Uint8Array ? { b64: Buffer.from(v).toString("base64") } : v));
      const okReq = checkResult(report, host, req, `${what} request ${k}`, false);
      if (process.env.FUZZ_TRACE) console.error(`${what} request ${k} done`);
      if (!okReq) {
        host = await freshHost();
        host.configure(fallback.config);
        break;
      }
    }
    if (i === Math.min(2000, iterations >> 2)) report.memoryWarm = host.memoryBytes();
  }
  report.memoryEnd = host.memoryBytes();
  report.ms = performance.now() - started;
  return report;
}

const HOOK_POLICY = `apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata: {name: hooks}
spec:
  body: {maxBytes: 64}
  rules:
    - id: no-admin
      action: deny
      to: [{paths: ["/admin/*"]}]
    - id: json
      to: [{paths: ["/json"]}]
      condition: request.json.tenant == 'acme'
    - id: header
      when: [{key: "request.headers[x-tenant]", values: ["acme"]}]
    - id: audit
      action: audit
      to: [{methods: [POST]}]
`;

export async function fuzzHooks(seed: number, iterations: number): Promise<FuzzReport> {
  const report = newReport("hooks", seed);
  const started = performance.now();
  const rng = new Rng(seed);
  const good = compileTexts([{ file: "hooks.yaml", text: HOOK_POLICY }]).config;
  const other = compileTexts([{ file: "other.yaml", text: HOOK_POLICY.replace("acme", "beta") }]).config;
  let host = await freshHost();
  host.configure(good);
  const live: number[] = [];
  const rawLive: number[] = [];
  const EXPORTS = ["proxy_on_request_headers", "proxy_on_request_body", "proxy_on_request_trailers", "proxy_on_delete", "spiffe_authz_explain", "proxy_on_context_create"];
  for (let i = 0; i < iterations; i++) {
    const what = `hooks seed ${seed} iteration ${i}`;
    report.inputs++;
    try {
      timed(report, () => what, () => {
        const op = rng.int(12);
        if (op < 3 || live.length === 0) {
          const json = rng.chance(0.5);
          const id = host.createContext({
            peer: rng.chance(0.8) ? "spiffe://hooks.example.com/app/a" : null,
            method: rng.pick(["GET", "POST"]),
            path: rng.pick(["/json", "/admin/x", "/x", "/a/..%2Fb"]),
            headers: [["x-tenant", rng.pick(["acme", "beta"])], ...(json ? [["content-type", "application/json"] as [string, string]] : [])],
            body: json ? JSON.stringify({ tenant: rng.pick(["acme", "beta"]) }) : undefined,
          });
          live.push(id);
        } else if (op < 9) {
          const id = rng.pick(live);
          const step = rng.int(4);
          if (step === 0) host.onRequestHeaders(id, rng.chance(0.5));
          else if (step === 1) host.onRequestBody(id, rng.bytes(rng.int(80)), rng.chance(0.5));
          else if (step === 2) host.onRequestTrailers(id);
          else host.explain(id);
        } else if (op === 9) {
          const idx = rng.int(live.length);
          host.onDelete(live[idx]);
          live.splice(idx, 1);
        } else if (op === 10) {
          // Envoy never does this: exports called with ids it never created, or in odd orders.
          const name = rng.pick(EXPORTS);
          const id = rng.chance(0.5) ? 1000 + rng.int(1 << 20) : rng.pick([0, 1, ...live]);
          if (name === "proxy_on_delete" && live.includes(id)) return;
          host.unsafeCallExport(name, id, rng.pick([0, 1, 5, 0xffffffff]), rng.int(2));
          // Envoy deletes every context it made; do the same for the ids made up here, so memory measures the
          // filter, not contexts nobody would ever delete.
          if (id >= 1000 && !live.includes(id)) rawLive.push(id);
        } else {
          const ok = host.configure(rng.chance(0.3) ? "{\"table\":\"AAAA\"}" : rng.chance(0.5) ? good : other);
          if (ok) report.accepted++;
          else report.rejected++;
        }
      });
    } catch (err) {
      if (!(err instanceof VmFailedError)) throw err;
      report.traps.push(`${what}: ${host.failure?.reason}`);
      host = await freshHost();
      host.configure(good);
      live.length = 0;
      rawLive.length = 0;
    }
    if (live.length > 64) {
      for (const id of live.splice(0, 32)) host.onDelete(id);
    }
    if (rawLive.length > 64) {
      for (const id of rawLive.splice(0, 64)) host.unsafeCallExport("proxy_on_delete", id);
    }
    if (i === Math.min(5000, iterations >> 2)) report.memoryWarm = host.memoryBytes();
  }
  report.memoryEnd = host.memoryBytes();
  report.ms = performance.now() - started;
  return report;
}

const REQUEST_POLICY = `apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata: {name: requests}
spec:
  body: {maxBytes: 4096}
  trustDomains:
    strict.example.com: {require: [app]}
  rules:
    - id: no-admin-role
      action: deny
      when: [{key: "request.headers[x-role]", values: ["admin", "root*"]}]
    - id: no-legacy
      action: deny
      from: [{attributes: {app: legacy}}]
    - id: public
      to: [{methods: [GET, HEAD], paths: ["/public/*", "/api/{*}/items/{**}"]}]
    - id: tenant
      to: [{paths: ["/t/*"], hosts: ["*.example.com"]}]
      condition: request.headers['x-tenant'] == source.attributes.app && request.query.v != 'x'
    - id: json
      to: [{paths: ["/json"]}]
      condition: request.json.app == source.attributes.app
`;

const PEERS = [
  "spiffe://prod.example.com/app/web", "spiffe://prod.example.com/app/legacy", "spiffe://strict.example.com/app/a/app/b",
  "spiffe://strict.example.com/x", "spiffe://Prod.example.com/app/web", "https://x.example/", "spiffe://prod.example.com/app/web/",
];
const PATHS = ["/public/a", "/public/..%2Fadmin", "/api/v1/items/a/b", "/t/1?v=y", "/t/1?v=x&v=y", "/json", "/a\\b", "/%2e%2e/x", "/x;y", "/", ""];

function randomHeaderValue(rng: Rng): string {
  switch (rng.int(6)) {
    case 0: return "";
    case 1: return "admin";
    case 2: return "web";
    case 3: return "x".repeat(rng.int(5000));
    case 4: return String.fromCharCode(...Array.from({ length: rng.int(20) }, () => 0x21 + rng.int(0x5d)));
    default: return rng.pick(["root", "rootx", "adminx", "admin,x", "a\u00e9"]);
  }
}

export async function fuzzRequests(seed: number, iterations: number): Promise<FuzzReport> {
  const report = newReport("requests", seed);
  const started = performance.now();
  const rng = new Rng(seed);
  const config = compileTexts([{ file: "requests.yaml", text: REQUEST_POLICY }]).config;
  let host = await freshHost();
  host.configure(config);
  for (let i = 0; i < iterations; i++) {
    const what = `requests seed ${seed} iteration ${i}`;
    const headers: [string, string][] = [];
    for (let k = rng.int(8); k > 0; k--) headers.push([rng.pick(["x-role", "x-tenant", "x-forwarded-client-cert", "content-type", "x-other"]), randomHeaderValue(rng)]);
    const uris = rng.chance(0.15) ? [rng.pick(PEERS), rng.pick(PEERS)] : rng.chance(0.1) ? [] : [rng.pick(PEERS)];
    const req: HttpRequest = {
      peerUris: rng.chance(0.1) ? undefined : uris,
      mtls: rng.chance(0.1) ? false : undefined,
      xfcc: rng.pick(["sanitize-set", "sanitize-set", "append-forward", "sanitize", "forward-only"] as const),
      method: rng.pick(["GET", "HEAD", "POST", "get", ""]),
      path: rng.pick(PATHS) + (rng.chance(0.2) ? "?" + rng.pick(["q", "v=%FF", "v=a+b", "v[]=x"]) : ""),
      authority: rng.pick(["a.example.com", "A.EXAMPLE.COM:8443", "example.com.", "[::1]:443", ""]),
      headers,
      body: rng.chance(0.3) ? rng.pick(['{"app":"web"}', '{"app":"web","app":"x"}', "{", "\u00ff", JSON.stringify({ app: "x".repeat(5000) })]) : undefined,
    };
    report.inputs++;
    if (!checkResult(report, host, req, what)) {
      host = await freshHost();
      host.configure(config);
    }
    if (i === Math.min(5000, iterations >> 2)) report.memoryWarm = host.memoryBytes();
  }
  report.memoryEnd = host.memoryBytes();
  report.ms = performance.now() - started;
  return report;
}

/**
 * JSON bodies against the readers of tests/cel/json-readers.ts: a disagreement (the filter read another value
 * than a reader, or refused without the request's cause) is a contradiction.
 */
export async function fuzzJson(seed: number, iterations: number): Promise<FuzzReport> {
  const r = await runJsonFuzz({ seed, cases: iterations, progress: (n) => onProgress?.("json", n) });
  const line = (d: (typeof r.disagreements)[number]) => `json seed ${seed} case ${d.index}: ${d.what}; filter ${d.filter}; ${d.headers}; body ${d.body}`;
  return {
    target: "json", seed, inputs: r.cases, accepted: r.accepted,
    rejected: Object.values(r.rejected).reduce((a, b) => a + b, 0),
    traps: r.disagreements.filter((d) => d.class === "trap").map(line),
    hangs: r.slow.map((s) => `json seed ${seed} ${s}`),
    contradictions: r.disagreements.filter((d) => d.class !== "trap").map(line),
    memoryWarm: r.memoryBytes.start, memoryEnd: r.memoryBytes.end, reasons: r.rejected, ms: r.ms,
  };
}

/** The protobuf differential (tests/fuzz/protobuf-differential.ts): the filter against protobufjs and protobuf-es. */
function fuzzProtobufTarget(seed: number, iterations: number): Promise<FuzzReport> {
  return fuzzProtobuf(seed, iterations, (n) => onProgress?.("protobuf", n));
}

export const TARGETS = { tables: fuzzTables, hooks: fuzzHooks, requests: fuzzRequests, json: fuzzJson, protobuf: fuzzProtobufTarget } as const;
export type TargetName = keyof typeof TARGETS;
