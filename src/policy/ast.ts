// The checked form of one policy document, whatever language it was written in, with the positions the later
// stages need for their own diagnostics (duplicate rule ids, conflicting defaults, dropped policies).

import type { Action, ClauseIR, DenyResponseIR, PredicateIR } from "../compiler/ir.ts";
import type { Pos } from "./diagnostics.ts";
import { entry, isNull, type YMap, type YNode } from "./yaml.ts";
import type { Item } from "./match.ts";

export type PolicyFormat = "spiffe-authz" | "istio";

/** A rule's CEL `condition` (compiled by the lowering, which knows the .proto files). */
export interface ConditionAst {
  /** the expression (the scalar's value) */
  text: string;
  /** where the scalar is */
  pos: Pos;
  /** the position of offset `i` of `text` (UTF-16 units) in the policy file, through quotes, escapes, folding */
  posAt: (i: number) => Pos;
}

/** A setting given in one policy with the position to blame when policies disagree. */
export interface Setting<T> {
  value: T;
  pos: Pos;
}

export interface RuleAst {
  /** explicit `id`, or the default the lowering derives from the policy name and `index` */
  id?: string;
  /** where the rule is (its `id` when given) */
  pos: Pos;
  index: number;
  action: Action;
  dryRun: boolean;
  sources: ClauseIR[];
  operations: ClauseIR[];
  conditions: PredicateIR[];
  condition?: ConditionAst;
  /**
   * `/pkg.Service/Method` when the rule is scoped to exactly one gRPC method (one `to` entry with `grpc` naming
   * one method): its condition may read that method's request message.
   */
  grpcMethod?: string;
  /** where that method is named (for "no .proto file defines it") */
  grpcMethodPos?: Pos;
  /** `recordAllows: true` */
  recordAllows?: boolean;
  /** `metrics: true` */
  metrics?: boolean;
  /** `denyResponse` (DENY rules) */
  denyResponse?: DenyResponseIR;
}

export interface SchemaAst {
  trustDomain: string;
  keys: string[];
  pos: Pos;
}

export interface PolicyAst {
  format: PolicyFormat;
  /** position of the document (its first node) */
  pos: Pos;
  name: string;
  namespace?: string;
  /** matchLabels; undefined or empty = every workload of the namespace */
  selector?: Record<string, string>;
  /** Istio: the policy's action. Ours: undefined (each rule has its own). */
  policyAction?: Action;
  /** `istio.io/dry-run: "true"` */
  dryRun: boolean;
  default?: { action: "allow" | "deny"; pos: Pos };
  schemas: SchemaAst[];
  rules: RuleAst[];
  /** `spec.protos`: .proto files, resolved against the policy file's directory */
  protos?: Setting<string>[];
  /** `spec.body` */
  body?: { maxBytes?: Setting<number>; grpcMessages?: Setting<"single" | "first"> };
  /** `spec.audit.allowSampleRate` */
  allowSampleRate?: Setting<number>;
  /** `spec.denyResponse`: the reply of this policy's DENY rules without their own, and of the default deny */
  denyResponse?: Setting<DenyResponseIR>;
}

/** True when the policy makes the table's default DENY (Istio: an ALLOW policy applies to the workload). */
export function isAllowPolicy(p: PolicyAst): boolean {
  if (p.dryRun) return false;
  if (p.format === "istio") return p.policyAction === "allow";
  return p.rules.some((r) => r.action === "allow" && !r.dryRun);
}

/** `namespace/name`, or `name` without a namespace. */
export function policyRef(p: PolicyAst): string {
  return p.namespace ? `${p.namespace}/${p.name}` : p.name;
}

// Defensive readers for trees that already passed schema validation (so wrong types were reported there and are
// skipped silently here).

export function mapOf(n: YNode | undefined): YMap | undefined {
  return n && n.kind === "map" ? n : undefined;
}

export function listOf(n: YNode | undefined): YNode[] | undefined {
  return n && n.kind === "seq" ? n.items : undefined;
}

export function stringOf(n: YNode | undefined): string | undefined {
  if (n?.kind !== "scalar" || n.value === null) return undefined;
  return typeof n.value === "string" ? n.value : n.text;
}

/**
 * A list of scalars as items; a single scalar counts as a one-element list when `allowScalar` (our attribute
 * values, where booleans are accepted too). Elsewhere only strings and numbers are read: other types were
 * reported by the schema pass.
 */
export function itemsOf(n: YNode | undefined, allowScalar = false): Item[] | undefined {
  if (!n || isNull(n)) return undefined;
  const ok = (x: YNode) => x.kind === "scalar" && (typeof x.value === "string" || typeof x.value === "number" || (allowScalar && typeof x.value === "boolean"));
  if (n.kind === "scalar") return allowScalar && ok(n) ? [{ value: stringOf(n) ?? "", pos: n.pos }] : undefined;
  if (n.kind !== "seq") return undefined;
  const out: Item[] = [];
  for (const x of n.items) {
    const s = stringOf(x);
    if (s !== undefined && ok(x)) out.push({ value: s, pos: x.pos });
  }
  return out;
}

/** Items of field `key` of a mapping. */
export function fieldItems(m: YMap, key: string, allowScalar = false): Item[] | undefined {
  return itemsOf(entry(m, key)?.value, allowScalar);
}

export const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** ObjectMeta fields a manifest may carry (kubectl output included); anything else under metadata is a typo. */
export const OBJECT_META_FIELDS = [
  "name",
  "namespace",
  "labels",
  "annotations",
  "generateName",
  "uid",
  "resourceVersion",
  "generation",
  "creationTimestamp",
  "deletionTimestamp",
  "deletionGracePeriodSeconds",
  "finalizers",
  "ownerReferences",
  "managedFields",
  "selfLink",
];
