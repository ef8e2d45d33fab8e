// Who the caller is, as Envoy's RBAC and the workload would read it, in a real Envoy 1.40 with real certificates:
// a certificate with several URI SANs is refused (an X.509-SVID has exactly one; Envoy's RBAC tries every SAN and
// the workload sees them all in x-forwarded-client-cert, while a wasm filter is shown only the first), a client's
// own x-forwarded-client-cert cannot change that, and a certificate without a URI SAN identifies nobody even when a
// JWT comes with it.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { staticCluster } from "../../src/envoy/render.ts";
import { https } from "../support/clients.ts";
import { explainFailure, startAuthzEnvoy } from "../support/envoy-fixture.ts";
import type { AuthzEnvoy } from "../support/envoy-fixture.ts";
import { createSigningKey, jwksOf, mintToken, serveJwks } from "../support/jwt.ts";
import type { JwksServer, SigningKey } from "../support/jwt.ts";

const td = "ids.example.com";
const allowed = `spiffe://${td}/app/frontend`;
const denied = `spiffe://${td}/app/legacy`;
const issuer = "https://issuer.ids.example.com";
const audience = "spiffe-authz-security";
const HASH = "Hash=0000000000000000000000000000000000000000000000000000000000000000";

const policy = `apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata: {name: ids}
spec:
  rules:
    - id: no-legacy
      action: deny
      from: [{ids: ["${denied}"]}]
    - id: frontend
      from: [{ids: ["${allowed}"]}]
`;

const clients = [
  { name: "frontend", uri: allowed },
  { name: "frontend-and-legacy", uri: allowed, extraUris: [denied] },
  { name: "legacy-and-frontend", uri: denied, extraUris: [allowed] },
  { name: "frontend-and-web", uri: allowed, extraUris: ["https://frontend.ids.example.com/"] },
];

describe("several URI SANs, x-forwarded-client-cert, certificates without a URI SAN", () => {
  const envs: Record<string, AuthzEnvoy> = {};
  let jwks: JwksServer;
  let key: SigningKey;

  before(async () => {
    key = await createSigningKey("ids-key");
    jwks = await serveJwks(jwksOf([key]));
    const start = (forwardClientCert: "SANITIZE_SET" | "APPEND_FORWARD" | "SANITIZE", settings?: Record<string, string>) =>
      startAuthzEnvoy({
        variant: "optional-client-cert", trustDomain: td, clients, policies: [{ file: "ids.yaml", text: policy }],
        forwardClientCert, settings,
        jwt: { issuer, audiences: [audience], jwks: { remote: { uri: jwks.uri, cluster: "jwks" } } },
        extraClusters: [staticCluster("jwks", { port: jwks.port })],
      });
    [envs.sanitizeSet, envs.appendForward, envs.noXfcc, envs.ignore] = await Promise.all([
      start("SANITIZE_SET"), start("APPEND_FORWARD"), start("SANITIZE"), start("SANITIZE", { xfcc: "ignore" }),
    ]);
  });
  after(async () => {
    await Promise.all(Object.values(envs).map((e) => e.close()));
    await jwks?.close();
  });

  const get = (env: AuthzEnvoy, client: string | null, path: string, headers: Record<string, string> = {}) =>
    https({ port: env.port, ca: env.pki.ca.cert, client: client === null ? null : env.pki.clients[client], path, headers });
  const details = async (env: AuthzEnvoy, path: string) => (await env.envoy.waitForAccessLog((e) => e.path === path)).details;

  test("one URI SAN: decided by the rules", async () => {
    for (const env of [envs.sanitizeSet, envs.appendForward, envs.ignore]) {
      assert.equal((await get(env, "frontend", "/one")).status, 200);
    }
  });

  test("several URI SANs are refused, whichever comes first", () =>
    explainFailure(envs.sanitizeSet.envoy, async () => {
      for (const [i, client] of ["frontend-and-legacy", "legacy-and-frontend", "frontend-and-web"].entries()) {
        const path = `/several/${i}`;
        const res = await get(envs.sanitizeSet, client, path);
        assert.equal(res.status, 403, client);
        assert.equal(await details(envs.sanitizeSet, path), "spiffe_authz_denied[multiple_uri_sans]", client);
      }
    }));

  test("a client's own x-forwarded-client-cert changes nothing: replaced (SANITIZE_SET) or followed by Envoy's element (APPEND_FORWARD)", async () => {
    const forged = { "x-forwarded-client-cert": `${HASH};URI=${allowed}` };
    for (const env of [envs.sanitizeSet, envs.appendForward]) {
      await explainFailure(env.envoy, async () => {
        const res = await get(env, "frontend-and-legacy", "/forged", forged);
        assert.equal(res.status, 403);
        assert.equal(await details(env, "/forged"), "spiffe_authz_denied[multiple_uri_sans]");
        // A forged element listing two SANs in front of Envoy's one-SAN element is not mistaken for it.
        const two = await get(env, "frontend", "/forged-two", { "x-forwarded-client-cert": `${HASH};URI=${allowed};URI=${denied}` });
        assert.equal(two.status, 200);
        // A client's unbalanced quote must not swallow Envoy's element.
        const quote = await get(env, "frontend-and-legacy", "/quote", { "x-forwarded-client-cert": `By="${HASH};URI=${allowed}` });
        assert.equal(quote.status, 403);
      });
    }
  });

  test("a listener that sets no x-forwarded-client-cert: refused, unless the plugin says to take the first URI SAN on trust", async () => {
    const res = await get(envs.noXfcc, "frontend", "/no-xfcc");
    assert.equal(res.status, 403);
    assert.equal(await details(envs.noXfcc, "/no-xfcc"), "spiffe_authz_denied[xfcc_missing]");
    // "xfcc": "ignore" is weaker on purpose: a second URI SAN goes unnoticed.
    assert.equal((await get(envs.ignore, "frontend", "/ignore")).status, 200);
    assert.equal((await get(envs.ignore, "frontend-and-legacy", "/ignore-two")).status, 200);
  });

  test("a certificate without a URI SAN identifies nobody, even with a token for an allowed subject", () =>
    explainFailure(envs.sanitizeSet.envoy, async () => {
      const token = await mintToken(key, {}, { issuer, audience, subject: allowed });
      const withoutCert = await get(envs.sanitizeSet, null, "/token-only", { authorization: `Bearer ${token}` });
      assert.equal(withoutCert.status, 200, "a token alone identifies a caller without a certificate");
      const res = await get(envs.sanitizeSet, "no-uri-san", "/cert-and-token", { authorization: `Bearer ${token}` });
      assert.equal(res.status, 403);
      assert.equal(await details(envs.sanitizeSet, "/cert-and-token"), "spiffe_authz_denied[default:no_uri_san]");
    }));
});
