// The table IR: the policy table of docs/table-format.md as plain data, before it is laid out in bytes.
//
// Lowering produces it, the encoder (table.ts) writes it, the decoder (decode.ts) reads it back. `normalizeIR`
// puts it in the one canonical form the encoder writes, so encode -> decode gives back an equal IR.

export type Action = "allow" | "deny" | "audit";

export type Field = "principal" | "trustDomain" | "attribute" | "method" | "path" | "host" | "port" | "header" | "sni";

export type PatternKind = "exact" | "prefix" | "suffix" | "present" | "template";

export interface PatternIR {
  kind: PatternKind;
  /** empty for `present` */
  value: string;
}

export interface PredicateIR {
  field: Field;
  /** matches when no pattern matches (Istio `not*` fields, `notValues`) */
  negate: boolean;
  /** patterns are stored lower-cased and compared ASCII-case-insensitively (hosts) */
  ignoreCase: boolean;
  /** the attribute key (attribute), the lower-case header name (header), else "" */
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
];
export const PATTERN_CODE: Record<PatternKind, number> = { exact: 0, prefix: 1, suffix: 2, present: 3, template: 4 };
export const PATTERN_KINDS: PatternKind[] = ["exact", "prefix", "suffix", "present", "template"];

/** Fields whose subject comes from the peer's identity (docs/table-format.md, "Identity fields"). */
export const IDENTITY_FIELDS: ReadonlySet<Field> = new Set<Field>(["principal", "trustDomain", "attribute"]);

export const RULE_ID_PATTERN = /^[A-Za-z0-9._:/\-\[\]#@]{1,200}$/;

/** Unsigned byte order of the UTF-8 encodings, shorter first on a common prefix (the format's sort order). */
export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/** Canonical pattern order: exact patterns first, sorted by bytes, deduplicated; then the rest in source order. */
export function normalizePatterns(patterns: PatternIR[], ignoreCase: boolean): PatternIR[] {
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
    arg: p.arg,
    patterns: normalizePatterns(p.patterns, p.ignoreCase),
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
    })),
    schemas: [...ir.schemas]
      .map((s) => ({ trustDomain: s.trustDomain, keys: [...s.keys] }))
      .sort((a, b) => compareBytes(a.trustDomain, b.trustDomain)),
  };
}
