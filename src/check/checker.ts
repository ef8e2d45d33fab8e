// What `spiffe-authz check` does, as a library: one configured filter VM (the shipped build/release.wasm in the
// TypeScript proxy-wasm host, configured once), the requests it takes and the result lines it gives. The `check`,
// `test` and `diff` commands, the golden cases and the integration tests all judge requests through it.

import { DEFAULT_WASM_PATH, ProxyWasmHost } from "../host/index.ts";
import type { Explain, HttpRequest, RequestResult } from "../host/index.ts";

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
      wasmPath: opts.wasmPath ?? DEFAULT_WASM_PATH,
      logLevel: "info",
      allowOnHeadersStopIteration: !continuesHeaders(config),
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
  if (reasonCode === "no_table" || (REFUSAL_CODES as readonly string[]).includes(reasonCode))
    return `spiffe_authz_denied[${reasonCode}]`;
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
      throw new InternalCheckError(
        `the filter replied with details "${r.localReply.details}" but explains rule ${JSON.stringify(e.rule)} and reason ${JSON.stringify(e.reasonCode)}`,
      );
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
