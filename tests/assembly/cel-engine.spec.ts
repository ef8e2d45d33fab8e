// The CEL engine's building blocks, natively in AssemblyScript: number and UTF-8 helpers, gRPC framing, and a
// hand-encoded program run by the VM over a CelActivation implementation, as the filter will run it.

import {
  parseDouble, parseInt64, parseUint64, parsedDouble, parsedInt, formatInteger, PARSE_OK, PARSE_SYNTAX, PARSE_RANGE,
  validUtf8, codePointCount, parseGrpcFrame, GrpcFrame, GRPC_OK, GRPC_EMPTY, GRPC_TRUNCATED, GRPC_COMPRESSED,
  GRPC_MULTIPLE, GRPC_BAD_FLAG, CelVm, CelArena, DynResults, CelProgramSet, STANDARD_VAR_KINDS, celLoadError,
  OP_VAR, OP_CONST, OP_EQ, OP_JUMP_IF_FALSE, OP_DYN_IN, OP_AND, OP_RETURN, T_BOOL, T_STRING, E_NO_SUCH_ATTRIBUTE,
  E_BODY, VAR_SOURCE_ID, VAR_JWT_CLAIMS, VAR_REQUEST_JSON, celErrorMessage,
} from "../../assembly/engine/cel/index";
import { CelBytes, FixedActivation, dynPath, programRecord, section, decode } from "./cel-helpers";

function bytes(s: string): Uint8Array {
  return Uint8Array.wrap(String.UTF8.encode(s));
}

function dbl(s: string): f64 {
  const b = bytes(s);
  expect(parseDouble(b.dataStart, b.length)).toBe(PARSE_OK, s);
  return parsedDouble;
}

describe("number parsing", () => {
  it("rounds decimal text correctly, on both paths", () => {
    expect(reinterpret<u64>(dbl("0.1"))).toBe(0x3fb999999999999a);
    expect(dbl("1e23")).toBe(1e23);
    expect(reinterpret<u64>(dbl("2.2250738585072011e-308"))).toBe(0x000fffffffffffff);
    expect(reinterpret<u64>(dbl("4.9e-324"))).toBe(1);
    expect(dbl("2.4703282292062327e-324")).toBe(0.0);
    expect(reinterpret<u64>(dbl("2.4703282292062328e-324"))).toBe(1);
    expect(dbl("9007199254740993")).toBe(9007199254740992.0);
    expect(dbl("1.00000000000000011102230246251565404236316680908203125")).toBe(1.0);
    expect(reinterpret<u64>(dbl("1.00000000000000011102230246251565404236316680908203126"))).toBe(0x3ff0000000000001);
    expect(dbl("1.7976931348623159e308")).toBe(Infinity);
    expect(reinterpret<u64>(dbl("-0"))).toBe(0x8000000000000000);
    expect(dbl("Infinity")).toBe(Infinity);
    expect(isNaN(dbl("nan"))).toBe(true);
  });

  it("rejects what cel-go's double() rejects", () => {
    const bad = ["", "+", ".", "1e", "1e+", "0x10", " 1", "1 ", "1_0", "--1", "1.2.3", "infinit"];
    for (let i = 0; i < bad.length; i++) {
      const b = bytes(bad[i]);
      expect(parseDouble(b.dataStart, b.length)).toBe(PARSE_SYNTAX, bad[i]);
    }
  });

  it("parses int64 and uint64 with range errors at the edges", () => {
    let b = bytes("-9223372036854775808");
    expect(parseInt64(b.dataStart, b.length)).toBe(PARSE_OK);
    expect(parsedInt).toBe(i64.MIN_VALUE);
    b = bytes("9223372036854775808");
    expect(parseInt64(b.dataStart, b.length)).toBe(PARSE_RANGE);
    b = bytes("18446744073709551615");
    expect(parseUint64(b.dataStart, b.length)).toBe(PARSE_OK);
    expect(<u64>parsedInt).toBe(u64.MAX_VALUE);
    b = bytes("18446744073709551616");
    expect(parseUint64(b.dataStart, b.length)).toBe(PARSE_RANGE);
    b = bytes("+1");
    expect(parseUint64(b.dataStart, b.length)).toBe(PARSE_SYNTAX);
  });

  it("formats integers", () => {
    const out = new Uint8Array(20);
    let n = formatInteger(i64.MIN_VALUE, true, out.dataStart);
    expect(String.UTF8.decodeUnsafe(out.dataStart, n)).toBe("-9223372036854775808");
    n = formatInteger(-1, false, out.dataStart);
    expect(String.UTF8.decodeUnsafe(out.dataStart, n)).toBe("18446744073709551615");
    n = formatInteger(0, true, out.dataStart);
    expect(String.UTF8.decodeUnsafe(out.dataStart, n)).toBe("0");
  });
});

describe("utf-8", () => {
  it("accepts valid text and counts code points", () => {
    const b = bytes("aé日😀");
    expect(validUtf8(b.dataStart, b.length)).toBe(true);
    expect(codePointCount(b.dataStart, b.length)).toBe(4);
  });

  it("rejects overlong forms, surrogates and truncation", () => {
    const cases: u8[][] = [[0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe6, 0x97], [0x80], [0xff]];
    for (let i = 0; i < cases.length; i++) {
      const a = new Uint8Array(cases[i].length);
      for (let k = 0; k < a.length; k++) a[k] = cases[i][k];
      expect(validUtf8(a.dataStart, a.length)).toBe(false);
    }
  });
});

function frame(flag: u8, declared: i32, actual: i32): i32 {
    const a = new Uint8Array(5 + actual);
    a[0] = flag;
    a[1] = <u8>(declared >>> 24); a[2] = <u8>(declared >>> 16); a[3] = <u8>(declared >>> 8); a[4] = <u8>declared;
  const f = new GrpcFrame();
  return parseGrpcFrame(a.dataStart, a.length, f);
}

describe("grpc frames", () => {
  it("finds the one message and names every other case", () => {
    expect(frame(0, 3, 3)).toBe(GRPC_OK);
    expect(frame(0, 0, 0)).toBe(GRPC_OK);
    expect(frame(1, 3, 3)).toBe(GRPC_COMPRESSED);
    expect(frame(0, 3, 9)).toBe(GRPC_MULTIPLE);
    expect(frame(0, 9, 3)).toBe(GRPC_TRUNCATED);
    expect(frame(0, -1, 3)).toBe(GRPC_TRUNCATED);
    expect(frame(2, 3, 3)).toBe(GRPC_BAD_FLAG);
    const f = new GrpcFrame();
    expect(parseGrpcFrame(0, 0, f)).toBe(GRPC_EMPTY);
  });
});

// source.id == 'spiffe://td/a' && 'admin' in jwt.claims.roles
function vmConsts(): CelBytes {
  return new CelBytes().u8(T_STRING).str("spiffe://td/a").u8(T_STRING).str("admin");
}

function vmSection(): Uint8Array {
  const code = new CelBytes()
    .u8(OP_VAR).u8(VAR_SOURCE_ID)
    .u8(OP_CONST).u16(0)
    .u8(OP_EQ)
    .u8(OP_JUMP_IF_FALSE).u16(16)
    .u8(OP_CONST).u16(1)
    .u8(OP_DYN_IN).u16(0)
    .u8(OP_AND)
    .u8(OP_RETURN);
  return section(1, dynPath(VAR_JWT_CLAIMS, ["roles"], true), 0, new CelBytes(), [programRecord(2, 2, vmConsts(), code)]);
}

const VM_SECTION = vmSection();

function evalWith(id: string | null, claims: string | null): CelVm {
  const set = decode(VM_SECTION);
  const arena = new CelArena(1024);
  const vm = new CelVm(set, arena);
  const act = new FixedActivation();
  act.programs = set;
  if (id != null) act.set(VAR_SOURCE_ID.toString(), id);
  if (claims != null) {
    const d = new DynResults(set, VAR_JWT_CLAIMS, arena);
    const doc = bytes(claims);
    d.extract(doc.dataStart, doc.length);
    act.claims = d;
  }
  vm.eval(0, act);
  return vm;
}

describe("the vm over an activation", () => {
  it("answers true, false, and an error that && does not absorb", () => {
    let vm = evalWith("spiffe://td/a", '{"roles":["dev","admin"]}');
    expect(vm.resultTag).toBe(T_BOOL);
    expect(vm.resultA).toBe(1);
    vm = evalWith("spiffe://td/a", '{"roles":["dev"]}');
    expect(vm.resultA).toBe(0);
    vm = evalWith("spiffe://td/b", '{"roles":[1,2}');
    expect(vm.resultTag).toBe(T_BOOL);
    expect(vm.resultA).toBe(0);
    vm = evalWith(null, '{"roles":["admin"]}');
    expect(vm.resultTag).toBe(E_NO_SUCH_ATTRIBUTE);
    expect(celErrorMessage(vm.resultTag, <usize>vm.resultA, vm.resultB)).toBe("no such attribute: 'source.id'");
    vm = evalWith("spiffe://td/a", '{"roles":[1,2}');
    expect(vm.resultTag).toBe(E_BODY);
    expect(celErrorMessage(vm.resultTag, <usize>vm.resultA, vm.resultB)).toBe("cannot read the request body: expected ',' or ']' in json array at byte 13");
  });

  it("records which variables a program reads", () => {
    const set = decode(VM_SECTION);
    expect(set.program(0).readsVariable(VAR_SOURCE_ID)).toBe(true);
    expect(set.readsVariable(VAR_JWT_CLAIMS)).toBe(true);
    expect(set.readsVariable(VAR_REQUEST_JSON)).toBe(false);
  });

  it("refuses a program whose jump lands inside an instruction", () => {
    const bad = new CelBytes().u8(OP_CONST).u16(0).u8(OP_JUMP_IF_FALSE).u16(7).u8(OP_CONST).u16(0).u8(OP_AND).u8(OP_RETURN);
    const b = section(0, new CelBytes(), 0, new CelBytes(), [programRecord(2, 2, vmConsts(), bad)]);
    expect(CelProgramSet.decode(b.dataStart, b.length, STANDARD_VAR_KINDS)).toBeNull();
    expect(celLoadError).toBe("program 0: jump into an instruction at 7");
  });
});
