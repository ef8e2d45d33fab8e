// The engine's CEL runtime on targeted inputs, through build/cel-harness.wasm: the JSON extractor, the
// protobuf decoder and gRPC framing, resource limits, error messages, and the places where we follow the CEL
// specification rather than @bufbuild/cel (docs/cel.md, "Differences from @bufbuild/cel").
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { compileCondition, encodePrograms, loadProtos, variableKinds, REQUEST_VARIABLES } from "../../src/cel/index.ts";
import { CelHarness, type VarInput } from "../cel/wasm-harness.ts";
import { Rng } from "../cel/generate.ts";
import type { CelOutcome } from "../cel/outcome.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const harness = await CelHarness.create();
const KINDS = variableKinds(REQUEST_VARIABLES);
const protos = loadProtos([path.join(ROOT, "tests/cel/protos/celtest.proto")]);
const FETCH = protos.findMethod("/celtest.TestService/Fetch")!;

function run(src: string, vars: readonly VarInput[]): CelOutcome {
  const r = compileCondition(src, { grpc: { path: FETCH.path, requestType: FETCH.requestType }, resultType: "any" });
  if (!("program" in r)) assert.fail(`'${src}': ${r.errors.map((e) => e.message).join("; ")}`);
  harness.load(encodePrograms([r.program]), KINDS);
  return harness.run(0, vars);
}

const json = (text: string | Uint8Array): VarInput => ({ id: 10, kind: "json", text });
const value = (o: CelOutcome) => {
  if (o.kind !== "value") assert.fail(`expected a value, got error ${o.message}`);
  return o.value;
};
const isTrue = (src: string, vars: readonly VarInput[]) => assert.deepEqual(run(src, vars), { kind: "value", value: { t: "bool", v: true } }, src);
const errorOf = (src: string, vars: readonly VarInput[]) => {
  const o = run(src, vars);
  if (o.kind !== "error") assert.fail(`'${src}' gave a value`);
  return o;
};

// --- JSON ---------------------------------------------------------------------------------------------------

test("json strings: escapes, surrogate pairs; a lone surrogate is refused", () => {
  isTrue(`request.json.s == "a\\nbé😀/\\"\\\\" && size(request.json.s) == 8`, [json(String.raw`{"s":"a\nb\u00e9\ud83d\ude00\/\"\\"}`)]);
  isTrue(`request.json.s == "a\\u0000b" && size(request.json.s) == 3`, [json(String.raw`{"s":"a\u0000b"}`)]);
  // JSON.parse keeps a lone UTF-16 unit, Go writes U+FFFD: no UTF-8 string equals both.
  for (const s of [String.raw`\ud800x`, String.raw`x\udc00`, String.raw`\ud800\ud800`, String.raw`\udc00\ud800`, String.raw`\ud83d`]) {
    assert.match(errorOf("request.json.s == ''", [json(`{"s":"${s}"}`)]).message, /lone surrogate escape in json string at byte/, s);
  }
  // An unread string may hold one (nothing reads it).
  isTrue("request.json.t == 1.0", [json(String.raw`{"s":"\ud800","t":1}`)]);
  isTrue(`'b' in request.json.o && !('c' in request.json.o)`, [json(String.raw`{"o":{"a":1,"\u0062":2}}`)]);
  isTrue(`request.json["k\\ty"] == 1.0`, [json(String.raw`{"k\u0009y":1}`)]);
});

test("json repeated keys: refused where a path reads through them or an object's own value is read", () => {
  const dup = /duplicate key in json object at byte/;
  assert.match(errorOf("request.json.a == 2.0", [json('{"a":{"b":1},"a":2}')]).message, dup);
  assert.match(errorOf("request.json.a.b == true", [json('{"a":1,"a":{"b":true}}')]).message, dup);
  assert.match(errorOf("request.json.a.b == true", [json('{"a":{"b":1,"b":true}}')]).message, dup);
  // Escapes do not hide a repeat: the keys compare decoded.
  assert.match(errorOf("size(request.json.a) == 1", [json(String.raw`{"a":{"k":1,"\u006b":2}}`)]).message, dup);
  assert.match(errorOf("'k' in request.json.a", [json('{"a":{"x":1,"y":2,"x":3}}')]).message, dup);
  assert.match(errorOf("size(request.json) == 1", [json('{"x":1,"x":1}')]).message, dup);
  // Repeats nobody reads through: the same in every reader.
  isTrue("request.json.a.b == 1.0", [json('{"x":1,"x":2,"a":{"b":1,"y":[{"z":1,"z":2}]}}')]);
  isTrue("size(request.json.a) == 2", [json('{"a":{"b":{"c":1,"c":2},"d":3}}')]);
});

test("json numbers that readers read differently are refused where they are read", () => {
  for (const t of ["9007199254740992", "-9007199254740992", "9007199254740993", "12345678901234567890", `1${"0".repeat(400)}`]) {
    assert.match(errorOf("request.json.n == 1.0", [json(`{"n":${t}}`)]).message, /json integer beyond 2\^53-1 is not exact as a double at byte 5$/, t);
  }
  for (const t of ["1e400", "-1e309", "1.7976931348623159e308", `${"9".repeat(320)}.0`]) {
    assert.match(errorOf("request.json.n == 1.0", [json(`{"n":${t}}`)]).message, /json number out of the double range at byte 5$/, t);
  }
  for (const t of ["9007199254740991", "-9007199254740991", "9007199254740993.0", "1e300", "-0", "1e-400"]) {
    assert.equal(value(run("request.json.n", [json(`{"n":${t}}`)])).t, "double", t);
  }
  // Elements compared by `in` are read; an unread number is not.
  assert.match(errorOf("1.0 in request.json.l", [json('{"l":[1,9007199254740993]}')]).message, /beyond 2\^53-1/);
  isTrue("request.json.a == 1.0", [json('{"a":1,"b":1e400,"c":[9007199254740993]}')]);
});

test("json numbers are parsed exactly as JSON.parse does", () => {
  const texts = [
    "0.1", "1e23", "2.2250738585072011e-308", "4.9e-324", "2.4703282292062327e-324", "2.4703282292062328e-324",
    "1.7976931348623157e308", "1.7976931348623158e308", "9007199254740993.0",
    "123456789012345678901234567890e-10", "0.000000000000000000000000000000000000000000001", "-0",
    "-1e-400", "1.00000000000000011102230246251565404236316680908203125",
    "1.00000000000000011102230246251565404236316680908203126", `1${"0".repeat(300)}.0`, `0.${"0".repeat(400)}1`,
    `${"9".repeat(850)}e-800`, "7.2057594037927933e16", "1448997445238699", "3.0540412e5", "1e-7", "5e-324",
  ];
  const r = new Rng(77);
  for (let i = 0; i < 300; i++) {
    const digits = Array.from({ length: 1 + r.int(40) }, () => r.int(10)).join("");
    texts.push(`${r.chance(0.5) ? "-" : ""}${digits[0]}${digits.length > 1 ? `.${digits.slice(1)}` : ""}e${r.int(640) - 340}`);
  }
  for (const t of texts) {
    const got = value(run("request.json.n", [json(`{"n":${t}}`)]));
    assert.equal(got.t, "double");
    const want = JSON.parse(`{"n":${t}}`).n as number;
    assert.ok(Object.is((got as { v: number }).v, want), `${t.slice(0, 60)}: got ${(got as { v: number }).v}, want ${want}`);
  }
});

test("malformed json is a body error with the reason and where", () => {
  const cases: [string | Uint8Array, RegExp][] = [
    ["", /^cannot read the request body: empty json document at byte 0$/],
    ['{"a":1,}', /expected a string key in json object at byte 7$/],
    ['{"a":1', /unexpected end of json at byte 6$/],
    ['{"a":"x', /unexpected end of json/],
    ['{"a":"\\x"}', /invalid escape in json string at byte 6$/],
    ['{"a":"\\u12g4"}', /invalid escape in json string/],
    ['{"a":"\u0001"}', /invalid json string at byte 6$/],
    [Uint8Array.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0x22, 0x7d]), /json string is not utf-8 at byte 6$/],
    [Uint8Array.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x7d]), /json string is not utf-8/],
    ["01", /unexpected data after the json value at byte 1$/],
    ['{"a":-}', /invalid json number/],
    ['{"a":1.}', /invalid json number/],
    ['{"a":.5}', /expected a json value at byte 5$/],
    ['{"a":NaN}', /expected a json value/],
    ['{"a":nul}', /invalid json literal/],
    ["[1 2]", /expected ',' or '\]' in json array/],
    ['{"a" 1}', /expected ':' in json object/],
    ['{"a":1} x', /unexpected data after the json value/],
    ["\ufeff{}", /json body starts with a byte-order mark at byte 0$/],
    [Uint8Array.from([0xff, 0xfe, 0x7b, 0x00, 0x7d, 0x00]), /json body starts with a byte-order mark at byte 0$/],
  ];
  for (const [text, why] of cases) {
    const e = errorOf("request.json.a == 1.0", [json(text)]);
    assert.equal(e.cls, "body", String(text));
    assert.match(e.message, why, String(text));
  }
});

test("mutated json documents are read or rejected, never a trap", () => {
  const base = new TextEncoder().encode(String.raw`{"a":{"b":[1,2.5e3,"x\u00e9",true,null,{"c":"d"}]},"s":"\ud83d\ude00","n":-0.1,"in":{"k":[]}}`);
  const r = new Rng(9001);
  const classes = new Set<string>();
  const special = [0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x75, 0x80, 0xff];
  for (let i = 0; i < 2000; i++) {
    const m = Uint8Array.from(base);
    for (let e = 1 + r.int(3); e > 0; e--) m[r.int(m.length)] = r.chance(0.5) ? r.pick(special) : r.int(256);
    const o = run("has(request.json.a.b) && request.json.s + 'x' != '' && 'k' in request.json['in'] || request.json.a.b[5].c == 'd'", [json(m)]);
    classes.add(o.kind === "value" ? "value" : o.cls);
  }
  assert.ok(classes.has("value") && classes.has("body"), [...classes].join(","));
  for (const c of classes) assert.ok(["value", "body", "access", "overload"].includes(c), c);
});

test("json nesting is bounded, not a trap", () => {
  isTrue("size(request.json) == 1", [json(`${"[".repeat(500)}${"]".repeat(500)}`)]);
  assert.match(errorOf("size(request.json) == 1", [json(`${"[".repeat(600)}${"]".repeat(600)}`)]).message, /json nested too deeply/);
});

test("json members for 'in' are bounded per request", () => {
  const list = (n: number) => json(`{"l":[${Array.from({ length: n }, (_, i) => i).join(",")}]}`);
  isTrue("999 in request.json.l && !(1000 in request.json.l)", [list(1000)]);
  const e = errorOf("1 in request.json.l", [list(1100)]);
  assert.equal(e.cls, "limit");
  assert.match(e.message, /^limit exceeded: too many json members to collect at byte \d+$/);
  // Without `in`, nothing is collected: a long array is fine.
  isTrue("size(request.json.l) == 1100", [list(1100)]);
});

test("json containers compare by size, and only empty ones are equal", () => {
  isTrue("request.json.a == request.json.b && request.json.c != request.json.a && request.json.a != 1", [json('{"a":{},"b":{},"c":{"x":1}}')]);
  assert.equal(errorOf("request.json.a == request.json.b", [json('{"a":[1],"b":[2]}')]).cls, "unsupported");
});

test("a json document that is not an object", () => {
  isTrue("!has(request.json.a) && size(request.json) == 2 && request.json[1] == 'x'", [json('[1,"x"]')]);
  assert.equal(errorOf("request.json.a == 1", [json('"s"')]).cls, "access");
});

// --- protobuf -------------------------------------------------------------------------------------------------

const grpcBody = (msg: number[], flag = 0) => Uint8Array.from([flag, (msg.length >>> 24) & 255, (msg.length >>> 16) & 255, (msg.length >>> 8) & 255, msg.length & 255, ...msg]);
/** A field key as varint bytes. */
const key = (field: number, wire: number) => {
  const out: number[] = [];
  let v = (field << 3) | wire;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return out;
};
const proto = (bytes: Uint8Array | number[], framed = false, method = FETCH.path): VarInput => ({ id: 13, kind: "proto", method, framed, bytes: Uint8Array.from(bytes) });

/** A varint, `extra` bytes longer than it needs to be (non-canonical when extra > 0). */
const varint = (value: bigint, extra = 0): number[] => {
  const out: number[] = [];
  let v = BigInt.asUintN(64, value);
  do {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  } while (v !== 0n);
  for (let i = 0; i < extra; i++) out.push(0x80);
  out[out.length - 1] &= 0x7f;
  return out;
};
const str = (field: number, s: string | number[]) => {
  const b = typeof s === "string" ? [...Buffer.from(s)] : s;
  return [...key(field, 2), ...varint(BigInt(b.length)), ...b];
};
const READS_ALL = "request.grpc.message.appname == 'x' || request.grpc.message.i32 == 1 || request.grpc.message.inner.name == ''";

test("protobuf messages decoders could read differently are refused with a reason and the field", () => {
  const cases: [string, number[], RegExp][] = [
    ["truncated varint", [0x18, 0x80], /^cannot read the request body: truncated protobuf message \(field 3\)$/],
    ["varint over 10 bytes", [0x18, ...Array(10).fill(0xff), 0x01], /malformed varint in protobuf message \(field 3\)$/],
    ["varint over 64 bits", [0x18, ...Array(9).fill(0xff), 0x02], /malformed varint in protobuf message \(field 3\)$/],
    ["wire type 0 for a string", [0x08, 0x01], /unexpected wire type for protobuf field \(field 1\)$/],
    ["wire type 0 for a string nobody reads", [...key(2, 0), 0x0b, ...str(1, "billing")], /unexpected wire type for protobuf field \(field 2\)$/],
    ["wire type 2 for a singular int", [...key(3, 2), 0x01, 0x01], /unexpected wire type for protobuf field \(field 3\)$/],
    ["truncated string", [0x0a, 0x05, 0x61], /truncated protobuf message \(field 1\)$/],
    ["string not utf-8", [0x0a, 0x02, 0xc3, 0x28], /protobuf string field is not utf-8 \(field 1\)$/],
    ["string nobody reads not utf-8", str(20, [0xed, 0xa0, 0x80]), /protobuf string field is not utf-8 \(field 20\)$/],
    ["field number 0", [0x00, 0x01], /invalid protobuf field tag$/],
    ["tag over 32 bits", [...varint((1n << 32n) | 2n)], /invalid protobuf field tag$/],
    ["wire type 7", [0x0f], /invalid protobuf field tag$/],
    ["a group", [...key(50, 3), ...key(50, 4)], /protobuf groups are not accepted \(field 50\)$/],
    ["an end-group tag", key(50, 4), /protobuf groups are not accepted \(field 50\)$/],
    ["a group on a known field", [...key(17, 3), ...key(17, 4)], /protobuf groups are not accepted \(field 17\)$/],
    ["nested truncation", [0x8a, 0x01, 0x03, 0x08], /truncated protobuf message \(field 17\)$/],
    ["nested overrun", [0x8a, 0x01, 0x02, 0x0a, 0x05, ...str(1, "abc")], /truncated protobuf message \(field 1\)$/],
    ["6-byte tag", [...varint(0x0an, 5), 0x01, 0x61], /non-canonical varint in protobuf message$/],
    ["2-byte tag for field 1", [0x8a, 0x00, 0x01, 0x61], /non-canonical varint in protobuf message$/],
    ["overlong length", [0x0a, 0x81, 0x00, 0x61], /non-canonical varint in protobuf message \(field 1\)$/],
    ["overlong value", [0x18, 0x81, 0x80, 0x00], /non-canonical varint in protobuf message \(field 3\)$/],
    ["10-byte varint with a zero last byte", [0x20, ...Array(9).fill(0x80), 0x00], /non-canonical varint in protobuf message \(field 4\)$/],
    ["unknown field", [...key(99, 5), 1, 2, 3, 4], /unknown protobuf field \(field 99\)$/],
    ["unknown field in a nested message", [0x8a, 0x01, 0x02, ...key(9, 0), 0x01], /unknown protobuf field \(field 9\)$/],
    ["a string twice", [...str(1, "billing"), ...str(1, "orders")], /singular protobuf field occurs more than once \(field 1\)$/],
    ["an int twice", [0x18, 0x01, 0x18, 0x01], /singular protobuf field occurs more than once \(field 3\)$/],
    ["a nested message twice", [0x8a, 0x01, 0x00, 0x8a, 0x01, 0x00], /singular protobuf field occurs more than once \(field 17\)$/],
    ["an optional field twice", [...str(18, "a"), ...str(18, "a")], /singular protobuf field occurs more than once \(field 18\)$/],
    ["two oneof members", [...str(22, "a"), ...key(23, 0), 0x01], /more than one member of a protobuf oneof \(field 23\)$/],
    ["bool 2", [...key(13, 0), 0x02], /protobuf value out of range for its type \(field 13\)$/],
    ["int32 over 32 bits", [0x18, ...varint(1n << 31n)], /protobuf value out of range for its type \(field 3\)$/],
    ["int32 as 5-byte two's complement", [0x18, ...varint(0xffffffffn)], /protobuf value out of range for its type \(field 3\)$/],
    ["enum over 32 bits", [...key(16, 0), ...varint(1n << 40n)], /protobuf value out of range for its type \(field 16\)$/],
    ["uint32 over 32 bits", [...key(5, 0), ...varint(1n << 32n)], /protobuf value out of range for its type \(field 5\)$/],
    ["sint32 over 32 bits", [...key(7, 0), ...varint(1n << 32n)], /protobuf value out of range for its type \(field 7\)$/],
    ["packed ints ending inside a varint", [...key(24, 2), 0x02, 0x01, 0x80, 0x01], /truncated protobuf message \(field 24\)$/],
    ["packed fixed32 not a multiple of 4", [...key(26, 2), 0x03, 1, 2, 3], /truncated protobuf message \(field 26\)$/],
    ["packed element non-canonical", [...key(24, 2), 0x02, 0x81, 0x00], /non-canonical varint in protobuf message \(field 24\)$/],
    ["packed sint32 over 32 bits", [...key(24, 2), 0x05, ...varint(1n << 32n)], /protobuf value out of range for its type \(field 24\)$/],
    ["map entry key twice", [...key(25, 2), 0x06, ...str(1, "a"), ...str(1, "b")], /singular protobuf field occurs more than once \(field 1\)$/],
    ["map entry unknown field", [...key(25, 2), 0x02, ...key(3, 0), 0x01], /unknown protobuf field \(field 3\)$/],
    ["map entry without a value", str(25, str(1, "k")), /required protobuf field missing \(field 2\)$/],
    ["map entry without a key", str(25, str(2, [])), /required protobuf field missing \(field 1\)$/],
  ];
  for (const [name, bytes, why] of cases) {
    const e = errorOf(READS_ALL, [proto(bytes)]);
    assert.equal(e.cls, "body", name);
    assert.match(e.message, why, name);
  }
});

test("protobuf messages nested deeper than 64 levels are refused", () => {
  // Everything (level 1) .inner (level 2) .child (3) .child ...: the content of `levels` nested Inner messages.
  const inners = (levels: number) => {
    let content: number[] = [];
    for (let i = 1; i < levels; i++) content = [...key(3, 2), ...varint(BigInt(content.length)), ...content];
    return [...key(17, 2), ...varint(BigInt(content.length)), ...content];
  };
  isTrue("has(request.grpc.message.inner.child)", [proto(inners(63))]);
  assert.match(errorOf("has(request.grpc.message.inner)", [proto(inners(64))]).message, /protobuf message nested too deeply \(field 3\)$/);
});

test("canonical encodings are read: packed or not, any field order, defaults on the wire, 10-byte negatives", () => {
  const bytes = [
    ...key(24, 0), 0x02, // nums unpacked
    ...key(24, 2), 0x02, 0x01, 0x03, // nums packed
    ...key(24, 2), 0x00, // an empty packed run
    ...key(26, 2), 0x04, 1, 0, 0, 0, // packed fixed32
    ...key(26, 5), 2, 0, 0, 0, // and unpacked
    ...str(25, [...str(1, "k"), ...str(2, [...str(1, "v")])]), // a map entry
    ...str(25, [...str(1, "k"), ...str(2, [])]), // the same key again (a map; entries may repeat)
    ...str(20, "t1"), ...str(20, "t2"), // repeated strings
    0x18, ...varint(-5n), // i32 = -5: sign-extended to 10 bytes
    ...str(1, "billing"),
    ...str(22, "a"), // one member of the oneof
    ...key(6, 0), ...varint(0xffffffffffffffffn), // u64 max
    ...key(13, 0), 0x01,
    ...str(2, ""), // a default on the wire
    ...str(21, [0xff, 0xfe]), // bytes: any
    0x8a, 0x01, 0x00, // inner: empty, present
  ];
  isTrue(
    "request.grpc.message.appname == 'billing' && request.grpc.message.i32 == -5 && request.grpc.message.u64 == 18446744073709551615u && " +
      "request.grpc.message.flag && has(request.grpc.message.inner) && !has(request.grpc.message.resource_id)",
    [proto(bytes)],
  );
});

test("protobuf presence: defaults, explicit presence, nested messages", () => {
  // i32 = 0 on the wire, nickname = "" (optional), inner with a name and a count.
  const bytes = [0x18, 0x00, 0x92, 0x01, 0x00, 0x8a, 0x01, 0x05, 0x0a, 0x01, 0x78, 0x10, 0x07];
  isTrue("!has(request.grpc.message.i32) && has(request.grpc.message.nickname) && request.grpc.message.nickname == ''", [proto(bytes)]);
  isTrue("request.grpc.message.inner.name == 'x' && request.grpc.message.inner.count == 7 && !has(request.grpc.message.inner.child)", [proto(bytes)]);
  isTrue("request.grpc.message.inner.child.child.count == 0 && request.grpc.message.level == 0 && !has(request.grpc.message.level)", [proto(bytes)]);
});

test("proto2 required fields must be present, in nested messages too", () => {
  const legacy = loadProtos([path.join(ROOT, "tests/cel/protos/legacy.proto")]);
  const put = legacy.findMethod("/legacy.Legacy/Put")!;
  const r = compileCondition("request.grpc.message.owner == 'a'", { grpc: { path: put.path, requestType: put.requestType } });
  if (!("program" in r)) assert.fail(r.errors[0].message);
  harness.load(encodePrograms([r.program]), KINDS);
  const msg = (bytes: number[]): VarInput => ({ id: 13, kind: "proto", method: put.path, framed: false, bytes: Uint8Array.from(bytes) });
  const item = (bytes: number[]) => [...key(3, 2), bytes.length, ...bytes];
  assert.deepEqual(harness.run(0, [msg([...str(1, "a"), ...item(str(1, "i"))])]), { kind: "value", value: { t: "bool", v: true } });
  const missing = harness.run(0, [msg(item(str(1, "i")))]);
  assert.equal(missing.kind === "error" && missing.message, "cannot read the request body: required protobuf field missing (field 1)");
  const nested = harness.run(0, [msg([...str(1, "a"), ...item([...key(2, 0), 1])])]);
  assert.equal(nested.kind === "error" && nested.message, "cannot read the request body: required protobuf field missing (field 1)");
  // A closed enum (Level: 1, 2) takes only its values: protobuf-es would keep another one out of the field.
  const ok = (bytes: number[]) => assert.deepEqual(harness.run(0, [msg([...str(1, "a"), ...bytes])]), { kind: "value", value: { t: "bool", v: true } });
  const undeclared = (bytes: number[], field: number) => {
    const o = harness.run(0, [msg([...str(1, "a"), ...bytes])]);
    assert.equal(o.kind === "error" && o.message, `cannot read the request body: value not declared by its closed protobuf enum (field ${field})`);
  };
  ok([...key(2, 0), 2, ...key(5, 0), 1, ...key(5, 2), 2, 1, 2, ...str(6, [...str(1, "k"), ...key(2, 0), 2])]);
  undeclared([...key(2, 0), 0], 2);
  undeclared([...key(2, 0), ...varint(-1n)], 2);
  undeclared([...key(5, 0), 3], 5);
  undeclared([...key(5, 2), 2, 1, 7], 5);
  undeclared(str(6, [...str(1, "k"), ...key(2, 0), 9]), 2);
});

test("garbage protobuf messages never trap", () => {
  const r = new Rng(4242);
  let errors = 0;
  for (let i = 0; i < 2000; i++) {
    const bytes = Array.from({ length: r.int(48) }, () => (r.chance(0.3) ? r.pick([0x08, 0x0a, 0x12, 0x8a, 0x01, 0x80, 0xff, 0x03, 0x04]) : r.int(256)));
    const o = run("request.grpc.message.inner.child.name + request.grpc.message.appname == 'x' || request.grpc.message.score > 0.0", [proto(bytes, r.chance(0.3))]);
    if (o.kind === "error") {
      errors++;
      assert.equal(o.cls, "body", `${bytes.join(",")}: ${o.message}`);
    }
  }
  assert.ok(errors > 0);
});

test("grpc framing: one uncompressed message, or a distinct reason", () => {
  const msg = [0x0a, 0x01, 0x61];
  isTrue("request.grpc.message.appname == 'a'", [proto(grpcBody(msg), true)]);
  const cases: [Uint8Array, RegExp][] = [
    [grpcBody(msg, 1), /^cannot read the request body: grpc message is compressed$/],
    [Uint8Array.from([...grpcBody(msg), ...grpcBody(msg)]), /grpc request has more than one message$/],
    [grpcBody(msg).subarray(0, 6), /truncated grpc frame$/],
    [Uint8Array.of(0, 0, 0), /truncated grpc frame$/],
    [new Uint8Array(0), /grpc request has no message$/],
    [grpcBody(msg, 2), /invalid grpc frame flag$/],
  ];
  for (const [body, why] of cases) assert.match(errorOf("request.grpc.message.appname == 'a'", [proto(body, true)]).message, why);
});

test("a message compiled for another method is not read", () => {
  const e = errorOf("request.grpc.message.appname == 'a'", [proto([0x0a, 0x01, 0x61], false, "/celtest.TestService/Other")]);
  assert.equal(e.message, "no such attribute: 'request.grpc.message'");
});

// --- limits, messages, activation errors ----------------------------------------------------------------------

test("the scratch arena is bounded per request", () => {
  const long: VarInput = { id: 4, kind: "string", value: "a".repeat(40000) };
  const e = errorOf("request.path + request.path == ''", [long]);
  assert.deepEqual([e.cls, e.message], ["limit", "limit exceeded: scratch arena exhausted"]);
  isTrue("size(request.path + 'b') == 40001", [long]);
});

test("error messages name what is missing, quoting user input", () => {
  const cases: [string, VarInput[], string][] = [
    ["request.headers['x-user'] == 'a'", [{ id: 6, kind: "map", entries: [] }], "no such key: 'x-user'"],
    ["source.id == 'a'", [], "no such attribute: 'source.id'"],
    ["1 / (size(request.path) - size(request.path)) == 1", [{ id: 4, kind: "string", value: "/" }], "division by zero in '/'"],
    ["9223372036854775807 + size(request.path) > 0", [{ id: 4, kind: "string", value: "/" }], "overflow in '+'"],
    ["int(request.method) == 1", [{ id: 3, kind: "string", value: "GET" }], "cannot convert string 'GET'"],
    ["request.json.n + 'a' == 'x'", [json('{"n":1}')], "no matching overload for '+'"],
    ["request.json.a.b == 1", [json('{"a":{}}')], "no such key: 'b'"],
    ["request.json.l[3] == 1", [json('{"l":[]}')], "no such key: '3'"],
    [`request.headers['${"k".repeat(200)}'] == 'a'`, [{ id: 6, kind: "map", entries: [] }], `no such key: '${"k".repeat(120)}...'`],
  ];
  for (const [src, vars, message] of cases) assert.equal(errorOf(src, vars).message, message, src);
});

test("an activation error propagates, and false && error is false", () => {
  const tooBig: VarInput = { id: 10, kind: "error", errorKind: 25, detail: "request body over 1048576 bytes" };
  assert.equal(errorOf("request.json.a == 1", [tooBig]).message, "cannot read the request body: request body over 1048576 bytes");
  isTrue("!(false && request.json.a == 1) && (request.json.a == 1 || true)", [tooBig]);
});

// --- where we follow the CEL specification, not @bufbuild/cel 0.6.1 --------------------------------------------

test("has() and 'in' see a json key whose value is null", () => {
  isTrue("has(request.json.a) && 'a' in request.json && request.json.a == null", [json('{"a":null}')]);
});

test("has() on an absent document is an error, not false", () => {
  assert.equal(errorOf("has(request.json.a)", [{ id: 10, kind: "absent" }]).message, "no such attribute: 'request.json'");
});

test("conversions parse strings as cel-go does", () => {
  isTrue("int('+7') == 7 && int('007') == 7 && uint('18446744073709551615') == 18446744073709551615u", []);
  for (const bad of ["int('')", "int(' 7')", "int('0x10')", "uint('-0')", "uint('+1')", "double('abc')", "double('')", "double('1_0')"]) {
    assert.equal(errorOf(`dyn(${bad}) == 0`, []).cls, "conversion", bad);
  }
  isTrue("double('inf') > 1e308 && double('-Infinity') < -1e308 && double('1e400') > 1e308 && double('.5') == 0.5", []);
  isTrue("uint(9223372036854775808u / 1u) == 9223372036854775808u", []);
});
