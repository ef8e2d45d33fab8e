// The table IR: the policy table of docs/table-format.md as plain data, before it is laid out in bytes.
//
// Lowering produces it, the encoder (table.ts) writes it, the decoder (decode.ts) reads it back. `normalizeIR`
// puts it in the one canonical form the encoder writes, so encode -> decode gives back an equal IR.

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

export interface RuleIR {
  /** unique, 1..200 bytes of [A-Za-z0-9._:/\-\[\]#@] */
  id: string;
  action: Action;
  /** `istio.io/dry-run`: evaluated and logged, never decides */
  dryRun: boolean;
  /** OR-ed; empty = any source */
  sources: ClauseIR[];
  /** OR-ed; empty = any operation */
  operations: ClauseIR[];
  /** AND-ed `when` conditions */
  conditions: PredicateIR[];
  /** index of the rule's CEL condition program in TableIR.expr; null = none */
  expr: number | null;
  /** record every request the rule allows in the access log, whatever TableIR.allowSampleRate says */
  recordAllows?: boolean;
  /** count the rule's decisions in metrics of its own */
  metrics?: boolean;
  /** DENY rules: index of the rule's reply in TableIR.denyResponses (absent: the default 403) */
  denyResponse?: number;
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

export interface SchemaIR {
  trustDomain: string;
  /** attribute keys every identity of the trust domain must carry */
  keys: string[];
}

/** 0 = implicit allow, 1 = explicit `default:`, 2 = deny because an ALLOW policy applies (Istio semantics). */
export type DefaultKind = 0 | 1 | 2;

export interface TableIR {
  defaultAction: "allow" | "deny";
  defaultKind: DefaultKind;
  /** the request body limit (`spec.body.maxBytes`); 0 exactly when no condition reads a body */
  maxBodyBytes: number;
  /** `spec.body.grpcMessages: first` (META flag bit 0); only when some condition reads request.grpc.message */
  grpcFirst: boolean;
  /**
   * The EXPR section (docs/cel.md, `encodePrograms`): the CEL condition programs RuleIR.expr indexes, as the
   * table stores them; null when no rule has a condition.
   */
  expr: Uint8Array | null;
  /** free text for humans: the policies the table came from */
  label: string;
  rules: RuleIR[];
  /** sorted by trust domain in canonical form */
  schemas: SchemaIR[];
  /** the share of allowed requests recorded in the access log, 0..1 (absent: 1, every one) */
  allowSampleRate?: number;
  /** the replies DENY rules (and the default deny) use (absent: none) */
  denyResponses?: DenyResponseIR[];
  /** the default deny's reply, an index in denyResponses (absent: the default 403) */
  defaultDenyResponse?: number;
}

// Numeric codes of the format (docs/table-format.md section 3).
export const ACTION_CODE: Record<Action, number> = { allow: 0, deny: 1, audit: 2 };
export const ACTIONS: Action[] = ["allow", "deny", "audit"];
export const FIELD_CODE: Record<Field, number> = {
  principal: 1,
  trustDomain: 2,
  attribute: 3,
  method: 4,
  path: 5,
  host: 6,
  port: 7,
  header: 8,
  sni: 9,
  peerName: 10,
  requestPrincipal: 11,
  jwtClaim: 12,
  remoteIp: 13,
  destinationIp: 14,
};
export const FIELDS: (Field | undefined)[] = [
  undefined,
  "principal",
  "trustDomain",
  "attribute",
  "method",
  "path",
  "host",
  "port",
  "header",
  "sni",
  "peerName",
  "requestPrincipal",
  "jwtClaim",
  "remoteIp",
  "destinationIp",
];
export const PATTERN_CODE: Record<PatternKind, number> = { exact: 0, prefix: 1, suffix: 2, present: 3, template: 4, glob: 5, cidr: 6 };
export const PATTERN_KINDS: PatternKind[] = ["exact", "prefix", "suffix", "present", "template", "glob", "cidr"];

/** Fields whose subject comes from the peer's identity (docs/table-format.md, "Identity fields"). */
export const IDENTITY_FIELDS: ReadonlySet<Field> = new Set<Field>(["principal", "trustDomain", "attribute"]);

/** Fields of the peer's connection and token (source side of a rule, Envoy RBAC principals), not identity fields. */
export const SOURCE_FIELDS: ReadonlySet<Field> = new Set<Field>(["peerName", "requestPrincipal", "jwtClaim", "remoteIp"]);

/** A CIDR pattern's value as bytes: the masked address (4 or 16 bytes) and the prefix length. */
export function cidrBytes(text: string): Buffer {
  const slash = text.lastIndexOf("/");
  const addr = parseIp(text.slice(0, slash));
  const len = Number(text.slice(slash + 1));
  if (addr === null || slash < 0 || !/^\d+$/.test(text.slice(slash + 1)) || len > addr.length * 8) {
    throw new Error(`bad CIDR pattern ${JSON.stringify(text)}`);
  }
  return Buffer.concat([maskAddress(addr, len), Buffer.of(len)]);
}

/** The text of a CIDR pattern from its bytes (the inverse of cidrBytes for canonical values). */
export function cidrText(b: Uint8Array): string {
  const addr = b.subarray(0, b.length - 1);
  return `${formatIp(addr)}/${b[b.length - 1]}`;
}

/** Zeroes the bits after the first `len` (Envoy's CidrRange truncates the address the same way). */
export function maskAddress(addr: Uint8Array, len: number): Buffer {
  const out = Buffer.from(addr);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, len - i * 8));
    out[i] &= keep === 0 ? 0 : (0xff << (8 - keep)) & 0xff;
  }
  return out;
}

/** An IPv4 (4 bytes) or IPv6 (16 bytes) address in text, or null. IPv4-mapped IPv6 stays 16 bytes. */
export function parseIp(s: string): Buffer | null {
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(s)) {
    const parts = s.split(".").map(Number);
    if (parts.some((n, i) => n > 255 || (s.split(".")[i].length > 1 && s.split(".")[i].startsWith("0")))) return null;
    return Buffer.from(parts);
  }
  if (!/^[0-9a-fA-F:.]+$/.test(s) || !s.includes(":")) return null;
  let head = s;
  let v4: Buffer | null = null;
  const lastColon = s.lastIndexOf(":");
  if (s.slice(lastColon + 1).includes(".")) {
    v4 = parseIp(s.slice(lastColon + 1));
    if (v4 === null || v4.length !== 4) return null;
    head = s.slice(0, lastColon + 1) + "0:0";
  }
  const dbl = head.indexOf("::");
  if (dbl !== head.lastIndexOf("::")) return null;
  const groups = (x: string) => (x === "" ? [] : x.split(":"));
  let words: string[];
  if (dbl >= 0) {
    const a = groups(head.slice(0, dbl));
    const b = groups(head.slice(dbl + 2));
    if (a.length + b.length > 7) return null;
    words = [...a, ...Array(8 - a.length - b.length).fill("0"), ...b];
  } else {
    words = head.split(":");
  }
  if (words.length !== 8 || words.some((w) => !/^[0-9a-fA-F]{1,4}$/.test(w))) return null;
  const out = Buffer.alloc(16);
  words.forEach((w, i) => out.writeUInt16BE(parseInt(w, 16), i * 2));
  if (v4) v4.copy(out, 12);
  return out;
}

/** Text of a 4- or 16-byte address (IPv6 in the RFC 5952 form node prints). */
export function formatIp(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join(".");
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((b[i] << 8) | b[i + 1]).toString(16));
  // RFC 5952: the longest run (at least two) of zero words becomes "::".
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === "0") j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return words.join(":");
  return `${words.slice(0, best).join(":")}::${words.slice(best + bestLen).join(":")}`;
}

/** The body of the filter's default deny reply. */
export const DEFAULT_DENY_BODY = "spiffe-authz: access denied\n";

export const RULE_ID_PATTERN = /^[A-Za-z0-9._:/\-[\]#@]{1,200}$/;

/** Unsigned byte order of the UTF-8 encodings, shorter first on a common prefix (the format's sort order). */
export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/**
 * Canonical pattern order: exact patterns first, sorted by bytes, deduplicated; then the rest in source order.
 * A `requestPrincipal` predicate holds (iss, sub) pairs: their order is kept and only repeated pairs are dropped.
 */
export function normalizePatterns(patterns: PatternIR[], ignoreCase: boolean, field?: Field): PatternIR[] {
  if (field === "requestPrincipal") {
    const out: PatternIR[] = [];
    const seen = new Set<string>();
    for (let i = 0; i + 1 < patterns.length; i += 2) {
      const pair = [patterns[i], patterns[i + 1]].map((p) => ({ kind: p.kind, value: p.kind === "present" ? "" : p.value }));
      const key = JSON.stringify(pair);
      if (!seen.has(key)) {
        seen.add(key);
        out.push(...pair);
      }
    }
    return out;
  }
  const exact = new Set<string>();
  const rest: PatternIR[] = [];
  const restSeen = new Set<string>();
  for (const p of patterns) {
    const value = ignoreCase ? p.value.toLowerCase() : p.value;
    if (p.kind === "exact") {
      exact.add(value);
    } else {
      const v = p.kind === "present" ? "" : value;
      const key = p.kind + "\0" + v;
      if (!restSeen.has(key)) {
        restSeen.add(key);
        rest.push({ kind: p.kind, value: v });
      }
    }
  }
  const sorted = [...exact].sort(compareBytes).map((value) => ({ kind: "exact" as const, value }));
  return [...sorted, ...rest];
}

/** Returns the canonical form of a table IR (a new object; the input is not changed). */
export function normalizeIR(ir: TableIR): TableIR {
  const pred = (p: PredicateIR): PredicateIR => ({
    field: p.field,
    negate: p.negate,
    ignoreCase: p.ignoreCase,
    ...(p.hostName ? { hostName: true } : {}),
    arg: p.arg,
    patterns: normalizePatterns(p.patterns, p.ignoreCase, p.field),
  });
  const clause = (c: ClauseIR): ClauseIR => ({ predicates: c.predicates.map(pred) });
  return {
    defaultAction: ir.defaultAction,
    defaultKind: ir.defaultKind,
    maxBodyBytes: ir.maxBodyBytes,
    grpcFirst: ir.grpcFirst,
    expr: ir.expr,
    label: ir.label,
    rules: ir.rules.map((r) => ({
      id: r.id,
      action: r.action,
      dryRun: r.dryRun,
      sources: r.sources.map(clause),
      operations: r.operations.map(clause),
      conditions: r.conditions.map(pred),
      expr: r.expr,
      ...(r.recordAllows ? { recordAllows: true } : {}),
      ...(r.metrics ? { metrics: true } : {}),
      ...(r.denyResponse !== undefined ? { denyResponse: r.denyResponse } : {}),
    })),
    schemas: [...ir.schemas]
      .map((s) => ({ trustDomain: s.trustDomain, keys: [...s.keys] }))
      .sort((a, b) => compareBytes(a.trustDomain, b.trustDomain)),
    ...(ir.allowSampleRate !== undefined && ir.allowSampleRate < 1 ? { allowSampleRate: ir.allowSampleRate } : {}),
    ...(ir.denyResponses?.length ? { denyResponses: ir.denyResponses.map((d) => ({ ...d, headers: d.headers.map(([k, v]): [string, string] => [k, v]) })) } : {}),
    ...(ir.defaultDenyResponse !== undefined ? { defaultDenyResponse: ir.defaultDenyResponse } : {}),
  };
}
