// One oracle case against the compiler: istiod's validation and RBAC (its output, from tools/istio-oracle) vs our
// compile, our `--emit rbac`, our table in the real filter (build/release.wasm in the TypeScript host) and the
// docs' reference evaluator, on generated requests. Every decision must agree.

import { compileTexts, PolicyError, type CompileResult } from "../../src/compiler/index.ts";
import { rbacFilters } from "../../src/compiler/emit/rbac.ts";
import type { ProxyWasmHost } from "../../src/host/index.ts";
import type { HttpRequest } from "../../src/host/index.ts";
import { evaluateRbac, type RbacRequest } from "../support/rbac-eval.ts";
import { evaluate as referenceEvaluate } from "../unit/support/reference.ts";
import { CLIENTS, type GenRequest, type PolicyCase } from "./generate.ts";

export interface OracleOutput {
  id: string;
  errors: string[];
  filters: Record<string, unknown>[];
}

/** Fields and keys the compiler refuses by design (docs/policy-language.md): Envoy shows a wasm filter no direct peer address. */
export const REFUSED = /\b(ipBlocks|notIpBlocks|source\.ip)\b/;

export const LISTENER_PORT = 8443;
const PEER_IP = "127.0.0.1";
const LOCAL_IP = "127.0.0.1";

/** The remote address the model gives a request: the last x-forwarded-for entry (one trusted hop), else the peer. */
export function remoteIpOf(req: GenRequest): string {
  if (req.xff === null) return PEER_IP;
  const parts = req.xff.split(",").map((s) => s.trim());
  return parts[parts.length - 1];
}

function rbacRequest(req: GenRequest): RbacRequest {
  const c = req.client === null ? null : CLIENTS.find((x) => x.name === req.client)!;
  const headers: [string, string][] = [[":method", req.method], [":path", req.path], [":authority", req.authority], ...req.headers];
  return {
    tls: true,
    uriSans: c?.uri ? [c.uri] : [],
    dnsSans: c?.dns ? [c.dns] : [],
    subject: c ? `CN=${c.cn}` : "",
    headers,
    remoteIp: remoteIpOf(req),
    directIp: PEER_IP,
    localIp: LOCAL_IP,
    destinationPort: LISTENER_PORT,
    sni: req.authority.toLowerCase() === "localhost" ? "localhost" : req.authority,
    jwtMetadata: req.jwt === null ? null : { payload: req.jwt },
  };
}

function addr(ip: string, port: number): string {
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

function hostRequest(req: GenRequest): HttpRequest {
  const c = req.client === null ? null : CLIENTS.find((x) => x.name === req.client)!;
  const rr = rbacRequest(req);
  return {
    peer: c ? (c.uri ?? null) : null,
    mtls: c !== null,
    peerDns: c?.dns,
    peerSubject: c ? `CN=${c.cn}` : undefined,
    method: req.method,
    path: req.path,
    authority: req.authority,
    headers: req.headers,
    port: LISTENER_PORT,
    sni: rr.sni,
    sourceAddress: addr(rr.remoteIp, 0),
    destinationAddress: addr(LOCAL_IP, LISTENER_PORT),
    jwtPayload: req.jwt ?? undefined,
    jwtPayloadKey: "payload",
  };
}

export interface CaseResult {
  /** istiod accepted the policies and we compiled them */
  compiled: boolean;
  /** requests compared */
  requests: number;
  /** human-readable disagreements (empty when everything agrees) */
  mismatches: string[];
}

/** Compiles a case as the CLI would for the oracle's mesh settings. */
export function compileCase(c: PolicyCase): CompileResult {
  return compileTexts([{ file: `${c.id}.yaml`, text: c.yaml }], { namespace: "foo" }, { trustDomain: c.trustDomain, trustDomainAliases: c.aliases });
}

export async function compareCase(
  c: PolicyCase, oracle: OracleOutput, requests: GenRequest[], host: ProxyWasmHost,
): Promise<CaseResult> {
  const mismatches: string[] = [];
  let result: CompileResult | null = null;
  let error: string | null = null;
  try {
    result = compileCase(c);
  } catch (e) {
    if (!(e instanceof PolicyError)) throw e;
    error = e.diagnostics.map((d) => d.message).join("; ");
  }
  if (oracle.errors.length > 0) {
    if (result !== null) mismatches.push(`istiod rejects (${oracle.errors.join("; ")}) but we compile`);
    return { compiled: false, requests: 0, mismatches };
  }
  if (result === null) {
    if (!REFUSED.test(c.yaml)) mismatches.push(`istiod accepts but we refuse: ${error}`);
    return { compiled: false, requests: 0, mismatches };
  }
  const ours = rbacFilters(result.ir) as Record<string, unknown>[];
  if (!host.configure(parityConfig(result.config))) throw new Error(`${c.id}: the filter rejected the table`);
  for (const req of requests) {
    const rr = rbacRequest(req);
    const want = evaluateRbac(oracle.filters, rr);
    const emitted = evaluateRbac(ours, rr);
    const h = host.request(hostRequest(req));
    const filter = h.localReply === null ? "allow" : "deny";
    const ref = referenceEvaluate(result.ir, {
      peer: rr.uriSans[0], peerDns: rr.dnsSans[0], peerSubject: req.client === null ? undefined : (rr.subject ?? undefined),
      method: req.method, path: req.path, host: req.authority, port: LISTENER_PORT, sni: rr.sni,
      headers: Object.fromEntries(Object.entries(groupHeaders(req.headers))),
      jwtPayload: req.jwt ?? undefined, remoteAddress: addr(rr.remoteIp, 0), localAddress: addr(LOCAL_IP, LISTENER_PORT),
    }, { ambiguousPaths: "allow" }).decision;
    if (want !== emitted || want !== filter || (want !== ref && !req.headers.some(([k], i, a) => a.findIndex(([x]) => x === k) !== i))) {
      mismatches.push(`${JSON.stringify(req)}: istiod ${want}, --emit rbac ${emitted}, filter ${filter}, reference ${ref}`);
    }
  }
  return { compiled: true, requests: requests.length, mismatches };
}

function groupHeaders(h: [string, string][]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [k, v] of h) (out[k] ??= []).push(v);
  return out;
}

/**
 * Whether the filter matches each value of a repeated header on its own, as Envoy 1.40's RBAC does (the filter's
 * header matching is moving to exactly that): requests with repeated headers are compared only then.
 */
export async function perValueHeaders(host: ProxyWasmHost): Promise<boolean> {
  const t = compileTexts([{
    file: "h.yaml",
    text: "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: h, namespace: foo}\nspec:\n  action: DENY\n  rules:\n  - when: [{key: \"request.headers[x-user]\", values: [bob]}]\n",
  }]);
  host.configure(t.config);
  return host.request({ headers: [["x-user", "bobx"], ["x-user", "bob"]] }).localReply !== null;
}

/**
 * The plugin configuration for a parity comparison: `"ambiguousPaths": "allow"`, so that path rules decide on
 * escaped slashes and dot segments as Envoy's RBAC does (by default the filter refuses such paths: a workload may
 * read them differently, docs/policy-language.md).
 */
export function parityConfig(config: string): string {
  return config.replace(/^\{/, '{"ambiguousPaths":"allow",');
}
