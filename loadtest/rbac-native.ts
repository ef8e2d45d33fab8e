// k6, family `rbac-native`: Envoy's own RBAC filter enforcing the benchmark table (`spiffe-authz compile --emit
// rbac`). Native RBAC evaluates its policies one after another, so its cost grows with the number of principals;
// the default threshold is loose for that reason (P99_MS overrides it).
import http from "k6/http";
import { expectAllowed, options as loadOptions, target, urlPath } from "./lib/common.ts";

export const options = loadOptions("rbac-native", 50);

export default function (): void {
  expectAllowed(http.get(`${target}${urlPath}`));
}
