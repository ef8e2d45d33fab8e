// Rule conditions (CEL) in the policy compiler: compilation into the table's EXPR section, diagnostics at the
// exact line and column inside the policy file (every YAML scalar style), gRPC scoping and .proto files, and the
// body settings of spec.body.

import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { compileTexts, decodeConfig, DEFAULT_MAX_BODY_BYTES, PolicyError } from "../../src/compiler/index.ts";
import { decodeSection } from "../../src/cel/index.ts";
import { formatDiagnostic } from "../../src/policy/diagnostics.ts";
import { compileYaml, errorsOf, ours } from "./support/helpers.ts";

const PROTO = path.resolve("examples/config-service/config_service.proto");
const SCOPED = "to: [{grpc: {service: demo.config.v1.DynamicResourceService, methods: [FetchResource]}}]";

function errors(text: string, protos: string[] = [], file = "policy.yaml"): string[] {
  try {
    compileTexts([{ file, text }], undefined, { protos });
    return [];
  } catch (e) {
    if (e instanceof PolicyError) return e.diagnostics.map(formatDiagnostic);
    throw e;
  }
}

describe("conditions compile into the table", () => {
  it("a condition becomes a program of the EXPR section that the rule indexes; the table decodes back", () => {
    const r = compileYaml(ours("c", `
      rules:
        - id: a
          condition: request.headers['x-tenant'] == 'acme'
        - id: b
        - id: c
          condition: "source.attributes.app in ['web', 'orders']"
    `));
    assert.deepEqual(r.ir.rules.map((x) => x.expr), [0, null, 1]);
    assert.equal(decodeSection(r.ir.expr!).programs.length, 2);
    assert.equal(r.ir.maxBodyBytes, 0, "no condition reads a body: nothing is buffered");
    const back = decodeConfig(r.config);
    assert.deepEqual(back.ir, r.ir);
  });

  it("rules with the same condition share one program (and can still form one family)", () => {
    const rules = ["a", "b", "c"].map((id) => `  - id: ${id}\n    from: [{ids: ["spiffe://td/app/${id}"]}]\n    condition: request.method == 'GET'`).join("\n");
    const r = compileYaml(ours("c", `rules:\n${rules}`));
    assert.deepEqual(r.ir.rules.map((x) => x.expr), [0, 0, 0]);
    assert.equal(decodeSection(r.ir.expr!).programs.length, 1);
    assert.equal(decodeConfig(r.config).families, 1);
  });

  it("a table without conditions has no EXPR section", () => {
    const r = compileYaml(ours("c", "rules:\n  - id: a"));
    assert.equal(r.ir.expr, null);
    assert.equal(r.ir.maxBodyBytes, 0);
  });

  it("reading request.json sets the default body limit; spec.body.maxBytes changes it", () => {
    const json = compileYaml(ours("c", "rules:\n  - condition: request.json.tenant == 'a'"));
    assert.equal(json.ir.maxBodyBytes, DEFAULT_MAX_BODY_BYTES);
    assert.equal(DEFAULT_MAX_BODY_BYTES, 65536);
    const small = compileYaml(ours("c", "body: {maxBytes: 1024}\nrules:\n  - condition: request.json.tenant == 'a'"));
    assert.equal(small.ir.maxBodyBytes, 1024);
    assert.equal(decodeConfig(small.config).ir.maxBodyBytes, 1024);
  });

  it("grpcMessages: first is written only for conditions on gRPC messages; unused settings warn", () => {
    const text = ours("c", `protos: [${JSON.stringify(PROTO)}]\nbody: {grpcMessages: first}\nrules:\n  - ${SCOPED}\n    condition: request.grpc.message.appname == 'billing'`);
    const r = compileTexts([{ file: "p.yaml", text }]);
    assert.equal(r.ir.grpcFirst, true);
    assert.equal(decodeConfig(r.config).ir.grpcFirst, true);
    const unused = compileYaml(ours("c", "body: {maxBytes: 10, grpcMessages: first}\nrules:\n  - condition: request.method == 'GET'"));
    assert.equal(unused.ir.maxBodyBytes, 0);
    assert.equal(unused.ir.grpcFirst, false);
    assert.deepEqual(unused.warnings.map((w) => w.message), [
      "spec.body.maxBytes has no effect: no condition reads request.json or request.grpc.message",
      "spec.body.grpcMessages has no effect: no condition reads request.grpc.message",
    ]);
  });

  it("policies that disagree on spec.body are an error; silence is not disagreement", () => {
    const a = ours("a", "body: {maxBytes: 1000}\nrules:\n  - id: a\n    condition: request.json.x == 1");
    const b = ours("b", "body: {maxBytes: 2000}\nrules:\n  - id: b");
    const c = ours("c", "rules:\n  - id: c");
    try {
      compileTexts([{ file: "a.yaml", text: a }, { file: "b.yaml", text: b }]);
      assert.fail("expected a conflict");
    } catch (e) {
      assert.deepEqual((e as PolicyError).diagnostics.map(formatDiagnostic), [
        'b.yaml:6:20: conflicting spec.body.maxBytes: "2000" here, "1000" in policy "a" at a.yaml:6:20; one table has one setting, so make them agree or keep one',
      ]);
    }
    assert.equal(compileTexts([{ file: "a.yaml", text: a }, { file: "c.yaml", text: c }]).ir.maxBodyBytes, 1000);
  });
});

describe("condition diagnostics point into the policy file", () => {
  // The same bad header key in each scalar style: the error must land on the key, line and column.
  const cases: [string, string, string][] = [
    ["plain", "    condition: request.method == 'GET' && request.headers['X-User'] == 'a'", "policy.yaml:8:61"],
    ["single-quoted", "    condition: 'request.method == ''GET'' && request.headers[''X-User''] == ''a'''", "policy.yaml:8:64"],
    ["double-quoted", '    condition: "request.method == \\"GET\\" && request.headers[\\"X-User\\"] == \\"a\\""', "policy.yaml:8:64"],
    ["literal block", "    condition: |\n      request.method == 'GET' &&\n        request.headers['X-User'] == 'a'", "policy.yaml:10:27"],
    ["folded block", "    condition: >\n      request.method == 'GET' &&\n      request.headers['X-User'] == 'a'", "policy.yaml:10:25"],
  ];
  for (const [style, yaml, at] of cases) {
    it(`${style} scalar`, () => {
      const text = ours("c", `rules:\n  - id: r\n${yaml.replace(/^ {4}/gm, "    ")}`);
      assert.deepEqual(errorsOf(text), [`${at}: header names are lower-case: use 'x-user' instead of 'X-User'`]);
    });
  }

  it("every problem of a condition is reported", () => {
    const text = ours("c", "rules:\n  - condition: request.path.matches('x') || request.json.a.exists(x, x)");
    const errs = errorsOf(text);
    assert.equal(errs.length, 2);
    assert.ok(errs[0].startsWith("policy.yaml:7:31: regular expressions"), errs[0]);
  });

  it("a condition that is not bool is an error at the expression", () => {
    assert.deepEqual(errorsOf(ours("c", "rules:\n  - condition: size(request.path)")), [
      "policy.yaml:7:18: a condition must be a bool expression, but this one is int",
    ]);
  });
});

describe("request.grpc.message and .proto files", () => {
  const text = ours("c", `rules:\n  - id: own\n    ${SCOPED}\n    condition: request.grpc.message.appname == source.attributes.app`);

  it("compiles with --proto for a rule scoped to one gRPC method", () => {
    const r = compileTexts([{ file: "p.yaml", text }], undefined, { protos: [PROTO] });
    assert.equal(r.ir.rules[0].expr, 0);
    assert.equal(r.ir.maxBodyBytes, DEFAULT_MAX_BODY_BYTES);
  });

  it("without the .proto file the error says which method and how to give it", () => {
    assert.deepEqual(errors(text), [
      "policy.yaml:9:18: 'request.grpc.message' reads the request message of /demo.config.v1.DynamicResourceService/FetchResource, " +
        "which no .proto file given defines; pass the file with --proto FILE or list it in spec.protos",
    ]);
  });

  it("outside a rule scoped to exactly one method it is an error", () => {
    const two = ours("c", "rules:\n  - to: [{grpc: {service: demo.config.v1.DynamicResourceService}}]\n    condition: request.grpc.message.appname == 'a'");
    assert.deepEqual(errors(two, [PROTO]), [
      "policy.yaml:8:18: 'request.grpc.message' needs a rule scoped to exactly one grpc method, whose request message it reads",
    ]);
  });

  it("an unknown field is reported at the field", () => {
    const bad = ours("c", `rules:\n  - ${SCOPED}\n    condition: request.grpc.message.app_name == 'a'`);
    const errs = errors(bad, [PROTO]);
    assert.equal(errs.length, 1);
    assert.equal(errs[0], "policy.yaml:8:39: message 'demo.config.v1.FetchResourceRequest' has no field 'app_name'");
  });

  it("spec.protos names files relative to the policy file", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "spiffe-authz-protos-"));
    writeFileSync(path.join(dir, "svc.proto"), 'syntax = "proto3";\npackage p;\nmessage Req { string who = 1; }\nservice S { rpc Call (Req) returns (Req) {} }\n');
    const policy = ours("c", "protos: [svc.proto]\nrules:\n  - to: [{grpc: {service: p.S, methods: [Call]}}]\n    condition: request.grpc.message.who == 'me'");
    const file = path.join(dir, "policy.yaml");
    writeFileSync(file, policy);
    assert.equal(compileTexts([{ file, text: policy }]).ir.rules[0].expr, 0);
    writeFileSync(path.join(dir, "bad.proto"), 'syntax = "proto3";\nmessage {\n');
    const bad = policy.replace("svc.proto", "bad.proto");
    const errs = errors(bad, [], file);
    // The file that does not load, at its spec.protos entry; then the condition that needed it.
    assert.equal(errs.length, 2, errs.join("\n"));
    assert.ok(errs[0].startsWith(`${file}:6:12: cannot load`), errs[0]);
    assert.ok(errs[1].includes("which no .proto file given defines"), errs[1]);
  });
});

describe("the TypeScript table decoder checks EXPR as the engine does", async () => {
  const { encodeBody } = await import("../../src/compiler/table.ts");
  const { decodeBody, TableFormatError } = await import("../../src/compiler/decode.ts");
  const ir = compileTexts([{ file: "p.yaml", text: ours("c", "rules:\n  - condition: request.json.tenant == 'a'") }]).ir;
  const patched = (f: (b: Buffer, off: (tag: number) => number) => void) => {
    const body = Buffer.from(encodeBody(ir));
    const off = (tag: number) => {
      for (let i = 0, n = body.readUInt32LE(0); i < n; i++) if (body.readUInt32LE(4 + 12 * i) === tag) return body.readUInt32LE(8 + 12 * i);
      throw new Error(`no section ${tag}`);
    };
    f(body, off);
    return () => decodeBody(body);
  };

  it("an expr index past the programs", () => {
    assert.throws(patched((b, off) => b.writeUInt32LE(3, off(3) + 36)), (e: unknown) => e instanceof TableFormatError && e.message === "family 0: expr 3 exceeds the 1 programs of EXPR");
  });
  it("body settings that do not match the programs", () => {
    assert.throws(patched((b, off) => b.writeUInt32LE(0, off(2) + 4)), /META maxBodyBytes is 0, but a condition reads the request body/);
    assert.throws(patched((b, off) => b.writeUInt32LE(1, off(2) + 24)), /META grpcMessages flag is set, but no condition reads request\.grpc\.message/);
    assert.throws(patched((b, off) => b.writeUInt32LE(4, off(2) + 24)), /META unknown flags 0x4/);
    assert.throws(patched((b, off) => b.writeUInt32LE(5, off(2) + 28)), /META offset 28 must be 0 unless allowed requests are sampled/);
  });
});
