// k6, family `opa`: OPA behind Envoy's ext_authz filter over gRPC (bench/opa-authz: opa-envoy-plugin's input and
// one evaluation per check), the benchmark table's rules as Rego data. Every request costs a gRPC call and a Rego
// evaluation in another process, so the default threshold is looser (P99_MS overrides it).
import http from "k6/http";
import { expectAllowed, options as loadOptions, target, urlPath } from "./lib/common.ts";

export const options = loadOptions("opa", 25);

export default function (): void {
  expectAllowed(http.get(`${target}${urlPath}`));
}
