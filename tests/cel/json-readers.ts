/**
 * The readers the JSON body differential compares the filter with, each independent of the filter's code:
 *
 * - Express's body-parser (`json()`, the real middleware on a request stream built here, see `BodyParserApp`):
 *   honours the charset parameter (iconv-lite), inflates gzip/deflate/br, drops a UTF-8 byte-order mark, replaces
 *   invalid UTF-8 with U+FFFD, then JSON.parse.
 * - JSON.parse of the bytes read as UTF-8 (fatal: invalid UTF-8 is no text at all).
 * - `refRead`, a small RFC 8259 parser that keeps what JSON.parse throws away (every occurrence of a key, number
 *   literals as written, lone surrogates) and reports hazards. Read with `OTHER_READER`, it stands for the other
 *   mainstream readers: the first occurrence of a key wins (gjson, simdjson on-demand), a lone surrogate becomes
 *   U+FFFD (Go), integer literals are exact (Python, Go's json.Number), a number beyond the double range is an
 *   error (Go).
 * - `mediaTypeModel`, the content-type grammar of docs/cel.md "JSON bodies", written again with regular
 *   expressions to judge the filter's refusals.
 */
import { EventEmitter } from "node:events";
import { Readable } from "node:stream";
import type { RequestHandler } from "express";

// --- the reference parser ------------------------------------------------------------------------------------

export type RNode =
  | { t: "obj"; entries: [string, RNode][] }
  | { t: "arr"; items: RNode[] }
  | { t: "str"; v: string }
  | { t: "num"; text: string }
  | { t: "bool"; v: boolean }
  | { t: "null" };

export interface RefHazards {
  duplicateKey: boolean;
  loneSurrogate: boolean;
  unsafeInteger: boolean;
  overflow: boolean;
}

export type RefResult =
  | { ok: true; root: RNode; hazards: RefHazards; depth: number; keys: number }
  | { ok: false; error: string };

const LONE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Parses JSON text (already decoded) exactly as JSON.parse accepts it, keeping duplicates and literals. */
export function refRead(text: string): RefResult {
  let i = 0;
  let depth = 0;
  let maxDepth = 0;
  let keys = 0;
  const hazards: RefHazards = { duplicateKey: false, loneSurrogate: false, unsafeInteger: false, overflow: false };
  const fail = (why: string): never => {
    throw new SyntaxError(`${why} at ${i}`);
  };
  const ws = () => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      i++;
    }
  };
  const str = (): string => {
    i++; // "
    let out = "";
    for (;;) {
      if (i >= text.length) fail("unterminated string");
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        break;
      }
      if (c < 0x20) fail("control character in string");
      if (c !== 0x5c) {
        out += text[i++];
        continue;
      }
      const e = text[i + 1];
      const simple: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
      if (e !== undefined && e in simple) {
        out += simple[e];
        i += 2;
      } else if (e === "u" && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
        out += String.fromCharCode(parseInt(text.slice(i + 2, i + 6), 16));
        i += 6;
      } else {
        fail("invalid escape");
      }
    }
    if (LONE.test(out)) hazards.loneSurrogate = true;
    return out;
  };
  const num = (): RNode => {
    const m = /^-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i));
    if (m === null) fail("invalid number");
    const t = m![0];
    i += t.length;
    const v = Number(t);
    if (!Number.isFinite(v)) hazards.overflow = true;
    if (m![1] === undefined && m![2] === undefined && !Number.isSafeInteger(v)) hazards.unsafeInteger = true;
    return { t: "num", text: t };
  };
  const value = (): RNode => {
    ws();
    const c = text[i];
    if (c === "{" || c === "[") {
      depth++;
      maxDepth = Math.max(maxDepth, depth);
      i++;
      ws();
      let node: RNode;
      if (c === "{") {
        const entries: [string, RNode][] = [];
        const seen = new Set<string>();
        if (text[i] === "}") i++;
        else {
          for (;;) {
            ws();
            if (text[i] !== '"') fail("expected a key");
            const k = str();
            keys++;
            if (seen.has(k)) hazards.duplicateKey = true;
            seen.add(k);
            ws();
            if (text[i] !== ":") fail("expected ':'");
            i++;
            entries.push([k, value()]);
            ws();
            if (text[i] === ",") i++;
            else if (text[i] === "}") { i++; break; }
            else fail("expected ',' or '}'");
          }
        }
        node = { t: "obj", entries };
      } else {
        const items: RNode[] = [];
        if (text[i] === "]") i++;
        else {
          for (;;) {
            items.push(value());
            ws();
            if (text[i] === ",") i++;
            else if (text[i] === "]") { i++; break; }
            else fail("expected ',' or ']'");
          }
        }
        node = { t: "arr", items };
      }
      depth--;
      return node;
    }
    if (c === '"') return { t: "str", v: str() };
    if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) return num();
    for (const [w, n] of [["true", { t: "bool", v: true }], ["false", { t: "bool", v: false }], ["null", { t: "null" }]] as const) {
      if (text.startsWith(w, i)) {
        i += w.length;
        return n as RNode;
      }
    }
    return fail("expected a value");
  };
  try {
    const root = value();
    ws();
    if (i !== text.length) fail("trailing data");
    return { ok: true, root, hazards, depth: maxDepth, keys };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
}

export function anyHazard(h: RefHazards): boolean {
  return h.duplicateKey || h.loneSurrogate || h.unsafeInteger || h.overflow;
}

// --- values as a reader sees them ---------------------------------------------------------------------------

/** A JSON value as one reader holds it; objects are Maps, exact integers bigints. */
export type JValue = null | boolean | number | bigint | string | JValue[] | Map<string, JValue>;

export interface ReaderModel {
  /** which occurrence of a repeated key wins */
  duplicates: "first" | "last";
  /** lone surrogates: kept (JSON.parse, Python) or replaced by U+FFFD (Go) */
  lone: "keep" | "fffd";
  /** integer literals beyond 2^53-1 stay exact (bigint) */
  exactIntegers: boolean;
  /** a number beyond the double range makes the whole document unreadable */
  refuseOverflow: boolean;
}

export const JSON_PARSE_READER: ReaderModel = { duplicates: "last", lone: "keep", exactIntegers: false, refuseOverflow: false };
export const OTHER_READER: ReaderModel = { duplicates: "first", lone: "fffd", exactIntegers: true, refuseOverflow: true };

const LONE_ALL = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** The value `m` reads from `node`; throws when `m` refuses the document. */
export function readAs(node: RNode, m: ReaderModel): JValue {
  switch (node.t) {
    case "null": return null;
    case "bool": return node.v;
    case "str": return m.lone === "fffd" ? node.v.replace(LONE_ALL, "\ufffd") : node.v;
    case "num": {
      const v = Number(node.text);
      if (!Number.isFinite(v) && m.refuseOverflow) throw new RangeError(`number out of range: ${node.text.slice(0, 40)}`);
      if (m.exactIntegers && /^-?[0-9]+$/.test(node.text) && !Number.isSafeInteger(v)) return BigInt(node.text);
      return v;
    }
    case "arr": return node.items.map((x) => readAs(x, m));
    case "obj": {
      const out = new Map<string, JValue>();
      for (const [k0, v] of node.entries) {
        const k = m.lone === "fffd" ? k0.replace(LONE_ALL, "\ufffd") : k0;
        if (m.duplicates === "first" && out.has(k)) continue;
        out.set(k, readAs(v, m));
      }
      return out;
    }
  }
}

/** JSON.parse's result (plain objects) as a JValue. */
export function fromPlain(v: unknown): JValue {
  if (v === null || typeof v === "boolean" || typeof v === "number" || typeof v === "string") return v;
  if (Array.isArray(v)) return v.map(fromPlain);
  if (typeof v === "object") return new Map(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, fromPlain(x)]));
  throw new TypeError(`not a json value: ${typeof v}`);
}

// --- the content-type model ----------------------------------------------------------------------------------

const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const QUOTED = '"[ !#-\\[\\]-~]*"';
const MEDIA_TYPE = new RegExp(`^(${TOKEN})/(${TOKEN})((?: *; *${TOKEN}=(?:${TOKEN}|${QUOTED}))*) *$`);
const PARAM = new RegExp(` *; *(${TOKEN})=(${TOKEN}|${QUOTED})`, "g");
const RESTRICTED = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/;

export type MediaVerdict = "utf8" | "other-charset" | "not-json" | "malformed";

/** docs/cel.md "JSON bodies": what the filter must decide for a content-type value (null: no header). */
export function mediaTypeModel(value: string | null): MediaVerdict {
  if (value === null) return "malformed";
  const m = MEDIA_TYPE.exec(value);
  if (m === null) return "malformed";
  const type = m[1].toLowerCase();
  const sub = m[2].toLowerCase();
  const json = type === "application" && (sub === "json" || (sub.length > 5 && sub.endsWith("+json") && RESTRICTED.test(sub)));
  if (!json) return "not-json";
  for (const p of m[3].matchAll(PARAM)) {
    if (p[1].toLowerCase() !== "charset") continue;
    const v = p[2].startsWith('"') ? p[2].slice(1, -1) : p[2];
    if (v.toLowerCase() !== "utf-8") return "other-charset";
  }
  return "utf8";
}

/** Whether a content-encoding value (null: no header) leaves the body as sent. */
export function identityEncoding(value: string | null): boolean {
  return value === null || value === "" || value.toLowerCase() === "identity";
}

// --- body-parser -------------------------------------------------------------------------------------------

export type AppResult =
  /** req.body after the middleware called next() without an error (undefined: it did not parse the body) */
  | { kind: "parsed"; body: unknown }
  | { kind: "unparsed" }
  /** the middleware's error status (400 syntax, 415 charset or encoding, 413 size) and type */
  | { kind: "refused"; status: number; type: string };

/**
 * Runs a body-parser middleware on one request as node's http server hands it over: `headers` are the values
 * node sees (lower-case names, one value per name: Envoy 1.40 sends a repeated content-type or content-encoding as
 * one comma-joined line), `body` the bytes after Envoy. The request is a Readable with the fields on-finished and
 * raw-body look at (`complete`, `socket.readable`, `headers`), so the middleware's own code path runs unchanged;
 * tests/unit/json-differential.test.ts checks it against a real Express server.
 */
export function runBodyParser(mw: RequestHandler, headers: Record<string, string>, body: Uint8Array): Promise<AppResult> {
  return new Promise((resolve) => {
    const req = new Readable({ read() {} }) as Readable & Record<string, unknown>;
    req.push(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
    req.push(null);
    req.headers = { ...headers, "content-length": String(body.length) };
    req.complete = false;
    req.socket = Object.assign(new EventEmitter(), { readable: true });
    req.on("end", () => {
      req.complete = true;
    });
    (mw as unknown as (q: unknown, s: unknown, n: (e?: unknown) => void) => void)(req, {}, (err?: unknown) => {
      if (err !== undefined && err !== null) {
        const e = err as { status?: number; type?: string; message?: string };
        resolve({ kind: "refused", status: e.status ?? 500, type: e.type ?? String(e.message) });
      } else if (req.body === undefined) {
        resolve({ kind: "unparsed" });
      } else {
        resolve({ kind: "parsed", body: req.body });
      }
    });
  });
}
