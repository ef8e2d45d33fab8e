/**
 * How Istio delivers a WasmPlugin to a sidecar, emulated with Istio's own shapes so the path can run against a real
 * Envoy without a cluster (read from istio.io/istio: pilot/pkg/model/extensions.go, pilot/pkg/networking/core/
 * extension/wasmplugin.go, pkg/wasm/convert.go and cache.go):
 *
 * 1. istiod turns the WasmPlugin into a `TypedExtensionConfig` named `<namespace>.<name>` wrapping
 *    `envoy.extensions.filters.http.wasm.v3.Wasm`: `root_id` = pluginName, `configuration` = a StringValue of the
 *    pluginConfig's JSON, runtime V8, `code.remote` with the URL and sha256, `failure_policy: FAIL_CLOSED` for
 *    FAIL_CLOSE ({@link wasmPluginToExtensionConfig}); the listener's filter names it with `config_discovery`
 *    (`ecdsFilter` in render.ts).
 * 2. istio-agent intercepts that ECDS resource, downloads the module (an OCI image by manifest digest, or a URL by
 *    the module's sha256), rewrites `code.remote` to `code.local.filename`, and when the module cannot be fetched
 *    serves, under the same name, an RBAC filter that denies everything (FAIL_CLOSE, FAIL_RELOAD) or allows
 *    everything (FAIL_OPEN) ({@link agentConvert}).
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { extractWasm } from "../../src/oci/image.ts";
import { parseImageReference } from "../../src/oci/reference.ts";
import { RegistryClient } from "../../src/oci/registry.ts";
import { denyAllExtensionConfig, rbacTypeUrl, wasmTypeUrl } from "../../src/envoy/render.ts";
import type { EnvoyObject } from "../../src/envoy/render.ts";

/** The fields of a WasmPlugin (or a TrafficExtension's `wasm`) that istiod reads. */
export interface WasmPluginSpec {
  url: string;
  sha256?: string;
  imagePullPolicy?: string;
  pluginName?: string;
  failStrategy?: "FAIL_CLOSE" | "FAIL_OPEN" | "FAIL_RELOAD";
  pluginConfig?: Record<string, unknown>;
}

/** The ECDS resource istiod serves for a WasmPlugin `<namespace>/<name>`. */
export function wasmPluginToExtensionConfig(namespace: string, name: string, spec: WasmPluginSpec): EnvoyObject {
  const resourceName = `${namespace}.${name}`;
  // A URL without a scheme is an OCI image to istiod.
  const url = /^[a-z][a-z0-9+.-]*:\/\//i.test(spec.url) ? spec.url : `oci://${spec.url}`;
  const code = url.startsWith("file://")
    ? { local: { filename: url.slice("file://".length) } }
    : { remote: { http_uri: { uri: url, timeout: "30s", cluster: "_" }, sha256: spec.sha256 ?? "" } };
  const config: EnvoyObject = {
    name: resourceName,
    root_id: spec.pluginName ?? "",
    vm_config: {
      runtime: "envoy.wasm.runtime.v8",
      code,
      environment_variables: { key_values: { ISTIO_META_WASM_IMAGE_PULL_POLICY: spec.imagePullPolicy ?? "UNSPECIFIED_POLICY" } },
    },
    failure_policy: spec.failStrategy === "FAIL_OPEN" ? "FAIL_OPEN" : spec.failStrategy === "FAIL_RELOAD" ? "FAIL_RELOAD" : "FAIL_CLOSED",
  };
  if (spec.pluginConfig !== undefined && Object.keys(spec.pluginConfig).length > 0) {
    config.configuration = { "@type": "type.googleapis.com/google.protobuf.StringValue", value: JSON.stringify(spec.pluginConfig) };
  }
  return { name: resourceName, typed_config: { "@type": wasmTypeUrl, config } };
}

export interface AgentOptions {
  /** Where downloaded modules are stored (istio-agent's wasm cache directory). */
  cacheDir: string;
  /** Plain HTTP to OCI registries (istio-agent's WASM_INSECURE_REGISTRIES). */
  insecureRegistries?: boolean;
}

export interface AgentResult {
  /** The resource to hand Envoy. */
  resource: EnvoyObject;
  /** Why the module could not be used (then `resource` is the RBAC substitute), or null. */
  failure: string | null;
}

/** Downloads a module as istio-agent does and returns its bytes after checking the checksum. */
async function fetchModule(url: string, sha256: string, options: AgentOptions): Promise<Buffer> {
  if (url.startsWith("oci://")) {
    const ref = parseImageReference(url);
    const image = await new RegistryClient(ref, { plainHttp: options.insecureRegistries }).pull();
    // For an image the checksum is the manifest digest (pkg/wasm/imagefetcher.go: img.Digest()).
    const digest = image.digest.slice("sha256:".length);
    if (sha256 !== "" && digest !== sha256) {
      throw new Error(`module downloaded from ${url} has checksum ${digest}, which does not match: ${sha256}`);
    }
    return (await extractWasm(image)).wasm;
  }
  if (url.startsWith("http://") || url.startsWith("https://")) {
    const res = await fetch(url, { signal: AbortSignal.timeout(30_000) });
    if (!res.ok) throw new Error(`${url} answered ${res.status}`);
    const bytes = Buffer.from(await res.arrayBuffer());
    const digest = createHash("sha256").update(bytes).digest("hex");
    if (sha256 !== "" && digest !== sha256) {
      throw new Error(`module downloaded from ${url} has checksum ${digest}, which does not match: ${sha256}`);
    }
    return bytes;
  }
  throw new Error(`unsupported Wasm module downloading URL scheme: ${url}`);
}

/** istio-agent's conversion of one ECDS resource (pkg/wasm/convert.go). */
export async function agentConvert(resource: EnvoyObject, options: AgentOptions): Promise<AgentResult> {
  const typed = resource.typed_config as { "@type": string; config: EnvoyObject };
  if (typed["@type"] !== wasmTypeUrl) return { resource, failure: null };
  const config = structuredClone(typed.config) as {
    vm_config: { code: { remote?: { http_uri: { uri: string }; sha256?: string }; local?: unknown }; environment_variables?: { key_values?: Record<string, string> } };
    failure_policy?: string;
  };
  const remote = config.vm_config.code.remote;
  if (remote === undefined) return { resource, failure: null };
  try {
    const wasm = await fetchModule(remote.http_uri.uri, remote.sha256 ?? "", options);
    if (wasm.length < 8 || wasm.readUInt32BE(0) !== 0x0061736d) throw new Error(`fetched Wasm binary from ${remote.http_uri.uri} is invalid`);
    await mkdir(options.cacheDir, { recursive: true });
    const file = join(options.cacheDir, `${createHash("sha256").update(wasm).digest("hex")}.wasm`);
    await writeFile(file, wasm);
    config.vm_config.code = { local: { filename: file } };
    // The ISTIO_META_* variables are for the agent; it strips them before Envoy sees the config.
    const env = config.vm_config.environment_variables?.key_values;
    if (env !== undefined) {
      for (const k of Object.keys(env)) if (k.startsWith("ISTIO_META_")) delete env[k];
      if (Object.keys(env).length === 0) delete config.vm_config.environment_variables;
    }
    return { resource: { name: resource.name, typed_config: { "@type": wasmTypeUrl, config } }, failure: null };
  } catch (err) {
    const failure = (err as Error).message;
    if (config.failure_policy === "FAIL_OPEN") {
      return { resource: { name: resource.name, typed_config: { "@type": rbacTypeUrl } }, failure };
    }
    return { resource: denyAllExtensionConfig(resource.name as string), failure };
  }
}

/** Reads a module file's bytes (for tests comparing what the agent stored). */
export function readCachedModule(resource: EnvoyObject): Promise<Buffer> {
  const file = (((resource.typed_config as EnvoyObject).config as EnvoyObject).vm_config as { code: { local: { filename: string } } }).code.local.filename;
  return readFile(file);
}
