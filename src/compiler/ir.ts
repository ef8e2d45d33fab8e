// The table IR: the policy table of docs/table-format.md as plain data, before it is laid out in bytes.
//
// Lowering produces it, the encoder (table.ts) writes it, the decoder (decode.ts) reads it back. `normalizeIR`
// puts it in the one canonical form the encoder writes, so encode -> decode gives back an equal IR. What a rule is
// made of (actions, fields, patterns, predicates, clauses, deny replies) is src/vocabulary/rule.ts.

import { formatIp, maskAddress, parseIp } from "../vocabulary/ip.ts";
import type { Action, ClauseIR, DenyResponseIR, Field, PatternIR, PatternKind, PredicateIR } from "../vocabulary/rule.ts";

export type { Action, ClauseIR, DenyResponseIR, Field, PatternIR, PatternKind, PredicateIR } from "../vocabulary/rule.ts";
export { DEFAULT_DENY_BODY, RULE_ID_PATTERN } from "../vocabulary/rule.ts";
export { formatIp, maskAddress, parseIp } from "../vocabulary/ip.ts";

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
