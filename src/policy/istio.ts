// Stage 2, check: Istio AuthorizationPolicy (security.istio.io/v1 and v1beta1), with Istio's semantics.
//
// The document is validated against the real CRD schema (schemas/istio/), then checked as istiod's validation
// webhook does (pkg/config/validation, ValidateAuthorizationPolicy), then translated the way istiod builds Envoy
// RBAC (pilot/pkg/security/authz/model): principals get the "spiffe://" prefix, namespaces become the `ns`
// attribute of the peer's ID, `when` conditions are AND-ed with every source and operation.

import type { Action, ClauseIR, PatternIR, PredicateIR } from "../vocabulary/rule.ts";
import { type Diagnostics, didYouMean, q, type Pos } from "./diagnostics.ts";
import type { PolicyAst, RuleAst } from "./ast.ts";
import { isPathTemplate, MATCH_ANY, MATCH_ONE, portPatterns } from "./match.ts";
import {
  cidrPattern, claimPath, expandTrustDomainAliases, headerMatcher, namespacePattern, pathTemplatePattern,
  principalPattern, replaceTrustDomainAliases, requestPrincipalPair, serviceAccountPatterns, stringMatcher,
  trustDomainBundle, trustDomainPattern, type TrustDomainBundle,
} from "./istio-values.ts";
import { OBJECT_META_FIELDS, readMetadata, readSelector } from "./metadata.ts";
import { crdSchema, validateAgainstSchema } from "./schema.ts";
import { entry, fieldItems, type Item, listOf, mapOf, stringOf, type YDoc, type YMap, type YNode } from "./yaml.ts";

export const ISTIO_GROUP = "security.istio.io";
export const ISTIO_VERSIONS = ["v1", "v1beta1"];
export const ISTIO_KIND = "AuthorizationPolicy";
export const AUTHZ_CRD_FILE = "authorizationpolicies.security.istio.io.yaml";

/** Options of the Istio translation that istiod takes from the mesh, not from the policy. */
export interface IstioOptions {
  /** meshConfig.trustDomain and trustDomainAliases (default: cluster.local, no aliases) */
  bundle?: TrustDomainBundle;
  /** the workload's namespace: `serviceAccounts: [<sa>]` of a policy without metadata.namespace means this one */
  namespace?: string;
}

/**
 * Fields and keys Envoy 1.40 gives a wasm filter no way to evaluate. The direct peer address (RBAC's
 * `direct_remote_ip`, which istiod writes for `ipBlocks` and `source.ip`) is not among the attributes a wasm filter
 * can read: `source.address` is the address after x-forwarded-for handling (`remoteIpBlocks`).
 */
const DIRECT_IP_REASON =
  "Envoy 1.40 does not show a wasm filter the direct peer address (RBAC's direct_remote_ip): its `source.address` is the address after x-forwarded-for handling; use remoteIpBlocks / remote.ip, which compile";

/** True when a list field is present with at least one entry (Istio treats an empty list as absent). */
function has(m: YMap, key: string): boolean {
  const items = fieldItems(m, key);
  return items !== undefined && items.length > 0;
}

function nonEmptyItems(m: YMap, key: string): Item[] | undefined {
  const items = fieldItems(m, key);
  return items && items.length > 0 ? items : undefined;
}

/** Istio rejects empty strings in every list (CheckEmptyValues); false when one was reported. */
function noEmpty(items: Item[], what: string, diags: Diagnostics): boolean {
  const bad = items.find((it) => it.value === "");
  if (bad) diags.error(bad.pos, `empty value in ${q(what)}; remove it or write "*" to match any present value`);
  return !bad;
}

/** Istio's CheckWildcardValues: at most one "*", only first or last. */
function checkWildcards(items: Item[], what: string, diags: Diagnostics): boolean {
  for (const it of items) {
    const n = it.value.split("*").length - 1;
    if (n > 1 || (n === 1 && it.value !== "*" && !it.value.startsWith("*") && !it.value.endsWith("*"))) {
      diags.error(it.pos, `${q(it.value)} in ${q(what)}: a wildcard "*" may appear once, as the first or last character (Istio rejects it)`);
      return false;
    }
  }
  return true;
}

/** Istio's CheckServiceAccount. */
function checkServiceAccounts(items: Item[], what: string, diags: Diagnostics): boolean {
  if (items.length > 16) {
    diags.error(items[16].pos, `${q(what)} may not have more than 16 values (Istio rejects it)`);
    return false;
  }
  for (const it of items) {
    const v = it.value;
    const slashes = v.split("/").length - 1;
    const [ns, sa] = slashes === 1 ? v.split("/") : ["x", v];
    if (v === "" || v.includes("*") || slashes > 1 || v.length > 320 || ns === "" || sa === "") {
      diags.error(it.pos, `invalid service account ${q(v)} in ${q(what)}: write "<name>" or "<namespace>/<name>", without wildcards, at most 320 characters`);
      return false;
    }
  }
  return true;
}

/** Istio's ValidateIPs, and the CIDR patterns of the values. */
function cidrPatterns(items: Item[], what: string, diags: Diagnostics): PatternIR[] {
  const out: PatternIR[] = [];
  for (const it of items) {
    if (!noEmpty([it], what, diags)) continue;
    const r = cidrPattern(it.value);
    if ("error" in r) diags.error(it.pos, `invalid IP address or CIDR ${q(it.value)} in ${q(what)}: ${r.error}`);
    else out.push(r.pattern);
  }
  return out;
}

const SPIFFE_ID_CHARS = /^spiffe:\/\/[a-z0-9._-]+(\/[a-zA-Z0-9._-]+)*$/;

/**
 * A principal that can never match a valid SPIFFE ID is accepted, as istiod accepts it; it still compares with
 * every certificate name Envoy does (the URI SAN, the DNS SAN, the subject), so say what it will and won't match.
 */
function warnNeverSpiffe(items: Item[], what: string, diags: Diagnostics): void {
  for (const it of items) {
    const p = principalPattern(it.value);
    const bad =
      (p.kind === "exact" && (!SPIFFE_ID_CHARS.test(p.value) || /\/\.\.?(\/|$)/.test(p.value))) ||
      (p.kind === "prefix" && !/^spiffe:\/\/[a-z0-9._-]*(\/[a-zA-Z0-9._/-]*)?$/.test(p.value));
    if (bad) {
      diags.warn(
        it.pos,
        `${q(it.value)} in ${q(what)} can never match a valid SPIFFE ID; as in Istio it is compared with the peer certificate's names as they are (URI SAN, DNS SAN, subject)`,
      );
    }
  }
}

/** Namespace, service-account and trust-domain values with characters a SPIFFE ID cannot hold: a warning, as above. */
function warnNeverSegment(items: Item[] | undefined, what: string, chars: RegExp, diags: Diagnostics): void {
  for (const it of items ?? []) {
    if (!chars.test(it.value.replaceAll("*", ""))) {
      diags.warn(
        it.pos,
        `${q(it.value)} in ${q(what)} can never match a valid SPIFFE ID; as in Istio it is compared with the peer certificate's names as they are (URI SAN, DNS SAN, subject)`,
      );
    }
  }
}

const SEGMENT_CHARS = /^[a-zA-Z0-9._-]*$/;
const SA_CHARS = /^[a-zA-Z0-9._-]*(\/[a-zA-Z0-9._-]*)?$/;
const TD_CHARS = /^[a-z0-9._-]*$/;

function predicate(field: PredicateIR["field"], negate: boolean, patterns: PatternIR[], arg = "", ignoreCase = false): PredicateIR {
  return { field, negate, ignoreCase, arg, patterns };
}

/** Adds `values` (negate 0) and `notValues` (negate 1) predicates of one field, as istiod ANDs them. */
function addBoth(
  preds: PredicateIR[], field: PredicateIR["field"], values: PatternIR[] | undefined, notValues: PatternIR[] | undefined, arg = "", ignoreCase = false,
): void {
  if (values && values.length > 0) preds.push(predicate(field, false, values, arg, ignoreCase));
  if (notValues && notValues.length > 0) preds.push(predicate(field, true, notValues, arg, ignoreCase));
}

interface SourceValues {
  principals?: Item[];
  notPrincipals?: Item[];
  namespaces?: Item[];
  notNamespaces?: Item[];
  serviceAccounts?: Item[];
  notServiceAccounts?: Item[];
  trustDomains?: Item[];
  notTrustDomains?: Item[];
  requestPrincipals?: Item[];
  notRequestPrincipals?: Item[];
  remoteIpBlocks?: Item[];
  notRemoteIpBlocks?: Item[];
}

/** Context of one policy's translation. */
interface Ctx {
  bundle: TrustDomainBundle;
  namespace: string | undefined;
  namespacePos: Pos;
  diags: Diagnostics;
}

const vals = (items: Item[] | undefined) => items?.map((i) => i.value);

function principalPreds(preds: PredicateIR[], v: Item[] | undefined, nv: Item[] | undefined, what: string, ctx: Ctx): void {
  for (const [items, w] of [[v, what], [nv, `not${what[0].toUpperCase()}${what.slice(1)}`]] as const) if (items) warnNeverSpiffe(items, w, ctx.diags);
  const tr = (items: Item[] | undefined) => (items ? replaceTrustDomainAliases(vals(items)!, ctx.bundle).map(principalPattern) : undefined);
  addBoth(preds, "peerName", tr(v), tr(nv));
}

function serviceAccountPreds(preds: PredicateIR[], v: Item[] | undefined, nv: Item[] | undefined, ctx: Ctx): void {
  const ns = ctx.namespace;
  const tr = (items: Item[] | undefined) => {
    if (!items) return undefined;
    if (ns === undefined && items.some((i) => !i.value.includes("/"))) {
      const it = items.find((i) => !i.value.includes("/"))!;
      ctx.diags.error(it.pos, `service account ${q(it.value)} has no namespace and the policy has none; give the policy metadata.namespace, compile with --namespace, or write "<namespace>/${it.value}"`);
      return undefined;
    }
    return items.flatMap((i) => serviceAccountPatterns(i.value, ns ?? ""));
  };
  addBoth(preds, "peerName", tr(v), tr(nv));
}

function trustDomainPreds(preds: PredicateIR[], v: Item[] | undefined, nv: Item[] | undefined, ctx: Ctx): void {
  const tr = (items: Item[] | undefined) => (items ? expandTrustDomainAliases(vals(items)!, ctx.bundle).map(trustDomainPattern) : undefined);
  addBoth(preds, "peerName", tr(v), tr(nv));
}

function requestPrincipalPreds(preds: PredicateIR[], v: Item[] | undefined, nv: Item[] | undefined): void {
  const tr = (items: Item[] | undefined) => items?.flatMap((i) => requestPrincipalPair(i.value));
  addBoth(preds, "requestPrincipal", tr(v), tr(nv));
}

/**
 * One `from.source` as istiod builds its principal: every field ANDed, in istiod's order (model.New inserts
 * principals, requestPrincipals, serviceAccounts, trustDomains, namespaces, remoteIpBlocks, ipBlocks at the front).
 */
function sourceClause(src: SourceValues, ctx: Ctx): ClauseIR {
  const preds: PredicateIR[] = [];
  warnNeverSegment(src.namespaces, "namespaces", SEGMENT_CHARS, ctx.diags);
  warnNeverSegment(src.notNamespaces, "notNamespaces", SEGMENT_CHARS, ctx.diags);
  warnNeverSegment(src.serviceAccounts, "serviceAccounts", SA_CHARS, ctx.diags);
  warnNeverSegment(src.notServiceAccounts, "notServiceAccounts", SA_CHARS, ctx.diags);
  warnNeverSegment(src.trustDomains, "trustDomains", TD_CHARS, ctx.diags);
  warnNeverSegment(src.notTrustDomains, "notTrustDomains", TD_CHARS, ctx.diags);
  principalPreds(preds, src.principals, src.notPrincipals, "principals", ctx);
  requestPrincipalPreds(preds, src.requestPrincipals, src.notRequestPrincipals);
  serviceAccountPreds(preds, src.serviceAccounts, src.notServiceAccounts, ctx);
  trustDomainPreds(preds, src.trustDomains, src.notTrustDomains, ctx);
  addBoth(preds, "peerName", src.namespaces?.map((i) => namespacePattern(i.value)), src.notNamespaces?.map((i) => namespacePattern(i.value)));
  addBoth(preds, "remoteIp", src.remoteIpBlocks && cidrPatterns(src.remoteIpBlocks, "remoteIpBlocks", ctx.diags), src.notRemoteIpBlocks && cidrPatterns(src.notRemoteIpBlocks, "notRemoteIpBlocks", ctx.diags));
  return { predicates: preds };
}

function readSource(s: YMap, ctx: Ctx): ClauseIR | undefined {
  const diags = ctx.diags;
  for (const f of ["ipBlocks", "notIpBlocks"]) {
    const e = entry(s, f);
    if (e && has(s, f)) {
      diags.error(e.keyPos, `${q(f)} is not supported: ${DIRECT_IP_REASON}`);
      return undefined;
    }
  }
  const src: SourceValues = {};
  let ok = true;
  for (const f of SOURCE_FIELDS) {
    const items = nonEmptyItems(s, f);
    if (!items) continue;
    if (!noEmpty(items, f, diags)) ok = false;
    if ((f === "trustDomains" || f === "notTrustDomains")) {
      if (!checkWildcards(items, f, diags)) ok = false;
      const slash = items.find((i) => i.value.includes("/"));
      if (slash) {
        diags.error(slash.pos, `trust domain ${q(slash.value)} in ${q(f)} must not contain "/" (Istio rejects it)`);
        ok = false;
      }
    }
    if ((f === "serviceAccounts" || f === "notServiceAccounts") && !checkServiceAccounts(items, f, diags)) ok = false;
    (src as Record<string, Item[]>)[f] = items;
  }
  // serviceAccounts together with principals or namespaces: the CRD's own CEL rule reports it (schema pass).
  if ((src.serviceAccounts || src.notServiceAccounts) && (src.principals || src.notPrincipals || src.namespaces || src.notNamespaces)) ok = false;
  return ok ? sourceClause(src, ctx) : undefined;
}

function operationClause(o: YMap, diags: Diagnostics): ClauseIR | undefined {
  const preds: PredicateIR[] = [];
  let ok = true;
  const items = (key: string): Item[] | undefined => {
    const it = nonEmptyItems(o, key);
    if (it && !noEmpty(it, key, diags)) ok = false;
    return it;
  };
  const strings = (key: string, m: (v: string) => PatternIR) => items(key)?.map((i) => m(i.value));
  // istiod's order: hosts, methods, paths, ports (insertFront of ports, paths, methods, hosts).
  addBoth(preds, "host", strings("hosts", headerMatcher)?.map(lower), strings("notHosts", headerMatcher)?.map(lower), "", true);
  for (const key of ["methods", "notMethods"]) {
    for (const it of nonEmptyItems(o, key) ?? []) {
      if (/^[A-Za-z]+$/.test(it.value) && /[a-z]/.test(it.value)) {
        diags.warn(it.pos, `method ${q(it.value)} is compared case-sensitively and clients send ${q(it.value.toUpperCase())}`);
      }
    }
  }
  addBoth(preds, "method", strings("methods", headerMatcher), strings("notMethods", headerMatcher));
  const paths = (key: string) => {
    const list = items(key);
    if (!list) return undefined;
    const out: PatternIR[] = [];
    for (const it of list) {
      const p = istioPathPattern(it, key, diags);
      if (p) out.push(p);
      else ok = false;
    }
    return out;
  };
  addBoth(preds, "path", paths("paths"), paths("notPaths"));
  const ports = (key: string) => {
    const list = items(key);
    return list && portPatterns(list, key, diags);
  };
  addBoth(preds, "port", ports("ports"), ports("notPorts"));
  return ok ? { predicates: preds } : undefined;
}

function lower(p: PatternIR): PatternIR {
  return p.kind === "glob" || p.kind === "cidr" ? p : { kind: p.kind, value: p.value.toLowerCase() };
}

/** A `paths` value: a uri_template when it holds `{*}`/`{**}` (validated as istiod does), else a StringMatcher. */
function istioPathPattern(it: Item, what: string, diags: Diagnostics): PatternIR | undefined {
  const v = it.value;
  if (isPathTemplate(v) || v.includes("{") || v.includes("}")) {
    const problem = istioTemplateProblem(v);
    if (problem) {
      diags.error(it.pos, `invalid path template ${q(v)} in ${q(what)}: ${problem} (Istio rejects it)`);
      return undefined;
    }
  }
  if (isPathTemplate(v)) {
    const p = pathTemplatePattern(v);
    if ("error" in p) {
      diags.error(it.pos, `path template ${q(v)} in ${q(what)}: ${p.error}; Envoy would reject the listener istiod sends`);
      return undefined;
    }
    return p;
  }
  const p = stringMatcher(v);
  if (p.kind !== "glob" && p.value.includes("*")) {
    diags.warn(it.pos, `${q(v)} contains "*" that matches a literal "*"; a wildcard works only as the first or last character`);
  }
  if ((p.kind === "exact" || p.kind === "prefix") && !p.value.startsWith("/")) {
    diags.warn(it.pos, `path ${q(v)} does not start with "/" and will not match request paths`);
  }
  return p;
}

/** istiod's CheckValidPathTemplate. */
function istioTemplateProblem(path: string): string | null {
  const template = isPathTemplate(path);
  let seenAny = false;
  for (const glob of path.replace(/^\/+|\/+$/g, "").split("/")) {
    if (glob === MATCH_ONE && !seenAny) continue;
    if (glob === MATCH_ANY && !seenAny) {
      seenAny = true;
      continue;
    }
    if ((glob === MATCH_ANY || glob === MATCH_ONE) && seenAny) return "\"{**}\" must not be followed by another \"{*}\" or \"{**}\"";
    if (/[{}]/.test(glob)) return `segment ${q(glob)} has "{" or "}" outside a whole "{*}" or "{**}"`;
    if (template && !/^[a-zA-Z0-9\-._~%!$&'()+,;:@=]+$/.test(glob)) return `segment ${q(glob)} is not a valid literal (RFC 3986 pchar)`;
  }
  return null;
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

/**
 * The `when` conditions as istiod translates them. Returns null when istiod would skip the whole rule (a key its
 * generator cannot parse in an ALLOW policy); in DENY and AUDIT policies istiod drops such a condition instead.
 */
function whenConditions(list: YNode | undefined, action: Action, ctx: Ctx): PredicateIR[] | null {
  const diags = ctx.diags;
  const out: PredicateIR[] = [];
  let skipRule = false;
  for (const c of listOf(list) ?? []) {
    const cm = mapOf(c);
    if (!cm) continue;
    const keyE = entry(cm, "key");
    const key = stringOf(keyE?.value);
    if (key === undefined) continue;
    const keyPos = keyE!.value.pos;
    const values = fieldItems(cm, "values");
    const notValues = fieldItems(cm, "notValues");
    if (key === "") {
      diags.error(keyPos, "\"key\" must not be empty");
      continue;
    }
    if (!values?.length && !notValues?.length) {
      if (!cm.entries.some((e) => !["key", "values", "notValues"].includes(e.key))) {
        diags.error(cm.pos, `condition on ${q(key)} needs at least one value in "values" or "notValues" (Istio rejects it)`);
      }
      continue;
    }
    if ((values && !noEmpty(values, "values", diags)) || (notValues && !noEmpty(notValues, "notValues", diags))) continue;
    const both = (field: PredicateIR["field"], tr: (items: Item[], what: string) => PatternIR[] | undefined, arg = "", ignoreCase = false) =>
      addBoth(out, field, values?.length ? tr(values, "values") : undefined, notValues?.length ? tr(notValues, "notValues") : undefined, arg, ignoreCase);
    // istiod's validateMapKey: "<attribute>[<name>]" with something in the brackets.
    const mapKeyOk = () => {
      const open = key.indexOf("[");
      if (key.endsWith("]") && open > 0 && open < key.length - 2) return true;
      diags.error(keyPos, `bad key ${q(key)}: write it as ${q(key.replace(/\[.*$/, "") + "[<name>]")} (Istio rejects it)`);
      return false;
    };
    /** A key whose bracket part istiod's generator cannot read: the rule is skipped (ALLOW) or the condition dropped. */
    const unreadable = (why: string) => {
      diags.warn(keyPos, `key ${q(key)}: ${why}; as istiod does, ${action === "allow" ? "the rule never matches" : "the condition is ignored"}`);
      if (action === "allow") skipRule = true;
    };
    if (key.startsWith("request.headers")) {
      if (!mapKeyOk()) continue;
      const rest = key.slice("request.headers".length);
      if (!rest.startsWith("[")) {
        unreadable("the header name must follow \"request.headers\" directly in brackets");
        continue;
      }
      both("header", (items) => items.map((i) => headerMatcher(i.value)), rest.slice(1, -1).toLowerCase());
      continue;
    }
    if (key.startsWith("request.auth.claims")) {
      if (!mapKeyOk()) continue;
      const path = claimPath(key.slice("request.auth.claims".length));
      if (path === null) {
        unreadable("the claim names must follow \"request.auth.claims\" directly in brackets");
        continue;
      }
      if (path.some((n) => n.includes("\0"))) {
        diags.error(keyPos, `claim name in ${q(key)} contains a NUL character, which the table cannot hold`);
        continue;
      }
      both("jwtClaim", (items) => items.map((i) => stringMatcher(i.value)), path.join("\0"));
      continue;
    }
    if (key.startsWith("experimental.envoy.filters.")) {
      diags.error(keyPos, `key ${q(key)} is not supported: it reads another Envoy filter's metadata, which this filter does not match`);
      continue;
    }
    switch (key) {
      case "source.ip":
        diags.error(keyPos, `key ${q(key)} is not supported: ${DIRECT_IP_REASON}`);
        continue;
      case "remote.ip":
        both("remoteIp", (items, w) => cidrPatterns(items, w, diags));
        continue;
      case "destination.ip":
        both("destinationIp", (items, w) => cidrPatterns(items, w, diags));
        continue;
      case "destination.port":
        both("port", (items, w) => portPatterns(items, w, diags));
        continue;
      case "connection.sni":
        both("sni", (items) => items.map((i) => stringMatcher(i.value)));
        continue;
      case "source.namespace":
        both("peerName", (items) => items.map((i) => namespacePattern(i.value)));
        continue;
      case "source.principal":
        principalPreds(out, values?.length ? values : undefined, notValues?.length ? notValues : undefined, "values", ctx);
        continue;
      case "source.serviceAccount":
        if ((values && !checkServiceAccounts(values, "values", diags)) || (notValues && !checkServiceAccounts(notValues, "notValues", diags))) continue;
        serviceAccountPreds(out, values?.length ? values : undefined, notValues?.length ? notValues : undefined, ctx);
        continue;
      case "source.trustDomain":
        if ((values && !checkWildcards(values, "values", diags)) || (notValues && !checkWildcards(notValues, "notValues", diags))) continue;
        trustDomainPreds(out, values?.length ? values : undefined, notValues?.length ? notValues : undefined, ctx);
        continue;
      case "request.auth.principal":
        requestPrincipalPreds(out, values?.length ? values : undefined, notValues?.length ? notValues : undefined);
        continue;
      case "request.auth.audiences":
        both("jwtClaim", (items) => items.map((i) => stringMatcher(i.value)), "aud");
        continue;
      case "request.auth.presenter":
        both("jwtClaim", (items) => items.map((i) => stringMatcher(i.value)), "azp");
        continue;
      case "destination.namespace":
        diags.error(keyPos, `key ${q(key)} is replaced by the policy's metadata.namespace (Istio rejects it)`);
        continue;
      case "destination.name":
      case "destination.user":
        diags.error(keyPos, `key ${q(key)} is a deprecated Istio attribute (v1alpha1 only; Istio rejects it)`);
        continue;
    }
    if (key.startsWith("destination.labels")) {
      diags.error(keyPos, `key ${q(key)} is replaced by the policy's selector (Istio rejects it)`);
      continue;
    }
    diags.error(keyPos, `unknown condition key ${q(key)} (Istio rejects it); Istio's keys: ${ISTIO_KEYS.map(q).join(", ")}`);
  }
  return skipRule ? null : out;
}

const ISTIO_KEYS = [
  "request.headers[<name>]", "source.ip", "remote.ip", "source.namespace", "source.principal", "source.serviceAccount",
  "source.trustDomain", "request.auth.principal", "request.auth.audiences", "request.auth.presenter",
  "request.auth.claims[<name>]", "destination.ip", "destination.port", "connection.sni",
];

function rule(m: YMap, index: number, action: Action, dryRun: boolean, ctx: Ctx): RuleAst | undefined {
  const diags = ctx.diags;
  const sources: ClauseIR[] = [];
  const operations: ClauseIR[] = [];
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
    const clause = readSource(s, ctx);
    if (clause) sources.push(clause);
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
    const clause = operationClause(o, diags);
    if (clause) operations.push(clause);
  }
  const conditions = whenConditions(entry(m, "when")?.value, action, ctx);
  if (conditions === null) return undefined;
  return { pos: m.pos, index, action, dryRun, sources, operations, conditions };
}

/** Checks one Istio AuthorizationPolicy document and returns its checked form. */
export function checkIstioPolicy(doc: YDoc, version: string, diags: Diagnostics, options: IstioOptions = {}): PolicyAst | undefined {
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
  if (md.dryRunPos && action === "audit") {
    diags.error(md.dryRunPos, `annotation "istio.io/dry-run" goes only with action ALLOW or DENY (Istio rejects it on AUDIT); remove it`);
  }
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
  const ctx: Ctx = { bundle: options.bundle ?? trustDomainBundle(), namespace: md.namespace ?? options.namespace, namespacePos: doc.pos, diags };
  (rules ?? []).forEach((r, i) => {
    const rm = mapOf(r);
    const checked = rm && rule(rm, i, action, md.dryRun, ctx);
    if (checked) policy.rules.push(checked);
  });
  return policy;
}
