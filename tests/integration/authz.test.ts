// The filter in a real Envoy 1.40 behind the `mtls` listener: real certificates, a table from the real compiler,
// the real upstream. Every deny is checked on three sides: the client's response, Envoy's access log (response
// code details name the rule) and the upstream (it never saw the request).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { explainFailure, startAuthzEnvoy } from "../support/envoy-fixture.ts";
import type { AuthzEnvoy } from "../support/envoy-fixture.ts";
import { grpc, https } from "../support/clients.ts";
import { specialClients } from "../../src/envoy/pki.ts";
import type { EchoBody } from "../../dev/envoy/upstream.ts";

const td = "prod.example.com";
const ids = {
  frontend: `spiffe://${td}/app/frontend/env/prod`,
  legacy: `spiffe://${td}/app/legacy/env/prod`,
  reports: `spiffe://${td}/app/reports/env/prod`,
};

const policy = `
apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata:
  name: orders-integration
spec:
  default: deny
  rules:
    - id: deny-legacy
      action: deny
      from:
        - attributes: {app: legacy}
    - id: frontend-reads-orders
      action: allow
      from:
        - attributes: {app: frontend}
      to:
        - methods: [GET]
          paths: ["/orders/*"]
    - id: frontend-grpc-get-order
      action: allow
      from:
        - attributes: {app: frontend}
      to:
        - grpc: {service: shop.orders.v1.Orders, methods: [GetOrder]}
`;

const deniedBody = "spiffe-authz: access denied\n";
const grpcPath = "/shop.orders.v1.Orders/GetOrder";

describe("mtls listener with the filter", () => {
  let env: AuthzEnvoy;

  before(async () => {
    env = await startAuthzEnvoy({
      variant: "mtls",
      trustDomain: td,
      clients: Object.entries(ids).map(([name, uri]) => ({ name, uri })),
      policies: [{ file: "orders-integration.yaml", text: policy }],
    });
  });
  after(async () => {
    await env?.close();
  });

  const client = (name: string) => env.pki.clients[name];
  const get = (name: string | null, path: string, method = "GET") =>
    https({ port: env.port, ca: env.pki.ca.cert, client: name === null ? null : client(name), method, path });
  /** Requests the upstream saw whose verified peer (x-forwarded-client-cert URI) is `id`. */
  const seenFrom = (id: string) =>
    env.upstream.requests.filter((r) => String(r.headers["x-forwarded-client-cert"] ?? "").includes(`URI=${id}`));

  test("allows a request a rule allows and forwards it with the verified peer", () =>
    explainFailure(env.envoy, async () => {
      const res = await get("frontend", "/orders/7");
      assert.equal(res.status, 200);
      const echo = JSON.parse(res.body) as EchoBody;
      assert.equal(echo.path, "/orders/7");
      assert.match(String(echo.headers["x-forwarded-client-cert"]), new RegExp(`URI=${ids.frontend}$`));
      const line = await env.envoy.waitForAccessLog((e) => e.path === "/orders/7" && e.peer === ids.frontend);
      assert.equal(line.status, 200);
      assert.equal(line.details, "via_upstream");
      assert.notEqual(line.upstream, null);
    }));

  test("denies by a DENY rule: 403, short body, the rule in the response details, upstream untouched", () =>
    explainFailure(env.envoy, async () => {
      const res = await get("legacy", "/orders/8");
      assert.equal(res.status, 403);
      assert.equal(res.body, deniedBody);
      const line = await env.envoy.waitForAccessLog((e) => e.path === "/orders/8");
      assert.equal(line.peer, ids.legacy);
      assert.equal(line.status, 403);
      assert.equal(line.details, "spiffe_authz_denied[deny-legacy]");
      assert.equal(line.upstream, null);
      assert.deepEqual(seenFrom(ids.legacy), []);
    }));

  test("denies by default an identity no rule allows, and a method the allowing rule does not cover", () =>
    explainFailure(env.envoy, async () => {
      const reports = await get("reports", "/orders/9");
      assert.equal(reports.status, 403);
      assert.equal(reports.body, deniedBody);
      const post = await get("frontend", "/orders/10", "POST");
      assert.equal(post.status, 403);
      for (const path of ["/orders/9", "/orders/10"]) {
        const line = await env.envoy.waitForAccessLog((e) => e.path === path);
        assert.equal(line.details, "spiffe_authz_denied[default]");
        assert.equal(line.upstream, null);
      }
      assert.deepEqual(seenFrom(ids.reports), []);
      assert.equal(env.upstream.requests.some((r) => r.path === "/orders/10"), false);
    }));

  test("decides on the normalized path: dot segments and repeated slashes cannot dodge a rule", () =>
    explainFailure(env.envoy, async () => {
      // normalize_path + merge_slashes in the listener: the filter and the upstream see the same, resolved path.
      const ok = await get("frontend", "/static/..//orders/15");
      assert.equal(ok.status, 200);
      assert.equal((JSON.parse(ok.body) as EchoBody).path, "/orders/15");
      const traversal = await get("frontend", "/orders/15/../../admin");
      assert.equal(traversal.status, 403);
      assert.equal(env.upstream.requests.some((r) => r.path.includes("admin")), false);
    }));

  test("denies a certificate whose URI SAN is not a valid SPIFFE ID", () =>
    explainFailure(env.envoy, async () => {
      const res = await get(specialClients.invalidSpiffeId, "/orders/11");
      assert.equal(res.status, 403);
      assert.equal(res.body, deniedBody);
      const line = await env.envoy.waitForAccessLog((e) => e.path === "/orders/11");
      // Envoy reports the SAN as presented; the filter refused to read it as an identity.
      assert.equal(line.peer, "spiffe://Prod.Example.com/app//x/");
      assert.equal(line.details, "spiffe_authz_denied[default:invalid_spiffe_id]");
      assert.equal(env.upstream.requests.some((r) => r.path === "/orders/11"), false);
    }));

  test("denies a certificate without a URI SAN", () =>
    explainFailure(env.envoy, async () => {
      const res = await get(specialClients.noUriSan, "/orders/12");
      assert.equal(res.status, 403);
      const line = await env.envoy.waitForAccessLog((e) => e.path === "/orders/12");
      assert.equal(line.peer, null);
      assert.equal(line.details, "spiffe_authz_denied[default:no_uri_san]");
    }));

  test("denies gRPC with a trailers-only grpc-status 7 over HTTP/2", () =>
    explainFailure(env.envoy, async () => {
      const before = env.upstream.requests.length;
      const denied = await grpc({ port: env.port, ca: env.pki.ca.cert, client: client("legacy"), path: grpcPath });
      assert.equal(denied.headers[":status"], 200);
      assert.equal(denied.grpcStatus, 7);
      assert.equal(denied.trailersOnly, true, `expected a trailers-only reply, got ${JSON.stringify(denied)}`);
      assert.ok(denied.grpcMessage !== null && denied.grpcMessage.length > 0, "grpc-message is set");
      const byDefault = await grpc({ port: env.port, ca: env.pki.ca.cert, client: client("reports"), path: grpcPath });
      assert.equal(byDefault.grpcStatus, 7);
      assert.equal(byDefault.trailersOnly, true);
      await env.envoy.waitForAccessLog((e) => e.path === grpcPath && e.peer === ids.reports);
      const legacyLine = await env.envoy.waitForAccessLog((e) => e.path === grpcPath && e.peer === ids.legacy);
      assert.equal(legacyLine.protocol, "HTTP/2");
      assert.equal(legacyLine.grpcStatus, 7);
      assert.equal(legacyLine.details, "spiffe_authz_denied[deny-legacy]");
      assert.equal(env.upstream.requests.length, before, "the upstream saw no denied gRPC call");
    }));

  test("routes an allowed gRPC call to the HTTP/2 upstream", () =>
    explainFailure(env.envoy, async () => {
      const res = await grpc({ port: env.port, ca: env.pki.ca.cert, client: client("frontend"), path: grpcPath });
      assert.equal(res.grpcStatus, 0);
      assert.equal(res.trailersOnly, false);
      const seen = env.upstream.requests.find((r) => r.path === grpcPath);
      assert.equal(seen?.listener, "h2c");
      assert.equal(seen?.method, "POST");
    }));

  test("counts decisions by decision and reason code (wasmcustom.spiffe_authz.decision.<d>.reason.<code>.requests)", () =>
    explainFailure(env.envoy, async () => {
      const read = async () => {
        const stats = await env.envoy.stats("wasmcustom.spiffe_authz.decision.");
        let allowed = 0;
        let denied = 0;
        for (const [name, v] of stats) {
          if (name.startsWith("wasmcustom.spiffe_authz.decision.allow.")) allowed += v;
          if (name.startsWith("wasmcustom.spiffe_authz.decision.deny.")) denied += v;
        }
        return { allowed, denied };
      };
      const start = await read();
      assert.ok(start.allowed > 0 && start.denied > 0, `earlier tests were counted: ${JSON.stringify(start)}`);
      for (let i = 0; i < 2; i++) assert.equal((await get("frontend", `/orders/m${i}`)).status, 200);
      for (let i = 0; i < 3; i++) assert.equal((await get("legacy", `/orders/m${i}`)).status, 403);
      const end = await read();
      assert.deepEqual({ allowed: end.allowed - start.allowed, denied: end.denied - start.denied }, { allowed: 2, denied: 3 });
    }));

  test("rejects a client certificate from another CA at the TLS layer", () =>
    explainFailure(env.envoy, async () => {
      const statName = `listener.127.0.0.1_${env.port}.ssl.fail_verify_error`;
      const failuresBefore = (await env.envoy.stat(statName)) ?? 0;
      await assert.rejects(get(specialClients.otherCa, "/orders/13"));
      assert.equal((await env.envoy.stat(statName)) ?? 0, failuresBefore + 1);
      assert.equal(env.upstream.requests.some((r) => r.path === "/orders/13"), false);
      await new Promise((r) => setTimeout(r, 200)); // an access log line would have been flushed by now
      assert.equal(env.envoy.accessLog().some((e) => e.path === "/orders/13"), false, "no HTTP request was logged");
    }));

  test("rejects a connection without a client certificate at the TLS layer", () =>
    explainFailure(env.envoy, async () => {
      const statName = `listener.127.0.0.1_${env.port}.ssl.fail_verify_no_cert`;
      const before = (await env.envoy.stat(statName)) ?? 0;
      await assert.rejects(get(null, "/orders/14"));
      assert.equal((await env.envoy.stat(statName)) ?? 0, before + 1);
      assert.equal(env.upstream.requests.some((r) => r.path === "/orders/14"), false);
    }));
});

describe("baseline listener (no filter)", () => {
  let env: AuthzEnvoy;
  before(async () => {
    env = await startAuthzEnvoy({
      variant: "baseline",
      trustDomain: td,
      clients: [{ name: "legacy", uri: ids.legacy }],
    });
  });
  after(async () => {
    await env?.close();
  });

  test("forwards what the filter would deny: the denials above come from the filter", () =>
    explainFailure(env.envoy, async () => {
      const res = await https({ port: env.port, ca: env.pki.ca.cert, client: env.pki.clients.legacy, path: "/orders/8" });
      assert.equal(res.status, 200);
      assert.equal((await env.envoy.stats("wasmcustom")).size, 0, "no wasm metrics without the filter");
    }));
});
