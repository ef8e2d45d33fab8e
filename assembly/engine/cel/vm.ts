// The CEL stack VM. Runs a validated CelProgram against a CelActivation.
//
// Values live in three preallocated parallel arrays (tag, a, b: see value.ts); new strings go to the
// CelArena. Jumps only go forward (program.ts checks it), so a run executes each instruction at most once and
// its cost is bounded by the code length plus the string and list operations it performs.
//
// Semantics follow CEL (langdef.md) as @bufbuild/cel implements it: heterogeneous numeric equality is exact,
// ordering between int/uint and double converts the integer to double first, && and || absorb errors
// commutatively, int/uint arithmetic fails on overflow, division and modulus by zero fail.

import {
  T_NULL, T_BOOL, T_INT, T_UINT, T_DOUBLE, T_STRING, T_LIST, T_OBJECT, T_ARRAY, T_ABSENT, T_MISSING, T_ERROR,
  E_NO_SUCH_KEY, E_NO_SUCH_ATTRIBUTE, E_NO_MATCHING_OVERLOAD, E_OVERFLOW, E_DIVIDE_BY_ZERO, E_MODULUS_BY_ZERO,
  E_CONVERSION, E_UNSUPPORTED, E_BODY, E_LIMIT, CelSlot, StaticText, isError,
} from "./value";
import {
  OP_CONST, OP_VAR, OP_MAP_GET, OP_MAP_HAS, OP_MAP_SIZE, OP_DYN_GET, OP_DYN_HAS, OP_DYN_IN, OP_PROTO_GET,
  OP_PROTO_HAS, OP_NOT, OP_NEG, OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MOD,
  OP_IN, OP_INDEX, OP_SIZE, OP_STARTS_WITH, OP_ENDS_WITH, OP_CONTAINS, OP_TO_INT, OP_TO_UINT, OP_TO_DOUBLE,
  OP_TO_STRING, OP_AND, OP_OR, OP_JUMP_IF_FALSE, OP_JUMP_IF_TRUE, OP_COND, OP_JUMP, OP_RETURN,
} from "./opcodes";
import { CelProgram, CelProgramSet, SEG_KEY } from "./program";
import { CelActivation } from "./activation";
import { CelArena } from "./arena";
import { bytesEqual, bytesCompare, bytesIndexOf, codePointCount } from "./utf8";
import {
  parseInt64, parseUint64, parseDouble, parsedInt, parsedDouble, formatInteger, PARSE_OK, PARSE_RANGE,
} from "./number";

// Operator names for error details, encoded once.
const N_NOT = new StaticText("!");
const N_NEG = new StaticText("-");
const N_LT = new StaticText("<");
const N_LE = new StaticText("<=");
const N_GT = new StaticText(">");
const N_GE = new StaticText(">=");
const N_ADD = new StaticText("+");
const N_SUB = new StaticText("-");
const N_MUL = new StaticText("*");
const N_DIV = new StaticText("/");
const N_MOD = new StaticText("%");
const N_IN = new StaticText("in");
const N_INDEX = new StaticText("[]");
const N_SIZE = new StaticText("size");
const N_STARTS = new StaticText("startsWith");
const N_ENDS = new StaticText("endsWith");
const N_CONTAINS = new StaticText("contains");
const N_INT = new StaticText("int");
const N_UINT = new StaticText("uint");
const N_DOUBLE = new StaticText("double");
const N_STRING = new StaticText("string");
const N_AND = new StaticText("&&");
const N_OR = new StaticText("||");
const N_COND = new StaticText("?:");
const N_TRUE = new StaticText("true");
const N_FALSE = new StaticText("false");
const U_CONTAINERS = new StaticText("comparing two json containers");
const U_STRING_DOUBLE = new StaticText("string() of a double");
const U_MEMBERS = new StaticText("members of this json value were not collected");
const L_ARENA = new StaticText("scratch arena exhausted");
const U_ACTIVATION = new StaticText("the activation returned an invalid value");
const U_PROGRAM = new StaticText("no such program");

/** Names of the request environment's variables (by id), for E_NO_SUCH_ATTRIBUTE details. */
const STANDARD_VAR_NAMES: StaticArray<StaticText> = [
  new StaticText("source.id"), new StaticText("source.trust_domain"), new StaticText("source.attributes"),
  new StaticText("request.method"), new StaticText("request.path"), new StaticText("request.host"),
  new StaticText("request.headers"), new StaticText("request.query"), new StaticText("connection.mtls"),
  new StaticText("connection.sni"), new StaticText("request.json"), new StaticText("request.grpc.service"),
  new StaticText("request.grpc.method"), new StaticText("request.grpc.message"), new StaticText("jwt.claims"),
];

// Results of eq()/cmp() that are not plain answers.
const EQ_FALSE: i32 = 0;
const EQ_TRUE: i32 = 1;
const EQ_UNSUPPORTED: i32 = 2;
const CMP_UNORDERED: i32 = 2;
const CMP_NO_OVERLOAD: i32 = 3;

const TWO_POW_63: f64 = 9223372036854775808.0;
const TWO_POW_64: f64 = 18446744073709551616.0;

export class CelVm {
  private readonly set: CelProgramSet;
  private readonly arena: CelArena;
  private readonly tags: StaticArray<u8>;
  private readonly as: StaticArray<i64>;
  private readonly bs: StaticArray<i32>;
  private readonly slot: CelSlot = new CelSlot();
  private readonly member: CelSlot = new CelSlot();
  /** The program being run (constant lists are looked up in it). */
  private currentProgram: CelProgram = new CelProgram();
  private sp: i32 = 0;
  /** Names reported for E_NO_SUCH_ATTRIBUTE; the request environment's by default. */
  varNames: StaticArray<StaticText> = STANDARD_VAR_NAMES;

  /** The last run's value: tag, a, b as in value.ts (errors: tag >= T_ERROR, a/b the detail bytes). */
  resultTag: u8 = T_NULL;
  resultA: i64 = 0;
  resultB: i32 = 0;

  /** One VM serves every program of `set`; `arena` must be reset by the caller once per request. */
  constructor(set: CelProgramSet, arena: CelArena) {
    this.set = set;
    this.arena = arena;
    const n = set.maxStack + 1;
    this.tags = new StaticArray<u8>(n);
    this.as = new StaticArray<i64>(n);
    this.bs = new StaticArray<i32>(n);
  }

  /** Runs program `index` and returns the result tag (see resultTag/resultA/resultB). */
  eval(index: i32, act: CelActivation): u8 {
    if (index < 0 || index >= this.set.count) {
      // The table decoder checks RULE.expr against the set; answer rather than trap if a caller did not.
      this.resultTag = E_UNSUPPORTED;
      this.resultA = <i64>U_PROGRAM.ptr;
      this.resultB = U_PROGRAM.len;
      return this.resultTag;
    }
    const p = this.set.program(index);
    this.currentProgram = p;
    this.sp = 0;
    let pc = 0;
    const code = p.code;
    for (;;) {
      const op = load<u8>(code + <usize>pc);
      switch (op) {
        case OP_CONST: {
          const k = <i32>load<u16>(code + <usize>pc + 1);
          this.push(unchecked(p.constTag[k]), unchecked(p.constA[k]), unchecked(p.constB[k]));
          pc += 3;
          break;
        }
        case OP_VAR: {
          const v = <i32>load<u8>(code + <usize>pc + 1);
          const s = this.slot;
          s.setAbsent();
          act.variable(v, s);
          if (s.tag == T_ABSENT) this.pushVarMissing(v);
          else this.pushAnswer(s, false);
          pc += 2;
          break;
        }
        case OP_MAP_GET: case OP_MAP_HAS: {
          const v = <i32>load<u8>(code + <usize>pc + 1);
          this.mapAccess(op, v, act);
          pc += 2;
          break;
        }
        case OP_MAP_SIZE: {
          const v = <i32>load<u8>(code + <usize>pc + 1);
          const n = act.mapSize(v);
          if (n < 0) this.pushVarMissing(v);
          else this.push(T_INT, n, 0);
          pc += 2;
          break;
        }
        case OP_DYN_GET: case OP_DYN_HAS: {
          this.dynAccess(op, <i32>load<u16>(code + <usize>pc + 1), act);
          pc += 3;
          break;
        }
        case OP_DYN_IN: {
          this.dynIn(<i32>load<u16>(code + <usize>pc + 1), act);
          pc += 3;
          break;
        }
        case OP_PROTO_GET: case OP_PROTO_HAS: {
          const path = <i32>load<u16>(code + <usize>pc + 1);
          const s = this.slot;
          s.setNull();
          s.present = false;
          act.protoField(path, s);
          if (s.tag == T_ABSENT || s.tag == T_MISSING) {
            this.pushVarMissing(this.set.proto.root[path]);
          } else if (op == OP_PROTO_HAS && !isError(s.tag)) {
            this.push(T_BOOL, s.present ? 1 : 0, 0);
          } else {
            this.pushAnswer(s, false);
          }
          pc += 3;
          break;
        }
        case OP_NOT: {
          const t = this.topTag();
          if (t == T_BOOL) this.setTop(T_BOOL, this.topA() ^ 1, 0);
          else if (!isError(t)) this.setTopError(E_NO_MATCHING_OVERLOAD, N_NOT);
          pc += 1;
          break;
        }
        case OP_NEG: {
          const t = this.topTag();
          if (t == T_INT) {
            const x = this.topA();
            if (x == i64.MIN_VALUE) this.setTopError(E_OVERFLOW, N_NEG);
            else this.setTop(T_INT, -x, 0);
          } else if (t == T_DOUBLE) {
            this.setTop(T_DOUBLE, reinterpret<i64>(-reinterpret<f64>(this.topA())), 0);
          } else if (!isError(t)) {
            this.setTopError(E_NO_MATCHING_OVERLOAD, N_NEG);
          }
          pc += 1;
          break;
        }
        case OP_EQ: case OP_NE: {
          if (this.binaryErrors()) { pc += 1; break; }
          const r = this.eqTop2();
          this.sp--;
          if (r == EQ_UNSUPPORTED) this.setTopError(E_UNSUPPORTED, U_CONTAINERS);
          else this.setTop(T_BOOL, (r == EQ_TRUE) != (op == OP_NE) ? 1 : 0, 0);
          pc += 1;
          break;
        }
        case OP_LT: case OP_LE: case OP_GT: case OP_GE: {
          if (this.binaryErrors()) { pc += 1; break; }
          const c = this.cmpTop2();
          this.sp--;
          if (c == CMP_NO_OVERLOAD) {
            this.setTopError(E_NO_MATCHING_OVERLOAD, op == OP_LT ? N_LT : op == OP_LE ? N_LE : op == OP_GT ? N_GT : N_GE);
          } else {
            let r = false;
            if (c != CMP_UNORDERED) {
              if (op == OP_LT) r = c < 0;
              else if (op == OP_LE) r = c <= 0;
              else if (op == OP_GT) r = c > 0;
              else r = c >= 0;
            }
            this.setTop(T_BOOL, r ? 1 : 0, 0);
          }
          pc += 1;
          break;
        }
        case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_MOD: {
          if (!this.binaryErrors()) this.arith(op);
          pc += 1;
          break;
        }
        case OP_IN: {
          if (!this.binaryErrors()) this.inList();
          pc += 1;
          break;
        }
        case OP_INDEX: {
          if (!this.binaryErrors()) this.index(p);
          pc += 1;
          break;
        }
        case OP_SIZE: {
          const t = this.topTag();
          if (t == T_STRING) this.setTop(T_INT, codePointCount(<usize>this.topA(), this.topB()), 0);
          else if (t == T_LIST || t == T_OBJECT || t == T_ARRAY) this.setTop(T_INT, this.topB(), 0);
          else if (!isError(t)) this.setTopError(E_NO_MATCHING_OVERLOAD, N_SIZE);
          pc += 1;
          break;
        }
        case OP_STARTS_WITH: case OP_ENDS_WITH: case OP_CONTAINS: {
          if (!this.binaryErrors()) this.stringTest(op);
          pc += 1;
          break;
        }
        case OP_TO_INT: this.toInt(); pc += 1; break;
        case OP_TO_UINT: this.toUint(); pc += 1; break;
        case OP_TO_DOUBLE: this.toDouble(); pc += 1; break;
        case OP_TO_STRING: this.toStr(); pc += 1; break;
        case OP_AND: case OP_OR: {
          this.logic(op == OP_AND);
          pc += 1;
          break;
        }
        case OP_JUMP_IF_FALSE: case OP_JUMP_IF_TRUE: {
          const want: i64 = op == OP_JUMP_IF_TRUE ? 1 : 0;
          if (this.topTag() == T_BOOL && this.topA() == want) pc = <i32>load<u16>(code + <usize>pc + 1);
          else pc += 3;
          break;
        }
        case OP_COND: {
          const t = this.topTag();
          const a = this.topA();
          const b = this.topB();
          this.sp--;
          if (t == T_BOOL) {
            pc = a != 0 ? pc + 5 : <i32>load<u16>(code + <usize>pc + 1);
          } else {
            if (isError(t)) this.push(t, a, b);
            else this.pushError(E_NO_MATCHING_OVERLOAD, N_COND);
            pc = <i32>load<u16>(code + <usize>pc + 3);
          }
          break;
        }
        case OP_JUMP: pc = <i32>load<u16>(code + <usize>pc + 1); break;
        default: {
          // OP_RETURN (validation admits no other opcode).
          this.resultTag = this.topTag();
          this.resultA = this.topA();
          this.resultB = this.topB();
          return this.resultTag;
        }
      }
    }
    // Not reached: validation guarantees every path ends in RETURN.
    return this.resultTag;
  }

  // --- stack helpers (indexes are in range: validation bounds the depth by maxStack) --------------------------

  // @ts-ignore: decorator
  @inline private push(t: u8, a: i64, b: i32): void {
    const i = this.sp;
    unchecked(this.tags[i] = t);
    unchecked(this.as[i] = a);
    unchecked(this.bs[i] = b);
    this.sp = i + 1;
  }
  // @ts-ignore: decorator
  @inline private topTag(): u8 { return unchecked(this.tags[this.sp - 1]); }
  // @ts-ignore: decorator
  @inline private topA(): i64 { return unchecked(this.as[this.sp - 1]); }
  // @ts-ignore: decorator
  @inline private topB(): i32 { return unchecked(this.bs[this.sp - 1]); }
  // @ts-ignore: decorator
  @inline private setTop(t: u8, a: i64, b: i32): void {
    const i = this.sp - 1;
    unchecked(this.tags[i] = t);
    unchecked(this.as[i] = a);
    unchecked(this.bs[i] = b);
  }
  private setTopError(kind: u8, detail: StaticText): void {
    this.setTop(kind, <i64>detail.ptr, detail.len);
  }
  private pushError(kind: u8, detail: StaticText): void {
    this.push(kind, <i64>detail.ptr, detail.len);
  }
  /**
   * Pushes an activation's answer after checking its tag: only scalars, errors and (for dyn paths) JSON
   * containers may come from outside. Anything else would make later instructions index constant tables with
   * foreign numbers, so it becomes an error instead.
   */
  private pushAnswer(s: CelSlot, containers: bool): void {
    const t = s.tag;
    if (t <= T_STRING || (t >= T_ERROR && t <= E_LIMIT) || (containers && (t == T_OBJECT || t == T_ARRAY))) {
      this.push(t, s.a, s.b);
    } else {
      this.pushError(E_UNSUPPORTED, U_ACTIVATION);
    }
  }

  private pushVarMissing(v: i32): void {
    if (v >= 0 && v < this.varNames.length) this.pushError(E_NO_SUCH_ATTRIBUTE, unchecked(this.varNames[v]));
    else this.push(E_NO_SUCH_ATTRIBUTE, 0, 0);
  }

  /**
   * For a strict binary operator: if either operand is an error, leaves the first one as the result (CEL
   * reports the leftmost error) and returns true.
   */
  private binaryErrors(): bool {
    const i = this.sp - 2;
    const ta = unchecked(this.tags[i]);
    if (isError(ta)) { this.sp = i + 1; return true; }
    const tb = unchecked(this.tags[i + 1]);
    if (isError(tb)) {
      unchecked(this.tags[i] = tb);
      unchecked(this.as[i] = unchecked(this.as[i + 1]));
      unchecked(this.bs[i] = unchecked(this.bs[i + 1]));
      this.sp = i + 1;
      return true;
    }
    return false;
  }

  // --- variables and paths ----------------------------------------------------------------------------------

  private mapAccess(op: u8, v: i32, act: CelActivation): void {
    const kt = this.topTag();
    if (isError(kt)) return;
    const kp = <usize>this.topA();
    const kl = this.topB();
    if (kt != T_STRING) {
      // Only string keys can be present (the maps are map(string, string)); a non-key type is no overload.
      if (kt == T_INT || kt == T_UINT || kt == T_DOUBLE || kt == T_BOOL) {
        if (op == OP_MAP_HAS) this.setTop(T_BOOL, 0, 0);
        else this.setTop(E_NO_SUCH_KEY, 0, 0);
      } else {
        this.setTopError(E_NO_MATCHING_OVERLOAD, op == OP_MAP_HAS ? N_IN : N_INDEX);
      }
      return;
    }
    const s = this.slot;
    s.setAbsent();
    act.mapEntry(v, kp, kl, s);
    if (s.tag == T_ABSENT || s.tag == T_MISSING) {
      if (op == OP_MAP_HAS) this.setTop(T_BOOL, 0, 0);
      else this.setTop(E_NO_SUCH_KEY, <i64>kp, kl);
    } else if (op == OP_MAP_HAS && !isError(s.tag)) {
      this.setTop(T_BOOL, 1, 0);
    } else {
      this.sp--;
      this.pushAnswer(s, false);
    }
  }

  /** Pushes the error for dyn path `path` missing at segment `seg`. */
  private pushMissing(path: i32, seg: i32): void {
    const d = this.set.dyn;
    const i = d.segStart[path] + seg;
    if (seg >= 0 && seg < d.segCount[path] && d.segKind[i] == SEG_KEY) {
      this.push(E_NO_SUCH_KEY, <i64>d.segKeyPtr[i], d.segKeyLen[i]);
    } else if (seg >= 0 && seg < d.segCount[path]) {
      const out = this.arena.alloc(20);
      if (out == 0) this.push(E_NO_SUCH_KEY, 0, 0);
      else this.push(E_NO_SUCH_KEY, <i64>out, formatInteger(d.segIndex[i], true, out));
    } else {
      this.push(E_NO_SUCH_KEY, 0, 0);
    }
  }

  private dynAccess(op: u8, path: i32, act: CelActivation): void {
    const s = this.slot;
    s.setAbsent();
    act.dynPath(path, s);
    const t = s.tag;
    if (t == T_ABSENT) {
      this.pushVarMissing(this.set.dyn.root[path]);
    } else if (t == T_MISSING) {
      if (op == OP_DYN_HAS && s.b == this.set.dyn.segCount[path] - 1) this.push(T_BOOL, 0, 0);
      else this.pushMissing(path, s.b);
    } else if (op == OP_DYN_HAS && !isError(t)) {
      this.push(T_BOOL, 1, 0);
    } else {
      this.pushAnswer(s, true);
    }
  }

  private dynIn(path: i32, act: CelActivation): void {
    if (isError(this.topTag())) return;
    // The needle stays on the stack while the container is fetched into the slot.
    const s = this.slot;
    s.setAbsent();
    act.dynPath(path, s);
    const t = s.tag;
    if (t == T_ABSENT) { this.sp--; this.pushVarMissing(this.set.dyn.root[path]); return; }
    if (t == T_MISSING) { this.sp--; this.pushMissing(path, s.b); return; }
    if (isError(t) || (t > T_STRING && t != T_ARRAY && t != T_OBJECT)) { this.sp--; this.pushAnswer(s, true); return; }
    if (t != T_ARRAY && t != T_OBJECT) { this.setTopError(E_NO_MATCHING_OVERLOAD, N_IN); return; }
    const xt = this.topTag();
    if (t == T_OBJECT && !(xt == T_STRING || xt == T_INT || xt == T_UINT || xt == T_DOUBLE || xt == T_BOOL)) {
      this.setTopError(E_NO_MATCHING_OVERLOAD, N_IN);
      return;
    }
    const n = act.dynMemberCount(path);
    if (n < 0) { this.setTopError(E_UNSUPPORTED, U_MEMBERS); return; }
    const m = this.member;
    let unsupported = false;
    for (let i = 0; i < n; i++) {
      m.setNull();
      act.dynMember(path, i, m);
      // Only scalars and JSON containers can be members (constant lists index this program's tables).
      if (m.tag > T_ARRAY || m.tag == T_LIST) continue;
      const r = this.eqValues(xt, this.topA(), this.topB(), m.tag, m.a, m.b);
      if (r == EQ_TRUE) { this.setTop(T_BOOL, 1, 0); return; }
      if (r == EQ_UNSUPPORTED) unsupported = true;
    }
    if (unsupported) this.setTopError(E_UNSUPPORTED, U_CONTAINERS);
    else this.setTop(T_BOOL, 0, 0);
  }

  // --- equality and ordering --------------------------------------------------------------------------------

  private eqTop2(): i32 {
    const i = this.sp - 2;
    return this.eqValues(
      unchecked(this.tags[i]), unchecked(this.as[i]), unchecked(this.bs[i]),
      unchecked(this.tags[i + 1]), unchecked(this.as[i + 1]), unchecked(this.bs[i + 1]),
    );
  }

  /** CEL equality of two non-error values. */
  private eqValues(ta: u8, a: i64, ab: i32, tb: u8, b: i64, bb: i32): i32 {
    if (isNumeric(ta) && isNumeric(tb)) return numericEqual(ta, a, tb, b) ? EQ_TRUE : EQ_FALSE;
    if (ta == T_STRING) return tb == T_STRING && bytesEqual(<usize>a, ab, <usize>b, bb) ? EQ_TRUE : EQ_FALSE;
    if (ta == T_BOOL) return tb == T_BOOL && a == b ? EQ_TRUE : EQ_FALSE;
    if (ta == T_NULL) return tb == T_NULL ? EQ_TRUE : EQ_FALSE;
    const aList = ta == T_LIST || ta == T_ARRAY;
    const bList = tb == T_LIST || tb == T_ARRAY;
    if (aList && bList) {
      if (ab != bb) return EQ_FALSE;
      if (ab == 0) return EQ_TRUE;
      if (ta == T_LIST && tb == T_LIST) return this.listsEqual(<i32>a, <i32>b, ab);
      return EQ_UNSUPPORTED;
    }
    if (ta == T_OBJECT && tb == T_OBJECT) {
      if (ab != bb) return EQ_FALSE;
      return ab == 0 ? EQ_TRUE : EQ_UNSUPPORTED;
    }
    return EQ_FALSE;
  }

  private listsEqual(sa: i32, sb: i32, n: i32): i32 {
    // Both are constant lists of the running program; their elements are scalar constants.
    const p = this.currentProgram;
    for (let i = 0; i < n; i++) {
      const ka = unchecked(p.listElems[sa + i]);
      const kb = unchecked(p.listElems[sb + i]);
      const r = this.eqValues(
        unchecked(p.constTag[ka]), unchecked(p.constA[ka]), unchecked(p.constB[ka]),
        unchecked(p.constTag[kb]), unchecked(p.constA[kb]), unchecked(p.constB[kb]),
      );
      if (r != EQ_TRUE) return r;
    }
    return EQ_TRUE;
  }


  private cmpTop2(): i32 {
    const i = this.sp - 2;
    const ta = unchecked(this.tags[i]);
    const tb = unchecked(this.tags[i + 1]);
    const a = unchecked(this.as[i]);
    const b = unchecked(this.as[i + 1]);
    if (ta == T_STRING && tb == T_STRING) {
      return bytesCompare(<usize>a, unchecked(this.bs[i]), <usize>b, unchecked(this.bs[i + 1]));
    }
    if (ta == T_BOOL && tb == T_BOOL) return a < b ? -1 : a > b ? 1 : 0;
    if (!isNumeric(ta) || !isNumeric(tb)) return CMP_NO_OVERLOAD;
    if (ta == T_INT && tb == T_INT) return a < b ? -1 : a > b ? 1 : 0;
    if (ta == T_UINT && tb == T_UINT) return <u64>a < <u64>b ? -1 : <u64>a > <u64>b ? 1 : 0;
    if (ta == T_INT && tb == T_UINT) return a < 0 || <u64>a < <u64>b ? -1 : <u64>a > <u64>b ? 1 : 0;
    if (ta == T_UINT && tb == T_INT) return b < 0 || <u64>a > <u64>b ? 1 : <u64>a < <u64>b ? -1 : 0;
    // Some side is a double: @bufbuild/cel (and cel-go) convert the integer to double, then compare.
    const x = toF64(ta, a);
    const y = toF64(tb, b);
    if (isNaN(x) || isNaN(y)) return CMP_UNORDERED;
    return x < y ? -1 : x > y ? 1 : 0;
  }

  // --- arithmetic -------------------------------------------------------------------------------------------

  private arith(op: u8): void {
    const i = this.sp - 2;
    const ta = unchecked(this.tags[i]);
    const tb = unchecked(this.tags[i + 1]);
    const a = unchecked(this.as[i]);
    const b = unchecked(this.as[i + 1]);
    this.sp = i + 1;
    const name = op == OP_ADD ? N_ADD : op == OP_SUB ? N_SUB : op == OP_MUL ? N_MUL : op == OP_DIV ? N_DIV : N_MOD;
    if (ta != tb) { this.setTopError(E_NO_MATCHING_OVERLOAD, name); return; }
    if (ta == T_INT) {
      let r: i64 = 0;
      if (op == OP_ADD) {
        r = a + b;
        if (((a ^ r) & (b ^ r)) < 0) { this.setTopError(E_OVERFLOW, name); return; }
      } else if (op == OP_SUB) {
        r = a - b;
        if (((a ^ b) & (a ^ r)) < 0) { this.setTopError(E_OVERFLOW, name); return; }
      } else if (op == OP_MUL) {
        if (a != 0 && b != 0) {
          if ((a == -1 && b == i64.MIN_VALUE) || (b == -1 && a == i64.MIN_VALUE)) { this.setTopError(E_OVERFLOW, name); return; }
          r = a * b;
          if (r / b != a) { this.setTopError(E_OVERFLOW, name); return; }
        }
      } else if (op == OP_DIV) {
        if (b == 0) { this.setTopError(E_DIVIDE_BY_ZERO, name); return; }
        if (a == i64.MIN_VALUE && b == -1) { this.setTopError(E_OVERFLOW, name); return; }
        r = a / b;
      } else {
        if (b == 0) { this.setTopError(E_MODULUS_BY_ZERO, name); return; }
        r = b == -1 ? 0 : a % b;
      }
      this.setTop(T_INT, r, 0);
    } else if (ta == T_UINT) {
      const x = <u64>a;
      const y = <u64>b;
      let r: u64 = 0;
      if (op == OP_ADD) {
        r = x + y;
        if (r < x) { this.setTopError(E_OVERFLOW, name); return; }
      } else if (op == OP_SUB) {
        if (x < y) { this.setTopError(E_OVERFLOW, name); return; }
        r = x - y;
      } else if (op == OP_MUL) {
        r = x * y;
        if (x != 0 && r / x != y) { this.setTopError(E_OVERFLOW, name); return; }
      } else if (op == OP_DIV) {
        if (y == 0) { this.setTopError(E_DIVIDE_BY_ZERO, name); return; }
        r = x / y;
      } else {
        if (y == 0) { this.setTopError(E_MODULUS_BY_ZERO, name); return; }
        r = x % y;
      }
      this.setTop(T_UINT, <i64>r, 0);
    } else if (ta == T_DOUBLE && op != OP_MOD) {
      const x = reinterpret<f64>(a);
      const y = reinterpret<f64>(b);
      const r = op == OP_ADD ? x + y : op == OP_SUB ? x - y : op == OP_MUL ? x * y : x / y;
      this.setTop(T_DOUBLE, reinterpret<i64>(r), 0);
    } else if (ta == T_STRING && op == OP_ADD) {
      const la = unchecked(this.bs[i]);
      const lb = unchecked(this.bs[i + 1]);
      if (la == 0) { this.setTop(T_STRING, b, lb); return; }
      if (lb == 0) return;
      const out = this.arena.alloc(la + lb);
      if (out == 0) { this.setTopError(E_LIMIT, L_ARENA); return; }
      memory.copy(out, <usize>a, <usize>la);
      memory.copy(out + <usize>la, <usize>b, <usize>lb);
      this.setTop(T_STRING, <i64>out, la + lb);
    } else {
      this.setTopError(E_NO_MATCHING_OVERLOAD, name);
    }
  }

  private inList(): void {
    const i = this.sp - 2;
    const tl = unchecked(this.tags[i + 1]);
    this.sp = i + 1;
    if (tl != T_LIST) { this.setTopError(E_NO_MATCHING_OVERLOAD, N_IN); return; }
    const start = <i32>unchecked(this.as[i + 1]);
    const n = unchecked(this.bs[i + 1]);
    const p = this.currentProgram;
    const xt = unchecked(this.tags[i]);
    const xa = unchecked(this.as[i]);
    const xb = unchecked(this.bs[i]);
    let unsupported = false;
    for (let e = 0; e < n; e++) {
      const k = unchecked(p.listElems[start + e]);
      const r = this.eqValues(xt, xa, xb, unchecked(p.constTag[k]), unchecked(p.constA[k]), unchecked(p.constB[k]));
      if (r == EQ_TRUE) { this.setTop(T_BOOL, 1, 0); return; }
      if (r == EQ_UNSUPPORTED) unsupported = true;
    }
    if (unsupported) this.setTopError(E_UNSUPPORTED, U_CONTAINERS);
    else this.setTop(T_BOOL, 0, 0);
  }

  private index(p: CelProgram): void {
    const i = this.sp - 2;
    const tl = unchecked(this.tags[i]);
    const ti = unchecked(this.tags[i + 1]);
    const ia = unchecked(this.as[i + 1]);
    this.sp = i + 1;
    if (tl != T_LIST || ti == T_NULL || ti == T_LIST || ti == T_OBJECT || ti == T_ARRAY) {
      this.setTopError(E_NO_MATCHING_OVERLOAD, N_INDEX);
      return;
    }
    const n = unchecked(this.bs[i]);
    let k: i64 = -1;
    if (ti == T_INT) k = ia;
    else if (ti == T_UINT) k = <u64>ia > <u64>n ? -1 : ia;
    else if (ti == T_DOUBLE) {
      const d = reinterpret<f64>(ia);
      if (d >= 0 && d < <f64>n && Math.trunc(d) == d) k = <i64>d;
    }
    if (k < 0 || k >= <i64>n) { this.setTop(E_NO_SUCH_KEY, 0, 0); return; }
    const c = unchecked(p.listElems[<i32>unchecked(this.as[i]) + <i32>k]);
    this.setTop(unchecked(p.constTag[c]), unchecked(p.constA[c]), unchecked(p.constB[c]));
  }

  private stringTest(op: u8): void {
    const i = this.sp - 2;
    const ta = unchecked(this.tags[i]);
    const tb = unchecked(this.tags[i + 1]);
    this.sp = i + 1;
    if (ta != T_STRING || tb != T_STRING) {
      this.setTopError(E_NO_MATCHING_OVERLOAD, op == OP_STARTS_WITH ? N_STARTS : op == OP_ENDS_WITH ? N_ENDS : N_CONTAINS);
      return;
    }
    const hp = <usize>unchecked(this.as[i]);
    const hl = unchecked(this.bs[i]);
    const np = <usize>unchecked(this.as[i + 1]);
    const nl = unchecked(this.bs[i + 1]);
    let r = false;
    if (op == OP_STARTS_WITH) r = nl <= hl && bytesEqual(hp, nl, np, nl);
    else if (op == OP_ENDS_WITH) r = nl <= hl && bytesEqual(hp + <usize>(hl - nl), nl, np, nl);
    else r = bytesIndexOf(hp, hl, np, nl) >= 0;
    this.setTop(T_BOOL, r ? 1 : 0, 0);
  }

  // --- conversions ------------------------------------------------------------------------------------------

  private toInt(): void {
    const t = this.topTag();
    const a = this.topA();
    if (t == T_INT || isError(t)) return;
    if (t == T_UINT) {
      if (a < 0) this.setTopError(E_OVERFLOW, N_INT);
      else this.setTop(T_INT, a, 0);
    } else if (t == T_DOUBLE) {
      const d = reinterpret<f64>(a);
      // Both bounds exclusive, as @bufbuild/cel and cel-go: -2^63 itself is out of range too.
      if (!(d > -TWO_POW_63 && d < TWO_POW_63)) this.setTopError(E_OVERFLOW, N_INT);
      else this.setTop(T_INT, <i64>d, 0);
    } else if (t == T_STRING) {
      const r = parseInt64(<usize>a, this.topB());
      if (r == PARSE_OK) this.setTop(T_INT, parsedInt, 0);
      else if (r == PARSE_RANGE) this.setTopError(E_OVERFLOW, N_INT);
      else this.setTop(E_CONVERSION, a, this.topB());
    } else {
      this.setTopError(E_NO_MATCHING_OVERLOAD, N_INT);
    }
  }

  private toUint(): void {
    const t = this.topTag();
    const a = this.topA();
    if (t == T_UINT || isError(t)) return;
    if (t == T_INT) {
      if (a < 0) this.setTopError(E_OVERFLOW, N_UINT);
      else this.setTop(T_UINT, a, 0);
    } else if (t == T_DOUBLE) {
      const d = reinterpret<f64>(a);
      if (!(d >= 0 && d < TWO_POW_64)) this.setTopError(E_OVERFLOW, N_UINT);
      else this.setTop(T_UINT, <i64><u64>d, 0);
    } else if (t == T_STRING) {
      const r = parseUint64(<usize>a, this.topB());
      if (r == PARSE_OK) this.setTop(T_UINT, parsedInt, 0);
      else if (r == PARSE_RANGE) this.setTopError(E_OVERFLOW, N_UINT);
      else this.setTop(E_CONVERSION, a, this.topB());
    } else {
      this.setTopError(E_NO_MATCHING_OVERLOAD, N_UINT);
    }
  }

  private toDouble(): void {
    const t = this.topTag();
    const a = this.topA();
    if (t == T_DOUBLE || isError(t)) return;
    if (t == T_INT) this.setTop(T_DOUBLE, reinterpret<i64>(<f64>a), 0);
    else if (t == T_UINT) this.setTop(T_DOUBLE, reinterpret<i64>(<f64><u64>a), 0);
    else if (t == T_STRING) {
      if (parseDouble(<usize>a, this.topB()) == PARSE_OK) this.setTop(T_DOUBLE, reinterpret<i64>(parsedDouble), 0);
      else this.setTop(E_CONVERSION, a, this.topB());
    } else {
      this.setTopError(E_NO_MATCHING_OVERLOAD, N_DOUBLE);
    }
  }

  private toStr(): void {
    const t = this.topTag();
    const a = this.topA();
    if (t == T_STRING || isError(t)) return;
    if (t == T_BOOL) {
      const s = a != 0 ? N_TRUE : N_FALSE;
      this.setTop(T_STRING, <i64>s.ptr, s.len);
    } else if (t == T_INT || t == T_UINT) {
      const out = this.arena.alloc(20);
      if (out == 0) { this.setTopError(E_LIMIT, L_ARENA); return; }
      const n = formatInteger(a, t == T_INT, out);
      this.arena.shrinkLast(out, 20, n);
      this.setTop(T_STRING, <i64>out, n);
    } else if (t == T_DOUBLE) {
      // Implementations format doubles differently (Go %g vs ECMAScript); the compiler rejects it statically.
      this.setTopError(E_UNSUPPORTED, U_STRING_DOUBLE);
    } else {
      this.setTopError(E_NO_MATCHING_OVERLOAD, N_STRING);
    }
  }

  private logic(isAnd: bool): void {
    const i = this.sp - 2;
    const ta = unchecked(this.tags[i]);
    const tb = unchecked(this.tags[i + 1]);
    const a = unchecked(this.as[i]);
    const b = unchecked(this.as[i + 1]);
    this.sp = i + 1;
    // The absorbing value (false for &&, true for ||) wins over anything, errors included.
    const absorb: i64 = isAnd ? 0 : 1;
    if ((ta == T_BOOL && a == absorb) || (tb == T_BOOL && b == absorb)) { this.setTop(T_BOOL, absorb, 0); return; }
    if (isError(ta)) return;
    if (ta != T_BOOL) { this.setTopError(E_NO_MATCHING_OVERLOAD, isAnd ? N_AND : N_OR); return; }
    if (isError(tb)) { this.setTop(tb, b, unchecked(this.bs[i + 1])); return; }
    if (tb != T_BOOL) { this.setTopError(E_NO_MATCHING_OVERLOAD, isAnd ? N_AND : N_OR); return; }
    this.setTop(T_BOOL, 1 - absorb, 0);
  }
}

// @ts-ignore: decorator
@inline function isNumeric(t: u8): bool { return t == T_INT || t == T_UINT || t == T_DOUBLE; }

function toF64(t: u8, v: i64): f64 {
  if (t == T_INT) return <f64>v;
  if (t == T_UINT) return <f64><u64>v;
  return reinterpret<f64>(v);
}

/** Exact equality across int, uint and double (no rounding: 2^53 + 1 != 2^53 as a double). */
function numericEqual(ta: u8, a: i64, tb: u8, b: i64): bool {
  if (ta == tb) {
    if (ta == T_DOUBLE) return reinterpret<f64>(a) == reinterpret<f64>(b);
    return a == b;
  }
  if (ta == T_DOUBLE) return doubleEqualsInteger(reinterpret<f64>(a), tb, b);
  if (tb == T_DOUBLE) return doubleEqualsInteger(reinterpret<f64>(b), ta, a);
  // int vs uint
  const i = ta == T_INT ? a : b;
  const u = ta == T_INT ? b : a;
  return i >= 0 && i == u;
}

function doubleEqualsInteger(d: f64, t: u8, v: i64): bool {
  if (Math.trunc(d) != d) return false; // NaN, infinities and fractions
  if (t == T_INT) {
    if (d < -TWO_POW_63 || d >= TWO_POW_63) return false;
    return <i64>d == v;
  }
  if (d < 0 || d >= TWO_POW_64) return false;
  return <u64>d == <u64>v;
}
