// The `optional-client-cert` listener accepts connections without a client certificate, so requests reach the
// filter with no peer at all: the filter's own no-identity path decides them.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { explainFailure, startAuthzEnvoy } from "../support/envoy-fixture.ts";
import type { AuthzEnvoy } from "../support/envoy-fixture.ts";
import { grpc, https } from "../support/clients.ts";
import { specialClients } from "../../src/envoy/pki.ts";

const td = "prod.example.com";
const frontend = `spiffe://${td}/app/frontend/env/prod`;

const policy = `
apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata:
  name: optional-cert
spec:
  default: deny
  rules:
    - id: frontend-reads-orders
      action: allow
      from:
        - attributes: {app: frontend}
      to:
        - methods: [GET]
          paths: ["/orders/*"]
    - id: public-health
      action: allow
      to:
        - methods: [GET]
          paths: ["/healthz"]
`;

describe("optional-client-cert listener", () => {
  let env: AuthzEnvoy;
  before(async () => {
    env = await startAuthzEnvoy({
      variant: "optional-client-cert",
      trustDomain: td,
      clients: [{ name: "frontend", uri: frontend }],
      policies: [{ file: "optional-cert.yaml", text: policy }],
    });
  });
  after(async () => {
    await env?.close();
  });

  const request = (client: string | null, path: string) =>
    https({ port: env.port, ca: env.pki.ca.cert, client: client === null ? null : env.pki.clients[client], path });

  test("denies a request without a client certificate by default", () =>
    explainFailure(env.envoy, async () => {
      const res = await request(null, "/orders/1");
      assert.equal(res.status, 403);
      assert.equal(res.body, "spiffe-authz: access denied\n");
      const line = await env.envoy.waitForAccessLog((e) => e.path === "/orders/1");
      assert.equal(line.peer, null);
      assert.equal(line.details, "spiffe_authz_denied[default:no_client_certificate]");
      assert.equal(env.upstream.requests.some((r) => r.path === "/orders/1"), false);
    }));

  test("denies gRPC without a client certificate with grpc-status 7", () =>
    explainFailure(env.envoy, async () => {
      const res = await grpc({ port: env.port, ca: env.pki.ca.cert, client: null, path: "/shop.Orders/Get" });
      assert.equal(res.grpcStatus, 7);
      assert.equal(res.trailersOnly, true);
    }));

  test("allows a request without a client certificate when a rule allows any caller", () =>
    explainFailure(env.envoy, async () => {
      const res = await request(null, "/healthz");
      assert.equal(res.status, 200);
      const seen = env.upstream.requests.find((r) => r.path === "/healthz");
      assert.ok(seen !== undefined, "the upstream saw /healthz");
      // SANITIZE_SET: no verified peer, so no x-forwarded-client-cert reaches the upstream.
      assert.equal(seen.headers["x-forwarded-client-cert"], undefined);
      const line = await env.envoy.waitForAccessLog((e) => e.path === "/healthz");
      assert.equal(line.peer, null);
    }));

  test("still authorizes a presented certificate by its SPIFFE ID", () =>
    explainFailure(env.envoy, async () => {
      assert.equal((await request("frontend", "/orders/2")).status, 200);
      const line = await env.envoy.waitForAccessLog((e) => e.path === "/orders/2");
      assert.equal(line.peer, frontend);
    }));

  test("a client-sent x-forwarded-client-cert is not an identity", () =>
    explainFailure(env.envoy, async () => {
      const res = await https({
        port: env.port,
        ca: env.pki.ca.cert,
        client: null,
        path: "/orders/3",
        headers: { "x-forwarded-client-cert": `URI=${frontend}` },
      });
      assert.equal(res.status, 403);
    }));

  test("still validates a presented certificate: another CA's is rejected at the TLS layer", () =>
    explainFailure(env.envoy, async () => {
      await assert.rejects(request(specialClients.otherCa, "/orders/4"));
      assert.equal(env.upstream.requests.some((r) => r.path === "/orders/4"), false);
    }));
});
