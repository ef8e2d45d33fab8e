// k6, family `wasm`: the spiffe-authz filter (build/release.wasm) with a compiled table. The request's identity
// matches the table's last rule; an indexed table makes that as cheap as matching the first.
import http from "k6/http";
import { expectAllowed, options as loadOptions, target, urlPath } from "./lib/common.ts";

export const options = loadOptions("wasm", 5);

export default function (): void {
  expectAllowed(http.get(`${target}${urlPath}`));
}
