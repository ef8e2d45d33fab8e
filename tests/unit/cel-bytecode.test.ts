// The bytecode contract: the compiler's and the engine's tables agree, the EXPR encoding round-trips, and the
// engine's load-time validation rejects every defect class and never traps, even on mutated sections.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  compileCondition, encodePrograms, decodeSection, disassemble, loadProtos, variableKinds, Op, ProtoType,
  REQUEST_VARIABLES, VARIABLE_KIND_CODES, type CelProgram,
} from "../../src/cel/index.ts";
import { ConstKind, PROTO_TYPE_BYTES, maxStackDepth } from "../../src/cel/bytecode.ts";
import { EXPR_VERSION, FieldFlag } from "../../src/cel/section.ts";
import { CelHarness, type VarInput } from "../cel/wasm-harness.ts";
import { ENGINE_ERROR_CLASSES } from "../cel/outcome.ts";
import { Rng } from "../cel/generate.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const KINDS = variableKinds(REQUEST_VARIABLES);
const harness = await CelHarness.create();

/** `export const NAME: type = value;` declarations of an engine source file. */
function engineConstants(file: string, prefix: string): Map<string, number> {
  const src = fs.readFileSync(path.join(ROOT, "assembly/engine/cel", file), "utf8");
  const out = new Map<string, number>();
  for (const m of src.matchAll(new RegExp(`export const ${prefix}(\\w+): \\w+ = (0x[0-9a-fA-F]+|\\d+);`, "g"))) {
    out.set(m[1], Number(m[2]));
  }
  return out;
}

test("the compiler and the engine agree on opcodes, tags, types, variables and error kinds", () => {
  const ops = engineConstants("opcodes.ts", "OP_");
  assert.deepEqual(Object.fromEntries(ops), { ...Op });
  const tags = engineConstants("value.ts", "T_");
  for (const [name, code] of Object.entries(ConstKind)) assert.equal(tags.get(name), code, `T_${name}`);
  const pt = engineConstants("schema.ts", "PT_");
  assert.equal(pt.get("BYTES"), PROTO_TYPE_BYTES);
  pt.delete("BYTES");
  assert.deepEqual(Object.fromEntries(pt), { ...ProtoType });
  const flags = engineConstants("schema.ts", "FIELD_");
  assert.deepEqual(Object.fromEntries(flags), { REPEATED: FieldFlag.REPEATED, EXPLICIT_PRESENCE: FieldFlag.EXPLICIT_PRESENCE, REQUIRED: FieldFlag.REQUIRED });
  assert.equal(engineConstants("program.ts", "EXPR_SECTION_").get("VERSION"), EXPR_VERSION);
  const vars = engineConstants("program.ts", "VAR_");
  assert.equal(vars.size, REQUEST_VARIABLES.length);
  for (const v of REQUEST_VARIABLES) assert.equal(vars.get(v.name.replace(/\./g, "_").toUpperCase()), v.id, v.name);
  const vk = engineConstants("program.ts", "VK_");
  for (const [kind, code] of Object.entries(VARIABLE_KIND_CODES)) assert.equal(vk.get(kind.toUpperCase()), code);
  const standard = /STANDARD_VAR_KINDS: StaticArray<u8> = \[([^\]]*)\]/.exec(fs.readFileSync(path.join(ROOT, "assembly/engine/cel/program.ts"), "utf8"))![1];
  assert.deepEqual(standard.split(",").map((s) => s.trim()).filter(Boolean).map((k) => vk.get(k.replace("VK_", ""))), [...KINDS]);
  const errs = engineConstants("value.ts", "E_");
  errs.delete("LAST");
  assert.deepEqual([...errs.values()].sort(), Object.keys(ENGINE_ERROR_CLASSES).map(Number).sort());
});

function compile(src: string): CelProgram {
  const protos = loadProtos([path.join(ROOT, "tests/cel/protos/celtest.proto")]);
  const m = protos.findMethod("/celtest.TestService/Fetch")!;
  const r = compileCondition(src, { grpc: { path: m.path, requestType: m.requestType }, resultType: "any" });
  if (!("program" in r)) assert.fail(r.errors.map((e) => e.message).join("; "));
  return r.program;
}

test("the EXPR section stores shared paths once and keeps each program's code", () => {
  const a = compile("request.json.tenant.id == 'a' && 'x' in request.json.tags");
  const b = compile("has(request.json.tenant.id) && request.json.tags[0] == 'y' && 'y' in request.json.tags");
  const c = compile("request.grpc.message.inner.count > 1 && has(request.grpc.message.inner)");
  const section = encodePrograms([a, b, c]);
  const d = decodeSection(section);
  assert.deepEqual(d.dynPaths.map((p) => [p.segments.map(String).join("/"), p.members]), [
    ["tenant/id", false], ["tags", true], ["tags/0", false],
  ]);
  assert.deepEqual(d.protoPaths.map((p) => [p.method, p.fields.map((f) => `${f.number}:${f.type}`).join("/"), p.explicitPresence]), [
    ["/celtest.TestService/Fetch", "17:11/2:3", false], ["/celtest.TestService/Fetch", "17:11", true],
  ]);
  assert.equal(d.programs.length, 3);
  // b's DYN_HAS and DYN_GET reuse the section-wide ids of a's paths.
  assert.match(disassemble(d.programs[1].code), /DYN_HAS 0\n.*\n.*DYN_GET 2[\s\S]*DYN_IN 1/);
  assert.deepEqual(d.programs[0].consts, [{ kind: "string", value: "a" }, { kind: "string", value: "x" }]);
  harness.load(section, KINDS);
  assert.equal(harness.programCount, 3);
});

test("maxStackDepth follows both edges of a conditional", () => {
  // c ? (1 + 2) : 3  ->  CONST COND CONST CONST ADD JUMP CONST RETURN
  const code = [
    { op: Op.CONST, a: 0 }, { op: Op.COND, a: 6, b: 7 }, { op: Op.CONST, a: 1 }, { op: Op.CONST, a: 2 },
    { op: Op.ADD }, { op: Op.JUMP, a: 7 }, { op: Op.CONST, a: 3 }, { op: Op.RETURN },
  ];
  assert.equal(maxStackDepth(code), 2);
  assert.throws(() => maxStackDepth([{ op: Op.CONST, a: 0 }, { op: Op.CONST, a: 0 }, { op: Op.RETURN }]), /return with 2 values/);
});

// --- hand-made sections -------------------------------------------------------------------------------------

const le32 = (n: number) => [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255];
const le16 = (n: number) => [n & 255, (n >>> 8) & 255];
const INT0 = [ConstKind.INT, 0, 0, 0, 0, 0, 0, 0, 0];

function program(maxStack: number, consts: number[][], code: number[]): number[] {
  const rec = [...le16(maxStack), ...le16(consts.length), ...consts.flat(), ...le32(code.length), ...code];
  return [...le32(rec.length), ...rec];
}

/** Closed enums, message schemas and methods for hand-made sections. */
interface Schema { messages: number[][]; methods: number[][]; enums?: number[][] }
const NONE = 0xffff;
/** A schema field: number, type, flags (1 repeated, 2 explicit presence, 4 required), oneof, message index. */
const sf = (n: number, t: number, flags = 0, oneof = NONE, msg = t === ProtoType.MESSAGE ? 0 : NONE) => [...le32(n), t, flags, ...le16(oneof), ...le16(msg)];
const message = (fields: number[][], oneofs = 0) => [...le16(fields.length), ...le16(oneofs), ...fields.flat()];
const method = (name: string, msg: number) => [...le32(name.length), ...Buffer.from(name), ...le16(msg)];
/** Message 0: 1 string, 2 int32, 3 bytes, 4 repeated int32, 17 message 0; one method reading it. */
const SCHEMA: Schema = {
  messages: [message([sf(1, ProtoType.STRING), sf(2, ProtoType.INT32), sf(3, 12), sf(4, ProtoType.INT32, 1), sf(17, ProtoType.MESSAGE)])],
  methods: [method("/p.S/M", 0)],
};

function section(programs: number[][], dyn: number[][] = [], proto: number[][] = [], version = 2, schema: Schema = SCHEMA): Uint8Array {
  return Uint8Array.from([
    ...le32(version), ...le32(dyn.length), ...dyn.flat(), ...le32(schema.enums?.length ?? 0), ...(schema.enums ?? []).flat(),
    ...le32(schema.messages.length), ...schema.messages.flat(),
    ...le32(schema.methods.length), ...schema.methods.flat(), ...le32(proto.length), ...proto.flat(), ...le32(programs.length), ...programs.flat(),
  ]);
}

const dynKey = (root: number, ...keys: string[]) => [root, 0, ...le16(keys.length), ...keys.flatMap((k) => [0, ...le32(k.length), ...Buffer.from(k)])];
const dynIndex = (root: number) => [root, 0, ...le16(1), 1, 0, 0, 0, 0, 0, 0, 0, 0];
const protoPath = (root: number, numbers: number[], methodIndex = 0, flags = 0) => [root, flags, ...le16(methodIndex), ...le16(numbers.length), ...numbers.flatMap((n) => le32(n))];
const GET_PATH_0 = [program(1, [], [Op.PROTO_GET, 0, 0, Op.RETURN])];
const withSchema = (messages: number[][], methods = SCHEMA.methods, enums: number[][] = []) => ({ messages, methods, enums });
const closedEnum = (...values: number[]) => [...le32(values.length), ...values.flatMap((v) => le32(v >>> 0))];

const { CONST, VAR, MAP_GET, DYN_GET, DYN_HAS, PROTO_GET, NOT, EQ, AND, JUMP, JUMP_IF_FALSE, RETURN } = Op;

const DEFECTS: [string, Uint8Array, RegExp][] = [
  ["version 1 (an older filter's format)", section([program(1, [INT0], [CONST, 0, 0, RETURN])], [], [], 1), /^unsupported expr section version$/],
  ["version 3", section([program(1, [INT0], [CONST, 0, 0, RETURN])], [], [], 3), /^unsupported expr section version$/],
  ["truncated section", section([program(1, [INT0], [CONST, 0, 0, RETURN])]).subarray(0, 20), /truncated/],
  ["trailing bytes", Uint8Array.from([...section([program(1, [INT0], [CONST, 0, 0, RETURN])]), 0]), /^trailing bytes after the last program$/],
  ["unknown opcode", section([program(1, [], [0x77])]), /^program 0: unknown opcode at 0$/],
  ["stack underflow", section([program(1, [], [NOT, RETURN])]), /^program 0: stack underflow at 0$/],
  ["stack overflow", section([program(1, [INT0], [CONST, 0, 0, CONST, 0, 0, EQ, RETURN])]), /^program 0: stack overflow at 3$/],
  ["two results", section([program(2, [INT0], [CONST, 0, 0, CONST, 0, 0, RETURN])]), /^program 0: return with 2 values at 6$/],
  ["falls off the end", section([program(1, [INT0], [CONST, 0, 0])]), /^program 0: control falls off the end of the code$/],
  ["unreachable code", section([program(1, [INT0], [CONST, 0, 0, RETURN, CONST, 0, 0, RETURN])]), /^program 0: unreachable instruction at 4$/],
  ["backward jump", section([program(1, [INT0], [CONST, 0, 0, JUMP, 0, 0, RETURN])]), /^program 0: bad jump target at 3$/],
  ["jump into an instruction", section([program(2, [INT0], [CONST, 0, 0, JUMP_IF_FALSE, 7, 0, CONST, 0, 0, AND, RETURN])]), /^program 0: jump into an instruction at 7$/],
  ["inconsistent depth", section([program(2, [INT0], [CONST, 0, 0, JUMP_IF_FALSE, 9, 0, CONST, 0, 0, RETURN])]), /^program 0: inconsistent stack depth at 9$/],
  ["constant index", section([program(1, [INT0], [CONST, 5, 0, RETURN])]), /^program 0: bad constant index at 0$/],
  ["map variable read as a scalar", section([program(1, [], [VAR, 2, RETURN])]), /^program 0: bad variable at 0$/],
  ["scalar variable read as a map", section([program(1, [INT0], [CONST, 0, 0, MAP_GET, 0, RETURN])]), /^program 0: bad map variable at 3$/],
  ["unknown variable", section([program(1, [], [VAR, 99, RETURN])]), /^program 0: bad variable at 0$/],
  ["dyn path on a scalar", section([program(1, [], [DYN_GET, 0, 0, RETURN])], [dynKey(0, "a")]), /^dyn path 0 has a root that is not a dyn variable$/],
  ["dyn path index", section([program(1, [], [DYN_GET, 1, 0, RETURN])], [dynKey(10, "a")]), /^program 0: bad dyn path at 0$/],
  ["has() of an index", section([program(1, [], [DYN_HAS, 0, 0, RETURN])], [dynIndex(10)]), /does not end in a key at 0$/],
  ["message read as a value", section([program(1, [], [PROTO_GET, 0, 0, RETURN])], [], [protoPath(13, [17])]), /^program 0: message field read as a value at 0$/],
  ["path names field 0", section(GET_PATH_0, [], [protoPath(13, [0])]), /^proto path 0 names a field its message does not have$/],
  ["path names an undeclared field", section(GET_PATH_0, [], [protoPath(13, [17, 5])]), /^proto path 0 names a field its message does not have$/],
  ["select inside a scalar", section(GET_PATH_0, [], [protoPath(13, [1, 2])]), /^proto path 0 selects inside a scalar$/],
  ["path reads bytes", section(GET_PATH_0, [], [protoPath(13, [3])]), /^proto path 0 has an unsupported field type$/],
  ["path reads a repeated field", section(GET_PATH_0, [], [protoPath(13, [4])]), /^proto path 0 reads a repeated field$/],
  ["path on a scalar variable", section(GET_PATH_0, [], [protoPath(0, [1])]), /^proto path 0 has a root that is not a message variable$/],
  ["path with flags", section(GET_PATH_0, [], [protoPath(13, [1], 0, 1)]), /^proto path 0 has unknown flags$/],
  ["path of an unknown method", section(GET_PATH_0, [], [protoPath(13, [1], 1)]), /^proto path 0 has a bad method$/],
  ["path too long", section(GET_PATH_0, [], [protoPath(13, Array(33).fill(17))]), /^proto path 0 has a bad length$/],
  ["empty path", section(GET_PATH_0, [], [protoPath(13, [])]), /^proto path 0 has a bad length$/],
  ["field numbers not ascending", section(GET_PATH_0, [], [], 2, withSchema([message([sf(2, ProtoType.STRING), sf(1, ProtoType.STRING)])])), /^message 0 has a bad field number$/],
  ["field number twice", section(GET_PATH_0, [], [], 2, withSchema([message([sf(1, ProtoType.STRING), sf(1, ProtoType.INT32)])])), /^message 0 has a bad field number$/],
  ["field number 0 in a schema", section(GET_PATH_0, [], [], 2, withSchema([message([sf(0, ProtoType.STRING)])])), /^message 0 has a bad field number$/],
  ["field number over 2^29-1", section(GET_PATH_0, [], [], 2, withSchema([message([sf(2 ** 29, ProtoType.STRING)])])), /^message 0 has a bad field number$/],
  ["a group field", section(GET_PATH_0, [], [], 2, withSchema([message([sf(1, 10)])])), /^message 0 field 1 has an unsupported type$/],
  ["type 0", section(GET_PATH_0, [], [], 2, withSchema([message([sf(1, 0)])])), /^message 0 field 1 has an unsupported type$/],
  ["unknown flag", section(GET_PATH_0, [], [], 2, withSchema([message([sf(1, ProtoType.STRING, 8)])])), /^message 0 field 1 has bad flags$/],
  ["repeated and required", section(GET_PATH_0, [], [], 2, withSchema([message([sf(1, ProtoType.STRING, 5)])])), /^message 0 field 1 has bad flags$/],
  ["repeated with explicit presence", section(GET_PATH_0, [], [], 2, withSchema([message([sf(1, ProtoType.STRING, 3)])])), /^message 0 field 1 has bad flags$/],
  ["repeated oneof member", section(GET_PATH_0, [], [], 2, withSchema([message([sf(1, ProtoType.STRING, 1, 0)], 1)])), /^message 0 field 1 has bad flags$/],
  ["oneof out of range", section(GET_PATH_0, [], [], 2, withSchema([message([sf(1, ProtoType.STRING, 0, 1)], 1)])), /^message 0 field 1 has a bad oneof$/],
  ["required oneof member", section(GET_PATH_0, [], [], 2, withSchema([message([sf(1, ProtoType.STRING, 4, 0)], 1)])), /^message 0 field 1 has a bad oneof$/],
  ["message index out of range", section(GET_PATH_0, [], [], 2, withSchema([message([sf(1, ProtoType.MESSAGE, 0, NONE, 1)])])), /^message 0 field 1 has a bad message index$/],
  ["scalar with a message index", section(GET_PATH_0, [], [], 2, withSchema([message([sf(1, ProtoType.STRING, 0, NONE, 0)])])), /^message 0 field 1 has a bad message index$/],
  ["oneof count 0xffff", section(GET_PATH_0, [], [], 2, withSchema([message([], NONE)])), /^message 0 has a bad oneof count$/],
  ["method twice", section(GET_PATH_0, [], [], 2, withSchema(SCHEMA.messages, [method("/p.S/M", 0), method("/p.S/M", 0)])), /^method 1 appears twice$/],
  ["method of an unknown message", section(GET_PATH_0, [], [], 2, withSchema(SCHEMA.messages, [method("/p.S/M", 1)])), /^method 0 has a bad message index$/],
  ["truncated schema", section(GET_PATH_0).subarray(0, 4 + 4 + 4 + 4 + 4 + 6), /^expr section truncated in message 0$/],
  ["enum values out of order", section(GET_PATH_0, [], [], 2, withSchema(SCHEMA.messages, SCHEMA.methods, [closedEnum(1, 1)])), /^enum 0 has values out of order$/],
  ["enum values descending", section(GET_PATH_0, [], [], 2, withSchema(SCHEMA.messages, SCHEMA.methods, [closedEnum(-1, 5, 2)])), /^enum 0 has values out of order$/],
  ["truncated enum", section(GET_PATH_0, [], [], 2, withSchema(SCHEMA.messages, SCHEMA.methods, [closedEnum(1, 2, 3)])).subarray(0, 4 + 4 + 4 + 4 + 4), /^expr section truncated in enum 0$/],
  ["enum index out of range", section(GET_PATH_0, [], [], 2, withSchema([message([sf(1, ProtoType.ENUM, 0, NONE, 1)])], SCHEMA.methods, [closedEnum(0)])), /^message 0 field 1 has a bad enum index$/],
  ["enum index on an int", section(GET_PATH_0, [], [], 2, withSchema([message([sf(1, ProtoType.INT32, 0, NONE, 0)])], SCHEMA.methods, [closedEnum(0)])), /^message 0 field 1 has a bad message index$/],
  ["list element not earlier", section([program(1, [[ConstKind.LIST, ...le16(1), ...le16(0)]], [CONST, 0, 0, RETURN])]), /^program 0: bad list element$/],
  ["string not utf-8", section([program(1, [[ConstKind.STRING, ...le32(2), 0xc3, 0x28]], [CONST, 0, 0, RETURN])]), /^program 0: string constant is not utf-8$/],
  ["bool constant", section([program(1, [[ConstKind.BOOL, 2]], [CONST, 0, 0, RETURN])]), /^program 0: bad bool constant$/],
  ["zero stack", section([program(0, [INT0], [CONST, 0, 0, RETURN])]), /^program 0: bad stack size$/],
];

/** Defects in the paths and schemas: the TypeScript decoder (decode.ts, `check`) finds them too, in the same words. */
const SCHEMA_DEFECT = /^(proto path \d+ (?!has a root)|message|method|enum|expr section truncated in (enum|message|method|proto path)|unsupported expr section version|bad (enum|message|method|proto path) count)/;

for (const [name, bytes, why] of DEFECTS) {
  test(`the engine rejects a section with a defect: ${name}`, () => {
    assert.match(harness.tryLoad(bytes, KINDS) ?? "(accepted)", why);
    if (SCHEMA_DEFECT.test(harness.tryLoad(bytes, KINDS) ?? "")) {
      assert.throws(() => decodeSection(bytes), (e: Error) => why.test(e.message), `decodeSection: ${name}`);
    }
  });
}

test("the engine accepts the hand-made baseline", () => {
  assert.equal(harness.tryLoad(section([program(1, [INT0], [CONST, 0, 0, RETURN])]), KINDS), undefined);
  assert.deepEqual(harness.run(0, []), { kind: "value", value: { t: "int", v: 0n } });
  const reads = section(GET_PATH_0, [], [protoPath(13, [17, 17, 1])]);
  assert.equal(harness.tryLoad(reads, KINDS), undefined);
  const msg = [0x8a, 0x01, 0x05, 0x8a, 0x01, 0x02, 0x0a, 0x00];
  assert.deepEqual(harness.run(0, [{ id: 13, kind: "proto", method: "/p.S/M", framed: false, bytes: Uint8Array.from(msg) }]), {
    kind: "value", value: { t: "string", v: "" },
  });
  assert.deepEqual(decodeSection(reads).protoPaths.map((p) => p.fields.map((f) => `${f.number}:${f.type}`).join("/")), ["17:11/17:11/1:9"]);
});

test("mutated sections are rejected or run, and never trap", () => {
  const sources = [
    "source.attributes.app == 'orders' && request.method in ['GET', 'HEAD'] || size(request.headers) > 2",
    "request.json.tenant.id == source.attributes['tenant'] ? has(request.json.a.b) : 'x' in jwt.claims.roles",
    "request.grpc.message.inner.count + 1 > int(request.grpc.message.u64) && has(request.grpc.message.nickname)",
    "string(size(request.path)) + request.method == 'x' || double('1.5') / 0.0 > 1.0 || [1, 2][1] == 2",
  ];
  const base = encodePrograms(sources.map(compile));
  const vars: VarInput[] = [
    { id: 0, kind: "string", value: "spiffe://td/app/orders" },
    { id: 2, kind: "map", entries: [["app", "orders"]] },
    { id: 3, kind: "string", value: "GET" },
    { id: 4, kind: "string", value: "/a" },
    { id: 6, kind: "map", entries: [["x", "y"]] },
    { id: 10, kind: "json", text: '{"tenant":{"id":"t"},"a":{"b":1}}' },
    { id: 13, kind: "proto", method: "/celtest.TestService/Fetch", framed: false, bytes: Uint8Array.of(0x8a, 1, 2, 0x10, 5) },
    { id: 14, kind: "json", text: '{"roles":["x"]}' },
  ];
  const r = new Rng(20240611);
  let accepted = 0;
  const N = 3000;
  for (let i = 0; i < N; i++) {
    const m = Uint8Array.from(base);
    const edits = 1 + r.int(4);
    for (let e = 0; e < edits; e++) {
      const at = r.int(m.length);
      m[at] = r.chance(0.5) ? r.int(256) : m[at] ^ (1 << r.int(8));
    }
    const cut = r.chance(0.1) ? m.subarray(0, r.int(m.length)) : m;
    let tsError: string | undefined;
    try {
      decodeSection(cut);
    } catch (e) {
      tsError = (e as Error).message;
    }
    const engineError = harness.tryLoad(cut, KINDS);
    // The TypeScript decoder checks paths and schemas as the engine does (not the programs' code).
    if (tsError !== undefined) assert.notEqual(engineError, undefined, `decodeSection rejects (${tsError}), the engine accepts`);
    if (engineError !== undefined) continue;
    accepted++;
    for (let p = 0; p < harness.programCount; p++) harness.run(p, vars);
  }
  // Both outcomes must occur, or the mutations are not exercising the validator.
  assert.ok(accepted > 0 && accepted < N, `accepted ${accepted} of ${N}`);
});
