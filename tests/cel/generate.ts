/**
 * Seeded generator of differential cases: a request scenario (variables bound to random strings, maps, JSON
 * documents and a protobuf message) and a well-typed CEL expression over the supported subset that reads it.
 * Independent of the engine under test: a case is plain data (expression, our VarInput list, the reference's
 * bindings), so the same generator drives the harness now and build/release.wasm in phase 2.
 *
 * Inputs avoid three documented differences between @bufbuild/cel and CEL as we implement it (docs/cel.md):
 * int()/uint() of strings the reference parses leniently (''/' 1'/'0x10'), double() of strings that are not
 * numbers (the reference returns NaN), and has() on a variable that is not bound (the reference says false).
 */
import type { DescMessage } from "@bufbuild/protobuf";
import type { VarInput } from "./vars.ts";

// --- randomness ---------------------------------------------------------------------------------------------

export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** mulberry32 */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** A shuffled copy (Fisher-Yates). */
  shuffle<T>(a: readonly T[]): T[] {
    const out = [...a];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  }
}

/** Per-case seed, so that one case can be regenerated from (seed, index). */
export function caseSeed(seed: number, index: number): number {
  let z = (seed ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

// --- pools --------------------------------------------------------------------------------------------------

// BMP characters below U+D800 and one astral character: UTF-16 order (the reference) equals code point
// order (CEL, us) on these.
const STRINGS = ["", "a", "b", "ab", "orders", "Orders", "prod", "staging", "x y", "é", "日本", "😀", "a😀b", "GET", "/api", "1", "-1", "12", "3.5", "t1", "spiffe://td/app/orders"];
/** Strings int() and uint() parse identically here and in the reference (no sign for uint, nothing lenient). */
const INT_STRINGS = ["0", "12", "-12", "007", "9223372036854775807", "-9223372036854775808", "9223372036854775808", "abc", "1.5", "1e3", "+7"];
const UINT_STRINGS = ["0", "12", "007", "18446744073709551615", "18446744073709551616", "abc", "1.5", "1e3"];
/** Strings double() parses identically (the reference returns NaN instead of an error for non-numbers). */
const DOUBLE_STRINGS = ["0", "1.5", "-0.25", "1e3", "12", ".5", "5.", "1e-7", "123456789012345678901234567890", "0.1", "-0", "1e400", "Infinity", "-Infinity", "2.2250738585072011e-308", "4.9e-324"];
const INTS = ["0", "1", "-1", "2", "7", "100", "-100", "3", "9223372036854775807", "-9223372036854775808", "4611686018427387904", "3037000500", "-3037000500"];
const UINTS = ["0u", "1u", "2u", "10u", "18446744073709551615u", "9223372036854775808u", "4294967296u"];
const DOUBLES = ["0.0", "1.5", "-2.5", "0.1", "1e308", "-1e308", "1e-300", "3.0", "2.0", "9007199254740993.0", "-0.0", "(0.0/0.0)", "(1.0/0.0)", "1e19", "-9.3e18", "9.223372036854775807e18"];
const ATTR_KEYS = ["app", "env", "ns", "sa", "team"];
const HEADER_KEYS = ["x-user", "content-type", "x-tenant", "authorization"];
const QUERY_KEYS = ["page", "q", "id"];
const JSON_KEYS = ["a", "b", "c", "id", "tenant", "items", "n", "s", "flag", "x-y", "é", "in"];
const CLAIM_KEYS = ["sub", "iss", "roles", "admin", "level", "tenant", "aud"];
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
const RESERVED = new Set(["in", "as", "break", "const", "continue", "else", "for", "function", "if", "import", "let", "loop", "package", "namespace", "return", "var", "void", "while", "true", "false", "null"]);

function celString(s: string, r: Rng): string {
  // Either quote style, with escapes the CEL parser decodes.
  const esc = (q: string) => s.replace(/\\/g, "\\\\").replace(new RegExp(q, "g"), `\\${q}`).replace(/\n/g, "\\n");
  return r.chance(0.5) ? `'${esc("'")}'` : `"${esc('"')}"`;
}

function selector(key: string, r: Rng): string {
  return IDENT.test(key) && !RESERVED.has(key) && r.chance(0.7) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

// --- JSON documents ---------------------------------------------------------------------------------------

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

// biome-ignore lint/correctness/noPrecisionLoss: 2^53 + 1 is here to be rounded, as JSON and CEL doubles round it
const NUMBERS = [0, 1, -1, 1.5, 2, 10, 1000, 0.1, 123456789012, 9007199254740993, -0, 1e-7, 3.14, 1e21, -2.5e-5, 5e-324, 1.7976931348623157e308];

function randomJson(r: Rng, depth: number): Json {
  const k = r.int(depth > 0 ? 8 : 5);
  switch (k) {
    case 0: return r.pick([...STRINGS, ...INT_STRINGS, ...DOUBLE_STRINGS]);
    case 1: return r.pick(NUMBERS);
    case 2: return r.chance(0.5);
    case 3: return null;
    case 4: return r.pick(STRINGS);
    case 5:
    case 6: {
      // No null members: the reference's has() and `in` treat a key whose value is null as absent
      // (@bufbuild/cel 0.6.1 CelMap.has uses `!= undefined`); nulls still occur inside arrays.
      const o: { [k: string]: Json } = {};
      for (let i = r.int(5); i > 0; i--) {
        const v = randomJson(r, depth - 1);
        o[r.pick(JSON_KEYS)] = v === null ? 0 : v;
      }
      return o;
    }
    default: {
      const a: Json[] = [];
      for (let i = r.int(5); i > 0; i--) a.push(r.chance(0.7) ? randomJson(r, 0) : randomJson(r, depth - 1));
      return a;
    }
  }
}

/** A number's JSON text in one of several equivalent spellings, to exercise the engine's number parser. */
function numberText(v: number, r: Rng): string {
  if (Object.is(v, -0)) return r.pick(["-0", "-0.0", "-0e5"]);
  // An integer literal beyond 2^53-1 is refused by the filter (readers differ on it, docs/cel.md "JSON bodies"):
  // the same double as a fraction.
  const plain = Number.isInteger(v) && !Number.isSafeInteger(v) && !/e/.test(JSON.stringify(v)) ? `${v}.0` : JSON.stringify(v);
  switch (r.int(5)) {
    case 0: return v.toExponential().replace("e+", r.chance(0.5) ? "e" : "E+");
    case 1: return Math.abs(v) >= 1e-6 && Math.abs(v) < 1e21 ? v.toPrecision(Math.min(100, 17 + r.int(30))) : plain;
    case 2: return Number.isInteger(v) && Math.abs(v) < 1e15 ? `${v}.000` : plain;
    default: return plain;
  }
}

/** JSON text with random whitespace, escapes and number spellings; JSON.parse of it is the reference value. */
function jsonText(v: Json, r: Rng): string {
  const ws = () => (r.chance(0.15) ? r.pick([" ", "\n", "\t", "  ", "\r\n"]) : "");
  const str = (s: string) => {
    let out = '"';
    for (const ch of s) {
      const cp = ch.codePointAt(0)!;
      if (ch === '"' || ch === "\\") out += `\\${ch}`;
      else if (cp < 0x20) out += `\\u${cp.toString(16).padStart(4, "0")}`;
      else if (r.chance(0.1)) {
        // \u escapes, as surrogate pairs for astral characters
        out += ch.split("").map((u) => `\\u${u.charCodeAt(0).toString(16).padStart(4, r.chance(0.5) ? "0" : "0")}`).join("");
      } else if (ch === "/" && r.chance(0.5)) out += "\\/";
      else out += ch;
    }
    return `${out}"`;
  };
  if (v === null) return "null";
  if (typeof v === "boolean") return String(v);
  if (typeof v === "number") return numberText(v, r);
  if (typeof v === "string") return str(v);
  if (Array.isArray(v)) return `[${ws()}${v.map((x) => `${ws()}${jsonText(x, r)}${ws()}`).join(",")}${ws()}]`;
  return `{${ws()}${Object.entries(v).map(([k, x]) => `${ws()}${str(k)}${ws()}:${ws()}${jsonText(x, r)}${ws()}`).join(",")}${ws()}}`;
}

const MISSING = Symbol("missing");

/** A path into `doc` (mostly existing), as CEL selectors, with the value it reaches. */
function jsonPath(doc: Json, r: Rng): { text: string; value: Json | typeof MISSING; last?: string; parentIsObject: boolean } {
  let cur: Json | typeof MISSING = doc;
  let text = "";
  let last: string | undefined;
  let parentIsObject = doc !== null && typeof doc === "object" && !Array.isArray(doc);
  const steps = 1 + r.int(3);
  for (let i = 0; i < steps; i++) {
    if (cur === MISSING || cur === null || typeof cur !== "object") {
      if (i > 0 && r.chance(0.7)) break;
    }
    parentIsObject = cur !== MISSING && cur !== null && typeof cur === "object" && !Array.isArray(cur);
    if (cur !== MISSING && Array.isArray(cur) && r.chance(0.8)) {
      const arr: Json[] = cur;
      const idx: number = r.chance(0.85) ? r.int(Math.max(1, arr.length)) : arr.length + r.int(3);
      text += `[${idx}]`;
      last = undefined;
      cur = idx < arr.length ? arr[idx] : MISSING;
      continue;
    }
    const obj: { [k: string]: Json } | undefined = parentIsObject ? (cur as { [k: string]: Json }) : undefined;
    const keys: string[] = obj ? Object.keys(obj) : [];
    const key: string = keys.length > 0 && r.chance(0.8) ? r.pick(keys) : r.pick(JSON_KEYS);
    text += selector(key, r);
    last = key;
    cur = obj && Object.hasOwn(obj, key) ? obj[key] : MISSING;
  }
  return { text, value: cur, last, parentIsObject };
}

// --- protobuf messages ------------------------------------------------------------------------------------

class Pb {
  bytes: number[] = [];
  varint(v: bigint) {
    let x = BigInt.asUintN(64, v);
    do {
      let b = Number(x & 0x7fn);
      x >>= 7n;
      if (x !== 0n) b |= 0x80;
      this.bytes.push(b);
    } while (x !== 0n);
  }
  tag(n: number, w: number) { this.varint(BigInt((n << 3) | w)); }
  fixed32(v: number) { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v >>> 0, true); this.bytes.push(...b); }
  fixed64(v: bigint) { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true); this.bytes.push(...b); }
  float(v: number) { const b = new Uint8Array(4); new DataView(b.buffer).setFloat32(0, v, true); this.bytes.push(...b); }
  double(v: number) { const b = new Uint8Array(8); new DataView(b.buffer).setFloat64(0, v, true); this.bytes.push(...b); }
  len(b: number[] | Uint8Array) { this.varint(BigInt(b.length)); this.bytes.push(...b); }
}

const I32S = [0n, 1n, -1n, 5n, 2147483647n, -2147483648n, 100n];
const I64S = [0n, 1n, -1n, 9223372036854775807n, -9223372036854775808n, 4294967296n];
const U32S = [0n, 1n, 4294967295n, 7n];
const U64S = [0n, 1n, 18446744073709551615n, 9223372036854775808n];
const FLOATS = [0, 0.1, -1.5, 3.4e38, 1e-45, -0];
const DOUBLE_VALUES = [0, 0.1, -2.5, 1e308, 5e-324, -0, 42];

function innerMessage(r: Rng, depth: number): number[] {
  const w = new Pb();
  const fields: (() => void)[] = [
    () => { w.tag(1, 2); w.len(new TextEncoder().encode(r.pick(STRINGS))); },
    () => { w.tag(2, 0); w.varint(r.pick(I64S)); },
  ];
  if (depth > 0) fields.push(() => { w.tag(3, 2); w.len(innerMessage(r, depth - 1)); });
  for (const f of r.shuffle(fields)) if (r.chance(0.6)) f();
  return w.bytes;
}

/**
 * A celtest.Everything message the filter reads (docs/cel.md: each singular field at most once, canonical
 * varints, no unknown fields), its fields in random order; the protobuf differential (tests/fuzz) covers the
 * messages it refuses.
 */
function everything(r: Rng): Uint8Array {
  const w = new Pb();
  const enc = new TextEncoder();
  const fields: (() => void)[] = [
    () => { w.tag(1, 2); w.len(enc.encode(r.pick(STRINGS))); },
    () => { w.tag(2, 2); w.len(enc.encode(r.pick(STRINGS))); },
    () => { w.tag(3, 0); w.varint(r.pick(I32S)); },
    () => { w.tag(4, 0); w.varint(r.pick(I64S)); },
    () => { w.tag(5, 0); w.varint(r.pick(U32S)); },
    () => { w.tag(6, 0); w.varint(r.pick(U64S)); },
    () => { const v = r.pick(I32S); w.tag(7, 0); w.varint(BigInt.asUintN(32, (v << 1n) ^ (v >> 31n))); },
    () => { const v = r.pick(I64S); w.tag(8, 0); w.varint(BigInt.asUintN(64, (v << 1n) ^ (v >> 63n))); },
    () => { w.tag(9, 5); w.fixed32(Number(r.pick(U32S))); },
    () => { w.tag(10, 1); w.fixed64(r.pick(U64S)); },
    () => { w.tag(11, 5); w.fixed32(Number(BigInt.asUintN(32, r.pick(I32S)))); },
    () => { w.tag(12, 1); w.fixed64(r.pick(I64S)); },
    () => { w.tag(13, 0); w.varint(BigInt(r.pick([0, 1, 1]))); },
    () => { w.tag(14, 5); w.float(r.pick(FLOATS)); },
    () => { w.tag(15, 1); w.double(r.pick(DOUBLE_VALUES)); },
    () => { w.tag(16, 0); w.varint(BigInt(r.pick([0, 1, 2, 7]))); },
    () => { w.tag(17, 2); w.len(innerMessage(r, 2)); },
    () => { w.tag(18, 2); w.len(enc.encode(r.pick(STRINGS))); },
    () => { w.tag(19, 0); w.varint(r.pick(I32S)); },
    // Fields no condition reads: the decoder checks them all the same.
    () => { for (let i = r.int(3); i >= 0; i--) { w.tag(20, 2); w.len(enc.encode("tag")); } },
    () => { w.tag(21, 2); w.len([1, 2, 3]); },
    () => { if (r.chance(0.5)) { w.tag(22, 2); w.len(enc.encode("a")); } else { w.tag(23, 0); w.varint(5n); } },
  ];
  for (const f of r.shuffle(fields)) if (r.chance(0.5)) f();
  return Uint8Array.from(w.bytes);
}

const PROTO_FIELDS: { path: string; type: "string" | "int" | "uint" | "bool" | "double" }[] = [
  { path: "appname", type: "string" }, { path: "resource_id", type: "string" }, { path: "i32", type: "int" },
  { path: "i64", type: "int" }, { path: "u32", type: "uint" }, { path: "u64", type: "uint" }, { path: "s32", type: "int" },
  { path: "s64", type: "int" }, { path: "f32", type: "uint" }, { path: "f64", type: "uint" }, { path: "sf32", type: "int" },
  { path: "sf64", type: "int" }, { path: "flag", type: "bool" }, { path: "ratio", type: "double" },
  { path: "score", type: "double" }, { path: "color", type: "int" }, { path: "inner.name", type: "string" },
  { path: "inner.count", type: "int" }, { path: "inner.child.name", type: "string" }, { path: "inner.child.count", type: "int" },
  { path: "nickname", type: "string" }, { path: "level", type: "int" },
];
const PROTO_HAS = ["appname", "i32", "u64", "flag", "ratio", "score", "color", "inner", "inner.child", "inner.name", "nickname", "level", "s64", "f32"];

// --- cases ------------------------------------------------------------------------------------------------

export interface ProtoContext {
  readonly method: string;
  readonly desc: DescMessage;
  /** Decodes message bytes for the reference (protobuf-es). */
  readonly decode: (bytes: Uint8Array) => unknown;
}

export interface DiffCase {
  readonly index: number;
  readonly expr: string;
  /** The expression's static type is not necessarily bool. */
  readonly anyType: boolean;
  readonly vars: readonly VarInput[];
  readonly bindings: Record<string, unknown>;
  /** Human-readable inputs for failure reports. */
  readonly inputs: Record<string, unknown>;
}

type T = "bool" | "int" | "uint" | "double" | "string" | "dyn";

class Scenario {
  readonly vars: VarInput[] = [];
  readonly bindings: Record<string, unknown> = {};
  readonly inputs: Record<string, unknown> = {};
  json: Json = {};
  claims: Json = {};
  /** A condition reads request.json or request.grpc.message, never both: one body kind per case. */
  readonly body: "json" | "grpc";

  constructor(readonly r: Rng, proto: ProtoContext) {
    const str = (id: number, name: string, value: string | undefined) => {
      if (value === undefined) {
        this.vars.push({ id, kind: "absent" });
        return;
      }
      this.vars.push({ id, kind: "string", value });
      this.bindings[name] = value;
      this.inputs[name] = value;
    };
    const map = (id: number, name: string, keys: readonly string[]) => {
      const entries: [string, string][] = [];
      for (const k of keys) if (r.chance(0.5)) entries.push([k, r.pick(STRINGS)]);
      this.vars.push({ id, kind: "map", entries });
      this.bindings[name] = new Map(entries);
      this.inputs[name] = Object.fromEntries(entries);
    };
    this.body = r.chance(0.5) ? "json" : "grpc";
    const peer = r.chance(0.85);
    const td = r.pick(["prod.example.com", "cluster.local", "td"]);
    str(0, "source.id", peer ? `spiffe://${td}/${r.pick(["app/orders/env/prod", "ns/shop/sa/orders", "app/é"])}` : undefined);
    str(1, "source.trust_domain", peer ? td : undefined);
    map(2, "source.attributes", ATTR_KEYS);
    str(3, "request.method", r.pick(["GET", "POST", "PUT", "DELETE", "get"]));
    str(4, "request.path", r.pick(["/", "/api/v1/items", "/orders/123", "/é/😀"]));
    str(5, "request.host", r.pick(["orders.example.com", "localhost:8080", ""]));
    map(6, "request.headers", HEADER_KEYS);
    map(7, "request.query", QUERY_KEYS);
    const mtls = r.chance(0.7);
    this.vars.push({ id: 8, kind: "bool", value: mtls });
    this.bindings["connection.mtls"] = mtls;
    this.inputs["connection.mtls"] = mtls;
    str(9, "connection.sni", r.chance(0.7) ? r.pick(["orders.example.com", "a"]) : undefined);
    // The reference answers has() on an unbound variable with false (CEL says error): documents are bound.
    this.json = r.chance(0.9) ? randomJson(r, 3) : r.chance(0.5) ? [] : r.pick(STRINGS);
    if (r.chance(0.85) && (this.json === null || typeof this.json !== "object" || Array.isArray(this.json))) this.json = { a: this.json ?? 0 };
    const jt = jsonText(this.json, r);
    this.vars.push({ id: 10, kind: "json", text: jt });
    this.bindings["request.json"] = JSON.parse(jt);
    this.inputs["request.json"] = jt;
    str(11, "request.grpc.service", "celtest.TestService");
    str(12, "request.grpc.method", "Fetch");
    const msg = everything(r);
    const framed = r.chance(0.5);
    const body = framed ? Uint8Array.from([0, (msg.length >>> 24) & 255, (msg.length >>> 16) & 255, (msg.length >>> 8) & 255, msg.length & 255, ...msg]) : msg;
    this.vars.push({ id: 13, kind: "proto", method: proto.method, framed, bytes: body });
    this.bindings["request.grpc.message"] = proto.decode(msg);
    this.inputs["request.grpc.message"] = Buffer.from(msg).toString("hex");
    const claims: { [k: string]: Json } = {};
    if (r.chance(0.9)) claims.sub = r.pick(STRINGS);
    if (r.chance(0.5)) claims.iss = r.pick(["https://issuer", "x"]);
    if (r.chance(0.7)) claims.roles = Array.from({ length: r.int(4) }, () => r.pick(["admin", "dev", "ops", "", 1, true]) as Json);
    if (r.chance(0.5)) claims.admin = r.chance(0.5);
    if (r.chance(0.5)) claims.level = r.pick(NUMBERS);
    if (r.chance(0.4)) claims.tenant = randomJson(r, 2) ?? 0;
    this.claims = claims;
    const ct = jsonText(claims, r);
    this.vars.push({ id: 14, kind: "json", text: ct });
    this.bindings["jwt.claims"] = JSON.parse(ct);
    this.inputs["jwt.claims"] = ct;
  }
}

class ExprGen {
  constructor(readonly r: Rng, readonly s: Scenario) {}

  /** A literal; `constant` excludes the computed NaN and infinity, which list literals cannot hold. */
  lit(t: Exclude<T, "dyn">, constant = false): string {
    const r = this.r;
    switch (t) {
      case "bool": return r.pick(["true", "false"]);
      case "int": return r.pick(INTS);
      case "uint": return r.pick(UINTS);
      case "double": return r.pick(constant ? DOUBLES.filter((d) => !d.startsWith("(")) : DOUBLES);
      case "string": return celString(r.pick(STRINGS), r);
    }
  }

  /** A path into request.json or jwt.claims, with the value it reaches (for conversion safety). */
  dynPath(): { text: string; value: Json | typeof MISSING } {
    if (this.s.body === "json" && this.r.chance(0.6)) {
      const p = jsonPath(this.s.json, this.r);
      return { text: `request.json${p.text}`, value: p.value };
    }
    const p = jsonPath(this.s.claims, this.r);
    return { text: `jwt.claims${p.text}`, value: p.value };
  }

  /** A dyn path whose value int()/uint()/double() converts the same way here and in the reference. */
  convertibleDyn(fn: "int" | "uint" | "double"): string | undefined {
    for (let i = 0; i < 4; i++) {
      const p = this.dynPath();
      const v = p.value;
      if (typeof v === "string") {
        const pool = fn === "int" ? INT_STRINGS : fn === "uint" ? UINT_STRINGS : DOUBLE_STRINGS;
        if (!pool.includes(v)) continue;
      }
      return p.text;
    }
    return undefined;
  }

  mapVar(): { name: string; keys: readonly string[] } {
    return this.r.pick([
      { name: "source.attributes", keys: ATTR_KEYS },
      { name: "request.headers", keys: HEADER_KEYS },
      { name: "request.query", keys: QUERY_KEYS },
    ]);
  }

  gen(t: T, d: number): string {
    const r = this.r;
    if (d <= 0 || r.chance(0.2)) return this.leaf(t);
    const x = (tt: T) => this.gen(tt, d - 1);
    const num = (): Exclude<T, "dyn" | "bool" | "string"> => r.pick(["int", "uint", "double"] as const);
    switch (t) {
      case "bool": {
        switch (r.int(14)) {
          case 0: return `!(${x("bool")})`;
          case 1: return `(${x("bool")}) && (${x("bool")})`;
          case 2: return `(${x("bool")}) || (${x("bool")})`;
          case 3: return `(${x("bool")}) ? (${x("bool")}) : (${x("bool")})`;
          case 4: {
            const tt = r.pick(["int", "uint", "double", "string", "bool"] as const);
            return `(${x(tt)}) ${r.pick(["==", "!=", "<", "<=", ">", ">="])} (${x(tt)})`;
          }
          case 5: return `(${x(num())}) ${r.pick(["<", "<=", ">", ">="])} (${x(num())})`;
          // Not dyn on both sides: two JSON containers do not compare (docs/cel.md).
          case 6: return `(${x("dyn")}) ${r.pick(["==", "!=", "<", "<=", ">", ">="])} (${x(r.pick(["int", "uint", "double", "string", "bool"] as const))})`;
          case 7: return `(${x("string")}).${r.pick(["startsWith", "endsWith", "contains"])}(${x("string")})`;
          case 8: {
            const tt = r.pick(["int", "uint", "double", "string"] as const);
            const items = Array.from({ length: r.int(4) }, () => this.lit(tt, true));
            return `(${x(tt)}) in [${items.join(", ")}]`;
          }
          case 9: {
            const items = Array.from({ length: 1 + r.int(4) }, () => this.lit(r.pick(["int", "uint", "double", "string", "bool"] as const), true));
            return `(${x("dyn")}) in [${items.join(", ")}]`;
          }
          case 10: {
            const m = this.mapVar();
            return `(${r.chance(0.7) ? celString(r.pick([...m.keys, "zz"]), r) : x("string")}) in ${m.name}`;
          }
          case 11: {
            const p = this.dynPath();
            return `(${x(r.pick(["string", "int", "double", "bool"] as const))}) in ${p.text}`;
          }
          case 12: return `dyn(${x(r.pick(["int", "uint", "double"] as const))}) == dyn(${x(r.pick(["int", "uint", "double"] as const))})`;
          default: return `(${x("dyn")}) ${r.pick(["&&", "||"])} (${x("bool")})`;
        }
      }
      case "int": {
        switch (r.int(9)) {
          case 0: case 1: return `(${x("int")}) ${r.pick(["+", "-", "*", "/", "%"])} (${x("int")})`;
          case 2: return `-(${x("int")})`;
          case 3: return r.chance(0.5) ? `size(${x("string")})` : `(${x("string")}).size()`;
          case 4: {
            const m = this.mapVar();
            return r.chance(0.5) ? `size(${m.name})` : `size(${this.dynPath().text})`;
          }
          case 5: {
            const k = r.int(4);
            if (k === 0) return `int(${x("uint")})`;
            if (k === 1) return `int(${x("double")})`;
            if (k === 2) return `int(${celString(r.pick(INT_STRINGS), r)})`;
            const p = this.convertibleDyn("int");
            return p ? `int(${p})` : `int(${x("uint")})`;
          }
          case 6: return `(${x("bool")}) ? (${x("int")}) : (${x("int")})`;
          case 7: return `[${Array.from({ length: 1 + r.int(3) }, () => this.lit("int", true)).join(", ")}][${x("int")}]`;
          default: return this.protoField("int") ?? this.lit("int");
        }
      }
      case "uint": {
        switch (r.int(6)) {
          case 0: case 1: {
            // @bufbuild/cel 0.6.1 checks uint quotients against the int range (safeInt in safeDivide):
            // divide by a literal of at least 2 so that every quotient fits.
            const op = r.pick(["+", "-", "*", "/", "%"]);
            return op === "/" ? `(${x("uint")}) / ${r.pick(["2u", "10u", "4294967296u"])}` : `(${x("uint")}) ${op} (${x("uint")})`;
          }
          case 2: {
            const k = r.int(4);
            if (k === 0) return `uint(${x("int")})`;
            if (k === 1) return `uint(${x("double")})`;
            if (k === 2) return `uint(${celString(r.pick(UINT_STRINGS), r)})`;
            const p = this.convertibleDyn("uint");
            return p ? `uint(${p})` : `uint(${x("int")})`;
          }
          case 3: return `(${x("bool")}) ? (${x("uint")}) : (${x("uint")})`;
          default: return this.protoField("uint") ?? this.lit("uint");
        }
      }
      case "double": {
        switch (r.int(7)) {
          case 0: case 1: return `(${x("double")}) ${r.pick(["+", "-", "*", "/"])} (${x("double")})`;
          case 2: return `-(${x("double")})`;
          case 3: {
            const k = r.int(4);
            if (k === 0) return `double(${x(r.pick(["int", "uint"] as const))})`;
            if (k === 1) return `double(${celString(r.pick(DOUBLE_STRINGS), r)})`;
            const p = this.convertibleDyn("double");
            return p ? `double(${p})` : `double(${x("int")})`;
          }
          case 4: return `(${x("bool")}) ? (${x("double")}) : (${x("double")})`;
          default: return this.protoField("double") ?? this.lit("double");
        }
      }
      case "string": {
        switch (r.int(6)) {
          case 0: case 1: return `(${x("string")}) + (${x("string")})`;
          case 2: return `string(${x(r.pick(["int", "uint", "bool", "string"] as const))})`;
          case 3: return `(${x("bool")}) ? (${x("string")}) : (${x("string")})`;
          case 4: return this.protoField("string") ?? this.leaf("string");
          default: return this.leaf("string");
        }
      }
      case "dyn": {
        switch (r.int(5)) {
          case 0: return `dyn(${x(r.pick(["int", "uint", "double", "string", "bool"] as const))})`;
          case 1: {
            const op = r.pick(["+", "-", "*", "/", "%"]);
            const rt = op === "+" ? r.pick(["int", "double", "string", "dyn"] as const) : op === "%" ? r.pick(["int", "uint", "dyn"] as const) : r.pick(["int", "double", "dyn"] as const);
            // dyn op int is statically int: wrap it to keep the expression dyn.
            return `dyn((${x("dyn")}) ${op} (${x(rt)}))`;
          }
          default: return this.dynPath().text;
        }
      }
    }
  }

  /** has(request.json<prefix>.<key>), the prefix a path into the document (possibly empty). */
  hasJson(): string {
    const r = this.r;
    let prefix = "";
    let at: Json | typeof MISSING = this.s.json;
    if (r.chance(0.6)) {
      const p = jsonPath(this.s.json, r);
      prefix = p.text;
      at = p.value;
    }
    const own = at !== MISSING && at !== null && typeof at === "object" && !Array.isArray(at) ? Object.keys(at) : [];
    const keys = [...own, ...JSON_KEYS].filter((k) => IDENT.test(k) && !RESERVED.has(k));
    const key = own.length > 0 && r.chance(0.6) ? (keys.find((k) => own.includes(k)) ?? r.pick(keys)) : r.pick(keys);
    return `has(request.json${prefix}.${key})`;
  }

  protoField(t: "int" | "uint" | "double" | "string" | "bool"): string | undefined {
    if (this.s.body !== "grpc") return undefined;
    const fs = PROTO_FIELDS.filter((f) => f.type === t);
    return fs.length > 0 ? `request.grpc.message.${this.r.pick(fs).path}` : undefined;
  }

  leaf(t: T): string {
    const r = this.r;
    switch (t) {
      case "bool": {
        switch (r.int(8)) {
          case 0: return "connection.mtls";
          case 1: {
            // has() takes a field selection, so only identifier keys.
            const m = this.mapVar();
            return `has(${m.name}.${r.pick([...m.keys.filter((k) => IDENT.test(k)), "zz"])})`;
          }
          case 2: return this.s.body === "json" ? this.hasJson() : `has(jwt.claims.${r.pick(CLAIM_KEYS)})`;
          case 3: return `has(jwt.claims.${r.pick(CLAIM_KEYS)})`;
          case 4: return this.s.body === "grpc" ? `has(request.grpc.message.${r.pick(PROTO_HAS)})` : this.hasJson();
          case 5: return this.protoField("bool") ?? this.lit("bool");
          case 6: return `${this.dynPath().text} ${r.pick(["==", "!="])} ${this.lit(r.pick(["int", "double", "string", "bool"] as const))}`;
          default: return this.lit("bool");
        }
      }
      case "string": {
        switch (r.int(7)) {
          case 0: return r.pick(["source.id", "source.trust_domain", "request.method", "request.path", "request.host", "connection.sni", "request.grpc.service", "request.grpc.method"]);
          case 1: case 2: {
            const m = this.mapVar();
            const k = r.pick([...m.keys, "zz"]);
            return `${m.name}${selector(k, r)}`;
          }
          case 3: return this.protoField("string") ?? this.lit("string");
          default: return this.lit("string");
        }
      }
      case "dyn":
        return this.dynPath().text;
      default:
        return r.chance(0.3) ? (this.protoField(t) ?? this.lit(t)) : this.lit(t);
    }
  }
}

/** Case `index` of the run seeded with `seed`. */
export function generateCase(seed: number, index: number, proto: ProtoContext): DiffCase {
  const r = new Rng(caseSeed(seed, index));
  const s = new Scenario(r, proto);
  const g = new ExprGen(r, s);
  const anyType = r.chance(0.15);
  const depth = 1 + r.int(4);
  const t: T = anyType ? r.pick(["int", "uint", "double", "string", "dyn"] as const) : "bool";
  let expr = g.gen(t, depth);
  if (expr.length > 600) expr = g.gen(t, 1);
  return { index, expr, anyType, vars: s.vars, bindings: s.bindings, inputs: s.inputs };
}
