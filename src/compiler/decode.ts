// A TypeScript reader and validator of the policy table (docs/table-format.md, version 3). Tests use it to round-
// trip (encode -> decode -> same IR); `check` uses it to recognise a compiled table. It checks everything the
// engine's decoder must check, so a table it accepts is one the engine must accept too. Families are expanded
// back into the flat rule list of the IR.

import zlib from "node:zlib";
import { decodeSection, programVariables } from "../cel/section.ts";
import { globProblem } from "../vocabulary/glob.ts";
import {
  ACTIONS,
  FIELDS,
  PATTERN_KINDS,
  RULE_ID_PATTERN,
  cidrText,
  compareBytes,
  maskAddress,
  type ClauseIR,
  type DefaultKind,
  type PatternIR,
  type PredicateIR,
  type DenyResponseIR,
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
  MAX_RULE_ID_BYTES,
  MAX_RULES,
  MAX_VALUE_BYTES,
  MAX_REQUEST_BODY_BYTES,
  META_FLAG_GRPC_FIRST,
  NO_EXPR,
  REQUIRED_TAGS,
  FAM_DRY_RUN,
  FAM_METRICS,
  FAM_RECORD_ALLOWS,
  META_FLAG_SAMPLE_ALLOWS,
  RESP_DEFAULT,
  RESP_GRPC_DEFAULT,
  RESP_REQUEST_ID,
  NO_HOLE,
  OLDEST_VERSION,
  PRED_HOLE,
  PRED_HOST_NAME,
  PRED_IGNORE_CASE,
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
  /** how many rule families the table stores its rules in */
  families: number;
  /** the configuration's `headers` mode (`hold` when absent) */
  headers: HeadersMode;
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

/**
 * What a request whose decision waits for its body does with its headers (docs/table-format.md §1): `hold` (the
 * default: onRequestHeaders answers StopIteration, for Envoy configs with allow_on_headers_stop_iteration) or
 * `continue` (the headers go upstream, the body is held; for an Istio WasmPlugin, which cannot set that option).
 */
export type HeadersMode = "hold" | "continue";
export const HEADERS_MODES: readonly HeadersMode[] = ["hold", "continue"];

/** The plugin configuration JSON: the envelope bytes and the `headers` mode. */
export interface PluginConfiguration {
  envelope: Uint8Array;
  headers: HeadersMode;
}

/** Parses the JSON wrapper `{"table":"<base64>"[,"headers":"hold"|"continue"]}`. */
export function parsePluginConfiguration(text: string): PluginConfiguration {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    fail(`configuration is not JSON: ${(e as Error).message}`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) fail("configuration must be a JSON object");
  for (const key of Object.keys(v as object)) {
    if (key !== "table" && key !== "headers") {
      // Report where the key is, as the engine does: the first occurrence of the quoted key followed by a colon.
      const m = new RegExp(`${JSON.stringify(key).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\s*:`).exec(text);
      fail(`${m ? lineCol(text, m.index) + ": " : ""}unknown field ${JSON.stringify(key)}`);
    }
  }
  const headers = (v as { headers?: unknown }).headers ?? "hold";
  if (typeof headers !== "string" || !(HEADERS_MODES as readonly string[]).includes(headers)) {
    const m = /"headers"\s*:\s*/.exec(text);
    fail(`${m ? lineCol(text, m.index + m[0].length) + ": " : ""}field "headers" must be "hold" or "continue"`);
  }
  const b64 = (v as { table?: unknown }).table;
  if (b64 === undefined) fail("missing field \"table\"");
  if (typeof b64 !== "string") fail("field \"table\" must be a string");
  if (b64.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) fail("field \"table\" is not standard base64 with padding");
  const raw = /"table"\s*:\s*"([^"]*)"/.exec(text);
  if (raw?.[1].includes("\\")) fail("field \"table\" must not contain escapes");
  return { envelope: new Uint8Array(Buffer.from(b64, "base64")), headers: headers as HeadersMode };
}

/** Parses the JSON wrapper and returns the envelope bytes. */
export function parseConfig(text: string): Uint8Array {
  return parsePluginConfiguration(text).envelope;
}

/** Checks the envelope and returns the row-major body. */
export function decodeEnvelope(envelope: Uint8Array): { body: Uint8Array; tableHash: string; flags: number; version: number } {
  if (envelope.length < ENVELOPE_HEADER) fail(`envelope of ${envelope.length} bytes is shorter than its header`);
  for (let i = 0; i < 4; i++) if (envelope[i] !== MAGIC[i]) fail("bad magic (not a spiffe-authz table)");
  const dv = new DataView(envelope.buffer, envelope.byteOffset, envelope.byteLength);
  const version = dv.getUint16(4, true);
  if (version !== VERSION && version !== OLDEST_VERSION) fail(`unsupported table version ${version} (this build reads versions ${OLDEST_VERSION} and ${VERSION})`);
  const flags = dv.getUint16(6, true);
  if (flags & ~(FLAG_DEFLATE | FLAG_PLANAR)) fail(`unknown envelope flags 0x${flags.toString(16)}`);
  const hash = Buffer.from(envelope.subarray(8, 16));
  const bodyLen = dv.getUint32(16, true);
  const crc = dv.getUint32(20, true);
  if (bodyLen > MAX_BODY) fail(`body length ${bodyLen} exceeds ${MAX_BODY}`);
  const payload = envelope.subarray(ENVELOPE_HEADER);
  // The CRC describes the payload as stored: checked before anything is inflated.
  if (crc32(payload) !== crc) fail("crc32 mismatch");
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
  if (!sha256Prefix(body).equals(hash)) fail("hash mismatch");
  return { body, tableHash: hash.toString("hex"), flags, version };
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
    if (s.offset + s.length > body.length || (s.length > 0 && s.offset < dirEnd)) fail(`section ${name} lies outside the body`);
    if (s.length % RECORD_SIZE[s.tag] !== 0) fail(`section ${name} length ${s.length} is not a multiple of ${RECORD_SIZE[s.tag]}`);
  }
  for (const tag of REQUIRED_TAGS) if (!seen.has(tag)) fail(`section ${TAG_NAME[tag]} is missing`);
  const sorted = dir.filter((s) => s.length > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1];
    if (a.offset + a.length > sorted[i].offset) fail(`sections ${TAG_NAME[a.tag]} and ${TAG_NAME[sorted[i].tag]} overlap`);
  }
  return dir;
}

/** The engine's template rule: braces only as whole `{*}` / `{**}` segments, `{**}` only as the last segment. */
function templateWellFormed(v: string): boolean {
  const segs = v.split("/");
  return segs.every((s, i) => !/[{}]/.test(s) || s === "{*}" || (s === "{**}" && i === segs.length - 1));
}

/** A reader of unsigned LEB128 varints (at most 5 bytes, below 2^32) inside one section. */
class VarintReader {
  constructor(
    readonly bytes: Uint8Array,
    public pos: number,
    readonly end: number,
    readonly what: string,
  ) {}
  next(): number {
    let v = 0;
    for (let i = 0; i < 5; i++) {
      if (this.pos >= this.end) fail(`${this.what}: varint runs past the end of the section`);
      const b = this.bytes[this.pos++];
      v += (b & 0x7f) * 2 ** (7 * i);
      if ((b & 0x80) === 0) {
        if (v > 0xffffffff) fail(`${this.what}: varint exceeds 32 bits`);
        return v;
      }
    }
    fail(`${this.what}: varint longer than 5 bytes`);
  }
}

/**
 * Decodes a front-coded list (docs/table-format.md "Front-coded lists") of `count` entries, checking every
 * restart offset, the shared prefixes and the bounds. `check(entry, prev, i)` adds the list's own rules.
 */
function decodeFrontCoded(
  body: Uint8Array,
  sec: SectionEntry,
  index: SectionEntry,
  count: number,
  log2: number,
  name: string,
  maxLen: number,
  check: (entry: Uint8Array, prev: Uint8Array, i: number) => void,
): Uint8Array[] {
  const interval = 1 << log2;
  const restarts = Math.ceil(count / interval);
  if (index.length !== 4 * restarts) fail(`${name}X: ${index.length / 4} restart offsets, ${count} entries need ${restarts}`);
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const r = new VarintReader(body, sec.offset, sec.offset + sec.length, name);
  const out: Uint8Array[] = [];
  let prev = new Uint8Array(0);
  for (let i = 0; i < count; i++) {
    const what = `${name} entry ${i}`;
    if (i % interval === 0) {
      const want = dv.getUint32(index.offset + 4 * (i / interval), true);
      if (want !== r.pos - sec.offset) fail(`${what}: restart offset ${want} but the entry starts at ${r.pos - sec.offset}`);
    }
    const shared = r.next();
    const suffix = r.next();
    if (i % interval === 0 && shared !== 0) fail(`${what}: a restart entry shares ${shared} bytes`);
    if (shared > prev.length) fail(`${what}: shares ${shared} bytes with an entry of ${prev.length}`);
    if (shared + suffix > maxLen) fail(`${what}: ${shared + suffix} bytes exceed ${maxLen}`);
    if (r.pos + suffix > r.end) fail(`${what}: suffix runs past the end of the section`);
    const e = new Uint8Array(shared + suffix);
    e.set(prev.subarray(0, shared));
    e.set(body.subarray(r.pos, r.pos + suffix), shared);
    r.pos += suffix;
    check(e, prev, i);
    out.push(e);
    prev = e;
  }
  if (r.pos !== r.end) fail(`${name}: ${r.end - r.pos} bytes after the last entry`);
  return out;
}

/** The engine's index limits (assembly/engine/principal-index.ts, table.ts MAX_SHADOW_RANGES). */
export const MAX_POSTINGS = 2 ** 24;
export const MAX_SHADOW_CLAUSES = 2 ** 24;

/**
 * The format's limits on what the engine builds at load (docs/table-format.md §6): index postings (the patterns of
 * each non-hole source clause's index predicate, §5) and the source clauses AUDIT / dry-run families reach.
 */
function checkIndexLimits(body: Uint8Array, dv: DataView, fams: SectionEntry, nFam: number, srcc: SectionEntry, preds: SectionEntry): void {
  let postings = 0;
  let shadow = 0;
  for (let f = 0; f < nFam; f++) {
    const o = fams.offset + 48 * f;
    const srcStart = dv.getUint32(o + 12, true);
    const srcCount = dv.getUint32(o + 16, true);
    const holeClause = dv.getUint32(o + 40, true);
    if (body[o] === 2 || body[o + 1] & 1) shadow += srcCount + 1;
    for (let c = srcStart; c < srcStart + srcCount; c++) {
      if (c === holeClause) continue;
      const ps = dv.getUint32(srcc.offset + 8 * c, true);
      const pn = dv.getUint32(srcc.offset + 8 * c + 4, true);
      let best = -1;
      let bestRank = 5;
      for (let p = ps; p < ps + pn; p++) {
        const q = preds.offset + 24 * p;
        // PRINCIPAL, PEER_NAME, ATTRIBUTE, TRUST_DOMAIN (docs/table-format.md §5).
        const rank = body[q] === 1 ? 1 : body[q] === 10 ? 2 : body[q] === 3 ? 3 : body[q] === 2 ? 4 : 5;
        if (rank >= bestRank || body[q + 1] !== 0 || (body[q + 2] & (PRED_IGNORE_CASE | PRED_HOLE)) !== 0) continue;
        if (dv.getUint32(q + 20, true) !== dv.getUint32(q + 16, true)) continue;
        best = p;
        bestRank = rank;
      }
      if (best >= 0) postings += dv.getUint32(preds.offset + 24 * best + 16, true);
    }
  }
  if (postings > MAX_POSTINGS) fail(`the index would need ${postings} postings (at most ${MAX_POSTINGS})`);
  if (shadow > MAX_SHADOW_CLAUSES) fail(`AUDIT and dry-run families reach ${shadow} source clauses (at most ${MAX_SHADOW_CLAUSES})`);
}

/** Decodes and validates a row-major body into an IR. */
/** Decodes a row-major body; `version` is the envelope's (version 2 knows no field above SNI, no GLOB or CIDR). */
export function decodeBody(body: Uint8Array, version = VERSION): TableIR {
  return decodeBodyFamilies(body, version).ir;
}

function decodeBodyFamilies(body: Uint8Array, version: number): { ir: TableIR; families: number } {
  const dir = checkDirectory(body);
  const sec = (tag: number) => dir.find((s) => s.tag === tag)!;
  const exprSec = dir.find((s) => s.tag === TAG.EXPR);
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

  /** RESP and RHDR (docs/table-format.md): present together or not at all; each header a lower-case token. */
  const readResponses = (): { response: DenyResponseIR; isDefault: boolean }[] => {
    const resp = dir.find((x) => x.tag === TAG.RESP);
    const rhdr = dir.find((x) => x.tag === TAG.RHDR);
    if (!resp && !rhdr) return [];
    if (version < 3) fail(`section RESP in a version ${version} table`);
    if (!resp || !rhdr) fail("sections RESP and RHDR go together");
    if (resp!.length === 0) fail("section RESP holds no records (leave RESP and RHDR out instead)");
    const out: { response: DenyResponseIR; isDefault: boolean }[] = [];
    for (let i = 0; i < resp!.length / 20; i++) {
      const o = resp!.offset + 20 * i;
      const what = `deny response ${i}`;
      const status = dv.getUint16(o, true);
      if (status < 300 || status > 599) fail(`${what}: status ${status} is not 300..599`);
      const grpc = body[o + 2];
      if (grpc !== RESP_GRPC_DEFAULT && (grpc < 1 || grpc > 16)) fail(`${what}: grpc status ${grpc} is not 1..16`);
      const flags = body[o + 3];
      if (flags & ~(RESP_REQUEST_ID | RESP_DEFAULT)) fail(`${what}: unknown flags 0x${flags.toString(16)}`);
      if (flags & RESP_DEFAULT && out.some((r) => r.isDefault)) fail(`${what}: a second default deny response`);
      const hs = dv.getUint32(o + 12, true);
      const hn = dv.getUint32(o + 16, true);
      range(hs, hn, TAG.RHDR, what);
      const headers: [string, string][] = [];
      for (let k = 0; k < hn; k++) {
        const ho = rhdr!.offset + 16 * (hs + k);
        const name = str(ho, what);
        const value = str(ho + 8, what);
        if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) fail(`${what}: header name ${JSON.stringify(name)} is not a lower-case token`);
        if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) fail(`${what}: header ${JSON.stringify(name)} has a control character`);
        headers.push([name, value]);
      }
      out.push({
        response: { status, body: str(o + 4, what), headers, grpcStatus: grpc === RESP_GRPC_DEFAULT ? null : grpc, requestId: (flags & RESP_REQUEST_ID) !== 0 },
        isDefault: (flags & RESP_DEFAULT) !== 0,
      });
    }
    return out;
  };

  const meta = sec(TAG.META);
  if (meta.length !== 32) fail(`section META must hold exactly one record (has ${meta.length} bytes)`);
  const m = meta.offset;
  const defaultCode = body[m];
  const defaultKind = body[m + 1];
  const idLog2 = body[m + 2];
  const valLog2 = body[m + 3];
  if (defaultCode > 1) fail(`META defaultAction ${defaultCode} is not 0 or 1`);
  if (defaultKind > 2) fail(`META defaultKind ${defaultKind} is not 0, 1 or 2`);
  if (defaultKind === 2 && defaultCode !== 1) fail("META defaultKind 2 requires defaultAction 1 (deny)");
  if (idLog2 !== 3 && idLog2 !== 4) fail(`META id restart interval 2^${idLog2} is not 8 or 16`);
  if (valLog2 !== 3 && valLog2 !== 4) fail(`META value restart interval 2^${valLog2} is not 8 or 16`);
  const ruleCount = dv.getUint32(m + 16, true);
  const valueCount = dv.getUint32(m + 20, true);
  if (ruleCount > MAX_RULES) fail(`${ruleCount} rules exceed the limit of ${MAX_RULES}`);
  const metaFlags = dv.getUint32(m + 24, true);
  const knownMeta = META_FLAG_GRPC_FIRST | META_FLAG_SAMPLE_ALLOWS;
  if (metaFlags & ~knownMeta) fail(`META unknown flags 0x${(metaFlags & ~knownMeta).toString(16)}`);
  const sampleThreshold = dv.getUint32(m + 28, true);
  if (!(metaFlags & META_FLAG_SAMPLE_ALLOWS) && sampleThreshold !== 0) fail("META offset 28 must be 0 unless allowed requests are sampled");
  const responses = readResponses();
  const maxBodyBytes = dv.getUint32(m + 4, true);

  // EXPR: the programs are validated by the engine (CelProgramSet.decode); here the structure, the program count
  // every RULE.expr must stay below, and META's body settings against what the programs read.
  let expr: Uint8Array | null = null;
  let programCount = 0;
  if (exprSec) {
    expr = Uint8Array.from(body.subarray(exprSec.offset, exprSec.offset + exprSec.length));
    let reads: Set<number>[];
    try {
      const decoded = decodeSection(expr);
      reads = programVariables(decoded);
      programCount = decoded.programs.length;
    } catch (e) {
      fail(`EXPR: ${(e as Error).message}`);
    }
    if (programCount === 0) fail("EXPR: the section holds no programs (leave it out instead)");
    const readsGrpc = reads!.some((r) => r.has(13));
    const readsBody = readsGrpc || reads!.some((r) => r.has(10));
    if (readsBody && maxBodyBytes === 0) fail("META maxBodyBytes is 0, but a condition reads the request body");
    if (!readsBody && maxBodyBytes !== 0) fail(`META maxBodyBytes is ${maxBodyBytes}, but no condition reads the request body`);
    if (metaFlags & META_FLAG_GRPC_FIRST && !readsGrpc) fail("META grpcMessages flag is set, but no condition reads request.grpc.message");
  } else {
    if (maxBodyBytes !== 0) fail(`META maxBodyBytes is ${maxBodyBytes}, but the table has no conditions`);
    if (metaFlags & META_FLAG_GRPC_FIRST) fail("META grpcMessages flag is set, but the table has no conditions");
  }
  if (maxBodyBytes > MAX_REQUEST_BODY_BYTES) fail(`META maxBodyBytes ${maxBodyBytes} exceeds ${MAX_REQUEST_BODY_BYTES}`);

  const pats = sec(TAG.PATS);
  const readPattern = (i: number, what: string): PatternIR => {
    const o = pats.offset + 12 * i;
    const kind = PATTERN_KINDS[body[o]];
    if (!kind || (version < 3 && body[o] > 4)) fail(`${what}: unknown pattern kind ${body[o]}`);
    if (body[o + 1] || body[o + 2] || body[o + 3]) fail(`${what}: pattern reserved bytes must be 0`);
    if (kind === "cidr") {
      const off = dv.getUint32(o + 4, true);
      const len = dv.getUint32(o + 8, true);
      str(o + 4, what); // range check
      const bytes = body.subarray(strs.offset + off, strs.offset + off + len);
      if (len !== 5 && len !== 17) fail(`${what}: a CIDR pattern is ${len} bytes, not 5 or 17`);
      const bits = bytes[len - 1];
      if (bits > (len - 1) * 8) fail(`${what}: CIDR prefix length ${bits} is too long`);
      if (!Buffer.from(maskAddress(bytes.subarray(0, len - 1), bits)).equals(Buffer.from(bytes.subarray(0, len - 1)))) {
        fail(`${what}: CIDR address has bits set after the prefix`);
      }
      return { kind, value: cidrText(bytes) };
    }
    const value = str(o + 4, what);
    if (kind === "present" && value !== "") fail(`${what}: a PRESENT pattern has a value`);
    if ((kind === "prefix" || kind === "suffix") && value === "") fail(`${what}: an empty ${kind} pattern`);
    if (kind === "glob") {
      const problem = globProblem(value);
      if (problem) fail(`${what}: ${problem}`);
    }
    return { kind, value };
  };

  const predSec = sec(TAG.PRED);
  const isHole = (i: number) => (body[predSec.offset + 24 * i + 2] & PRED_HOLE) !== 0;
  /** A PRED record; a HOLE predicate gets `holeValue` as its one EXACT pattern. */
  const readPred = (i: number, what: string, holeValue?: string): PredicateIR => {
    const o = predSec.offset + 24 * i;
    const field = FIELDS[body[o]];
    if (!field || (version < 3 && body[o] > 9)) fail(`${what}: unknown field ${body[o]}`);
    const negate = body[o + 1];
    const flags = body[o + 2];
    if (negate > 1) fail(`${what}: negate must be 0 or 1`);
    if (flags & ~(PRED_IGNORE_CASE | PRED_HOLE | PRED_HOST_NAME)) fail(`${what}: unknown predicate flags 0x${flags.toString(16)}`);
    if (flags & PRED_HOST_NAME && field !== "host") fail(`${what}: the HOST_NAME flag on field ${field}`);
    if (body[o + 3]) fail(`${what}: predicate reserved byte must be 0`);
    const arg = str(o + 4, what);
    if ((field === "attribute" || field === "header" || field === "jwtClaim") !== (arg.length > 0)) {
      fail(`${what}: field ${field} ${arg ? "takes no arg" : "needs an arg"}`);
    }
    const patStart = dv.getUint32(o + 12, true);
    const patCount = dv.getUint32(o + 16, true);
    const exactCount = dv.getUint32(o + 20, true);
    if (flags & PRED_HOLE) {
      if (field !== "principal" && field !== "trustDomain" && field !== "attribute") fail(`${what}: a HOLE predicate on field ${field}`);
      if (negate || flags & PRED_IGNORE_CASE) fail(`${what}: a HOLE predicate is negated or ignores case`);
      if (patStart || patCount || exactCount) fail(`${what}: a HOLE predicate has patterns`);
      if (holeValue === undefined) fail(`${what}: HOLE predicate outside its family's hole`);
      return { field, negate: false, ignoreCase: false, arg, patterns: [{ kind: "exact", value: holeValue }] };
    }
    if (patCount === 0) fail(`${what}: a predicate needs at least one pattern`);
    if (exactCount > patCount) fail(`${what}: exactCount ${exactCount} > patCount ${patCount}`);
    range(patStart, patCount, TAG.PATS, what);
    const patterns: PatternIR[] = [];
    const ipField = field === "remoteIp" || field === "destinationIp";
    if (field === "requestPrincipal" && (patCount % 2 !== 0 || exactCount !== 0 || flags & PRED_IGNORE_CASE)) {
      fail(`${what}: REQUEST_PRINCIPAL patterns come in (iss, sub) pairs, without an exact block or case folding`);
    }
    for (let k = 0; k < patCount; k++) {
      const p = readPattern(patStart + k, what);
      if ((p.kind === "cidr") !== ipField) fail(`${what}: CIDR patterns go with IP fields, and only they`);
      if (k < exactCount) {
        if (p.kind !== "exact") fail(`${what}: pattern ${k} is inside the exact block but is ${p.kind}`);
        if (k > 0 && compareBytes(patterns[k - 1].value, p.value) >= 0) {
          fail(`${what}: exact patterns are not sorted or have duplicates`);
        }
      }
      if (p.kind === "template" && field !== "path") fail(`${what}: templates are for paths only`);
      if (p.kind === "template" && !templateWellFormed(p.value)) fail(`${what}: template ${JSON.stringify(p.value)} uses braces other than whole {*} / {**} segments ({**} last)`);
      if (flags & PRED_IGNORE_CASE && /[A-Z]/.test(p.value)) fail(`${what}: ignore-case pattern is not stored lower-case`);
      patterns.push(p);
    }
    if (field === "header" && /[A-Z]/.test(arg)) fail(`${what}: header name is not lower-case`);
    return { field, negate: negate === 1, ignoreCase: (flags & PRED_IGNORE_CASE) !== 0, ...(flags & PRED_HOST_NAME ? { hostName: true } : {}), arg, patterns };
  };

  type ClauseRec = { start: number; count: number; index: number };
  const clauseRecs = (tag: number, start: number, n: number, what: string): ClauseRec[] => {
    range(start, n, tag, what);
    const s = sec(tag);
    const out: ClauseRec[] = [];
    for (let k = 0; k < n; k++) {
      const o = s.offset + 8 * (start + k);
      const ps = dv.getUint32(o, true);
      const pn = dv.getUint32(o + 4, true);
      range(ps, pn, TAG.PRED, what);
      out.push({ start: ps, count: pn, index: start + k });
    }
    return out;
  };

  // Families partition the rules (checked before the ids, as the engine does).
  const famSec = sec(TAG.FAMS);
  const nFam = count(TAG.FAMS);
  let nextRule = 0;
  for (let f = 0; f < nFam; f++) {
    const o = famSec.offset + 48 * f;
    const firstRule = dv.getUint32(o + 4, true);
    const rowCount = dv.getUint32(o + 8, true);
    if (firstRule !== nextRule) fail(`family ${f}: firstRule ${firstRule}, the families before it hold ${nextRule} rules`);
    if (rowCount === 0) fail(`family ${f}: no rows`);
    if (rowCount > ruleCount - nextRule) fail(`family ${f}: rows exceed the ${ruleCount} rules of META`);
    nextRule += rowCount;
  }
  if (nextRule !== ruleCount) fail(`families hold ${nextRule} rules, META says ${ruleCount}`);

  // Rule ids and hole values.
  const ids = new Set<string>();
  const idList = decodeFrontCoded(body, sec(TAG.IDS), sec(TAG.IDSX), ruleCount, idLog2, "IDS", MAX_RULE_ID_BYTES, (e, _p, i) => {
    const id = utf8.decode(e);
    if (!RULE_ID_PATTERN.test(id)) fail(`rule ${i}: invalid id ${JSON.stringify(id)}`);
    if (ids.has(id)) fail(`rule ${i}: duplicate id ${JSON.stringify(id)}`);
    ids.add(id);
  });
  const values = decodeFrontCoded(body, sec(TAG.VALS), sec(TAG.VALX), valueCount, valLog2, "VALS", MAX_VALUE_BYTES, (e, p, i) => {
    if (i > 0 && Buffer.compare(p, e) >= 0) fail(`VALS entry ${i}: not greater than entry ${i - 1} (values must be sorted and unique)`);
  }).map((v) => utf8.decode(v));

  const rowsSec = sec(TAG.ROWS);
  const rowReader = new VarintReader(body, rowsSec.offset, rowsSec.offset + rowsSec.length, "ROWS");
  const rules: RuleIR[] = [];
  for (let f = 0; f < nFam; f++) {
    const o = famSec.offset + 48 * f;
    const what = `family ${f}`;
    const action = ACTIONS[body[o]];
    if (!action) fail(`${what}: unknown action ${body[o]}`);
    const flags = body[o + 1];
    if (flags & ~(FAM_DRY_RUN | FAM_RECORD_ALLOWS | FAM_METRICS)) fail(`${what}: unknown flags 0x${flags.toString(16)}`);
    const responseRef = dv.getUint16(o + 2, true);
    if (responseRef > responses.length) fail(`${what}: deny response ${responseRef - 1} exceeds RESP (${responses.length} records)`);
    if (responseRef !== 0 && action !== "deny") fail(`${what}: a deny response on a ${action} family`);
    if (flags & FAM_RECORD_ALLOWS && action !== "allow") fail(`${what}: record-allows on a ${action} family`);
    const firstRule = dv.getUint32(o + 4, true);
    const rowCount = dv.getUint32(o + 8, true);
    const exprIndex = dv.getUint32(o + 36, true);
    if (exprIndex !== NO_EXPR && exprIndex >= programCount) {
      fail(expr === null
        ? `${what}: references expression ${exprIndex} but the table has no EXPR section`
        : `${what}: expr ${exprIndex} exceeds the ${programCount} programs of EXPR`);
    }
    const sources = clauseRecs(TAG.SRCC, dv.getUint32(o + 12, true), dv.getUint32(o + 16, true), what);
    const operations = clauseRecs(TAG.OPCL, dv.getUint32(o + 20, true), dv.getUint32(o + 24, true), what);
    const condStart = dv.getUint32(o + 28, true);
    const condCount = dv.getUint32(o + 32, true);
    range(condStart, condCount, TAG.PRED, what);
    const holeClause = dv.getUint32(o + 40, true);
    const holePred = dv.getUint32(o + 44, true);
    if ((holeClause === NO_HOLE) !== (holePred === NO_HOLE)) fail(`${what}: holeClause and holePred must both be set or both be none`);
    const hc = holeClause === NO_HOLE ? undefined : sources.find((c) => c.index === holeClause);
    if (holeClause !== NO_HOLE) {
      if (!hc) fail(`${what}: holeClause ${holeClause} is not one of its source clauses`);
      if (holePred < hc.start || holePred >= hc.start + hc.count) fail(`${what}: holePred ${holePred} is not in its hole clause`);
      if (!isHole(holePred)) fail(`${what}: holePred ${holePred} is not a HOLE predicate`);
    }
    for (const c of sources) {
      for (let p = c.start; p < c.start + c.count; p++) {
        if (isHole(p) && !(c === hc && p === holePred)) fail(`${what}: HOLE predicate ${p} outside its family's hole`);
      }
    }
    for (const c of operations) for (let p = c.start; p < c.start + c.count; p++) if (isHole(p)) fail(`${what}: HOLE predicate ${p} outside its family's hole`);
    for (let p = condStart; p < condStart + condCount; p++) if (isHole(p)) fail(`${what}: HOLE predicate ${p} outside its family's hole`);

    const seen = new Set<number>();
    let prev = 0;
    for (let k = 0; k < rowCount; k++) {
      const r = firstRule + k;
      let value: string | undefined;
      if (hc) {
        const z = rowReader.next();
        const v = prev + (z % 2 === 0 ? z / 2 : -(z + 1) / 2);
        if (v < 0 || v >= valueCount) fail(`${what}: row ${k} refers to value ${v}, outside VALS (${valueCount} entries)`);
        if (seen.has(v)) fail(`${what}: rows have the same hole value ${v}`);
        seen.add(v);
        prev = v;
        value = values[v];
      }
      const id = utf8.decode(idList[r]);
      const rwhat = `rule ${JSON.stringify(id)}`;
      const clauses = (cs: ClauseRec[]): ClauseIR[] =>
        cs.map((c) => {
          const predicates: PredicateIR[] = [];
          for (let p = c.start; p < c.start + c.count; p++) predicates.push(readPred(p, rwhat, c === hc && p === holePred ? value : undefined));
          return { predicates };
        });
      const conditions: PredicateIR[] = [];
      for (let p = condStart; p < condStart + condCount; p++) conditions.push(readPred(p, rwhat));
      rules.push({
        id, action, dryRun: (flags & FAM_DRY_RUN) !== 0, sources: clauses(sources), operations: clauses(operations), conditions,
        expr: exprIndex === NO_EXPR ? null : exprIndex,
        ...(flags & FAM_RECORD_ALLOWS ? { recordAllows: true } : {}),
        ...(flags & FAM_METRICS ? { metrics: true } : {}),
        ...(responseRef !== 0 ? { denyResponse: responseRef - 1 } : {}),
      });
    }
  }
  if (rowReader.pos !== rowReader.end) fail(`ROWS: ${rowReader.end - rowReader.pos} bytes after the last row`);
  checkIndexLimits(body, dv, famSec, nFam, sec(TAG.SRCC), predSec);

  const schm = sec(TAG.SCHM);
  const skey = sec(TAG.SKEY);
  const schemas: SchemaIR[] = [];
  const tds = new Set<string>();
  for (let i = 0; i < count(TAG.SCHM); i++) {
    const o = schm.offset + 16 * i;
    const trustDomain = str(o, `schema ${i}`);
    if (trustDomain === "") fail(`schema ${i}: empty trust domain`);
    if (tds.has(trustDomain)) fail(`two schemas for trust domain ${JSON.stringify(trustDomain)}`);
    tds.add(trustDomain);
    const ks = dv.getUint32(o + 8, true);
    const kn = dv.getUint32(o + 12, true);
    range(ks, kn, TAG.SKEY, `schema ${JSON.stringify(trustDomain)}`);
    const keys: string[] = [];
    for (let k = 0; k < kn; k++) {
      const key = str(skey.offset + 8 * (ks + k), `schema ${JSON.stringify(trustDomain)}`);
      if (key === "") fail(`schema ${JSON.stringify(trustDomain)}: empty key`);
      keys.push(key);
    }
    schemas.push({ trustDomain, keys });
  }

  return {
    ir: {
      defaultAction: defaultCode === 1 ? "deny" : "allow",
      defaultKind: defaultKind as DefaultKind,
      maxBodyBytes,
      grpcFirst: (metaFlags & META_FLAG_GRPC_FIRST) !== 0,
      expr,
      label: str(m + 8, "META label"),
      rules,
      schemas,
      ...(metaFlags & META_FLAG_SAMPLE_ALLOWS ? { allowSampleRate: sampleThreshold / 2 ** 32 } : {}),
      ...(responses.length ? { denyResponses: responses.map((r) => r.response) } : {}),
      ...(responses.some((r) => r.isDefault) ? { defaultDenyResponse: responses.findIndex((r) => r.isDefault) } : {}),
    },
    families: nFam,
  };
}

/** Decodes a plugin configuration string. Throws {@link TableFormatError}. */
export function decodeConfig(text: string): DecodedTable {
  const { envelope, headers } = parsePluginConfiguration(text);
  const { body, tableHash, flags, version } = decodeEnvelope(envelope);
  const { ir, families } = decodeBodyFamilies(body, version);
  return { ir, tableHash, body, envelope, flags, families, headers };
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
