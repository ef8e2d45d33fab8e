// The condition compiler: what it accepts, what it reports, and where (offsets into the expression, and
// through yamlScalarOffsets into a policy file).
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { LineCounter, parseDocument, isMap, isScalar, type Scalar } from "yaml";
import {
  compileCondition, loadProtos, yamlScalarOffsets, lineColumn, type CelDiagnostic, type ConditionEnv, type YamlScalarStyle,
} from "../../src/cel/index.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const protos = loadProtos([path.join(ROOT, "tests/cel/protos/celtest.proto")]);
const fetch = protos.findMethod("/celtest.TestService/Fetch")!;
const GRPC: ConditionEnv = { grpc: { path: fetch.path, requestType: fetch.requestType } };

function errors(source: string, env: ConditionEnv = {}): readonly CelDiagnostic[] {
  const r = compileCondition(source, env);
  assert.ok("errors" in r, `expected '${source}' not to compile`);
  return r.errors;
}

/** Asserts exactly one diagnostic, at the `nth` occurrence of `token`, matching `message`. */
function expectError(source: string, token: string, message: RegExp, env: ConditionEnv = {}, nth = 0) {
  const errs = errors(source, env);
  let at = -1;
  for (let i = 0; i <= nth; i++) at = source.indexOf(token, at + 1);
  assert.ok(at >= 0, `token '${token}' not in source`);
  assert.equal(errs.length, 1, `one error for '${source}', got ${JSON.stringify(errs)}`);
  assert.equal(errs[0].offset, at, `error of '${source}' at ${errs[0].offset}, expected ${at} ('${token}'): ${errs[0].message}`);
  assert.match(errs[0].message, message);
}

test("constructs outside the subset are reported at their position", () => {
  expectError("request.path.matches('^/a')", "matches", /^regular expressions \('matches'\) are not supported$/);
  expectError("[1, 2].all(x, x > 0)", "all", /^'all' is not supported: macros other than has\(\)/);
  expectError("request.method == 'GET' && [1].exists(x, x == 1)", "exists", /'exists' is not supported/);
  expectError("{'a': 1}['a'] == 1", "{", /^map literals are not supported$/);
  expectError("request.method == 'GET' || timestamp('2020-01-01T00:00:00Z') != null", "timestamp", /^timestamps are not supported$/);
  expectError("foo(1) == 1", "foo", /^function 'foo' is not supported$/);
  expectError("math.greatest(1, 2) > 0", "math", /^function 'math.greatest' is not supported$/);
  expectError("string(1.5) == '1.5'", "string", /'string\(\)' of a double is not supported/);
  expectError("[request.method] == ['GET']", "request.method", /^list literals may only contain constants$/);
});

test("every problem is reported, not only the first", () => {
  const src = "b'a' == b'a' && request.time > 1";
  const errs = errors(src);
  assert.deepEqual(errs.map((e) => e.offset), [0, src.indexOf("b'a'", 1), src.indexOf("request.time")]);
  assert.match(errs[0].message, /^bytes literals are not supported$/);
  assert.match(errs[2].message, /^undeclared reference to 'request.time' \(known: request.method, /);
});

test("type errors point at the operator or the operand", () => {
  expectError("source.attributes.app == 1", "==", /^no matching overload for '==' applied to \(string, int\)$/);
  expectError("size(request.headers) + 'a' > 0", "+", /^no matching overload for '\+' applied to \(int, string\)$/);
  expectError("request.method in ['GET', 1] && -(1u) == 1u", "-", /^no matching overload for '-' applied to \(uint\)$/);
  expectError("connection.mtls && request.path", "request.path", /^operand of '&&' must be bool, got string$/);
  expectError("1 + 2", "1", /^a condition must be a bool expression, but this one is int$/);
  expectError("request.headers == 'x'", "request.headers", /is a map: index it, test a key with has\(\) or 'in', or take its size\(\)/);
  expectError("request.json[request.method] == 1", "request.method", /can only be indexed by a string or integer constant/);
  expectError("request.method in request.path", "request.path", /^the right side of 'in' must be/);
  expectError("request.headers['X-User'] == 'a'", "'X-User'", /^header names are lower-case: use 'x-user' instead of 'X-User'$/);
  expectError("source.foo == 'a'", "source.foo", /^undeclared reference to 'source.foo' \(known: source.id, source.trust_domain, source.attributes\)$/);
});

test("offsets count UTF-16 code units and survive line breaks", () => {
  expectError("'😀é' == request.path && request.path.matches('x')", "matches", /regular expressions/);
  expectError("source.id == 'a' &&\n  request.path\n    .matches('x')", "matches", /regular expressions/);
});

test("conditions beyond the engine's limits are compile errors", () => {
  // The parser gives up on deep nesting before the engine's 1024 stack slots could be reached.
  const deep = `${Array.from({ length: 1100 }, (_, i) => `${i} + (`).join("")}0${")".repeat(1100)} > 0`;
  assert.deepEqual(errors(deep).map((e) => e.message), ["condition is nested too deeply"]);
  const long = Array.from({ length: 7000 }, (_, i) => `request.method == 'm${i}'`).join(" || ");
  assert.match(errors(long)[0].message, /^condition is too large: \d+ bytes of bytecode, at most 65535$/);
});

test("syntax errors carry the parser's position", () => {
  const errs = errors("request.method == 'GET' &&");
  assert.equal(errs.length, 1);
  assert.match(errs[0].message, /^syntax error: /);
  assert.equal(errs[0].offset, "request.method == 'GET' ".length);
});

test("request.grpc.message needs a rule scoped to one grpc method", () => {
  expectError("request.grpc.message.appname == 'a'", "request.grpc.message", /needs a rule scoped to exactly one grpc method/);
  const ok = compileCondition("request.grpc.message.appname == source.attributes.app", GRPC);
  assert.ok("program" in ok);
});

test("protobuf fields outside the subset are reported at the field", () => {
  expectError("request.grpc.message.tags == 'x'", "tags", /^field 'tags' of 'celtest.Everything' is repeated: repeated fields are not supported$/, GRPC);
  expectError("request.grpc.message.choice_a == 'x'", "choice_a", /is part of oneof 'choice': oneof fields are not supported/, GRPC);
  expectError("request.grpc.message.blob == 'x'", "blob", /is bytes: bytes are not supported/, GRPC);
  expectError("request.grpc.message.nope == 'x'", "nope", /^message 'celtest.Everything' has no field 'nope'$/, GRPC);
  expectError("request.grpc.message.inner == 'x'", "request.grpc.message.inner", /^'request.grpc.message.inner' is a message: select one of its fields$/, GRPC);
  expectError("request.grpc.message.i32 == 'x'", "==", /applied to \(int, string\)/, GRPC);
  expectError("request.grpc.message.u64 == 1", "==", /applied to \(uint, int\)/, GRPC);
});

test("a compiled condition says what the filter must fetch", () => {
  const r = compileCondition(
    "request.json.tenant.id == source.attributes.tenant && has(request.json.items) && 'admin' in jwt.claims.roles && request.json['x-y'][0] == 1",
  );
  assert.ok("program" in r);
  assert.equal(r.usesBody, "json");
  assert.deepEqual(r.jsonPaths, ["tenant.id", "items", '["x-y"][0]']);
  assert.deepEqual(r.claimPaths, ["roles"]);
  assert.deepEqual(r.variables, ["jwt.claims", "request.json", "source.attributes"]);
  assert.equal(r.program.dynPaths.find((p) => p.segments[0] === "roles")?.members, true);

  const g = compileCondition("request.grpc.message.inner.count > 3 && has(request.grpc.message.nickname)", GRPC);
  assert.ok("program" in g);
  assert.equal(g.usesBody, "grpc");
  assert.deepEqual(g.protoPaths, [
    { method: "/celtest.TestService/Fetch", fields: ["inner", "count"] },
    { method: "/celtest.TestService/Fetch", fields: ["nickname"] },
  ]);
  assert.equal(g.program.protoPaths[1].explicitPresence, true, "proto3 optional has explicit presence");
  assert.equal(g.program.protoPaths[0].explicitPresence, false);

  // The table carries the whole schema of the request message: every field, nested messages, map entries.
  const schema = g.program.protoSchema;
  assert.deepEqual(schema.methods, [{ method: "/celtest.TestService/Fetch", message: "celtest.Everything" }]);
  assert.deepEqual(schema.messages.map((m) => m.name), ["celtest.Everything", "celtest.Inner", "map<string,celtest.Inner>"]);
  const everything = schema.messages[0];
  assert.deepEqual(everything.fields.map((f) => f.number), [...Array(26).keys()].map((i) => i + 1));
  const field = (n: number) => everything.fields.find((f) => f.number === n)!;
  assert.deepEqual(field(17), { number: 17, type: 11, repeated: false, explicitPresence: false, required: false, oneof: -1, message: "celtest.Inner" });
  assert.deepEqual(field(18), { number: 18, type: 9, repeated: false, explicitPresence: true, required: false, oneof: -1 }, "proto3 optional: no oneof of its own");
  assert.deepEqual([field(22).oneof, field(23).oneof, everything.oneofs], [0, 0, 1]);
  assert.deepEqual(field(24), { number: 24, type: 17, repeated: true, explicitPresence: false, required: false, oneof: -1 });
  assert.deepEqual(field(25), { number: 25, type: 11, repeated: true, explicitPresence: false, required: false, oneof: -1, message: "map<string,celtest.Inner>" });
  assert.deepEqual(field(21).type, 12, "bytes");
  assert.deepEqual(schema.messages[2].fields.map((f) => [f.number, f.type, f.required, f.message]), [[1, 9, true, undefined], [2, 11, true, "celtest.Inner"]]);
  const headersOnly = compileCondition("request.headers['x'] == 'y'");
  assert.ok("program" in headersOnly);
  assert.deepEqual(headersOnly.program.protoSchema, { methods: [], messages: [], enums: [] });

  const n = compileCondition("request.headers['x-user'] == source.attributes.user");
  assert.ok("program" in n);
  assert.equal(n.usesBody, "none");

  const both = errors("request.json.a == request.grpc.message.appname", GRPC);
  assert.match(both[0].message, /^a condition cannot read both request.json and request.grpc.message$/);
});

test("loadProtos reports unreadable files and finds methods", () => {
  assert.throws(() => loadProtos([path.join(ROOT, "tests/cel/protos/missing.proto")]), /^ProtoLoadError: cannot load '.*missing.proto'/);
  assert.equal(protos.findMethod("celtest.TestService/Other")?.requestType.name, "Inner");
  assert.equal(protos.findMethod("/celtest.TestService/Nope"), undefined);
});

// --- YAML positions -----------------------------------------------------------------------------------------

/** Compiles the `when` scalar of a one-rule YAML document and returns the file position of the first error. */
function yamlErrorAt(doc: string): { offset: number; line: number; col: number } {
  const lc = new LineCounter();
  const d = parseDocument(doc, { lineCounter: lc, keepSourceTokens: true });
  assert.ok(isMap(d.contents));
  const node = d.contents.get("when", true);
  assert.ok(isScalar(node));
  const scalar = node as unknown as Scalar<string>;
  const errs = errors(String(scalar.value));
  const map = yamlScalarOffsets(doc, scalar.range![0], scalar.range![1], scalar.type as YamlScalarStyle, String(scalar.value));
  const offset = map(errs[0].offset);
  const pos = lc.linePos(offset);
  const lcol = lineColumn(doc, offset);
  assert.deepEqual({ line: lcol.line, col: lcol.column }, pos);
  return { offset, line: pos.line, col: pos.col };
}

const STYLES: [string, string][] = [
  ["plain", "id: r\nwhen: source.id == 'a' && request.path.matches('x')\n"],
  ["plain, folded over lines", "id: r\nwhen: source.id == 'a' &&\n  request.headers.host == 'b' &&\n  request.path.matches('x')\n"],
  ["double-quoted with escapes", 'id: r\nwhen: "request.headers[\\"x-user\\"] == \'\\u00e9\\t\' && request.path.matches(\'x\')"\n'],
  ["double-quoted over lines", 'id: r\nwhen: "source.id == \'a\' \\\n  && request.path.matches(\'x\')"\n'],
  ["single-quoted", "id: r\nwhen: 'source.id == ''a'' && request.path.matches(''x'')'\n"],
  ["literal block", "id: r\nwhen: |\n  source.id == 'a' &&\n    request.path.matches('x')\n"],
  ["folded block", "id: r\nwhen: >-\n  source.id == 'a' &&\n  request.path.matches('x')\n"],
  ["literal block with indentation indicator", "id: r\nwhen: |2-\n    source.id == 'a'\n    && request.path.matches('x')\n"],
];

for (const [style, doc] of STYLES) {
  test(`errors map to the policy file: ${style}`, () => {
    const at = yamlErrorAt(doc);
    assert.ok(doc.startsWith("matches", at.offset), `points at '${doc.slice(at.offset, at.offset + 10)}' (line ${at.line}, col ${at.col})`);
  });
}

test("proto2: required fields are in the schema; closed enums cannot be read; groups are refused", () => {
  const legacy = loadProtos([path.join(ROOT, "tests/cel/protos/legacy.proto")]);
  const put = legacy.findMethod("/legacy.Legacy/Put")!;
  const PUT: ConditionEnv = { grpc: { path: put.path, requestType: put.requestType } };
  const ok = compileCondition("request.grpc.message.owner == source.attributes.app && !has(request.grpc.message.owner)", PUT);
  assert.ok("program" in ok);
  const plain = ok.program.protoSchema.messages[0];
  assert.deepEqual(plain.fields.map((f) => [f.number, f.required, f.explicitPresence, f.repeated, f.enum]), [
    [1, true, true, false, undefined], [2, false, true, false, "legacy.Level"], [3, false, false, true, undefined],
    [4, false, false, true, undefined], [5, false, false, true, "legacy.Level"], [6, false, false, true, undefined],
  ]);
  // A closed enum's values go into the table: the filter reads only those (a map's entry value too).
  assert.deepEqual(ok.program.protoSchema.enums, [{ name: "legacy.Level", values: [1, 2] }]);
  assert.deepEqual(ok.program.protoSchema.messages.find((m) => m.name === "map<string,legacy.Level>")?.fields[1].enum, "legacy.Level");
  assert.deepEqual(ok.program.protoSchema.messages[1].fields.map((f) => [f.number, f.required]), [[1, true], [2, false]]);
  expectError("request.grpc.message.level == 1", "level", /^field 'level' of 'legacy.Plain' has closed enum type 'legacy.Level' \(proto2\): closed enums are not supported$/, PUT);
  const grouped = legacy.findMethod("/legacy.Legacy/Grouped")!;
  expectError("request.grpc.message.owner == 'a'", "request.grpc.message", /^field 'extra' of 'legacy.WithGroup' is a group \(delimited encoding\): groups are not supported in a message a condition reads$/, {
    grpc: { path: grouped.path, requestType: grouped.requestType },
  });
});
