// Seeded, reproducible AuthorizationPolicies and requests from the grammar of every field the compiler translates
// (src/policy/istio-values.ts), with value pools that make policies and requests meet: SPIFFE IDs of odd shapes,
// DNS SANs and subjects, JWT payloads with string, list and nested claims, x-forwarded-for chains, hosts, ports,
// repeated and empty headers, path templates.
//
// Used by tests/unit/istio-oracle.test.ts (against istiod's committed output), tests/integration/
// istio-differential.test.ts (in a real Envoy 1.40) and tools/istio-oracle/regenerate.ts.

/** mulberry32: a small seeded PRNG, so a seed names one corpus on every machine. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const some = <T>(r: Rand, xs: readonly T[], max = 3): T[] => {
  const n = 1 + Math.floor(r() * max);
  const out: T[] = [];
  for (let i = 0; i < n; i++) {
    const x = pick(r, xs);
    if (!out.includes(x)) out.push(x);
  }
  return out;
};

export const ISSUER = "https://issuer.example";
export const OTHER_ISSUER = "https://other.example/tenant";

// ---- the pools (policies and requests draw from the same names) ----

const PRINCIPALS = [
  "cluster.local/ns/foo/sa/a", "cluster.local/ns/bar/sa/b", "td2/ns/foo/sa/a", "other.td/ns/foo/sa/a", "*/sa/a",
  "*", "cluster.local/*", "cluster.local/ns/foo/*", "*.td/ns/foo/sa/a", "*local/ns/foo/sa/a", "spiffe://cluster.local/ns/foo/sa/a",
  "cluster.local/ns/foo", "*foo/sa/a", "web.foo.svc", "*/ns/x.y/sa/a",
];
const NAMESPACES = ["foo", "bar", "*", "f*", "*o", "x.y", "x?y", "fo*o"];
const SERVICE_ACCOUNTS = ["a", "foo/a", "bar/b", "x.y/a", "foo/b"];
const TRUST_DOMAINS = ["cluster.local", "td2", "*", "cluster*", "*.td", "other.td", "*local"];
const REQUEST_PRINCIPALS = [
  `${ISSUER}/alice`, `${ISSUER}/*`, "*/alice", "*", `${ISSUER}*`, "*alice", `${OTHER_ISSUER}/bob`, "*/bob", `*.example/alice`,
  "noslash", `${ISSUER}/al*`,
];
const IP_BLOCKS = ["10.0.0.0/8", "10.1.2.3", "192.168.0.0/16", "::1", "2001:db8::/32", "::ffff:10.0.0.0/104", "127.0.0.1", "127.0.0.0/8", "10.1.2.3/24"];
const HOSTS = ["example.com", "*.example.com", "Example.COM", "*", "api*", "localhost"];
const METHODS = ["GET", "POST", "*", "G*", "*T", "DELETE"];
const PATHS = [
  "/api/{*}", "/api/{**}", "/api/{**}/x", "/{*}/x/{**}", "/api*", "*/x", "/exact", "*", "/api/{*}/", "/{**}", "/a=b/{*}",
  "/api/{*}/{*}",
];
const HEADER_VALUES = ["bob", "*", "b*", "*x", "alice"];
const CLAIM_VALUES = ["admin", "dev*", "*ops", "*", "x"];
const SNI = ["example.com", "*.example.com", "*", "local*"];

function ports(listenerPort: number): string[] {
  return [String(listenerPort), "80", "8443"];
}

export interface GenOptions {
  /** the port requests reach (so `ports` can match) */
  listenerPort: number;
  /** the namespace the policies are in */
  namespace?: string;
}

function yamlList(xs: string[]): string {
  return `[${xs.map((x) => JSON.stringify(x)).join(", ")}]`;
}

function source(r: Rand): string[] {
  const lines: string[] = [];
  const fields: [string, () => string[]][] = [
    ["principals", () => some(r, PRINCIPALS)],
    ["notPrincipals", () => some(r, PRINCIPALS, 2)],
    ["namespaces", () => some(r, NAMESPACES)],
    ["notNamespaces", () => some(r, NAMESPACES, 2)],
    ["trustDomains", () => some(r, TRUST_DOMAINS)],
    ["notTrustDomains", () => some(r, TRUST_DOMAINS, 2)],
    ["requestPrincipals", () => some(r, REQUEST_PRINCIPALS)],
    ["notRequestPrincipals", () => some(r, REQUEST_PRINCIPALS, 2)],
    ["remoteIpBlocks", () => some(r, IP_BLOCKS)],
    ["notRemoteIpBlocks", () => some(r, IP_BLOCKS, 2)],
  ];
  const useSa = r() < 0.2;
  const n = 1 + Math.floor(r() * 2);
  const chosen = new Set<string>();
  if (useSa) {
    chosen.add(r() < 0.7 ? "serviceAccounts" : "notServiceAccounts");
    lines.push(`          ${[...chosen][0]}: ${yamlList(some(r, SERVICE_ACCOUNTS))}`);
  }
  for (let i = 0; i < n; i++) {
    const [name, gen] = pick(r, fields);
    if (chosen.has(name)) continue;
    if (useSa && /rincipals$|amespaces$/.test(name) && !/^(not)?[rR]equest/.test(name)) continue;
    chosen.add(name);
    lines.push(`          ${name}: ${yamlList(gen())}`);
  }
  if (lines.length === 0) lines.push(`          principals: ${yamlList(some(r, PRINCIPALS))}`);
  return lines;
}

function operation(r: Rand, o: GenOptions): string[] {
  const fields: [string, () => string[]][] = [
    ["hosts", () => some(r, HOSTS)],
    ["notHosts", () => some(r, HOSTS, 2)],
    ["methods", () => some(r, METHODS)],
    ["notMethods", () => some(r, METHODS, 2)],
    ["paths", () => some(r, PATHS)],
    ["notPaths", () => some(r, PATHS, 2)],
    ["ports", () => some(r, ports(o.listenerPort), 2)],
    ["notPorts", () => some(r, ports(o.listenerPort), 1)],
  ];
  const lines: string[] = [];
  const chosen = new Set<string>();
  const n = 1 + Math.floor(r() * 2);
  for (let i = 0; i < n; i++) {
    const [name, gen] = pick(r, fields);
    if (chosen.has(name)) continue;
    chosen.add(name);
    lines.push(`          ${name}: ${yamlList(gen())}`);
  }
  return lines;
}

function condition(r: Rand): string[] {
  const keys: [string, () => string[]][] = [
    ["request.headers[x-user]", () => some(r, HEADER_VALUES)],
    ["request.headers[X-Env]", () => some(r, ["*", "prod", "p*"])],
    ["request.auth.claims[groups]", () => some(r, CLAIM_VALUES)],
    ["request.auth.claims[nested][role]", () => some(r, CLAIM_VALUES)],
    ["request.auth.audiences", () => some(r, ["api", "web*", "*"])],
    ["request.auth.presenter", () => some(r, ["client-a", "client*"])],
    ["request.auth.principal", () => some(r, REQUEST_PRINCIPALS)],
    ["source.namespace", () => some(r, NAMESPACES)],
    ["source.principal", () => some(r, PRINCIPALS)],
    ["source.trustDomain", () => some(r, TRUST_DOMAINS)],
    ["source.serviceAccount", () => some(r, SERVICE_ACCOUNTS)],
    ["remote.ip", () => some(r, IP_BLOCKS)],
    ["destination.ip", () => some(r, ["127.0.0.1", "127.0.0.0/8", "10.0.0.0/8", "::1"])],
    ["connection.sni", () => some(r, SNI)],
  ];
  const [key, gen] = pick(r, keys);
  const lines = [`        - key: ${JSON.stringify(key)}`];
  const which = r();
  if (which < 0.6) lines.push(`          values: ${yamlList(gen())}`);
  else if (which < 0.85) lines.push(`          notValues: ${yamlList(gen())}`);
  else lines.push(`          values: ${yamlList(gen())}`, `          notValues: ${yamlList(gen())}`);
  return lines;
}

/** One policy document (YAML) named `name`. */
export function generatePolicy(r: Rand, name: string, o: GenOptions): string {
  const action = pick(r, ["ALLOW", "ALLOW", "DENY", "DENY", "AUDIT"]);
  const dryRun = r() < 0.1;
  const lines = [
    "apiVersion: security.istio.io/v1",
    "kind: AuthorizationPolicy",
    "metadata:",
    `  name: ${name}`,
    `  namespace: ${o.namespace ?? "foo"}`,
  ];
  if (dryRun) lines.push("  annotations:", '    istio.io/dry-run: "true"');
  lines.push("spec:", `  action: ${action}`, "  rules:");
  const nRules = 1 + Math.floor(r() * 2);
  for (let i = 0; i < nRules; i++) {
    const parts: string[][] = [];
    if (r() < 0.75) {
      const from = ["    from:"];
      const n = 1 + Math.floor(r() * 2);
      for (let k = 0; k < n; k++) from.push("      - source:", ...source(r));
      parts.push(from);
    }
    if (r() < 0.6) {
      const to = ["    to:"];
      const n = 1 + Math.floor(r() * 2);
      for (let k = 0; k < n; k++) to.push("      - operation:", ...operation(r, o));
      parts.push(to);
    }
    if (r() < 0.5) {
      const when = ["    when:"];
      const n = 1 + Math.floor(r() * 2);
      for (let k = 0; k < n; k++) when.push(...condition(r));
      parts.push(when);
    }
    if (parts.length === 0) {
      lines.push("  - {}");
      continue;
    }
    parts[0][0] = "  - " + parts[0][0].trimStart();
    for (const p of parts) lines.push(...p);
  }
  return lines.join("\n") + "\n";
}

/** A case: one to three policies, and the mesh's trust domain and aliases. */
export interface PolicyCase {
  id: string;
  yaml: string;
  trustDomain: string;
  aliases: string[];
}

export function generateCases(seed: number, count: number, o: GenOptions): PolicyCase[] {
  const r = rng(seed);
  const out: PolicyCase[] = [];
  for (let i = 0; i < count; i++) {
    const n = 1 + Math.floor(r() * 3);
    const docs: string[] = [];
    for (let k = 0; k < n; k++) docs.push(generatePolicy(r, `p${k}`, o));
    const aliasing = r();
    out.push({
      id: `s${seed}-c${i}`,
      yaml: docs.join("---\n"),
      trustDomain: aliasing < 0.7 ? "cluster.local" : pick(r, ["td2", "new.td"]),
      aliases: aliasing < 0.5 ? [] : some(r, ["cluster.local", "td2", "old.td", "*.td"], 2),
    });
  }
  return out;
}

// ---- requests ----

/** A client: its certificate's names, or none. The differential suite makes one certificate per client. */
export interface GenClient {
  name: string;
  /** URI SAN (at most one: Envoy shows a wasm filter only the first) */
  uri?: string;
  dns?: string;
  /** the subject's CN (the subject Envoy prints is `CN=<cn>`) */
  cn: string;
}

export const CLIENTS: GenClient[] = [
  { name: "foo-a", uri: "spiffe://cluster.local/ns/foo/sa/a", cn: "foo-a" },
  { name: "bar-b", uri: "spiffe://cluster.local/ns/bar/sa/b", cn: "bar-b" },
  { name: "td2", uri: "spiffe://td2/ns/foo/sa/a", cn: "td2" },
  { name: "other", uri: "spiffe://other.td/ns/foo/sa/a/extra/seg", cn: "other" },
  { name: "ns-only", uri: "spiffe://cluster.local/ns/foo", cn: "ns-only" },
  { name: "td-only", uri: "spiffe://cluster.local", cn: "td-only" },
  { name: "deep", uri: "spiffe://cluster.local/ns/foo/x/y/sa/a", cn: "deep" },
  { name: "xy", uri: "spiffe://cluster.local/ns/x.y/sa/a", cn: "xy" },
  { name: "xqy", uri: "spiffe://cluster.local/ns/xzy/sa/a", cn: "xqy" },
  { name: "upper", uri: "spiffe://Cluster.Local/ns/foo/sa/a", cn: "upper" },
  { name: "double", uri: "spiffe://spiffe://cluster.local/ns/foo/sa/a", cn: "double" },
  { name: "https", uri: "https://cluster.local/ns/foo/sa/a", cn: "https" },
  { name: "dns-only", dns: "web.foo.svc", cn: "dns-only" },
  { name: "dns-ns", dns: "x.ns.foo.y", cn: "a/ns/foo/b" },
  { name: "subject-only", cn: "a/ns/foo/sa/a" },
  { name: "both", uri: "spiffe://cluster.local/ns/bar/sa/a", dns: "web.foo.svc", cn: "both" },
];

export interface GenRequest {
  /** a CLIENTS name, or null: no client certificate */
  client: string | null;
  method: string;
  path: string;
  authority: string;
  /** headers in order (repeated names allowed) */
  headers: [string, string][];
  /** x-forwarded-for (the listener trusts one hop: the remote address is the last entry but one, or the peer) */
  xff: string | null;
  /** the verified JWT's claims (null: no token) */
  jwt: Record<string, unknown> | null;
}

const REQ_PATHS = [
  "/api", "/api/", "/api/v1", "/api/v1/", "/api/v1/x", "/api/a/b/x", "/api//x", "/api/x", "/exact", "/exact?q=1",
  "/x", "/a/x/b", "/a=b/c", "/api/a*b", "/api/a%2Fb", "/", "/other/x", "/a/x", "/api/v1/v2",
];
const REQ_HOSTS = ["example.com", "api.example.com", "EXAMPLE.com", "localhost", "api"];
const XFF = [null, "10.1.2.3", "192.168.7.7", "10.1.2.3, 192.168.7.7", "2001:db8::5", "::ffff:10.1.2.3", "8.8.8.8, 10.9.9.9"];

function jwtClaims(r: Rand): Record<string, unknown> | null {
  if (r() < 0.35) return null;
  const claims: Record<string, unknown> = {
    iss: pick(r, [ISSUER, ISSUER, OTHER_ISSUER]),
    sub: pick(r, ["alice", "bob", "al", "x/alice"]),
  };
  const g = r();
  if (g < 0.3) claims.groups = some(r, ["admin", "dev-1", "x-ops", "none"]);
  else if (g < 0.5) claims.groups = pick(r, ["admin", "developer", "", "ops"]);
  else if (g < 0.6) claims.groups = 7;
  if (r() < 0.4) claims.nested = r() < 0.8 ? { role: pick(r, ["admin", "devops", "x"]) } : "admin";
  if (r() < 0.5) claims.aud = r() < 0.5 ? pick(r, ["api", "web-1"]) : some(r, ["api", "web-1", "other"]);
  if (r() < 0.3) claims.azp = pick(r, ["client-a", "client-b"]);
  return claims;
}

export function generateRequests(seed: number, count: number): GenRequest[] {
  const r = rng(seed ^ 0x5bd1e995);
  const out: GenRequest[] = [];
  for (let i = 0; i < count; i++) {
    const headers: [string, string][] = [];
    const u = r();
    if (u < 0.2) headers.push(["x-user", "bob"]);
    else if (u < 0.3) headers.push(["x-user", "bobx"], ["x-user", "bob"]);
    else if (u < 0.4) headers.push(["x-user", ""]);
    else if (u < 0.5) headers.push(["x-user", "alice,bob"]);
    if (r() < 0.3) headers.push(["x-env", pick(r, ["prod", "", "staging"])]);
    out.push({
      client: r() < 0.15 ? null : pick(r, CLIENTS).name,
      method: pick(r, ["GET", "POST", "DELETE", "GET"]),
      path: pick(r, REQ_PATHS),
      authority: pick(r, REQ_HOSTS),
      headers,
      xff: pick(r, XFF),
      jwt: jwtClaims(r),
    });
  }
  return out;
}

/** Whether a request repeats a header name. */
export function repeatedHeaders(r: GenRequest): boolean {
  return new Set(r.headers.map(([k]) => k)).size !== r.headers.length;
}
