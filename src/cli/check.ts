// `spiffe-authz check`: an offline what-if evaluator. It compiles the policy (or takes a compiled table), loads
// the shipped build/release.wasm into the TypeScript proxy-wasm host, configures it once and runs each request
// through the filter exactly as Envoy would, then reports what the filter did together with its explanation.

import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";

import { formatFlags, parseArgs, UsageError } from "./args.ts";
import type { FlagSpec } from "./args.ts";
import { DEFAULT_WASM_PATH, ProxyWasmHost } from "../host/index.ts";
import { PACKAGE_ROOT } from "../paths.ts";
import type { Explain, HttpRequest, RequestResult } from "../host/index.ts";


/** Where the CLI writes; tests pass their own. */
export interface CliIO {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  /** reads all of standard input (for `--batch -`) */
  readStdin(): Promise<string>;
}

export function processIO(): CliIO {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    readStdin: async () => {
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(c as Buffer);
      return Buffer.concat(chunks).toString("utf8");
    },
  };
}

/** A request as `check` takes it (flags or one batch line). */
export interface CheckRequest {
  /**
   * The client certificate's URI SAN, or all of them in order (a list; `[]`: a certificate without a URI SAN);
   * null or absent: no client certificate.
   */
  peer?: string | string[] | null;
  method?: string;
  path?: string;
  authority?: string;
  /** lower-cased by the host; pseudo-headers are not allowed here; a list value is one header line per element */
  headers?: Record<string, string | string[]>;
  body?: Uint8Array;
  /** destination port (default 443) */
  port?: number;
  /** TLS SNI (default: the authority's host name) */
  sni?: string;
  /**
   * The payload of a JWT that Envoy's jwt_authn verified (what `jwt.claims` reads; its `sub` is the principal
   * of a request without a client certificate). Absent: no verified token.
   */
  jwt?: Record<string, unknown>;
  /** the client certificate's first DNS SAN and its subject (what Envoy RBAC compares after the URI SAN) */
  peerDns?: string;
  peerSubject?: string;
  /** `source.address` (after x-forwarded-for handling, e.g. `203.0.113.7:0`) and `destination.address` */
  sourceAddress?: string;
  destinationAddress?: string;
}

/** One result line: the exact shape and key order of `check --json` and of each `--batch` output line. */
export interface CheckResult {
  decision: "allow" | "deny";
  status: number;
  grpcStatus: number | null;
  rule: string | null;
  reason: string;
  tableHash: string | null;
  peer: {
    valid: boolean;
    id: string | null;
    trustDomain: string | null;
    path: string | null;
    attributes: Record<string, unknown>;
  };
  /** The decision's reason code (the record's `reason`, docs/design.md "Reason codes"). */
  reasonCode: string;
  /** The AUDIT rules the request matched, in rule order. */
  audit: string[];
  /** The dry-run rules it matched, as `deny:<id>` or `allow:<id>`, in rule order. */
  dryRun: string[];
}

/** The filter did something its own explanation contradicts, or the VM failed: a bug, exit 1. */
export class InternalCheckError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InternalCheckError";
  }
}

/** Whether a plugin configuration is in `"headers": "continue"` mode (docs/table-format.md §1). */
function continuesHeaders(config: string): boolean {
  try {
    return (JSON.parse(config) as { headers?: unknown }).headers === "continue";
  } catch {
    return false; // the filter explains what is wrong with it
  }
}

/** The filter rejected the configuration (proxy_on_configure returned false). */
export class ConfigurationRejected extends Error {
  constructor(readonly why: string) {
    super(`the filter rejected the configuration: ${why}`);
    this.name = "ConfigurationRejected";
  }
}

/**
 * One configured filter VM, reused for every request (configure once; a batch of 10,000 requests runs in one
 * VM, as a worker thread of Envoy would).
 */
export class Checker {
  private constructor(readonly host: ProxyWasmHost) {}

  /** Loads the module and delivers `config`. Throws ConfigurationRejected when the filter refuses it. */
  static async create(config: string, opts: { wasmPath?: string } = {}): Promise<Checker> {
    // As the Envoy the configuration is meant for: our Envoy configs (src/envoy/render.ts) set
    // allow_on_headers_stop_iteration, so a decision that waits for the body gets it; a configuration in
    // `"headers": "continue"` mode is the one Istio's WasmPlugin delivers, without that option.
    const host = await ProxyWasmHost.load({
      wasmPath: opts.wasmPath ?? DEFAULT_WASM_PATH, logLevel: "info", allowOnHeadersStopIteration: !continuesHeaders(config),
    });
    if (!host.configure(config)) {
      const line = host.logs.map((l) => l.message).find((m) => m.includes("rejected configuration"));
      const why = line ? line.replace(/^.*rejected configuration:\s*/, "") : "proxy_on_configure returned false";
      throw new ConfigurationRejected(why);
    }
    return new Checker(host);
  }

  /** Runs one request through the filter and maps what it did to a result line. */
  check(req: CheckRequest): CheckResult {
    return toCheckResult(this.host.request(toHttpRequest(req)));
  }

  /**
   * Like check(), plus the audit and dry-run lines the filter logged for this request and where the principal
   * came from (the client certificate or the verified JWT's `sub`).
   */
  checkWithShadowLines(req: CheckRequest): { result: CheckResult; shadow: string[]; principalSource: string | null } {
    const r = this.host.request(toHttpRequest(req));
    const shadow = this.host.logs
      .filter((l) => l.contextId === r.contextId && /^spiffe-authz (audit|dry-run): /.test(l.message))
      .map((l) => l.message);
    const source = r.explain?.principalSource;
    return { result: toCheckResult(r), shadow, principalSource: typeof source === "string" ? source : null };
  }
}

/** The request Envoy would see for a `check` request. */
export function toHttpRequest(req: CheckRequest): HttpRequest {
  const peer = req.peer ?? null;
  const headers: [string, string][] = [];
  for (const [k, v] of Object.entries(req.headers ?? {})) {
    for (const one of Array.isArray(v) ? v : [v]) headers.push([k, one]);
  }
  return {
    ...(Array.isArray(peer) ? { peerUris: peer, mtls: true } : { peer }),
    // A DNS SAN or a subject means a client certificate, with or without a URI SAN.
    ...(req.peerDns !== undefined || req.peerSubject !== undefined ? { mtls: true } : {}),
    method: req.method ?? "GET",
    path: req.path ?? "/",
    authority: req.authority ?? "localhost",
    headers,
    body: req.body,
    port: req.port,
    sni: req.sni,
    jwtPayload: req.jwt,
    // istiod's RequestAuthentication has jwt_authn write the payload under `payload`, where Istio's RBAC reads it;
    // the filter's jwt.claims finds it there too.
    jwtPayloadKey: "payload",
    peerDns: req.peerDns,
    peerSubject: req.peerSubject,
    sourceAddress: req.sourceAddress,
    destinationAddress: req.destinationAddress,
  };
}

/** The codes of a refusal, a deny before any rule (`spiffe_authz_denied[<code>]`; docs/security.md). */
export const REFUSAL_CODES = ["multiple_uri_sans", "xfcc_missing", "xfcc_malformed", "ambiguous_path"] as const;

/**
 * The response details Envoy logs for a denial without a deciding rule, from its reason code (docs/design.md
 * "Decision output"): `no_table`, a refusal code, `default` when no ALLOW rule matched, else `default:<code>`.
 */
export function denialDetails(reasonCode: string): string {
  if (reasonCode === "no_table" || (REFUSAL_CODES as readonly string[]).includes(reasonCode)) return `spiffe_authz_denied[${reasonCode}]`;
  if (reasonCode === "no_allow_rule" || reasonCode === "default_deny") return "spiffe_authz_denied[default]";
  return `spiffe_authz_denied[default:${reasonCode}]`;
}

/**
 * Maps the filter's behaviour to a result line. decision and status come from what the filter did (continued
 * -> allow/200, local reply -> deny/its status); rule, reason, tableHash and peer from its explanation. When
 * the two disagree, or the VM failed, that is an internal error.
 */
export function toCheckResult(r: RequestResult): CheckResult {
  if (r.vmFailure) throw new InternalCheckError(`the filter's vm failed: ${r.vmFailure.reason}`);
  const e: Explain | null = r.explain;
  if (!e) throw new InternalCheckError("the module does not export spiffe_authz_explain");
  let decision: "allow" | "deny";
  let status: number;
  let grpcStatus: number | null = null;
  if (r.localReply) {
    decision = "deny";
    grpcStatus = r.localReply.grpcStatus;
    // What Envoy 1.40 sends: a gRPC denial is a trailers-only HTTP 200 carrying grpc-status.
    status = grpcStatus !== null ? 200 : r.localReply.status;
    const expected = e.rule !== null ? `spiffe_authz_denied[${e.rule}]` : denialDetails(String(e.reasonCode));
    if (r.localReply.details !== expected) {
      throw new InternalCheckError(`the filter replied with details "${r.localReply.details}" but explains rule ${JSON.stringify(e.rule)} and reason ${JSON.stringify(e.reasonCode)}`);
    }
  } else if (r.continued) {
    decision = "allow";
    status = 200;
  } else {
    throw new InternalCheckError(`the filter neither continued nor replied (explain says "${e.decision}")`);
  }
  if (e.decision !== decision) {
    throw new InternalCheckError(`the filter's action was "${decision}" but its explanation says "${e.decision}"`);
  }
  return {
    decision,
    status,
    grpcStatus,
    rule: e.rule,
    reason: e.reason,
    tableHash: e.tableHash,
    peer: {
      valid: e.peer.valid,
      id: e.peer.id,
      trustDomain: e.peer.trustDomain,
      path: e.peer.path,
      attributes: e.peer.attributes,
    },
    reasonCode: String(e.reasonCode),
    audit: Array.isArray(e.audit) ? (e.audit as string[]) : [],
    dryRun: Array.isArray(e.dryRun) ? (e.dryRun as string[]) : [],
  };
}

// -------------------------------------------------------------------------------------------------------------
// Batch lines

const BATCH_FIELDS = [
  "peer", "method", "path", "authority", "headers", "body", "bodyBase64", "port", "sni", "jwt", "peerDns", "peerSubject",
  "sourceAddress", "destinationAddress",
] as const;
/** Standard base64 with padding, checked without a regular expression (a 4 MiB body overflowed V8's regex stack). */
function isBase64(s: string): boolean {
  if (s.length % 4 !== 0) return false;
  let pad = 0;
  if (s.endsWith("==")) pad = 2;
  else if (s.endsWith("=")) pad = 1;
  for (let i = 0; i < s.length - pad; i++) {
    const c = s.charCodeAt(i);
    const ok = (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 43 || c === 47;
    if (!ok) return false;
  }
  return true;
}

function checkHeaderName(name: string, where: string): string {
  if (name.startsWith(":")) {
    throw new UsageError(`${where}pseudo-header "${name}" cannot be set as a header; use method, path or authority`);
  }
  if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name)) throw new UsageError(`${where}invalid header name "${name}"`);
  return name.toLowerCase();
}

/** Parses one batch line. `where` prefixes messages, e.g. `requests.jsonl:3: `. */
export function parseBatchLine(line: string, where: string): CheckRequest {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (err) {
    throw new UsageError(`${where}not valid JSON: ${(err as Error).message}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new UsageError(`${where}a request must be a JSON object`);
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!(BATCH_FIELDS as readonly string[]).includes(k)) {
      throw new UsageError(`${where}unknown field "${k}" (fields: ${BATCH_FIELDS.join(", ")})`);
    }
  }
  const str = (k: string): string | undefined => {
    if (o[k] === undefined) return undefined;
    if (typeof o[k] !== "string") throw new UsageError(`${where}field "${k}" must be a string`);
    return o[k] as string;
  };
  const req: CheckRequest = {};
  if (Array.isArray(o.peer)) {
    if (!o.peer.every((u) => typeof u === "string")) throw new UsageError(`${where}field "peer" must be a string or a list of strings`);
    req.peer = o.peer as string[];
  } else if (o.peer !== undefined && o.peer !== null) {
    req.peer = str("peer");
  }
  req.method = str("method");
  req.path = str("path");
  req.authority = str("authority");
  req.sni = str("sni");
  req.peerDns = str("peerDns");
  req.peerSubject = str("peerSubject");
  req.sourceAddress = str("sourceAddress");
  req.destinationAddress = str("destinationAddress");
  if (o.port !== undefined) {
    if (!Number.isInteger(o.port) || (o.port as number) < 1 || (o.port as number) > 65535) {
      throw new UsageError(`${where}field "port" must be an integer from 1 to 65535`);
    }
    req.port = o.port as number;
  }
  if (o.headers !== undefined) {
    if (typeof o.headers !== "object" || o.headers === null || Array.isArray(o.headers)) {
      throw new UsageError(`${where}field "headers" must be an object of strings`);
    }
    const h: Record<string, string | string[]> = {};
    for (const [k, val] of Object.entries(o.headers as Record<string, unknown>)) {
      const ok = typeof val === "string" || (Array.isArray(val) && val.length > 0 && val.every((x) => typeof x === "string"));
      if (!ok) throw new UsageError(`${where}header "${k}" must have a string value, or a list of them (one line each)`);
      const name = checkHeaderName(k, where);
      const prev = h[name];
      const add = val as string | string[];
      h[name] = prev === undefined ? add : [...(Array.isArray(prev) ? prev : [prev]), ...(Array.isArray(add) ? add : [add])];
    }
    req.headers = h;
  }
  if (o.body !== undefined && o.bodyBase64 !== undefined) {
    throw new UsageError(`${where}give either "body" or "bodyBase64", not both`);
  }
  if (o.jwt !== undefined && o.jwt !== null) {
    if (typeof o.jwt !== "object" || Array.isArray(o.jwt)) throw new UsageError(`${where}field "jwt" must be an object (the verified token's claims)`);
    req.jwt = o.jwt as Record<string, unknown>;
  }
  const body = str("body");
  if (body !== undefined) req.body = new TextEncoder().encode(body);
  const b64 = str("bodyBase64");
  if (b64 !== undefined) {
    if (!isBase64(b64)) throw new UsageError(`${where}field "bodyBase64" is not valid base64`);
    req.body = new Uint8Array(Buffer.from(b64, "base64"));
  }
  return req;
}

// -------------------------------------------------------------------------------------------------------------
// The command

export const CHECK_FLAGS: FlagSpec[] = [
  { name: "policy", kind: "repeat", metavar: "FILE", help: "policy YAML (ours or Istio AuthorizationPolicy) or a compiled table" },
  { name: "peer", kind: "repeat", metavar: "ID", help: "the client certificate's URI SAN (again for a certificate with several); omit for no client certificate" },
  { name: "no-uri-san", kind: "boolean", help: "the client presents a certificate without a URI SAN" },
  { name: "method", kind: "value", metavar: "M", help: "request method (default GET)" },
  { name: "path", kind: "value", metavar: "P", help: "request path (default /)" },
  { name: "authority", kind: "value", metavar: "H", help: "request authority (default localhost)" },
  { name: "header", kind: "repeat", metavar: "\"K: V\"", help: "request header (the same name again: another line of it)" },
  { name: "body-file", kind: "value", metavar: "F", help: "request body from a file (adds content-length)" },
  { name: "content-type", kind: "value", metavar: "T", help: "content-type header (application/grpc for gRPC)" },
  { name: "port", kind: "value", metavar: "N", help: "destination port (default 443)" },
  { name: "sni", kind: "value", metavar: "NAME", help: "TLS server name (default: the authority's host)" },
  { name: "jwt-claims", kind: "value", metavar: "JSON", help: "claims of a JWT that jwt_authn verified (jwt.claims; its sub is the principal without --peer)" },
  { name: "peer-dns", kind: "value", metavar: "NAME", help: "the client certificate's first DNS SAN" },
  { name: "peer-subject", kind: "value", metavar: "DN", help: "the client certificate's subject as Envoy prints it (e.g. CN=web,O=acme)" },
  { name: "source-address", kind: "value", metavar: "IP:PORT", help: "source.address: the client address after x-forwarded-for handling (remoteIpBlocks)" },
  { name: "destination-address", kind: "value", metavar: "IP:PORT", help: "destination.address: the address the connection reached (destination.ip)" },
  { name: "proto", kind: "repeat", metavar: "FILE", help: ".proto file whose messages conditions read as request.grpc.message" },
  { name: "proto-path", kind: "repeat", metavar: "DIR", help: "directory .proto imports are resolved against" },
  { name: "trust-domain", kind: "value", metavar: "TD", help: "the mesh's trust domain for Istio principals (meshConfig.trustDomain; default cluster.local)" },
  { name: "trust-domain-alias", kind: "repeat", metavar: "TD", help: "a trust-domain alias (meshConfig.trustDomainAliases): Istio principals match in every one" },
  { name: "batch", kind: "value", metavar: "FILE.jsonl", help: "one request per line (- for stdin); one result per line out" },
  { name: "json", kind: "boolean", help: "print the result as JSON" },
  { name: "namespace", kind: "value", metavar: "NS", help: "the workload's namespace (selects Istio policies)" },
  { name: "label", kind: "repeat", metavar: "K=V", help: "a workload label (selects Istio policies)" },
  { name: "root-namespace", kind: "value", metavar: "NS", help: "Istio's root namespace (default istio-system)" },
  { name: "wasm", kind: "value", metavar: "FILE", help: "the filter module (default build/release.wasm)" },
  { name: "help", short: "h", kind: "boolean", help: "show this help" },
];

export const CHECK_USAGE = `usage: spiffe-authz check --policy FILE [--peer ID] [--method M] [--path P] [--authority H]
                          [--header "k: v"]... [--body-file F] [--content-type T] [--jwt-claims JSON] [--json]
                          [--peer-dns NAME] [--peer-subject DN] [--source-address IP:PORT]
                          [--destination-address IP:PORT] [--trust-domain TD] [--trust-domain-alias TD]...
       spiffe-authz check --policy FILE --batch FILE.jsonl|-
       (with --proto FILE... [--proto-path DIR]... for conditions on gRPC messages)

Runs requests through the real filter (build/release.wasm) in the TypeScript proxy-wasm host and shows what it
decides and why. A batch line is a JSON object with any of: ${BATCH_FIELDS.join(", ")}.

flags:
${formatFlags(CHECK_FLAGS)}
`;

interface LoadedPolicy {
  config: string;
  /** where the configuration came from, for messages */
  source: string;
  /** true when the user gave a compiled table (a rejection is their input's fault, exit 2) */
  givenTable: boolean;
}

function looksLikeTable(text: string, isCompiledTable: (t: string) => boolean): boolean {
  // A compiled table is the JSON plugin configuration; a broken one should reach the filter (which explains
  // what is wrong) rather than the YAML compiler.
  return isCompiledTable(text) || /^\s*\{\s*"(table|headers)"\s*:/.test(text);
}

async function loadPolicy(files: string[], args: ReturnType<typeof parseArgs>, io: CliIO): Promise<LoadedPolicy> {
  const compiler = await import("../compiler/index.ts");
  const texts = files.map((f) => {
    try {
      return readFileSync(f, "utf8");
    } catch {
      return null;
    }
  });
  const tables = texts.map((t) => t !== null && looksLikeTable(t, compiler.isCompiledTable));
  if (tables.some((t) => t)) {
    if (files.length > 1) throw new UsageError("a compiled table must be the only --policy");
    if (args.has("namespace") || args.has("label") || args.has("root-namespace")) {
      throw new UsageError("--namespace, --label and --root-namespace select policies to compile; a compiled table has none");
    }
    if (args.has("proto") || args.has("proto-path")) {
      throw new UsageError("--proto and --proto-path are for compiling conditions; a compiled table already holds them");
    }
    return { config: (texts[0] as string).trim(), source: files[0], givenTable: true };
  }
  const labels: Record<string, string> = {};
  for (const l of args.all("label")) {
    const eq = l.indexOf("=");
    if (eq <= 0) throw new UsageError(`--label "${l}" must look like "key=value"`);
    labels[l.slice(0, eq)] = l.slice(eq + 1);
  }
  const workload = args.has("namespace") || args.has("label") || args.has("root-namespace")
    ? { namespace: args.value("namespace"), labels, rootNamespace: args.value("root-namespace") }
    : undefined;
  const result = compiler.compileFiles(files, workload, {
      protos: args.all("proto"), protoPaths: args.all("proto-path"),
      trustDomain: args.value("trust-domain"), trustDomainAliases: args.all("trust-domain-alias"),
    });
  for (const w of result.warnings) io.stderr.write(`${w.file}:${w.line}:${w.col}: warning: ${w.message}\n`);
  return { config: result.config, source: files.join(", "), givenTable: false };
}

/** Builds build/release.wasm with `npm run build:release` when it is missing (what `check` runs). */
export function ensureWasm(wasmPath: string, io: CliIO): void {
  if (existsSync(wasmPath)) return;
  if (path.resolve(wasmPath) !== DEFAULT_WASM_PATH) throw new UsageError(`no such module "${wasmPath}"`);
  io.stderr.write("spiffe-authz: build/release.wasm is missing; building it with `npm run build:release`\n");
  const r = spawnSync("npm", ["run", "--silent", "build:release"], { cwd: PACKAGE_ROOT, encoding: "utf8" });
  if (r.status !== 0 || !existsSync(wasmPath)) {
    throw new InternalCheckError(`npm run build:release failed:\n${r.stdout ?? ""}${r.stderr ?? ""}`);
  }
}

function singleRequest(args: ReturnType<typeof parseArgs>): CheckRequest {
  const headers: Record<string, string | string[]> = {};
  for (const h of args.all("header")) {
    const colon = h.indexOf(":", 1);
    if (colon <= 0) throw new UsageError(`--header "${h}" must look like "name: value"`);
    const name = checkHeaderName(h.slice(0, colon).trim(), "--header: ");
    const value = h.slice(colon + 1).trim();
    const prev = headers[name];
    headers[name] = prev === undefined ? value : [...(Array.isArray(prev) ? prev : [prev]), value];
  }
  const ct = args.value("content-type");
  if (ct !== undefined) headers["content-type"] = ct;
  let body: Uint8Array | undefined;
  const bodyFile = args.value("body-file");
  if (bodyFile !== undefined) {
    try {
      body = new Uint8Array(readFileSync(bodyFile));
    } catch {
      throw new UsageError(`cannot read body file "${bodyFile}"`);
    }
  }
  let jwt: Record<string, unknown> | undefined;
  const claims = args.value("jwt-claims");
  if (claims !== undefined) {
    let v: unknown;
    try {
      v = JSON.parse(claims);
    } catch (err) {
      throw new UsageError(`--jwt-claims is not valid JSON: ${(err as Error).message}`);
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new UsageError("--jwt-claims must be a JSON object");
    jwt = v as Record<string, unknown>;
  }
  let port: number | undefined;
  const portText = args.value("port");
  if (portText !== undefined) {
    port = Number(portText);
    if (!/^\d+$/.test(portText) || port < 1 || port > 65535) throw new UsageError(`--port "${portText}" must be an integer from 1 to 65535`);
  }
  const peers = args.all("peer");
  if (args.flag("no-uri-san") && peers.length > 0) throw new UsageError("--no-uri-san and --peer exclude each other");
  return {
    peer: args.flag("no-uri-san") ? [] : peers.length > 1 ? peers : peers[0] ?? null,
    method: args.value("method"),
    path: args.value("path"),
    authority: args.value("authority"),
    headers,
    body,
    port,
    sni: args.value("sni"),
    peerDns: args.value("peer-dns"),
    peerSubject: args.value("peer-subject"),
    sourceAddress: args.value("source-address"),
    destinationAddress: args.value("destination-address"),
    jwt,
  };
}

function formatHuman(r: CheckResult, shadow: string[], principalSource: string | null = null): string {
  const head = [`${r.decision.toUpperCase()} ${r.status}`];
  if (r.grpcStatus !== null) head.push(`grpc-status=${r.grpcStatus}`);
  if (r.rule !== null) head.push(`rule=${r.rule}`);
  head.push(`reason: ${r.reason}`);
  const lines = [head.join("  ")];
  const p = r.peer;
  if (p.id === null) {
    lines.push("  peer: none (no client certificate)");
  } else if (!p.valid) {
    lines.push(`  peer: ${JSON.stringify(p.id)} (not a valid SPIFFE ID)`);
  } else {
    lines.push(`  peer: ${p.id}${principalSource === "jwt" ? " (the verified JWT's sub; no client certificate)" : ""}`);
    lines.push(`        trust domain ${JSON.stringify(p.trustDomain)}, path ${JSON.stringify(p.path)}`);
    const attrs = Object.entries(p.attributes).map(([k, v]) => `${k}=${String(v)}`);
    lines.push(`        attributes: ${attrs.length ? attrs.join(" ") : "(none)"}`);
  }
  lines.push(`  table: ${r.tableHash ?? "(none)"}`);
  for (const s of shadow) lines.push(`  ${s}`);
  return lines.join("\n") + "\n";
}

/** Entry point of `spiffe-authz check`. Returns the exit code: 0 ok, 2 usage or policy error, 1 internal error. */
export async function runCheck(argv: string[], io: CliIO = processIO()): Promise<number> {
  try {
    const args = parseArgs(argv, CHECK_FLAGS);
    if (args.flag("help")) {
      io.stdout.write(CHECK_USAGE);
      return 0;
    }
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument "${args.positionals[0]}"`);
    const policies = args.all("policy");
    if (policies.length === 0) throw new UsageError("--policy FILE is required");
    const batch = args.value("batch");
    if (batch !== undefined) {
      for (const f of ["peer", "no-uri-san", "method", "path", "authority", "header", "body-file", "content-type", "port", "sni", "jwt-claims", "json"]) {
        if (args.has(f)) throw new UsageError(`--${f} cannot be combined with --batch (put it in the batch lines)`);
      }
    }
    // Parse everything the user gave before doing any work, so a usage error produces no output.
    const single = batch === undefined ? singleRequest(args) : null;
    let batchRequests: (CheckRequest | { error: string })[] = [];
    if (batch !== undefined) {
      let text: string;
      if (batch === "-") {
        text = await io.readStdin();
      } else {
        try {
          text = readFileSync(batch, "utf8");
        } catch {
          throw new UsageError(`cannot read batch file "${batch}"`);
        }
      }
      const name = batch === "-" ? "<stdin>" : batch;
      const lines = text.split("\n");
      if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop(); // the final newline ends a line
      // A bad line gets an error result of its own; the other lines are still checked.
      batchRequests = lines.map((l, i) => {
        const where = `${name}:${i + 1}: `;
        try {
          if (l.trim() === "") throw new UsageError(`${where}empty line (one JSON request per line)`);
          return parseBatchLine(l.replace(/\r$/, ""), where);
        } catch (err) {
          if (err instanceof UsageError) return { error: err.message };
          throw err;
        }
      });
    }

    const loaded = await loadPolicy(policies, args, io);
    const wasmPath = path.resolve(args.value("wasm") ?? DEFAULT_WASM_PATH);
    ensureWasm(wasmPath, io);
    let checker: Checker;
    try {
      checker = await Checker.create(loaded.config, { wasmPath });
    } catch (err) {
      if (err instanceof ConfigurationRejected && loaded.givenTable) {
        io.stderr.write(`spiffe-authz check: ${loaded.source}: not a valid policy table: ${err.why}\n`);
        return 2;
      }
      throw err;
    }

    if (single) {
      const { result, shadow, principalSource } = checker.checkWithShadowLines(single);
      io.stdout.write(args.flag("json") ? JSON.stringify(result) + "\n" : formatHuman(result, shadow, principalSource));
      return 0;
    }
    let out: string[] = [];
    let badLines = 0;
    for (let i = 0; i < batchRequests.length; i++) {
      const req = batchRequests[i];
      if ("error" in req) {
        badLines++;
        out.push(JSON.stringify({ error: req.error }));
        continue;
      }
      let r: CheckResult;
      try {
        r = checker.check(req);
      } catch (err) {
        if (err instanceof InternalCheckError) err.message = `${batch === "-" ? "<stdin>" : batch}:${i + 1}: ${err.message}`;
        throw err;
      }
      out.push(JSON.stringify(r));
      if (out.length >= 1000) {
        io.stdout.write(out.join("\n") + "\n");
        out = [];
      }
    }
    if (out.length > 0) io.stdout.write(out.join("\n") + "\n");
    if (badLines > 0) {
      io.stderr.write(`spiffe-authz check: ${badLines} of ${batchRequests.length} batch lines could not be read (their results are {"error": ...})\n`);
      return 2;
    }
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`spiffe-authz check: ${err.message}\nrun "spiffe-authz check --help" for usage\n`);
      return 2;
    }
    if (err instanceof Error && err.name === "PolicyError" && Array.isArray((err as { diagnostics?: unknown }).diagnostics)) {
      io.stderr.write(err.message + "\n");
      return 2;
    }
    const msg = err instanceof Error ? err.message : String(err);
    io.stderr.write(`spiffe-authz check: internal error: ${msg}\n`);
    return 1;
  }
}
