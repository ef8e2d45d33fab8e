/**
 * The CEL conformance cases shipped in @bufbuild/cel-spec, run on our VM. A case is inside the supported
 * subset when, mechanically: its declarations and bindings map to our variable kinds, its expected result is
 * a value we can represent (or an error), and the expression compiles under our lowering. Everything else is
 * skipped with a reason; a case inside the subset must pass.
 */
import { toJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { SimpleTestSchema } from "@bufbuild/cel-spec/cel/expr/conformance/test/simple_pb.js";
import { getConformanceSuite } from "@bufbuild/cel-spec/testdata/tests.js";
import { getTestRegistry } from "@bufbuild/cel-spec/testdata/registry.js";
import type { IncrementalTestSuite } from "@bufbuild/cel-spec/testdata/tests.js";
import { compileCondition, encodePrograms, variableKinds, type CelProgram, type VariableDecl } from "../../src/cel/index.ts";
import type { Evaluator } from "./differential.ts";
import { type CelType, BOOL, INT, UINT, DOUBLE, STRING, DYN, mapOf } from "../../src/cel/types.ts";
import type { CelHarness } from "./wasm-harness.ts";
import type { VarInput } from "./vars.ts";
import { sameValue, showOutcome, showValue, type CelOutcome, type CelValueOut } from "./outcome.ts";

export interface ConformanceReport {
  readonly total: number;
  readonly run: number;
  readonly passed: number;
  readonly failures: readonly { name: string; expr: string; expected: string; got: string }[];
  readonly skipped: Record<string, number>;
}

class Skip extends Error {}

const skip = (reason: string): never => {
  throw new Skip(reason);
};

type Expected = { kind: "error" } | { kind: "value"; value: CelValueOut };

/** A conformance ExprValue (JSON form) as a value we can represent. */
function exprValue(v: JsonObject): CelValueOut {
  if ("int64Value" in v) return { t: "int", v: BigInt(v.int64Value as string) };
  if ("uint64Value" in v) return { t: "uint", v: BigInt(v.uint64Value as string) };
  if ("doubleValue" in v) return { t: "double", v: Number(v.doubleValue) };
  if ("stringValue" in v) return { t: "string", v: v.stringValue as string };
  if ("boolValue" in v) return { t: "bool", v: v.boolValue as boolean };
  if ("nullValue" in v) return { t: "null" };
  if ("listValue" in v) {
    const values = ((v.listValue as JsonObject).values as JsonObject[] | undefined) ?? [];
    return { t: "list", v: values.map(exprValue) };
  }
  if ("mapValue" in v) {
    const entries = ((v.mapValue as JsonObject).entries as JsonObject[] | undefined) ?? [];
    return { t: "map", size: entries.length };
  }
  return skip("result is not representable (bytes, message, type or enum value)");
}

/** A binding value as JSON, for a dyn variable (only values JSON carries with the same CEL type). */
function jsonOf(v: JsonObject): JsonValue {
  if ("doubleValue" in v) {
    const d = Number(v.doubleValue);
    if (!Number.isFinite(d)) skip("binding is not expressible as json");
    return d;
  }
  if ("stringValue" in v) return v.stringValue as string;
  if ("boolValue" in v) return v.boolValue as boolean;
  if ("nullValue" in v) return null;
  if ("listValue" in v) return (((v.listValue as JsonObject).values as JsonObject[] | undefined) ?? []).map(jsonOf);
  if ("mapValue" in v) {
    const out: Record<string, JsonValue> = {};
    for (const e of ((v.mapValue as JsonObject).entries as JsonObject[] | undefined) ?? []) {
      const k = e.key as JsonObject;
      if (!("stringValue" in k)) skip("binding is not expressible as json");
      out[k.stringValue as string] = jsonOf(e.value as JsonObject);
    }
    return out;
  }
  return skip("binding is not expressible as json");
}

function declaration(name: string, id: number, t: JsonObject): VariableDecl {
  const prim = t.primitive as string | undefined;
  const scalar: Record<string, CelType> = { INT64: INT, UINT64: UINT, DOUBLE, STRING, BOOL };
  if (prim && scalar[prim]) return { name, id, kind: "scalar", type: scalar[prim] };
  if ("mapType" in t) {
    const m = t.mapType as JsonObject;
    const key = (m.keyType as JsonObject).primitive;
    const value = (m.valueType as JsonObject).primitive;
    if (key === "STRING" && value === "STRING") return { name, id, kind: "map", type: mapOf(STRING, STRING) };
    if (key === "STRING" && "dyn" in (m.valueType as JsonObject)) return { name, id, kind: "dyn", type: mapOf(STRING, DYN) };
    return skip("declaration type is not supported");
  }
  if ("dyn" in t) return { name, id, kind: "dyn", type: DYN };
  return skip("declaration type is not supported");
}

function binding(decl: VariableDecl, value: JsonObject): VarInput {
  const id = decl.id;
  if (decl.kind === "map") {
    const entries = ((value.mapValue as JsonObject | undefined)?.entries as JsonObject[] | undefined) ?? [];
    return {
      id,
      kind: "map",
      entries: entries.map((e) => {
        const k = e.key as JsonObject;
        const v = e.value as JsonObject;
        if (!("stringValue" in k) || !("stringValue" in v)) skip("binding is not expressible");
        return [k.stringValue as string, v.stringValue as string] as const;
      }),
    };
  }
  if (decl.kind === "dyn") return { id, kind: "json", text: JSON.stringify(jsonOf(value)) };
  const v = exprValue(value);
  switch (v.t) {
    case "int": return { id, kind: "int", value: v.v };
    case "uint": return { id, kind: "uint", value: v.v };
    case "double": return { id, kind: "double", value: v.v };
    case "string": return { id, kind: "string", value: v.v };
    case "bool": return { id, kind: "bool", value: v.v };
  }
  return skip("binding is not expressible");
}

/** Groups compile diagnostics into a few skip reasons. */
function outsideSubset(message: string): string {
  const rules: [RegExp, string][] = [
    [/macros other than has/, "macro"],
    [/map literals/, "map literal"],
    [/message construction/, "message construction"],
    [/bytes/, "bytes"],
    [/timestamps|durations/, "timestamp or duration"],
    [/regular expressions/, "regular expression"],
    [/^function|^method|operator '/, "function outside the subset"],
    [/list literals may only contain constants/, "non-constant list literal"],
    [/'string\(\)'/, "string() of double or dyn"],
    [/'bool\(\)'|'type\(\)'/, "bool() or type()"],
    [/list concatenation/, "list concatenation"],
    [/undeclared reference/, "undeclared reference"],
    [/syntax error/, "syntax the parser rejects"],
    [/computed dyn value|cannot be indexed|does not support field selection|has\(\) needs|right side of 'in'|can only be indexed/, "selection or indexing outside the subset"],
    [/no matching overload|must be bool|different types|is indexed by|list index must be/, "rejected by type checking"],
  ];
  for (const [re, reason] of rules) if (re.test(message)) return `outside the subset: ${reason}`;
  return `outside the subset: ${message}`;
}

function flatten(s: IncrementalTestSuite, prefix: string, out: { name: string; test: IncrementalTestSuite["tests"][number] }[]) {
  for (const t of s.tests) out.push({ name: `${prefix}/${t.name}`, test: t });
  for (const c of s.suites) flatten(c, `${prefix}/${c.name}`, out);
}

/** A conformance case inside the subset, compiled. */
interface SubsetCase {
  name: string;
  expr: string;
  expected: Expected;
  decls: VariableDecl[];
  vars: VarInput[];
  program: CelProgram;
}

/**
 * Walks the suite and decides, case by case, whether it is inside the subset (compiling it with `env(decls)`);
 * `accept` may skip more (a runner that cannot bind some declarations).
 */
function collect(skipped: Record<string, number>, accept: (decls: VariableDecl[]) => string | undefined): { total: number; cases: SubsetCase[] } {
  const all: { name: string; test: IncrementalTestSuite["tests"][number] }[] = [];
  flatten(getConformanceSuite(), "conformance", all);
  const cases: SubsetCase[] = [];
  const registry = getTestRegistry();
  for (const { name, test } of all) {
    const t = toJson(SimpleTestSchema, test.original, { registry }) as JsonObject;
    const expr = t.expr as string;
    try {
      if (t.container) skip("container (namespace) resolution");
      if (t.checkOnly) skip("check-only case");
      let expected: Expected;
      if (t.value) expected = { kind: "value", value: exprValue(t.value as JsonObject) };
      else if (t.typedResult && (t.typedResult as JsonObject).result) expected = { kind: "value", value: exprValue((t.typedResult as JsonObject).result as JsonObject) };
      else if (t.evalError) expected = { kind: "error" };
      else skip("expects unknowns or no result");
      const decls: VariableDecl[] = [];
      for (const d of (t.typeEnv as JsonObject[] | undefined) ?? []) {
        if (!d.ident) skip("declares functions");
        decls.push(declaration(d.name as string, decls.length, (d.ident as JsonObject).type as JsonObject));
      }
      const vars: VarInput[] = [];
      for (const [bname, b] of Object.entries((t.bindings as JsonObject | undefined) ?? {})) {
        const decl = decls.find((d) => d.name === bname);
        if (!decl) skip("binds an undeclared variable");
        const v = (b as JsonObject).value as JsonObject | undefined;
        if (!v) skip("binding is not a value");
        vars.push(binding(decl!, v!));
      }
      const why = accept(decls);
      if (why !== undefined) skip(why);
      const r = compileCondition(expr, { variables: decls, resultType: "any" });
      if ("errors" in r) skip(outsideSubset(r.errors[0].message));
      cases.push({ name, expr, expected: expected!, decls, vars, program: (r as { program: CelProgram }).program });
    } catch (e) {
      if (!(e instanceof Skip)) throw e;
      skipped[e.message] = (skipped[e.message] ?? 0) + 1;
    }
  }
  return { total: all.length, cases };
}

function verdict(c: SubsetCase, got: CelOutcome): boolean {
  return c.expected.kind === "error" ? got.kind === "error" : got.kind === "value" && sameValue(got.value, c.expected.value);
}

/** The conformance cases inside the subset, on our VM through build/cel-harness.wasm (variables bound directly). */
export function runConformance(harness: CelHarness): ConformanceReport {
  const skipped: Record<string, number> = {};
  const failures: ConformanceReport["failures"][number][] = [];
  const { total, cases } = collect(skipped, () => undefined);
  let passed = 0;
  for (const c of cases) {
    harness.load(encodePrograms([c.program]), variableKinds(c.decls.length > 0 ? c.decls : [{ name: "_", id: 0, kind: "scalar", type: DYN }]));
    const got = harness.run(0, c.vars);
    if (verdict(c, got)) passed++;
    else failures.push({ name: c.name, expr: c.expr, expected: c.expected.kind === "error" ? "an error" : showValue(c.expected.value), got: showOutcome(got) });
  }
  return { total, run: cases.length, passed, failures, skipped };
}

/**
 * The same cases on the shipped filter (build/release.wasm through the host, see wasm-evaluator.ts): each
 * expression is a rule's condition in a real table. Only cases without declarations can run there (the filter's
 * variables are the request's; a conformance variable such as `x: int` has no request counterpart).
 */
export function runConformanceOnRelease(evaluator: Evaluator): ConformanceReport {
  const skipped: Record<string, number> = {};
  const failures: ConformanceReport["failures"][number][] = [];
  const { total, cases } = collect(skipped, (decls) => (decls.length > 0 ? "declares variables a request does not carry (run on the harness only)" : undefined));
  let passed = 0;
  const request = { peer: null, method: "GET", path: "/", requestId: "conformance" };
  for (let start = 0; start < cases.length; start += 500) {
    const batch = cases.slice(start, start + 500);
    // The expected value stands in for the reference: a non-bool result is confirmed against it by a probe.
    const expected: CelOutcome[] = batch.map((c) => c.expected.kind === "value" ? { kind: "value", value: c.expected.value } : { kind: "error", cls: "other", message: "" });
    const asCases = batch.map((c, i) => ({ index: start + i, expr: c.expr, anyType: true, vars: [], bindings: {}, inputs: {}, request }));
    const got = evaluator.evaluate(batch.map((c) => c.program), asCases, expected);
    batch.forEach((c, i) => {
      if (verdict(c, got[i])) passed++;
      else failures.push({ name: c.name, expr: c.expr, expected: c.expected.kind === "error" ? "an error" : showValue(c.expected.value), got: showOutcome(got[i]) });
    });
  }
  return { total, run: cases.length, passed, failures, skipped };
}
