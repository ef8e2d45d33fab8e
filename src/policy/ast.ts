// The checked form of one policy document, whatever language it was written in, with the positions the later
// stages need for their own diagnostics (duplicate rule ids, conflicting defaults, dropped policies).

import type { Action, ClauseIR, DenyResponseIR, PredicateIR } from "../vocabulary/rule.ts";
import type { Pos } from "./diagnostics.ts";

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
