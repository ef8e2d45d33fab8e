// Two trust domains, each with its own SPIRE server and agent, federated both ways over their bundle endpoints
// (profile https_spiffe). Envoy in prod.example.com takes every bundle it federates with over SDS (the `ALL`
// validation secret), so partner workloads get through TLS; the filter's per-trust-domain schemas and trust-domain
// scoped rules then decide: the same attributes mean different things in different trust domains.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startSpire, uidSelector, workloadAs } from "../../dev/spire/run.ts";
import type { Spire, Workload } from "../../dev/spire/run.ts";
import type { X509Svid } from "../../dev/spire/svid.ts";
import { eventually } from "../support/envoy-fixture.ts";
import { explainSpireFailure, startSpireEnvoy } from "../support/spire-fixture.ts";
import type { SpireEnvoy } from "../support/spire-fixture.ts";
import { svidRequest } from "../support/svid-client.ts";

const prod = "prod.example.com";
const partner = "partner.example.com";
const envoyId = `spiffe://${prod}/cluster/c1/app/orders/env/prod`;
const prodIds = { frontend: `spiffe://${prod}/cluster/c1/app/frontend/env/prod` };
const partnerIds = {
  billing: `spiffe://${partner}/app/billing/env/prod`,
  // The same attributes as prod's frontend, in the partner's trust domain.
  frontend: `spiffe://${partner}/app/frontend/env/prod`,
  // The partner's schema requires app and env: this ID has no identity.
  noEnv: `spiffe://${partner}/app/billing`,
};

const policy = `
apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata:
  name: orders-federated
spec:
  default: deny
  trustDomains:
    ${prod}: {require: [cluster, app, env]}
    ${partner}: {require: [app, env]}
  rules:
    - id: frontend-reads-orders
      from:
        - trustDomains: [${prod}]
          attributes: {app: frontend, env: prod}
      to:
        - methods: [GET]
          paths: ["/orders/*"]
    - id: partner-billing-reads-invoices
      from:
        - trustDomains: [${partner}]
          attributes: {app: billing, env: prod}
      to:
        - methods: [GET]
          paths: ["/invoices/*"]
`;

describe("federated trust domains", () => {
  let env: SpireEnvoy;
  let partnerSpire: Spire | undefined;
  const partnerWorkloads = new Map<string, Workload>();

  before(async () => {
    partnerSpire = await startSpire({ trustDomain: partner, bundleEndpoint: true });
    env = await startSpireEnvoy({
      trustDomain: prod,
      bundleEndpoint: true,
      envoyId,
      envoyFederatesWith: [`spiffe://${partner}`],
      // Every bundle Envoy's entry federates with, its own included.
      validationSecret: "ALL",
      clients: Object.entries(prodIds).map(([name, spiffeId]) => ({ name, spiffeId })),
      policies: [{ file: "orders-federated.yaml", text: policy }],
      beforeEntries: async (prodSpire) => {
        await prodSpire.server.federateWith(partnerSpire!.server);
        await partnerSpire!.server.federateWith(prodSpire.server);
      },
    });
    // Partner workloads federate with prod, so they receive prod's bundle and can verify Envoy.
    for (const [i, [name, spiffeId]] of Object.entries(partnerIds).entries()) {
      const workload = workloadAs(10 + i);
      partnerWorkloads.set(name, workload);
      await partnerSpire.server.createEntry({
        spiffeId,
        parentId: partnerSpire.agent.spiffeId,
        selectors: [uidSelector(workload)],
        federatesWith: [`spiffe://${prod}`],
      });
    }
  });
  after(async () => {
    await env?.close();
    await partnerSpire?.stop();
  });

  const partnerSvid = (name: keyof typeof partnerIds): Promise<X509Svid> =>
    partnerSpire!.agent.waitForSvid(partnerIds[name], partnerWorkloads.get(name)!);

  const explain = (fn: () => Promise<void>) =>
    explainSpireFailure(env, async () => {
      try {
        await fn();
      } catch (err) {
        console.error(partnerSpire?.logs(150));
        throw err;
      }
    });

  test("each server keeps the other's bundle fresh from its bundle endpoint (https_spiffe)", () =>
    explain(async () => {
      for (const [server, other] of [[env.spire.server, partnerSpire!.server], [partnerSpire!.server, env.spire.server]]) {
        const refreshed = new RegExp(`msg="Bundle refreshed" subsystem_name=bundle_client trust_domain=${other.trustDomain.replace(/\./g, "\\.")}`);
        await eventually(`${server.trustDomain} fetched ${other.trustDomain}'s bundle from its endpoint`, async () => refreshed.test(server.logs()), 60_000);
        const relationships = await server.cli(["federation", "list"]);
        assert.match(relationships, new RegExp(`Bundle endpoint URL +: https://127\\.0\\.0\\.1:${other.bundleEndpointPort}`));
        assert.match(relationships, new RegExp(`Endpoint SPIFFE ID +: spiffe://${other.trustDomain}/spire/server`));
      }
    }));

  test("each side holds the other's bundle: partner SVIDs carry prod's, Envoy validates against both", () =>
    explain(async () => {
      const billing = await partnerSvid("billing");
      assert.deepEqual(Object.keys(billing.federatedBundles), [`spiffe://${prod}`]);
      assert.equal(billing.federatedBundles[`spiffe://${prod}`], env.envoySvid.bundlePem);
      assert.deepEqual(Object.keys(env.envoySvid.federatedBundles), [`spiffe://${partner}`]);
      assert.equal(env.envoySvid.federatedBundles[`spiffe://${partner}`], billing.bundlePem);
    }));

  test("a partner identity is allowed by the rule that names its trust domain, and by no other", () =>
    explain(async () => {
      const billing = await partnerSvid("billing");
      const ok = await svidRequest({ port: env.port, svid: billing, serverId: envoyId, path: "/invoices/1" });
      assert.equal(ok.status, 200);
      const line = await env.envoy.waitForAccessLog((e) => e.path === "/invoices/1");
      assert.equal(line.peer, partnerIds.billing);
      assert.equal(line.details, "via_upstream");
      const orders = await svidRequest({ port: env.port, svid: billing, serverId: envoyId, path: "/orders/1" });
      assert.equal(orders.status, 403);
    }));

  test("the same attributes in another trust domain do not match a rule scoped to prod", () =>
    explain(async () => {
      const prodFrontend = await env.svid("frontend");
      assert.equal((await svidRequest({ port: env.port, svid: prodFrontend, serverId: envoyId, path: "/orders/2" })).status, 200);
      const partnerFrontend = await partnerSvid("frontend");
      const res = await svidRequest({ port: env.port, svid: partnerFrontend, serverId: envoyId, path: "/orders/3" });
      assert.equal(res.status, 403);
      const line = await env.envoy.waitForAccessLog((e) => e.path === "/orders/3");
      assert.equal(line.peer, partnerIds.frontend);
      assert.equal(line.details, "spiffe_authz_denied[default]");
      // And prod's frontend cannot use the partner's rule.
      assert.equal((await svidRequest({ port: env.port, svid: prodFrontend, serverId: envoyId, path: "/invoices/4" })).status, 403);
    }));

  test("each trust domain's schema applies to its own identities", () =>
    explain(async () => {
      // Valid under prod's rules of naming, but the partner's schema requires env: no identity, so no rule.
      const res = await svidRequest({ port: env.port, svid: await partnerSvid("noEnv"), serverId: envoyId, path: "/invoices/5" });
      assert.equal(res.status, 403);
      const line = await env.envoy.waitForAccessLog((e) => e.path === "/invoices/5");
      assert.equal(line.peer, partnerIds.noEnv);
      assert.equal(line.details, "spiffe_authz_denied[default:schema_failure]");
    }));
});
