// Shared k6 settings for the spiffe-authz load tests (one script per variant family: baseline.ts,
// rbac-native.ts, rbac-matcher.ts, wasm.ts, abac.ts, opa.ts).
//
// Every script drives one Envoy at a fixed arrival rate (open loop, like fortio's -qps), over mTLS with a client
// certificate whose URI SAN is a SPIFFE ID, and fails the run when p99 exceeds its threshold.
// Environment: TARGET (base URL), RATE (requests/s), DURATION, VUS, P99_MS, CERT, KEY (PEM paths), URL_PATH.
// docker-compose.yml sets them for the compose stack; `npm run bench -- --prepare-compose` writes the configs and
// certificates it mounts. See docs/benchmarks.md.
import { check } from "k6";
import type { RefinedResponse, ResponseType } from "k6/http";
import type { Options } from "k6/options";

/** Reads an environment variable with a default (k6 exposes them as __ENV). */
export function env(name: string, fallback: string): string {
  const v = __ENV[name];
  return v === undefined || v === "" ? fallback : v;
}

/** The base URL of the Envoy listener under test. */
export const target: string = env("TARGET", "https://127.0.0.1:21445");

/** The request path every script sends (the benchmark tables allow GET /echo* for the bench client). */
export const urlPath: string = env("URL_PATH", "/echo");

/**
 * Options for a constant-arrival-rate scenario: k6 starts RATE iterations per second whatever the latency, so a
 * slow proxy shows up as latency instead of silently lowering the load (closed-loop generators hide it).
 * `family` tags every sample, so results of several runs can be told apart.
 */
export function options(family: string, defaultP99Ms: number): Options {
  const rate = Number(env("RATE", "1000"));
  const vus = Number(env("VUS", "16"));
  return {
    scenarios: {
      load: {
        executor: "constant-arrival-rate",
        rate,
        timeUnit: "1s",
        duration: env("DURATION", "30s"),
        preAllocatedVUs: vus,
        maxVUs: vus * 4,
      },
    },
    tags: { family },
    thresholds: {
      http_req_failed: ["rate<0.001"],
      http_req_duration: [`p(99)<${env("P99_MS", String(defaultP99Ms))}`],
      checks: ["rate>0.999"],
    },
    summaryTrendStats: ["p(50)", "p(90)", "p(99)", "p(99.9)", "max"],
    tlsAuth: [
      {
        domains: [env("TLS_DOMAIN", "127.0.0.1")],
        cert: open(env("CERT", "../../out/bench/compose/certs/bench-client.crt")),
        key: open(env("KEY", "../../out/bench/compose/certs/bench-client.key")),
      },
    ],
    // The bench CA is private and k6 has no option for a custom CA bundle, so the server certificate is not
    // verified. The server still verifies ours, which is what these tests are about.
    insecureSkipTLSVerify: true,
    discardResponseBodies: true,
  };
}

/** The check every request must pass: the proxy let it through to the upstream. */
export function expectAllowed(res: RefinedResponse<ResponseType | undefined>): void {
  check(res, { "allowed (200)": (r) => r.status === 200 });
}
