// Our policy language (spiffe-authz.dev/v1 AuthzPolicy): meaning, defaults, ids and schemas.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { compileTexts } from "../../src/compiler/index.ts";
import { compileYaml, decide, errorLines, errorsOf, istio, ours } from "./support/helpers.ts";

const billing = "spiffe://prod.example.com/cluster/c1/app/billing/env/prod";
const orders = "spiffe://prod.example.com/cluster/c1/app/orders/env/prod";
const staging = "spiffe://prod.example.com/cluster/c1/app/billing/env/staging";

describe("sources", () => {
  it("ids: exact, prefix, suffix and any", () => {
    const r = compileYaml(ours("ids", `
      rules:
        - id: exact
          from: [{ids: ["${billing}"]}]
          to: [{paths: ["/exact"]}]
        - id: prefix
          from: [{ids: ["spiffe://prod.example.com/cluster/c1/*"]}]
          to: [{paths: ["/prefix"]}]
        - id: suffix
          from: [{ids: ["*/env/staging"]}]
          to: [{paths: ["/suffix"]}]
        - id: any
          from: [{ids: ["*"]}]
          to: [{paths: ["/any"]}]
    `));
    assert.equal(decide(r, { peer: billing, path: "/exact" }).rule, "exact");
    assert.equal(decide(r, { peer: orders, path: "/exact" }).decision, "deny");
    assert.equal(decide(r, { peer: orders, path: "/prefix" }).rule, "prefix");
    assert.equal(decide(r, { peer: staging, path: "/suffix" }).rule, "suffix");
    assert.equal(decide(r, { peer: billing, path: "/suffix" }).decision, "deny");
    assert.equal(decide(r, { peer: "spiffe://x.org/y", path: "/any" }).rule, "any");
    assert.equal(decide(r, { path: "/any" }).decision, "deny");
  });

  it("attributes: equality, sets, negation and namespaces", () => {
    const r = compileYaml(ours("attrs", `
      rules:
        - id: apps
          from:
            - attributes: {app: [billing, orders], env: prod}
              notAttributes: {cluster: c9}
        - id: shop
          from: [{namespaces: ["shop"]}]
    `));
    assert.equal(decide(r, { peer: billing }).rule, "apps");
    assert.equal(decide(r, { peer: orders }).rule, "apps");
    assert.equal(decide(r, { peer: staging }).decision, "deny");
    assert.equal(decide(r, { peer: "spiffe://prod.example.com/cluster/c9/app/billing/env/prod" }).decision, "deny");
    assert.equal(decide(r, { peer: "spiffe://cluster.local/ns/shop/sa/x" }).rule, "shop");
  });

  it("a scalar attribute value is a one-element set; numbers keep their spelling", () => {
    const r = compileYaml(ours("n", "rules:\n  - from: [{attributes: {v: 007, on: true}}]"));
    const preds = r.ir.rules[0].sources[0].predicates;
    assert.deepEqual(preds.map((p) => [p.arg, p.patterns[0].value]), [["v", "007"], ["on", "true"]]);
  });

  it("trust domain schemas travel in the table and gate identities", () => {
    const r = compileYaml(ours("schema", `
      trustDomains:
        prod.example.com: {require: [cluster, app, env]}
      rules:
        - from: [{trustDomains: [prod.example.com]}]
    `));
    assert.deepEqual(r.ir.schemas, [{ trustDomain: "prod.example.com", keys: ["cluster", "app", "env"] }]);
    assert.equal(decide(r, { peer: billing }).decision, "allow");
    assert.equal(decide(r, { peer: "spiffe://prod.example.com/app/billing/env/prod" }).decision, "deny");
  });
});

describe("operations", () => {
  it("grpc: service and methods become POST to /package.Service/Method", () => {
    const r = compileYaml(ours("grpc", `
      rules:
        - to:
            - grpc: {service: acme.orders.v1.Orders, methods: [GetOrder, ListOrders]}
            - grpc: {service: acme.health.v1.Health}
    `));
    const call = (path: string, method = "POST") => decide(r, { path, method }).decision;
    assert.equal(call("/acme.orders.v1.Orders/GetOrder"), "allow");
    assert.equal(call("/acme.orders.v1.Orders/GetOrder", "GET"), "deny");
    assert.equal(call("/acme.orders.v1.Orders/DeleteOrder"), "deny");
    assert.equal(call("/acme.health.v1.Health/Check"), "allow");
  });

  it("grpc with paths in the same operation is an error", () => {
    assert.deepEqual(errorsOf(ours("g", "rules:\n  - to:\n      - grpc: {service: a.B}\n        paths: [\"/x\"]")), [
      'policy.yaml:9:11: "paths" cannot be combined with "grpc" in one operation (gRPC fixes the path and the method POST); use a separate "to" entry',
    ]);
  });

  it("ports accept numbers and strings", () => {
    const r = compileYaml(ours("p", "rules:\n  - to: [{ports: [8443, \"9090\"]}]"));
    assert.deepEqual(r.ir.rules[0].operations[0].predicates[0].patterns.map((p) => p.value), ["8443", "9090"]);
  });
});

describe("rule ids", () => {
  it("default to <name>[<index>] and must be unique", () => {
    const r = compileYaml(ours("api", "rules:\n  - {}\n  - id: named\n  - {}"));
    assert.deepEqual(r.ir.rules.map((x) => x.id), ["api[0]", "named", "api[2]"]);
    assert.deepEqual(errorsOf(ours("api", "rules:\n  - id: dup\n  - id: dup")), [
      'policy.yaml:8:11: duplicate rule id "dup" (also at policy.yaml:7:11); give one of them a different "id"',
    ]);
  });

  it("reject characters Envoy response details cannot carry", () => {
    assert.deepEqual(errorsOf(ours("api", "rules:\n  - id: has space")), [
      'policy.yaml:7:11: invalid rule id "has space": use 1 to 200 characters from A-Z a-z 0-9 . _ : / - [ ] # @ (it appears in Envoy response details, which allow no spaces)',
    ]);
  });
});

describe("defaults (Istio precedence)", () => {
  it("no ALLOW rule and no default: allow, kind 0", () => {
    const r = compileYaml(ours("d", "rules:\n  - action: deny\n    to: [{paths: [\"/admin\"]}]"));
    assert.deepEqual([r.ir.defaultAction, r.ir.defaultKind], ["allow", 0]);
  });

  it("default: deny with only DENY rules: deny, kind 1", () => {
    const r = compileYaml(ours("d", "default: deny\nrules:\n  - action: deny\n    to: [{paths: [\"/admin\"]}]"));
    assert.deepEqual([r.ir.defaultAction, r.ir.defaultKind], ["deny", 1]);
  });

  it("default: allow with only DENY rules: allow, kind 1", () => {
    const r = compileYaml(ours("d", "default: allow\nrules:\n  - action: audit"));
    assert.deepEqual([r.ir.defaultAction, r.ir.defaultKind], ["allow", 1]);
  });

  it("any ALLOW rule (ours or Istio) makes the default deny, kind 2", () => {
    const r1 = compileYaml(ours("d", "rules:\n  - from: [{ids: [\"*\"]}]"));
    assert.deepEqual([r1.ir.defaultAction, r1.ir.defaultKind], ["deny", 2]);
    const r2 = compileTexts([
      { file: "a.yaml", text: ours("d", "default: deny\nrules:\n  - action: deny") },
      { file: "b.yaml", text: istio("i", "rules: [{}]") },
    ]);
    assert.deepEqual([r2.ir.defaultAction, r2.ir.defaultKind], ["deny", 2]);
  });

  it("default: allow next to an ALLOW policy is an error that explains the precedence", () => {
    const errs = errorLines([
      { file: "a.yaml", text: ours("open", "default: allow") },
      { file: "b.yaml", text: istio("viewers", "rules: [{}]", { namespace: "shop" }) },
    ]);
    assert.deepEqual(errs, [
      'a.yaml:6:12: "default: allow" cannot hold: ALLOW policy "shop/viewers" (b.yaml:1:1) applies, and as in Istio a request that no ALLOW rule matches is then denied; remove the default, or add an allow rule without "from"/"to" to allow everything else',
    ]);
  });

  it("conflicting defaults across policies are an error", () => {
    const errs = errorLines([
      { file: "a.yaml", text: ours("one", "default: deny") },
      { file: "b.yaml", text: ours("two", "default: allow") },
    ]);
    assert.deepEqual(errs, [
      'b.yaml:6:12: conflicting defaults: "allow" here, "deny" in policy "one" at a.yaml:6:12; make them agree or keep one',
    ]);
  });

  it("conflicting schemas for one trust domain are an error", () => {
    const errs = errorLines([
      { file: "a.yaml", text: ours("one", "trustDomains:\n  td.example: {require: [app]}") },
      { file: "b.yaml", text: ours("two", "trustDomains:\n  td.example: {require: [app, env]}") },
    ]);
    assert.equal(errs.length, 1);
    assert.match(errs[0], /^b\.yaml:7:5: trust domain "td\.example" requires \[app, env\] here but \[app\] in policy "one" at a\.yaml:7:5/);
  });
});

describe("documents", () => {
  it("several documents per file and several files compile into one table in order", () => {
    const r = compileTexts([
      { file: "a.yaml", text: ours("a", "rules: [{id: a1}]") + "---\n" + ours("b", "rules: [{id: b1}]") },
      { file: "c.yaml", text: ours("c", "rules: [{id: c1}]") },
    ]);
    assert.deepEqual(r.ir.rules.map((x) => x.id), ["a1", "b1", "c1"]);
    assert.equal(r.ir.label, "a, b, c");
  });

  it("a Deployment in a policy file is an error saying what to pass", () => {
    const errs = errorsOf(ours("a", "rules: [{}]") + "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n");
    assert.deepEqual(errs, [
      'policy.yaml:9:7: cannot compile a document of kind "Deployment" (apiVersion "apps/v1"): spiffe-authz compiles AuthzPolicy (spiffe-authz.dev/v1) and AuthorizationPolicy (security.istio.io/v1, security.istio.io/v1beta1); pass only the files (or documents) that hold policies',
    ]);
  });

  it("condition (CEL) compiles into the table (tests/unit/conditions.test.ts has the rest)", () => {
    const r = compileYaml(ours("c", "rules:\n  - condition: request.method == 'GET'"));
    assert.equal(r.ir.rules[0].expr, 0);
    assert.ok(r.ir.expr !== null);
  });

  it("the example policies compile without warnings, alone and together", () => {
    const files = readdirSync("examples/policies").filter((f) => f.endsWith(".yaml")).map((f) => `examples/policies/${f}`);
    assert.ok(files.length >= 4);
    const inputs = files.map((f) => ({ file: f, text: readFileSync(f, "utf8") }));
    for (const input of inputs) {
      const r = compileTexts([input]);
      assert.ok(r.ruleCount > 0, input.file);
      assert.deepEqual(r.warnings, [], input.file);
    }
    assert.ok(compileTexts(inputs).ruleCount > 10);
  });
});
