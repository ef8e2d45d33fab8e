// k6, family `abac`: the filter with a rule whose CEL condition reads the JSON body (the config-service example,
// examples/config-service: the body's `appname` must equal the caller's `app` attribute). The filter buffers the body before it
// decides, so this family also measures body buffering.
import http from "k6/http";
import { env, expectAllowed, options as loadOptions, target, urlPath } from "./lib/common.ts";

export const options = loadOptions("abac", 10);

const body = env("BODY", '{"appname":"bench","resource_id":"r1"}');
const params = { headers: { "content-type": "application/json" } };

export default function (): void {
  expectAllowed(http.post(`${target}${urlPath}`, body, params));
}
