// Emitters: every Istio manifest validates against its CRD in schemas/istio/ (checked twice: with plain ajv on the
// CRD's openAPIV3Schema, independent of the compiler's own validator, and with that validator); the Envoy entry
// carries the table and passes `envoy --mode validate` around the real build/release.wasm.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, it } from "node:test";
import { Ajv } from "ajv";
import { parse, stringify } from "yaml";
import { compileTexts, decodeConfig } from "../../src/compiler/index.ts";
import { EmitError, emit } from "../../src/compiler/emit/index.ts";
import { DEFAULT_WASM_PATH } from "../../src/paths.ts";
import { CRD_FILES, validateIstioManifest } from "../../src/compiler/emit/validate.ts";
import { findEnvoy } from "../../dev/envoy/binary.ts";
import { ensureWasm } from "../../dev/envoy/wasm.ts";
import { hostNameRegex } from "../../src/compiler/emit/rbac.ts";
import type { PatternIR } from "../../src/compiler/ir.ts";
import { hostName } from "./support/reference.ts";

const policy = compileTexts([{ file: "orders-api.yaml", text: readFileSync("examples/policies/orders-api.yaml", "utf8") }]);
const url = "oci://registry.example.com/spiffe-authz:0.1.0";
const sha256 = "a".repeat(64);
const options = { namespace: "shop", labels: { app: "orders", "app.kubernetes.io/version": "v1" }, name: "orders-authz", wasmUrl: url, sha256 };

/** The openAPIV3Schema of a CRD version, read straight from schemas/istio/. */
function crdSchema(kind: string, version: string): Record<string, unknown> {
  const crd = parse(readFileSync(join("schemas/istio", CRD_FILES[kind]), "utf8")) as {
    spec: { versions: { name: string; schema: { openAPIV3Schema: Record<string, unknown> } }[] };
  };
  return crd.spec.versions.find((v) => v.name === version)!.schema.openAPIV3Schema;
}

function plainAjv(): Ajv {
  const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false });
  return ajv;
}

describe("istio manifests", () => {
  for (const kind of ["wasmplugin", "trafficextension"] as const) {
    it(`${kind} is valid against its CRD and carries the table as pluginConfig`, () => {
      const text = emit(kind, policy, options);
      const doc = parse(text) as Record<string, any>;
      const [group, version] = String(doc.apiVersion).split("/");
      assert.equal(group, "extensions.istio.io");
      const validate = plainAjv().compile(crdSchema(doc.kind, version));
      assert.ok(validate(doc), JSON.stringify(validate.errors));
      assert.deepEqual(validateIstioManifest(text), []);

      assert.deepEqual(doc.metadata, { name: "orders-authz", namespace: "shop" });
      assert.deepEqual(doc.spec.selector, { matchLabels: options.labels });
      assert.equal(doc.spec.phase, "AUTHZ");
      const wasm = kind === "wasmplugin" ? doc.spec : doc.spec.wasm;
      assert.equal(wasm.failStrategy, "FAIL_CLOSE");
      assert.equal(wasm.pluginName, "spiffe_authz");
      assert.equal(wasm.url, url);
      assert.equal(wasm.sha256, sha256);
      assert.equal(wasm.imagePullPolicy, "IfNotPresent");
      // Istio hands pluginConfig to the filter as JSON: the configuration string plus the continue mode (a WasmPlugin
      // cannot set allow_on_headers_stop_iteration, docs/istio-bodies.md).
      assert.deepEqual(wasm.pluginConfig, { headers: "continue", table: (JSON.parse(policy.config) as { table: string }).table });
      const decoded = decodeConfig(JSON.stringify(wasm.pluginConfig));
      assert.equal(decoded.tableHash, policy.tableHash);
      assert.equal(decoded.headers, "continue");
    });
  }

  it("refuses a resource without a selector unless allWorkloads says so, and one without a URL", () => {
    for (const kind of ["wasmplugin", "trafficextension"] as const) {
      assert.throws(() => emit(kind, policy, { wasmUrl: url }), (e: Error) =>
        e instanceof EmitError && /without a workload selector.*--label KEY=VALUE.*--all-workloads/.test(e.message));
      assert.throws(() => emit(kind, policy, { wasmUrl: url, labels: { app: "x" }, allWorkloads: true }), /contradict/);
      assert.throws(() => emit(kind, policy, { labels: { app: "x" } }), (e: Error) =>
        e instanceof EmitError && /--wasm-url is required.*oci:\/\/.*spiffe-authz image --push/.test(e.message));
    }
    const doc = parse(emit("wasmplugin", policy, { wasmUrl: url, allWorkloads: true, imagePullPolicy: "Always" })) as Record<string, any>;
    assert.deepEqual(doc.metadata, { name: "spiffe-authz" });
    assert.equal(doc.spec.selector, undefined);
    assert.equal(doc.spec.imagePullPolicy, "Always");
    assert.deepEqual(validateIstioManifest(emit("trafficextension", policy, { wasmUrl: url, allWorkloads: true })), []);
  });

  it("the CRD rejects a checksum that is not 64 hex digits (the pin is checked, not decoration)", () => {
    const doc = parse(emit("wasmplugin", policy, { ...options, sha256: "sha256:" + sha256 })) as Record<string, any>;
    assert.ok(validateIstioManifest(stringify(doc)).some((p) => /sha256/.test(p)));
  });

  it("the validator rejects manifests the CRD rejects (so passing means something)", () => {
    const doc = parse(emit("wasmplugin", policy, options)) as Record<string, any>;
    doc.spec.phase = "AUTHORIZE";
    doc.spec.failStrategy = "FAIL_SOMETIMES";
    doc.spec.pluginNmae = "x";
    doc.spec.targetRefs = [{ kind: "Gateway", name: "gw" }];
    const problems = validateIstioManifest(stringify(doc), "m.yaml");
    assert.ok(problems.some((p) => /invalid value "AUTHORIZE" for "phase"/.test(p)), problems.join("\n"));
    assert.ok(problems.some((p) => /invalid value "FAIL_SOMETIMES" for "failStrategy"/.test(p)));
    assert.ok(problems.some((p) => /unknown field "pluginNmae" in spec; did you mean "pluginName"\?/.test(p)));
    assert.ok(problems.some((p) => /only one of targetRefs or selector can be set/.test(p)));
    const te = parse(emit("trafficextension", policy, options)) as Record<string, any>;
    te.spec.lua = { inlineCode: "x" };
    assert.ok(validateIstioManifest(stringify(te)).some((p) => /exactly one of wasm or lua must be set/.test(p)));
    assert.equal(plainAjv().compile(crdSchema("WasmPlugin", "v1alpha1"))(doc), false);
  });
});

describe("envoy filter entry", () => {
  it("is an envoy.filters.http.wasm entry with root id, V8, the module, the table and fail_open false", () => {
    const entry = parse(emit("envoy", policy, { wasmPath: "/opt/spiffe-authz.wasm" })) as Record<string, any>;
    assert.equal(entry.name, "envoy.filters.http.wasm");
    const tc = entry.typed_config;
    assert.equal(tc["@type"], "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm");
    assert.equal(tc.config.root_id, "spiffe_authz");
    assert.equal(tc.config.vm_config.runtime, "envoy.wasm.runtime.v8");
    assert.equal(tc.config.vm_config.code.local.filename, "/opt/spiffe-authz.wasm");
    assert.equal(tc.config.configuration["@type"], "type.googleapis.com/google.protobuf.StringValue");
    assert.equal(tc.config.configuration.value, policy.config);
    assert.equal(tc.config.fail_open, false);
    // Strict mode: the configuration holds headers (no "headers" key) and the filter entry lets Envoy deliver the body.
    assert.equal(decodeConfig(tc.config.configuration.value).headers, "hold");
    assert.equal(tc.config.allow_on_headers_stop_iteration, true);
  });

  it("defaults to the absolute path of build/release.wasm", () => {
    const entry = parse(emit("envoy", policy)) as Record<string, any>;
    assert.equal(entry.typed_config.config.vm_config.code.local.filename, DEFAULT_WASM_PATH);
    assert.ok(DEFAULT_WASM_PATH.startsWith("/") && DEFAULT_WASM_PATH.endsWith("/build/release.wasm"));
  });

  it("the table emitter is the configuration string and a newline", () => {
    assert.equal(emit("table", policy), policy.config + "\n");
  });

  it("passes envoy --mode validate with the real module, which loads the table", { timeout: 600_000 }, async () => {
    const wasm = await ensureWasm(() => {});
    const envoy = await findEnvoy();
    const entry = parse(emit("envoy", policy, { wasmPath: wasm }));
    const hcm = {
      "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
      stat_prefix: "unit",
      route_config: { virtual_hosts: [{ name: "all", domains: ["*"], routes: [{ match: { prefix: "/" }, direct_response: { status: 200 } }] }] },
      http_filters: [entry, { name: "envoy.filters.http.router", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } }],
    };
    const bootstrap = {
      static_resources: {
        listeners: [
          {
            name: "unit",
            address: { socket_address: { address: "127.0.0.1", port_value: 10000 } },
            filter_chains: [{ filters: [{ name: "envoy.filters.network.http_connection_manager", typed_config: hcm }] }],
          },
        ],
      },
    };
    const dir = mkdtempSync(join(tmpdir(), "spiffe-authz-emit-"));
    try {
      const file = join(dir, "envoy.yaml");
      writeFileSync(file, stringify(bootstrap, { lineWidth: 0 }));
      const { stdout, stderr } = await promisify(execFile)(envoy, ["--mode", "validate", "-c", file, "--log-level", "info"], {
        timeout: 120_000,
        maxBuffer: 16 * 1024 * 1024,
      });
      const out = stdout + stderr;
      assert.match(out, /OK/, out);
      assert.ok(out.includes(policy.tableHash), "the filter logged the table it loaded:\n" + out);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("--emit rbac: our format's host names as a regex over :authority", () => {
  // The same semantics as the filter (engine/match.ts hostName, the reference evaluator's hostName).
  const authorities = ["a.com", "A.COM", "a.com.", "a.com:8443", "a.com.:1", "u@a.com", "u:p@a.com:9", "x@y@a.com", "a.comx",
    "b.a.com", "b.a.com.", ".a.com", "a.com..", "svc.", "svc.x", "svc", "svcx", "[::1]", "[::1]:80", "::1", ".", "..", "", ":80", "@"];
  const patterns: PatternIR[] = [
    { kind: "exact", value: "a.com" }, { kind: "suffix", value: ".a.com" }, { kind: "prefix", value: "svc." },
    { kind: "prefix", value: "svc" }, { kind: "present", value: "" }, { kind: "exact", value: "[::1]" }, { kind: "suffix", value: "com." },
  ];
  const matches = (p: PatternIR, name: string): boolean =>
    p.kind === "exact" ? name === p.value : p.kind === "prefix" ? name.startsWith(p.value) : p.kind === "suffix" ? name.endsWith(p.value) : name.length > 0;
  for (const p of patterns) {
    it(`${p.kind} ${JSON.stringify(p.value)}`, () => {
      const regex = new RegExp(hostNameRegex(p).replace("(?i)", ""), "i");
      for (const a of authorities) assert.equal(regex.test(a), matches(p, hostName(a.toLowerCase())), `${JSON.stringify(a)} against ${hostNameRegex(p)}`);
    });
  }
});
