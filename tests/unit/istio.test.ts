// Istio AuthorizationPolicy semantics: what compiled Istio policies decide, checked with the reference evaluator.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { compileTexts } from "../../src/compiler/index.ts";
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

  it("a prefix principal gets the scheme; a suffix principal is istiod's regex spiffe://.*<suffix>", () => {
    const r = policy(`["cluster.local/ns/default/*", "*/sa/web"]`);
    assert.deepEqual(r.ir.rules[0].sources[0].predicates[0].patterns, [
      { kind: "prefix", value: "spiffe://cluster.local/ns/default/" },
      { kind: "glob", value: "spiffe://\\*/sa/web" },
    ]);
    assert.equal(decide(r, { peer: "https://x/sa/web" }).decision, "deny", "the scheme is part of istiod's regex");
    assert.equal(decide(r, { peer: sleep }).decision, "allow");
    assert.equal(decide(r, { peer: other }).decision, "allow");
    assert.equal(decide(r, { peer: foreign }).decision, "deny");
  });

  it('"*" is any certificate name Envoy compares (".+"), never a caller without a certificate', () => {
    const r = policy(`["*"]`);
    assert.equal(decide(r, { peer: foreign }).decision, "allow");
    assert.equal(decide(r, {}).decision, "deny");
    // Envoy RBAC compares the URI SAN as a string, valid SPIFFE ID or not, then the DNS SAN, then the subject.
    assert.equal(decide(r, { peer: "spiffe://Bad/x" }).decision, "allow");
    assert.equal(decide(r, { peerDns: "web.example" }).decision, "allow");
    assert.equal(decide(r, { peerSubject: "CN=web" }).decision, "allow");
  });

  it("a principal that can never match a valid SPIFFE ID compiles with a warning at its position, as istiod accepts it", () => {
    const r = policy(`["spiffe://cluster.local/ns/a/sa/b"]`);
    assert.deepEqual(r.warnings.map((w) => `${w.line}:${w.col}`), ["9:26"]);
    assert.match(r.warnings[0].message, /can never match a valid SPIFFE ID/);
    assert.equal(decide(r, { peer: "spiffe://cluster.local/ns/a/sa/b" }).decision, "deny");
    assert.equal(decide(r, { peer: "spiffe://spiffe://cluster.local/ns/a/sa/b" }).decision, "allow");
  });

  it("namespaces, service accounts and trust domains no SPIFFE ID can hold are warnings, not errors", () => {
    const r = compileYaml(istio("p", "rules:\n  - from:\n      - source:\n          namespaces: [\"x?y\", \"ok*\"]\n          trustDomains: [\"TD\"]", { namespace: "foo" }));
    assert.deepEqual(r.warnings.map((w) => `${w.line}:${w.col}`), ["10:26", "11:28"]);
    assert.equal(decide(r, { peer: "spiffe://x/ns/x?y/sa/a" }).decision, "deny", "TD never matches a lower-case trust domain");
  });

  it("trust-domain aliases expand principals as istiod does (cluster.local stands for the mesh's trust domain)", () => {
    const r = compileTexts(
      [{ file: "policy.yaml", text: istio("p", "rules:\n  - from:\n      - source:\n          principals: [\"cluster.local/ns/default/sa/sleep\", \"partner.example/ns/a/sa/b\"]") }],
      undefined,
      { trustDomain: "new.td", trustDomainAliases: ["old.td"] },
    );
    assert.deepEqual(r.ir.rules[0].sources[0].predicates[0].patterns.map((p) => p.value), [
      "spiffe://new.td/ns/default/sa/sleep", "spiffe://old.td/ns/default/sa/sleep", "spiffe://partner.example/ns/a/sa/b",
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
  it("namespaces are istiod's regex .*/ns/<ns>/.* over the certificate's names, \"*\" inside included", () => {
    const r = compileYaml(istio("ns", `
      rules:
        - from:
            - source:
                namespaces: ["default", "team-*"]
    `));
    const pred = r.ir.rules[0].sources[0].predicates[0];
    assert.equal(pred.field, "peerName");
    assert.equal(decide(r, { peer: sleep }).decision, "allow");
    assert.equal(decide(r, { peer: "spiffe://cluster.local/ns/team-a/sa/x" }).decision, "allow");
    assert.equal(decide(r, { peer: other }).decision, "deny");
    // Anywhere in the ID, and only with something after the namespace.
    assert.equal(decide(r, { peer: "spiffe://cluster.local/x/ns/default/y" }).decision, "allow");
    assert.equal(decide(r, { peer: "spiffe://cluster.local/ns/default" }).decision, "deny");
    const any = compileYaml(istio("ns", "rules:\n  - from:\n      - source:\n          namespaces: [\"*\"]"));
    assert.equal(decide(any, { peer: "spiffe://cluster.local/ns/foox" }).decision, "deny");
    assert.equal(decide(any, { peer: "spiffe://cluster.local/ns/foo/sa/a" }).decision, "allow");
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
    // As in Envoy RBAC, not_id of a name match: a caller without a certificate is not in "other".
    assert.equal(decide(r, {}).decision, "allow");
  });

  it("serviceAccounts default to the policy's namespace; istiod's regex allows segments around them", () => {
    const r = compileYaml(istio("sa", `
      rules:
        - from:
            - source:
                serviceAccounts: ["sleep", "other/web"]
    `, { namespace: "default" }));
    assert.equal(r.ir.rules[0].sources.length, 1);
    assert.equal(decide(r, { peer: sleep }).decision, "allow");
    assert.equal(decide(r, { peer: other }).decision, "allow");
    assert.equal(decide(r, { peer: "spiffe://cluster.local/ns/other/sa/sleep" }).decision, "deny");
    assert.equal(decide(r, { peer: "spiffe://cluster.local/ns/default/x/sa/sleep/y" }).decision, "allow");
    assert.equal(decide(r, { peer: "spiffe://cluster.local/ns/default/sa/sleepy" }).decision, "deny");
    const not = compileYaml(istio("sa", "rules:\n  - from:\n      - source:\n          notServiceAccounts: [\"sleep\"]", { namespace: "default" }));
    assert.equal(decide(not, { peer: sleep }).decision, "deny");
    assert.equal(decide(not, { peer: other }).decision, "allow");
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
  it("paths: exact, prefix, suffix, presence and templates as Envoy 1.40's uri_template matches them", () => {
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
    assert.ok(ok("/api/v1/items/"), "{**} is zero or more characters after the slash");
    assert.ok(!ok("/api/v1/items"), "{**} as the last segment needs the slash before it");
    assert.ok(ok("/api/v1/items/a/b"));
    assert.ok(!ok("/api//items/"), "{*} needs a non-empty segment");
    assert.ok(!ok("/api/v1/v2/items/"));
    assert.ok(!ok("/api/a\"b/items/"), "{*} matches RFC 3986 pchars only");
  });

  it("{**} may be followed by literal segments", () => {
    const r = compileYaml(istio("paths", "rules:\n  - to:\n      - operation:\n          paths: [\"/{**}/edit\"]"));
    const ok = (path: string) => decide(r, { path }).decision === "allow";
    assert.ok(ok("/a/b/edit"));
    assert.ok(ok("//edit"));
    assert.ok(!ok("/edit"));
  });

  it("rejects malformed templates as Istio does", () => {
    const errs = errorsOf(istio("t", `
      rules:
        - to:
            - operation:
                paths: ["/{**}/foo/{*}", "/foo/{*}.txt", "/*/baz/{*}", "/{id}/{*}"]
    `));
    assert.deepEqual(errs, [
      'policy.yaml:9:21: invalid path template "/{**}/foo/{*}" in "paths": "{**}" must not be followed by another "{*}" or "{**}" (Istio rejects it)',
      'policy.yaml:9:38: invalid path template "/foo/{*}.txt" in "paths": segment "{*}.txt" has "{" or "}" outside a whole "{*}" or "{**}" (Istio rejects it)',
      'policy.yaml:9:54: invalid path template "/*/baz/{*}" in "paths": segment "*" is not a valid literal (RFC 3986 pchar) (Istio rejects it)',
      'policy.yaml:9:68: invalid path template "/{id}/{*}" in "paths": segment "{id}" has "{" or "}" outside a whole "{*}" or "{**}" (Istio rejects it)',
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

  it("reports refused, unknown and invalid keys at the key, as istiod's validation does", () => {
    const errs = errorsOf(istio("when", `
      rules:
        - when:
            - key: experimental.envoy.filters.a.b[c]
              values: ["x"]
            - key: source.ip
              values: ["10.0.0.1"]
            - key: request.header[x]
              values: ["a"]
            - key: destination.labels[app]
              values: ["a"]
            - key: request.headers[x]
    `));
    assert.equal(errs.length, 5);
    assert.match(errs[0], /^policy\.yaml:8:16: key "experimental\.envoy\.filters\.a\.b\[c\]" is not supported/);
    assert.match(errs[1], /^policy\.yaml:10:16: key "source\.ip" is not supported: Envoy 1\.40 does not show a wasm filter the direct peer address/);
    assert.match(errs[2], /^policy\.yaml:12:16: unknown condition key "request\.header\[x\]" \(Istio rejects it\)/);
    assert.equal(errs[3], 'policy.yaml:14:16: key "destination.labels[app]" is replaced by the policy\'s selector (Istio rejects it)');
    assert.equal(errs[4], 'policy.yaml:16:11: condition on "request.headers[x]" needs at least one value in "values" or "notValues" (Istio rejects it)');
  });

  it("JWT keys read the payload jwt_authn left under `payload`: principal, audiences, presenter, nested and list claims", () => {
    const r = compileYaml(istio("jwt", `
      rules:
        - when:
            - key: request.auth.principal
              values: ["https://issuer.example/alice", "*/bob"]
            - key: request.auth.audiences
              values: ["api"]
            - key: request.auth.claims[org][team]
              values: ["dev*"]
    `));
    const jwt = { iss: "https://issuer.example", sub: "alice", aud: ["web", "api"], org: { team: "devops" } };
    assert.equal(decide(r, { jwtPayload: jwt }).decision, "allow");
    assert.equal(decide(r, { jwtPayload: { ...jwt, iss: "https://other", sub: "bob" } }).decision, "allow");
    assert.equal(decide(r, { jwtPayload: { ...jwt, sub: "mallory" } }).decision, "deny");
    assert.equal(decide(r, { jwtPayload: { ...jwt, aud: "api" } }).decision, "allow", "a string claim matches too");
    assert.equal(decide(r, { jwtPayload: { ...jwt, org: { team: ["devops"] } } }).decision, "allow");
    assert.equal(decide(r, { jwtPayload: { ...jwt, org: "devops" } }).decision, "deny");
    assert.equal(decide(r, {}).decision, "deny");
  });

  it("remote.ip and remoteIpBlocks compare the address after x-forwarded-for handling; ipBlocks are refused", () => {
    const r = compileYaml(istio("ip", "rules:\n  - from:\n      - source:\n          remoteIpBlocks: [\"10.0.0.0/8\", \"2001:db8::/32\"]"));
    assert.equal(decide(r, { remoteAddress: "10.1.2.3:0" }).decision, "allow");
    assert.equal(decide(r, { remoteAddress: "[2001:db8::5]:1" }).decision, "allow");
    assert.equal(decide(r, { remoteAddress: "[::ffff:10.1.2.3]:1" }).decision, "deny", "families must be equal, as in Envoy");
    assert.equal(decide(r, { remoteAddress: "11.0.0.1:0" }).decision, "deny");
    const errs = errorsOf(istio("ip", "rules:\n  - from:\n      - source:\n          ipBlocks: [\"10.0.0.0/8\"]"));
    assert.match(errs[0], /"ipBlocks" is not supported: Envoy 1\.40 does not show a wasm filter the direct peer address/);
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

  it("refused source fields and targetRefs are errors at their key", () => {
    const errs = errorsOf(istio("x", `
      targetRefs:
        - kind: Gateway
          group: gateway.networking.k8s.io
          name: gw
      rules:
        - from:
            - source:
                notIpBlocks: ["10.0.0.0/8"]
    `));
    assert.equal(errs.length, 2);
    assert.match(errs[0], /^policy\.yaml:6:3: "targetRefs" is not supported/);
    assert.match(errs[1], /^policy\.yaml:13:13: "notIpBlocks" is not supported: Envoy 1\.40 does not show a wasm filter/);
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
