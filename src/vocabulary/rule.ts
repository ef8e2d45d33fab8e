// What a rule is made of, in every layer: the policy readers (src/policy/) build rules from these parts, the
// compiler (src/compiler/) lowers them into the table IR and encodes them (docs/table-format.md), the emitters
// write them as Envoy and Istio resources.

export type Action = "allow" | "deny" | "audit";

export type Field =
  | "principal"
  | "trustDomain"
  | "attribute"
  | "method"
  | "path"
  | "host"
  | "port"
  | "header"
  | "sni"
  | "peerName"
  | "requestPrincipal"
  | "jwtClaim"
  | "remoteIp"
  | "destinationIp";

export type PatternKind = "exact" | "prefix" | "suffix" | "present" | "template" | "glob" | "cidr";

export interface PatternIR {
  kind: PatternKind;
  /**
   * empty for `present`; for `glob` the escaped form of docs/table-format.md (PATS, GLOB); for `cidr` the address
   * and prefix length as text (`10.0.0.0/8`, `::1/128`), which the encoder writes as bytes
   */
  value: string;
}

export interface PredicateIR {
  field: Field;
  /** matches when no pattern matches (Istio `not*` fields, `notValues`) */
  negate: boolean;
  /** patterns are stored lower-cased and compared ASCII-case-insensitively (hosts) */
  ignoreCase: boolean;
  /**
   * HOST only (our format): compare the authority's host name, without userinfo, port and a trailing dot, instead
   * of the whole authority (Istio's meaning). Absent: false.
   */
  hostName?: boolean;
  /**
   * the attribute key (attribute), the lower-case header name (header), the claim path (jwtClaim: the claim names
   * joined with NUL), else ""
   */
  arg: string;
  /** at least one; in canonical form the exact patterns come first, sorted by bytes, without duplicates */
  patterns: PatternIR[];
}

/** A conjunction of predicates; no predicates matches everything. */
export interface ClauseIR {
  predicates: PredicateIR[];
}

/** The local reply of a denial (docs/table-format.md RESP). */
export interface DenyResponseIR {
  /** 300..599 */
  status: number;
  body: string;
  /** lower-case names, in order */
  headers: [string, string][];
  /** grpc-status for a gRPC request, 1..16; null: 7 (PERMISSION_DENIED) */
  grpcStatus: number | null;
  /** add the request's x-request-id to the reply */
  requestId: boolean;
}

/** The body of the filter's default deny reply. */
export const DEFAULT_DENY_BODY = "spiffe-authz: access denied\n";

export const RULE_ID_PATTERN = /^[A-Za-z0-9._:/\-[\]#@]{1,200}$/;
