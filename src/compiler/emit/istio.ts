// Emitters `wasmplugin` and `trafficextension`: the Istio resources that load the filter with the table.
// Field names follow the CRDs in schemas/istio/ (extensions.istio.io/v1alpha1); a unit test validates the output
// against them.

import { stringify } from "yaml";
import { rootId } from "../../envoy/render.ts";
import type { CompileResult } from "../index.ts";
import type { EmitOptions } from "./index.ts";

function metadata(options: EmitOptions): Record<string, unknown> {
  const md: Record<string, unknown> = { name: options.name };
  if (options.namespace) md.namespace = options.namespace;
  return md;
}

function selector(options: EmitOptions): Record<string, unknown> | undefined {
  const labels = options.labels ?? {};
  return Object.keys(labels).length ? { matchLabels: { ...labels } } : undefined;
}

/** The table as Istio's `pluginConfig`: Istio hands `{"table":"..."}` to the filter, the exact configuration form. */
function pluginConfig(result: CompileResult): Record<string, unknown> {
  const table = (JSON.parse(result.config) as { table: string }).table;
  return { table };
}

function header(result: CompileResult, kind: string): string {
  return `# spiffe-authz ${kind}: ${result.ruleCount} rule(s), table ${result.tableHash}.\n`;
}

/** A WasmPlugin in phase AUTHZ that fails closed. */
export function emitWasmPlugin(result: CompileResult, options: EmitOptions): string {
  const spec: Record<string, unknown> = {};
  const sel = selector(options);
  if (sel) spec.selector = sel;
  spec.url = options.wasmUrl;
  spec.phase = "AUTHZ";
  spec.failStrategy = "FAIL_CLOSE";
  spec.pluginName = rootId;
  spec.pluginConfig = pluginConfig(result);
  const doc = { apiVersion: "extensions.istio.io/v1alpha1", kind: "WasmPlugin", metadata: metadata(options), spec };
  return header(result, "WasmPlugin") + stringify(doc, { lineWidth: 0 });
}

/** A TrafficExtension (the WasmPlugin's successor) carrying `wasm`, with the same settings. */
export function emitTrafficExtension(result: CompileResult, options: EmitOptions): string {
  const spec: Record<string, unknown> = {};
  const sel = selector(options);
  if (sel) spec.selector = sel;
  spec.phase = "AUTHZ";
  spec.wasm = {
    url: options.wasmUrl,
    pluginName: rootId,
    failStrategy: "FAIL_CLOSE",
    pluginConfig: pluginConfig(result),
  };
  const doc = { apiVersion: "extensions.istio.io/v1alpha1", kind: "TrafficExtension", metadata: metadata(options), spec };
  return header(result, "TrafficExtension") + stringify(doc, { lineWidth: 0 });
}
