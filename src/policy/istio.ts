// Stage 2, check: Istio AuthorizationPolicy (security.istio.io/v1 and v1beta1), with Istio's semantics.
//
// The document is validated against the real CRD schema (schemas/istio/), then checked as istiod's validation
// webhook does (pkg/config/validation, ValidateAuthorizationPolicy), then translated the way istiod builds Envoy
// RBAC (pilot/pkg/security/authz/model): principals get the "spiffe://" prefix, namespaces become the `ns`
// attribute of the peer's ID, `when` conditions are AND-ed with every source and operation.

import type { Action, ClauseIR, PredicateIR } from "../compiler/ir.ts";
import { Diagnostics, didYouMean, q } from "./diagnostics.ts";
import { fieldItems, listOf, mapOf, OBJECT_META_FIELDS, stringOf, type PolicyAst, type RuleAst } from "./ast.ts";
import {
  attributeValuePatterns,
  whenPredicates,
  maybePred,
  methodPatterns,
  pathPatterns,
  portPatterns,
  principalPatterns,
  stringPatterns,
  trustDomainPatterns,
  type Item,
} from "./match.ts";
import { readMetadata, readSelector } from "./metadata.ts";
import { crdSchema, validateAgainstSchema } from "./schema.ts";
import { segmentProblem } from "./spiffe.ts";
import { entry, type YDoc, type YMap } from "./yaml.ts";

export const ISTIO_GROUP = "security.istio.io";
export const ISTIO_VERSIONS = ["v1", "v1beta1"];
export const ISTIO_KIND = "AuthorizationPolicy";
export const AUTHZ_CRD_FILE = "authorizationpolicies.security.istio.io.yaml";

/** Source fields this filter cannot evaluate: they need JWT validation or IP addresses. */
const UNSUPPORTED_SOURCE_FIELDS: Record<string, string> = {
  requestPrincipals: "request principals come from JWTs, which this filter does not read yet",
  notRequestPrincipals: "request principals come from JWTs, which this filter does not read yet",
  ipBlocks: "IP blocks are not supported yet (this filter authorizes by SPIFFE identity)",
  notIpBlocks: "IP blocks are not supported yet (this filter authorizes by SPIFFE identity)",
  remoteIpBlocks: "remote IP blocks are not supported yet (this filter authorizes by SPIFFE identity)",
  notRemoteIpBlocks: "remote IP blocks are not supported yet (this filter authorizes by SPIFFE identity)",
  notServiceAccounts: "notServiceAccounts is not supported yet; use notPrincipals with the full principal",
};

/** True when a list field is present with at least one entry (Istio treats an empty list as absent). */
function has(m: YMap, key: string): boolean {
  const items = fieldItems(m, key);
  return items !== undefined && items.length > 0;
}

function nonEmptyItems(m: YMap, key: string): Item[] | undefined {
  const items = fieldItems(m, key);
  return items && items.length > 0 ? items : undefined;
}

/** Istio's `serviceAccounts`: `<sa>` (the policy's namespace) or `<ns>/<sa>`, matched as the ID's ns and sa. */
function serviceAccountClauses(items: Item[], base: PredicateIR[], policyNs: string | undefined, diags: Diagnostics): ClauseIR[] {
  const byNs = new Map<string, Item[]>();
  for (const it of items) {
    const parts = it.value.split("/");
    let ns: string | undefined;
    let sa: string;
    if (parts.length === 1) {
      ns = policyNs;
      sa = parts[0];
      if (!ns) {
        diags.error(it.pos, `service account ${q(it.value)} has no namespace and the policy has none; write "<namespace>/${it.value}"`);
        continue;
      }
    } else if (parts.length === 2) {
      [ns, sa] = parts;
    } else {
      diags.error(it.pos, `invalid service account ${q(it.value)}: write "<name>" or "<namespace>/<name>"`);
      continue;
    }
    const problem = segmentProblem(ns) ?? segmentProblem(sa);
    if (problem || it.value.includes("*")) {
      diags.error(it.pos, `invalid service account ${q(it.value)}: write "<name>" or "<namespace>/<name>" without wildcards`);
      continue;
    }
    const list = byNs.get(ns) ?? [];
    list.push({ value: sa, pos: it.pos });
    byNs.set(ns, list);
  }
  // istiod matches `spiffe://<td>/ns/<ns>/.../sa/<sa>`; here that is the ns and sa attributes of the ID. Accounts of
  // several namespaces cannot share one conjunction, so each namespace gets its own (OR-ed) source clause.
  const out: ClauseIR[] = [];
  for (const [ns, sas] of byNs) {
    const preds = [...base];
    maybePred(preds, "attribute", false, [{ kind: "exact", value: ns }], "ns");
    maybePred(preds, "attribute", false, attributeValuePatterns(sas, "sa", "serviceAccounts", diags), "sa");
    out.push({ predicates: preds });
  }
  return out;
}

function sourceClauses(s: YMap, policyNs: string | undefined, diags: Diagnostics): ClauseIR[] {
  for (const [field, why] of Object.entries(UNSUPPORTED_SOURCE_FIELDS)) {
    const e = entry(s, field);
    if (e && has(s, field)) diags.error(e.keyPos, `${q(field)} is not supported: ${why}`);
  }
  const preds: PredicateIR[] = [];
  const principals = nonEmptyItems(s, "principals");
  if (principals) maybePred(preds, "principal", false, principalPatterns(principals, "istio", "principals", diags));
  const notPrincipals = nonEmptyItems(s, "notPrincipals");
  if (notPrincipals) maybePred(preds, "principal", true, principalPatterns(notPrincipals, "istio", "notPrincipals", diags));
  const ns = nonEmptyItems(s, "namespaces");
  if (ns) maybePred(preds, "attribute", false, attributeValuePatterns(ns, "ns", "namespaces", diags), "ns");
  const notNs = nonEmptyItems(s, "notNamespaces");
  if (notNs) maybePred(preds, "attribute", true, attributeValuePatterns(notNs, "ns", "notNamespaces", diags), "ns");
  const tds = nonEmptyItems(s, "trustDomains");
  if (tds) maybePred(preds, "trustDomain", false, trustDomainPatterns(tds, "trustDomains", diags));
  const notTds = nonEmptyItems(s, "notTrustDomains");
  if (notTds) maybePred(preds, "trustDomain", true, trustDomainPatterns(notTds, "notTrustDomains", diags));
  const sas = nonEmptyItems(s, "serviceAccounts");
  if (sas) return serviceAccountClauses(sas, preds, policyNs, diags);
  return [{ predicates: preds }];
}

function operationClause(o: YMap, diags: Diagnostics): ClauseIR {
  const preds: PredicateIR[] = [];
  const add = (key: string, fn: (items: Item[]) => void) => {
    const items = nonEmptyItems(o, key);
    if (items) fn(items);
  };
  add("hosts", (i) => maybePred(preds, "host", false, stringPatterns(i, "hosts", diags, true), "", true));
  add("notHosts", (i) => maybePred(preds, "host", true, stringPatterns(i, "notHosts", diags, true), "", true));
  add("ports", (i) => maybePred(preds, "port", false, portPatterns(i, "ports", diags)));
  add("notPorts", (i) => maybePred(preds, "port", true, portPatterns(i, "notPorts", diags)));
  add("methods", (i) => maybePred(preds, "method", false, methodPatterns(i, "methods", diags)));
  add("notMethods", (i) => maybePred(preds, "method", true, methodPatterns(i, "notMethods", diags)));
  add("paths", (i) => maybePred(preds, "path", false, pathPatterns(i, "paths", "istio", diags)));
  add("notPaths", (i) => maybePred(preds, "path", true, pathPatterns(i, "notPaths", "istio", diags)));
  return { predicates: preds };
}

const SOURCE_FIELDS = [
  "principals",
  "notPrincipals",
  "namespaces",
  "notNamespaces",
  "serviceAccounts",
  "notServiceAccounts",
  "trustDomains",
  "notTrustDomains",
  "requestPrincipals",
  "notRequestPrincipals",
  "ipBlocks",
  "notIpBlocks",
  "remoteIpBlocks",
  "notRemoteIpBlocks",
];
const OPERATION_FIELDS = ["hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths", "notPaths"];

function rule(m: YMap, index: number, action: Action, dryRun: boolean, policyNs: string | undefined, diags: Diagnostics): RuleAst {
  const sources: ClauseIR[] = [];
  const operations: ClauseIR[] = [];
  const conditions: PredicateIR[] = [];
  const fromE = entry(m, "from");
  const from = listOf(fromE?.value);
  if (from && from.length === 0) diags.error(fromE!.value.pos, "\"from\" must not be empty; remove it to match any source");
  for (const f of from ?? []) {
    const fm = mapOf(f);
    if (!fm) continue;
    const s = mapOf(entry(fm, "source")?.value);
    if (!s) {
      if (!entry(fm, "source")) diags.error(fm.pos, "missing \"source\" in from entry (Istio rejects a from entry without one)");
      continue;
    }
    // A source holding only unknown fields was reported by the schema pass; saying "empty" as well adds noise.
    if (!SOURCE_FIELDS.some((k) => has(s, k))) {
      if (s.entries.every((e) => SOURCE_FIELDS.includes(e.key))) {
        diags.error(s.pos, "\"source\" must not be empty (Istio rejects it); remove the from entry to match any source");
      }
      continue;
    }
    sources.push(...sourceClauses(s, policyNs, diags));
  }
  const toE = entry(m, "to");
  const to = listOf(toE?.value);
  if (to && to.length === 0) diags.error(toE!.value.pos, "\"to\" must not be empty; remove it to match any operation");
  for (const t of to ?? []) {
    const tm = mapOf(t);
    if (!tm) continue;
    const o = mapOf(entry(tm, "operation")?.value);
    if (!o) {
      if (!entry(tm, "operation")) diags.error(tm.pos, "missing \"operation\" in to entry (Istio rejects a to entry without one)");
      continue;
    }
    if (!OPERATION_FIELDS.some((k) => has(o, k))) {
      if (o.entries.every((e) => OPERATION_FIELDS.includes(e.key))) {
        diags.error(o.pos, "\"operation\" must not be empty (Istio rejects it); remove the to entry to match any operation");
      }
      continue;
    }
    operations.push(operationClause(o, diags));
  }
  conditions.push(...whenPredicates(entry(m, "when")?.value, "istio", diags));
  return { pos: m.pos, index, action, dryRun, sources, operations, conditions };
}

/** Checks one Istio AuthorizationPolicy document and returns its checked form. */
export function checkIstioPolicy(doc: YDoc, version: string, diags: Diagnostics): PolicyAst | undefined {
  const root = mapOf(doc.root);
  if (!root) return undefined;
  // The CRD's root schema leaves apiVersion, kind and metadata to Kubernetes: check metadata's fields here.
  validateAgainstSchema(root, crdSchema(AUTHZ_CRD_FILE, version), diags, (path) =>
    path.length === 0 ? ["apiVersion", "kind", "metadata"] : undefined,
  );
  const mdNode = mapOf(entry(root, "metadata")?.value);
  for (const e of mdNode?.entries ?? []) {
    if (!OBJECT_META_FIELDS.includes(e.key)) {
      diags.error(e.keyPos, `unknown field ${q(e.key)} in metadata${didYouMean(e.key, OBJECT_META_FIELDS)}`);
    }
  }
  const md = readMetadata(root, doc.pos, diags);
  const policy: PolicyAst = {
    format: "istio",
    pos: doc.pos,
    name: md.name,
    namespace: md.namespace,
    dryRun: md.dryRun,
    schemas: [],
    rules: [],
  };
  const spec = mapOf(entry(root, "spec")?.value);
  if (!spec) {
    // No spec is Istio's empty policy: ALLOW with no rules, which denies every request.
    if (!entry(root, "spec")) policy.policyAction = "allow";
    return policy;
  }

  const actionE = entry(spec, "action");
  const actionText = stringOf(actionE?.value) ?? "ALLOW";
  let action: Action = "allow";
  if (actionText === "DENY") action = "deny";
  else if (actionText === "AUDIT") action = "audit";
  else if (actionText === "CUSTOM") {
    diags.error(
      actionE!.value.pos,
      "action \"CUSTOM\" is not supported: it hands the decision to an external authorizer (ext_authz provider), which this filter does not call; use ALLOW, DENY or AUDIT",
    );
  }
  policy.policyAction = action;
  const provider = entry(spec, "provider");
  if (provider && actionText !== "CUSTOM") diags.error(provider.keyPos, "\"provider\" goes only with action \"CUSTOM\" (Istio rejects it otherwise); remove it");
  for (const k of ["targetRef", "targetRefs"]) {
    const e = entry(spec, k);
    if (e) {
      diags.error(
        e.keyPos,
        `${q(k)} is not supported: it attaches the policy to a Gateway or waypoint, and this filter runs in the workload's own proxy; select workloads with "selector" (and compile with --namespace/--label)`,
      );
    }
  }
  policy.selector = readSelector(mapOf(entry(spec, "selector")?.value), diags, false);

  const rulesE = entry(spec, "rules");
  const rules = listOf(rulesE?.value);
  if (!rules && action === "deny") {
    // Istio's webhook rejects this; the brief of this compiler keeps it as a policy that never matches.
    diags.warn(
      spec.pos,
      "a DENY policy without \"rules\" never matches (Istio rejects it); add an empty rule \"{}\" to deny every request",
    );
  }
  (rules ?? []).forEach((r, i) => {
    const rm = mapOf(r);
    if (rm) policy.rules.push(rule(rm, i, action, md.dryRun, md.namespace, diags));
  });
  return policy;
}
