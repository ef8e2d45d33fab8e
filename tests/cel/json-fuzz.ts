/**
 * Seeded differential fuzzer for JSON request bodies: build/release.wasm in the TypeScript proxy-wasm host (as
 * `spiffe-authz check` runs it) against the readers of json-readers.ts (body-parser's actual decoding, JSON.parse,
 * and a model of the other mainstream readers).
 *
 * One table: for each probe (a value a condition reads: `request.json.user`, `size(request.json.o)`, ...) one
 * ALLOW rule per candidate value, `<probe> == <candidate>`, selected by the request path `/p<probe>`. The rule that
 * allows names the value the filter read; a plain default deny says it read something else (or nothing); a
 * `default:<cause>` deny says it refused the body. Generated requests vary the content-type (JSON or not,
 * charset parameters, malformed and repeated values), the content-encoding (and compress the body to match), the
 * charset the body is written in (UTF-7 bodies that read one way as UTF-8 and another as UTF-7, UTF-16), byte-order
 * marks, invalid UTF-8, escapes (\u0000, lone and paired surrogates), repeated keys, number spellings (2^53+1,
 * 1e400, -0), whitespace, nesting and trailing bytes.
 *
 * Invariants (a failure is a `Disagreement`):
 * - allowed by candidate c: JSON.parse of the bytes, the other-reader model and body-parser (strict and not) each
 *   read c at the probe, or refuse the request; body-parser never leaves the body unparsed;
 * - a plain default deny: no reader reads a candidate there, and JSON.parse reads the document;
 * - a refusal names the cause docs/cel.md gives for the request (headers first: media type, charset,
 *   content-encoding; then byte-order mark or invalid UTF-8, syntax or depth, ambiguity) and the request has it;
 * - no trap.
 */
import { isDeepStrictEqual } from "node:util";
import { brotliCompressSync, deflateSync, gzipSync } from "node:zlib";
import bodyParser from "body-parser";
import iconv from "iconv-lite";
import { stringify } from "yaml";
import type { RequestHandler } from "express";
import { compileTexts } from "../../src/compiler/index.ts";
import { ProxyWasmHost } from "../../src/host/index.ts";
import type { Pair } from "../../src/host/pairs.ts";
import { caseSeed, Rng } from "./generate.ts";
import {
  anyHazard, fromPlain, identityEncoding, JSON_PARSE_READER, mediaTypeModel, OTHER_READER, readAs, refRead, runBodyParser,
  type AppResult, type JValue, type RefResult,
} from "./json-readers.ts";

// --- probes and candidates ---------------------------------------------------------------------------------

type Scalar = null | boolean | number | string;

interface Probe {
  expr: string;
  /** where the value is, from the document root */
  path: readonly (string | number)[];
  kind: "value" | "size" | "in";
  cands: readonly Scalar[];
}

const STRINGS: readonly string[] = ["billing", "orders", "admin", "", "é", "😀", "bill\u0000ing", "\ufffd", 'a"b\\c', "x/y", "ADMIN", "orders\n"];
const NUMBERS: readonly number[] = [0, 1, -1, 0.5, 100, 9007199254740991, 9007199254740992, 1e21, 1.7976931348623157e308, 5e-324, 0.1];
const OTHERS: readonly Scalar[] = [true, false, null];

export const PROBES: readonly Probe[] = [
  { expr: "request.json.user", path: ["user"], kind: "value", cands: [...STRINGS, 1, 0, ...OTHERS] },
  { expr: "request.json.ctx.tenant", path: ["ctx", "tenant"], kind: "value", cands: STRINGS },
  { expr: "request.json.items[1]", path: ["items", 1], kind: "value", cands: [...STRINGS, ...NUMBERS] },
  { expr: "request.json.n", path: ["n"], kind: "value", cands: NUMBERS },
  { expr: "request.json", path: [], kind: "value", cands: [...STRINGS, ...NUMBERS, ...OTHERS] },
  { expr: "size(request.json.o)", path: ["o"], kind: "size", cands: [0, 1, 2, 3, 4, 5, 6] },
  { expr: "'admin' in request.json.roles", path: ["roles"], kind: "in", cands: [true, false] },
];

/** A CEL literal for a candidate. */
function celLiteral(v: Scalar, kind: Probe["kind"]): string {
  if (v === null) return "null";
  if (typeof v === "boolean") return String(v);
  if (typeof v === "number") {
    if (kind === "size") return String(v);
    const s = String(v);
    return /[.e]/.test(s) ? s : `${s}.0`;
  }
  let out = '"';
  for (const ch of v) {
    const cp = ch.codePointAt(0)!;
    if (cp >= 0x20 && cp < 0x7f && ch !== '"' && ch !== "\\") out += ch;
    else if (cp < 0x10000) out += `\\u${cp.toString(16).padStart(4, "0")}`;
    else out += `\\U${cp.toString(16).padStart(8, "0")}`;
  }
  return `${out}"`;
}

/** The policy whose rule `p<j>c<k>` allows `/p<j>` when probe j reads candidate k. */
export function fuzzPolicyYaml(): string {
  const rules = PROBES.flatMap((p, j) => p.cands.map((c, k) => ({
    id: `p${j}c${k}`,
    to: [{ paths: [`/p${j}`] }],
    condition: `(${p.expr}) == ${celLiteral(c, p.kind)}`,
  })));
  return stringify({ apiVersion: "spiffe-authz.dev/v1", kind: "AuthzPolicy", metadata: { name: "json-fuzz" }, spec: { rules } });
}

/** The most body bytes the table reads (the policy's default spec.body.maxBytes). */
export const MAX_BODY = 65536;

// --- the value a reader reads at a probe ---------------------------------------------------------------------

const MISSING = Symbol("missing");

function at(v: JValue, path: readonly (string | number)[]): JValue | typeof MISSING {
  let cur: JValue = v;
  for (const seg of path) {
    if (typeof seg === "number") {
      if (!Array.isArray(cur) || seg >= cur.length) return MISSING;
      cur = cur[seg];
    } else {
      if (!(cur instanceof Map) || !cur.has(seg)) return MISSING;
      cur = cur.get(seg)!;
    }
  }
  return cur;
}

/** The probe's value in one reader's document: a scalar, or MISSING when the condition cannot produce one. */
function probeValue(doc: JValue, p: Probe): JValue | typeof MISSING {
  const v = at(doc, p.path);
  if (v === MISSING) return MISSING;
  if (p.kind === "size") {
    if (Array.isArray(v)) return v.length;
    if (v instanceof Map) return v.size;
    if (typeof v === "string") return [...v].length;
    return MISSING;
  }
  if (p.kind === "in") {
    if (Array.isArray(v)) return v.some((x) => x === "admin");
    if (v instanceof Map) return v.has("admin");
    return MISSING;
  }
  return v;
}

function sameScalar(v: JValue | typeof MISSING, c: Scalar): boolean {
  if (v === MISSING) return false;
  if (typeof c === "number" && typeof v === "bigint") return Number.isInteger(c) && BigInt(c) === v;
  return v === c;
}

function show(v: JValue | typeof MISSING): string {
  if (v === MISSING) return "<missing>";
  if (typeof v === "bigint") return `${v}n`;
  if (v instanceof Map) return `{${[...v.keys()].map((k) => JSON.stringify(k)).join(",")}}`;
  if (Array.isArray(v)) return `[${v.length} items]`;
  return JSON.stringify(v) ?? String(v);
}

// --- documents ------------------------------------------------------------------------------------------------

/** A string as written: its value, or the exact bytes between the quotes. */
interface GStr {
  v: string;
  raw?: Uint8Array;
}
type GNode =
  | { t: "obj"; e: [GStr, GNode][] }
  | { t: "arr"; a: GNode[] }
  | { t: "str"; s: GStr }
  | { t: "num"; text: string }
  | { t: "lit"; text: "true" | "false" | "null" }
  | { t: "nest"; depth: number; inner: GNode };

const utf8 = new TextEncoder();
const s = (v: string): GStr => ({ v });
const str = (v: string): GNode => ({ t: "str", s: s(v) });

interface Style {
  /** chance of a \u escape for a plain character */
  escape: number;
  /** whitespace outside RFC 8259's four (form feed, NBSP, U+2028, a BOM, NUL) */
  badWhitespace: boolean;
  /** a lone surrogate written as its three CESU-8 bytes (invalid UTF-8) instead of an escape */
  cesu: number;
}

class Writer {
  readonly bytes: number[] = [];
  constructor(private readonly r: Rng, private readonly style: Style) {}

  ascii(t: string): void {
    for (let i = 0; i < t.length; i++) this.bytes.push(t.charCodeAt(i));
  }

  ws(): void {
    const r = this.r;
    if (this.style.badWhitespace && r.chance(0.05)) {
      this.bytes.push(...r.pick([[0x0c], [0x0b], [0xc2, 0xa0], [0xe2, 0x80, 0xa8], [0xef, 0xbb, 0xbf], [0x00]]));
      return;
    }
    if (r.chance(0.15)) this.ascii(r.pick([" ", "\n", "\t", "\r\n", "  "]));
  }

  escapeUnit(u: number): void {
    const hex = u.toString(16).padStart(4, "0");
    this.ascii(`\\u${this.r.chance(0.5) ? hex : hex.toUpperCase()}`);
  }

  string(g: GStr): void {
    this.bytes.push(0x22);
    if (g.raw !== undefined) {
      this.bytes.push(...g.raw);
    } else {
      const v = g.v;
      const r = this.r;
      for (let i = 0; i < v.length; i++) {
        const c = v.charCodeAt(i);
        const paired = c >= 0xd800 && c <= 0xdbff && i + 1 < v.length && v.charCodeAt(i + 1) >= 0xdc00 && v.charCodeAt(i + 1) <= 0xdfff;
        if (c >= 0xd800 && c <= 0xdfff && !paired) {
          if (r.chance(this.style.cesu)) this.bytes.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
          else this.escapeUnit(c);
          continue;
        }
        const cp = paired ? v.codePointAt(i)! : c;
        if (paired) i++;
        const short: Record<number, string> = { 0x22: '\\"', 0x5c: "\\\\", 0x08: "\\b", 0x0c: "\\f", 0x0a: "\\n", 0x0d: "\\r", 0x09: "\\t" };
        if (cp in short && r.chance(0.8)) this.ascii(short[cp]);
        else if (cp < 0x20 || cp === 0x22 || cp === 0x5c || r.chance(this.style.escape)) {
          if (cp >= 0x10000) {
            const x = cp - 0x10000;
            this.escapeUnit(0xd800 + (x >> 10));
            this.escapeUnit(0xdc00 + (x & 0x3ff));
          } else {
            this.escapeUnit(cp);
          }
        } else if (cp === 0x2f && r.chance(0.3)) this.ascii("\\/");
        else this.bytes.push(...utf8.encode(String.fromCodePoint(cp)));
      }
    }
    this.bytes.push(0x22);
  }

  node(n: GNode): void {
    switch (n.t) {
      case "str": this.string(n.s); return;
      case "num": this.ascii(n.text); return;
      case "lit": this.ascii(n.text); return;
      case "nest":
        for (let i = 0; i < n.depth; i++) this.ascii("[");
        this.node(n.inner);
        for (let i = 0; i < n.depth; i++) this.ascii("]");
        return;
      case "arr":
        this.ascii("[");
        this.ws();
        n.a.forEach((x, i) => {
          if (i > 0) this.ascii(",");
          this.ws();
          this.node(x);
          this.ws();
        });
        this.ascii("]");
        return;
      case "obj":
        this.ascii("{");
        this.ws();
        n.e.forEach(([k, x], i) => {
          if (i > 0) this.ascii(",");
          this.ws();
          this.string(k);
          this.ws();
          this.ascii(":");
          this.ws();
          this.node(x);
          this.ws();
        });
        this.ascii("}");
        return;
    }
  }
}

/** Spellings JSON.parse reads as exactly `v`. */
function spellings(v: number): string[] {
  const out = new Set<string>([JSON.stringify(v), v.toExponential(), v.toExponential().replace("e+", "E")]);
  if (Number.isInteger(v) && Math.abs(v) < 1e21) out.add(`${BigInt(v)}.0`).add(`${BigInt(v)}e0`).add(`${BigInt(v)}0e-1`);
  if (v !== 0 && Math.abs(v) < 1e21 && Math.abs(v) > 1e-6) out.add(v.toPrecision(21));
  return [...out].filter((t) => /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/.test(t) && Number(t) === v);
}

/** Numbers readers read differently, and spellings of the candidates. */
const NEAR_NUMBERS = ["9007199254740992", "9007199254740993", "-9007199254740993", "12345678901234567890", "1e400", "-1e400",
  "1.7976931348623159e308", "1e-400", "-0", "-0.0", "2.5e-324", "9007199254740993.0", "0.30000000000000004", "100.0000000000000001"];
/** Strings readers read differently, or that look like candidates. */
const NEAR_STRINGS = ["bill\ud800ing", "\ud800", "\udc00", "\ud83d", "\ude00x", "admin\u0000", "Admin", "ad\u00admin", "\ufffd\ufffd",
  "orders\u2028", "\u0000", "bill\udbff\udfffing"];

function scalarNode(v: Scalar, r: Rng): GNode {
  if (v === null) return { t: "lit", text: "null" };
  if (typeof v === "boolean") return { t: "lit", text: v ? "true" : "false" };
  if (typeof v === "number") return { t: "num", text: r.pick(spellings(v)) };
  return str(v);
}

function noise(r: Rng, depth: number, hazards: boolean): GNode {
  switch (r.int(depth > 0 ? 8 : 6)) {
    case 0: return str(r.pick([...STRINGS, "x", "tenant", "user"]));
    case 1: return { t: "num", text: r.pick(["1", "2.5", "-3", "1e3", "0"]) };
    case 2: return { t: "lit", text: r.pick(["true", "false", "null"] as const) };
    case 3: return hazards ? str(r.pick(NEAR_STRINGS)) : str("y");
    case 4: return hazards ? { t: "num", text: r.pick(NEAR_NUMBERS) } : { t: "num", text: "7" };
    case 5: return r.chance(0.5) ? { t: "arr", a: [] } : { t: "obj", e: [] };
    case 6: {
      const e: [GStr, GNode][] = [];
      for (let i = r.int(4); i > 0; i--) e.push([s(r.pick(["a", "b", "user", "n", "ctx", "k", "é"])), noise(r, depth - 1, hazards)]);
      return { t: "obj", e };
    }
    default: {
      const a: GNode[] = [];
      for (let i = r.int(4); i > 0; i--) a.push(noise(r, depth - 1, hazards));
      return { t: "arr", a };
    }
  }
}

/** A value for a `value` probe: a candidate, a near miss, or noise. */
function probeNode(p: Probe, r: Rng, tags: string[]): GNode {
  const x = r.next();
  if (x < 0.55) return scalarNode(r.pick(p.cands), r);
  if (x < 0.85) {
    tags.push("near-miss");
    const numeric = p.cands.every((c) => typeof c === "number");
    if (numeric || r.chance(0.3)) return { t: "num", text: r.pick(NEAR_NUMBERS) };
    if (r.chance(0.25)) {
      // A candidate with invalid UTF-8 inside: decoders substitute U+FFFD.
      tags.push("invalid-utf8");
      const c = utf8.encode(r.pick(STRINGS.filter((t) => !/["\\\u0000-\u001f]/.test(t))));
      const bad = r.pick([[0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x80], [0xff], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xc3]]);
      const cut = r.int(c.length + 1);
      return { t: "str", s: { v: "", raw: Uint8Array.from([...c.subarray(0, cut), ...bad, ...c.subarray(cut)]) } };
    }
    return str(r.pick(NEAR_STRINGS));
  }
  tags.push("noise");
  return noise(r, 2, r.chance(0.3));
}

/** The members of `o` for the size probe: distinct keys, or repeated ones. */
function sizeNode(r: Rng, tags: string[]): GNode {
  if (r.chance(0.2)) {
    const a: GNode[] = [];
    for (let i = r.int(7); i > 0; i--) a.push(noise(r, 0, false));
    return { t: "arr", a };
  }
  const keys = ["a", "b", "c", "d", "e", "f"];
  const e: [GStr, GNode][] = [];
  for (let i = r.int(6); i > 0; i--) e.push([s(keys[e.length]), noise(r, 1, false)]);
  if (e.length > 0 && r.chance(0.3)) {
    tags.push("dup-in-object");
    e.splice(r.int(e.length + 1), 0, [s(r.pick(e)[0].v), noise(r, 0, false)]);
  }
  return { t: "obj", e };
}

function rolesNode(r: Rng, tags: string[]): GNode {
  const pool = ["admin", "user", "Admin", "adm\ud800in", "admin\u0000", "admin ", "\ufffd"];
  if (r.chance(0.25)) {
    const e: [GStr, GNode][] = [];
    for (let i = r.int(4); i > 0; i--) e.push([s(r.pick(pool)), { t: "lit", text: "true" }]);
    if (e.length > 0 && r.chance(0.3)) {
      tags.push("dup-in-object");
      e.push([s(e[0][0].v), { t: "lit", text: "false" }]);
    }
    return { t: "obj", e };
  }
  const a: GNode[] = [];
  for (let i = r.int(4); i > 0; i--) a.push(r.chance(0.8) ? str(r.pick(pool)) : noise(r, 0, r.chance(0.3)));
  return { t: "arr", a };
}

/** The document for probe `j`, with the generator's choices in `tags`. */
function documentFor(j: number, r: Rng, tags: string[]): GNode {
  const p = PROBES[j];
  if (p.path.length === 0) {
    if (r.chance(0.75)) return probeNode(p, r, tags);
    tags.push("container-root");
    return noise(r, 2, false);
  }
  const root: [GStr, GNode][] = [];
  const hazards = r.chance(0.2);
  for (let i = r.int(3); i > 0; i--) root.push([s(r.pick(["a", "b", "meta", "é", "ctx2"])), noise(r, 2, hazards)]);
  if (hazards) tags.push("hazards-elsewhere");
  // The probe's own structure.
  let valueOwner: [GStr, GNode][] = root;
  let key = p.path[p.path.length - 1];
  let entry: [GStr, GNode];
  if (p.kind === "size") entry = [s("o"), sizeNode(r, tags)];
  else if (p.kind === "in") entry = [s("roles"), rolesNode(r, tags)];
  else entry = [s(String(key)), probeNode(p, r, tags)];
  if (p.path.length === 2 && typeof p.path[1] === "string") {
    // ctx.tenant
    const inner: [GStr, GNode][] = [entry];
    for (let i = r.int(3); i > 0; i--) inner.splice(r.int(inner.length + 1), 0, [s(r.pick(["x", "id", "Tenant"])), noise(r, 1, hazards)]);
    valueOwner = inner;
    root.push([s("ctx"), { t: "obj", e: inner }]);
  } else if (p.path.length === 2) {
    // items[1]
    const a: GNode[] = [noise(r, 1, hazards), entry[1]];
    if (r.chance(0.1)) {
      tags.push("short-array");
      a.pop();
    }
    for (let i = r.int(3); i > 0; i--) a.push(noise(r, 1, hazards));
    root.push([s("items"), { t: "arr", a }]);
    key = "items";
  } else {
    root.push(entry);
  }
  // Repeated keys: the probe's key, an ancestor, or a key nobody reads.
  if (r.chance(0.25)) {
    const where = r.int(3);
    if (where === 0 && p.path.length !== 2) {
      tags.push("dup-probe-key");
      const other = p.kind === "value" ? scalarNode(r.pick(p.cands), r) : p.kind === "size" ? sizeNode(r, tags) : rolesNode(r, tags);
      valueOwner.splice(r.chance(0.5) ? 0 : valueOwner.length, 0, [s(valueOwner === root ? String(entry[0].v) : String(key)), other]);
    } else if (where === 1 && p.path.length === 2) {
      tags.push("dup-ancestor");
      const name = String(p.path[0]);
      const other = typeof p.path[1] === "string"
        ? { t: "obj" as const, e: [[s("tenant"), scalarNode(r.pick(p.cands), r)] as [GStr, GNode]] }
        : { t: "arr" as const, a: [noise(r, 0, false), scalarNode(r.pick(p.cands), r)] };
      root.splice(r.chance(0.5) ? 0 : root.length, 0, [s(name), other]);
    } else {
      tags.push("dup-unread-key");
      root.push([s("zz"), noise(r, 0, false)], [s("zz"), noise(r, 0, false)]);
    }
  }
  // body-parser honours charset=utf-7: a string after the probe that reads as another entry in UTF-7.
  if (p.path.length === 1 && p.kind === "value" && r.chance(0.1)) {
    tags.push("utf7-dual");
    const c = r.pick(p.cands);
    const payload = iconv.encode(`",${JSON.stringify(p.path[0])}:${JSON.stringify(c)},"z":"`, "utf7");
    root.push([s("x"), { t: "str", s: { v: "", raw: Uint8Array.from(payload) } }]);
  }
  if (r.chance(0.03)) {
    tags.push("deep");
    root.push([s("deep"), { t: "nest", depth: 500 + r.int(25), inner: { t: "lit", text: "null" } }]);
  }
  // Shuffle the root's entries (the probe's relative order to its duplicates matters).
  for (let i = root.length - 1; i > 0; i--) {
    if (!r.chance(0.3)) continue;
    const k = r.int(i + 1);
    [root[i], root[k]] = [root[k], root[i]];
  }
  return { t: "obj", e: root };
}

// --- requests ---------------------------------------------------------------------------------------------------

export interface JsonFuzzCase {
  index: number;
  probe: number;
  /** content-type lines as the client sends them (Envoy joins several with ",") */
  contentType: string[];
  contentEncoding: string[];
  body: Uint8Array;
  tags: string[];
}

const JSON_TYPES = ["application/json", "application/json", "application/json", "Application/JSON", "application/vnd.api+json",
  "application/merge-patch+json", "application/+json", "application/x*+json", "application/json+json", "application/problem+JSON"];
const OTHER_TYPES = ["text/plain", "text/json", "application/x-json", "application/jsonp", "application/json5", "*/*",
  "application/octet-stream", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "json"];
const GOOD_CHARSETS = ["utf-8", "UTF-8", '"utf-8"', "Utf-8", '"UTF-8"'];
const BAD_CHARSETS = ["utf-7", "UTF-7", '"utf-7"', "utf-16", "utf-16le", "utf-16be", "utf-32", "utf8", "latin1", "iso-8859-1",
  "us-ascii", "windows-1252", "utf-7-imap", "x-unknown", "utf-8 ", '"utf-8\\"'];
/** Parameter spellings: well-formed and not. */
const PARAM_FORMS = ["; charset=%", ";charset=%", " ; charset=%", "; Charset=%", "; CHARSET=%", "; charset =%", "; charset= %",
  ";", "; charset", '; charset="%', "\t;charset=%", '; x="a;charset=%"', '; x="a;charset=%', "; foo=bar; charset=%",
  "; charset=utf-8; charset=%", "; charset=%; charset=utf-8", ";; charset=%", "; charset=%,application/json"];

function contentTypeFor(r: Rng, tags: string[]): string[] {
  const x = r.next();
  if (x < 0.65) {
    // What clients send: a JSON media type, perhaps with charset=utf-8.
    const base = r.pick(["application/json", "application/json", "application/json", "Application/JSON", "application/vnd.api+json", "application/merge-patch+json"]);
    return [r.chance(0.6) ? base : `${base}${r.pick(["; ", ";"])}charset=${r.pick(GOOD_CHARSETS)}`];
  }
  tags.push("content-type-variant");
  if (x < 0.67) {
    tags.push("no-content-type");
    return [];
  }
  const base = r.chance(0.92) ? r.pick(JSON_TYPES) : r.pick(OTHER_TYPES);
  let ct = base;
  const y = r.next();
  if (y < 0.45) {
    // no parameters
  } else if (y < 0.65) {
    ct += `; charset=${r.pick(GOOD_CHARSETS)}`;
  } else if (y < 0.85) {
    ct += `; charset=${r.pick(BAD_CHARSETS)}`;
  } else {
    ct += r.pick(PARAM_FORMS).replace("%", r.chance(0.5) ? r.pick(GOOD_CHARSETS) : r.pick(BAD_CHARSETS));
  }
  if (r.chance(0.05)) ct += r.pick([" ", "  "]) ;
  const lines = [ct];
  if (r.chance(0.05)) {
    tags.push("repeated-content-type");
    lines.push(r.pick(["application/json", "text/plain", "application/json; charset=utf-7", ct]));
  }
  // Envoy trims whitespace around a header value.
  return lines.map((l) => l.replace(/^[ \t]+|[ \t]+$/g, ""));
}

function charsetOf(ct: string | undefined): string | undefined {
  // What body-parser reads (content-type 2.x: the first charset parameter).
  const m = ct === undefined ? null : /;\s*charset\s*=\s*"?([^";,\s]+)/i.exec(ct);
  return m?.[1].toLowerCase();
}

const fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function decodeUtf8(bytes: Uint8Array): string | null {
  try {
    return fatal.decode(bytes);
  } catch {
    return null;
  }
}

/** Case `index` of the run with `seed`: the same inputs every time. */
export function generateCase(seed: number, index: number): JsonFuzzCase {
  const r = new Rng(caseSeed(seed, index));
  const tags: string[] = [];
  const probe = r.int(PROBES.length);
  const style: Style = { escape: r.chance(0.3) ? 0.3 : 0.02, badWhitespace: r.chance(0.02), cesu: 0.1 };
  const w = new Writer(r, style);
  if (style.badWhitespace) tags.push("bad-whitespace");
  w.ws();
  w.node(documentFor(probe, r, tags));
  w.ws();
  let body = Uint8Array.from(w.bytes);
  if (r.chance(0.04)) {
    tags.push("bom");
    body = Uint8Array.from([...(r.chance(0.8) ? [0xef, 0xbb, 0xbf] : [0xff, 0xfe]), ...body]);
  }
  if (r.chance(0.03)) {
    tags.push("trailing");
    body = Uint8Array.from([...body, ...utf8.encode(r.pick([" x", "}", "{}", "\u0000", "\n\n", "]", ",", "/*c*/", "\ufeff"]))]);
  }
  if (r.chance(0.06)) {
    tags.push("mutated");
    const m = [...body];
    for (let e = 1 + r.int(3); e > 0 && m.length > 0; e--) {
      const i = r.int(m.length);
      const k = r.int(3);
      if (k === 0) m[i] = r.chance(0.5) ? r.pick([0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x75, 0x80, 0xff, 0x2b, 0x2d]) : r.int(256);
      else if (k === 1) m.splice(i, 1);
      else m.splice(i, 0, ...m.slice(i, i + 1 + r.int(6)));
    }
    body = Uint8Array.from(m);
  }
  let contentType = contentTypeFor(r, tags);
  // The reproduction: a body that reads one way as UTF-8 and another as UTF-7, declared UTF-7.
  const dual = tags.includes("utf7-dual") && r.chance(0.6);
  if (dual) contentType = [r.pick(["application/json; charset=utf-7", "application/json;charset=UTF-7", 'application/json; charset="utf-7"'])];
  // Write the body in the charset body-parser will decode it with, often.
  const cs = charsetOf(contentType[0]);
  const text = decodeUtf8(body);
  if (!dual && cs !== undefined && cs !== "utf-8" && text !== null && iconv.encodingExists(cs) && r.chance(cs.startsWith("utf-7") ? 0.4 : 0.7)) {
    tags.push(`encoded-${cs}`);
    body = Uint8Array.from(iconv.encode(text, cs));
  }
  let contentEncoding: string[] = [];
  const e = r.next();
  if (e < 0.04) contentEncoding = [r.pick(["identity", "IDENTITY", "Identity", ""])];
  else if (e < 0.12) {
    const coding = r.pick(["gzip", "deflate", "br", "GZIP"]);
    contentEncoding = [coding];
    if (r.chance(0.8)) {
      tags.push(`compressed-${coding.toLowerCase()}`);
      const c = coding.toLowerCase();
      body = Uint8Array.from(c === "gzip" ? gzipSync(body) : c === "deflate" ? deflateSync(body) : brotliCompressSync(body));
    }
  } else if (e < 0.15) contentEncoding = r.pick([["x-gzip"], ["compress"], ["identity, gzip"], ["identity", "gzip"], ["gzip", "identity"], ["zstd"]]);
  return { index, probe, contentType, contentEncoding, body, tags };
}

// --- running -----------------------------------------------------------------------------------------------------

export type FilterOutcome =
  | { kind: "allow"; cand: number }
  | { kind: "default" }
  | { kind: "cause"; cause: string }
  | { kind: "trap"; reason: string }
  | { kind: "other"; what: string };

/**
 * `bypass`: the filter allowed on a value some reader does not read; `misread`: the filter read the body and
 * something other than a reader's value there; `refusal`: a refusal without its cause, or with another one.
 */
export type DisagreementClass = "bypass" | "misread" | "refusal" | "trap" | "other";

export interface Disagreement {
  index: number;
  class: DisagreementClass;
  what: string;
  filter: string;
  tags: string[];
  headers: string;
  body: string;
}

export interface JsonFuzzReport {
  seed: number;
  cases: number;
  /** the filter read the body: allowed by a candidate, or a plain default deny */
  accepted: number;
  allowed: number;
  rejected: Record<string, number>;
  /** the first 1,000 */
  disagreements: Disagreement[];
  disagreementCount: number;
  byClass: Partial<Record<DisagreementClass, number>>;
  traps: number;
  /** cases whose filter call took over 2 s (a hang in the making) */
  slow: string[];
  /** how body-parser (strict) answered */
  app: Record<string, number>;
  /** the filter allowed a request an app then refused (4xx): harmless, counted to show the classes occur */
  allowedAppRefused: number;
  memoryBytes: { start: number; end: number };
  ms: number;
}

/** The filter's answer for one case, through the host like `spiffe-authz check`. */
function runFilter(host: ProxyWasmHost, c: JsonFuzzCase): FilterOutcome {
  const headers: Pair[] = [
    ...c.contentType.map((v): Pair => ["content-type", v]),
    ...c.contentEncoding.map((v): Pair => ["content-encoding", v]),
  ];
  const res = host.request({ peer: "spiffe://fuzz.example/app/x", method: "POST", path: `/p${c.probe}`, headers, body: c.body });
  if (res.vmFailure !== null) return { kind: "trap", reason: res.vmFailure.reason };
  if (res.continued && res.localReply === null) {
    const m = /^p(\d+)c(\d+)$/.exec(res.explain?.rule ?? "");
    if (m === null || Number(m[1]) !== c.probe) return { kind: "other", what: `allowed by ${res.explain?.rule}` };
    return { kind: "allow", cand: Number(m[2]) };
  }
  const d = res.localReply?.details ?? "";
  if (d === "spiffe_authz_denied[default]") return { kind: "default" };
  const m = /^spiffe_authz_denied\[default:([a-z0-9_]+)\]$/.exec(d);
  if (m !== null) return { kind: "cause", cause: m[1] };
  return { kind: "other", what: `${res.localReply?.status} ${d} ${res.explain?.reason ?? ""}` };
}

function describe(o: FilterOutcome, p: Probe): string {
  switch (o.kind) {
    case "allow": return `allowed: read ${show(p.cands[o.cand])}`;
    case "default": return "plain default deny";
    case "cause": return `refused: ${o.cause}`;
    case "trap": return `trap: ${o.reason}`;
    case "other": return o.what;
  }
}

function hex(bytes: Uint8Array, max = 160): string {
  const text = decodeUtf8(bytes);
  if (text !== null && !/[\u0000-\u0008\u000b\u000e-\u001f]/.test(text)) return JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text);
  return `hex ${Buffer.from(bytes.subarray(0, max)).toString("hex")}${bytes.length > max ? "…" : ""}`;
}

/** The apps the filter protects: Express's JSON middleware as an app would mount it for the filter's media types. */
export function bodyParsers(): { strict: RequestHandler; lax: RequestHandler } {
  const type = ["application/json", "application/*+json"];
  return {
    strict: bodyParser.json({ type, limit: "1mb" }),
    lax: bodyParser.json({ type, limit: "1mb", strict: false }),
  };
}

export function appHeaders(c: JsonFuzzCase): Record<string, string> {
  const h: Record<string, string> = {};
  if (c.contentType.length > 0) h["content-type"] = c.contentType.join(",");
  if (c.contentEncoding.length > 0) h["content-encoding"] = c.contentEncoding.join(",");
  return h;
}

/** What the readers make of one case, and whether the filter's outcome is consistent with it; null when it is. */
export async function judge(c: JsonFuzzCase, o: FilterOutcome, apps: ReturnType<typeof bodyParsers>, stats?: JsonFuzzReport): Promise<string | null> {
  const p = PROBES[c.probe];
  const headers = appHeaders(c);
  const strict = await runBodyParser(apps.strict, headers, c.body);
  // strict:false differs only where strict refuses the first character.
  const lax: AppResult = strict.kind === "refused" && strict.type === "entity.parse.failed"
    ? await runBodyParser(apps.lax, headers, c.body) : strict;
  if (stats !== undefined) {
    const k = strict.kind === "refused" ? `refused ${strict.status} ${strict.type}` : strict.kind;
    stats.app[k] = (stats.app[k] ?? 0) + 1;
  }
  const text = decodeUtf8(c.body);
  let jp: JValue | undefined;
  if (text !== null) {
    try {
      jp = fromPlain(JSON.parse(text));
    } catch {
      jp = undefined;
    }
  }
  const ref: RefResult | null = text === null ? null : refRead(text);
  let other: JValue | undefined;
  if (ref?.ok) {
    try {
      other = readAs(ref.root, OTHER_READER);
    } catch {
      other = undefined; // that reader refuses the document (e.g. Go on 1e400)
    }
    // The reference parser must agree with JSON.parse on what is JSON, and read the same under its rules.
    if (jp === undefined) return "reference parser accepts what JSON.parse refuses";
    const mine = probeValue(readAs(ref.root, JSON_PARSE_READER), p);
    const theirs = probeValue(jp, p);
    if (!isDeepStrictEqual(mine, theirs)) {
      return `reference parser reads ${show(mine)}, JSON.parse ${show(theirs)}`;
    }
  } else if (jp !== undefined) {
    return "JSON.parse accepts what the reference parser refuses";
  }
  const ct = c.contentType.length > 0 ? c.contentType.join(",") : null;
  const ce = c.contentEncoding.length > 0 ? c.contentEncoding.join(",") : null;
  const media = mediaTypeModel(ct);
  const headerCause = media === "malformed" || media === "not-json" ? "json_media_type"
    : media === "other-charset" ? "json_not_utf8"
    : !identityEncoding(ce) ? "json_content_encoding" : null;
  const bom = c.body.length >= 2 && ((c.body[0] === 0xef && c.body[1] === 0xbb && c.body[2] === 0xbf) ||
    (c.body[0] === 0xff && c.body[1] === 0xfe) || (c.body[0] === 0xfe && c.body[1] === 0xff));

  const readers: [string, JValue | typeof MISSING | "refused" | "unparsed"][] = [
    ["JSON.parse", jp === undefined ? "refused" : probeValue(jp, p)],
    ["other reader", other === undefined ? "refused" : probeValue(other, p)],
    ...([["body-parser", strict], ["body-parser strict:false", lax]] as const).map(([name, a]): [string, JValue | typeof MISSING | "refused" | "unparsed"] =>
      [name, a.kind === "refused" ? "refused" : a.kind === "unparsed" ? "unparsed" : probeValue(fromPlain(a.body), p)]),
  ];

  switch (o.kind) {
    case "trap":
    case "other":
      return describe(o, p);
    case "allow": {
      if (headerCause !== null) return `allowed although the headers call for ${headerCause}`;
      const cand = p.cands[o.cand];
      if (jp === undefined) return "allowed a body JSON.parse refuses";
      for (const [name, v] of readers) {
        if (v === "refused" && name !== "JSON.parse") {
          if (stats !== undefined && name === "body-parser") stats.allowedAppRefused++;
          continue;
        }
        if (v === "unparsed") return `${name} leaves the body unparsed`;
        if (v === "refused" || !sameScalar(v, cand)) return `${name} reads ${v === "refused" ? "nothing" : show(v)}`;
      }
      return null;
    }
    case "default": {
      if (headerCause !== null) return `read a body although the headers call for ${headerCause}`;
      if (jp === undefined) return "read a body JSON.parse refuses";
      for (const [name, v] of readers) {
        if (v === "refused" || v === "unparsed" || v === MISSING) continue;
        const k = p.cands.findIndex((cand) => sameScalar(v, cand));
        if (k >= 0) return `${name} reads candidate ${show(p.cands[k])}, the filter something else`;
      }
      return null;
    }
    case "cause": {
      const cause = o.cause;
      if (headerCause !== null) return cause === headerCause ? null : `expected ${headerCause}`;
      switch (cause) {
        case "json_not_utf8": return bom || text === null ? null : "no byte-order mark and valid UTF-8";
        case "invalid_json": return text === null || jp === undefined || (ref?.ok && ref.depth > 512) ? null : "JSON.parse reads it";
        // The filter reads in one pass and names the first problem it meets: a hazard before a syntax error.
        case "json_ambiguous": return jp === undefined || (ref?.ok && anyHazard(ref.hazards)) ? null : "no hazard in the document";
        case "body_too_large": return c.body.length > MAX_BODY ? null : "not over the limit";
        case "condition_error": {
          const v = jp === undefined ? MISSING : at(jp, p.path);
          if (p.kind === "in" && v !== MISSING && !Array.isArray(v) && !(v instanceof Map)) return null;
          if (p.kind === "size" && v !== MISSING && (v === null || typeof v === "number" || typeof v === "boolean")) return null;
          return `unexpected condition error (value ${show(v)})`;
        }
        default: return `unexpected cause ${cause}`;
      }
    }
  }
}

export interface JsonFuzzOptions {
  seed: number;
  cases: number;
  wasmPath?: string;
  /** called every 1,000 cases */
  progress?: (done: number, report: JsonFuzzReport) => void;
}

/** Runs `cases` generated cases; never throws on a disagreement (the report lists them). */
export async function runJsonFuzz(opts: JsonFuzzOptions): Promise<JsonFuzzReport> {
  const t0 = Date.now();
  const compiled = compileTexts([{ file: "json-fuzz.yaml", text: fuzzPolicyYaml() }]);
  const load = async (): Promise<ProxyWasmHost> => {
    const h = await ProxyWasmHost.load({ wasmPath: opts.wasmPath, allowOnHeadersStopIteration: true });
    if (!h.configure(compiled.config)) throw new Error(`the fuzz table was refused: ${h.logs.map((l) => l.message).join("\n")}`);
    return h;
  };
  let host = await load();
  const apps = bodyParsers();
  const report: JsonFuzzReport = {
    seed: opts.seed, cases: 0, accepted: 0, allowed: 0, rejected: {}, disagreements: [], disagreementCount: 0, byClass: {}, traps: 0, slow: [], app: {}, allowedAppRefused: 0,
    memoryBytes: { start: host.memoryBytes(), end: 0 }, ms: 0,
  };
  for (let i = 0; i < opts.cases; i++) {
    const c = generateCase(opts.seed, i);
    const t = performance.now();
    const o = runFilter(host, c);
    const ms = performance.now() - t;
    if (ms > 2000) report.slow.push(`case ${i} took ${ms.toFixed(0)} ms`);
    report.cases++;
    if (o.kind === "allow") report.allowed++;
    if (o.kind === "allow" || o.kind === "default") report.accepted++;
    if (o.kind === "cause") report.rejected[o.cause] = (report.rejected[o.cause] ?? 0) + 1;
    if (o.kind === "trap") {
      report.traps++;
      host = await load();
    }
    const why = await judge(c, o, apps, report);
    if (why !== null) {
      const cls: DisagreementClass = o.kind === "allow" ? "bypass" : o.kind === "default" ? "misread" : o.kind === "cause" ? "refusal" : o.kind;
      report.disagreementCount++;
      report.byClass[cls] = (report.byClass[cls] ?? 0) + 1;
      if (report.disagreements.length < 1000) {
        const h = Object.entries(appHeaders(c)).map(([k, v]) => `${k}: ${v}`).join("; ");
        report.disagreements.push({ index: i, class: cls, what: why, filter: describe(o, PROBES[c.probe]), tags: c.tags, headers: h, body: hex(c.body) });
      }
    }
    if (i === 999) report.memoryBytes.start = host.memoryBytes();
    if ((i + 1) % 1000 === 0) opts.progress?.(i + 1, report);
  }
  report.memoryBytes.end = host.memoryBytes();
  report.ms = Date.now() - t0;
  return report;
}
