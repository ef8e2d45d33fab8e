// What every emitter takes: the options of `compile --emit`, their defaults, and the error for a resource that
// cannot be emitted as asked.

import { DEFAULT_WASM_PATH } from "../../paths.ts";

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
