/**
 * The differential run: generate cases, compile each expression with our lowering, evaluate it with our VM
 * (through an Evaluator) and with @bufbuild/cel, and compare outcomes (same value, or same error class).
 *
 * The Evaluator is the only part that knows how our VM is reached: today the AssemblyScript harness, in phase 2
 * build/release.wasm through the proxy-wasm host (put the EXPR section in a table, run requests).
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { compileCondition, encodePrograms, loadProtos, variableKinds, REQUEST_VARIABLES, type CelProgram } from "../../src/cel/index.ts";
import { generateCase, type DiffCase, type ProtoContext } from "./generate.ts";
import { Reference, registryFromProtobufjs } from "./reference.ts";
import { CelHarness } from "./wasm-harness.ts";
import { wasmEvaluator, type WasmEvaluatorStats } from "./wasm-evaluator.ts";
import type { VarInput } from "./vars.ts";
import { sameOutcome, showOutcome, type CelOutcome } from "./outcome.ts";

export interface Evaluator {
  /**
   * The case as this evaluator can present it (e.g. the variables made consistent with one real request); the
   * reference then evaluates the adapted bindings. Default: the case as generated.
   */
  adapt?(c: DiffCase): DiffCase;
  /**
   * Evaluates programs[i] on cases[i]. `reference` holds the reference's outcomes, for an evaluator that can
   * observe non-bool values only by confirming them (build/release.wasm: see wasm-evaluator.ts).
   */
  evaluate(programs: readonly CelProgram[], cases: readonly DiffCase[], reference: readonly CelOutcome[]): CelOutcome[];
}

/** Our VM through build/cel-harness.wasm: one EXPR section per batch, variables bound directly by id. */
export async function harnessEvaluator(): Promise<Evaluator> {
  const h = await CelHarness.create();
  const kinds = variableKinds(REQUEST_VARIABLES);
  return {
    evaluate(programs, cases) {
      h.load(encodePrograms(programs), kinds);
      return programs.map((_p, i) => h.run(i, cases[i].vars as readonly VarInput[]));
    },
  };
}

/** Our VM inside build/release.wasm, through the TypeScript proxy-wasm host and real requests. */
export async function releaseEvaluator(): Promise<Evaluator & { stats: WasmEvaluatorStats }> {
  const { method } = celtestProto();
  return wasmEvaluator(method.path, { grpc: { path: method.path, requestType: method.requestType } });
}

export interface Mismatch {
  readonly index: number;
  readonly expr: string;
  readonly ours: string;
  readonly reference: string;
  readonly inputs: Record<string, unknown>;
}

export interface DifferentialReport {
  readonly seed: number;
  readonly cases: number;
  readonly agreed: number;
  readonly mismatches: readonly Mismatch[];
  readonly compileFailures: readonly { index: number; expr: string; errors: string }[];
  /** Outcome kinds, to show the cases are not all errors or all `false`. */
  readonly outcomes: Record<string, number>;
}

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** The celtest proto context shared by the generator, our compiler and the reference. */
export function celtestProto() {
  const registry = loadProtos([path.join(ROOT, "tests/cel/protos/celtest.proto")]);
  const method = registry.findMethod("/celtest.TestService/Fetch")!;
  const refRegistry = registryFromProtobufjs(registry.root);
  const desc = refRegistry.getMessage("celtest.Everything")!;
  const reference = new Reference(refRegistry);
  const context: ProtoContext = { method: method.path, desc, decode: (b) => reference.message(desc, b) };
  return { method, reference, context };
}

export async function runDifferential(options: { seed: number; cases: number; batch?: number; evaluator?: Evaluator }): Promise<DifferentialReport> {
  const { method, reference, context } = celtestProto();
  const evaluator = options.evaluator ?? (await harnessEvaluator());
  const batchSize = options.batch ?? 500;
  const mismatches: Mismatch[] = [];
  const compileFailures: { index: number; expr: string; errors: string }[] = [];
  const outcomes: Record<string, number> = {};
  let agreed = 0;
  for (let start = 0; start < options.cases; start += batchSize) {
    const batch: { c: DiffCase; program: CelProgram }[] = [];
    for (let i = start; i < Math.min(options.cases, start + batchSize); i++) {
      const generated = generateCase(options.seed, i, context);
      const c = evaluator.adapt ? evaluator.adapt(generated) : generated;
      const r = compileCondition(c.expr, { grpc: { path: method.path, requestType: method.requestType }, resultType: c.anyType ? "any" : "bool" });
      if ("errors" in r) {
        compileFailures.push({ index: i, expr: c.expr, errors: r.errors.map((e) => `${e.offset}: ${e.message}`).join("; ") });
        continue;
      }
      batch.push({ c, program: r.program });
    }
    const refs = batch.map(({ c }) => reference.eval(c.expr, c.bindings));
    const ours = evaluator.evaluate(batch.map((b) => b.program), batch.map((b) => b.c), refs);
    batch.forEach(({ c }, k) => {
      const ref = refs[k];
      const key = ours[k].kind === "value" ? `value:${ours[k].value.t}${ours[k].value.t === "bool" ? `:${(ours[k].value as { v: boolean }).v}` : ""}` : `error:${ours[k].cls}`;
      outcomes[key] = (outcomes[key] ?? 0) + 1;
      if (sameOutcome(ours[k], ref)) agreed++;
      else mismatches.push({ index: c.index, expr: c.expr, ours: showOutcome(ours[k]), reference: showOutcome(ref), inputs: c.inputs });
    });
  }
  return { seed: options.seed, cases: options.cases, agreed, mismatches, compileFailures, outcomes };
}
