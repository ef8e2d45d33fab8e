// A TypeScript reader and validator of the policy table (docs/table-format.md). Tests use it to round-trip
// (encode -> decode -> same IR); `check` uses it to recognise a compiled table. It checks everything the engine's
// decoder must check, so a table it accepts is one the engine must accept too.

import zlib from "node:zlib";
import {
  ACTIONS,
  FIELDS,
  PATTERN_KINDS,
  RULE_ID_PATTERN,
  compareBytes,
  type ClauseIR,
  type DefaultKind,
  type PatternIR,
  type PredicateIR,
  type RuleIR,
  type SchemaIR,
  type TableIR,
} from "./ir.ts";
import {
  ENVELOPE_HEADER,
  FLAG_DEFLATE,
  FLAG_PLANAR,
  MAGIC,
  MAX_BODY,
  MAX_RULES,
  NO_EXPR,
  RECORD_SIZE,
  TAG,
  TAG_NAME,
  VERSION,
  crc32,
  readDirectory,
  sha256Prefix,
  transposeSections,
  type SectionEntry,
} from "./table.ts";

/** A table that does not follow docs/table-format.md. The message says what is wrong. */
export class TableFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TableFormatError";
  }
}

function fail(message: string): never {
  throw new TableFormatError(message);
}

/** A decoded table. */
export interface DecodedTable {
  ir: TableIR;
  tableHash: string;
  /** row-major body */
  body: Uint8Array;
  envelope: Uint8Array;
  flags: number;
}

function lineCol(text: string, index: number): string {
  let line = 1;
  let col = 1;
  for (let i = 0; i < index && i < text.length; i++) {
    if (text[i] === "\n") {
      line++;
      col = 1;
    } else col++;
  }
  return `${line}:${col}`;
}

/** Parses the JSON wrapper `{"table":"<base64>"}` and returns the envelope bytes. */
export function parseConfig(text: string): Uint8Array {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    fail(`configuration is not JSON: ${(e as Error).message}`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) fail("configuration must be a JSON object");
  for (const key of Object.keys(v as object)) {
    if (key !== "table") {
      // Report where the key is, as the engine does: the first occurrence of the quoted key followed by a colon.
      const m = new RegExp(`${JSON.stringify(key).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\s*:`).exec(text);
      fail(`${m ? lineCol(text, m.index) + ": " : ""}unknown field ${JSON.stringify(key)}`);
    }
  }
  const b64 = (v as { table?: unknown }).table;
  if (b64 === undefined) fail("missing field \"table\"");
  if (typeof b64 !== "string") fail("field \"table\" must be a string");
  if (b64.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) fail("field \"table\" is not standard base64 with padding");
  const raw = text.slice(text.indexOf('"table"'));
  if (raw.includes("\\")) fail("field \"table\" must not contain escapes");
  return new Uint8Array(Buffer.from(b64, "base64"));
}

/** Checks the envelope and returns the row-major body. */
export function decodeEnvelope(envelope: Uint8Array): { body: Uint8Array; tableHash: string; flags: number } {
  if (envelope.length < ENVELOPE_HEADER) fail(`envelope of ${envelope.length} bytes is shorter than its header`);
  for (let i = 0; i < 4; i++) if (envelope[i] !== MAGIC[i]) fail("bad magic (not a spiffe-authz table)");
  const dv = new DataView(envelope.buffer, envelope.byteOffset, envelope.byteLength);
  const version = dv.getUint16(4, true);
  if (version !== VERSION) fail(`unsupported table version ${version} (this build reads version ${VERSION})`);
  const flags = dv.getUint16(6, true);
  if (flags & ~(FLAG_DEFLATE | FLAG_PLANAR)) fail(`unknown envelope flags 0x${flags.toString(16)}`);
  const hash = Buffer.from(envelope.subarray(8, 16));
  const bodyLen = dv.getUint32(16, true);
  const crc = dv.getUint32(20, true);
  if (bodyLen > MAX_BODY) fail(`body length ${bodyLen} exceeds ${MAX_BODY}`);
  const payload = envelope.subarray(ENVELOPE_HEADER);
  let stored: Uint8Array;
  if (flags & FLAG_DEFLATE) {
    let res: { buffer: Buffer; engine: zlib.InflateRaw };
    try {
      res = zlib.inflateRawSync(payload, { info: true, maxOutputLength: Math.max(1, bodyLen) }) as unknown as {
        buffer: Buffer;
        engine: zlib.InflateRaw;
      };
    } catch (e) {
      fail(`payload does not inflate to ${bodyLen} bytes: ${(e as Error).message}`);
    }
    stored = res.buffer;
    if ((res.engine as unknown as { bytesWritten: number }).bytesWritten !== payload.length) {
      fail("payload has bytes after the end of the DEFLATE stream");
    }
  } else {
    stored = payload;
  }
  if (stored.length !== bodyLen) fail(`body is ${stored.length} bytes, the header says ${bodyLen}`);
  let body = stored;
  if (flags & FLAG_PLANAR) body = transposeSections(stored, checkDirectory(stored), false);
  if (crc32(body) !== crc) fail("crc32 mismatch");
  if (!sha256Prefix(body).equals(hash)) fail("hash mismatch");
  return { body, tableHash: hash.toString("hex"), flags };
}

/** Checks the section directory: known tags, each once, inside the body, no overlap, whole records. */
export function checkDirectory(body: Uint8Array): SectionEntry[] {
  let dir: SectionEntry[];
  try {
    dir = readDirectory(body);
  } catch (e) {
    fail((e as Error).message);
  }
  const seen = new Set<number>();
  const dirEnd = 4 + 12 * dir.length;
  for (const s of dir) {
    const name = TAG_NAME[s.tag];
    if (!name) fail(`unknown section tag ${s.tag}`);
    if (seen.has(s.tag)) fail(`section ${name} appears twice`);
    seen.add(s.tag);
    if (s.offset < dirEnd || s.offset + s.length > body.length) fail(`section ${name} lies outside the body`);
    if (s.length % RECORD_SIZE[s.tag] !== 0) fail(`section ${name} length ${s.length} is not a multiple of ${RECORD_SIZE[s.tag]}`);
  }
  for (const tag of Object.values(TAG)) if (!seen.has(tag)) fail(`section ${TAG_NAME[tag]} is missing`);
  const sorted = [...dir].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1];
    if (a.offset + a.length > sorted[i].offset) fail(`sections ${TAG_NAME[a.tag]} and ${TAG_NAME[sorted[i].tag]} overlap`);
  }
  return dir;
}

/** Decodes and validates a row-major body into an IR. */
export function decodeBody(body: Uint8Array): TableIR {
  const dir = checkDirectory(body);
  const sec = (tag: number) => dir.find((s) => s.tag === tag)!;
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const strs = sec(TAG.STRS);
  const utf8 = new TextDecoder("utf-8", { fatal: false });
  const str = (at: number, what: string): string => {
    const off = dv.getUint32(at, true);
    const len = dv.getUint32(at + 4, true);
    if (len === 0) return "";
    if (off + len > strs.length) fail(`${what}: string range ${off}+${len} outside STRS (${strs.length} bytes)`);
    return utf8.decode(body.subarray(strs.offset + off, strs.offset + off + len));
  };
  const count = (tag: number) => sec(tag).length / RECORD_SIZE[tag];
  const range = (start: number, n: number, tag: number, what: string) => {
    if (start + n > count(tag)) fail(`${what}: records ${start}+${n} outside ${TAG_NAME[tag]} (${count(tag)} records)`);
  };

  const meta = sec(TAG.META);
  if (meta.length !== 24) fail(`section META must hold exactly one record (has ${meta.length} bytes)`);
  const m = meta.offset;
  const defaultCode = body[m];
  const defaultKind = body[m + 1];
  if (defaultCode > 1) fail(`META defaultAction ${defaultCode} is not 0 or 1`);
  if (defaultKind > 2) fail(`META defaultKind ${defaultKind} is not 0, 1 or 2`);
  if (defaultKind === 2 && defaultCode !== 1) fail("META defaultKind 2 requires defaultAction 1 (deny)");
  if (dv.getUint16(m + 2, true) !== 0 || dv.getUint32(m + 16, true) !== 0 || dv.getUint32(m + 20, true) !== 0) {
    fail("META reserved fields must be 0");
  }

  const pats = sec(TAG.PATS);
  const readPattern = (i: number, what: string): PatternIR => {
    const o = pats.offset + 12 * i;
    const kind = PATTERN_KINDS[body[o]];
    if (!kind) fail(`${what}: unknown pattern kind ${body[o]}`);
    if (body[o + 1] || body[o + 2] || body[o + 3]) fail(`${what}: pattern reserved bytes must be 0`);
    const value = str(o + 4, what);
    if (kind === "present" && value !== "") fail(`${what}: a PRESENT pattern has a value`);
    return { kind, value };
  };

  const predSec = sec(TAG.PRED);
  const readPred = (i: number, what: string): PredicateIR => {
    const o = predSec.offset + 24 * i;
    const field = FIELDS[body[o]];
    if (!field) fail(`${what}: unknown field ${body[o]}`);
    const negate = body[o + 1];
    const flags = body[o + 2];
    if (negate > 1) fail(`${what}: negate must be 0 or 1`);
    if (flags & ~1) fail(`${what}: unknown predicate flags 0x${flags.toString(16)}`);
    if (body[o + 3]) fail(`${what}: predicate reserved byte must be 0`);
    const arg = str(o + 4, what);
    if ((field === "attribute" || field === "header") !== (arg.length > 0)) {
      fail(`${what}: field ${field} ${arg ? "takes no arg" : "needs an arg"}`);
    }
    const patStart = dv.getUint32(o + 12, true);
    const patCount = dv.getUint32(o + 16, true);
    const exactCount = dv.getUint32(o + 20, true);
    if (patCount === 0) fail(`${what}: a predicate needs at least one pattern`);
    if (exactCount > patCount) fail(`${what}: exactCount ${exactCount} > patCount ${patCount}`);
    range(patStart, patCount, TAG.PATS, what);
    const patterns: PatternIR[] = [];
    for (let k = 0; k < patCount; k++) {
      const p = readPattern(patStart + k, what);
      if (k < exactCount) {
        if (p.kind !== "exact") fail(`${what}: pattern ${k} is inside the exact block but is ${p.kind}`);
        if (k > 0 && compareBytes(patterns[k - 1].value, p.value) >= 0) {
          fail(`${what}: exact patterns are not sorted or have duplicates`);
        }
      }
      if (p.kind === "template" && field !== "path") fail(`${what}: templates are for paths only`);
      patterns.push(p);
    }
    return { field, negate: negate === 1, ignoreCase: (flags & 1) === 1, arg, patterns };
  };

  const readClauses = (tag: number, start: number, n: number, what: string): ClauseIR[] => {
    range(start, n, tag, what);
    const s = sec(tag);
    const out: ClauseIR[] = [];
    for (let k = 0; k < n; k++) {
      const o = s.offset + 8 * (start + k);
      const ps = dv.getUint32(o, true);
      const pn = dv.getUint32(o + 4, true);
      range(ps, pn, TAG.PRED, what);
      const predicates: PredicateIR[] = [];
      for (let j = 0; j < pn; j++) predicates.push(readPred(ps + j, what));
      out.push({ predicates });
    }
    return out;
  };

  const ruleSec = sec(TAG.RULE);
  const nRules = count(TAG.RULE);
  if (nRules > MAX_RULES) fail(`${nRules} rules exceed the limit of ${MAX_RULES}`);
  const rules: RuleIR[] = [];
  const ids = new Set<string>();
  for (let i = 0; i < nRules; i++) {
    const o = ruleSec.offset + 40 * i;
    const id = str(o, `rule ${i}`);
    if (!RULE_ID_PATTERN.test(id)) fail(`rule ${i}: invalid id ${JSON.stringify(id)}`);
    if (ids.has(id)) fail(`rule ${i}: duplicate id ${JSON.stringify(id)}`);
    ids.add(id);
    const what = `rule ${JSON.stringify(id)}`;
    const action = ACTIONS[body[o + 8]];
    if (!action) fail(`${what}: unknown action ${body[o + 8]}`);
    const flags = body[o + 9];
    if (flags & ~1) fail(`${what}: unknown rule flags 0x${flags.toString(16)}`);
    if (dv.getUint16(o + 10, true) !== 0) fail(`${what}: reserved field must be 0`);
    const expr = dv.getUint32(o + 36, true);
    // Version 1 has no EXPR section (issue 3 adds it), so no rule may reference a program.
    if (expr !== NO_EXPR) fail(`${what}: references expression ${expr} but the table has no EXPR section`);
    const condStart = dv.getUint32(o + 28, true);
    const condCount = dv.getUint32(o + 32, true);
    range(condStart, condCount, TAG.PRED, what);
    const conditions: PredicateIR[] = [];
    for (let k = 0; k < condCount; k++) conditions.push(readPred(condStart + k, what));
    rules.push({
      id,
      action,
      dryRun: (flags & 1) === 1,
      sources: readClauses(TAG.SRCC, dv.getUint32(o + 12, true), dv.getUint32(o + 16, true), what),
      operations: readClauses(TAG.OPCL, dv.getUint32(o + 20, true), dv.getUint32(o + 24, true), what),
      conditions,
      expr: null,
    });
  }

  const schm = sec(TAG.SCHM);
  const skey = sec(TAG.SKEY);
  const schemas: SchemaIR[] = [];
  const tds = new Set<string>();
  for (let i = 0; i < count(TAG.SCHM); i++) {
    const o = schm.offset + 16 * i;
    const trustDomain = str(o, `schema ${i}`);
    if (tds.has(trustDomain)) fail(`two schemas for trust domain ${JSON.stringify(trustDomain)}`);
    tds.add(trustDomain);
    const ks = dv.getUint32(o + 8, true);
    const kn = dv.getUint32(o + 12, true);
    range(ks, kn, TAG.SKEY, `schema ${JSON.stringify(trustDomain)}`);
    const keys: string[] = [];
    for (let k = 0; k < kn; k++) keys.push(str(skey.offset + 8 * (ks + k), `schema ${JSON.stringify(trustDomain)}`));
    schemas.push({ trustDomain, keys });
  }

  return {
    defaultAction: defaultCode === 1 ? "deny" : "allow",
    defaultKind: defaultKind as DefaultKind,
    maxBodyBytes: dv.getUint32(m + 4, true),
    label: str(m + 8, "META label"),
    rules,
    schemas,
  };
}

/** Decodes a plugin configuration string. Throws {@link TableFormatError}. */
export function decodeConfig(text: string): DecodedTable {
  const envelope = parseConfig(text);
  const { body, tableHash, flags } = decodeEnvelope(envelope);
  return { ir: decodeBody(body), tableHash, body, envelope, flags };
}

/** True when `text` is a plugin configuration string holding a valid table. */
export function isCompiledTable(text: string): boolean {
  try {
    decodeConfig(text.trim());
    return true;
  } catch {
    return false;
  }
}
