// Stage 5, emit: the compiled table in the shape a deployment needs.

import { DEFAULT_WASM_PATH } from "../../paths.ts";
import type { CompileResult } from "../index.ts";
import { emitEcds } from "./ecds.ts";
import { emitEnvoy } from "./envoy.ts";
import { emitTrafficExtension, emitWasmPlugin } from "./istio.ts";
import { emitRbac } from "./rbac.ts";
import { emitRbacMatcher } from "./rbac-matcher.ts";
import { emitTable } from "./table.ts";

export const EMIT_KINDS = ["table", "envoy", "ecds", "wasmplugin", "trafficextension", "rbac", "rbac-matcher"] as const;
export type EmitKind = (typeof EMIT_KINDS)[number];

export const DEFAULT_RESOURCE_NAME = "spiffe-authz";

/** An Istio resource that cannot be emitted as asked (a missing URL, no selector): the user's input, exit 2. */
export class EmitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EmitError";
  }
}

export const IMAGE_PULL_POLICIES = ["IfNotPresent", "Always"] as const;
export type ImagePullPolicy = (typeof IMAGE_PULL_POLICIES)[number];

export interface EmitOptions {
  /** `vm_config.code.local.filename` of the Envoy filter (`envoy`, `ecds`); for Istio kinds, the module to pin */
  wasmPath: string;
  /**
   * `url` of the WasmPlugin / TrafficExtension (required for them; `compile` checks it and resolves `sha256` with
   * src/oci/pin.ts). There is no default: no published image would match the module of this checkout.
   */
  wasmUrl?: string;
  /** `sha256` of the WasmPlugin / TrafficExtension: the image's manifest digest (oci) or the module's (http) */
  sha256?: string;
  /** `imagePullPolicy` (default IfNotPresent: with a pinned checksum, a cached copy is the same module) */
  imagePullPolicy?: ImagePullPolicy;
  /** Emit an Istio resource without a selector, applying to every workload of the namespace (mesh-wide in the root namespace). */
  allWorkloads?: boolean;
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
    wasmUrl: partial.wasmUrl,
    sha256: partial.sha256,
    imagePullPolicy: partial.imagePullPolicy ?? "IfNotPresent",
    allWorkloads: partial.allWorkloads ?? false,
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
    case "ecds":
      return emitEcds(result, o);
    case "wasmplugin":
      return emitWasmPlugin(result, o);
    case "trafficextension":
      return emitTrafficExtension(result, o);
    case "rbac":
      return emitRbac(result);
    case "rbac-matcher":
      return emitRbacMatcher(result);
  }
}
