// The table format's numbers, written in four places, agree: the compiler's encoder (src/compiler/table.ts, with
// the codes of src/compiler/ir.ts), its TypeScript reader (src/compiler/decode.ts, which imports the encoder's
// constants and keeps only its index limits), the engine's decoder and validator (assembly/engine/table/, whose
// numbers live in format.ts) and the as-pect tests' hand encoder (tests/assembly/helpers.ts). The AssemblyScript
// files are read as text: `[export] const NAME[: type] = value;`, `const enum Name { A = 1, }` and
// `StaticArray` literals.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import {
  ENVELOPE_HEADER,
  FAM_DRY_RUN,
  FAM_METRICS,
  FAM_RECORD_ALLOWS,
  FLAG_DEFLATE,
  FLAG_PLANAR,
  MAX_BODY,
  MAX_REQUEST_BODY_BYTES,
  MAX_RULE_ID_BYTES,
  MAX_RULES,
  MAX_VALUE_BYTES,
  META_FLAG_GRPC_FIRST,
  META_FLAG_SAMPLE_ALLOWS,
  NO_EXPR,
  NO_HOLE,
  OLDEST_VERSION,
  PRED_HOLE,
  PRED_HOST_NAME,
  PRED_IGNORE_CASE,
  RECORD_SIZE,
  RESP_DEFAULT,
  RESP_GRPC_DEFAULT,
  RESP_REQUEST_ID,
  TAG,
  VERSION,
} from "../../src/compiler/table.ts";
import { MAX_POSTINGS, MAX_SHADOW_CLAUSES } from "../../src/compiler/decode.ts";
import { ACTION_CODE, FIELD_CODE, PATTERN_CODE } from "../../src/compiler/ir.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), "utf8");

/** A constant expression of the AssemblyScript sources: decimal or hex literals, `<<` and `*` only. */
function evaluate(expr: string, where: string): number {
  const terms = expr.trim().split(/\s*(<<|\*)\s*/);
  const num = (t: string) => {
    assert.match(t, /^(0x[0-9a-fA-F]+|\d+)$/, `${where}: cannot read ${JSON.stringify(expr)}`);
    return Number(t);
  };
  let v = num(terms[0]);
  for (let i = 1; i < terms.length; i += 2) v = terms[i] === "<<" ? v * 2 ** num(terms[i + 1]) : v * num(terms[i + 1]);
  return v;
}

/** Every `[export] const NAME[: type] = <number expression>;` of an AssemblyScript file. */
function constants(file: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of read(file).matchAll(/^(?:export )?const (\w+)(?:: \w+)? = ([0-9a-fA-Fx <*]+);/gm)) {
    out.set(m[1], evaluate(m[2], `${file} ${m[1]}`));
  }
  return out;
}

/** The members of `const enum name { A = 1, ... }` in an AssemblyScript file. */
function constEnum(file: string, name: string): Record<string, number> {
  const body = new RegExp(`export const enum ${name} \\{([^}]*)\\}`).exec(read(file));
  assert.ok(body, `${file}: no const enum ${name}`);
  const out: Record<string, number> = {};
  for (const m of body[1].matchAll(/(\w+) = (\d+)/g)) out[m[1]] = Number(m[2]);
  return out;
}

/** The numbers of `const name: StaticArray<u32> = [...]` or `const name: i32[] = [...]`. */
function arrayLiteral(file: string, name: string): number[] {
  const m = new RegExp(`const ${name}: [\\w<>\\[\\]]+ = \\[([^\\]]*)\\]`).exec(read(file));
  assert.ok(m, `${file}: no array ${name}`);
  return m[1]
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
}

const camelToUpper = (s: string) => s.replace(/[A-Z]/g, (c) => "_" + c).toUpperCase();
const ENGINE = "assembly/engine/table/format.ts";
const HELPERS = "tests/assembly/helpers.ts";

test("the section tags and record sizes agree: encoder, engine and the test encoder", () => {
  const engine = constants(ENGINE);
  const helpers = constants(HELPERS);
  for (const [name, tag] of Object.entries(TAG)) {
    assert.equal(engine.get(`TAG_${name}`), tag, `engine TAG_${name}`);
    // The test encoder writes the sections up to EXPR (replies are tested through the compiler).
    if (tag <= TAG.EXPR) assert.equal(helpers.get(`T_${name}`), tag, `helpers T_${name}`);
  }
  const tags = Object.values(TAG);
  assert.equal(engine.get("TAG_COUNT"), Math.max(...tags));
  assert.deepEqual(
    tags,
    tags.map((_, i) => i + 1),
    "tags are 1..n without gaps",
  );
  const engineSizes = arrayLiteral(ENGINE, "RECORD_SIZE");
  assert.deepEqual(engineSizes, [0, ...tags.map((t) => RECORD_SIZE[t])]);
  const helperSizes = arrayLiteral(HELPERS, "RECORD_SIZES");
  assert.deepEqual(helperSizes, engineSizes.slice(0, helperSizes.length));
  assert.equal(helperSizes.length, TAG.EXPR + 1);
  const names = /const SECTION_NAME: StaticArray<string> = \[([^\]]*)\]/.exec(read(ENGINE))![1];
  assert.deepEqual(
    names
      .split(",")
      .map((s) => s.trim().replace(/"/g, ""))
      .filter((s, i) => i === 0 || s !== ""),
    ["", ...Object.keys(TAG)],
  );
  // Record sizes the engine names one by one.
  const named: [string, number][] = [
    ["META_SIZE", TAG.META],
    ["FAM_SIZE", TAG.FAMS],
    ["CLAUSE_SIZE", TAG.SRCC],
    ["CLAUSE_SIZE", TAG.OPCL],
    ["PRED_SIZE", TAG.PRED],
    ["PAT_SIZE", TAG.PATS],
    ["SCHM_SIZE", TAG.SCHM],
    ["SKEY_SIZE", TAG.SKEY],
    ["RESP_SIZE", TAG.RESP],
    ["RHDR_SIZE", TAG.RHDR],
  ];
  for (const [name, tag] of named) assert.equal(engine.get(name), RECORD_SIZE[tag], name);
});

test("the envelope, flags, limits and sentinels agree: encoder, reader and engine", () => {
  const engine = new Map([...constants(ENGINE), ...constants("assembly/engine/principal-index.ts")]);
  const pairs: [string, number][] = [
    ["VERSION", VERSION],
    ["OLDEST_VERSION", OLDEST_VERSION],
    ["ENVELOPE_SIZE", ENVELOPE_HEADER],
    ["FLAG_DEFLATE", FLAG_DEFLATE],
    ["FLAG_PLANAR", FLAG_PLANAR],
    ["MAX_BODY_BYTES", MAX_BODY],
    ["MAX_REQUEST_BODY_BYTES", MAX_REQUEST_BODY_BYTES],
    ["MAX_RULES", MAX_RULES],
    ["MAX_RULE_ID_BYTES", MAX_RULE_ID_BYTES],
    ["MAX_VALUE_BYTES", MAX_VALUE_BYTES],
    ["NO_EXPR", NO_EXPR],
    ["NO_HOLE", NO_HOLE],
    ["META_FLAG_GRPC_FIRST", META_FLAG_GRPC_FIRST],
    ["META_FLAG_SAMPLE_ALLOWS", META_FLAG_SAMPLE_ALLOWS],
    ["FAM_FLAG_DRY_RUN", FAM_DRY_RUN],
    ["FAM_FLAG_RECORD_ALLOWS", FAM_RECORD_ALLOWS],
    ["FAM_FLAG_METRICS", FAM_METRICS],
    ["PRED_FLAG_IGNORE_CASE", PRED_IGNORE_CASE],
    ["PRED_FLAG_HOLE", PRED_HOLE],
    ["PRED_FLAG_HOST_NAME", PRED_HOST_NAME],
    ["RESP_FLAG_REQUEST_ID", RESP_REQUEST_ID],
    ["RESP_FLAG_DEFAULT", RESP_DEFAULT],
    ["RESP_GRPC_DEFAULT", RESP_GRPC_DEFAULT],
    ["MAX_POSTINGS", MAX_POSTINGS],
    ["MAX_SHADOW_RANGES", MAX_SHADOW_CLAUSES],
  ];
  for (const [name, value] of pairs) assert.equal(engine.get(name), value, name);
  // The engine's other table files take their numbers from format.ts.
  for (const file of fs.readdirSync(path.join(ROOT, "assembly/engine/table"))) {
    if (file === "format.ts") continue;
    assert.doesNotMatch(
      read(`assembly/engine/table/${file}`),
      /^(export )?const (TAG_|FLAG_|MAX_|META_|FAM_|PRED_|RESP_)\w* *[:=]/m,
      file,
    );
  }
  // The reader takes every other number from the encoder: no tag or size of its own.
  const decode = read("src/compiler/decode.ts");
  assert.doesNotMatch(decode, /^(export )?const (TAG|RECORD_SIZE|VERSION|FLAG_)\w* =/m);
});

test("field, action and pattern codes agree: IR codes, engine enums and the test encoder", () => {
  const fields = constEnum(ENGINE, "Field");
  assert.deepEqual(fields, Object.fromEntries(Object.entries(FIELD_CODE).map(([k, v]) => [camelToUpper(k), v])));
  assert.equal(constants(ENGINE).get("MAX_FIELD"), Math.max(...Object.values(FIELD_CODE)));
  assert.deepEqual(
    constEnum(ENGINE, "Action"),
    Object.fromEntries(Object.entries(ACTION_CODE).map(([k, v]) => [k.toUpperCase(), v])),
  );
  assert.deepEqual(
    constEnum(ENGINE, "PatternKind"),
    Object.fromEntries(Object.entries(PATTERN_CODE).map(([k, v]) => [k.toUpperCase(), v])),
  );

  const helpers = constants(HELPERS);
  const testFields: Record<string, keyof typeof FIELD_CODE> = {
    F_PRINCIPAL: "principal",
    F_TD: "trustDomain",
    F_ATTR: "attribute",
    F_METHOD: "method",
    F_PATH: "path",
    F_HOST: "host",
    F_PORT: "port",
    F_HEADER: "header",
    F_SNI: "sni",
  };
  for (const [name, field] of Object.entries(testFields)) assert.equal(helpers.get(name), FIELD_CODE[field], name);
  for (const kind of ["exact", "prefix", "suffix", "present", "template"] as const) {
    assert.equal(helpers.get(kind.toUpperCase()), PATTERN_CODE[kind], kind);
  }
  for (const action of ["allow", "deny", "audit"] as const)
    assert.equal(helpers.get(action.toUpperCase()), ACTION_CODE[action], action);
});
