// Turning the string lists of a policy (`principals`, `paths`, `values`, ...) into table predicates, with the
// checks and the Istio matching rules both input languages share.
//
// Istio's rule for every string field (pilot/pkg/security/authz/matcher/string.go, StringMatcherWithPrefix):
// "*" is presence, a leading "*" a suffix match, else a trailing "*" a prefix match, else exact. A "*" anywhere
// else is a literal character. Paths containing "{*}" or "{**}" are URI templates (Istio 1.22+) and checked first.

import type { Field, PatternIR, PredicateIR } from "../vocabulary/rule.ts";
import { entry, fieldItems, type Item, listOf, mapOf, stringOf, type YNode } from "./yaml.ts";
import { type Diagnostics, q, type Pos } from "./diagnostics.ts";
import { SPIFFE_SCHEME, segmentProblem, spiffeIdProblem, trustDomainProblem } from "./spiffe.ts";

/** The input language a value came from; a few rules differ (scheme handling, strictness). */
export type Flavor = "istio" | "ours";

/** Istio's split of a value into a match kind. */
export function splitStar(v: string): PatternIR {
  if (v === "*") return { kind: "present", value: "" };
  if (v.startsWith("*")) return { kind: "suffix", value: v.slice(1) };
  if (v.endsWith("*")) return { kind: "prefix", value: v.slice(0, -1) };
  return { kind: "exact", value: v };
}

function literalStarWarning(diags: Diagnostics, it: Item, p: PatternIR): void {
  if (p.kind !== "present" && p.value.includes("*")) {
    diags.warn(it.pos, `${q(it.value)} contains "*" that matches a literal "*"; a wildcard works only as the first or last character`);
  }
}

/** Istio rejects empty strings in every list (pkg/config/security CheckEmptyValues). */
function nonEmpty(diags: Diagnostics, it: Item, what: string): boolean {
  if (it.value === "") {
    diags.error(it.pos, `empty value in ${q(what)}; remove it or write "*" to match any present value`);
    return false;
  }
  return true;
}

function pred(field: Field, negate: boolean, patterns: PatternIR[], arg = "", ignoreCase = false): PredicateIR {
  return { field, negate, ignoreCase, arg, patterns };
}

const ID_PREFIX_CHARS = /^[a-z0-9._-]*(\/[a-zA-Z0-9._/-]*)?$/;
const ID_SUFFIX_CHARS = /^[a-zA-Z0-9._/:-]+$/;

/**
 * Principal patterns. `ours`: full SPIFFE IDs (`spiffe://td/path`, `spiffe://td/*`, `*suffix`, `*`).
 * `istio`: Istio principals without the scheme (`td/ns/x/sa/y`), which Istio prefixes with `spiffe://` for exact
 * and prefix forms; a suffix compares the end of the whole ID. `both`: a value that starts with `spiffe://` is
 * read as `ours`, any other as `istio` (used for `when: source.principal` in our format).
 */
export function principalPatterns(items: Item[], flavor: Flavor | "both", what: string, diags: Diagnostics): PatternIR[] {
  const out: PatternIR[] = [];
  for (const it of items) {
    if (!nonEmpty(diags, it, what)) continue;
    const v = it.value;
    const fl = flavor === "both" ? (v.startsWith(SPIFFE_SCHEME) ? "ours" : "istio") : flavor;
    const p = splitStar(v);
    if (p.kind === "present") {
      out.push(p);
      continue;
    }
    if (p.kind === "suffix") {
      if (!ID_SUFFIX_CHARS.test(p.value)) {
        diags.error(it.pos, `suffix ${q(v)} in ${q(what)} can never match a SPIFFE ID (it has characters IDs cannot contain)`);
        continue;
      }
      out.push(p);
      continue;
    }
    if (fl === "istio") {
      if (v.startsWith(SPIFFE_SCHEME)) {
        diags.error(
          it.pos,
          `principal ${q(v)} must not carry the scheme: Istio adds "spiffe://" itself; write ${q(v.slice(SPIFFE_SCHEME.length))}`,
        );
        continue;
      }
      p.value = SPIFFE_SCHEME + p.value;
    } else if (!v.startsWith(SPIFFE_SCHEME)) {
      diags.error(it.pos, `${q(v)} in ${q(what)} is not a SPIFFE ID: it must start with "spiffe://" (or "*" for a suffix match)`);
      continue;
    }
    if (p.kind === "exact") {
      const problem = spiffeIdProblem(p.value);
      if (problem) {
        diags.error(it.pos, `invalid SPIFFE ID ${q(p.value)} in ${q(what)}: ${problem}`);
        continue;
      }
    } else if (!ID_PREFIX_CHARS.test(p.value.slice(SPIFFE_SCHEME.length))) {
      diags.error(it.pos, `prefix ${q(v)} in ${q(what)} can never match a SPIFFE ID (it has characters IDs cannot contain)`);
      continue;
    }
    out.push(p);
  }
  return out;
}

/** Trust domain patterns (exact names are checked against the SPIFFE rules). */
export function trustDomainPatterns(items: Item[], what: string, diags: Diagnostics): PatternIR[] {
  const out: PatternIR[] = [];
  for (const it of items) {
    if (!nonEmpty(diags, it, what)) continue;
    const p = splitStar(it.value);
    if (p.kind === "exact") {
      const problem = trustDomainProblem(p.value);
      if (problem) {
        diags.error(it.pos, `invalid trust domain ${q(p.value)} in ${q(what)}: ${problem}`);
        continue;
      }
    } else if (p.kind !== "present" && !/^[a-z0-9._-]+$/.test(p.value)) {
      diags.error(it.pos, `${q(it.value)} in ${q(what)} can never match a trust domain (only a-z, 0-9, ".", "-", "_")`);
      continue;
    }
    out.push(p);
  }
  return out;
}

/** Attribute value patterns: each value is one path segment of the ID. */
export function attributeValuePatterns(items: Item[], key: string, what: string, diags: Diagnostics): PatternIR[] {
  const out: PatternIR[] = [];
  for (const it of items) {
    if (!nonEmpty(diags, it, what)) continue;
    const p = splitStar(it.value);
    if (p.kind === "exact") {
      const problem = segmentProblem(p.value);
      if (problem) {
        diags.error(it.pos, `value ${q(p.value)} of attribute ${q(key)} can never match: ${problem.replace("the path", "an ID segment")}`);
        continue;
      }
    } else if (p.kind !== "present" && !/^[a-zA-Z0-9._-]+$/.test(p.value)) {
      diags.error(it.pos, `value ${q(it.value)} of attribute ${q(key)} can never match: ID segments hold only a-z, A-Z, 0-9, ".", "-", "_"`);
      continue;
    }
    out.push(p);
  }
  return out;
}

/** Checks an attribute key (a path segment at an even position of the ID). */
export function checkAttributeKey(key: string, pos: Pos, diags: Diagnostics): boolean {
  const problem = segmentProblem(key);
  if (problem) {
    diags.error(pos, `attribute key ${q(key)} can never match: ${problem.replace("the path", "an ID segment")}`);
    return false;
  }
  return true;
}

/** Plain Istio string patterns (methods, hosts, SNI, header values). */
export function stringPatterns(items: Item[], what: string, diags: Diagnostics, ignoreCase = false): PatternIR[] {
  const out: PatternIR[] = [];
  for (const it of items) {
    if (!nonEmpty(diags, it, what)) continue;
    const p = splitStar(it.value);
    literalStarWarning(diags, it, p);
    if (ignoreCase) p.value = p.value.toLowerCase();
    out.push(p);
  }
  return out;
}

/** HTTP methods: Istio-style patterns; a lower-case method is almost always a mistake (methods are case-sensitive). */
export function methodPatterns(items: Item[], what: string, diags: Diagnostics): PatternIR[] {
  for (const it of items) {
    if (/[a-z]/.test(it.value) && it.value !== it.value.toUpperCase() && /^[A-Za-z]+$/.test(it.value)) {
      diags.warn(it.pos, `method ${q(it.value)} is compared case-sensitively and clients send ${q(it.value.toUpperCase())}`);
    }
  }
  return stringPatterns(items, what, diags);
}

export const MATCH_ONE = "{*}";
export const MATCH_ANY = "{**}";

/** True when Istio reads the path as a URI template (security.IsPathTemplate / ContainsPathTemplate). */
export function isPathTemplate(v: string): boolean {
  return v.includes(MATCH_ONE) || v.includes(MATCH_ANY);
}

/**
 * Why a path template is malformed, or null. The rules of docs/table-format.md (PATS, TEMPLATE), which are those
 * of Istio's validation (pkg/config/security CheckValidPathTemplate) and of Envoy's uri_template matcher: every
 * segment is a literal without `{`, `}` or `*`, or exactly `{*}`, or exactly `{**}` as the last segment.
 */
export function templateProblem(v: string): string | null {
  if (!v.startsWith("/")) return "a path template starts with \"/\"";
  const segs = v.slice(1).split("/");
  for (let i = 0; i < segs.length; i++) {
    const s = segs[i];
    if (s === MATCH_ONE) continue;
    if (s === MATCH_ANY) {
      if (i !== segs.length - 1) return "\"{**}\" must be the last segment";
      continue;
    }
    if (s.includes("{") || s.includes("}")) {
      if (/\{\w*\}|\{\w+=\*\*?\}/.test(s)) return `named variables such as ${q(s.match(/\{[^}]*\}/)![0])} are not supported; use "{*}" or "{**}"`;
      return `segment ${q(s)} mixes an operator with other characters; "{*}" and "{**}" must be whole segments`;
    }
    if (s.includes("*")) return `segment ${q(s)} has a "*" outside "{*}" or "{**}"`;
  }
  return null;
}

/** Path patterns: templates, Istio star forms, and warnings for paths that can never match. */
export function pathPatterns(items: Item[], what: string, flavor: Flavor, diags: Diagnostics): PatternIR[] {
  const out: PatternIR[] = [];
  for (const it of items) {
    if (!nonEmpty(diags, it, what)) continue;
    const v = it.value;
    if (isPathTemplate(v)) {
      const problem = templateProblem(v);
      if (problem) {
        diags.error(it.pos, `invalid path template ${q(v)} in ${q(what)}: ${problem}`);
        continue;
      }
      out.push({ kind: "template", value: v });
      continue;
    }
    if (v.includes("{") || v.includes("}")) {
      const m = v.match(/\{[^}]*\}/);
      if (flavor === "ours") {
        diags.error(it.pos, `path ${q(v)} has ${q(m ? m[0] : "{")}: templates support only "{*}" (one segment) and "{**}" (the rest)`);
        continue;
      }
      // Istio reads a path without "{*}"/"{**}" as a plain string, braces included: keep that, but say so.
      diags.warn(it.pos, `path ${q(v)} is not a template (only "{*}" and "{**}" are) and matches its braces literally`);
    }
    const p = splitStar(v);
    literalStarWarning(diags, it, p);
    if ((p.kind === "exact" || p.kind === "prefix") && !p.value.startsWith("/")) {
      diags.warn(it.pos, `path ${q(v)} does not start with "/" and will not match request paths`);
    }
    out.push(p);
  }
  return out;
}

/** Ports: decimal 0..65535 (Istio ValidatePorts), stored as the canonical decimal string. */
export function portPatterns(items: Item[], what: string, diags: Diagnostics): PatternIR[] {
  const out: PatternIR[] = [];
  for (const it of items) {
    if (!nonEmpty(diags, it, what)) continue;
    if (!/^\d+$/.test(it.value) || Number(it.value) > 65535) {
      diags.error(it.pos, `invalid port ${q(it.value)} in ${q(what)}: ports are numbers from 0 to 65535, without wildcards`);
      continue;
    }
    out.push({ kind: "exact", value: String(Number(it.value)) });
  }
  return out;
}

/** Header names: HTTP tokens, compared lower-cased (Envoy lower-cases header names). */
export function checkHeaderName(name: string, pos: Pos, diags: Diagnostics): boolean {
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
    diags.error(pos, `invalid header name ${q(name)}: header names are HTTP tokens (letters, digits and !#$%&'*+-.^_\`|~)`);
    return false;
  }
  return true;
}

/** Builds a predicate when the list produced at least one pattern. */
export function maybePred(
  list: PredicateIR[],
  field: Field,
  negate: boolean,
  patterns: PatternIR[],
  arg = "",
  ignoreCase = false,
): void {
  if (patterns.length > 0) list.push(pred(field, negate, patterns, arg, ignoreCase));
}

// ---------------------------------------------------------------------------------------------------------------
// `when` conditions (Istio's condition keys, https://istio.io/latest/docs/reference/config/security/conditions/)

/** Istio keys that AuthzPolicy conditions do not have (CEL `condition` reads JWT claims; Istio documents have them all). */
const UNSUPPORTED_KEYS = [
  "request.auth.principal",
  "request.auth.audiences",
  "request.auth.presenter",
  "request.auth.claims",
  "source.ip",
  "remote.ip",
  "destination.ip",
  "source.serviceAccount",
  "experimental.envoy.filters.",
];

export const SUPPORTED_KEYS = ["request.headers[<name>]", "source.principal", "source.namespace", "destination.port", "connection.sni"];

/** A `when` entry: key with its position and values/notValues lists (undefined when absent). */
export interface ConditionInput {
  key: string;
  keyPos: Pos;
  pos: Pos;
  values?: Item[];
  notValues?: Item[];
  /** the condition has fields besides key, values and notValues (already reported) */
  hasUnknownFields?: boolean;
}

/** Lowers one `when` condition to predicates (values -> negate 0, notValues -> negate 1). */
export function conditionPredicates(c: ConditionInput, flavor: Flavor, diags: Diagnostics): PredicateIR[] {
  const out: PredicateIR[] = [];
  const key = c.key;
  if (key === "") {
    diags.error(c.keyPos, "\"key\" must not be empty");
    return out;
  }
  if (keyProblem(key, c.keyPos, diags)) return out;
  // A condition whose values sit under a misspelt field was reported as an unknown field already.
  if (c.values === undefined && c.notValues === undefined && c.hasUnknownFields) return out;
  if (c.values === undefined && c.notValues === undefined) {
    diags.error(c.pos, `condition on ${q(key)} needs "values" or "notValues"`);
    return out;
  }
  if ((c.values?.length ?? 0) === 0 && (c.notValues?.length ?? 0) === 0) {
    diags.error(c.pos, `condition on ${q(key)} needs at least one value in "values" or "notValues"`);
    return out;
  }
  const each = (fn: (items: Item[], negate: boolean, what: string) => void) => {
    if (c.values?.length) fn(c.values, false, "values");
    if (c.notValues?.length) fn(c.notValues, true, "notValues");
  };
  if (key.startsWith("request.headers")) {
    const rest = key.slice("request.headers".length);
    // Istio's validateMapKey: the name sits in brackets right after the attribute and is not empty.
    if (!rest.startsWith("[") || !rest.endsWith("]") || rest.length < 3) {
      diags.error(c.keyPos, `bad key ${q(key)}: write the header name in brackets, e.g. "request.headers[x-tenant]"`);
      return out;
    }
    const name = rest.slice(1, -1);
    if (!checkHeaderName(name, c.keyPos, diags)) return out;
    each((items, negate, what) => maybePred(out, "header", negate, stringPatterns(items, what, diags), name.toLowerCase()));
    return out;
  }
  switch (key) {
    case "source.principal":
      each((items, negate, what) => maybePred(out, "principal", negate, principalPatterns(items, flavor === "ours" ? "both" : "istio", what, diags)));
      return out;
    case "source.namespace":
      each((items, negate, what) => maybePred(out, "attribute", negate, attributeValuePatterns(items, "ns", what, diags), "ns"));
      return out;
    case "destination.port":
      each((items, negate, what) => maybePred(out, "port", negate, portPatterns(items, what, diags)));
      return out;
    case "connection.sni":
      each((items, negate, what) => maybePred(out, "sni", negate, stringPatterns(items, what, diags)));
      return out;
  }
  return out;
}

/** Reports a key this filter does not evaluate (Istio-only, unsupported or unknown); true when reported. */
function keyProblem(key: string, keyPos: Pos, diags: Diagnostics): boolean {
  if (key.startsWith("request.headers")) return false;
  switch (key) {
    case "source.principal":
    case "source.namespace":
    case "destination.port":
    case "connection.sni":
      return false;
    case "destination.namespace":
      diags.error(keyPos, `key ${q(key)} is replaced by the policy's metadata.namespace (as in Istio)`);
      return true;
    case "destination.name":
    case "destination.user":
      diags.error(keyPos, `key ${q(key)} is a deprecated Istio attribute (v1alpha1 only)`);
      return true;
  }
  if (key.startsWith("destination.labels")) {
    diags.error(keyPos, `key ${q(key)} is replaced by the policy's selector (as in Istio)`);
    return true;
  }
  const unsupported = UNSUPPORTED_KEYS.find((k) => key === k || (k.endsWith(".") ? key.startsWith(k) : key.startsWith(k + "[")));
  if (unsupported) {
    diags.error(keyPos, `key ${q(key)} is not a key of AuthzPolicy conditions (Istio AuthorizationPolicy documents have it); supported keys: ${SUPPORTED_KEYS.map(q).join(", ")}`);
    return true;
  }
  const known = ["request.headers[", "source.principal", "source.namespace", "destination.port", "connection.sni"];
  const hint = known.map((k) => ({ k, d: levenshteinish(key, k) })).sort((a, b) => a.d - b.d)[0];
  diags.error(
    keyPos,
    `unknown condition key ${q(key)}${hint && hint.d <= 3 ? `; did you mean ${q(hint.k === "request.headers[" ? "request.headers[<name>]" : hint.k)}?` : `; supported keys: ${SUPPORTED_KEYS.map(q).join(", ")}`}`,
  );
  return true;
}

function levenshteinish(a: string, b: string): number {
  // Compare only as much of the key as the candidate has, so "request.header[x]" suggests "request.headers[".
  const x = b.endsWith("[") ? a.slice(0, Math.max(a.indexOf("["), 0) + 1 || b.length) : a;
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const t = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (x[i - 1] === b[j - 1] ? 0 : 1));
      diag = t;
    }
  }
  return prev[b.length];
}

/** The predicates of a `when` list (both languages share Istio's condition syntax). */
export function whenPredicates(list: YNode | undefined, flavor: Flavor, diags: Diagnostics): PredicateIR[] {
  const out: PredicateIR[] = [];
  for (const c of listOf(list) ?? []) {
    const cm = mapOf(c);
    if (!cm) continue;
    const keyE = entry(cm, "key");
    const key = stringOf(keyE?.value);
    if (key === undefined) continue;
    const input: ConditionInput = {
      key,
      keyPos: keyE!.value.pos,
      pos: cm.pos,
      values: fieldItems(cm, "values"),
      notValues: fieldItems(cm, "notValues"),
      hasUnknownFields: cm.entries.some((e) => !["key", "values", "notValues"].includes(e.key)),
    };
    out.push(...conditionPredicates(input, flavor, diags));
  }
  return out;
}
