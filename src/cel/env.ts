/**
 * The variables a condition can read, with the ids and kinds the bytecode uses. The ids and kinds are part of
 * the EXPR format: assembly/engine/cel/program.ts (VAR_* and STANDARD_VAR_KINDS) holds the same table, and
 * tests/unit/cel-bytecode.test.ts checks that the two agree.
 */
import type protobuf from "protobufjs";
import { type CelType, BOOL, STRING, DYN, mapOf } from "./types.ts";

/**
 * How the engine supplies a variable:
 * - `scalar`: one value (string or bool) through CelActivation.variable;
 * - `map`: a map(string, string) read entry by entry (CelActivation.mapEntry/mapSize);
 * - `dyn`: a JSON document read through compiled paths (request.json, jwt.claims);
 * - `message`: a protobuf message read through compiled field paths (request.grpc.message).
 */
export type VariableKind = "scalar" | "map" | "dyn" | "message";

export interface VariableDecl {
  /** Qualified CEL name, e.g. `request.headers`. */
  readonly name: string;
  /** Id in the bytecode (VAR/MAP_* operand, path root), 0..255. */
  readonly id: number;
  readonly kind: VariableKind;
  /** CEL type of the variable's value (`dyn` or `map(string, dyn)` for documents; unused for messages). */
  readonly type: CelType;
}

/** Numeric codes of VariableKind in the engine (VK_* in assembly/engine/cel/program.ts). */
export const VARIABLE_KIND_CODES: Record<VariableKind, number> = { scalar: 1, map: 2, dyn: 3, message: 4 };

const MAP_SS = mapOf(STRING, STRING);

/** The request environment (ids are fixed: the engine's activation answers by id). */
export const REQUEST_VARIABLES: readonly VariableDecl[] = [
  { name: "source.id", id: 0, kind: "scalar", type: STRING },
  { name: "source.trust_domain", id: 1, kind: "scalar", type: STRING },
  { name: "source.attributes", id: 2, kind: "map", type: MAP_SS },
  { name: "request.method", id: 3, kind: "scalar", type: STRING },
  { name: "request.path", id: 4, kind: "scalar", type: STRING },
  { name: "request.host", id: 5, kind: "scalar", type: STRING },
  { name: "request.headers", id: 6, kind: "map", type: MAP_SS },
  { name: "request.query", id: 7, kind: "map", type: MAP_SS },
  { name: "connection.mtls", id: 8, kind: "scalar", type: BOOL },
  { name: "connection.sni", id: 9, kind: "scalar", type: STRING },
  { name: "request.json", id: 10, kind: "dyn", type: DYN },
  { name: "request.grpc.service", id: 11, kind: "scalar", type: STRING },
  { name: "request.grpc.method", id: 12, kind: "scalar", type: STRING },
  { name: "request.grpc.message", id: 13, kind: "message", type: DYN },
  { name: "jwt.claims", id: 14, kind: "dyn", type: mapOf(STRING, DYN) },
];

/** The gRPC method a rule is scoped to, with its request message type. */
export interface GrpcScope {
  /** `/package.Service/Method`, exactly as the request's `:path`. */
  readonly path: string;
  readonly requestType: protobuf.Type;
}

/** What compileCondition needs to know about the rule around the condition. */
export interface ConditionEnv {
  /** Variables in scope; REQUEST_VARIABLES when omitted (tests declare their own). */
  readonly variables?: readonly VariableDecl[];
  /**
   * Set when the rule is scoped to exactly one gRPC method: `request.grpc.message` then reads that method's
   * request message. Without it, reading `request.grpc.message` is a compile error.
   */
  readonly grpc?: GrpcScope;
  /**
   * `bool` (the default) for rule conditions: the expression must be bool (or dyn, checked at run time);
   * `any` lets tests compile expressions of any type.
   */
  readonly resultType?: "bool" | "any";
}

/** The kinds byte string the engine validates programs against (index = variable id). */
export function variableKinds(vars: readonly VariableDecl[]): Uint8Array {
  const n = vars.reduce((m, v) => Math.max(m, v.id + 1), 0);
  const out = new Uint8Array(n);
  for (const v of vars) out[v.id] = VARIABLE_KIND_CODES[v.kind];
  return out;
}
