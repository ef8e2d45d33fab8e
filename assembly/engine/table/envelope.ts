// The envelope of a policy table (docs/table-format.md §2): header, CRC over the stored payload, raw DEFLATE, and
// byte-planar records restored to row-major; then the section directory. What comes out is a PolicyTable whose
// section pointers are set and checked against the body, not yet validated (validate.ts).

import { uninitializedBuffer } from "../bytes";
import { crc32 } from "../crc32";
import { inflateRaw } from "../inflate";
import {
  CLAUSE_SIZE, ENVELOPE_SIZE, FAM_SIZE, FLAG_DEFLATE, FLAG_PLANAR, MAX_BODY_BYTES, META_SIZE, OLDEST_VERSION,
  PAT_SIZE, PRED_SIZE, RECORD_SIZE, RESP_SIZE, RHDR_SIZE, SCHM_SIZE, SECTION_NAME, SKEY_SIZE, TAG_COUNT, TAG_EXPR,
  TAG_FAMS, TAG_IDS, TAG_IDSX, TAG_META, TAG_OPCL, TAG_PATS, TAG_PRED, TAG_RESP, TAG_RHDR, TAG_ROWS, TAG_SCHM,
  TAG_SKEY, TAG_SRCC, TAG_STRS, TAG_VALS, TAG_VALX, VERSION,
} from "./format";
import { fail, PolicyTable, TableResult } from "./policy-table";

/** `v` as 8 lower-case hex digits (error messages). */
export function hex32(v: u32): string {
  let s = "";
  for (let i = 7; i >= 0; i--) s += "0123456789abcdef".charAt((v >> (i * 4)) & 15);
  return s;
}

/**
 * Opens an envelope (the base64-decoded plugin configuration): checks the header and CRC, inflates, reads the
 * section directory and restores row-major records. The table is not validated yet. Errors start with "table: ".
 */
export function openEnvelope(ptr: usize, len: i32): TableResult {
  const r = new TableResult();
  if (len < ENVELOPE_SIZE) {
    return fail(r, "table: envelope is " + len.toString() + " bytes, shorter than its 24-byte header");
  }
  if (load<u8>(ptr) != 0x53 || load<u8>(ptr, 1) != 0x50 || load<u8>(ptr, 2) != 0x41 || load<u8>(ptr, 3) != 0x5a) {
    return fail(r, "table: bad magic (not a spiffe-authz policy table)");
  }
  const version = <u32>load<u16>(ptr, 4);
  if (version < OLDEST_VERSION || version > VERSION) {
    return fail(r, "table: unsupported version " + version.toString() + " (this filter reads versions 2 and 3)");
  }
  const flags = <u32>load<u16>(ptr, 6);
  if ((flags & ~(FLAG_DEFLATE | FLAG_PLANAR)) != 0) {
    return fail(r, "table: unknown envelope flags 0x" + hex32(flags & ~(FLAG_DEFLATE | FLAG_PLANAR)));
  }
  let hash = "";
  for (let i = 0; i < 8; i++) {
    const b = <u32>load<u8>(ptr + 8 + <usize>i);
    hash += "0123456789abcdef".charAt(b >> 4) + "0123456789abcdef".charAt(b & 15);
  }
  const bodyLen = load<u32>(ptr, 16);
  const crc = load<u32>(ptr, 20);
  if (bodyLen > MAX_BODY_BYTES) {
    return fail(r, "table: bodyLen " + bodyLen.toString() + " exceeds 64 MiB");
  }
  const payload = ptr + <usize>ENVELOPE_SIZE;
  const payloadLen = len - ENVELOPE_SIZE;
  // The CRC describes the payload as stored (compressed): a corrupt payload is caught before anything is
  // inflated or allocated, at the cost of hashing the small compressed form rather than the body.
  const actual = crc32(payload, <usize>payloadLen);
  if (actual != crc) {
    return fail(r, "table: crc32 mismatch (envelope 0x" + hex32(crc) + ", payload 0x" + hex32(actual) + ")");
  }
  if ((flags & FLAG_DEFLATE) == 0) {
    if (<u32>payloadLen != bodyLen) {
      return fail(r, "table: uncompressed payload is " + payloadLen.toString() + " bytes, bodyLen says " + bodyLen.toString());
    }
  } else if (<u64>bodyLen > <u64>payloadLen * 1032 + 64) {
    // DEFLATE cannot expand more than 1032:1: refuse before allocating what a hostile header asks for.
    return fail(r, "table: bodyLen " + bodyLen.toString() + " is more than " + payloadLen.toString() + " compressed bytes can hold");
  }
  const planar = (flags & FLAG_PLANAR) != 0;
  // Restoring planar records needs scratch memory as large as the largest section. Allocate it before the body:
  // AssemblyScript's allocator grows memory by at least its current size, so a scratch block requested after
  // the body could double the VM's memory for good (wasm memory never shrinks).
  let scratch: usize = 0;
  let scratchLen: u32 = 0;
  if (planar) {
    scratchLen = largestSection(payload, payloadLen, bodyLen, (flags & FLAG_DEFLATE) != 0);
    if (scratchLen > 0) scratch = heap.alloc(<usize>scratchLen);
  }
  // Every byte is written below (inflation must produce exactly bodyLen bytes), so no zeroing.
  const body = uninitializedBuffer(<i32>bodyLen);
  const base = changetype<usize>(body);
  if ((flags & FLAG_DEFLATE) != 0) {
    const err = inflateRaw(payload, payloadLen, base, <i32>bodyLen);
    if (err.length != 0) {
      if (scratch != 0) heap.free(scratch);
      return fail(r, "table: " + err);
    }
  } else {
    memory.copy(base, payload, <usize>bodyLen);
  }
  const t = new PolicyTable(body);
  t.hashHex = hash;
  t.version = version;
  const err = readDirectory(t, planar, scratch, scratchLen);
  if (scratch != 0) heap.free(scratch);
  if (err.length != 0) return fail(r, "table: " + err);
  r.table = t;
  return r;
}

/** The length of section `tag` in the directory openEnvelope read last (0 when absent). */
export function sectionLength(tag: u32): u32 {
  return unchecked(secLen[tag]);
}

// Section directory entries, filled by readDirectory.
const secOff = new StaticArray<u32>(TAG_COUNT + 1);
const secLen = new StaticArray<u32>(TAG_COUNT + 1);

/**
 * Reads and checks the section directory, then (for a byte-planar body) restores row-major records in place.
 */
function readDirectory(t: PolicyTable, planar: bool, scratch: usize, scratchLen: u32): string {
  const base = t.base;
  const bodyLen = t.bodyLen;
  if (bodyLen < 4) return "body is " + bodyLen.toString() + " bytes, too short for a section directory";
  const count = load<u32>(base);
  const dirEnd = <u64>4 + <u64>count * 12;
  if (dirEnd > <u64>bodyLen) {
    return "section directory of " + count.toString() + " entries exceeds the body (" + bodyLen.toString() + " bytes)";
  }
  for (let tag = 0; tag <= TAG_COUNT; tag++) {
    unchecked((secOff[tag] = 0xffffffff));
    unchecked((secLen[tag] = 0));
  }
  for (let i: u32 = 0; i < count; i++) {
    const e = base + 4 + <usize>(i * 12);
    const tag = load<u32>(e);
    const off = load<u32>(e, 4);
    const len = load<u32>(e, 8);
    if (tag < 1 || tag > <u32>TAG_COUNT) {
      return "section directory entry " + i.toString() + ": unknown section tag " + tag.toString();
    }
    const name = unchecked(SECTION_NAME[tag]);
    if (unchecked(secOff[tag]) != 0xffffffff) return "section " + name + " appears more than once";
    if (<u64>off + <u64>len > <u64>bodyLen) {
      return "section " + name + ": offset " + off.toString() + " + length " + len.toString() + " exceeds the body (" + bodyLen.toString() + " bytes)";
    }
    if (len > 0 && <u64>off < dirEnd) return "section " + name + " overlaps the section directory";
    const size = unchecked(RECORD_SIZE[tag]);
    if (len % size != 0) {
      return "section " + name + ": length " + len.toString() + " is not a multiple of its record size " + size.toString();
    }
    unchecked((secOff[tag] = off));
    unchecked((secLen[tag] = len));
  }
  for (let tag: u32 = 1; tag <= <u32>TAG_COUNT; tag++) {
    // EXPR (conditions), RESP and RHDR (deny replies) are optional: tables without them do not carry them.
    if (unchecked(secOff[tag]) == 0xffffffff && tag < TAG_EXPR) return "section " + unchecked(SECTION_NAME[tag]) + " is missing";
  }
  const hasResp = unchecked(secOff[TAG_RESP]) != 0xffffffff;
  if (hasResp != (unchecked(secOff[TAG_RHDR]) != 0xffffffff)) return "sections RESP and RHDR go together";
  if (hasResp && t.version < 3) return "section RESP in a version " + t.version.toString() + " table";
  if (hasResp && unchecked(secLen[TAG_RESP]) == 0) return "section RESP holds no records (leave RESP and RHDR out instead)";
  if (unchecked(secLen[TAG_META]) != META_SIZE) {
    return "section META: length " + unchecked(secLen[TAG_META]).toString() + ", expected exactly one 32-byte record";
  }
  for (let a = 1; a <= TAG_COUNT; a++) {
    const la = unchecked(secLen[a]);
    if (la == 0) continue;
    const oa = unchecked(secOff[a]);
    for (let b = a + 1; b <= TAG_COUNT; b++) {
      const lb = unchecked(secLen[b]);
      if (lb == 0) continue;
      const ob = unchecked(secOff[b]);
      if (oa < ob + lb && ob < oa + la) {
        return "sections " + unchecked(SECTION_NAME[a]) + " and " + unchecked(SECTION_NAME[b]) + " overlap";
      }
    }
  }
  if (planar) unplane(base, scratch, scratchLen);
  t.strs = base + <usize>unchecked(secOff[TAG_STRS]);
  t.strsLen = unchecked(secLen[TAG_STRS]);
  t.meta = base + <usize>unchecked(secOff[TAG_META]);
  t.fams = base + <usize>unchecked(secOff[TAG_FAMS]);
  t.famCount = unchecked(secLen[TAG_FAMS]) / FAM_SIZE;
  t.srcc = base + <usize>unchecked(secOff[TAG_SRCC]);
  t.srccCount = unchecked(secLen[TAG_SRCC]) / CLAUSE_SIZE;
  t.opcl = base + <usize>unchecked(secOff[TAG_OPCL]);
  t.opclCount = unchecked(secLen[TAG_OPCL]) / CLAUSE_SIZE;
  t.preds = base + <usize>unchecked(secOff[TAG_PRED]);
  t.predCount = unchecked(secLen[TAG_PRED]) / PRED_SIZE;
  t.pats = base + <usize>unchecked(secOff[TAG_PATS]);
  t.patCount = unchecked(secLen[TAG_PATS]) / PAT_SIZE;
  t.schm = base + <usize>unchecked(secOff[TAG_SCHM]);
  t.schemaCount = unchecked(secLen[TAG_SCHM]) / SCHM_SIZE;
  t.skey = base + <usize>unchecked(secOff[TAG_SKEY]);
  t.skeyCount = unchecked(secLen[TAG_SKEY]) / SKEY_SIZE;
  t.ids.ptr = base + <usize>unchecked(secOff[TAG_IDS]);
  t.ids.restarts = base + <usize>unchecked(secOff[TAG_IDSX]);
  t.vals.ptr = base + <usize>unchecked(secOff[TAG_VALS]);
  t.vals.restarts = base + <usize>unchecked(secOff[TAG_VALX]);
  t.rows = base + <usize>unchecked(secOff[TAG_ROWS]);
  t.rowsLen = unchecked(secLen[TAG_ROWS]);
  t.hasExpr = unchecked(secOff[TAG_EXPR]) != 0xffffffff;
  if (t.hasExpr) {
    t.exprPtr = base + <usize>unchecked(secOff[TAG_EXPR]);
    t.exprLen = unchecked(secLen[TAG_EXPR]);
  }
  if (hasResp) {
    t.resp = base + <usize>unchecked(secOff[TAG_RESP]);
    t.respCount = unchecked(secLen[TAG_RESP]) / RESP_SIZE;
    t.rhdr = base + <usize>unchecked(secOff[TAG_RHDR]);
    t.rhdrCount = unchecked(secLen[TAG_RHDR]) / RHDR_SIZE;
  }
  return "";
}

/**
 * Byte-planar -> row-major, per section with records wider than one byte: stored byte `off + k*n + i` is body
 * byte `off + i*R + k`. Uses one scratch buffer the size of the largest section.
 */
function unplane(base: usize, scratch: usize, scratchLen: u32): void {
  let maxLen: u32 = 0;
  for (let tag = 1; tag <= TAG_COUNT; tag++) {
    if (unchecked(RECORD_SIZE[tag]) > 1 && unchecked(secLen[tag]) > maxLen) maxLen = unchecked(secLen[tag]);
  }
  if (maxLen == 0) return;
  // The caller's scratch came from a peek at the same directory; allocate here only if that peek fell short.
  const own = scratchLen < maxLen;
  const buf = own ? heap.alloc(<usize>maxLen) : scratch;
  for (let tag = 1; tag <= TAG_COUNT; tag++) {
    const R = unchecked(RECORD_SIZE[tag]);
    const len = unchecked(secLen[tag]);
    if (R == 1 || len == 0) continue;
    const sec = base + <usize>unchecked(secOff[tag]);
    memory.copy(buf, sec, <usize>len);
    transpose(sec, buf, <usize>R, <usize>(len / R));
  }
  if (own) heap.free(buf);
}

/**
 * The largest length of a section with records wider than one byte in the directory at the start of the stored
 * body, read without inflating the rest; 0 when the directory cannot be read (readDirectory then reports why).
 */
function largestSection(payload: usize, payloadLen: i32, bodyLen: u32, deflated: bool): u32 {
  const want = <i32>min<u32>(bodyLen, 4 + TAG_COUNT * 12);
  if (want < 4) return 0;
  const dir = heap.alloc(<usize>want);
  let ok = true;
  if (deflated) ok = inflateRaw(payload, payloadLen, dir, want, true).length == 0;
  else memory.copy(dir, payload, <usize>want);
  let max: u32 = 0;
  if (ok) {
    const count = min<u32>(load<u32>(dir), <u32>(want - 4) / 12);
    for (let i: u32 = 0; i < count; i++) {
      const e = dir + 4 + <usize>(i * 12);
      const tag = load<u32>(e);
      const len = load<u32>(e, 8);
      if (tag >= 1 && tag <= <u32>TAG_COUNT && unchecked(RECORD_SIZE[tag]) > 1 && len <= bodyLen && len > max) max = len;
    }
  }
  heap.free(dir);
  return max;
}

/**
 * Writes n records of R bytes at `dst` from R planes of n bytes at `src`. Four records by four planes at a time:
 * four u32 loads, a 4x4 byte transpose in registers, four u32 stores (every record size of the format is a
 * multiple of 4; anything left goes byte by byte).
 */
function transpose(dst: usize, src: usize, R: usize, n: usize): void {
  let i: usize = 0;
  if ((R & 3) == 0) {
    for (; i + 4 <= n; i += 4) {
      for (let k: usize = 0; k < R; k += 4) {
        const p = src + k * n + i;
        const a = load<u32>(p); // byte k of records i..i+3
        const b = load<u32>(p + n); // byte k+1
        const c = load<u32>(p + 2 * n);
        const d = load<u32>(p + 3 * n);
        const abLo = (a & 0x00ff00ff) | ((b & 0x00ff00ff) << 8); // records i, i+2: (a, b) byte pairs
        const abHi = ((a >>> 8) & 0x00ff00ff) | (b & 0xff00ff00); // records i+1, i+3
        const cdLo = (c & 0x00ff00ff) | ((d & 0x00ff00ff) << 8);
        const cdHi = ((c >>> 8) & 0x00ff00ff) | (d & 0xff00ff00);
        const q = dst + i * R + k;
        store<u32>(q, (abLo & 0xffff) | (cdLo << 16));
        store<u32>(q + R, (abHi & 0xffff) | (cdHi << 16));
        store<u32>(q + 2 * R, (abLo >>> 16) | (cdLo & 0xffff0000));
        store<u32>(q + 3 * R, (abHi >>> 16) | (cdHi & 0xffff0000));
      }
    }
  }
  for (; i < n; i++) {
    for (let k: usize = 0; k < R; k++) store<u8>(dst + i * R + k, load<u8>(src + k * n + i));
  }
}
