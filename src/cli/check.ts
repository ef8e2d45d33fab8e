// `spiffe-authz check`: an offline what-if evaluator. It compiles the policy (or takes a compiled table), loads
// the shipped build/release.wasm into the TypeScript proxy-wasm host, configures it once and runs each request
// through the filter exactly as Envoy would, then reports what the filter did together with its explanation.
// The command reads flags and files and prints; src/check/ does the judging.

import { readFileSync } from "node:fs";
import path from "node:path";

import { formatFlags, parseArgs, UsageError } from "./args.ts";
import type { FlagSpec } from "./args.ts";
import { type CliIO, ensureWasm, processIO } from "./io.ts";
import { BATCH_FIELDS, checkHeaderName, parseBatchLine, RequestFormatError } from "../check/batch.ts";
import { Checker, ConfigurationRejected, InternalCheckError } from "../check/checker.ts";
import type { CheckRequest, CheckResult } from "../check/checker.ts";
import { DEFAULT_WASM_PATH } from "../paths.ts";

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
          if (err instanceof UsageError || err instanceof RequestFormatError) return { error: err.message };
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
    if (err instanceof UsageError || err instanceof RequestFormatError) {
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
