// Stage 5, emit: the compiled table in the shape a deployment needs.

import type { CompileResult } from "../index.ts";
import { emitEcds } from "./ecds.ts";
import { emitEnvoy } from "./envoy.ts";
import { emitTrafficExtension, emitWasmPlugin } from "./istio.ts";
import { emitRbac } from "./rbac.ts";
import { emitRbacMatcher } from "./rbac-matcher.ts";
import { emitTable } from "./table.ts";
import { type EmitOptions, emitOptions } from "./options.ts";

export const EMIT_KINDS = ["table", "envoy", "ecds", "wasmplugin", "trafficextension", "rbac", "rbac-matcher"] as const;
export type EmitKind = (typeof EMIT_KINDS)[number];

export {
  DEFAULT_RESOURCE_NAME,
  EmitError,
  type EmitOptions,
  emitOptions,
  IMAGE_PULL_POLICIES,
  type ImagePullPolicy,
} from "./options.ts";

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
