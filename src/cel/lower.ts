/**
 * Lowering of a parsed CEL expression (from @bufbuild/cel's parser) to bytecode: name resolution, type
 * checking of the supported subset, and code emission, in one walk. Anything outside the subset is a
 * diagnostic at the construct's offset in the expression source.
 *
 * Emission order is evaluation order: a subexpression is emitted when its value is needed. Variables that are
 * not plain values (maps, JSON documents, protobuf messages) lower to references first; the operation that
 * consumes them (`.f`, `[k]`, has(), `in`, size()) picks the instruction, and anything else materializes them
 * (a JSON path becomes DYN_GET, a message field PROTO_GET) or reports that they are not values.
 */
import { parse } from "@bufbuild/cel";
import type { Expr, Constant } from "@bufbuild/cel-spec/cel/expr/syntax_pb.js";
import type protobuf from "protobufjs";
import {
  type CelType, BOOL, INT, UINT, DOUBLE, STRING, NULL, DYN, listOf, typeName, isDyn, isNumeric, compatible, join,
} from "./types.ts";
import {
  EMPTY_PROTO_SCHEMA, Op, ProtoType, instructionLength, maxStackDepth, type CelConst, type CelProgram, type DynPath, type Instr,
  type ProtoField, type ProtoPath, type ProtoSchema,
} from "./bytecode.ts";
import { REQUEST_VARIABLES, type ConditionEnv, type VariableDecl } from "./env.ts";
import { fieldFacts, messageSchema } from "./proto.ts";

/** A problem in the condition, at a UTF-16 offset (JavaScript string index) into its source. */
export interface CelDiagnostic {
  readonly offset: number;
  readonly length: number;
  readonly message: string;
}

type Lowered =
  /** Code emitted: one value of `type` is on the stack. */
  | { readonly k: "value"; readonly type: CelType }
  /** A map(string, string) variable; nothing emitted. */
  | { readonly k: "map"; readonly v: VariableDecl }
  /** A path into a JSON document variable; nothing emitted. */
  | { readonly k: "dyn"; readonly v: VariableDecl; readonly segments: readonly (string | bigint)[] }
  /** A path into the request message: a message (`type`) or a scalar field (`leaf`); nothing emitted. */
  | {
      readonly k: "msg";
      readonly v: VariableDecl;
      readonly fields: readonly ProtoField[];
      readonly type?: protobuf.Type;
      readonly leaf?: { readonly celType: CelType; readonly explicitPresence: boolean };
    };

/**
 * The value an erroneous subexpression lowers to. Its type is a distinct dyn instance so that consumers can
 * recognise it and stay quiet instead of reporting follow-on errors about it.
 */
const POISON_TYPE: CelType = { kind: "dyn" };
const POISON: Lowered = { k: "value", type: POISON_TYPE };

const OPERATORS: Record<string, { symbol: string; op: number }> = {
  "_==_": { symbol: "==", op: Op.EQ },
  "_!=_": { symbol: "!=", op: Op.NE },
  "_<_": { symbol: "<", op: Op.LT },
  "_<=_": { symbol: "<=", op: Op.LE },
  "_>_": { symbol: ">", op: Op.GT },
  "_>=_": { symbol: ">=", op: Op.GE },
  "_+_": { symbol: "+", op: Op.ADD },
  "_-_": { symbol: "-", op: Op.SUB },
  "_*_": { symbol: "*", op: Op.MUL },
  "_/_": { symbol: "/", op: Op.DIV },
  "_%_": { symbol: "%", op: Op.MOD },
};

const MACROS = new Set(["all", "exists", "exists_one", "map", "filter", "existsOne", "transformList", "transformMap"]);

const UNSUPPORTED_FUNCTIONS: Record<string, string> = {
  matches: "regular expressions ('matches') are not supported",
  timestamp: "timestamps are not supported",
  duration: "durations are not supported",
  bytes: "bytes are not supported",
  bool: "'bool()' conversion is not supported",
  type: "'type()' is not supported",
  getDate: "timestamps are not supported",
  getDayOfMonth: "timestamps are not supported",
  getDayOfWeek: "timestamps are not supported",
  getDayOfYear: "timestamps are not supported",
  getFullYear: "timestamps are not supported",
  getHours: "timestamps are not supported",
  getMilliseconds: "timestamps are not supported",
  getMinutes: "timestamps are not supported",
  getMonth: "timestamps are not supported",
  getSeconds: "timestamps are not supported",
};

class Lowering {
  readonly code: Instr[] = [];
  readonly consts: CelConst[] = [];
  readonly dynPaths: DynPath[] = [];
  readonly protoPaths: ProtoPath[] = [];
  /** The schema of the rule's request message, once a condition names `request.grpc.message`. */
  protoSchema: ProtoSchema = EMPTY_PROTO_SCHEMA;
  readonly diagnostics: CelDiagnostic[] = [];
  readonly usedVariables = new Set<string>();
  private readonly constIndex = new Map<string, number>();
  private readonly dynIndex = new Map<string, number>();
  private readonly protoIndex = new Map<string, number>();
  private readonly vars: Map<string, VariableDecl>;
  private readonly positions: Record<string, number>;
  private readonly macroCalls: Record<string, Expr>;

  constructor(
    readonly source: string,
    readonly env: ConditionEnv,
    positions: Record<string, number>,
    macroCalls: Record<string, Expr>,
  ) {
    this.vars = new Map((env.variables ?? REQUEST_VARIABLES).map((v) => [v.name, v]));
    this.positions = positions;
    this.macroCalls = macroCalls;
  }

  // --- diagnostics and positions ---------------------------------------------------------------------------

  pos(e: Expr): number {
    return this.positions[e.id.toString()] ?? 0;
  }

  /** Offset of the first token of `e` (parser positions of operators point between operands). */
  start(e: Expr): number {
    let m = this.pos(e);
    for (const c of children(e)) m = Math.min(m, this.start(c));
    return m;
  }

  /** Offset just past the last token of `e` (best effort, for ranges). */
  end(e: Expr): number {
    const k = e.exprKind;
    switch (k.case) {
      case "identExpr":
        return this.pos(e) + k.value.name.length;
      case "constExpr":
        return this.pos(e) + literalLength(this.source, this.pos(e));
      case "selectExpr": {
        if (k.value.testOnly) return this.closeParen(k.value.operand ? this.end(k.value.operand) : this.pos(e));
        const f = this.nameAfterDot(this.pos(e), k.value.field);
        return f.offset + f.length;
      }
      case "callExpr": {
        const args = k.value.args;
        const last = args.length > 0 ? this.end(args[args.length - 1]) : this.pos(e) + k.value.function.length + 1;
        if (k.value.function.startsWith("_") || k.value.function === "@in") return last;
        return this.closeParen(last);
      }
      case "listExpr":
      case "structExpr": {
        const kids = children(e);
        const last = kids.length > 0 ? Math.max(...kids.map((c) => this.end(c))) : this.pos(e) + 1;
        return this.closeParen(last, k.case === "listExpr" ? "]" : "}");
      }
      default:
        return this.pos(e) + 1;
    }
  }

  private closeParen(from: number, ch = ")"): number {
    let i = from;
    while (i < this.source.length && /\s/.test(this.source[i])) i++;
    return this.source[i] === ch ? i + 1 : from;
  }

  /** The identifier after a '.' at `dot` (method calls and field selections are positioned at the dot). */
  nameAfterDot(dot: number, name: string): { offset: number; length: number } {
    let i = dot;
    if (this.source[i] === ".") i++;
    while (i < this.source.length && /\s/.test(this.source[i])) i++;
    if (this.source.startsWith(name, i)) return { offset: i, length: name.length };
    const j = this.source.indexOf(name, dot);
    return j >= 0 ? { offset: j, length: name.length } : { offset: dot, length: 1 };
  }

  /** Where the operator `symbol` of binary call `e` is: the last occurrence before its right operand. */
  operatorAt(e: Expr, symbol: string): { offset: number; length: number } {
    const k = e.exprKind;
    if (k.case === "callExpr" && k.value.args.length >= 2) {
      const right = this.start(k.value.args[k.value.args.length - 1]);
      const at = this.source.lastIndexOf(symbol, right - symbol.length);
      if (at >= this.start(k.value.args[0])) return { offset: at, length: symbol.length };
    }
    return { offset: this.pos(e), length: symbol.length };
  }

  span(e: Expr): { offset: number; length: number } {
    const s = this.start(e);
    return { offset: s, length: Math.max(1, this.end(e) - s) };
  }

  error(at: { offset: number; length: number }, message: string): Lowered {
    this.diagnostics.push({ offset: at.offset, length: at.length, message });
    // Stand in for the value so that lowering goes on and reports further problems (the code is discarded).
    this.emit(Op.CONST, this.constant({ kind: "null" }));
    return POISON;
  }

  // --- emission -------------------------------------------------------------------------------------------

  emit(op: number, a?: number, b?: number): number {
    this.code.push({ op, a, b });
    return this.code.length - 1;
  }

  /** Points jump `at` (operand a or b) at the next instruction to be emitted. */
  patch(at: number, which: "a" | "b" = "a"): void {
    this.code[at][which] = this.code.length;
  }

  constant(c: CelConst): number {
    const key = c.kind === "double" ? `double:${Object.is(c.value, -0) ? "-0" : String(c.value)}` : `${c.kind}:${JSON.stringify(c, (_k, v) => (typeof v === "bigint" ? v.toString() : v))}`;
    let i = this.constIndex.get(key);
    if (i === undefined) {
      i = this.consts.length;
      this.consts.push(c);
      this.constIndex.set(key, i);
    }
    return i;
  }

  dynPath(v: VariableDecl, segments: readonly (string | bigint)[], members = false): number {
    const key = JSON.stringify([v.id, segments.map((s) => (typeof s === "string" ? `k${s}` : `i${s}`))]);
    let i = this.dynIndex.get(key);
    if (i === undefined) {
      i = this.dynPaths.length;
      this.dynPaths.push({ root: v.id, segments: [...segments], members });
      this.dynIndex.set(key, i);
    } else if (members && !this.dynPaths[i].members) {
      this.dynPaths[i] = { ...this.dynPaths[i], members: true };
    }
    return i;
  }

  protoPath(v: VariableDecl, fields: readonly ProtoField[], explicitPresence: boolean): number {
    const method = this.env.grpc?.path ?? "";
    const key = JSON.stringify([v.id, method, fields.map((f) => f.number)]);
    let i = this.protoIndex.get(key);
    if (i === undefined) {
      i = this.protoPaths.length;
      this.protoPaths.push({ root: v.id, method, fields: [...fields], explicitPresence });
      this.protoIndex.set(key, i);
    }
    return i;
  }

  // --- values ---------------------------------------------------------------------------------------------

  value(e: Expr): CelType {
    return this.materialize(this.lower(e), e).type;
  }

  /** Turns a reference into a value on the stack (or reports why it cannot be one). */
  materialize(l: Lowered, e: Expr): { type: CelType } {
    switch (l.k) {
      case "value":
        return l;
      case "map":
        this.error(this.span(e), `'${l.v.name}' is a map: index it, test a key with has() or 'in', or take its size()`);
        return { type: POISON_TYPE };
      case "dyn":
        this.emit(Op.DYN_GET, this.dynPath(l.v, l.segments));
        return { type: l.segments.length === 0 ? l.v.type : DYN };
      case "msg":
        if (l.leaf) {
          this.emit(Op.PROTO_GET, this.protoPath(l.v, l.fields, l.leaf.explicitPresence));
          return { type: l.leaf.celType };
        }
        this.error(this.span(e), `'${describeMsg(l)}' is a message: select one of its fields`);
        return { type: POISON_TYPE };
    }
  }

  /** Lowers `e` to a value or a reference. */
  lower(e: Expr): Lowered {
    const k = e.exprKind;
    switch (k.case) {
      case "constExpr":
        return this.lowerConst(e, k.value);
      case "identExpr":
      case "selectExpr": {
        if (k.case === "selectExpr" && k.value.testOnly) return this.lowerHas(e);
        const q = this.qualified(e);
        if (q) return q;
        if (k.case === "identExpr") return this.undeclared(e, k.value.name);
        return this.select(this.lower(k.value.operand!), k.value.field, e);
      }
      case "callExpr":
        return this.lowerCall(e);
      case "listExpr":
        return this.lowerList(e);
      case "structExpr":
        return this.error(
          { offset: this.pos(e), length: 1 },
          k.value.messageName ? `message construction ('${k.value.messageName}{...}') is not supported` : "map literals are not supported",
        );
      case "comprehensionExpr": {
        const call = this.macroCalls[e.id.toString()];
        const name = call?.exprKind.case === "callExpr" ? call.exprKind.value.function : "comprehension";
        const at = this.nameAfterDot(this.pos(e), name);
        return this.error(at, `'${name}' is not supported: macros other than has() are outside the supported subset`);
      }
      default:
        return this.error({ offset: this.pos(e), length: 1 }, "unsupported expression");
    }
  }

  lowerConst(e: Expr, c: Constant): Lowered {
    const v = c.constantKind;
    switch (v.case) {
      case "boolValue": this.emit(Op.CONST, this.constant({ kind: "bool", value: v.value })); return { k: "value", type: BOOL };
      case "int64Value": this.emit(Op.CONST, this.constant({ kind: "int", value: v.value })); return { k: "value", type: INT };
      case "uint64Value": this.emit(Op.CONST, this.constant({ kind: "uint", value: v.value })); return { k: "value", type: UINT };
      case "doubleValue": this.emit(Op.CONST, this.constant({ kind: "double", value: v.value })); return { k: "value", type: DOUBLE };
      case "stringValue": this.emit(Op.CONST, this.constant({ kind: "string", value: v.value })); return { k: "value", type: STRING };
      case "nullValue": this.emit(Op.CONST, this.constant({ kind: "null" })); return { k: "value", type: NULL };
      case "bytesValue": return this.error(this.span(e), "bytes literals are not supported");
      default: return this.error(this.span(e), "unsupported literal");
    }
  }

  /** Constant value of a literal, for list elements and path keys. */
  literal(e: Expr): CelConst | undefined {
    if (e.exprKind.case !== "constExpr") return undefined;
    const v = e.exprKind.value.constantKind;
    switch (v.case) {
      case "boolValue": return { kind: "bool", value: v.value };
      case "int64Value": return { kind: "int", value: v.value };
      case "uint64Value": return { kind: "uint", value: v.value };
      case "doubleValue": return { kind: "double", value: v.value };
      case "stringValue": return { kind: "string", value: v.value };
      case "nullValue": return { kind: "null" };
      default: return undefined;
    }
  }

  lowerList(e: Expr): Lowered {
    if (e.exprKind.case !== "listExpr") throw new Error("not a list");
    const items: number[] = [];
    let elem: CelType | undefined;
    for (const x of e.exprKind.value.elements) {
      const c = this.literal(x);
      if (!c) return this.error(this.span(x), "list literals may only contain constants");
      items.push(this.constant(c));
      const t = constType(c);
      elem = elem === undefined ? t : compatible(elem, t) && elem.kind === t.kind ? elem : DYN;
    }
    if (items.length > 0xffff) return this.error(this.span(e), "list literal is too long");
    this.emit(Op.CONST, this.constant({ kind: "list", items }));
    return { k: "value", type: listOf(elem ?? DYN) };
  }

  // --- names ----------------------------------------------------------------------------------------------

  /** The dotted name of an identifier/select chain, with the select nodes outermost last. */
  private chain(e: Expr): { parts: string[]; nodes: Expr[] } | undefined {
    const k = e.exprKind;
    if (k.case === "identExpr") return { parts: [k.value.name.replace(/^\./, "")], nodes: [e] };
    if (k.case === "selectExpr" && !k.value.testOnly && k.value.operand) {
      const inner = this.chain(k.value.operand);
      if (!inner) return undefined;
      return { parts: [...inner.parts, k.value.field], nodes: [...inner.nodes, e] };
    }
    return undefined;
  }

  /**
   * Resolves an identifier/select chain as CEL resolves qualified names: the longest prefix that names a
   * variable wins, the rest are field selections on it. Undefined when the chain has no variable prefix and
   * is not purely a chain (so the caller lowers the operand instead).
   */
  qualified(e: Expr): Lowered | undefined {
    const c = this.chain(e);
    if (!c) return undefined;
    for (let n = c.parts.length; n >= 1; n--) {
      const name = c.parts.slice(0, n).join(".");
      const v = this.vars.get(name);
      if (!v) continue;
      let l = this.variable(v, c.nodes[n - 1]);
      for (let i = n; i < c.parts.length; i++) l = this.select(l, c.parts[i], c.nodes[i]);
      return l;
    }
    return this.undeclared(c.nodes[0], c.parts.join("."), c.nodes[c.nodes.length - 1]);
  }

  undeclared(e: Expr, name: string, last: Expr = e): Lowered {
    const start = this.start(e);
    const known = [...this.vars.keys()].filter((n) => n.split(".")[0] === name.split(".")[0]);
    const hint = known.length > 0 ? ` (known: ${known.join(", ")})` : "";
    return this.error({ offset: start, length: Math.max(1, this.end(last) - start) }, `undeclared reference to '${name}'${hint}`);
  }

  variable(v: VariableDecl, e: Expr): Lowered {
    this.usedVariables.add(v.name);
    switch (v.kind) {
      case "scalar":
        this.emit(Op.VAR, v.id);
        return { k: "value", type: v.type };
      case "map":
        return { k: "map", v };
      case "dyn":
        return { k: "dyn", v, segments: [] };
      case "message": {
        const g = this.env.grpc;
        if (!g) {
          return this.error(
            this.span(e),
            `'${v.name}' needs a rule scoped to exactly one grpc method, whose request message it reads`,
          );
        }
        if (this.protoSchema.methods.length === 0) {
          // The filter checks the whole message on the wire, so the table carries every message reachable from it.
          const schema = messageSchema(g.requestType);
          if ("error" in schema) return this.error(this.span(e), schema.error);
          this.protoSchema = {
            methods: [{ method: g.path, message: g.requestType.fullName.replace(/^\./, "") }], messages: schema.messages, enums: schema.enums,
          };
        }
        return { k: "msg", v, fields: [], type: g.requestType };
      }
    }
  }

  /** Header names arrive lower-cased (HTTP/2, Envoy): a constant key with capitals could never match. */
  private headerKeyError(v: VariableDecl, key: string, at: { offset: number; length: number }): Lowered | undefined {
    if (v.name !== "request.headers" || key === key.toLowerCase()) return undefined;
    return this.error(at, `header names are lower-case: use '${key.toLowerCase()}' instead of '${key}'`);
  }

  /** `base.field` */
  select(base: Lowered, field: string, e: Expr): Lowered {
    const at = this.nameAfterDot(this.pos(e), field);
    switch (base.k) {
      case "map":
        if (this.headerKeyError(base.v, field, at)) return POISON;
        this.emit(Op.CONST, this.constant({ kind: "string", value: field }));
        this.emit(Op.MAP_GET, base.v.id);
        return { k: "value", type: base.v.type.kind === "map" ? base.v.type.value : DYN };
      case "dyn":
        return { k: "dyn", v: base.v, segments: [...base.segments, field] };
      case "msg": {
        if (!base.type) return this.error(at, `'${describeMsg(base)}' is a scalar field: it has no field '${field}'`);
        const f = fieldFacts(base.type, field);
        if (!f) return this.error(at, `message '${base.type.fullName.replace(/^\./, "")}' has no field '${field}'`);
        if (f.kind === "unsupported") return this.error(at, f.reason);
        if (base.fields.length + 1 > 32) return this.error(at, "message field path is nested too deeply");
        if (f.kind === "message") {
          return { k: "msg", v: base.v, fields: [...base.fields, { number: f.number, type: ProtoType.MESSAGE, name: field }], type: f.type };
        }
        return {
          k: "msg",
          v: base.v,
          fields: [...base.fields, { number: f.number, type: f.protoType, name: field }],
          leaf: { celType: f.celType, explicitPresence: f.explicitPresence },
        };
      }
      case "value":
        if (base.type === POISON_TYPE) return POISON;
        if (isDyn(base.type)) {
          return this.error(at, `cannot select '${field}' from a computed dyn value: select fields directly on request.json, jwt.claims or request.grpc.message`);
        }
        return this.error(at, `type '${typeName(base.type)}' does not support field selection`);
    }
  }

  lowerHas(e: Expr): Lowered {
    if (e.exprKind.case !== "selectExpr") throw new Error("not a select");
    const field = e.exprKind.value.field;
    const base = this.lower(e.exprKind.value.operand!);
    switch (base.k) {
      case "map":
        if (this.headerKeyError(base.v, field, this.span(e))) return POISON;
        this.emit(Op.CONST, this.constant({ kind: "string", value: field }));
        this.emit(Op.MAP_HAS, base.v.id);
        return { k: "value", type: BOOL };
      case "dyn":
        this.emit(Op.DYN_HAS, this.dynPath(base.v, [...base.segments, field]));
        return { k: "value", type: BOOL };
      case "msg": {
        if (!base.type) return this.error(this.span(e), `'${describeMsg(base)}' is a scalar field: it has no field '${field}'`);
        const f = fieldFacts(base.type, field);
        if (!f) return this.error(this.span(e), `message '${base.type.fullName.replace(/^\./, "")}' has no field '${field}'`);
        if (f.kind === "unsupported") return this.error(this.span(e), f.reason);
        const fields = [...base.fields, { number: f.number, type: f.kind === "message" ? ProtoType.MESSAGE : f.protoType, name: field }];
        this.emit(Op.PROTO_HAS, this.protoPath(base.v, fields, f.kind === "message" ? true : f.explicitPresence));
        return { k: "value", type: BOOL };
      }
      case "value":
        if (base.type === POISON_TYPE) return POISON;
        return this.error(this.span(e), "has() needs a field of a map, a json value or a protobuf message");
    }
  }

  // --- calls ----------------------------------------------------------------------------------------------

  lowerCall(e: Expr): Lowered {
    if (e.exprKind.case !== "callExpr") throw new Error("not a call");
    const call = e.exprKind.value;
    const fn = call.function;
    const args = call.args;
    if (!call.target) {
      switch (fn) {
        case "_&&_":
        case "_||_":
          return this.lowerLogic(e, fn === "_&&_");
        case "_?_:_":
          return this.lowerConditional(e);
        case "!_":
          return this.unary(e, "!", Op.NOT, (t) => (t.kind === "bool" || isDyn(t) ? BOOL : undefined));
        case "-_":
          return this.unary(e, "-", Op.NEG, (t) => (t.kind === "int" || t.kind === "double" || isDyn(t) ? t : undefined));
        case "@in":
          return this.lowerIn(e);
        case "_[_]":
          return this.lowerIndex(e);
        case "size":
          return this.arity(e, 1) ?? this.lowerSize(e, args[0]);
        case "int":
        case "uint":
        case "double":
        case "string":
          return this.arity(e, 1) ?? this.lowerConversion(e, fn, args[0]);
        case "dyn": {
          const bad = this.arity(e, 1);
          if (bad) return bad;
          this.value(args[0]);
          return { k: "value", type: DYN };
        }
      }
      const binary = OPERATORS[fn];
      if (binary) return this.lowerBinary(e, binary.symbol, binary.op);
      if (fn.startsWith("_") || fn.startsWith("@") || fn.startsWith("!")) {
        return this.error({ offset: this.pos(e), length: 1 }, `operator '${fn}' is not supported`);
      }
      return this.error({ offset: this.pos(e), length: fn.length }, UNSUPPORTED_FUNCTIONS[fn] ?? `function '${fn}' is not supported`);
    }
    // Method calls.
    const at = this.nameAfterDot(this.pos(e), fn);
    switch (fn) {
      case "size":
        return this.arity(e, 0, at) ?? this.lowerSize(e, call.target);
      case "startsWith":
      case "endsWith":
      case "contains": {
        const bad = this.arity(e, 1, at);
        if (bad) return bad;
        const t = this.value(call.target);
        const a = this.value(args[0]);
        if (!(t.kind === "string" || isDyn(t)) || !(a.kind === "string" || isDyn(a))) {
          return this.error(at, `no matching overload for '${fn}' applied to ${typeName(t)}.(${typeName(a)})`);
        }
        this.emit(fn === "startsWith" ? Op.STARTS_WITH : fn === "endsWith" ? Op.ENDS_WITH : Op.CONTAINS);
        return { k: "value", type: BOOL };
      }
    }
    if (MACROS.has(fn)) return this.error(at, `'${fn}' is not supported: macros other than has() are outside the supported subset`);
    const chain = this.chain(call.target);
    if (chain && !this.qualifiesVariable(chain.parts)) {
      return this.error({ offset: this.start(call.target), length: at.offset + at.length - this.start(call.target) }, `function '${chain.parts.join(".")}.${fn}' is not supported`);
    }
    return this.error(at, UNSUPPORTED_FUNCTIONS[fn] ?? `method '${fn}' is not supported`);
  }

  private qualifiesVariable(parts: string[]): boolean {
    for (let n = parts.length; n >= 1; n--) if (this.vars.has(parts.slice(0, n).join("."))) return true;
    return false;
  }

  /** Reports a wrong argument count, or returns undefined when it is right. */
  arity(e: Expr, n: number, at?: { offset: number; length: number }): Lowered | undefined {
    if (e.exprKind.case !== "callExpr") return undefined;
    const got = e.exprKind.value.args.length;
    if (got === n) return undefined;
    const fn = e.exprKind.value.function;
    return this.error(at ?? { offset: this.pos(e), length: fn.length }, `'${fn}' takes ${n} argument${n === 1 ? "" : "s"}, got ${got}`);
  }

  unary(e: Expr, symbol: string, op: number, result: (t: CelType) => CelType | undefined): Lowered {
    if (e.exprKind.case !== "callExpr") throw new Error("not a call");
    const t = this.value(e.exprKind.value.args[0]);
    const r = result(t);
    if (!r) {
      // The parser positions operators on the blank before them.
      let at = this.pos(e);
      while (at < this.source.length && /\s/.test(this.source[at])) at++;
      return this.error({ offset: at, length: symbol.length }, `no matching overload for '${symbol}' applied to (${typeName(t)})`);
    }
    this.emit(op);
    return { k: "value", type: r };
  }

  lowerLogic(e: Expr, isAnd: boolean): Lowered {
    if (e.exprKind.case !== "callExpr") throw new Error("not a call");
    const args = e.exprKind.value.args;
    const symbol = isAnd ? "&&" : "||";
    const check = (x: Expr, t: CelType) => {
      if (t.kind !== "bool" && !isDyn(t)) this.diagnostics.push({ ...this.span(x), message: `operand of '${symbol}' must be bool, got ${typeName(t)}` });
    };
    check(args[0], this.value(args[0]));
    const jumps: number[] = [];
    for (let i = 1; i < args.length; i++) {
      jumps.push(this.emit(isAnd ? Op.JUMP_IF_FALSE : Op.JUMP_IF_TRUE));
      check(args[i], this.value(args[i]));
      this.emit(isAnd ? Op.AND : Op.OR);
    }
    for (const j of jumps) this.patch(j);
    return { k: "value", type: BOOL };
  }

  lowerConditional(e: Expr): Lowered {
    if (e.exprKind.case !== "callExpr") throw new Error("not a call");
    const [c, t, f] = e.exprKind.value.args;
    const ct = this.value(c);
    if (ct.kind !== "bool" && !isDyn(ct)) this.diagnostics.push({ ...this.span(c), message: `condition of '?:' must be bool, got ${typeName(ct)}` });
    const cond = this.emit(Op.COND);
    const tt = this.value(t);
    const skip = this.emit(Op.JUMP);
    this.patch(cond, "a");
    const ft = this.value(f);
    this.patch(skip);
    this.patch(cond, "b");
    if (!compatible(tt, ft)) {
      this.diagnostics.push({ ...this.span(e), message: `branches of '?:' have different types: ${typeName(tt)} and ${typeName(ft)}` });
      return POISON;
    }
    return { k: "value", type: join(tt, ft) };
  }

  lowerBinary(e: Expr, symbol: string, op: number): Lowered {
    if (e.exprKind.case !== "callExpr") throw new Error("not a call");
    const [l, r] = e.exprKind.value.args;
    const lt = this.value(l);
    const rt = this.value(r);
    const result = binaryResult(op, lt, rt);
    if (typeof result === "string") return this.error(this.operatorAt(e, symbol), result);
    if (!result) {
      if (lt === POISON_TYPE || rt === POISON_TYPE) return POISON;
      return this.error(this.operatorAt(e, symbol), `no matching overload for '${symbol}' applied to (${typeName(lt)}, ${typeName(rt)})`);
    }
    this.emit(op);
    return { k: "value", type: result };
  }

  lowerIn(e: Expr): Lowered {
    if (e.exprKind.case !== "callExpr") throw new Error("not a call");
    const [x, c] = e.exprKind.value.args;
    const at = this.operatorAt(e, "in");
    const xt = this.value(x);
    const container = this.lower(c);
    switch (container.k) {
      case "map":
        if (xt.kind !== "string" && !isDyn(xt)) {
          return this.error(at, `no matching overload for 'in' applied to (${typeName(xt)}, ${typeName(container.v.type)})`);
        }
        this.emit(Op.MAP_HAS, container.v.id);
        return { k: "value", type: BOOL };
      case "dyn":
        this.emit(Op.DYN_IN, this.dynPath(container.v, container.segments, true));
        return { k: "value", type: BOOL };
      case "msg":
        return this.error(this.span(c), "'in' is not supported on message fields");
      case "value": {
        const ct = container.type;
        if (ct === POISON_TYPE || xt === POISON_TYPE) return POISON;
        if (ct.kind === "list") {
          if (!compatible(xt, ct.elem)) {
            return this.error(at, `no matching overload for 'in' applied to (${typeName(xt)}, ${typeName(ct)})`);
          }
          this.emit(Op.IN);
          return { k: "value", type: BOOL };
        }
        return this.error(this.span(c), "the right side of 'in' must be a list literal, a map variable, or a value of request.json or jwt.claims");
      }
    }
  }

  lowerIndex(e: Expr): Lowered {
    if (e.exprKind.case !== "callExpr") throw new Error("not a call");
    const [o, key] = e.exprKind.value.args;
    const base = this.lower(o);
    const at = { offset: this.pos(e), length: 1 };
    switch (base.k) {
      case "map": {
        const lit = this.literal(key);
        if (lit?.kind === "string" && this.headerKeyError(base.v, lit.value, this.span(key))) return POISON;
        const kt = this.value(key);
        if (kt.kind !== "string" && !isDyn(kt)) return this.error(this.span(key), `map '${base.v.name}' is indexed by string, got ${typeName(kt)}`);
        this.emit(Op.MAP_GET, base.v.id);
        return { k: "value", type: base.v.type.kind === "map" ? base.v.type.value : DYN };
      }
      case "dyn": {
        const c = this.literal(key);
        if (c?.kind === "string") return { k: "dyn", v: base.v, segments: [...base.segments, c.value] };
        if (c?.kind === "int" || c?.kind === "uint") return { k: "dyn", v: base.v, segments: [...base.segments, BigInt.asIntN(64, c.value)] };
        return this.error(this.span(key), `'${base.v.name}' can only be indexed by a string or integer constant`);
      }
      case "msg":
        return this.error(at, "protobuf messages cannot be indexed: select fields with '.'");
      case "value": {
        const bt = base.type;
        if (bt === POISON_TYPE) return POISON;
        if (bt.kind === "list") {
          const kt = this.value(key);
          if (kt.kind !== "int" && !isDyn(kt)) return this.error(this.span(key), `list index must be int, got ${typeName(kt)}`);
          this.emit(Op.INDEX);
          return { k: "value", type: bt.elem };
        }
        if (isDyn(bt)) return this.error(at, "indexing a computed dyn value is not supported: index request.json or jwt.claims directly");
        return this.error(at, `type '${typeName(bt)}' cannot be indexed`);
      }
    }
  }

  lowerSize(e: Expr, arg: Expr): Lowered {
    const l = this.lower(arg);
    if (l.k === "map") {
      this.emit(Op.MAP_SIZE, l.v.id);
      return { k: "value", type: INT };
    }
    const t = this.materialize(l, arg).type;
    if (t.kind !== "string" && t.kind !== "list" && t.kind !== "map" && !isDyn(t)) {
      return this.error({ offset: this.pos(e), length: 4 }, `no matching overload for 'size' applied to (${typeName(t)})`);
    }
    this.emit(Op.SIZE);
    return { k: "value", type: INT };
  }

  lowerConversion(e: Expr, fn: string, arg: Expr): Lowered {
    const t = this.value(arg);
    const at = { offset: this.pos(e), length: fn.length };
    if (t === POISON_TYPE) return POISON;
    if (fn === "string") {
      if (t.kind === "double") return this.error(at, "'string()' of a double is not supported: implementations format doubles differently");
      if (isDyn(t)) return this.error(at, "'string()' of a dyn value is not supported: compare the value with a typed expression instead");
      if (!["string", "int", "uint", "bool"].includes(t.kind)) return this.error(at, `no matching overload for 'string' applied to (${typeName(t)})`);
      this.emit(Op.TO_STRING);
      return { k: "value", type: STRING };
    }
    if (!["string", "int", "uint", "double", "dyn"].includes(t.kind)) {
      return this.error(at, `no matching overload for '${fn}' applied to (${typeName(t)})`);
    }
    this.emit(fn === "int" ? Op.TO_INT : fn === "uint" ? Op.TO_UINT : Op.TO_DOUBLE);
    return { k: "value", type: fn === "int" ? INT : fn === "uint" ? UINT : DOUBLE };
  }
}

function describeMsg(l: { v: VariableDecl; fields: readonly ProtoField[] }): string {
  return [l.v.name, ...l.fields.map((f) => f.name)].join(".");
}

function constType(c: CelConst): CelType {
  switch (c.kind) {
    case "bool": return BOOL;
    case "int": return INT;
    case "uint": return UINT;
    case "double": return DOUBLE;
    case "string": return STRING;
    case "null": return NULL;
    case "list": return listOf(DYN);
  }
}

const ORDERED = new Set(["int", "uint", "double", "string", "bool"]);

/** Result type of a binary operator, undefined for no overload, or a message for a known-unsupported case. */
function binaryResult(op: number, l: CelType, r: CelType): CelType | string | undefined {
  switch (op) {
    case Op.EQ:
    case Op.NE:
      if ((l.kind === "list" || r.kind === "list") && !(isDyn(l) || isDyn(r)) && compatible(l, r)) return BOOL;
      return compatible(l, r) ? BOOL : undefined;
    case Op.LT:
    case Op.LE:
    case Op.GT:
    case Op.GE:
      if (isDyn(l) || isDyn(r)) return (isDyn(l) || ORDERED.has(l.kind)) && (isDyn(r) || ORDERED.has(r.kind)) ? BOOL : undefined;
      if (isNumeric(l) && isNumeric(r)) return BOOL;
      return l.kind === r.kind && ORDERED.has(l.kind) ? BOOL : undefined;
    case Op.ADD:
      if (l.kind === "list" && r.kind === "list") return "list concatenation is not supported";
      return arith(l, r, ["int", "uint", "double", "string"]);
    case Op.SUB:
    case Op.MUL:
    case Op.DIV:
      return arith(l, r, ["int", "uint", "double"]);
    case Op.MOD:
      return arith(l, r, ["int", "uint"]);
  }
  return undefined;
}

function arith(l: CelType, r: CelType, kinds: string[]): CelType | undefined {
  if (isDyn(l) && isDyn(r)) return DYN;
  if (isDyn(l)) return kinds.includes(r.kind) ? r : undefined;
  if (isDyn(r)) return kinds.includes(l.kind) ? l : undefined;
  return l.kind === r.kind && kinds.includes(l.kind) ? l : undefined;
}

function children(e: Expr): Expr[] {
  const k = e.exprKind;
  switch (k.case) {
    case "selectExpr": return k.value.operand ? [k.value.operand] : [];
    case "callExpr": return [...(k.value.target ? [k.value.target] : []), ...k.value.args];
    case "listExpr": return [...k.value.elements];
    case "structExpr": return k.value.entries.flatMap((en) => [...(en.keyKind.case === "mapKey" ? [en.keyKind.value] : []), ...(en.value ? [en.value] : [])]);
    case "comprehensionExpr": return k.value.iterRange ? [k.value.iterRange] : [];
    default: return [];
  }
}

/** Length of the literal token at `at` (strings with any quoting, numbers, keywords). */
function literalLength(src: string, at: number): number {
  const rest = src.slice(at);
  const m = /^(?:[rR]?[bB]?|[bB]?[rR]?)("""[\s\S]*?"""|'''[\s\S]*?'''|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')/.exec(rest)
    ?? /^-?(?:0[xX][0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)[uU]?/.exec(rest)
    ?? /^(?:true|false|null)/.exec(rest);
  return m ? m[0].length : 1;
}

export interface LoweringResult {
  readonly program?: CelProgram;
  readonly diagnostics: readonly CelDiagnostic[];
  readonly usedVariables: ReadonlySet<string>;
}

/** Parses, checks and lowers `source`. */
export function lowerCondition(source: string, env: ConditionEnv): LoweringResult {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(source);
  } catch (e) {
    if (e instanceof RangeError) {
      // The parser is recursive: a few hundred nested parentheses exhaust the JavaScript stack.
      return { diagnostics: [{ offset: 0, length: Math.max(1, source.length), message: "condition is nested too deeply" }], usedVariables: new Set() };
    }
    const err = e as { message?: string; location?: { start?: { offset?: number } } };
    const offset = err.location?.start?.offset ?? 0;
    let message = (err.message ?? "").replace(/^<input>:\d+:\d+: /, "");
    // The parser says "found X but expecting A, B, or C"; quote the user's text.
    const m = /^found (.*) but expecting (.*)$/s.exec(message);
    if (m) message = m[1] === "end of input" ? `unexpected end of the condition, expecting ${m[2]}` : `unexpected '${m[1]}', expecting ${m[2]}`;
    return { diagnostics: [{ offset, length: 1, message: `syntax error: ${message}` }], usedVariables: new Set() };
  }
  const info = parsed.sourceInfo;
  const positions: Record<string, number> = {};
  for (const [id, off] of Object.entries(info?.positions ?? {})) positions[id] = Number(off);
  const macroCalls: Record<string, Expr> = {};
  for (const [id, call] of Object.entries(info?.macroCalls ?? {})) macroCalls[id] = call;
  const lw = new Lowering(source, env, positions, macroCalls);
  const t = lw.value(parsed.expr);
  if ((env.resultType ?? "bool") === "bool" && t.kind !== "bool" && !isDyn(t)) {
    lw.diagnostics.push({ ...lw.span(parsed.expr), message: `a condition must be a bool expression, but this one is ${typeName(t)}` });
  }
  lw.emit(Op.RETURN);
  if (lw.diagnostics.length === 0) {
    // The engine's limits (docs/cel.md, "EXPR section"), reported here rather than when the table is written.
    const bytes = lw.code.reduce((n, i) => n + instructionLength(i.op), 0);
    const whole = { offset: 0, length: Math.max(1, source.length) };
    if (bytes > 0xffff) lw.diagnostics.push({ ...whole, message: `condition is too large: ${bytes} bytes of bytecode, at most 65535` });
    else if (lw.consts.length > 0xffff) lw.diagnostics.push({ ...whole, message: "condition has more than 65535 constants" });
    else if (maxStackDepth(lw.code) > 1024) lw.diagnostics.push({ ...whole, message: "condition is nested too deeply: it needs more than 1024 stack slots" });
  }
  const diagnostics = [...lw.diagnostics].sort((a, b) => a.offset - b.offset);
  if (diagnostics.length > 0) return { diagnostics, usedVariables: lw.usedVariables };
  const program: CelProgram = {
    source,
    code: lw.code,
    consts: lw.consts,
    dynPaths: lw.dynPaths,
    protoPaths: lw.protoPaths,
    protoSchema: lw.protoPaths.length > 0 ? lw.protoSchema : EMPTY_PROTO_SCHEMA,
    resultType: t,
  };
  return { program, diagnostics: [], usedVariables: lw.usedVariables };
}
