// Stage 3, select: which policies apply to one workload, as istiod decides
// (pilot/pkg/model/authorization.go, ListAuthorizationPolicies): policies of the root namespace apply mesh-wide,
// policies of the workload's namespace apply to it, and in both a policy applies when its selector is empty or its
// matchLabels are a subset of the workload's labels.

import { type Diagnostics, q } from "./diagnostics.ts";
import { policyRef, type PolicyAst } from "./ast.ts";

/** The workload the table is compiled for. Without `namespace`, every given policy applies. */
export interface Workload {
  namespace?: string;
  labels?: Record<string, string>;
  /** Istio's root namespace (meshConfig.rootNamespace), `istio-system` by default */
  rootNamespace?: string;
}

export const DEFAULT_ROOT_NAMESPACE = "istio-system";

function describeWorkload(w: Workload): string {
  const labels = Object.entries(w.labels ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
  return `namespace ${q(w.namespace)}${labels ? `, labels ${labels}` : ", no labels"}`;
}

/**
 * Keeps the policies that select the workload and reports each dropped one as a warning. A policy without a
 * namespace is taken to live in the workload's namespace (kubectl would apply it there).
 */
export function selectPolicies(policies: PolicyAst[], workload: Workload | undefined, diags: Diagnostics): PolicyAst[] {
  const wns = workload?.namespace;
  if (!workload || !wns) return policies;
  const root = workload.rootNamespace || DEFAULT_ROOT_NAMESPACE;
  const labels = workload.labels ?? {};
  const kept: PolicyAst[] = [];
  for (const p of policies) {
    const ns: string = p.namespace ?? wns;
    if (ns !== wns && ns !== root) {
      diags.warn(p.pos, `policy ${q(policyRef(p))} dropped: it is in namespace ${q(ns)}, not the workload's ${q(wns)} or the root namespace ${q(root)}`);
      continue;
    }
    const missing = Object.entries(p.selector ?? {}).filter(([k, v]) => labels[k] !== v);
    if (missing.length > 0) {
      diags.warn(
        p.pos,
        `policy ${q(policyRef(p))} dropped: its selector needs ${missing.map(([k, v]) => `${k}=${v}`).join(",")}, which the workload (${describeWorkload(workload)}) does not have`,
      );
      continue;
    }
    kept.push(p);
  }
  return kept;
}
