/** The policy and identities the SPIRE tests register and decide. */
export const spireTestTrustDomain = "prod.example.com";
const td = spireTestTrustDomain;
/** Envoy fronts the orders app. */
export const spireTestEnvoyId = `spiffe://${td}/cluster/c1/app/orders/env/prod`;
/** The client workloads, each registered under a uid of its own. */
export const spireTestIds = {
  frontend: `spiffe://${td}/cluster/c1/app/frontend/env/prod`,
  legacy: `spiffe://${td}/cluster/c1/app/legacy/env/prod`,
  reports: `spiffe://${td}/cluster/c1/app/reports/env/prod`,
  staging: `spiffe://${td}/cluster/c1/app/frontend/env/staging`,
  // app=frontend, but without env: fails the trust domain's schema, so it has no identity at all.
  noEnv: `spiffe://${td}/cluster/c1/app/frontend`,
};

/** Allow, deny by rule, deny by default and the trust domain's attribute schema. */
export const spireTestPolicy = `
apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata:
  name: orders-spire
spec:
  default: deny
  trustDomains:
    ${td}: {require: [cluster, app, env]}
  rules:
    - id: deny-legacy
      action: deny
      from:
        - attributes: {app: legacy}
    - id: frontend-reads-orders
      from:
        - trustDomains: [${td}]
          attributes: {app: frontend, env: prod}
      to:
        - methods: [GET]
          paths: ["/orders/*"]
`;

