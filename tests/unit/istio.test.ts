// Istio AuthorizationPolicy semantics: what compiled Istio policies decide, checked with the reference evaluator.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { compileYaml, decide, errorsOf, istio } from "./support/helpers.ts";

const sleep = "spiffe://cluster.local/ns/default/sa/sleep";
const other = "spiffe://cluster.local/ns/other/sa/web";
const foreign = "spiffe://partner.example/ns/default/sa/sleep";

describe("istio principals", () => {
  const policy = (principals: string) =>
    compileYaml(istio("p", `
      rules:
        - from:
            - source:
                principals: ${principals}
    `));

  it("an exact principal gets the spiffe:// scheme", () => {
    const r = policy(`["cluster.local/ns/default/sa/sleep"]`);
    assert.equal(decide(r, { peer: sleep }).decision, "allow");
    assert.equal(decide(r, { peer: other }).decision, "deny");
    assert.deepEqual(r.ir.rules[0].sources[0].predicates[0].patterns, [{ kind: "exact", value: sleep }]);
  });

  it("a prefix principal gets the scheme, a suffix principal compares the whole ID's end", () => {
    const r = policy(`["cluster.local/ns/default/*", "*/sa/web"]`);
    assert.deepEqual(r.ir.rules[0].sources[0].predicates[0].patterns, [
      { kind: "prefix", value: "spiffe://cluster.local/ns/default/" },
      { kind: "suffix", value: "/sa/web" },
    ]);
    assert.equal(decide(r, { peer: sleep }).decision, "allow");
    assert.equal(decide(r, { peer: other }).decision, "allow");
    assert.equal(decide(r, { peer: foreign }).decision, "deny");
  });

  it('"*" is any authenticated peer, never a caller without a certificate', () => {
    const r = policy(`["*"]`);
    assert.equal(decide(r, { peer: foreign }).decision, "allow");
    assert.equal(decide(r, {}).decision, "deny");
    assert.equal(decide(r, { peer: "spiffe://Bad/x" }).decision, "deny");
  });

  it("a principal written with the scheme is an error naming the fix", () => {
    const errs = errorsOf(istio("p", `
      rules:
        - from:
            - source:
                principals: ["spiffe://cluster.local/ns/a/sa/b"]
    `));
    assert.deepEqual(errs, [
      'policy.yaml:9:26: principal "spiffe://cluster.local/ns/a/sa/b" must not carry the scheme: Istio adds "spiffe://" itself; write "cluster.local/ns/a/sa/b"',
    ]);
  });

  it("notPrincipals in a DENY policy also denies callers without an identity (fail closed)", () => {
    const r = compileYaml(istio("deny-others", `
      action: DENY
      rules:
        - from:
            - source:
                notPrincipals: ["cluster.local/ns/default/sa/sleep"]
    `));
    assert.equal(decide(r, { peer: sleep }).decision, "allow");
    assert.equal(decide(r, { peer: other }).decision, "deny");
    assert.equal(decide(r, {}).decision, "deny");
    assert.equal(r.ir.defaultKind, 0);
  });
});

describe("istio namespaces, service accounts and trust domains", () => {
  it("namespaces match the ns attribute of the ID, with prefix forms", () => {
    const r = compileYaml(istio("ns", `
      rules:
        - from:
            - source:
                namespaces: ["default", "team-*"]
    `));
    const pred = r.ir.rules[0].sources[0].predicates[0];
    assert.equal(pred.field, "attribute");
    assert.equal(pred.arg, "ns");
    assert.equal(decide(r, { peer: sleep }).decision, "allow");
    assert.equal(decide(r, { peer: "spiffe://cluster.local/ns/team-a/sa/x" }).decision, "allow");
    assert.equal(decide(r, { peer: other }).decision, "deny");
  });

  it("notNamespaces excludes a namespace", () => {
    const r = compileYaml(istio("ns", `
      rules:
        - from:
            - source:
                notNamespaces: ["other"]
    `));
    assert.equal(decide(r, { peer: sleep }).decision, "allow");
    assert.equal(decide(r, { peer: other }).decision, "deny");
    // An ALLOW rule never admits a caller without identity, even through a negated identity field.
    assert.equal(decide(r, {}).decision, "deny");
  });

  it("serviceAccounts default to the policy's namespace and split across namespaces", () => {
    const r = compileYaml(istio("sa", `
      rules:
        - from:
            - source:
                serviceAccounts: ["sleep", "other/web"]
    `, { namespace: "default" }));
    assert.equal(r.ir.rules[0].sources.length, 2);
    assert.equal(decide(r, { peer: sleep }).decision, "allow");
    assert.equal(decide(r, { peer: other }).decision, "allow");
    assert.equal(decide(r, { peer: "spiffe://cluster.local/ns/other/sa/sleep" }).decision, "deny");
  });

  it("serviceAccounts with principals is rejected by the CRD's own rule", () => {
    const errs = errorsOf(istio("sa", `
      rules:
        - from:
            - source:
                serviceAccounts: ["a/b"]
                principals: ["x/ns/a/sa/b"]
    `));
    assert.equal(errs.length, 1);
    assert.match(errs[0], /^policy\.yaml:9:13: "source": cannot set serviceAccounts with namespaces or principals$/);
  });
});

describe("istio operations", () => {
  it("paths: exact, prefix, suffix, presence and templates", () => {
    const r = compileYaml(istio("paths", `
      rules:
        - to:
            - operation:
                paths: ["/exact", "/pre/*", "*.png", "/api/{*}/items/{**}"]
    `));
    const ok = (path: string) => decide(r, { path }).decision === "allow";
    assert.ok(ok("/exact"));
    assert.ok(ok("/exact?x=1"), "the query string is not part of the path");
    assert.ok(!ok("/exact/more"));
    assert.ok(ok("/pre/anything"));
    assert.ok(ok("/img/logo.png"));
    assert.ok(ok("/api/v1/items"));
    assert.ok(ok("/api/v1/items/a/b"));
    assert.ok(!ok("/api//items"), "{*} needs a non-empty segment");
    assert.ok(!ok("/api/v1/v2/items"));
  });

  it("rejects malformed templates as Istio does", () => {
    const errs = errorsOf(istio("t", `
      rules:
        - to:
            - operation:
                paths: ["/{**}/foo/{*}", "/foo/{*}.txt", "/*/baz/{*}", "/{id}/{*}"]
    `));
    assert.deepEqual(errs, [
      'policy.yaml:9:21: invalid path template "/{**}/foo/{*}" in "paths": "{**}" must be the last segment',
      'policy.yaml:9:38: invalid path template "/foo/{*}.txt" in "paths": segment "{*}.txt" mixes an operator with other characters; "{*}" and "{**}" must be whole segments',
      'policy.yaml:9:54: invalid path template "/*/baz/{*}" in "paths": segment "*" has a "*" outside "{*}" or "{**}"',
      'policy.yaml:9:68: invalid path template "/{id}/{*}" in "paths": named variables such as "{id}" are not supported; use "{*}" or "{**}"',
    ]);
  });

  it("hosts compare case-insensitively; ports are exact numbers; methods and notMethods", () => {
    const r = compileYaml(istio("ops", `
      rules:
        - to:
            - operation:
                hosts: ["Orders.Example.com", "*.internal"]
                ports: ["8443"]
                notMethods: ["DELETE"]
    `));
    const pred = r.ir.rules[0].operations[0].predicates[0];
    assert.equal(pred.ignoreCase, true);
    assert.deepEqual(pred.patterns.map((p) => p.value), ["orders.example.com", ".internal"]);
    const base = { host: "ORDERS.example.COM", port: 8443, method: "GET" };
    assert.equal(decide(r, base).decision, "allow");
    assert.equal(decide(r, { ...base, host: "db.internal" }).decision, "allow");
    assert.equal(decide(r, { ...base, port: 8080 }).decision, "deny");
    assert.equal(decide(r, { ...base, method: "DELETE" }).decision, "deny");
  });

  it("rejects bad ports and empty values", () => {
    const errs = errorsOf(istio("bad", `
      rules:
        - to:
            - operation:
                ports: ["80", "65536", "8*"]
                methods: [""]
    `));
    assert.deepEqual(errs, [
      'policy.yaml:9:27: invalid port "65536" in "ports": ports are numbers from 0 to 65535, without wildcards',
      'policy.yaml:9:36: invalid port "8*" in "ports": ports are numbers from 0 to 65535, without wildcards',
      'policy.yaml:10:23: empty value in "methods"; remove it or write "*" to match any present value',
    ]);
  });
});

describe("istio when conditions", () => {
  it("supports headers, source.principal, source.namespace, destination.port and connection.sni", () => {
    const r = compileYaml(istio("when", `
      rules:
        - when:
            - key: request.headers[X-Tenant]
              values: ["acme", "beta*"]
            - key: source.principal
              notValues: ["cluster.local/ns/other/*"]
            - key: source.namespace
              values: ["default"]
            - key: destination.port
              values: ["443"]
            - key: connection.sni
              values: ["*.example.com"]
    `));
    const req = { peer: sleep, headers: { "x-tenant": "acme" }, port: 443, sni: "api.example.com" };
    assert.equal(decide(r, req).decision, "allow");
    assert.equal(decide(r, { ...req, headers: { "X-TENANT": "beta-2" } }).decision, "allow");
    assert.equal(decide(r, { ...req, headers: {} }).decision, "deny");
    assert.equal(decide(r, { ...req, peer: "spiffe://cluster.local/ns/other/sa/x" }).decision, "deny");
    assert.equal(decide(r, { ...req, port: 80 }).decision, "deny");
    assert.equal(decide(r, { ...req, sni: "example.org" }).decision, "deny");
    assert.equal(r.ir.rules[0].conditions[0].arg, "x-tenant");
  });

  it("reports unsupported and unknown keys at the key", () => {
    const errs = errorsOf(istio("when", `
      rules:
        - when:
            - key: request.auth.claims[iss]
              values: ["https://issuer"]
            - key: source.ip
              values: ["10.0.0.1"]
            - key: request.header[x]
              values: ["a"]
            - key: destination.labels[app]
              values: ["a"]
            - key: request.headers[x]
    `));
    assert.deepEqual(errs, [
      'policy.yaml:8:16: key "request.auth.claims[iss]" is not supported yet; supported keys: "request.headers[<name>]", "source.principal", "source.namespace", "destination.port", "connection.sni"',
      'policy.yaml:10:16: key "source.ip" is not supported yet; supported keys: "request.headers[<name>]", "source.principal", "source.namespace", "destination.port", "connection.sni"',
      'policy.yaml:12:16: unknown condition key "request.header[x]"; did you mean "request.headers[<name>]"?',
      'policy.yaml:14:16: key "destination.labels[app]" is replaced by the policy\'s selector (as in Istio)',
      'policy.yaml:16:11: condition on "request.headers[x]" needs "values" or "notValues"',
    ]);
  });
});

describe("istio actions and rules", () => {
  it("spec: {} is an ALLOW policy that matches nothing: deny everything", () => {
    const r = compileYaml(istio("deny-all", "{}"));
    assert.equal(r.ruleCount, 0);
    assert.equal(r.ir.defaultAction, "deny");
    assert.equal(r.ir.defaultKind, 2);
    assert.equal(decide(r, { peer: sleep }).decision, "deny");
  });

  it("an empty rule matches everything", () => {
    const r = compileYaml(istio("allow-all", "rules: [{}]"));
    assert.equal(decide(r, {}).decision, "allow");
    assert.equal(decide(r, {}).rule, "policy[allow-all]-rule[0]");
  });

  it("a DENY policy without rules never matches (with a warning, since Istio rejects it)", () => {
    const r = compileYaml(istio("nothing", "action: DENY"));
    assert.equal(r.ruleCount, 0);
    assert.equal(r.ir.defaultKind, 0);
    assert.equal(decide(r, {}).decision, "allow");
    assert.equal(r.warnings.length, 1);
    assert.match(r.warnings[0].message, /DENY policy without "rules" never matches/);
  });

  it("DENY wins over ALLOW; AUDIT never decides", () => {
    const text = [
      istio("allow", "rules: [{}]", { namespace: "ns1" }),
      istio("deny", "action: DENY\nrules:\n  - to:\n      - operation:\n          paths: [\"/admin*\"]", { namespace: "ns1" }),
      istio("audit", "action: AUDIT\nrules: [{}]", { namespace: "ns1" }),
    ].join("---\n");
    const r = compileYaml(text);
    assert.deepEqual(decide(r, { path: "/admin/x" }), {
      decision: "deny",
      rule: "ns[ns1]-policy[deny]-rule[0]",
      shadow: ["ns[ns1]-policy[audit]-rule[0]"],
    });
    assert.equal(decide(r, { path: "/home" }).rule, "ns[ns1]-policy[allow]-rule[0]");
  });

  it("an AUDIT-only policy keeps the default allow", () => {
    const r = compileYaml(istio("audit", "action: AUDIT\nrules: [{}]"));
    assert.equal(r.ir.defaultKind, 0);
    assert.equal(r.ir.rules[0].action, "audit");
    assert.deepEqual(decide(r, {}), { decision: "allow", rule: null, shadow: ["policy[audit]-rule[0]"] });
  });

  it("CUSTOM is an error that says why", () => {
    const errs = errorsOf(istio("ext", "action: CUSTOM\nprovider: {name: opa}\nrules: [{}]"));
    assert.deepEqual(errs, [
      'policy.yaml:6:11: action "CUSTOM" is not supported: it hands the decision to an external authorizer (ext_authz provider), which this filter does not call; use ALLOW, DENY or AUDIT',
    ]);
  });

  it("the dry-run annotation makes rules shadow-only and does not turn the default to deny", () => {
    const r = compileYaml(istio("try", "rules:\n  - to:\n      - operation:\n          paths: [\"/x\"]", { annotations: 'istio.io/dry-run: "true"' }));
    assert.equal(r.ir.rules[0].dryRun, true);
    assert.equal(r.ir.defaultKind, 0);
    assert.deepEqual(decide(r, { path: "/x" }), { decision: "allow", rule: null, shadow: ["policy[try]-rule[0]"] });
    assert.deepEqual(decide(r, { path: "/y" }), { decision: "allow", rule: null, shadow: [] });
  });

  it("v1beta1 compiles to the same table as v1", () => {
    const spec = "rules:\n  - from:\n      - source:\n          principals: [\"cluster.local/ns/default/sa/sleep\"]";
    assert.equal(compileYaml(istio("p", spec, { version: "v1beta1" })).tableHash, compileYaml(istio("p", spec)).tableHash);
  });

  it("not-supported source fields and targetRefs are errors at their key", () => {
    const errs = errorsOf(istio("x", `
      targetRefs:
        - kind: Gateway
          group: gateway.networking.k8s.io
          name: gw
      rules:
        - from:
            - source:
                requestPrincipals: ["issuer/sub"]
                remoteIpBlocks: ["10.0.0.0/8"]
    `));
    assert.equal(errs.length, 3);
    assert.match(errs[0], /^policy\.yaml:6:3: "targetRefs" is not supported/);
    assert.match(errs[1], /^policy\.yaml:13:13: "requestPrincipals" is not supported: request principals come from JWTs/);
    assert.match(errs[2], /^policy\.yaml:14:13: "remoteIpBlocks" is not supported/);
  });
});

describe("workload selection", () => {
  const text = [
    istio("mesh-wide", "action: DENY\nrules:\n  - to:\n      - operation:\n          paths: [\"/debug*\"]", { namespace: "istio-system" }),
    istio("orders-only", "selector:\n  matchLabels: {app: orders}\nrules: [{}]", { namespace: "shop" }),
    istio("payments-only", "selector:\n  matchLabels: {app: payments}\nrules: [{}]", { namespace: "shop" }),
    istio("other-ns", "rules: [{}]", { namespace: "elsewhere" }),
    istio("whole-ns", "action: AUDIT\nrules: [{}]", { namespace: "shop" }),
  ].join("---\n");

  it("keeps root-namespace policies and matching ones of the workload's namespace", () => {
    const r = compileYaml(text, { namespace: "shop", labels: { app: "orders", version: "v1" } });
    assert.deepEqual(
      r.ir.rules.map((x) => x.id),
      ["ns[istio-system]-policy[mesh-wide]-rule[0]", "ns[shop]-policy[orders-only]-rule[0]", "ns[shop]-policy[whole-ns]-rule[0]"],
    );
    assert.deepEqual(
      r.warnings.map((w) => `${w.line}: ${w.message.slice(0, 40)}`),
      ['23: policy "shop/payments-only" dropped: its', '33: policy "elsewhere/other-ns" dropped: it '],
    );
  });

  it("honours --root-namespace", () => {
    const r = compileYaml(text, { namespace: "shop", labels: { app: "payments" }, rootNamespace: "mesh-root" });
    assert.deepEqual(
      r.ir.rules.map((x) => x.id),
      ["ns[shop]-policy[payments-only]-rule[0]", "ns[shop]-policy[whole-ns]-rule[0]"],
    );
  });

  it("without a namespace every policy applies", () => {
    assert.equal(compileYaml(text).ruleCount, 5);
  });
});
