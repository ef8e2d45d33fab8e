// k6, family `baseline`: Envoy with mTLS and no authorization filter, the reference every other family is
// compared with. Run it against the same Envoy, listener and rate as the others.
import http from "k6/http";
import { expectAllowed, options as loadOptions, target, urlPath } from "./lib/common.ts";

export const options = loadOptions("baseline", 5);

export default function (): void {
  expectAllowed(http.get(`${target}${urlPath}`));
}
