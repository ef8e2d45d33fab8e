// Emitters `wasmplugin` and `trafficextension`: the Istio resources that load the filter with the table.
// Field names follow the CRDs in schemas/istio/ (extensions.istio.io/v1alpha1); a unit test validates the output
// against them.

import { stringify } from "yaml";
import { rootId } from "../../envoy/render.ts";
import type { CompileResult } from "../index.ts";
import { EmitError } from "./options.ts";
import type { EmitOptions } from "./options.ts";

function metadata(options: EmitOptions): Record<string, unknown> {
  const md: Record<string, unknown> = { name: options.name };
  if (options.namespace) md.namespace = options.namespace;
  return md;
}

/**
 * The workload selector. A resource without one applies to every workload of its namespace (all of the mesh in the
 * root namespace), and this filter denies by default: that is only emitted when asked for with `allWorkloads`.
 */
function selector(options: EmitOptions): Record<string, unknown> | undefined {
  const labels = options.labels ?? {};
  const has = Object.keys(labels).length > 0;
  if (has && options.allWorkloads) throw new EmitError("--all-workloads and --label contradict each other: give one");
  if (!has && !options.allWorkloads) {
    throw new EmitError(
      "refusing to emit a resource without a workload selector: it would put a deny-by-default filter in front of every " +
        "workload of the namespace; pass --label KEY=VALUE for the workloads it is for, or --all-workloads if that is the intent",
    );
  }
  return has ? { matchLabels: { ...labels } } : undefined;
}

/** The module's location and checksum, in the order Istio's docs list them. */
function moduleFields(options: EmitOptions): Record<string, unknown> {
  if (options.wasmUrl === undefined) {
    throw new EmitError(
      "--wasm-url is required: the URL Istio pulls the filter from, e.g. --wasm-url oci://registry.example.com/spiffe-authz:0.1.0 " +
        "(push the image with `spiffe-authz image --push REF`)",
    );
  }
  const fields: Record<string, unknown> = { url: options.wasmUrl };
  if (options.sha256 !== undefined) fields.sha256 = options.sha256;
  fields.imagePullPolicy = options.imagePullPolicy ?? "IfNotPresent";
  return fields;
}

/**
 * The table as Istio's `pluginConfig`, which Istio hands to the filter as JSON (`{"headers":"continue","table":"..."}`,
 * the configuration form of docs/table-format.md §1), with `headers: continue`: a WasmPlugin (and TrafficExtension)
 * cannot set the wasm filter's allow_on_headers_stop_iteration, and without it Envoy 1.40 turns the StopIteration
 * of the default mode into StopAllIterationAndWatermark and never delivers the body, so a request that a body rule
 * must decide would stall. In `continue` mode the headers go upstream and only the body waits for the decision
 * (docs/istio-bodies.md); a policy without body rules never waits, so the mode changes nothing for it.
 */
function pluginConfig(result: CompileResult): Record<string, unknown> {
  const table = (JSON.parse(result.config) as { table: string }).table;
  return { headers: "continue", table };
}

function header(result: CompileResult, kind: string): string {
  return `# spiffe-authz ${kind}: ${result.ruleCount} rule(s), table ${result.tableHash}.\n`;
}

/** A WasmPlugin in phase AUTHZ that fails closed, its module pinned by checksum. */
export function emitWasmPlugin(result: CompileResult, options: EmitOptions): string {
  const spec: Record<string, unknown> = {};
  const sel = selector(options);
  if (sel) spec.selector = sel;
  Object.assign(spec, moduleFields(options));
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
    ...moduleFields(options),
    pluginName: rootId,
    failStrategy: "FAIL_CLOSE",
    pluginConfig: pluginConfig(result),
  };
  const doc = { apiVersion: "extensions.istio.io/v1alpha1", kind: "TrafficExtension", metadata: metadata(options), spec };
  return header(result, "TrafficExtension") + stringify(doc, { lineWidth: 0 });
}
