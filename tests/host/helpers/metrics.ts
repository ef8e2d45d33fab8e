// The filter's decision counters (assembly/filter/metrics.ts): one per (decision, reason code), named
// spiffe_authz.decision.<allow|deny>.reason.<code>.requests (Envoy adds "wasmcustom.").
import type { ProxyWasmHost } from "../../../src/host/index.ts";

/** The requests counted with `decision`, over every reason code; or those of one reason. */
export function decisions(h: ProxyWasmHost, decision: "allow" | "deny", reason?: string): number {
  let n = 0;
  for (const [name, m] of h.metrics()) {
    const match = /^spiffe_authz\.decision\.(allow|deny)\.reason\.(\w+)\.requests$/.exec(name);
    if (match && match[1] === decision && (reason === undefined || match[2] === reason)) n += m.value;
  }
  return n;
}
