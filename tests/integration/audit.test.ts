// The audit trail in a real Envoy 1.40: every decision's record (filter state `wasm.spiffe_authz`, read by the
// shipped JSON access log through Envoy's CEL formatter) carries the peer, decision, rule and reason code that
// `spiffe-authz check --json` gives for the same request; allowed requests are sampled as the policy says;
// `/stats/prometheus` shows the decision counters with labels, adding up to the requests sent; deny rules answer
// with their own status, body, headers and the request id.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Checker } from "../../src/check/checker.ts";
import type { CheckRequest, CheckResult } from "../../src/check/checker.ts";
import { compileTexts } from "../../src/compiler/index.ts";
import { specialClients } from "../../src/envoy/pki.ts";
import type { AccessLogEntry } from "../../src/envoy/render.ts";
import { grpc, https } from "../support/clients.ts";
import { eventually, explainFailure, startAuthzEnvoy } from "../support/envoy-fixture.ts";
import type { AuthzEnvoy } from "../support/envoy-fixture.ts";

const td = "audit.example.com";
const ids = { web: `spiffe://${td}/app/web`, legacy: `spiffe://${td}/app/legacy`, batch: `spiffe://${td}/app/batch` };

const policy = `apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata: {name: audit}
spec:
  audit: {allowSampleRate: 0}
  denyResponse: {status: 401, body: "who are you?\\n", requestId: true}
  rules:
    - id: hide-admin
      action: deny
      to: [{paths: ["/admin/*"]}]
      denyResponse: {status: 404, body: "not found\\n", headers: {x-deny: hidden}, requestId: true, grpcStatus: 5}
      metrics: true
    - id: dry-legacy
      action: deny
      dryRun: true
      from: [{attributes: {app: legacy}}]
    - id: audit-reads
      action: audit
      to: [{methods: [GET]}]
    - id: web.reads
      from: [{attributes: {app: [web, legacy]}}]
      to: [{methods: [GET]}]
      metrics: true
      recordAllows: true
    - id: batch-jobs
      from: [{attributes: {app: batch}}]
`;

interface Case {
  name: string;
  client: string | null;
  path: string;
  /** the request as `check` takes it */
  check: CheckRequest;
  recorded: boolean;
}

const cases: Case[] = [
  { name: "allowed, always recorded (recordAllows)", client: "web", path: "/r/1", check: { peer: ids.web }, recorded: true },
  { name: "denied by a rule with its own reply", client: "web", path: "/admin/1", check: { peer: ids.web }, recorded: true },
  { name: "no client certificate", client: null, path: "/r/2", check: {}, recorded: true },
  { name: "a certificate without a URI SAN", client: specialClients.noUriSan, path: "/r/3", check: { peer: [] }, recorded: true },
  { name: "an invalid SPIFFE ID", client: specialClients.invalidSpiffeId, path: "/r/4", check: { peer: "spiffe://Prod.Example.com/app//x/" }, recorded: true },
  { name: "a dry-run rule matched", client: "legacy", path: "/r/5", check: { peer: ids.legacy }, recorded: true },
  { name: "allowed, sampled out (rate 0)", client: "batch", path: "/r/6", check: { peer: ids.batch }, recorded: false },
];

describe("decision records, metrics and deny replies in a real Envoy", () => {
  let env: AuthzEnvoy;
  let checker: Checker;
  const lines = new Map<string, AccessLogEntry>();

  before(async () => {
    env = await startAuthzEnvoy({
      variant: "optional-client-cert",
      trustDomain: td,
      clients: Object.entries(ids).map(([name, uri]) => ({ name, uri })),
      policies: [{ file: "audit.yaml", text: policy }],
    });
    checker = await Checker.create(compileTexts([{ file: "audit.yaml", text: policy }]).config);
    for (const c of cases) {
      await https({ port: env.port, ca: env.pki.ca.cert, client: c.client === null ? null : env.pki.clients[c.client], path: c.path });
      lines.set(c.path, await env.envoy.waitForAccessLog((e) => e.path === c.path));
    }
  });
  after(async () => {
    await env?.close();
  });

  for (const c of cases) {
    test(`${c.name}: the access log's record says what check says`, () =>
      explainFailure(env.envoy, async () => {
        const want: CheckResult = checker.check({ ...c.check, path: c.path });
        const line = lines.get(c.path)!;
        assert.equal(line.status, want.status);
        if (!c.recorded) {
          assert.equal(line.authz, null, "a sampled-out allow leaves no record");
          assert.equal(want.decision, "allow");
          return;
        }
        assert.ok(line.authz, `no record in ${JSON.stringify(line)}`);
        assert.equal(line.authz.decision, want.decision);
        assert.equal(line.authz.rule, want.rule);
        assert.equal(line.authz.reason, want.reasonCode);
        assert.equal(line.authz.peer, want.peer.id);
        assert.equal(line.authz.trustDomain, want.peer.trustDomain);
        assert.equal(line.authz.table, want.tableHash);
        assert.equal(line.authz.audit, want.audit[0] ?? null);
        assert.equal(line.authz.dryRun, want.dryRun[0] ?? null);
        assert.match(line.requestId ?? "", /^[0-9a-f-]{36}$/);
      }));
  }

  test("the reason codes tell the identity problems apart", () => {
    const reasons = cases.map((c) => lines.get(c.path)!.authz?.reason ?? null);
    assert.deepEqual(reasons, ["allow_rule", "deny_rule", "no_client_certificate", "no_uri_san", "invalid_spiffe_id", "allow_rule", null]);
    assert.equal(lines.get("/r/5")!.authz?.dryRun, "deny:dry-legacy");
    assert.equal(lines.get("/admin/1")!.details, "spiffe_authz_denied[hide-admin]");
    assert.equal(lines.get("/r/3")!.details, "spiffe_authz_denied[default:no_uri_san]");
  });

  test("/stats/prometheus: labelled decision counters that add up to the requests decided", () =>
    explainFailure(env.envoy, async () => {
      const text = await env.envoy.admin("/stats/prometheus");
      const samples = new Map<string, number>();
      for (const m of text.matchAll(/^(spiffe_authz_(?:rule_)?requests)\{([^}]*)\} (\d+)$/gm)) samples.set(`${m[1]}{${m[2]}}`, Number(m[3]));
      assert.equal(samples.get('spiffe_authz_requests{decision="allow",reason="allow_rule"}'), 3);
      assert.equal(samples.get('spiffe_authz_requests{decision="deny",reason="deny_rule"}'), 1);
      assert.equal(samples.get('spiffe_authz_requests{decision="deny",reason="no_client_certificate"}'), 1);
      assert.equal(samples.get('spiffe_authz_requests{decision="deny",reason="no_uri_san"}'), 1);
      assert.equal(samples.get('spiffe_authz_requests{decision="deny",reason="invalid_spiffe_id"}'), 1);
      let total = 0;
      for (const [k, v] of samples) if (k.startsWith("spiffe_authz_requests{")) total += v;
      assert.equal(total, cases.length);
      // Per-rule counters only for the rules that ask (metrics: true).
      assert.equal(samples.get('spiffe_authz_rule_requests{rule="web.reads",decision="allow"}'), 2);
      assert.equal(samples.get('spiffe_authz_rule_requests{rule="hide-admin",decision="deny"}'), 1);
      assert.equal([...samples.keys()].some((k) => k.includes('rule="batch-jobs"')), false);
    }));

  test("deny replies: the rule's status, body, headers and request id; the default reply for the rest", () =>
    explainFailure(env.envoy, async () => {
      const hidden = await https({ port: env.port, ca: env.pki.ca.cert, client: env.pki.clients.web, path: "/admin/2" });
      assert.equal(hidden.status, 404);
      assert.equal(hidden.body, "not found\n");
      assert.equal(hidden.headers["x-deny"], "hidden");
      const line = await env.envoy.waitForAccessLog((e) => e.path === "/admin/2");
      assert.equal(hidden.headers["x-request-id"], line.requestId, "the caller's reply names the log line");
      const anonymous = await https({ port: env.port, ca: env.pki.ca.cert, client: null, path: "/r/7" });
      assert.equal(anonymous.status, 401);
      assert.equal(anonymous.body, "who are you?\n");
      assert.match(String(anonymous.headers["x-request-id"]), /^[0-9a-f-]{36}$/);
    }));

  test("a gRPC call denied by the rule gets its grpc-status in a trailers-only reply", () =>
    explainFailure(env.envoy, async () => {
      const r = await grpc({ port: env.port, ca: env.pki.ca.cert, client: env.pki.clients.web, path: "/admin/pkg.Svc/Get" });
      assert.equal(r.headers[":status"], 200);
      assert.equal(r.grpcStatus, 5);
      assert.equal(r.trailersOnly, true);
      const want = checker.check({ peer: ids.web, method: "POST", path: "/admin/pkg.Svc/Get", headers: { "content-type": "application/grpc" } });
      assert.deepEqual([want.status, want.grpcStatus, want.rule], [200, 5, "hide-admin"]);
    }));
});

describe("the record in an access log shaped as istiod writes it (meshConfig envoyFileAccessLog with labels)", () => {
  let env: AuthzEnvoy;
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "spiffe-authz-istio-log-"));
    env = await startAuthzEnvoy({
      variant: "optional-client-cert",
      trustDomain: td,
      clients: Object.entries(ids).map(([name, uri]) => ({ name, uri })),
      policies: [{ file: "audit.yaml", text: policy }],
      accessLog: { istioFile: join(dir, "access.log") },
    });
  });
  after(async () => {
    await env?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("no formatter extension: %CEL% and %FILTER_STATE(...:TYPED)% print the record", () =>
    explainFailure(env.envoy, async () => {
      await https({ port: env.port, ca: env.pki.ca.cert, client: env.pki.clients.web, path: "/r/1" });
      await https({ port: env.port, ca: env.pki.ca.cert, client: env.pki.clients.legacy, path: "/admin/1" });
      let entries: Record<string, unknown>[] = [];
      await eventually("two access-log lines", async () => {
        const text = await readFile(join(dir, "access.log"), "utf8").catch(() => "");
        entries = text.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
        return entries.length === 2;
      });
      const [allowed, denied] = entries;
      assert.deepEqual([allowed.authz_decision, allowed.authz_reason, allowed.response_code], ["allow", "allow_rule", 200]);
      assert.deepEqual([denied.authz_decision, denied.authz_reason, denied.response_code], ["deny", "deny_rule", 404]);
      const record = denied.authz_record as { "@type": string; value: Record<string, string> };
      assert.equal(record["@type"], "type.googleapis.com/google.protobuf.Struct");
      assert.equal(record.value.rule, "hide-admin");
      assert.equal(record.value.peer, ids.legacy);
      assert.equal(record.value.trust_domain, td);
      assert.equal(record.value.dry_run, "deny:dry-legacy");
      assert.equal(denied.response_code_details, "spiffe_authz_denied[hide-admin]");
      assert.match(String(denied.request_id), /^[0-9a-f-]{36}$/);
    }));
});
