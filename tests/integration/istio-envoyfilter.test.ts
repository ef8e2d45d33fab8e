// The EnvoyFilter that restores strict body handling under Istio (docs/istio-bodies.md,
// examples/config-service/istio/envoyfilter.yaml). No Istio here: the checks are the structure Istio's EnvoyFilter
// API accepts (enums of its CRD, the operations istiod applies per `applyTo`), agreement with the filter settings our
// renderer writes, and Envoy 1.40 itself accepting the `envoy.filters.http.wasm` configuration the patch carries.
import assert from "node:assert/strict";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { parse } from "yaml";
import { compileDemoPolicy } from "../../dev/demo/config.ts";
import { repoRoot } from "../../dev/envoy/binary.ts";
import { createPki } from "../../src/envoy/pki.ts";
import { renderVariant, rootId, routerFilter, toYaml, wasmFilter } from "../../src/envoy/render.ts";
import type { EnvoyObject } from "../../src/envoy/render.ts";
import { validateEnvoyConfig } from "../../dev/envoy/run.ts";
import { ensureWasm } from "../../dev/envoy/wasm.ts";
import { tempDir } from "../support/envoy-fixture.ts";

const file = "examples/config-service/istio/envoyfilter.yaml";
const placeholder = '{"table":"REPLACE_WITH_COMPILED_TABLE"}';
const wasmType = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

// Values of Istio's EnvoyFilter API (networking.istio.io/v1alpha3).
const applyToValues = [
  "LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER", "ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE",
  "CLUSTER", "EXTENSION_CONFIG", "BOOTSTRAP", "LISTENER_FILTER",
];
const contextValues = ["ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"];
/** What istiod applies per `applyTo` (EXTENSION_CONFIG: only ADD, see envoyfilter/extension_configuration_patch.go). */
const operationsFor: Record<string, string[]> = {
  EXTENSION_CONFIG: ["ADD"],
  HTTP_FILTER: ["MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE"],
};

interface Patch {
  applyTo: string;
  match?: { context?: string; listener?: { filterChain?: { filter?: { name?: string; subFilter?: { name?: string } } } } };
  patch: { operation: string; value: Record<string, unknown> };
}
interface EnvoyFilterDoc {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string };
  spec: { workloadSelector: { labels: Record<string, string> }; configPatches: Patch[] };
}

/** The `config` (PluginConfig) of a Wasm typed_config. */
type PluginConfig = Record<string, unknown> & { vm_config: Record<string, unknown>; configuration: { "@type": string; value: string } };

describe("EnvoyFilter for body rules under Istio", () => {
  let text: string;
  let doc: EnvoyFilterDoc;
  const patch = (applyTo: string): Patch => {
    const found = doc.spec.configPatches.filter((p) => p.applyTo === applyTo);
    assert.equal(found.length, 1, `one ${applyTo} patch`);
    return found[0];
  };
  const extensionConfig = () => patch("EXTENSION_CONFIG").patch.value as { name: string; typed_config: { "@type": string; config: PluginConfig } };

  before(async () => {
    text = await readFile(join(repoRoot, file), "utf8");
    doc = parse(text) as EnvoyFilterDoc;
  });

  test("is the file docs/istio-bodies.md shows, verbatim", async () => {
    const page = await readFile(join(repoRoot, "docs/istio-bodies.md"), "utf8");
    const blocks = [...page.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]);
    assert.ok(blocks.includes(text), `docs/istio-bodies.md shows ${file} as it is`);
  });

  test("has the shape Istio accepts: kinds, selector, enums, one operation each applyTo supports", () => {
    assert.equal(doc.apiVersion, "networking.istio.io/v1alpha3");
    assert.equal(doc.kind, "EnvoyFilter");
    assert.ok(doc.metadata.name.length > 0 && doc.metadata.namespace.length > 0);
    const labels = Object.entries(doc.spec.workloadSelector.labels);
    assert.ok(labels.length > 0, "selects the workload (an EnvoyFilter without selector applies to every proxy of the namespace)");
    for (const [k, v] of labels) assert.ok(!k.includes("*") && !v.includes("*") && k.length > 0);
    assert.deepEqual(Object.keys(doc.spec).sort(), ["configPatches", "workloadSelector"]);
    for (const p of doc.spec.configPatches) {
      assert.ok(applyToValues.includes(p.applyTo), p.applyTo);
      assert.ok(operationsFor[p.applyTo]?.includes(p.patch.operation), `${p.applyTo} ${p.patch.operation}`);
      if (p.match?.context !== undefined) assert.ok(contextValues.includes(p.match.context));
    }
    const filter = patch("HTTP_FILTER");
    assert.equal(filter.match?.context, "SIDECAR_INBOUND");
    assert.equal(filter.patch.operation, "INSERT_BEFORE");
    assert.equal(filter.match?.listener?.filterChain?.filter?.name, "envoy.filters.network.http_connection_manager");
    assert.equal(filter.match?.listener?.filterChain?.filter?.subFilter?.name, routerFilter.name);
  });

  test("the HTTP filter references the extension config by name and type", () => {
    const value = patch("HTTP_FILTER").patch.value as {
      name: string;
      typed_config?: unknown;
      config_discovery: { config_source: { ads: object; resource_api_version: string }; type_urls: string[] };
    };
    const ext = extensionConfig();
    assert.equal(value.name, ext.name);
    assert.equal(value.typed_config, undefined, "a reference, not a second inline copy");
    assert.deepEqual(value.config_discovery.type_urls, [ext.typed_config["@type"]]);
    assert.equal(ext.typed_config["@type"], wasmType);
    assert.deepEqual(value.config_discovery.config_source.ads, {});
    assert.equal(value.config_discovery.config_source.resource_api_version, "V3");
  });

  test("carries the plugin settings our renderer writes, allow_on_headers_stop_iteration included", () => {
    const config = extensionConfig().typed_config.config;
    const rendered = (wasmFilter({ wasmPath: "unused.wasm", configuration: placeholder }).typed_config as { config: PluginConfig }).config;
    assert.equal(config.allow_on_headers_stop_iteration, true);
    assert.equal(config.fail_open, false);
    assert.equal(config.root_id, rootId);
    const { vm_config: vm, configuration, ...rest } = config;
    const { vm_config: renderedVm, configuration: renderedConfiguration, ...renderedRest } = rendered;
    assert.deepEqual(rest, renderedRest);
    assert.deepEqual({ ...vm, code: undefined }, { ...renderedVm, code: undefined });
    assert.deepEqual(configuration, renderedConfiguration);
    const remote = (vm.code as { remote: { http_uri: { uri: string; cluster: string; timeout: string }; sha256: string } }).remote;
    assert.match(remote.http_uri.uri, /^(oci|https):\/\//);
    assert.ok(remote.http_uri.cluster.length > 0 && remote.sha256.length > 0, "Envoy's schema requires both");
  });

  describe("with a real table and a local module", () => {
    let dir: string;
    before(async () => {
      dir = await tempDir("istio-envoyfilter");
    });
    after(async () => {
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    });

    test("the documented sed substitution yields the table, and Envoy 1.40 accepts the wasm configuration", async () => {
      const table = compileDemoPolicy().config;
      assert.equal(text.split(placeholder).length, 2, "the placeholder appears once");
      // What `sed "s|{\"table\":\"REPLACE_WITH_COMPILED_TABLE\"}|$TABLE|"` does (base64 has no `|`, `&` or `\`).
      assert.doesNotMatch(table, /[|&\\]/);
      const filled = parse(text.replace(placeholder, table)) as EnvoyFilterDoc;
      const ext = filled.spec.configPatches.find((p) => p.applyTo === "EXTENSION_CONFIG")!.patch.value as {
        typed_config: { config: PluginConfig };
      };
      assert.equal(ext.typed_config.config.configuration.value, table);

      // Envoy checks the field names and types (an unknown field fails validation) and runs the filter's
      // onConfigure on the table. The remote code is what istio-agent replaces; here it is the local build.
      const [wasmPath, pki] = await Promise.all([ensureWasm(), createPki(join(dir, "certs"), { trustDomain: "config.example.com", clients: [] })]);
      const wasmConfig = structuredClone(ext.typed_config) as { config: PluginConfig } & EnvoyObject;
      wasmConfig.config.vm_config.code = { local: { filename: wasmPath } };
      const bootstrap = renderVariant({
        variant: "baseline",
        admin: { port: 0 },
        listener: { port: 21448 },
        upstream: { http: { port: 21083 } },
        tls: { certChain: pki.server.cert, privateKey: pki.server.key, trustedCa: pki.ca.cert },
      });
      type Listener = { filter_chains: { filters: { typed_config: { http_filters: EnvoyObject[] } }[] }[] };
      const listener = (bootstrap.static_resources as { listeners: Listener[] }).listeners[0];
      listener.filter_chains[0].filters[0].typed_config.http_filters = [
        { name: "config.spiffe-authz", typed_config: wasmConfig },
        routerFilter,
      ];
      const path = join(dir, "envoyfilter-wasm.yaml");
      await writeFile(path, toYaml(bootstrap));
      const result = await validateEnvoyConfig(path);
      assert.ok(result.ok, `envoy --mode validate rejected the EnvoyFilter's wasm configuration:\n${result.output}`);

      // The same with a misspelt field fails: the check above is not vacuous.
      (wasmConfig.config as Record<string, unknown>).allow_on_header_stop_iteration = true;
      await writeFile(path, toYaml(bootstrap));
      assert.equal((await validateEnvoyConfig(path)).ok, false);
    });
  });
});
