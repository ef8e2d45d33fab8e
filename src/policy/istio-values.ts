// The values of an Istio AuthorizationPolicy as istiod translates them into Envoy RBAC
// (istio.io/istio pilot/pkg/security/authz/model/generator.go, matcher/, trustdomain/bundle.go), as table patterns
// with the same meaning. tests/istio-oracle/ holds istiod's own output for a seeded corpus, and the differential
// suite (tests/integration/istio-differential.test.ts) replays both in Envoy 1.40.
//
// What each RBAC matcher becomes (GLOB syntax: src/vocabulary/glob.ts):
//   StringMatcher exact/prefix/suffix      -> EXACT / PREFIX / SUFFIX
//   safe_regex ".+"                        -> GLOB "\.\*"
//   safe_regex "spiffe://.*<quoted x>"     -> GLOB "spiffe://\*x"
//   HeaderMatcher present_match            -> GLOB "\*" (present, the empty value included)
//   uri_template "/a/*/**"                 -> GLOB "/a/\p\P/\S" (Envoy 1.40's uri_template: `*` one or more pchars,
//                                             `**` zero or more pchars and "/")

import type { PatternIR } from "../vocabulary/rule.ts";
import { formatIp, maskAddress, parseIp } from "../vocabulary/ip.ts";
import { globLiteral } from "../vocabulary/glob.ts";

/** istiod's default mesh trust domain (meshConfig.trustDomain), which is also the alias of every local identity. */
export const DEFAULT_TRUST_DOMAIN = "cluster.local";

/** The trust domain and its aliases (meshConfig.trustDomain, trustDomainAliases): istiod's trustdomain.Bundle. */
export interface TrustDomainBundle {
  /** the trust domain first, then the aliases */
  trustDomains: string[];
}

export function trustDomainBundle(trustDomain = DEFAULT_TRUST_DOMAIN, aliases: string[] = []): TrustDomainBundle {
  return { trustDomains: [trustDomain, ...aliases] };
}

const ANY_NONEMPTY = "\\.\\*";

function prefixMatch(a: string, pattern: string): boolean {
  return pattern.endsWith("*") && a.startsWith(pattern.slice(0, -1));
}

function suffixMatch(a: string, pattern: string): boolean {
  return pattern.startsWith("*") && a.endsWith(pattern.slice(1));
}

function stringMatch(a: string, list: string[]): boolean {
  return list.some((s) => a === s || s === "*" || prefixMatch(a, s) || prefixMatch(s, a) || suffixMatch(a, s) || suffixMatch(s, a));
}

/** trustdomain.Bundle.ReplaceTrustDomainAliases: principals over the trust domain and its aliases. */
export function replaceTrustDomainAliases(principals: string[], bundle: TrustDomainBundle): string[] {
  const out: string[] = [];
  for (const principal of principals) {
    const parts = principal.split("/");
    // Not `<td>/ns/<ns>/sa/<sa>`, or a trust domain of "*": the policy does not care about the trust domain.
    if (parts.length !== 5 || parts[0] === "*") {
      out.push(principal);
      continue;
    }
    const td = parts[0];
    if (stringMatch(td, bundle.trustDomains) || td === DEFAULT_TRUST_DOMAIN) {
      const forAliases: string[] = [];
      for (const alias of bundle.trustDomains) {
        const p = suffixMatch(alias, td) ? principal : `${alias}/${parts.slice(1).join("/")}`;
        if (!forAliases.includes(p)) forAliases.push(p);
      }
      out.push(...forAliases);
    } else {
      out.push(principal);
    }
  }
  return out;
}

/** trustdomain.Bundle.ExpandTrustDomainAliases: a value equal to one trust domain of the bundle becomes all. */
export function expandTrustDomainAliases(values: string[], bundle: TrustDomainBundle): string[] {
  const out: string[] = [];
  for (const v of values) {
    for (const x of bundle.trustDomains.includes(v) ? bundle.trustDomains : [v]) if (!out.includes(x)) out.push(x);
  }
  return out;
}

/** matcher.StringMatcherWithPrefix(v, prefix) as a pattern. */
function stringMatcherWithPrefix(v: string, prefix: string): PatternIR {
  if (v === "*") return { kind: "glob", value: ANY_NONEMPTY };
  if (v.startsWith("*")) {
    if (prefix === "") return { kind: "suffix", value: v.slice(1) };
    return { kind: "glob", value: `${globLiteral(prefix)}\\*${globLiteral(v.slice(1))}` };
  }
  if (v.endsWith("*")) return { kind: "prefix", value: prefix + v.slice(0, -1) };
  return { kind: "exact", value: prefix + v };
}

/** matcher.StringMatcher(v): `*` is ".+", a leading `*` a suffix, a trailing `*` a prefix, else exact. */
export function stringMatcher(v: string): PatternIR {
  return stringMatcherWithPrefix(v, "");
}

/** matcher.HeaderMatcher / HostMatcher: like StringMatcher, but `*` is present_match (an empty value matches). */
export function headerMatcher(v: string): PatternIR {
  if (v === "*") return { kind: "glob", value: "\\*" };
  return stringMatcher(v);
}

/** `principals` and `source.principal` (after the trust-domain aliases): the peer names Envoy compares. */
export function principalPattern(v: string): PatternIR {
  return stringMatcherWithPrefix(v, "spiffe://");
}

/** `namespaces` and `source.namespace`: istiod's regex (any, "/ns/", the namespace with each star as "any", "/", any) over the peer names. */
export function namespacePattern(v: string): PatternIR {
  return { kind: "glob", value: `\\*/ns/${v.split("*").map(globLiteral).join("\\*")}/\\*` };
}

/** `trustDomains` and `source.trustDomain` (after the aliases). */
export function trustDomainPattern(v: string): PatternIR {
  if (v === "*") return { kind: "prefix", value: "spiffe://" };
  if (!v.includes("*")) return { kind: "prefix", value: `spiffe://${v}/` };
  const star = v.indexOf("*");
  return { kind: "glob", value: `spiffe://${globLiteral(v.slice(0, star))}\\/${globLiteral(v.slice(star + 1))}/\\*` };
}

/**
 * `serviceAccounts` and `source.serviceAccount` (`<sa>` in `defaultNamespace`, or `<ns>/<sa>`): istiod's regex
 * `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?` as the four globs of its alternatives.
 */
export function serviceAccountPatterns(v: string, defaultNamespace: string): PatternIR[] {
  const slash = v.indexOf("/");
  const ns = slash < 0 ? defaultNamespace : v.slice(0, slash);
  const sa = slash < 0 ? v : v.slice(slash + 1);
  const head = `spiffe://${ANY_NONEMPTY}/ns/${globLiteral(ns)}/`;
  const tail = `sa/${globLiteral(sa)}`;
  return [
    { kind: "glob", value: head + tail },
    { kind: "glob", value: `${head}${tail}/${ANY_NONEMPTY}` },
    { kind: "glob", value: `${head}${ANY_NONEMPTY}/${tail}` },
    { kind: "glob", value: `${head}${ANY_NONEMPTY}/${tail}/${ANY_NONEMPTY}` },
  ];
}

/**
 * `requestPrincipals` and `request.auth.principal`: `<iss>/<sub>` split at the last "/", with istiod's wildcard
 * rules, as an (iss, sub) pair of patterns.
 */
export function requestPrincipalPair(value: string): [PatternIR, PatternIR] {
  const any: PatternIR = { kind: "glob", value: ANY_NONEMPTY };
  const idx = value.lastIndexOf("/");
  const found = idx >= 0;
  const iss = found ? value.slice(0, idx) : value;
  const sub = found ? value.slice(idx + 1) : "";
  const exact = (s: string): PatternIR => ({ kind: "exact", value: s });
  if (value === "*") return [any, any];
  if (value.startsWith("*")) {
    if (found) return [iss === "*" ? any : { kind: "suffix", value: iss.slice(1) }, exact(sub)];
    return [any, { kind: "suffix", value: value.slice(1) }];
  }
  if (value.endsWith("*")) {
    if (found) return [exact(iss), sub === "*" ? any : { kind: "prefix", value: sub.slice(0, -1) }];
    return [{ kind: "prefix", value: value.slice(0, -1) }, any];
  }
  return [exact(iss), exact(sub)];
}

/**
 * An IP address or CIDR as istiod parses it (util.AddrStrToCidrRange, Go's netip), canonical and masked as
 * Envoy's CidrRange keeps it, or null when Go's netip refuses it. `zone` is set when the address has an IPv6
 * zone, which Envoy cannot parse.
 */
export function cidrPattern(v: string): { pattern: PatternIR } | { error: string } {
  const slash = v.indexOf("/");
  const addrText = slash < 0 ? v : v.slice(0, slash);
  if (addrText.includes("%")) return { error: "an IPv6 zone; Envoy cannot parse it and would reject the listener" };
  const addr = parseIp(addrText);
  if (addr === null) return { error: "not an IP address" };
  let bits = addr.length * 8;
  if (slash >= 0) {
    const lenText = v.slice(slash + 1);
    if (!/^(0|[1-9]\d{0,2})$/.test(lenText) || Number(lenText) > addr.length * 8) return { error: "a bad prefix length" };
    bits = Number(lenText);
  }
  return { pattern: { kind: "cidr", value: `${formatIp(maskAddress(addr, bits))}/${bits}` } };
}

/**
 * istiod's extractNameInNestedBrackets over the part of a `request.auth.claims` key after the attribute:
 * `[a][b]` is the path a, b; anything else in brackets (`[a[b]`) is one name.
 */
export function claimPath(rest: string): string[] | null {
  const names: string[] = [];
  const endBracket = (begin: number): number => {
    if (begin >= rest.length || rest[begin] !== "[") return -1;
    for (let i = begin + 1; i < rest.length; i++) {
      if (rest[i] === "[") return -1;
      if (rest[i] === "]") return i;
    }
    return -1;
  };
  for (let begin = 0; begin < rest.length; ) {
    const end = endBracket(begin);
    if (end === -1) {
      if (!rest.startsWith("[") || !rest.endsWith("]")) return null;
      return [rest.slice(1, -1)];
    }
    names.push(rest.slice(begin + 1, end));
    begin = end + 1;
  }
  return names;
}

/** Envoy 1.40's uri_template literal characters (a pchar; a template with any other character is refused). */
const TEMPLATE_LITERAL = /^[A-Za-z0-9\-._~%!$&'()*+,;=:@]+$/;

/**
 * An Istio path template (`{*}` / `{**}`, as istiod validated it) as Envoy 1.40 matches the uri_template istiod
 * writes (`{*}` -> `*`, `{**}` -> `**`): a GLOB, or why Envoy would refuse the template (then it refuses the whole
 * listener, so no mesh runs the policy).
 */
export function pathTemplatePattern(v: string): PatternIR | { error: string } {
  const t = v.replaceAll("{**}", "**").replaceAll("{*}", "*");
  if (!/^\/[!-~]*$/.test(t)) return { error: "Envoy's uri_template needs a leading \"/\" and printable characters" };
  const segs = t.slice(1).split("/");
  let glob = "";
  for (let i = 0; i < segs.length; i++) {
    const s = segs[i];
    glob += "/";
    if (s === "**") glob += "\\S";
    else if (s === "*") glob += "\\p\\P";
    // A trailing "/" is an empty last literal to Envoy; an empty segment anywhere else is refused.
    else if (s === "" && i === segs.length - 1 && i > 0) glob += "";
    else if (TEMPLATE_LITERAL.test(s) && !s.includes("*")) glob += globLiteral(s);
    else return { error: `segment ${JSON.stringify(s)} is not a literal Envoy's uri_template accepts` };
  }
  return { kind: "glob", value: glob };
}
