/**
 * CEL conditions: compile a rule's condition to bytecode for the engine's VM (assembly/engine/cel/), and
 * encode a table's programs as its EXPR section. See docs/cel.md for the subset, the bytecode and the
 * integration points.
 *
 * Typical use by the policy compiler:
 *
 *   const protos = loadProtos(["api.proto"]);                       // once, if the policy names .proto files
 *   const scope = rule is scoped to one gRPC method ? { path, requestType: protos.findMethod(path)!.requestType } : undefined;
 *   const r = compileCondition(yamlScalar.value, { grpc: scope });
 *   if ("errors" in r) for (const e of r.errors) {
 *     const at = yamlScalarOffsets(fileText, node.range[0], node.range[1], node.type, node.value);
 *     report(file, lineCounter.linePos(at(e.offset)), e.message);
 *   }
 *   programs.push(r.program); rule.expr = programs.length - 1;
 *   ...
 *   const exprSection = encodePrograms(programs);                  // table section tag 15 (EXPR)
 */
import { lowerCondition, type CelDiagnostic } from "./lower.ts";
import type { CelProgram, DynPath, ProtoPath } from "./bytecode.ts";
import { REQUEST_VARIABLES, type ConditionEnv } from "./env.ts";

export type { CelDiagnostic } from "./lower.ts";
export type { CelProgram, CelConst, DynPath, ProtoPath, ProtoField, Instr } from "./bytecode.ts";
export { disassemble, Op, ProtoType } from "./bytecode.ts";
export type { DecodedSection } from "./section.ts";
export { encodePrograms, decodeSection, programVariables, EXPR_VERSION } from "./section.ts";
export type { ConditionEnv, GrpcScope, VariableDecl, VariableKind } from "./env.ts";
export { REQUEST_VARIABLES, variableKinds, VARIABLE_KIND_CODES } from "./env.ts";
export type { ProtoRegistry, GrpcMethodInfo } from "./proto.ts";
export { loadProtos, ProtoLoadError } from "./proto.ts";
export type { YamlScalarStyle } from "./positions.ts";
export { yamlScalarOffsets, lineColumn } from "./positions.ts";
export type { CelType } from "./types.ts";
export { typeName } from "./types.ts";

/** Which request body a condition reads: the filter buffers the body only for `json` and `grpc`. */
export type BodyUse = "none" | "json" | "grpc";

/** A condition that compiled. */
export interface CompiledCondition {
  readonly program: CelProgram;
  readonly usesBody: BodyUse;
  /** The request.json paths the condition reads, e.g. `tenant.id`, `items[0]` (the filter extracts only these). */
  readonly jsonPaths: readonly string[];
  /** The jwt.claims paths it reads. */
  readonly claimPaths: readonly string[];
  /** The request.grpc.message fields it reads, by name, with the gRPC method they belong to. */
  readonly protoPaths: readonly { readonly method: string; readonly fields: readonly string[] }[];
  /** The variables it reads (e.g. `request.headers`), so the filter fetches only those. */
  readonly variables: readonly string[];
}

/** A condition that did not compile: problems at UTF-16 offsets into its source (see yamlScalarOffsets). */
export interface FailedCondition {
  readonly errors: readonly CelDiagnostic[];
}

/**
 * Parses, type-checks and lowers one condition. `env` says which variables exist (the request environment by
 * default) and, for a rule scoped to exactly one gRPC method, that method and its request message type.
 */
export function compileCondition(source: string, env: ConditionEnv = {}): CompiledCondition | FailedCondition {
  const r = lowerCondition(source, env);
  if (!r.program) return { errors: r.diagnostics };
  const program = r.program;
  const vars = env.variables ?? REQUEST_VARIABLES;
  const nameOf = (id: number) => vars.find((v) => v.id === id)?.name ?? `#${id}`;
  const jsonRoot = vars.find((v) => v.name === "request.json")?.id;
  const claimsRoot = vars.find((v) => v.name === "jwt.claims")?.id;
  const usesJson = program.dynPaths.some((p) => p.root === jsonRoot);
  const usesGrpc = program.protoPaths.length > 0;
  if (usesJson && usesGrpc) {
    return { errors: [{ offset: 0, length: source.length, message: "a condition cannot read both request.json and request.grpc.message" }] };
  }
  return {
    program,
    usesBody: usesJson ? "json" : usesGrpc ? "grpc" : "none",
    jsonPaths: program.dynPaths.filter((p) => p.root === jsonRoot).map(formatDynPath),
    claimPaths: program.dynPaths.filter((p) => p.root === claimsRoot).map(formatDynPath),
    protoPaths: program.protoPaths.map((p: ProtoPath) => ({ method: p.method, fields: p.fields.map((f) => f.name) })),
    variables: [...new Set([...r.usedVariables, ...program.dynPaths.map((p) => nameOf(p.root))])].sort(),
  };
}

/** `a.b[0]`; keys that are not identifiers are bracketed and quoted: `['x-y']`. */
function formatDynPath(p: DynPath): string {
  let s = "";
  for (const seg of p.segments) {
    if (typeof seg === "bigint") s += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(seg)) s += s.length === 0 ? seg : `.${seg}`;
    else s += `[${JSON.stringify(seg)}]`;
  }
  return s;
}
