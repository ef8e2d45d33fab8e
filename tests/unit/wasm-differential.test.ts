// Differential test: what the compiler means (the reference evaluator of docs/table-format.md, run on the IR) must
// be what the shipped build/release.wasm decides, run in the TypeScript proxy-wasm host. Seeded and reproducible:
// random policies in both languages from a small vocabulary, so rules and requests meet often.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { compileTexts } from "../../src/compiler/index.ts";
import { ensureWasm } from "../../dev/envoy/wasm.ts";
import { ProxyWasmHost } from "../../src/host/index.ts";
import { evaluate, type RefRequest } from "./support/reference.ts";

/** mulberry32: a tiny seeded PRNG, so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TDS = ["prod.example.com", "cluster.local"];
const APPS = ["web", "billing", "orders"];
const NSS = ["shop", "pay"];
const PATHS = ["/", "/orders", "/orders/1/items", "/admin/x/y", "/img/a.png", "/acme.orders.v1.Orders/GetOrder"];
const METHODS = ["GET", "POST", "DELETE"];
/** Paths a table that reads the path refuses (docs/security.md). */
const AMBIGUOUS = ["/orders/..%2Fadmin", "/admin/%2e%2e/x", "/orders\\1", "/orders/..;/admin"];
const HOSTS = ["api.example.com", "API.Example.com", "db.internal", "api.example.com:8443", "api.example.com.", "u@db.internal:80", "x.internal.", "[::1]:443"];

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)];
}
function some<T>(r: () => number, xs: readonly T[]): T[] {
  const out = xs.filter(() => r() < 0.4);
  return out.length ? out : [pick(r, xs)];
}
const list = (xs: string[]) => `[${xs.map((x) => JSON.stringify(x)).join(", ")}]`;

function peers(): (string | undefined)[] {
  const out: (string | undefined)[] = [undefined, "spiffe://Bad/x", "not-a-uri"];
  for (const td of TDS) for (const app of APPS) for (const ns of NSS) out.push(`spiffe://${td}/ns/${ns}/app/${app}`);
  out.push("spiffe://prod.example.com/ns/shop/app/web/extra", "spiffe://prod.example.com/app/web");
  return out;
}

function ourRule(r: () => number, i: number): string {
  const lines = [`    - id: r${i}`, `      action: ${pick(r, ["allow", "allow", "deny", "audit"])}`];
  if (r() < 0.2) lines.push("      dryRun: true");
  if (r() < 0.7) {
    const src: string[] = [];
    if (r() < 0.4) src.push(`ids: ${list(some(r, ["spiffe://prod.example.com/ns/shop/app/web", "spiffe://cluster.local/ns/pay/*", "*/app/orders", "*"]))}`);
    if (r() < 0.3) src.push(`notIds: ${list(["spiffe://cluster.local/ns/shop/app/billing"])}`);
    if (r() < 0.3) src.push(`trustDomains: ${list(some(r, TDS))}`);
    if (r() < 0.4) src.push(`attributes: {app: ${list(some(r, APPS))}}`);
    if (r() < 0.2) src.push(`notAttributes: {ns: ${list(some(r, NSS))}}`);
    if (r() < 0.3) src.push(`namespaces: ${list(some(r, [...NSS, "sh*"]))}`);
    lines.push(`      from: [{${src.join(", ")}}]`);
  }
  if (r() < 0.6) {
    const op: string[] = [];
    if (r() < 0.5) op.push(`paths: ${list(some(r, ["/orders", "/orders/{*}/items", "/admin/{**}", "*.png", "/acme.*"]))}`);
    if (r() < 0.3) op.push(`notPaths: ${list(["/admin/{**}"])}`);
    if (r() < 0.4) op.push(`methods: ${list(some(r, METHODS))}`);
    if (r() < 0.3) op.push(`hosts: ${list(some(r, ["api.example.com", "*.internal"]))}`);
    if (r() < 0.2) op.push(`ports: [${pick(r, [443, 8443])}]`);
    if (r() < 0.15) op.push(`grpc: {service: acme.orders.v1.Orders, methods: [GetOrder]}`);
    if (op.some((o) => o.startsWith("grpc")) ) {
      for (let k = op.length - 1; k >= 0; k--) if (/^(paths|notPaths|methods)/.test(op[k])) op.splice(k, 1);
    }
    lines.push(`      to: [{${op.join(", ")}}]`);
  }
  const when: string[] = [];
  if (r() < 0.3) when.push(`        - {key: "request.headers[x-tenant]", ${r() < 0.5 ? "values" : "notValues"}: ${list(some(r, ["acme", "beta*"]))}}`);
  if (r() < 0.15) when.push(`        - {key: connection.sni, values: ["*.example.com"]}`);
  if (when.length) lines.push("      when:", ...when);
  return lines.join("\n");
}

function ourPolicy(r: () => number, n: number, k: number): string {
  const rules: string[] = [];
  for (let i = 0; i < k; i++) rules.push(ourRule(r, n * 100 + i));
  const schema = r() < 0.3 ? "  trustDomains:\n    prod.example.com: {require: [ns, app]}\n" : "";
  return `apiVersion: spiffe-authz.dev/v1\nkind: AuthzPolicy\nmetadata: {name: p${n}}\nspec:\n${schema}  rules:\n${rules.join("\n")}\n`;
}

function istioPolicy(r: () => number, n: number): string {
  const action = pick(r, ["ALLOW", "DENY", "AUDIT"]);
  const src = pick(r, [
    `principals: ["cluster.local/ns/pay/*"]`,
    `notPrincipals: ["prod.example.com/ns/shop/app/web"]`,
    `namespaces: ["shop"]`,
    `principals: ["*"]`,
  ]);
  const op = pick(r, [`paths: ["/admin/{**}"]`, `methods: ["GET"]`, `hosts: ["API.example.com"]`, `notPaths: ["/orders*"]`]);
  return `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: i${n}, namespace: mesh}\nspec:\n  action: ${action}\n  rules:\n    - from: [{source: {${src}}}]\n      to: [{operation: {${op}}}]\n`;
}

describe("reference evaluator vs build/release.wasm", () => {
  it("agree on decision and deciding rule for seeded random policies and requests", { timeout: 600_000 }, async () => {
    const wasm = await ensureWasm(() => {});
    const module = await ProxyWasmHost.load({ wasmPath: wasm, rootId: "spiffe_authz", logLevel: "critical" });
    let compared = 0;
    const seen = { allow: 0, deny: 0, byRule: 0, shadow: 0 };
    for (let seed = 1; seed <= 150; seed++) {
      const r = rng(seed);
      const docs = [ourPolicy(r, seed, 1 + Math.floor(r() * 6))];
      if (r() < 0.5) docs.push(istioPolicy(r, seed));
      const result = compileTexts([{ file: `seed-${seed}.yaml`, text: docs.join("---\n") }]);
      assert.ok(module.configure(result.config), `seed ${seed}: the module rejected the table`);
      for (const peer of peers()) {
        for (let j = 0; j < 6; j++) {
          const req: RefRequest = {
            peer,
            method: pick(r, METHODS),
            path: (r() < 0.1 ? pick(r, AMBIGUOUS) : pick(r, PATHS)) + (r() < 0.2 ? "?q=1" : ""),
            host: pick(r, HOSTS),
            port: pick(r, [443, 8443]),
            sni: pick(r, ["api.example.com", "other.org"]),
            headers: r() < 0.5 ? { "x-tenant": r() < 0.3 ? some(r, ["acme", "beta-2", "zeta"]) : pick(r, ["acme", "beta-2", "zeta"]) } : {},
          };
          const want = evaluate(result.ir, req);
          const got = module.request({
            peer: peer ?? null,
            method: req.method,
            path: req.path,
            authority: req.host,
            port: req.port,
            sni: req.sni,
            headers: Object.entries(req.headers ?? {}).flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((x): [string, string] => [k, x])),
          });
          assert.ok(got.explain, `seed ${seed}: no explain output`);
          const where = `seed ${seed}, ${JSON.stringify(req)}\n${docs.join("---\n")}`;
          assert.equal(got.explain.decision, want.decision, where);
          assert.equal(got.explain.rule, want.rule, where);
          assert.equal(got.explain.tableHash, result.tableHash);
          compared++;
          seen[want.decision]++;
          if (want.rule !== null) seen.byRule++;
          if (want.shadow.length) seen.shadow++;
        }
      }
    }
    assert.ok(compared > 15000);
    // The cases exercise every outcome, not just the default.
    for (const [k, v] of Object.entries(seen)) assert.ok(v > compared / 50, `${k}: ${v} of ${compared}`);
  });
});
