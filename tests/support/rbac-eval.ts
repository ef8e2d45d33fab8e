// An evaluator of Envoy RBAC HTTP filters (the JSON istiod and `compile --emit rbac` write), after Envoy 1.40's
// source/extensions/filters/common/rbac/matchers.cc, for the matchers istiod uses. The oracle test runs istiod's
// own output through it; the differential suite holds it (and everything else) to a real Envoy.

export interface RbacRequest {
  /** the connection is TLS (Envoy's `authenticated` needs it) */
  tls: boolean;
  /** the peer certificate's URI SANs, DNS SANs and subject (null: no certificate) */
  uriSans: string[];
  dnsSans: string[];
  subject: string | null;
  /** request headers in order, pseudo-headers included (`:method`, `:path`, `:authority`) */
  headers: [string, string][];
  /** RBAC's remote_ip (after x-forwarded-for handling), direct_remote_ip and destination_ip, as text */
  remoteIp: string;
  directIp: string;
  localIp: string;
  destinationPort: number;
  sni: string;
  /** filter_metadata["envoy.filters.http.jwt_authn"] */
  jwtMetadata: Record<string, unknown> | null;
}

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** RE2 syntax istiod and our emitter use, as a JavaScript RegExp ("." is any character but "\n" in RE2). */
function re2(regex: string, ignoreCase: boolean): RegExp {
  let out = "";
  let inClass = false;
  for (let i = 0; i < regex.length; i++) {
    const c = regex[i];
    if (c === "\\") {
      out += c + regex[++i];
      continue;
    }
    if (inClass) {
      if (c === "]") inClass = false;
      out += c;
      continue;
    }
    if (c === "[") inClass = true;
    out += c === "." ? "[^\\n]" : c;
  }
  return new RegExp(`^(?:${out})$`, ignoreCase ? "iu" : "u");
}

export function stringMatch(m: Obj, s: string): boolean {
  const ic = m.ignore_case === true;
  const v = ic ? s.toLowerCase() : s;
  if (m.exact !== undefined) return v === (ic ? m.exact.toLowerCase() : m.exact);
  if (m.prefix !== undefined) return v.startsWith(ic ? m.prefix.toLowerCase() : m.prefix);
  if (m.suffix !== undefined) return v.endsWith(ic ? m.suffix.toLowerCase() : m.suffix);
  if (m.contains !== undefined) return v.includes(ic ? m.contains.toLowerCase() : m.contains);
  if (m.safe_regex !== undefined) return re2(m.safe_regex.regex, false).test(s);
  throw new Error(`unsupported string matcher ${JSON.stringify(m)}`);
}

/** Envoy 1.40 matches each value of a repeated header on its own (CVE-2026-26308). */
function headerMatch(h: Obj, req: RbacRequest): boolean {
  const name = String(h.name).toLowerCase();
  const values = req.headers.filter(([k]) => k === name).map(([, v]) => v);
  let r: boolean;
  if (values.length === 0) r = false;
  else if (h.present_match !== undefined) r = h.present_match === true;
  else if (h.string_match !== undefined) r = values.some((v) => stringMatch(h.string_match, v));
  else if (h.exact_match !== undefined) r = values.some((v) => v === h.exact_match);
  else throw new Error(`unsupported header matcher ${JSON.stringify(h)}`);
  return h.invert_match === true ? !r : r;
}

function ipBytes(s: string): number[] | null {
  const m = /^\[(.*)\](?::\d+)?$/.exec(s);
  const t = m ? m[1] : /^[\d.]+:\d+$/.test(s) ? s.slice(0, s.lastIndexOf(":")) : s;
  if (/^\d+\.\d+\.\d+\.\d+$/.test(t)) return t.split(".").map(Number);
  if (!t.includes(":")) return null;
  let head = t;
  let tail: number[] = [];
  const last = t.slice(t.lastIndexOf(":") + 1);
  if (last.includes(".")) {
    tail = last.split(".").map(Number);
    head = t.slice(0, t.lastIndexOf(":") + 1) + "0:0";
  }
  const [a, b] = head.includes("::") ? head.split("::") : [head, null];
  const pa = a ? a.split(":") : [];
  const pb = b === null ? [] : b ? b.split(":") : [];
  const words = b === null ? pa : [...pa, ...Array(8 - pa.length - pb.length).fill("0"), ...pb];
  const out: number[] = [];
  for (const w of words) out.push(parseInt(w, 16) >> 8, parseInt(w, 16) & 0xff);
  if (tail.length) out.splice(12, 4, ...tail);
  return out;
}

function cidrMatch(range: Obj, addr: string): boolean {
  const a = ipBytes(addr);
  const r = ipBytes(range.address_prefix);
  if (!a || !r || a.length !== r.length) return false;
  const bits = range.prefix_len === undefined ? r.length * 8 : Number(range.prefix_len);
  for (let i = 0; i < bits; i++) {
    const bit = (x: number[]) => (x[i >> 3] >> (7 - (i & 7))) & 1;
    if (bit(a) !== bit(r)) return false;
  }
  return true;
}

function valueMatch(m: Obj, v: unknown): boolean {
  if (m.or_match) return m.or_match.value_matchers.some((x: Obj) => valueMatch(x, v));
  if (m.list_match) return Array.isArray(v) && v.some((x) => valueMatch(m.list_match.one_of, x));
  if (m.string_match) return typeof v === "string" && stringMatch(m.string_match, v);
  if (m.present_match !== undefined) return v !== undefined;
  throw new Error(`unsupported value matcher ${JSON.stringify(m)}`);
}

function metadataMatch(m: Obj, req: RbacRequest): boolean {
  if (m.filter !== "envoy.filters.http.jwt_authn") return false;
  let v: unknown = req.jwtMetadata ?? undefined;
  for (const seg of m.path as Obj[]) {
    if (v === null || typeof v !== "object" || Array.isArray(v)) {
      v = undefined;
      break;
    }
    v = (v as Obj)[seg.key];
  }
  const r = v !== undefined && valueMatch(m.value, v);
  return m.invert === true ? !r : r;
}

function urlPath(req: RbacRequest): string {
  const p = req.headers.find(([k]) => k === ":path")?.[1] ?? "";
  return p.replace(/[?#].*$/s, "");
}

const PCHAR = "A-Za-z0-9\\-._~%!$&'()*+,;=:@";

/** Envoy 1.40's uri_template: `*` one or more pchars, `**` zero or more pchars or "/", literals as they are. */
export function uriTemplateRegex(t: string): RegExp {
  const segs = t.slice(1).split("/").map((s) =>
    s === "**" ? `[${PCHAR}/]*` : s === "*" ? `[${PCHAR}]+` : s.replace(/[\\^$.|?*+()[\]{}]/g, "\\$&"),
  );
  return new RegExp(`^/${segs.join("/")}$`);
}

function permission(p: Obj, req: RbacRequest): boolean {
  if (p.any) return true;
  if (p.and_rules) return p.and_rules.rules.every((x: Obj) => permission(x, req));
  if (p.or_rules) return p.or_rules.rules.some((x: Obj) => permission(x, req));
  if (p.not_rule) return !permission(p.not_rule, req);
  if (p.header) return headerMatch(p.header, req);
  if (p.url_path) return stringMatch(p.url_path.path, urlPath(req));
  if (p.uri_template) return uriTemplateRegex(p.uri_template.typed_config.path_template).test(urlPath(req));
  if (p.destination_port !== undefined) return Number(p.destination_port) === req.destinationPort;
  if (p.destination_ip) return cidrMatch(p.destination_ip, req.localIp);
  if (p.requested_server_name) return stringMatch(p.requested_server_name, req.sni);
  if (p.metadata) return metadataMatch(p.metadata, req);
  throw new Error(`unsupported permission ${JSON.stringify(p)}`);
}

function principal(p: Obj, req: RbacRequest): boolean {
  if (p.any) return true;
  if (p.and_ids) return p.and_ids.ids.every((x: Obj) => principal(x, req));
  if (p.or_ids) return p.or_ids.ids.some((x: Obj) => principal(x, req));
  if (p.not_id) return !principal(p.not_id, req);
  if (p.authenticated) {
    if (!req.tls) return false;
    const m = p.authenticated.principal_name;
    if (!m) return true;
    if (req.uriSans.some((u) => stringMatch(m, u))) return true;
    if (req.dnsSans.some((d) => stringMatch(m, d))) return true;
    return stringMatch(m, req.subject ?? "");
  }
  if (p.remote_ip) return cidrMatch(p.remote_ip, req.remoteIp);
  if (p.direct_remote_ip) return cidrMatch(p.direct_remote_ip, req.directIp);
  if (p.header) return headerMatch(p.header, req);
  if (p.metadata) return metadataMatch(p.metadata, req);
  throw new Error(`unsupported principal ${JSON.stringify(p)}`);
}

function policyMatches(policy: Obj, req: RbacRequest): boolean {
  return policy.permissions.some((x: Obj) => permission(x, req)) && policy.principals.some((x: Obj) => principal(x, req));
}

/** The decision of a chain of RBAC HTTP filters: "deny" as soon as one denies. */
export function evaluateRbac(filters: Obj[], req: RbacRequest): "allow" | "deny" {
  for (const f of filters) {
    const rules = (f.typed_config ?? f).rules;
    if (!rules) continue;
    const action = rules.action ?? "ALLOW";
    const policies = Object.values(rules.policies ?? {}) as Obj[];
    const matched = policies.some((p) => policyMatches(p, req));
    if (action === "ALLOW" && !matched) return "deny";
    if (action === "DENY" && matched) return "deny";
  }
  return "allow";
}
