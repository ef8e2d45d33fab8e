// `spiffe-authz compile` through runCompile: exit codes, output, diagnostics on stderr.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { parse } from "yaml";
import { runCompile } from "../../src/cli/compile.ts";
import { isCompiledTable, decodeConfig } from "../../src/compiler/index.ts";
import { istio, ours } from "./support/helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "spiffe-authz-cli-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** Runs the command with stdout and stderr captured. */
async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string | Uint8Array) => ((stdout += String(chunk)), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => ((stderr += String(chunk)), true)) as typeof process.stderr.write;
  try {
    const code = await runCompile(argv);
    return { code, stdout, stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
}

const good = file("good.yaml", ours("api", 'rules:\n  - from: [{ids: ["spiffe://prod.example.com/app/web"]}]', "shop"));
const other = file("other.yaml", istio("mesh", "action: DENY\nrules:\n  - to:\n      - operation:\n          paths: [\"/debug*\"]", { namespace: "istio-system" }));
const bad = file("bad.yaml", ours("api", "rules:\n  - from: [{id: [x]}]\n  - action: maybe"));

describe("spiffe-authz compile", () => {
  it("prints the table configuration on stdout by default", async () => {
    const r = await run(good);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.ok(r.stdout.endsWith("}\n"));
    assert.ok(isCompiledTable(r.stdout));
  });

  it("writes -o FILE and reports what it wrote", async () => {
    const out = join(dir, "table.json");
    const r = await run(good, other, "-o", out);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "");
    const text = readFileSync(out, "utf8");
    const table = decodeConfig(text.trim());
    assert.equal(table.ir.rules.length, 2);
    assert.match(r.stderr, new RegExp(`^wrote ${out.replace(/[.]/g, "\\.")}: 2 rule\\(s\\), table ${table.tableHash}`));
  });

  it("selects policies for --namespace and --label and warns about the dropped ones", async () => {
    const elsewhere = file("elsewhere.yaml", ours("x", "rules: [{}]", "billing"));
    const out = join(dir, "sel.json");
    const r = await run(good, other, elsewhere, "--namespace", "shop", "--label", "app=web", "-o", out);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(decodeConfig(readFileSync(out, "utf8")).ir.rules.length, 2);
    assert.match(r.stderr, new RegExp(`^${elsewhere.replace(/[.]/g, "\\.")}:1:1: warning: policy "billing/x" dropped`, "m"));
    const r2 = await run(good, other, "--namespace", "shop", "--root-namespace", "mesh", "-o", out);
    assert.equal(r2.code, 0);
    assert.equal(decodeConfig(readFileSync(out, "utf8")).ir.rules.length, 1);
  });

  it("policy errors: file:line:col lines on stderr and exit 2", async () => {
    const r = await run(bad);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    assert.deepEqual(r.stderr.split("\n").filter(Boolean), [
      `${bad}:7:15: unknown field "id" in source; did you mean "ids"?`,
      `${bad}:8:15: invalid value "maybe" for "action"; expected one of "allow", "deny", "audit"`,
      "spiffe-authz compile: 2 errors",
    ]);
  });

  it("a missing file is a policy error at file:1:1", async () => {
    const missing = join(dir, "nope.yaml");
    const r = await run(missing);
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`^${missing.replace(/[.]/g, "\\.")}:1:1: cannot read policy file: no such file$`, "m"));
  });

  it("usage errors exit 2 with the usage text", async () => {
    for (const argv of [[], ["--emit", "opa", good], [good, "--label", "novalue"], [good, "--namespace", "Shop"], [good, "--bogus"]]) {
      const r = await run(...argv);
      assert.equal(r.code, 2, argv.join(" "));
      assert.match(r.stderr, /^spiffe-authz compile: .+\nusage: spiffe-authz compile POLICY/);
    }
    const h = await run("--help");
    assert.equal(h.code, 0);
    assert.match(h.stdout, /^usage: spiffe-authz compile/);
  });

  it("--emit wasmplugin uses --name, --namespace, --label and --wasm-url", async () => {
    const r = await run(good, "--emit", "wasmplugin", "--name", "web-authz", "--namespace", "shop", "--label", "app=web", "--wasm-url", "oci://registry.local/authz:1");
    assert.equal(r.code, 0, r.stderr);
    const doc = parse(r.stdout);
    assert.deepEqual(doc.metadata, { name: "web-authz", namespace: "shop" });
    assert.deepEqual(doc.spec.selector, { matchLabels: { app: "web" } });
    assert.equal(doc.spec.url, "oci://registry.local/authz:1");
  });

  it("--emit trafficextension and --emit envoy --wasm PATH", async () => {
    const te = await run(good, "--emit", "trafficextension", "--label", "app=web", "--wasm-url", "https://files.example.com/f.wasm", "--sha256", "b".repeat(64));
    assert.equal(te.code, 0, te.stderr);
    assert.equal(parse(te.stdout).kind, "TrafficExtension");
    const env = await run(good, "--emit", "envoy", "--wasm", "/srv/filter.wasm");
    assert.equal(env.code, 0, env.stderr);
    assert.equal(parse(env.stdout).typed_config.config.vm_config.code.local.filename, "/srv/filter.wasm");
  });
});

describe("compile --proto", () => {
  const proto = join(process.cwd(), "tests/cases/conditions-grpc/config_service.proto");
  const scoped = file("scoped.yaml", ours("cfg", [
    "rules:",
    "  - to: [{grpc: {service: demo.config.v1.DynamicResourceService, methods: [FetchResource]}}]",
    "    condition: request.grpc.message.appname == source.attributes.app",
  ].join("\n")));

  it("compiles a condition on a gRPC message with the .proto file given (repeatable, with --proto-path)", async () => {
    const r = await run(scoped, "--proto", proto, "--proto-path", dir);
    assert.equal(r.code, 0, r.stderr);
    const table = decodeConfig(r.stdout.trim());
    assert.equal(table.ir.rules[0].expr, 0);
    assert.equal(table.ir.maxBodyBytes, 65536);
  });

  it("without it, fails with the position of request.grpc.message and what to pass", async () => {
    const r = await run(scoped);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /scoped\.yaml:8:18: 'request\.grpc\.message' reads the request message of \/demo\.config\.v1\.DynamicResourceService\/FetchResource, which no \.proto file given defines; pass the file with --proto FILE or list it in spec\.protos/);
  });

  it("reports a .proto file that does not load", async () => {
    const r = await run(scoped, "--proto", join(dir, "missing.proto"));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /cannot load/);
  });
});

describe("compile --emit rbac", () => {
  it("prints Envoy RBAC filters for a policy RBAC can express, and refuses one with a CEL condition (exit 2)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "spiffe-authz-rbac-"));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const plain = join(dir, "plain.yaml");
    writeFileSync(plain, `apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata: {name: p}
spec:
  rules:
    - id: frontend
      from: [{ids: ["spiffe://example.org/app/frontend"]}]
      to: [{methods: [GET]}]
`);
    const withCondition = join(dir, "cel.yaml");
    writeFileSync(withCondition, `apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata: {name: p}
spec:
  rules:
    - id: own
      condition: request.headers["x-app"] == source.attributes.app
`);
    const out: string[] = [];
    const err: string[] = [];
    const write = (sink: string[]) => (chunk: string | Uint8Array) => (sink.push(String(chunk)), true);
    const [ow, ew] = [process.stdout.write, process.stderr.write];
    process.stdout.write = write(out) as typeof process.stdout.write;
    process.stderr.write = write(err) as typeof process.stderr.write;
    let ok: number, refused: number;
    try {
      ok = await runCompile([plain, "--emit", "rbac"]);
      refused = await runCompile([withCondition, "--emit", "rbac"]);
    } finally {
      process.stdout.write = ow;
      process.stderr.write = ew;
    }
    assert.equal(ok, 0, err.join(""));
    const text = out.join("");
    assert.match(text, /envoy\.filters\.http\.rbac/);
    assert.match(text, /exact: spiffe:\/\/example\.org\/app\/frontend/);
    assert.match(text, /action: ALLOW/);
    assert.equal(refused, 2);
    assert.match(err.join(""), /rule "own" has a CEL condition/);
  });
});

describe("compile --emit wasmplugin|trafficextension: the module's URL and checksum", () => {
  // A minimal module: the image and the checksum depend on its bytes only.
  const wasm = join(dir, "filter.wasm");
  writeFileSync(wasm, Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]));
  const emitArgs = (...extra: string[]): string[] => [good, "--emit", "wasmplugin", "--label", "app=web", "--wasm", wasm, ...extra];

  it("requires --wasm-url and says what to pass", async () => {
    const r = await run(...emitArgs());
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--wasm-url is required: .*--wasm-url oci:\/\/registry\.example\.com\/spiffe-authz:0\.1\.0/);
    assert.equal(r.stdout, "");
  });

  it("refuses a resource without a selector unless --all-workloads", async () => {
    const url = "oci://registry.example.com/authz:1";
    const r = await run(good, "--emit", "trafficextension", "--wasm", wasm, "--wasm-url", url);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /refusing to emit a resource without a workload selector.*--label KEY=VALUE.*--all-workloads/);
    const all = await run(good, "--emit", "trafficextension", "--wasm", wasm, "--wasm-url", url, "--all-workloads");
    assert.equal(all.code, 0, all.stderr);
    assert.equal(parse(all.stdout).spec.selector, undefined);
  });

  it("rejects invalid URLs with what is wrong", async () => {
    const cases: [string, RegExp][] = [
      ["registry.example.com/authz:1", /give the scheme/],
      ["ftp://registry.example.com/authz.wasm", /scheme "ftp" is not one Istio fetches/],
      ["oci://registry.example.com/Authz:1", /repository component "Authz"/],
      ["oci://registry.example.com/authz:1@sha256:xyz", /digest "sha256:xyz"/],
      ["oci://registry.example.com/authz:-bad", /tag "-bad"/],
      ["oci://", /empty image reference/],
      ["https://user:pw@files.example.com/f.wasm", /credentials do not belong in the URL/],
      ["file://relative/f.wasm", /file:\/\/\/absolute\/path/],
    ];
    for (const [url, message] of cases) {
      const r = await run(...emitArgs("--wasm-url", url));
      assert.equal(r.code, 2, url);
      assert.match(r.stderr, /invalid --wasm-url/, url);
      assert.match(r.stderr, message, url);
    }
  });

  it("pins the digest of the image built from the module for oci://, the module's sha256 for https://", async () => {
    const { buildWasmImage } = await import("../../src/oci/image.ts");
    const { createHash } = await import("node:crypto");
    const image = buildWasmImage(readFileSync(wasm));
    const oci = await run(...emitArgs("--wasm-url", "oci://registry.example.com/authz:1"));
    assert.equal(oci.code, 0, oci.stderr);
    assert.equal(parse(oci.stdout).spec.sha256, image.digest.slice(7));
    assert.equal(parse(oci.stdout).spec.imagePullPolicy, "IfNotPresent");
    assert.match(oci.stderr, /sha256 [0-9a-f]{64} pinned from the compat image of/);
    const https = await run(...emitArgs("--wasm-url", "https://files.example.com/f.wasm", "--image-pull-policy", "Always"));
    assert.equal(https.code, 0, https.stderr);
    assert.equal(parse(https.stdout).spec.sha256, createHash("sha256").update(readFileSync(wasm)).digest("hex"));
    assert.equal(parse(https.stdout).spec.imagePullPolicy, "Always");
    const bad = await run(...emitArgs("--wasm-url", "https://files.example.com/f.wasm", "--image-pull-policy", "Sometimes"));
    assert.equal(bad.code, 2);
  });

  it("takes the digest from the URL, --sha256 or an image layout, and refuses a contradiction", async () => {
    const digest = "c".repeat(64);
    const inUrl = await run(...emitArgs("--wasm-url", `oci://registry.example.com/authz@sha256:${digest}`));
    assert.equal(inUrl.code, 0, inUrl.stderr);
    assert.equal(parse(inUrl.stdout).spec.sha256, digest);
    const conflict = await run(...emitArgs("--wasm-url", `oci://registry.example.com/authz@sha256:${digest}`, "--sha256", "d".repeat(64)));
    assert.equal(conflict.code, 2);
    assert.match(conflict.stderr, /contradicts the digest in --wasm-url/);
    const flag = await run(...emitArgs("--wasm-url", "oci://registry.example.com/authz:1", "--sha256", `sha256:${"e".repeat(64)}`));
    assert.equal(parse(flag.stdout).spec.sha256, "e".repeat(64));

    const { buildWasmImage } = await import("../../src/oci/image.ts");
    const { writeLayout } = await import("../../src/oci/layout.ts");
    const layout = join(dir, "layout");
    const other = buildWasmImage(Buffer.concat([readFileSync(wasm), Buffer.from([0])]), { variant: "oci" });
    await writeLayout(layout, [{ name: "1", image: other }]);
    const fromLayout = await run(...emitArgs("--wasm-url", "oci://registry.example.com/authz:1", "--image", layout));
    assert.equal(fromLayout.code, 0, fromLayout.stderr);
    assert.equal(parse(fromLayout.stdout).spec.sha256, other.digest.slice(7));
    const notLayout = await run(...emitArgs("--wasm-url", "oci://registry.example.com/authz:1", "--image", dir));
    assert.equal(notLayout.code, 2);
    assert.match(notLayout.stderr, /is not an OCI image layout/);
  });
});
