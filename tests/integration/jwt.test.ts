// JWT identity for callers outside the mesh, in a real Envoy 1.40: jwt_authn verifies bearer tokens
// against a real JWKS (a key pair generated here, served over HTTP and fetched by Envoy through a cluster) and
// leaves the payload in dynamic metadata; our filter reads `jwt.claims` from there, never from a header, and uses
// the token's `sub` as the principal when the connection has no client certificate. The listener is the
// optional-client-cert variant, so both kinds of caller reach it.
import assert from "node:assert/strict";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { staticCluster } from "../../src/envoy/render.ts";
import type { EchoBody } from "../../dev/envoy/upstream.ts";
import { https } from "../support/clients.ts";
import { compileWithCli } from "../support/compile-cli.ts";
import { explainFailure, startAuthzEnvoy, tempDir } from "../support/envoy-fixture.ts";
import type { AuthzEnvoy } from "../support/envoy-fixture.ts";
import { createSigningKey, jwksOf, mintToken, serveJwks } from "../support/jwt.ts";
import type { JwksServer, SigningKey, TokenOptions } from "../support/jwt.ts";

const td = "jwt.example.com";
const issuer = "https://issuer.jwt.example.com";
const audience = "spiffe-authz-jwt-test";
const ids = {
  billing: `spiffe://${td}/app/billing/env/prod`,
  /** Subjects of tokens (people and jobs outside the mesh). */
  alice: `spiffe://${td}/user/alice`,
  bob: `spiffe://${td}/user/bob`,
};

const policy = `
apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata:
  name: jwt-integration
spec:
  default: deny
  rules:
    - id: reports-by-scope
      to:
        - methods: [GET]
          paths: ["/reports/{**}"]
      condition: "'reports:read' in jwt.claims.scopes"
    - id: admin-by-subject
      from:
        - ids: ["${ids.alice}"]
      to:
        - paths: ["/admin/{**}"]
    - id: billing-by-certificate
      from:
        - ids: ["${ids.billing}"]
      to:
        - paths: ["/billing/{**}"]
`;

describe("jwt_authn before the filter: claims and subject from verified tokens only", () => {
  let env: AuthzEnvoy;
  let jwks: JwksServer;
  let key: SigningKey;
  let otherKey: SigningKey;
  let dir: string;

  before(async () => {
    // The forger uses the same kid: only the signature tells the keys apart.
    [key, otherKey, dir] = await Promise.all([createSigningKey("test-key"), createSigningKey("test-key"), tempDir("jwt")]);
    jwks = await serveJwks(jwksOf([key]));
    const policyFile = join(dir, "jwt-integration.yaml");
    await writeFile(policyFile, policy);
    const configuration = await compileWithCli([policyFile]);
    env = await startAuthzEnvoy({
      variant: "optional-client-cert",
      trustDomain: td,
      clients: [{ name: "billing", uri: ids.billing }],
      configuration,
      jwt: { issuer, audiences: [audience], jwks: { remote: { uri: jwks.uri, cluster: "jwks" } } },
      extraClusters: [staticCluster("jwks", { port: jwks.port })],
    });
  });
  after(async () => {
    await env?.close();
    await jwks?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const token = (claims: Record<string, unknown>, options: Partial<TokenOptions> = {}, signer: SigningKey = key) =>
    mintToken(signer, claims, { issuer, audience, ...options });
  const get = (path: string, options: { token?: string; client?: "billing"; headers?: Record<string, string> } = {}) =>
    https({
      port: env.port,
      ca: env.pki.ca.cert,
      client: options.client === undefined ? null : env.pki.clients[options.client],
      path,
      headers: { ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }), ...options.headers },
    });
  const reached = (path: string) => env.upstream.requests.some((r) => r.path === path);

  test("Envoy fetched the JWKS from the local server before serving", () => {
    assert.ok(jwks.fetches() >= 1, "jwt_authn fetched the JWKS");
  });

  test("a valid token whose claims satisfy the condition is allowed; the token is not forwarded upstream", () =>
    explainFailure(env.envoy, async () => {
      const res = await get("/reports/1", { token: await token({ scopes: ["reports:read"] }, { subject: ids.bob }) });
      assert.equal(res.status, 200);
      const echo = JSON.parse(res.body) as EchoBody;
      assert.equal(echo.headers.authorization, undefined, "forward: false removes the token");
      const line = await env.envoy.waitForAccessLog((e) => e.path === "/reports/1");
      assert.equal(line.peer, null, "no client certificate on this connection");
      assert.equal(line.details, "via_upstream");
    }));

  test("a valid token with the wrong claim is denied by the filter", () =>
    explainFailure(env.envoy, async () => {
      const res = await get("/reports/2", { token: await token({ scopes: ["reports:write"] }, { subject: ids.bob }) });
      assert.equal(res.status, 403);
      assert.equal(res.body, "spiffe-authz: access denied\n");
      const line = await env.envoy.waitForAccessLog((e) => e.path === "/reports/2");
      assert.equal(line.details, "spiffe_authz_denied[default]");
      assert.equal(reached("/reports/2"), false);
    }));

  test("a forged token (another key, same kid) or an expired one is rejected by jwt_authn with 401 and never reaches the filter or the upstream", () =>
    explainFailure(env.envoy, async () => {
      const decisions = async () =>
        ((await env.envoy.stat("wasmcustom.spiffe_authz.allowed")) ?? 0) + ((await env.envoy.stat("wasmcustom.spiffe_authz.denied")) ?? 0);
      const before = await decisions();
      const forged = await get("/reports/3", { token: await token({ scopes: ["reports:read"] }, { subject: ids.alice }, otherKey) });
      assert.equal(forged.status, 401);
      const expired = await get("/reports/4", { token: await token({ scopes: ["reports:read"] }, { expiresInSeconds: -120 }) });
      assert.equal(expired.status, 401);
      for (const path of ["/reports/3", "/reports/4"]) {
        const line = await env.envoy.waitForAccessLog((e) => e.path === path);
        assert.match(line.details, /^jwt_authn_access_denied/);
        assert.equal(line.upstream, null);
        assert.equal(reached(path), false);
      }
      assert.equal(await decisions(), before, "jwt_authn stopped both before our filter ran");
    }));

  test("a client-sent payload header without a token carries no claims: denied", () =>
    explainFailure(env.envoy, async () => {
      const payload = JSON.stringify({ iss: issuer, aud: audience, sub: ids.alice, scopes: ["reports:read"] });
      const headers = {
        "x-jwt-payload": Buffer.from(payload).toString("base64url"),
        "jwt-payload": payload,
        jwt_payload: payload,
      };
      const res = await get("/reports/5", { headers });
      assert.equal(res.status, 403);
      const line = await env.envoy.waitForAccessLog((e) => e.path === "/reports/5");
      // No verified token: jwt.claims is absent, so the condition cannot hold and no ALLOW rule matches; and the
      // caller has no identity.
      assert.equal(line.details, "spiffe_authz_denied[default:no_client_certificate]");
      assert.equal(reached("/reports/5"), false);
      // The same claims in a verified token are allowed: the header alone was the difference.
      const ok = await get("/reports/6", { token: await token({ scopes: ["reports:read"] }) });
      assert.equal(ok.status, 200);
    }));

  test("without a client certificate, the token's subject is the principal", () =>
    explainFailure(env.envoy, async () => {
      const alice = await get("/admin/1", { token: await token({}, { subject: ids.alice }) });
      assert.equal(alice.status, 200);
      const bob = await get("/admin/2", { token: await token({}, { subject: ids.bob }) });
      assert.equal(bob.status, 403);
      const none = await get("/admin/3");
      assert.equal(none.status, 403);
      assert.equal(reached("/admin/1"), true);
      assert.equal(reached("/admin/2") || reached("/admin/3"), false);
    }));

  test("with both a client certificate and a token, the mTLS identity is the principal, not the token's subject; the claims still count", () =>
    explainFailure(env.envoy, async () => {
      const aliceToken = await token({}, { subject: ids.alice });
      // alice's token would open /admin without a certificate (previous test); with billing's certificate it does not.
      const admin = await get("/admin/4", { client: "billing", token: aliceToken });
      assert.equal(admin.status, 403);
      const adminLine = await env.envoy.waitForAccessLog((e) => e.path === "/admin/4");
      assert.equal(adminLine.peer, ids.billing);
      assert.equal(adminLine.details, "spiffe_authz_denied[default]");
      const billing = await get("/billing/1", { client: "billing", token: aliceToken });
      assert.equal(billing.status, 200);
      // The token still counts for its claims.
      const reports = await get("/reports/7", { client: "billing", token: await token({ scopes: ["reports:read"] }, { subject: ids.alice }) });
      assert.equal(reports.status, 200);
      assert.equal(reached("/admin/4"), false);
      assert.equal(reached("/billing/1"), true);
    }));
});

// istiod's RequestAuthentication configures jwt_authn with `payload_in_metadata: <issuer>` (the rule's issuer string,
// pilot/pkg/security/authn), not our `jwt_payload`. Our filter then takes the payload stored under the key equal to
// its own `iss` claim (docs/policy-language.md, JWT). Same policy and tokens as above, with jwt_authn configured the
// Istio way (inline JWKS: the key source is not what this is about).
describe("jwt_authn with payload_in_metadata set to the issuer (as istiod configures it)", () => {
  let env: AuthzEnvoy;
  let key: SigningKey;
  let dir: string;

  before(async () => {
    [key, dir] = await Promise.all([createSigningKey("istio-key"), tempDir("jwt-istio")]);
    const policyFile = join(dir, "jwt-integration.yaml");
    await writeFile(policyFile, policy);
    const configuration = await compileWithCli([policyFile]);
    env = await startAuthzEnvoy({
      variant: "optional-client-cert",
      trustDomain: td,
      clients: [{ name: "billing", uri: ids.billing }],
      configuration,
      jwt: { issuer, audiences: [audience], jwks: { inline: jwksOf([key]) }, payloadInMetadata: issuer },
    });
  });
  after(async () => {
    await env?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const token = (claims: Record<string, unknown>, subject?: string) => mintToken(key, claims, { issuer, audience, subject });
  const get = (path: string, jwt?: string) =>
    https({ port: env.port, ca: env.pki.ca.cert, client: null, path, headers: jwt === undefined ? {} : { authorization: `Bearer ${jwt}` } });

  test("the claims stored under the issuer decide the condition", () =>
    explainFailure(env.envoy, async () => {
      assert.equal((await get("/reports/i1", await token({ scopes: ["reports:read"] }))).status, 200);
      const denied = await get("/reports/i2", await token({ scopes: ["reports:write"] }));
      assert.equal(denied.status, 403);
      const line = await env.envoy.waitForAccessLog((e) => e.path === "/reports/i2");
      assert.equal(line.details, "spiffe_authz_denied[default:no_client_certificate]");
    }));

  test("without a client certificate, the subject of the payload stored under the issuer is the principal", () =>
    explainFailure(env.envoy, async () => {
      assert.equal((await get("/admin/i1", await token({}, ids.alice))).status, 200);
      assert.equal((await get("/admin/i2", await token({}, ids.bob))).status, 403);
      assert.equal(env.upstream.requests.some((r) => r.path === "/admin/i1"), true);
      assert.equal(env.upstream.requests.some((r) => r.path === "/admin/i2"), false);
    }));
});
