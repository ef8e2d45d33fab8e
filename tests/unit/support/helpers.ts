// Small helpers shared by the compiler's unit tests.

import { compileTexts, PolicyError, type CompileResult, type Workload } from "../../../src/compiler/index.ts";
import { formatDiagnostic } from "../../../src/policy/diagnostics.ts";
import { evaluate, type RefDecision, type RefRequest } from "./reference.ts";

/** Compiles one YAML text (file name `policy.yaml` unless given). */
export function compileYaml(text: string, workload?: Workload, file = "policy.yaml"): CompileResult {
  return compileTexts([{ file, text }], workload);
}

/** The `file:line:col: message` lines a compilation fails with; [] when it succeeds. */
export function errorLines(inputs: { file: string; text: string }[], workload?: Workload): string[] {
  try {
    compileTexts(inputs, workload);
    return [];
  } catch (e) {
    if (e instanceof PolicyError) return e.diagnostics.map(formatDiagnostic);
    throw e;
  }
}

/** The errors of one YAML text compiled as `policy.yaml`. */
export function errorsOf(text: string, workload?: Workload): string[] {
  return errorLines([{ file: "policy.yaml", text }], workload);
}

/** Decides a request against a compiled result with the reference evaluator. */
export function decide(result: CompileResult, req: RefRequest): RefDecision {
  return evaluate(result.ir, req);
}

/** Removes the common indentation of a template literal's non-empty lines. */
export function dedent(text: string): string[] {
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  const indent = Math.min(...lines.map((l) => l.length - l.trimStart().length));
  return lines.map((l) => l.slice(indent));
}

/** An Istio AuthorizationPolicy document from a spec written in YAML (indented by the caller as a block). */
export function istio(name: string, spec: string, extra: { namespace?: string; version?: string; annotations?: string } = {}): string {
  return [
    `apiVersion: security.istio.io/${extra.version ?? "v1"}`,
    "kind: AuthorizationPolicy",
    "metadata:",
    `  name: ${name}`,
    ...(extra.namespace ? [`  namespace: ${extra.namespace}`] : []),
    ...(extra.annotations ? ["  annotations:", `    ${extra.annotations}`] : []),
    "spec:",
    ...dedent(spec).map((l) => "  " + l),
    "",
  ].join("\n");
}

/** One of our AuthzPolicy documents from a spec written in YAML. */
export function ours(name: string, spec: string, namespace?: string): string {
  return [
    "apiVersion: spiffe-authz.dev/v1",
    "kind: AuthzPolicy",
    "metadata:",
    `  name: ${name}`,
    ...(namespace ? [`  namespace: ${namespace}`] : []),
    "spec:",
    ...dedent(spec).map((l) => "  " + l),
    "",
  ].join("\n");
}
