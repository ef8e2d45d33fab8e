// Emitter `ecds`: the content of an ECDS file (a DiscoveryResponse with the filter's TypedExtensionConfig) for a
// listener whose filter uses config_discovery, as the shipped configs and `npm start` do. Replacing that file
// atomically (compile -o does) swaps the table in the running filter, open connections included.
import { renderEcdsResponse, toYaml, wasmExtensionConfig } from "../../envoy/render.ts";
import type { CompileResult } from "../index.ts";
import type { EmitOptions } from "./options.ts";

export function emitEcds(result: CompileResult, options: EmitOptions): string {
  const response = renderEcdsResponse([wasmExtensionConfig({ wasmPath: options.wasmPath, configuration: result.config })], result.tableHash);
  return toYaml(response, [
    `spiffe-authz: ${result.ruleCount} rule(s), table ${result.tableHash}.`,
    "An ECDS file: replace the file a listener's config_discovery watches with it (atomically: rename over it).",
  ]);
}
