// A reference evaluator of a table IR, written from docs/table-format.md sections 3 and 4 alone (no index, every
// rule in order). Tests use it to check what compiled policies *mean*: a request in, a decision out.

import type { PatternIR, PredicateIR, RuleIR, TableIR } from "../../../src/compiler/ir.ts";
import { maskAddress, parseIp } from "../../../src/compiler/ir.ts";
import { globMatches } from "../../../src/vocabulary/glob.ts";

export interface RefRequest {
  /** the peer's URI SAN; undefined = no client certificate */
  peer?: string;
  method?: string;
  path?: string;
  host?: string;
  port?: number;
  sni?: string;
  /** header names in any case; a list is one header line per element, each matched on its own */
  headers?: Record<string, string | string[]>;
  /** the peer certificate's first DNS SAN and its subject (Envoy RBAC's principal names after the URI SAN) */
  peerDns?: string;
  peerSubject?: string;
  /** the JWT payload jwt_authn left under `payload` (what istiod's RBAC reads) */
  jwtPayload?: Record<string, unknown>;
  /** `source.address` / `destination.address` as Envoy writes them (`1.2.3.4:5`, `[::1]:5`) */
  remoteAddress?: string;
  localAddress?: string;
}

export interface RefDecision {
  decision: "allow" | "deny";
  /** the deciding rule, or null for the default */
  rule: string | null;
  /** AUDIT and dry-run rules that matched, in table order */
  shadow: string[];
}

interface Identity {
  id: string;
  trustDomain: string;
  attributes: Map<string, string>;
}

const TD = /^[a-z0-9._-]+$/;
const SEG = /^[a-zA-Z0-9._-]+$/;

/** The peer's identity when its ID is valid and satisfies its trust domain's schema (if any). */
function identity(peer: string | undefined, ir: TableIR): Identity | null {
  if (!peer?.startsWith("spiffe://")) return null;
  const rest = peer.slice(9);
  const slash = rest.indexOf("/");
  const td = slash < 0 ? rest : rest.slice(0, slash);
  if (!TD.test(td) || td.length > 255) return null;
  const segs = slash < 0 ? [] : rest.slice(slash + 1).split("/");
  if (slash >= 0 && segs.some((s) => !SEG.test(s) || s === "." || s === "..")) return null;
  const attributes = new Map<string, string>();
  for (let i = 0; i + 1 < segs.length; i += 2) if (!attributes.has(segs[i])) attributes.set(segs[i], segs[i + 1]);
  const schema = ir.schemas.find((s) => s.trustDomain === td);
  if (schema) {
    if (segs.length % 2 !== 0) return null;
    const keys = segs.filter((_, i) => i % 2 === 0);
    if (new Set(keys).size !== keys.length) return null;
    if (schema.keys.some((k) => !attributes.has(k))) return null;
  }
  return { id: peer, trustDomain: td, attributes };
}

function templateMatch(template: string, subject: string): boolean {
  const t = template.split("/");
  const s = subject.split("/");
  for (let i = 0; i < t.length; i++) {
    if (t[i] === "{**}") return true;
    if (i >= s.length) return false;
    if (t[i] === "{*}") {
      if (s[i] === "") return false;
    } else if (t[i] !== s[i]) return false;
  }
  return t.length === s.length;
}

function patternMatch(p: PatternIR, subject: string, ignoreCase: boolean): boolean {
  const s = ignoreCase ? subject.toLowerCase() : subject;
  switch (p.kind) {
    case "exact":
      return s === p.value;
    case "prefix":
      return s.startsWith(p.value);
    case "suffix":
      return s.endsWith(p.value);
    case "present":
      return s.length > 0;
    case "template":
      return templateMatch(p.value, s);
    case "glob":
      return globMatches(p.value, subject, ignoreCase);
    case "cidr":
      return false;
  }
}

/** Every value the predicate's field has: one per header line, else the one subject (none when absent). */
function subjects(p: PredicateIR, req: RefRequest, id: Identity | null): string[] {
  if (p.field === "header") {
    const out: string[] = [];
    for (const [k, v] of Object.entries(req.headers ?? {})) {
      if (k.toLowerCase() === p.arg) out.push(...(Array.isArray(v) ? v : [v]));
    }
    return out;
  }
  const s = subject(p, req, id);
  return s === undefined ? [] : [s];
}

function addressOf(text: string | undefined): Buffer | null {
  if (text === undefined) return null;
  const m = /^\[(.*)\]:\d+$/.exec(text) ?? /^([\d.]+):\d+$/.exec(text);
  return parseIp(m ? m[1] : text);
}

function cidrMatch(value: string, addr: Buffer): boolean {
  const slash = value.lastIndexOf("/");
  const net = parseIp(value.slice(0, slash));
  const len = Number(value.slice(slash + 1));
  return net !== null && net.length === addr.length && maskAddress(addr, len).equals(maskAddress(net, len));
}

/** The Istio-input fields (Envoy RBAC's meaning): whether any pattern matches, before negation. */
function sourceFieldMatch(p: PredicateIR, req: RefRequest): boolean {
  switch (p.field) {
    case "peerName": {
      const names = [req.peer, req.peerDns, req.peerSubject];
      return names.some((n) => n !== undefined && p.patterns.some((pat) => patternMatch(pat, n, p.ignoreCase)));
    }
    case "remoteIp":
    case "destinationIp": {
      const addr = addressOf(p.field === "remoteIp" ? req.remoteAddress : req.localAddress);
      return addr !== null && p.patterns.some((pat) => cidrMatch(pat.value, addr));
    }
    case "requestPrincipal": {
      const iss = req.jwtPayload?.iss;
      const sub = req.jwtPayload?.sub;
      if (typeof iss !== "string" || typeof sub !== "string") return false;
      for (let i = 0; i + 1 < p.patterns.length; i += 2) {
        if (patternMatch(p.patterns[i], iss, false) && patternMatch(p.patterns[i + 1], sub, false)) return true;
      }
      return false;
    }
    case "jwtClaim": {
      let v: unknown = req.jwtPayload;
      for (const k of p.arg.split("\0")) {
        if (v === null || typeof v !== "object" || Array.isArray(v) || !(k in (v as object))) return false;
        v = (v as Record<string, unknown>)[k];
      }
      const strings = typeof v === "string" ? [v] : Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
      return strings.some((x) => p.patterns.some((pat) => patternMatch(pat, x, p.ignoreCase)));
    }
  }
  return false;
}

function subject(p: PredicateIR, req: RefRequest, id: Identity | null): string | undefined {
  switch (p.field) {
    case "principal":
      return id?.id;
    case "trustDomain":
      return id?.trustDomain;
    case "attribute":
      return id?.attributes.get(p.arg);
    case "method":
      return req.method;
    case "path": {
      if (req.path === undefined) return undefined;
      const cut = req.path.search(/[?#]/);
      return cut < 0 ? req.path : req.path.slice(0, cut);
    }
    case "host":
      return req.host === undefined || !p.hostName ? req.host : hostName(req.host);
    case "port":
      return req.port === undefined ? undefined : String(req.port);
    case "sni":
      return req.sni;
    case "header":
      return undefined; // subjects() reads every line
    case "peerName":
    case "requestPrincipal":
    case "jwtClaim":
    case "remoteIp":
    case "destinationIp":
      return undefined; // sourceFieldMatch() reads them
  }
}

function predMatch(p: PredicateIR, req: RefRequest, id: Identity | null, action: RuleIR["action"]): boolean {
  const identityField = p.field === "principal" || p.field === "trustDomain" || p.field === "attribute";
  if (identityField && id === null) {
    // No usable identity: a positive predicate fails; a negated one matches only in a DENY rule (fail closed).
    return p.negate && action === "deny";
  }
  if (p.field === "peerName" || p.field === "requestPrincipal" || p.field === "jwtClaim" || p.field === "remoteIp" || p.field === "destinationIp") {
    const m = sourceFieldMatch(p, req);
    return p.negate ? !m : m;
  }
  const any = subjects(p, req, id).some((s) => p.patterns.some((pat) => patternMatch(pat, s, p.ignoreCase)));
  return p.negate ? !any : any;
}

export function ruleMatches(r: RuleIR, req: RefRequest, id: Identity | null): boolean {
  const clause = (c: { predicates: PredicateIR[] }) => c.predicates.every((p) => predMatch(p, req, id, r.action));
  return (
    (r.sources.length === 0 || r.sources.some(clause)) &&
    (r.operations.length === 0 || r.operations.some(clause)) &&
    r.conditions.every((p) => predMatch(p, req, id, r.action))
  );
}

/** Our format's host name (docs/policy-language.md, "Hosts and methods"): no userinfo, port or trailing dot. */
export function hostName(authority: string): string {
  const host = authority.slice(authority.lastIndexOf("@") + 1);
  if (host.startsWith("[")) {
    const close = host.indexOf("]");
    return close < 0 ? host : host.slice(0, close + 1);
  }
  const name = host.split(":")[0];
  return name.endsWith(".") ? name.slice(0, -1) : name;
}

/** docs/security.md: an escaped slash or backslash, a backslash, or a dot segment (plain, %2E, or before `;`). */
export function ambiguousPath(path: string): boolean {
  const p = path.split(/[?#]/)[0];
  if (/%2f|%5c|\\/i.test(p)) return true;
  return p.split("/").some((seg) => /^(\.|%2e){1,2}$/i.test(seg.split(";")[0]));
}

/** The decision of docs/table-format.md section 4. */
export function evaluate(ir: TableIR, req: RefRequest, options: { ambiguousPaths?: "allow" | "deny" } = {}): RefDecision {
  const readsPath = ir.rules.some((r) => [...r.sources, ...r.operations].some((c) => c.predicates.some((p) => p.field === "path"))
    || r.conditions.some((p) => p.field === "path"));
  if (options.ambiguousPaths !== "allow" && readsPath && req.path !== undefined && ambiguousPath(req.path)) return { decision: "deny", rule: null, shadow: [] };
  const id = identity(req.peer, ir);
  const shadow: string[] = [];
  let deny: string | null = null;
  let allow: string | null = null;
  for (const r of ir.rules) {
    if (!ruleMatches(r, req, id)) continue;
    if (r.dryRun || r.action === "audit") {
      shadow.push(r.id);
      continue;
    }
    if (r.action === "deny" && deny === null) deny = r.id;
    if (r.action === "allow" && allow === null) allow = r.id;
  }
  if (deny !== null) return { decision: "deny", rule: deny, shadow };
  if (allow !== null) return { decision: "allow", rule: allow, shadow };
  return { decision: ir.defaultAction, rule: null, shadow };
}
