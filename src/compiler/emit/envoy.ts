// Emitter `envoy`: an `envoy.filters.http.wasm` entry for a listener's `http_filters`, placed before the router.
// The entry itself comes from src/envoy/render.ts, the one renderer of every Envoy config of the project, so the
// emitted filter is the one the integration tests run.

import { stringify } from "yaml";
import { rootId, wasmFilter } from "../../envoy/render.ts";
import type { CompileResult } from "../index.ts";
import type { EmitOptions } from "./options.ts";

export function emitEnvoy(result: CompileResult, options: EmitOptions): string {
  const entry = wasmFilter({ wasmPath: options.wasmPath, configuration: result.config, name: rootId });
  const header = [
    `# spiffe-authz: ${result.ruleCount} rule(s), table ${result.tableHash}.`,
    "# An http_filters entry: put it before envoy.filters.http.router.",
  ];
  // lineWidth 0: the table is one long string and must not be folded.
  return header.join("\n") + "\n" + stringify(entry, { lineWidth: 0 });
}
