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
import { ConstKind, maxStackDepth } from "../../src/cel/bytecode.ts";
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
  const pt = engineConstants("program.ts", "PT_");
  assert.deepEqual(Object.fromEntries(pt), { ...ProtoType });
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

function section(programs: number[][], dyn: number[][] = [], proto: number[][] = [], version = 1): Uint8Array {
  return Uint8Array.from([...le32(version), ...le32(dyn.length), ...dyn.flat(), ...le32(proto.length), ...proto.flat(), ...le32(programs.length), ...programs.flat()]);
}

const dynKey = (root: number, ...keys: string[]) => [root, 0, ...le16(keys.length), ...keys.flatMap((k) => [0, ...le32(k.length), ...Buffer.from(k)])];
const dynIndex = (root: number) => [root, 0, ...le16(1), 1, 0, 0, 0, 0, 0, 0, 0, 0];
const protoPath = (root: number, fields: [number, number][]) => [root, 0, ...le16(fields.length), ...le32(0), ...fields.flatMap(([n, t]) => [...le32(n), t])];

const { CONST, VAR, MAP_GET, DYN_GET, DYN_HAS, PROTO_GET, NOT, EQ, AND, JUMP, JUMP_IF_FALSE, RETURN } = Op;

const DEFECTS: [string, Uint8Array, RegExp][] = [
  ["version", section([program(1, [INT0], [CONST, 0, 0, RETURN])], [], [], 2), /^unsupported expr section version$/],
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
  ["message read as a value", section([program(1, [], [PROTO_GET, 0, 0, RETURN])], [], [protoPath(13, [[17, ProtoType.MESSAGE]])]), /^program 0: message field read as a value at 0$/],
  ["field number 0", section([program(1, [], [PROTO_GET, 0, 0, RETURN])], [], [protoPath(13, [[0, ProtoType.STRING]])]), /^proto path 0 has a bad field number$/],
  ["select inside a scalar", section([program(1, [], [PROTO_GET, 0, 0, RETURN])], [], [protoPath(13, [[1, ProtoType.STRING], [2, ProtoType.STRING]])]), /selects inside a scalar$/],
  ["bytes field", section([program(1, [], [PROTO_GET, 0, 0, RETURN])], [], [protoPath(13, [[21, 12]])]), /unsupported field type$/],
  ["list element not earlier", section([program(1, [[ConstKind.LIST, ...le16(1), ...le16(0)]], [CONST, 0, 0, RETURN])]), /^program 0: bad list element$/],
  ["string not utf-8", section([program(1, [[ConstKind.STRING, ...le32(2), 0xc3, 0x28]], [CONST, 0, 0, RETURN])]), /^program 0: string constant is not utf-8$/],
  ["bool constant", section([program(1, [[ConstKind.BOOL, 2]], [CONST, 0, 0, RETURN])]), /^program 0: bad bool constant$/],
  ["zero stack", section([program(0, [INT0], [CONST, 0, 0, RETURN])]), /^program 0: bad stack size$/],
];

for (const [name, bytes, why] of DEFECTS) {
  test(`the engine rejects a section with a defect: ${name}`, () => {
    assert.match(harness.tryLoad(bytes, KINDS) ?? "(accepted)", why);
  });
}

test("the engine accepts the hand-made baseline", () => {
  assert.equal(harness.tryLoad(section([program(1, [INT0], [CONST, 0, 0, RETURN])]), KINDS), undefined);
  assert.deepEqual(harness.run(0, []), { kind: "value", value: { t: "int", v: 0n } });
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
    if (harness.tryLoad(cut, KINDS) !== undefined) continue;
    accepted++;
    for (let p = 0; p < harness.programCount; p++) harness.run(p, vars);
  }
  // Both outcomes must occur, or the mutations are not exercising the validator.
  assert.ok(accepted > 0 && accepted < N, `accepted ${accepted} of ${N}`);
});
