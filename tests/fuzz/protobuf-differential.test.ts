// The protobuf differential (tests/fuzz/protobuf-differential.ts): build/release.wasm against protobufjs (as
// @grpc/proto-loader sets it up for a grpc-js server) and protobuf-es, on generated and mutated messages of
// tests/fuzz/protos/. Whenever the filter reads a message, both decoders read it alike and the filter read their
// values; every canonical message (as written field by field, and as each decoder's own encoder writes it) is read.
//
// PROTO_DIFF_SEED, PROTO_DIFF_MESSAGES and PROTO_DIFF_FIRST (the first message index, to split a long run) override
// the short run `npm test` does; a failure prints the seed, the message index and the message's bytes.
//   PROTO_DIFF_MESSAGES=1000000 node --import tsx --test tests/fuzz/protobuf-differential.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ensureWasm } from "../../dev/envoy/wasm.ts";
import { FUZZ_METHODS, FUZZ_PROTOS, ProtobufDifferential, runDifferential } from "./protobuf-differential.ts";
import { varint } from "./protobuf-gen.ts";

const seed = process.env.PROTO_DIFF_SEED !== undefined ? Number(process.env.PROTO_DIFF_SEED) : 20251205;
const iterations = process.env.PROTO_DIFF_MESSAGES !== undefined ? Number(process.env.PROTO_DIFF_MESSAGES) : 1500;
const first = process.env.PROTO_DIFF_FIRST !== undefined ? Number(process.env.PROTO_DIFF_FIRST) : 0;

await ensureWasm(() => {});
const d = await ProtobufDifferential.create(FUZZ_PROTOS, FUZZ_METHODS);
const [call, place] = d.methods;

const tag = (field: number, wire: number) => varint(BigInt((field << 3) | wire));
const str = (field: number, s: string | number[]) => {
  const b = typeof s === "string" ? [...Buffer.from(s)] : s;
  return [...tag(field, 2), ...varint(BigInt(b.length)), ...b];
};

test("PROTO_DIFF_SEED, PROTO_DIFF_MESSAGES and PROTO_DIFF_FIRST are integers", () => {
  assert.ok(Number.isInteger(seed) && Number.isInteger(iterations) && iterations > 0 && Number.isInteger(first) && first >= 0);
});

/** What protobufjs (as the grpc-js server has it) reads; it must accept the message. */
function pbjsRead(bytes: number[]): Record<string, any> {
  const r = d.pbjs(call, Uint8Array.from(bytes));
  if (!r.ok) assert.fail(`protobufjs refused the message: ${r.error}`);
  return r.value;
}

test("the three reproductions: protobufjs reads 'orders' or a default where a lenient reader reads 'billing'; the filter refuses each", () => {
  const refused = (bytes: number[]) => d.filter(call, Uint8Array.from(bytes), undefined);
  // (a) a field tag as a 6-byte varint: protobufjs takes 5 bytes and skips 5 more, into what follows.
  // A reader that takes the 6 bytes sees resource_id "xxx", appname "billing", and field 15 hiding "orders".
  const a = [0x92, 0x80, 0x80, 0x80, 0x80, 0x00, 3, ...Buffer.from("xxx"), 0x0a, 7, ...Buffer.from("billing"), 0x7a, 8, ...str(1, "orders")];
  assert.equal(pbjsRead(a).appname, "orders");
  assert.deepEqual([refused(a).outcome, refused(a).reason], ["refused", "non-canonical varint in protobuf message"]);
  // (b) resource_id (a string) with wire type 0: protobufjs reads a string anyway and swallows the next field.
  // A reader that skips a varint sees appname "billing", and field 15 hiding "orders".
  const b = [...tag(2, 0), 11, ...str(1, "billing"), 0x7a, 8, ...str(1, "orders")];
  assert.equal(pbjsRead(b).appname, "orders");
  assert.deepEqual([refused(b).outcome, refused(b).reason], ["refused", "unexpected wire type for protobuf field"]);
  // (c) a singular message twice: protobuf-es merges (redacted stays true), protobufjs replaces (redacted: false).
  const c = [...str(34, [...tag(2, 0), 1]), ...str(34, str(1, "orders"))];
  const es = d.es(call, Uint8Array.from(c));
  assert.ok(es.ok);
  const esScope = (es.value as unknown as { scope?: { redacted: boolean } }).scope;
  assert.deepEqual([pbjsRead(c).scope.redacted, pbjsRead(c).scope.appname, esScope?.redacted], [false, "orders", true]);
  assert.deepEqual([refused(c).outcome, refused(c).reason], ["refused", "singular protobuf field occurs more than once"]);
});

test("what protobufjs's and protobuf-es's own encoders write is read, values included", () => {
  const pbjs = call.pbjsType;
  const values: Record<string, unknown>[] = [
    {},
    { appname: "billing", i32: -1, i64: "-9223372036854775808", u64: "18446744073709551615", s32: -2147483648, s64: "9223372036854775807", f32: 4294967295, f64: "18446744073709551615", sf32: -1, sf64: "-1", flag: true, ratio: -0, score: NaN, kind: 7, last: 4294967295 },
    { leaf: { name: "a", count: "3", next: { name: "b", next: { count: "-5" } }, data: Buffer.from([1, 2]), ids: ["1", "18446744073709551615"] } },
    { nickname: "", level: 0, choice_leaf: { name: "x" }, tags: ["", "😀"], nums: [-1, 0, 2147483647], marks: ["1"], plain: [1, -1], bits: [true, false], ratios: [Infinity, -0], kinds: [0, 1, 9] },
    { by_name: { k: { name: "v" }, "": {} }, by_id: { "-1": "neg", "9223372036854775807": "max" }, scope: { appname: "\uFEFForders", redacted: true, parent: { appname: "p" }, labels: { a: "b" } } },
    { choice_a: "", leaves: [{}, { name: "n" }] },
  ];
  for (const v of values) {
    const fromPbjs = pbjs.encode(pbjs.fromObject(v)).finish();
    const fromEs = toBinary(call.desc, fromBinary(call.desc, fromPbjs));
    for (const [who, bytes] of [["protobufjs", fromPbjs], ["protobuf-es", fromEs]] as const) {
      const es = d.es(call, bytes);
      assert.ok(es.ok);
      const verdict = d.filter(call, bytes, es.value);
      assert.equal(verdict.outcome, "read", `${who} ${JSON.stringify(v)}: ${verdict.detail}`);
    }
  }
  // proto2: required fields, explicit presence, packed and unpacked numbers.
  const order = create(place.desc, { owner: "o", note: "", total: -3n, items: [create(place.desc.fields[3].message!, { id: "i", qty: 0 })], codes: [1, -1], loose: [2] });
  const bytes = toBinary(place.desc, order as never);
  assert.equal(d.filter(place, bytes, fromBinary(place.desc, bytes)).outcome, "read");
  const again = place.pbjsType.encode(place.pbjsType.decode(bytes)).finish();
  assert.equal(d.filter(place, again, fromBinary(place.desc, again)).outcome, "read");
});

test(`generated and mutated messages: the filter reads only what both decoders read alike (seed ${seed}, ${iterations} messages from ${first})`, { timeout: 0 }, () => {
  const s = runDifferential(d, seed, iterations, first);
  const refusedTotal = Object.values(s.refused).reduce((a, b) => a + b, 0);
  console.log(
    `protobuf differential: seed ${seed}, messages ${first}..${first + iterations - 1}: ${s.generated} generated (${s.generatedRead} read), ` +
      `${s.mutated} mutated (${s.mutatedRead} read, ${s.canonicalMutations} by canonical mutations only), ${refusedTotal} refused, ` +
      `${s.decodersDisagree} the decoders read differently, ${s.disagreements} disagreements, ${s.canonicalRefused} canonical refused, ` +
      `${s.traps} traps (${Math.round(s.ms)} ms); filter memory ${s.memoryWarm} bytes warm, ${s.memoryEnd} at the end\n  refused by reason ${JSON.stringify(s.refused)}\n  per mutation [messages, read] ${JSON.stringify(s.byMutation)}`,
  );
  assert.deepEqual(s.failures, [], `rerun with PROTO_DIFF_SEED=${seed}`);
  assert.equal(s.traps, 0);
  assert.equal(s.disagreements, 0);
  assert.equal(s.canonicalRefused, 0);
  assert.equal(s.generatedRead, s.generated);
  // Nothing accumulates per request: the filter's memory stays where it was once warm.
  assert.equal(s.memoryEnd, s.memoryWarm, "the filter's memory grew during the run");
  // The run must exercise both sides: messages the decoders read differently, mutated messages read and refused.
  assert.ok(s.decodersDisagree > 0 && s.mutatedRead > 0 && s.mutatedRead < s.mutated, JSON.stringify(s));
  for (const reason of ["non-canonical varint in protobuf message", "unexpected wire type for protobuf field", "singular protobuf field occurs more than once"]) {
    assert.ok((s.refused[reason] ?? 0) > 0, `no message refused for '${reason}'`);
  }
});
