/**
 * The differential Evaluator on the shipped filter: build/release.wasm in the TypeScript proxy-wasm host, the
 * conditions in a real policy table, the variables bound the only way the filter can see them: through a real
 * request (principal from the client certificate or the verified JWT's `sub`, headers, path and query, SNI), its
 * body (JSON, or a framed gRPC message) and the JWT payload in dynamic metadata.
 *
 * A generated case binds each variable independently (attributes unrelated to the ID, any content-type header);
 * a request cannot. `adapt` turns the case into one request and re-derives every binding from that request as
 * docs/cel.md defines the variables, so the reference evaluates what the filter sees.
 *
 * One table per batch: rule i carries case i's condition and matches only requests to destination port 1000+i
 * (the port is not a CEL variable, so it selects the rule without touching the inputs). The filter's decision is
 * the outcome: allowed by the rule = true, the default without an error = false, the default with "rule ... condition
 * failed: <message>" = that error (its class from the message) or, for "condition value is T, not bool", a value
 * of type T. Such a value is then confirmed by a probe table whose condition compares the expression with the
 * reference's value (same type, `==`; NaN by `x != x`, the sign of zero by `1.0 / x`).
 */
import { compileCondition, decodeSection, encodePrograms, programVariables, type CelProgram } from "../../src/cel/index.ts";
import type { TableIR, RuleIR } from "../../src/compiler/ir.ts";
import { encodeTable } from "../../src/compiler/table.ts";
import { ProxyWasmHost, prepareRequest, type HttpRequest } from "../../src/host/index.ts";
import type { DiffCase } from "./generate.ts";
import type { CelOutcome, CelValueOut, ErrorClass } from "./outcome.ts";

export type WasmCase = DiffCase & { readonly request: HttpRequest; readonly method: string };

const FIRST_PORT = 1000;
const SEGMENT = /^[a-zA-Z0-9._-]+$/;

/** The identity docs/cel.md derives from a SPIFFE ID: undefined when the ID is not valid. */
function identity(id: string): { td: string; attributes: Map<string, string> } | undefined {
  if (!id.startsWith("spiffe://") || id.length > 2048) return undefined;
  const rest = id.slice(9);
  const slash = rest.indexOf("/");
  const td = slash < 0 ? rest : rest.slice(0, slash);
  if (!/^[a-z0-9._-]+$/.test(td) || td.length > 255) return undefined;
  const segs = slash < 0 ? [] : rest.slice(slash + 1).split("/");
  if (segs.some((s) => !SEGMENT.test(s) || s === "." || s === "..")) return undefined;
  const attributes = new Map<string, string>();
  for (let i = 0; i + 1 < segs.length && i < 128; i += 2) if (!attributes.has(segs[i])) attributes.set(segs[i], segs[i + 1]);
  return { td, attributes };
}

function varOf(c: DiffCase, id: number) {
  return c.vars.find((v) => v.id === id);
}

function str(c: DiffCase, id: number): string | undefined {
  const v = varOf(c, id);
  return v?.kind === "string" ? v.value : undefined;
}

function entries(c: DiffCase, id: number): readonly (readonly [string, string])[] {
  const v = varOf(c, id);
  return v?.kind === "map" ? v.entries : [];
}

const dec = new TextDecoder();

/** One real request for the case, and the bindings the filter derives from it. */
export function adaptToRequest(c: DiffCase, grpcPath: string): WasmCase {
  const json = varOf(c, 10);
  const proto = varOf(c, 13);
  const claimsVar = varOf(c, 14);
  // The case reads one body kind: request.grpc.message when its bindings hold the message, else request.json.
  const grpc = /request\.grpc\.message/.test(c.expr);
  const bindings: Record<string, unknown> = {};

  // Principal: the certificate's URI SAN; without one, the verified JWT's sub when it is a SPIFFE ID.
  let peer = str(c, 0) ?? null;
  // has() on an unbound map is false in @bufbuild/cel and an error here (docs/cel.md): give such cases an identity.
  if (/has\(source\.attributes/.test(c.expr) && (peer === null || !identity(peer))) peer = "spiffe://prod.example.com/app/orders/env/prod";
  const claimsText = claimsVar?.kind === "json" ? (typeof claimsVar.text === "string" ? claimsVar.text : dec.decode(claimsVar.text)) : "{}";
  const claims = JSON.parse(claimsText) as Record<string, unknown>;
  bindings["jwt.claims"] = claims;
  let principal = peer !== null ? peer : typeof claims.sub === "string" ? claims.sub : null;
  const ident = principal !== null ? identity(principal) : undefined;
  if (peer === null && !ident) principal = null;
  if (ident && principal !== null) {
    bindings["source.id"] = principal;
    bindings["source.trust_domain"] = ident.td;
    bindings["source.attributes"] = ident.attributes;
  }

  // Path and query.
  const query = grpc ? [] : entries(c, 7);
  const basePath = grpc ? grpcPath : (str(c, 4) ?? "/");
  const qs = query.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&");
  const path = qs ? `${basePath}?${qs}` : basePath;
  bindings["request.path"] = path;
  bindings["request.query"] = new Map(query.map(([k, v]) => [k, v]));
  const method = str(c, 3) ?? "GET";
  bindings["request.method"] = method;
  const authority = str(c, 5) ?? "localhost";
  bindings["request.host"] = authority;

  // Body.
  let body: Uint8Array;
  if (grpc && proto?.kind === "proto") {
    const msg = proto.framed ? proto.bytes.subarray(5) : proto.bytes;
    body = new Uint8Array(5 + msg.length);
    new DataView(body.buffer).setUint32(1, msg.length);
    body.set(msg, 5);
    bindings["request.grpc.message"] = c.bindings["request.grpc.message"];
    const [service, m] = grpcPath.slice(1).split("/");
    bindings["request.grpc.service"] = service;
    bindings["request.grpc.method"] = m;
  } else {
    const text = json?.kind === "json" ? (typeof json.text === "string" ? json.text : dec.decode(json.text)) : "null";
    body = new TextEncoder().encode(text);
    bindings["request.json"] = JSON.parse(text);
  }

  // Headers: the case's, with the content-type the body needs; the map is Envoy's header map as the host builds it.
  const headers: Record<string, string> = {};
  for (const [k, v] of entries(c, 6)) headers[k] = v;
  headers["content-type"] = grpc ? "application/grpc" : "application/json";
  const sni = str(c, 9) ?? "";
  const request: HttpRequest = {
    peer,
    method,
    path,
    authority,
    headers,
    body,
    sni,
    requestId: "diff-request",
    jwtPayload: claimsVar ? claims : undefined,
  };
  const prepared = prepareRequest(request);
  const headerMap = new Map<string, string>();
  for (const [k, v] of prepared.headers) headerMap.set(k, headerMap.has(k) ? `${headerMap.get(k)},${v}` : v);
  bindings["request.headers"] = headerMap;
  bindings["connection.mtls"] = prepared.connection.mtls;
  if (sni !== "") bindings["connection.sni"] = sni;
  return { ...c, bindings, inputs: { ...c.inputs, request: { ...request, body: dec.decode(body.subarray(0, 200)) } }, request, method: grpcPath };
}

const ERROR_PREFIXES: [string, ErrorClass][] = [
  ["no such key", "access"],
  ["no such attribute", "attribute"],
  ["no matching overload", "overload"],
  ["overflow in", "overflow"],
  ["division by zero", "divide"],
  ["modulus by zero", "modulus"],
  ["cannot convert", "conversion"],
  ["unsupported:", "unsupported"],
  ["cannot read the request body", "body"],
  ["limit exceeded", "limit"],
];

/** What the filter's decision says about rule `id`'s condition. */
type Observed = { kind: "bool"; value: boolean } | { kind: "error"; cls: ErrorClass; message: string } | { kind: "type"; type: string };

function observe(explain: { decision: string; rule: string | null; reason: string }, id: string): Observed {
  if (explain.decision === "allow" && explain.rule === id) return { kind: "bool", value: true };
  // A default deny names the rules that came closest: `; closest: rule "<id>" (its condition failed: <message>)`,
  // followed by `, rule "..."` for the next one or `; peer ...`.
  const marker = `rule "${id}" (its condition failed: `;
  const at = explain.reason.indexOf(marker);
  if (at < 0) return { kind: "bool", value: false };
  let message = explain.reason.slice(at + marker.length);
  for (const next of [`), rule "`, "); peer "]) {
    const end = message.indexOf(next);
    if (end >= 0) message = message.slice(0, end + 1);
  }
  if (message.endsWith(")")) message = message.slice(0, -1);
  const t = /^condition value is (\w+), not bool$/.exec(message);
  if (t) return { kind: "type", type: t[1] };
  const cls = ERROR_PREFIXES.find(([p]) => message.startsWith(p))?.[1] ?? "other";
  return { kind: "error", cls, message };
}

function typeOf(v: CelValueOut): string {
  switch (v.t) {
    case "array": return "list";
    default: return v.t;
  }
}

/** A CEL condition that is true when `expr` (already known to be of the value's type) equals `v`. */
function probeOf(expr: string, v: CelValueOut): string | undefined {
  const e = `(${expr})`;
  switch (v.t) {
    case "int": return `${e} == ${v.v}`;
    case "uint": return `${e} == ${v.v}u`;
    case "string": return `${e} == ${JSON.stringify(v.v)}`;
    case "null": return "true";
    case "double": {
      if (Number.isNaN(v.v)) return `${e} != ${e}`;
      if (v.v === Infinity) return `${e} > 1.7976931348623157e308`;
      if (v.v === -Infinity) return `${e} < -1.7976931348623157e308`;
      if (v.v === 0) return `${e} == 0.0 && 1.0 / ${e} ${Object.is(v.v, -0) ? "<" : ">"} 0.0`;
      const lit = String(v.v);
      return `${e} == ${/[.eE]/.test(lit) ? lit : `${lit}.0`}`;
    }
    // JSON containers are compared by size (outcome.ts: sameValue knows them by size only).
    case "array":
    case "map": return `size(${expr}) == ${v.size}`;
    case "list": return `size(${expr}) == ${v.v.length}`;
    default: return undefined;
  }
}

export interface WasmEvaluatorStats {
  tables: number;
  requests: number;
  probes: number;
}

/** The Evaluator of tests/cel/differential.ts on build/release.wasm. */
export async function wasmEvaluator(grpcPath: string, grpcType: Parameters<typeof compileCondition>[1]) {
  const host = await ProxyWasmHost.load({ logLevel: "critical", allowOnHeadersStopIteration: true });
  const stats: WasmEvaluatorStats = { tables: 0, requests: 0, probes: 0 };

  /** Configures a table whose rule i has programs[i] and port FIRST_PORT + i. */
  const configure = (programs: CelProgram[]) => {
    const expr = encodePrograms(programs);
    const reads = programVariables(decodeSection(expr));
    const readsBody = reads.some((r) => r.has(10) || r.has(13));
    const rules: RuleIR[] = programs.map((_, i) => ({
      id: `c${i}`, action: "allow", dryRun: false, sources: [], conditions: [], expr: i,
      operations: [{ predicates: [{ field: "port", negate: false, ignoreCase: false, arg: "", patterns: [{ kind: "exact", value: String(FIRST_PORT + i) }] }] }],
    }));
    const ir: TableIR = {
      defaultAction: "deny", defaultKind: 2, maxBodyBytes: readsBody ? 65536 : 0, grpcFirst: false, expr, label: "cel differential", rules, schemas: [],
    };
    if (!host.configure(encodeTable(ir).config)) {
      throw new Error(`the filter rejected the differential table: ${host.logs.map((l) => l.message).filter((m) => m.includes("rejected")).join("; ")}`);
    }
    stats.tables++;
  };

  const run = (cases: readonly WasmCase[]): Observed[] =>
    cases.map((c, i) => {
      const r = host.request({ ...c.request, port: FIRST_PORT + i });
      stats.requests++;
      if (r.vmFailure || !r.explain) throw new Error(`the filter failed on case ${c.index}: ${r.vmFailure?.reason ?? "no explain"}`);
      return observe(r.explain, `c${i}`);
    });

  return {
    stats,
    adapt: (c: DiffCase) => adaptToRequest(c, grpcPath),
    evaluate(programs: readonly CelProgram[], cases: readonly DiffCase[], reference: readonly CelOutcome[]): CelOutcome[] {
      configure([...programs]);
      const seen = run(cases as readonly WasmCase[]);
      const out: CelOutcome[] = seen.map((o): CelOutcome => {
        if (o.kind === "bool") return { kind: "value", value: { t: "bool", v: o.value } };
        if (o.kind === "error") return { kind: "error", cls: o.cls, message: o.message };
        return { kind: "value", value: { t: "unconfirmed", type: o.type } as unknown as CelValueOut };
      });
      // Values that are not bools: confirm the reference's value with a probe (same type first).
      const probeAt: number[] = [];
      const probePrograms: CelProgram[] = [];
      seen.forEach((o, i) => {
        const ref = reference[i];
        if (o.kind !== "type" || ref.kind !== "value" || typeOf(ref.value) !== o.type) return;
        const text = probeOf(cases[i].expr, ref.value);
        if (text === undefined) return;
        const compiled = compileCondition(text, grpcType);
        if ("errors" in compiled) return;
        probeAt.push(i);
        probePrograms.push(compiled.program);
      });
      if (probePrograms.length > 0) {
        configure(probePrograms);
        const probed = run(probeAt.map((i) => cases[i] as WasmCase));
        stats.probes += probed.length;
        probed.forEach((p, k) => {
          const i = probeAt[k];
          const ref = reference[i];
          if (p.kind === "bool" && p.value && ref.kind === "value") out[i] = { kind: "value", value: ref.value };
        });
      }
      return out.map((o, i) => {
        if (o.kind === "value" && (o.value as { t: string }).t === "unconfirmed") {
          const ref = reference[i];
          const type = (o.value as unknown as { type: string }).type;
          // Not confirmed: report what was seen; it never counts as agreeing with the reference.
          return { kind: "error", cls: "other", message: `a ${type} value the probe did not confirm equal to ${ref.kind === "value" ? "the reference's" : "anything"}` };
        }
        return o;
      });
    },
  };
}
