// Stage 2, check: our own policy language (apiVersion spiffe-authz.dev/v1, kind AuthzPolicy).
// docs/policy-language.md documents it by example; schemas/spiffe-authz/authzpolicy.schema.json is its schema.

import type { Action, ClauseIR, DenyResponseIR, PatternIR, PredicateIR } from "../vocabulary/rule.ts";
import { DEFAULT_DENY_BODY, RULE_ID_PATTERN } from "../vocabulary/rule.ts";
import { type Diagnostics, q } from "./diagnostics.ts";
import type { PolicyAst, RuleAst, SchemaAst } from "./ast.ts";
import {
  attributeValuePatterns,
  checkAttributeKey,
  whenPredicates,
  maybePred,
  methodPatterns,
  pathPatterns,
  portPatterns,
  principalPatterns,
  stringPatterns,
  trustDomainPatterns,
} from "./match.ts";
import { readMetadata, readSelector } from "./metadata.ts";
import { loadJsonSchema, validateAgainstSchema, type JsonSchema } from "./schema.ts";
import { segmentProblem, trustDomainProblem } from "./spiffe.ts";
import { entry, type Item, itemsOf, listOf, mapOf, stringOf, type YDoc, type YMap, type YScalar } from "./yaml.ts";
import { yamlScalarOffsets, type YamlScalarStyle } from "../cel/positions.ts";
import path from "node:path";

export const OUR_API_VERSION = "spiffe-authz.dev/v1";
export const OUR_KIND = "AuthzPolicy";

let schema: JsonSchema | undefined;
/**
 * In our format a host rule names a host, not an authority: it is compared with the request's host name
 * (userinfo, port and a trailing dot removed, ASCII case-insensitively; engine/match.ts hostName), so
 * `api.example.com` matches `API.example.com:8443` and `api.example.com.`. A port in the rule is an error: ports
 * are `ports`. Istio input keeps Istio's whole-authority match.
 */
function hostNamePatterns(items: Item[], what: string, diags: Diagnostics): PatternIR[] {
  const ok: Item[] = [];
  for (const it of items) {
    const v = it.value;
    if (/^\[[0-9A-Fa-f:.]+\]$/.test(v) || !v.includes(":")) {
      ok.push({ value: v.length > 1 && v.endsWith(".") && !v.endsWith("*.") ? v.slice(0, -1) : v, pos: it.pos });
    } else {
      diags.error(it.pos, `host ${q(v)} in ${q(what)} has a port: hosts match the host name on any port; select ports with "ports"`);
    }
  }
  return stringPatterns(ok, what, diags, true);
}

function hostPred(preds: PredicateIR[], negate: boolean, patterns: PatternIR[]): void {
  if (patterns.length > 0) preds.push({ field: "host", negate, ignoreCase: true, hostName: true, arg: "", patterns });
}

/**
 * In our format GET covers HEAD: servers answer HEAD with their GET handler (Express, Go's net/http, most
 * frameworks), so a rule on GET that left HEAD out would let `HEAD /admin` run what `DENY GET /admin` stops.
 * Istio input keeps Istio's exact match.
 */
function withHead(patterns: PatternIR[]): PatternIR[] {
  const exact = (v: string) => patterns.some((p) => p.kind === "exact" && p.value === v);
  return exact("GET") && !exact("HEAD") ? [...patterns, { kind: "exact", value: "HEAD" }] : patterns;
}

function ourSchema(): JsonSchema {
  schema ??= loadJsonSchema("spiffe-authz/authzpolicy.schema.json");
  return schema;
}

/** A list field that must not be an empty list (an empty list reads as "match anything" to some and "nothing" to others). */
function listField(m: YMap, key: string, diags: Diagnostics, allowScalar = false): Item[] | undefined {
  const e = entry(m, key);
  if (!e) return undefined;
  const items = itemsOf(e.value, allowScalar);
  if (e.value.kind === "seq" && e.value.items.length === 0) {
    diags.error(e.value.pos, `${q(key)} must not be empty; remove the field to match anything`);
    return undefined;
  }
  return items;
}

const GRPC_SERVICE = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;
const GRPC_METHOD = /^[A-Za-z_][A-Za-z0-9_]*$/;

function source(m: YMap, diags: Diagnostics): ClauseIR {
  const preds: PredicateIR[] = [];
  const ids = listField(m, "ids", diags);
  if (ids) maybePred(preds, "principal", false, principalPatterns(ids, "ours", "ids", diags));
  const notIds = listField(m, "notIds", diags);
  if (notIds) maybePred(preds, "principal", true, principalPatterns(notIds, "ours", "notIds", diags));
  const tds = listField(m, "trustDomains", diags);
  if (tds) maybePred(preds, "trustDomain", false, trustDomainPatterns(tds, "trustDomains", diags));
  const notTds = listField(m, "notTrustDomains", diags);
  if (notTds) maybePred(preds, "trustDomain", true, trustDomainPatterns(notTds, "notTrustDomains", diags));
  for (const [field, negate] of [
    ["attributes", false],
    ["notAttributes", true],
  ] as const) {
    const attrs = mapOf(entry(m, field)?.value);
    if (!attrs) continue;
    if (attrs.entries.length === 0) diags.error(attrs.pos, `${q(field)} must not be empty; remove the field to match anything`);
    for (const a of attrs.entries) {
      if (!checkAttributeKey(a.key, a.keyPos, diags)) continue;
      const values = listField(attrs, a.key, diags, true);
      if (values) maybePred(preds, "attribute", negate, attributeValuePatterns(values, a.key, `${field}.${a.key}`, diags), a.key);
    }
  }
  const ns = listField(m, "namespaces", diags);
  if (ns) maybePred(preds, "attribute", false, attributeValuePatterns(ns, "ns", "namespaces", diags), "ns");
  const notNs = listField(m, "notNamespaces", diags);
  if (notNs) maybePred(preds, "attribute", true, attributeValuePatterns(notNs, "ns", "notNamespaces", diags), "ns");
  return { predicates: preds };
}

function operation(m: YMap, diags: Diagnostics): ClauseIR {
  const preds: PredicateIR[] = [];
  const grpcE = entry(m, "grpc");
  const grpc = mapOf(grpcE?.value);
  if (grpc) {
    for (const k of ["paths", "notPaths", "methods", "notMethods"]) {
      const e = entry(m, k);
      if (e) diags.error(e.keyPos, `${q(k)} cannot be combined with "grpc" in one operation (gRPC fixes the path and the method POST); use a separate "to" entry`);
    }
    const svcE = entry(grpc, "service");
    const svc = stringOf(svcE?.value);
    const methods = listField(grpc, "methods", diags);
    if (svc !== undefined && !GRPC_SERVICE.test(svc)) {
      diags.error(svcE!.value.pos, `invalid gRPC service ${q(svc)}: write the fully-qualified name, e.g. "acme.orders.v1.Orders"`);
    } else if (svc !== undefined) {
      // gRPC requests are HTTP/2 POSTs to /<package.Service>/<Method> (the gRPC over HTTP/2 protocol).
      maybePred(preds, "method", false, [{ kind: "exact", value: "POST" }]);
      if (methods) {
        const pats = [];
        for (const it of methods) {
          if (!GRPC_METHOD.test(it.value)) diags.error(it.pos, `invalid gRPC method ${q(it.value)}: a method name is an identifier such as "GetOrder"`);
          else pats.push({ kind: "exact" as const, value: `/${svc}/${it.value}` });
        }
        maybePred(preds, "path", false, pats);
      } else {
        maybePred(preds, "path", false, [{ kind: "prefix", value: `/${svc}/` }]);
      }
    }
  } else {
    const methods = listField(m, "methods", diags);
    if (methods) maybePred(preds, "method", false, withHead(methodPatterns(methods, "methods", diags)));
    const notMethods = listField(m, "notMethods", diags);
    if (notMethods) maybePred(preds, "method", true, withHead(methodPatterns(notMethods, "notMethods", diags)));
    const paths = listField(m, "paths", diags);
    if (paths) maybePred(preds, "path", false, pathPatterns(paths, "paths", "ours", diags));
    const notPaths = listField(m, "notPaths", diags);
    if (notPaths) maybePred(preds, "path", true, pathPatterns(notPaths, "notPaths", "ours", diags));
  }
  const hosts = listField(m, "hosts", diags);
  if (hosts) hostPred(preds, false, hostNamePatterns(hosts, "hosts", diags));
  const notHosts = listField(m, "notHosts", diags);
  if (notHosts) hostPred(preds, true, hostNamePatterns(notHosts, "notHosts", diags));
  const ports = listField(m, "ports", diags);
  if (ports) maybePred(preds, "port", false, portPatterns(ports, "ports", diags));
  const notPorts = listField(m, "notPorts", diags);
  if (notPorts) maybePred(preds, "port", true, portPatterns(notPorts, "notPorts", diags));
  return { predicates: preds };
}

/** The rule's `condition` scalar, with a mapping from offsets of its value to file positions. */
function conditionOf(m: YMap, doc: YDoc): RuleAst["condition"] {
  const e = entry(m, "condition");
  if (e?.value.kind !== "scalar" || typeof e.value.value !== "string") return undefined; // the schema reported it
  const node: YScalar = e.value;
  const text = node.value as string;
  let toFile: ((i: number) => number) | undefined;
  if (node.range && node.style) {
    try {
      toFile = yamlScalarOffsets(doc.text, node.range[0], node.range[1], node.style as YamlScalarStyle, text);
    } catch {
      toFile = undefined; // an alias or a style the mapper does not know: fall back to the scalar's position
    }
  }
  return {
    text,
    pos: node.pos,
    posAt: (i: number) => (toFile ? doc.posAt(toFile(i)) : node.pos),
  };
}

/** `/svc/Method` when the rule's operations are exactly one `grpc` naming exactly one method. */
function grpcScope(m: YMap): { method: string; pos: RuleAst["pos"] } | undefined {
  const to = listOf(entry(m, "to")?.value);
  if (to?.length !== 1) return undefined;
  const op = mapOf(to[0]);
  const grpc = mapOf(op ? entry(op, "grpc")?.value : undefined);
  if (!grpc) return undefined;
  const svc = stringOf(entry(grpc, "service")?.value);
  const methods = itemsOf(entry(grpc, "methods")?.value);
  if (svc === undefined || !methods || methods.length !== 1 || !GRPC_SERVICE.test(svc) || !GRPC_METHOD.test(methods[0].value)) return undefined;
  return { method: `/${svc}/${methods[0].value}`, pos: methods[0].pos };
}

function rule(m: YMap, index: number, policyDryRun: boolean, doc: YDoc, diags: Diagnostics): RuleAst {
  const idE = entry(m, "id");
  // (`id` sits at the rule's own position; so do errors about the rule as a whole.)
  const id = stringOf(idE?.value);
  if (id !== undefined && !RULE_ID_PATTERN.test(id)) {
    diags.error(
      idE!.value.pos,
      `invalid rule id ${q(id)}: use 1 to 200 characters from A-Z a-z 0-9 . _ : / - [ ] # @ (it appears in Envoy response details, which allow no spaces)`,
    );
  }
  const action = (stringOf(entry(m, "action")?.value) ?? "allow") as Action;
  const dryRunV = entry(m, "dryRun")?.value;
  const dryRun = policyDryRun || (dryRunV?.kind === "scalar" && dryRunV.value === true);
  const condition = conditionOf(m, doc);
  const scope = grpcScope(m);
  const clauses = (key: "from" | "to", fn: (m: YMap, d: Diagnostics) => ClauseIR): ClauseIR[] => {
    const e = entry(m, key);
    const list = listOf(e?.value);
    if (!list) return [];
    if (list.length === 0) {
      diags.error(e!.value.pos, `${q(key)} must not be empty; remove it to match ${key === "from" ? "any source" : "any operation"}`);
      return [];
    }
    const out: ClauseIR[] = [];
    for (const item of list) {
      const im = mapOf(item);
      if (im) out.push(fn(im, diags));
    }
    return out;
  };
  const sources = clauses("from", source);
  const operations = clauses("to", operation);
  const conditions: PredicateIR[] = [];
  conditions.push(...whenPredicates(entry(m, "when")?.value, "ours", diags));
  const flag = (k: string) => {
    const v = entry(m, k)?.value;
    return v?.kind === "scalar" && v.value === true;
  };
  const recordAllows = flag("recordAllows");
  if (recordAllows && action !== "allow") {
    diags.error(entry(m, "recordAllows")!.keyPos, `"recordAllows" goes with allow rules (denials are always recorded; audit rules never decide)`);
  }
  const respE = entry(m, "denyResponse");
  const resp = denyResponse(mapOf(respE?.value), diags);
  if (resp && action !== "deny") diags.error(respE!.keyPos, `"denyResponse" goes with deny rules; for the default deny set it in "spec"`);
  return {
    id: id !== undefined && RULE_ID_PATTERN.test(id) ? id : undefined,
    pos: idE ? idE.value.pos : m.pos,
    index,
    action,
    dryRun,
    ...(recordAllows ? { recordAllows } : {}),
    ...(flag("metrics") ? { metrics: true } : {}),
    ...(resp && action === "deny" ? { denyResponse: resp } : {}),
    sources,
    operations,
    conditions,
    condition,
    grpcMethod: scope?.method,
    grpcMethodPos: scope?.pos,
  };
}

/** Checks one AuthzPolicy document and returns its checked form (undefined when it cannot be read at all). */
export function checkOurPolicy(doc: YDoc, diags: Diagnostics): PolicyAst | undefined {
  const root = mapOf(doc.root);
  if (!root) return undefined;
  validateAgainstSchema(root, ourSchema(), diags, undefined, { from: "source", to: "operation", when: "condition" });
  const md = readMetadata(root, doc.pos, diags);
  const spec = mapOf(entry(root, "spec")?.value);
  const policy: PolicyAst = {
    format: "spiffe-authz",
    pos: doc.pos,
    name: md.name,
    namespace: md.namespace,
    dryRun: md.dryRun,
    schemas: [],
    rules: [],
  };
  if (!spec) return policy;
  const selE = entry(spec, "selector");
  policy.selector = readSelector(mapOf(selE?.value), diags, true);
  const defE = entry(spec, "default");
  const def = stringOf(defE?.value);
  if (def === "allow" || def === "deny") policy.default = { action: def, pos: defE!.value.pos };
  const tds = mapOf(entry(spec, "trustDomains")?.value);
  for (const t of tds?.entries ?? []) {
    const problem = trustDomainProblem(t.key);
    if (problem) {
      diags.error(t.keyPos, `invalid trust domain ${q(t.key)}: ${problem}`);
      continue;
    }
    const reqE = entry(mapOf(t.value) ?? { kind: "map", pos: t.keyPos, entries: [] }, "require");
    const keys: string[] = [];
    for (const it of itemsOf(reqE?.value) ?? []) {
      const p = segmentProblem(it.value);
      if (p) diags.error(it.pos, `attribute key ${q(it.value)} can never be present: ${p.replace("the path", "an ID segment")}`);
      else if (keys.includes(it.value)) diags.error(it.pos, `attribute key ${q(it.value)} is listed twice`);
      else keys.push(it.value);
    }
    const schemaAst: SchemaAst = { trustDomain: t.key, keys, pos: t.keyPos };
    policy.schemas.push(schemaAst);
  }
  const rules = listOf(entry(spec, "rules")?.value) ?? [];
  rules.forEach((r, i) => {
    const rm = mapOf(r);
    if (rm) policy.rules.push(rule(rm, i, md.dryRun, doc, diags));
  });
  // .proto files are named relative to the policy file (as a kustomization names its resources).
  const protos = listOf(entry(spec, "protos")?.value);
  if (protos) {
    policy.protos = [];
    for (const it of itemsOf(entry(spec, "protos")!.value) ?? []) {
      policy.protos.push({ value: path.resolve(path.dirname(doc.file), it.value), pos: it.pos });
    }
  }
  const body = mapOf(entry(spec, "body")?.value);
  if (body) {
    policy.body = {};
    const maxE = entry(body, "maxBytes");
    if (maxE && maxE.value.kind === "scalar" && typeof maxE.value.value === "number") {
      policy.body.maxBytes = { value: maxE.value.value, pos: maxE.value.pos };
    }
    const gm = stringOf(entry(body, "grpcMessages")?.value);
    if (gm === "single" || gm === "first") policy.body.grpcMessages = { value: gm, pos: entry(body, "grpcMessages")!.value.pos };
  }
  const rateE = entry(mapOf(entry(spec, "audit")?.value) ?? { kind: "map", pos: spec.pos, entries: [] }, "allowSampleRate");
  if (rateE && rateE.value.kind === "scalar" && typeof rateE.value.value === "number") {
    policy.allowSampleRate = { value: rateE.value.value, pos: rateE.value.pos };
  }
  const respE = entry(spec, "denyResponse");
  const resp = denyResponse(mapOf(respE?.value), diags);
  if (resp) policy.denyResponse = { value: resp, pos: respE!.value.pos };
  return policy;
}

/** Headers a deny response may not set: Envoy writes these itself. */
const RESERVED_RESPONSE_HEADERS = new Set(["content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te"]);

/** A `denyResponse` map (schema-checked already): status, body, headers, grpcStatus, requestId. */
function denyResponse(m: YMap | undefined, diags: Diagnostics): DenyResponseIR | undefined {
  if (!m) return undefined;
  const num = (k: string) => {
    const v = entry(m, k)?.value;
    return v?.kind === "scalar" && typeof v.value === "number" ? v.value : undefined;
  };
  const out: DenyResponseIR = {
    status: num("status") ?? 403,
    body: stringOf(entry(m, "body")?.value) ?? DEFAULT_DENY_BODY,
    headers: [],
    grpcStatus: num("grpcStatus") ?? null,
    requestId: entry(m, "requestId")?.value.kind === "scalar" && (entry(m, "requestId")!.value as YScalar).value === true,
  };
  for (const h of mapOf(entry(m, "headers")?.value)?.entries ?? []) {
    const name = h.key.toLowerCase();
    const value = stringOf(h.value);
    if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) {
      diags.error(h.keyPos, `invalid response header name ${q(h.key)}: header names are HTTP tokens (pseudo-headers such as ":status" cannot be set)`);
    } else if (RESERVED_RESPONSE_HEADERS.has(name)) {
      diags.error(h.keyPos, `response header ${q(h.key)} is written by Envoy and cannot be set`);
    } else if (value !== undefined && /[\x00-\x08\x0a-\x1f\x7f]/.test(value)) {
      diags.error(h.value.pos, `response header ${q(h.key)} has a control character in its value`);
    } else if (value !== undefined) {
      out.headers.push([name, value]);
    }
  }
  return out;
}
