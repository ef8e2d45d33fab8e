// Emitter `rbac-matcher`: the rules as Envoy's RBAC filter in its indexed form, the `matcher` field (a unified
// matcher tree, xds.type.matcher.v3.Matcher) instead of the `policies` map. The `policies` form (emitter `rbac`)
// evaluates every policy in turn until one matches, so its cost grows with the number of principals (about a
// microsecond of CPU per policy walked in Envoy 1.40); this form finds the caller in a hash map instead
// (exact_match_map on UriSanInput, the client certificate's URI SAN). Two layouts, chosen per filter:
//
// - by request (when the rules of the filter test at most MAX_REQUEST_GROUPS distinct request predicates, the usual
//   shape: many callers, few operations): a matcher_list with one entry per distinct request predicate (:method,
//   :path, :authority, destination port, SNI), whose on_match is the map of the principals allowed that request,
//   each leading to its rule. A request the predicate matches but whose caller is not in the map falls through to
//   the next entry (a nested matcher that does not match makes its entry not match). Compact: a 100,000-principal
//   table is one map of actions (about 250 MB of Envoy memory, where the other layout takes about 1 GB).
// - by principal (many distinct request predicates): the map first; each principal leads to its own rules in table
//   order, a matcher_list testing the request.
//
// In both, rules without `from` (any caller) are list entries of their own, and what no rule matches gets the
// filter's `on_no_match`.
//
// As in the `policies` form and in istiod's output there is one RBAC filter per action, in the order AUDIT (LOG),
// DENY, ALLOW, and dry-run rules go to the same filter's `shadow_matcher`. An Envoy RBAC filter with a matcher
// denies a request that reaches no action (Envoy 1.40, RoleBasedAccessControlMatcherEngineImpl), so every list and
// map here ends in an explicit `on_no_match`: DENY and LOG filters allow, the ALLOW filter applies the default.
//
// What the index needs, and what this emitter refuses (RbacEmitError, one line per rule and reason):
// - Every rule names its callers by exact SPIFFE IDs (our format's `ids: [...]`): a pattern, a trust domain or
//   attribute test, or a negation cannot be a map key. Nor can Istio `principals`: they are peer names, compared
//   with the certificate's URI SAN, DNS SAN and subject (istiod's principal_name, and the filter's PEER_NAME). A rule
//   without `from` (any caller) is allowed.
// - Request fields: methods, paths (Istio path templates included), hosts, ports and SNI; no other regular
//   expression (GLOB) and no address (CIDR). Not headers: Envoy's HttpRequestHeaderMatchInput joins
//   the values of a repeated header with "," before matching, so a rule on a header would be decided on the
//   joined string (a DENY rule could be dodged by repeating the header), where the filter and the `policies` form
//   (CVE-2026-26308's fix) match value by value.
// - No CEL conditions and no trust-domain schemas (as the `policies` form).
// Where the two forms differ on purpose:
// - Paths: no matcher input gives the path without its query, so each path pattern is a regular expression over
//   `:path` that stops at the first `?` or `#`, as the filter's PATH does (the `policies` form uses url_path).
// - Several URI SANs: UriSanInput joins them with ",", which no key equals. The filter refuses such a certificate
//   when its first URI SAN is a valid SPIFFE ID; so does this form, wherever the certificate could otherwise pass
//   (a regular expression on the joined value, see SEVERAL_SANS). The `policies` form tries every SAN instead.
// - SPIFFE validity is decided here, at compile time: a key is an exact ID, and an ID the filter would refuse
//   (over-long trust domain included) is left out of the map, as it can never match there.

import { stringify } from "yaml";
import type { EnvoyObject } from "../../envoy/render.ts";
import { spiffeIdProblem } from "../../policy/spiffe.ts";
import type { CompileResult } from "../index.ts";
import type { ClauseIR, PatternIR, PredicateIR, RuleIR, TableIR } from "../ir.ts";
import { globToRegex } from "../../vocabulary/glob.ts";
import { globTemplate, hostNameRegex, RbacEmitError, templateRegex } from "./rbac.ts";

/** Rules the indexed matcher form cannot express; `problems` has one line per rule and reason. */
export class RbacMatcherEmitError extends RbacEmitError {
  constructor(problems: string[]) {
    super(problems);
    this.name = "RbacMatcherEmitError";
    this.message = `the policy cannot be expressed as Envoy RBAC's indexed matcher:\n${problems.map((p) => `  ${p}`).join("\n")}`;
  }
}

const RBAC_ACTION_TYPE = "type.googleapis.com/envoy.config.rbac.v3.Action";
const RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
/** Istio's stat prefixes for dry-run rules, as in the `policies` form. */
const SHADOW_STAT_PREFIX = { ALLOW: "istio_dry_run_allow_", DENY: "istio_dry_run_deny_", LOG: "" } as const;
/** The action name of "no rule matched" (the `policies` form reports `none` there too). */
export const NO_MATCH_NAME = "none";
/** The filter's own limit on a peer's SPIFFE ID (assembly/engine/spiffe.ts SPIFFE_MAX_ID_BYTES). */
const FILTER_MAX_ID_BYTES = 65536;

type RbacAction = "ALLOW" | "DENY" | "LOG";

const input = (name: string, type: string, fields: EnvoyObject = {}): EnvoyObject => ({
  name,
  typed_config: { "@type": `type.googleapis.com/${type}`, ...fields },
});
const URI_SAN_INPUT = input("uri-san", "envoy.extensions.matching.common_inputs.ssl.v3.UriSanInput");
const headerInput = (header: string): EnvoyObject =>
  input(header.replace(/^:/, ""), "envoy.type.matcher.v3.HttpRequestHeaderMatchInput", { header_name: header });
const DESTINATION_PORT_INPUT = input("destination-port", "envoy.extensions.matching.common_inputs.network.v3.DestinationPortInput");
const SERVER_NAME_INPUT = input("server-name", "envoy.extensions.matching.common_inputs.network.v3.ServerNameInput");

function action(name: string, act: RbacAction): EnvoyObject {
  return { action: { name, typed_config: { "@type": RBAC_ACTION_TYPE, name, action: act } } };
}

/** RE2 escaping of a literal. */
function re(literal: string): string {
  return literal.replace(/[\\^$.|?*+()[\]{}]/g, "\\$&");
}

/** xds.type.matcher.v3.StringMatcher for a regular expression (Envoy matches the whole value). */
function regex(r: string, ignoreCase = false): EnvoyObject {
  return { safe_regex: { google_re2: {}, regex: ignoreCase ? `(?i)${r}` : r } };
}

function single(inp: EnvoyObject, valueMatch: EnvoyObject): EnvoyObject {
  return { single_predicate: { input: inp, value_match: valueMatch } };
}

function or(preds: EnvoyObject[]): EnvoyObject {
  return preds.length === 1 ? preds[0] : { or_matcher: { predicate: preds } };
}

function and(preds: EnvoyObject[]): EnvoyObject | null {
  return preds.length === 0 ? null : preds.length === 1 ? preds[0] : { and_matcher: { predicate: preds } };
}

/** A StringMatcher for an exact, prefix, suffix or present pattern on a whole value. */
function valueMatcher(p: PatternIR, ignoreCase: boolean): EnvoyObject {
  const m: EnvoyObject =
    p.kind === "exact" ? { exact: p.value }
    : p.kind === "prefix" ? { prefix: p.value }
    : p.kind === "suffix" ? { suffix: p.value }
    : regex(".+");
  if (ignoreCase && p.kind !== "present") m.ignore_case = true;
  return m;
}

/** What may follow the filter's PATH in `:path`: nothing, or the query or fragment. */
const AFTER_PATH = "(?:[?#].*)?";
/** A path pattern whose value contains `?` or `#` can never match the filter's PATH, which stops before them. */
const NEVER = regex("$.^");

/** A StringMatcher over the whole `:path` that holds exactly when the pattern matches the filter's PATH. */
function pathMatcher(p: PatternIR, ignoreCase: boolean): EnvoyObject {
  if (p.kind === "glob") {
    // Only Istio path templates (requestPredicate checks): their classes exclude "?" and "#".
    return regex(globToRegex(p.value) + AFTER_PATH);
  }
  if (p.kind !== "present" && p.kind !== "template" && /[?#]/.test(p.value)) return NEVER;
  switch (p.kind) {
    case "exact":
      return regex(re(p.value) + AFTER_PATH, ignoreCase);
    case "prefix":
      // A prefix without `?` or `#` matches the path before the query exactly when it matches the whole `:path`.
      return valueMatcher(p, ignoreCase);
    case "suffix":
      return regex(`[^?#]*${re(p.value)}${AFTER_PATH}`, ignoreCase);
    case "present":
      return regex(`[^?#]+${AFTER_PATH}`);
    case "template":
      return regex(templateRegex(p.value) + AFTER_PATH, ignoreCase);
    default:
      throw new Error(`a path pattern of kind ${p.kind}`);
  }
}

/**
 * Why a pattern cannot be tested here, or null: GLOBs other than Istio path templates (a `\*` could run into the
 * query string, and the filter compares them byte by byte), and CIDRs (addresses, not strings).
 */
function patternProblem(pred: PredicateIR): string | null {
  for (const p of pred.patterns) {
    if (p.kind === "cidr") return `"${pred.field}" pattern "${p.value}" is an address range`;
    if (p.kind === "glob" && !(pred.field === "path" && globTemplate(p.value) !== null)) {
      return `"${pred.field}" pattern "${p.value}" is a regular expression the indexed matcher does not translate`;
    }
  }
  return null;
}

/** A request predicate as a matcher predicate, or a problem. */
function requestPredicate(pred: PredicateIR, where: string, problems: string[]): EnvoyObject | null {
  let preds: EnvoyObject[];
  const bad = patternProblem(pred);
  if (bad !== null && pred.field !== "header") {
    problems.push(`${where}: ${bad}; use --emit rbac`);
    return null;
  }
  switch (pred.field) {
    case "method":
      preds = pred.patterns.map((p) => single(headerInput(":method"), valueMatcher(p, pred.ignoreCase)));
      break;
    case "host":
      // Our format's hosts match the host name (userinfo and port removed), as in the policies form.
      preds = pred.patterns.map((p) => single(headerInput(":authority"), pred.hostName ? regex(hostNameRegex(p)) : valueMatcher(p, pred.ignoreCase)));
      break;
    case "path":
      preds = pred.patterns.map((p) => single(headerInput(":path"), pathMatcher(p, pred.ignoreCase)));
      break;
    case "port":
      preds = [];
      for (const p of pred.patterns) {
        const port = Number(p.value);
        if (p.kind === "present") preds.push(single(DESTINATION_PORT_INPUT, regex(".+")));
        else if (p.kind === "exact" && Number.isInteger(port) && port >= 0 && port <= 65535) preds.push(single(DESTINATION_PORT_INPUT, { exact: String(port) }));
        else {
          problems.push(`${where}: port pattern "${p.kind === "prefix" ? `${p.value}*` : `*${p.value}`}" has no Envoy RBAC equivalent (use exact ports)`);
          return null;
        }
      }
      break;
    case "sni":
      preds = pred.patterns.map((p) => single(SERVER_NAME_INPUT, valueMatcher(p, pred.ignoreCase)));
      break;
    case "header":
      problems.push(
        `${where}: tests header "${pred.arg}": Envoy's header match input joins the values of a repeated header with "," ` +
          `before matching, where the filter matches each value on its own; use --emit rbac (the policies form) for header rules`,
      );
      return null;
    default:
      problems.push(`${where}: field "${pred.field}" cannot be tested by the indexed matcher (it keys on exact SPIFFE IDs and tests methods, paths, hosts, ports and SNI); use --emit rbac`);
      return null;
  }
  const m = or(preds);
  return pred.negate ? { not_matcher: m } : m;
}

/** The exact SPIFFE IDs of one source clause, or a problem. */
function clausePrincipals(clause: ClauseIR, where: string, problems: string[]): string[] | null {
  const principals = clause.predicates.filter((p) => p.field === "principal");
  const others = clause.predicates.filter((p) => p.field !== "principal");
  const why = (what: string): null => {
    problems.push(`${where}: ${what}; the indexed matcher keys on exact SPIFFE IDs (give the rule exact "ids", or use --emit rbac)`);
    return null;
  };
  if (others.some((p) => p.field === "peerName")) {
    return why(
      "an Istio principal is a peer name, which Envoy's principal_name compares with the certificate's URI SAN, DNS SAN " +
        "and subject, and the filter likewise; a map key is the URI SAN alone",
    );
  }
  if (others.length > 0) return why(`a source tests the caller's ${others.map((p) => `"${p.field}"`).join(", ")}`);
  if (principals.length !== 1) return why("a source names no principal");
  const p = principals[0];
  if (p.negate) return why("a source excludes principals (notPrincipals)");
  const pattern = p.patterns.find((x) => x.kind !== "exact");
  if (pattern !== undefined) {
    const shown = pattern.kind === "prefix" ? `${pattern.value}*` : pattern.kind === "suffix" ? `*${pattern.value}` : "*";
    return why(`principal pattern "${shown}" is not an exact ID`);
  }
  return p.patterns.map((x) => x.value);
}

/** Whether the filter would accept `id` as a peer's SPIFFE ID (an exact key it would refuse can never match). */
function filterAcceptsId(id: string): boolean {
  return spiffeIdProblem(id) === null && Buffer.byteLength(id, "utf8") <= FILTER_MAX_ID_BYTES;
}

interface Entry {
  rule: string;
  /** null: the rule matches every request of its callers */
  predicate: EnvoyObject | null;
}

/** A first step of a filter's no-match path: a predicate and the action it leads to. */
interface Guard {
  predicate: EnvoyObject;
  onMatch: EnvoyObject;
}

/** How a filter's matcher is laid out (see the file comment); `auto` picks by the number of request predicates. */
export type MatcherLayout = "auto" | "by-request" | "by-principal";

/** Up to this many distinct request predicates in a filter, `auto` lays it out by request. */
export const MAX_REQUEST_GROUPS = 8;

/** The rules of one filter (one action, enforced or shadow). */
class Plan {
  readonly byPrincipal = new Map<string, Entry[]>();
  /** rules without `from`: they apply to every caller, with or without an identity */
  readonly anyCaller: Entry[] = [];
  /** every (principals, entry) pair in table order, for the by-request layout */
  private readonly ordered: { principals: string[] | "any"; entry: Entry }[] = [];

  add(principals: string[] | "any", entry: Entry): void {
    this.ordered.push({ principals, entry });
    if (principals === "any") {
      this.anyCaller.push(entry);
      return;
    }
    for (const p of principals) {
      const list = this.byPrincipal.get(p);
      if (list === undefined) this.byPrincipal.set(p, [entry]);
      else if (!list.includes(entry)) list.push(entry);
    }
  }

  get size(): number {
    return this.byPrincipal.size + this.anyCaller.length;
  }

  /** The distinct request predicates of the keyed rules, in table order, each with its principals' first rule. */
  private requestGroups(): { predicate: EnvoyObject | null; principals: Map<string, string> }[] {
    const groups = new Map<string, { predicate: EnvoyObject | null; principals: Map<string, string> }>();
    for (const { principals, entry } of this.ordered) {
      if (principals === "any") continue;
      const key = JSON.stringify(entry.predicate);
      let g = groups.get(key);
      if (g === undefined) groups.set(key, (g = { predicate: entry.predicate, principals: new Map() }));
      for (const p of principals) if (!g.principals.has(p)) g.principals.set(p, entry.rule);
    }
    return [...groups.values()];
  }

  /**
   * The matcher, given what a request that no rule matches gets, and a guard tested before any rule a request
   * whose URI SAN is no key could match (the refusal of several URI SANs).
   */
  matcher(act: RbacAction, noMatch: EnvoyObject, guard: Guard | null, layout: MatcherLayout): EnvoyObject {
    const groups = this.requestGroups();
    if (layout === "by-request" || (layout === "auto" && groups.length <= MAX_REQUEST_GROUPS)) {
      return this.byRequest(groups, act, noMatch, guard);
    }
    const onNoMatch = onMatchOf(this.anyCaller, act, noMatch, guard === null ? [] : [guard]);
    if (this.byPrincipal.size === 0) return alwaysMatcher(onNoMatch);
    const map: Record<string, EnvoyObject> = {};
    for (const [principal, entries] of this.byPrincipal) map[principal] = onMatchOf([...entries, ...this.anyCaller], act, noMatch, []);
    return { matcher_tree: { input: URI_SAN_INPUT, exact_match_map: { map } }, on_no_match: onNoMatch };
  }

  /** The by-request layout: a list of request predicates, each leading to the map of its principals. */
  private byRequest(groups: ReturnType<Plan["requestGroups"]>, act: RbacAction, noMatch: EnvoyObject, guard: Guard | null): EnvoyObject {
    const matchers: EnvoyObject[] = guard === null ? [] : [{ predicate: guard.predicate, on_match: guard.onMatch }];
    for (const g of groups) {
      const map: Record<string, EnvoyObject> = {};
      for (const [principal, rule] of g.principals) map[principal] = action(rule, act);
      matchers.push({
        predicate: g.predicate ?? ALWAYS,
        // No on_no_match: a caller not in the map makes this entry not match, and the list goes on.
        on_match: { matcher: { matcher_tree: { input: URI_SAN_INPUT, exact_match_map: { map } } } },
      });
    }
    // Any caller: after the keyed groups (the decision is the same whichever rule of the filter matches).
    for (const e of this.anyCaller) matchers.push({ predicate: e.predicate ?? ALWAYS, on_match: action(e.rule, act) });
    if (matchers.length === 0) return alwaysMatcher(noMatch);
    return { matcher_list: { matchers }, on_no_match: noMatch };
  }
}

/** What testing `guards`, then `entries` in order (the first whose predicate holds decides) leads to. */
function onMatchOf(entries: Entry[], act: RbacAction, noMatch: EnvoyObject, guards: Guard[]): EnvoyObject {
  // Every rule of a filter has the same action, so an unconditional rule makes the rest of the list moot.
  const always = entries.findIndex((e) => e.predicate === null);
  const tested = always < 0 ? entries : entries.slice(0, always);
  const final = always < 0 ? noMatch : action(entries[always].rule, act);
  const matchers = [
    ...guards.map((g) => ({ predicate: g.predicate, on_match: g.onMatch })),
    ...tested.map((e) => ({ predicate: e.predicate, on_match: action(e.rule, act) })),
  ];
  if (matchers.length === 0) return final;
  return { matcher: { matcher_list: { matchers }, on_no_match: final } };
}

/** A predicate every request satisfies: every HTTP request has a :method. */
const ALWAYS: EnvoyObject = single(headerInput(":method"), regex(".*"));

/** A matcher that always ends in `onMatch`. */
function alwaysMatcher(onMatch: EnvoyObject): EnvoyObject {
  if ("matcher" in onMatch) return onMatch.matcher as EnvoyObject;
  // A matcher needs a list or a tree, and Envoy refuses an empty map or list: one entry that every request
  // satisfies leads to the action.
  return { matcher_list: { matchers: [{ predicate: ALWAYS, on_match: onMatch }] } };
}

/**
 * The filter's refusal of a client certificate with several URI SANs whose first is a valid SPIFFE ID
 * (`spiffe_authz_denied[multiple_uri_sans]`, docs/security.md): UriSanInput joins the SANs with ",", which no valid
 * ID contains, so such a value is a valid ID (shape, and no "." or ".." segment) followed by ",". Without it a
 * certificate `[denied-id, other]` would match no key, dodge a DENY rule on `denied-id` and be allowed by a rule
 * without `from` or by a default allow. (As in the `policies` form, the 255-byte trust-domain limit is not checked:
 * Envoy refuses RE2 programs over 100 instructions.)
 */
export const MULTIPLE_URI_SANS = "multiple_uri_sans";
const SEGMENTS = "(?:/[a-zA-Z0-9._-]+)*";
const SEVERAL_SANS: EnvoyObject = and([
  single(URI_SAN_INPUT, regex(`spiffe://[a-z0-9._-]+${SEGMENTS},.*`)),
  { not_matcher: single(URI_SAN_INPUT, regex(`spiffe://[a-z0-9._-]+${SEGMENTS}/\\.\\.?${SEGMENTS},.*`)) },
])!;

/**
 * The `envoy.filters.http.rbac` entries enforcing `ir` with indexed matchers, in filter-chain order (before the
 * router). Throws {@link RbacMatcherEmitError} for what the indexed form cannot express, naming the rule and the
 * reason.
 */
export function rbacMatcherFilters(ir: TableIR, layout: MatcherLayout = "auto"): EnvoyObject[] {
  const problems: string[] = [];
  if (ir.schemas.length > 0) {
    problems.push(
      `trust-domain schemas (${ir.schemas.map((s) => `"${s.trustDomain}"`).join(", ")}) have no Envoy RBAC equivalent; remove "trustDomains: {...: {require: ...}}" to emit RBAC`,
    );
  }
  const plans: Record<RbacAction, { rules: Plan | null; shadow: Plan }> = {
    LOG: { rules: null, shadow: new Plan() },
    DENY: { rules: null, shadow: new Plan() },
    ALLOW: { rules: null, shadow: new Plan() },
  };
  // The table's default deny is the ALLOW filter's "no rule matched".
  if (ir.defaultAction === "deny") plans.ALLOW.rules = new Plan();
  for (const rule of ir.rules) {
    const where = `rule "${rule.id}"`;
    if (rule.expr !== null) {
      problems.push(`${where} has a CEL condition, which Envoy RBAC cannot evaluate (it may read the body or compare request values with the caller)`);
      continue;
    }
    const entries = ruleEntries(rule, where, problems);
    if (entries === null) continue;
    const act: RbacAction = rule.action === "allow" ? "ALLOW" : rule.action === "deny" ? "DENY" : "LOG";
    const plan = rule.dryRun ? plans[act].shadow : (plans[act].rules ??= new Plan());
    for (const e of entries) plan.add(e.principals, { rule: rule.id, predicate: e.predicate });
  }
  if (problems.length > 0) throw new RbacMatcherEmitError(problems);

  // Where a certificate with several URI SANs would otherwise pass, refuse it: in the ALLOW filter when rules
  // without `from` allow callers no key names, else (a default allow) in the DENY filter, made for it if need be.
  const refusal: Guard = { predicate: SEVERAL_SANS, onMatch: action(MULTIPLE_URI_SANS, "DENY") };
  const allow = plans.ALLOW.rules;
  const guardIn: RbacAction | null = allow === null ? "DENY" : allow.anyCaller.length > 0 ? "ALLOW" : null;
  if (guardIn === "DENY") plans.DENY.rules ??= new Plan();

  const filters: EnvoyObject[] = [];
  for (const act of ["LOG", "DENY", "ALLOW"] as const) {
    const { rules, shadow } = plans[act];
    if (rules === null && shadow.size === 0) continue;
    // A request no rule matches: the ALLOW filter applies the table's default; DENY and LOG filters let it pass.
    const noMatch = action(NO_MATCH_NAME, act === "ALLOW" ? "DENY" : "ALLOW");
    const config: EnvoyObject = { "@type": RBAC_TYPE };
    if (rules !== null) config.matcher = rules.matcher(act, noMatch, guardIn === act ? refusal : null, layout);
    if (shadow.size > 0) {
      config.shadow_matcher = shadow.matcher(act, noMatch, null, layout);
      if (SHADOW_STAT_PREFIX[act] !== "") config.shadow_rules_stat_prefix = SHADOW_STAT_PREFIX[act];
    }
    filters.push({ name: "envoy.filters.http.rbac", typed_config: config });
  }
  // Distinct objects for every occurrence (the YAML writer would otherwise emit anchors and aliases).
  return JSON.parse(JSON.stringify(filters)) as EnvoyObject[];
}

/**
 * One rule as (principals, request predicate) pairs: one per source clause (or "any" without sources), the
 * request predicate being the rule's `when` conditions ANDed with its operation clauses ORed.
 */
function ruleEntries(rule: RuleIR, where: string, problems: string[]): { principals: string[] | "any"; predicate: EnvoyObject | null }[] | null {
  const before = problems.length;
  const conditions: EnvoyObject[] = [];
  for (const c of rule.conditions) {
    if (c.field === "principal" || c.field === "trustDomain" || c.field === "attribute") {
      problems.push(`${where}: a "when" condition tests the caller's "${c.field}"; the indexed matcher keys on exact SPIFFE IDs (use --emit rbac)`);
      continue;
    }
    const m = requestPredicate(c, where, problems);
    if (m !== null) conditions.push(m);
  }
  const operations: EnvoyObject[] = [];
  let anyOperation = rule.operations.length === 0;
  for (const clause of rule.operations) {
    const preds: EnvoyObject[] = [];
    for (const p of clause.predicates) {
      const m = requestPredicate(p, where, problems);
      if (m !== null) preds.push(m);
    }
    const m = and(preds);
    if (m === null) anyOperation = true;
    else operations.push(m);
  }
  if (!anyOperation) conditions.push(or(operations));
  const predicate = and(conditions);
  const sources = rule.sources.length === 0 ? ["any" as const] : rule.sources.map((s) => clausePrincipals(s, where, problems));
  if (problems.length > before) return null;
  return sources.map((s) => ({
    principals: s === "any" ? "any" : s!.filter(filterAcceptsId),
    predicate,
  }));
}

/** `compile --emit rbac-matcher`: the filters as a YAML list for a listener's `http_filters`, before the router. */
export function emitRbacMatcher(result: Pick<CompileResult, "ir" | "ruleCount" | "tableHash">): string {
  const filters = rbacMatcherFilters(result.ir);
  const header = [
    `# spiffe-authz: ${result.ruleCount} rule(s) as Envoy RBAC with indexed matchers (table ${result.tableHash}).`,
    filters.length === 0
      ? "# The table allows every request: no RBAC filter is needed."
      : "# http_filters entries, in this order, before envoy.filters.http.router (AUDIT/LOG, then DENY, then ALLOW, as istiod orders them).",
    "# Each filter looks the client certificate's URI SAN up in a map of exact SPIFFE IDs, then tests the request.",
  ];
  return header.join("\n") + "\n" + (filters.length === 0 ? "[]\n" : stringify(filters, { lineWidth: 0 }));
}
