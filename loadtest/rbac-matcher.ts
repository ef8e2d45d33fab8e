// k6, family `rbac-matcher`: Envoy's own RBAC filter in its indexed form (the `matcher` field, `spiffe-authz compile
// --emit rbac-matcher`): the caller's URI SAN is looked up in a map, so the cost does not grow with the number of
// principals. The fastest thing Envoy offers for exact principals.
import http from "k6/http";
import { expectAllowed, options as loadOptions, target, urlPath } from "./lib/common.ts";

export const options = loadOptions("rbac-matcher", 5);

export default function (): void {
  expectAllowed(http.get(`${target}${urlPath}`));
}
