// Stage 5, emit: the compiled table in the shape a deployment needs.

import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { CompileResult } from "../index.ts";
import { emitEnvoy } from "./envoy.ts";
import { emitTrafficExtension, emitWasmPlugin } from "./istio.ts";
import { emitRbac } from "./rbac.ts";
import { emitTable } from "./table.ts";

export const EMIT_KINDS = ["table", "envoy", "wasmplugin", "trafficextension", "rbac"] as const;
export type EmitKind = (typeof EMIT_KINDS)[number];

/** The absolute path of build/release.wasm in this checkout (the default `--wasm`). */
export const DEFAULT_WASM_PATH = resolve(join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "build", "release.wasm"));
export const DEFAULT_WASM_URL = "oci://ghcr.io/spiffe-authz/spiffe-authz:0.1.0";
export const DEFAULT_RESOURCE_NAME = "spiffe-authz";

export interface EmitOptions {
  /** `vm_config.code.local.filename` of the Envoy filter */
  wasmPath: string;
  /** `url` of the WasmPlugin / TrafficExtension */
  wasmUrl: string;
  /** metadata.name of the Istio resources */
  name: string;
  /** metadata.namespace of the Istio resources (omitted when undefined) */
  namespace?: string;
  /** selector.matchLabels of the Istio resources (omitted when empty) */
  labels?: Record<string, string>;
}

/** Fills in the defaults of every option. */
export function emitOptions(partial: Partial<EmitOptions> = {}): EmitOptions {
  return {
    wasmPath: partial.wasmPath ?? DEFAULT_WASM_PATH,
    wasmUrl: partial.wasmUrl ?? DEFAULT_WASM_URL,
    name: partial.name ?? DEFAULT_RESOURCE_NAME,
    namespace: partial.namespace,
    labels: partial.labels,
  };
}

/** Renders a compile result as `kind`. */
export function emit(kind: EmitKind, result: CompileResult, options: Partial<EmitOptions> = {}): string {
  const o = emitOptions(options);
  switch (kind) {
    case "table":
      return emitTable(result);
    case "envoy":
      return emitEnvoy(result, o);
    case "wasmplugin":
      return emitWasmPlugin(result, o);
    case "trafficextension":
      return emitTrafficExtension(result, o);
    case "rbac":
      return emitRbac(result);
  }
}
