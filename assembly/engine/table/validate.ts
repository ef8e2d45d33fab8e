// Validation of a table's records (docs/table-format.md §3, §4): every offset, count, range, varint and
// front-coded entry is checked once, at load; after that the request path reads records without bounds checks.
// Errors say what is wrong and where.

import { CelProgramSet, celLoadError, STANDARD_VAR_KINDS, VAR_REQUEST_GRPC_MESSAGE, VAR_REQUEST_JSON, VAR_REQUEST_PATH } from "../cel/index";
import { bytesCompare, bytesEqual, hashBytes, hashFinish, HASH_SEED, hasUpperAscii } from "../bytes";
import { TableConditions } from "../conditions";
import { FrontCoded, VarintCursor } from "../frontcode";
import { cidrProblem, globProblem, globScratch } from "../glob";
import { PrincipalIndex } from "../principal-index";
import { hex32, sectionLength } from "./envelope";
import {
  Action, CLAUSE_SIZE, FAM_FLAG_DRY_RUN, FAM_FLAG_METRICS, FAM_FLAG_RECORD_ALLOWS, Field, MAX_FIELD,
  MAX_REQUEST_BODY_BYTES, MAX_RULE_ID_BYTES, MAX_RULES, MAX_SHADOW_RANGES, MAX_VALUE_BYTES, META_FLAG_GRPC_FIRST,
  META_FLAG_SAMPLE_ALLOWS, NO_EXPR, NO_HOLE, PatternKind, PRED_FLAG_HOLE, PRED_FLAG_HOST_NAME, PRED_FLAG_IGNORE_CASE,
  RESP_FLAG_DEFAULT, RESP_FLAG_REQUEST_ID, RESP_GRPC_DEFAULT, RHDR_SIZE, SCHM_SIZE, SKEY_SIZE, TAG_IDS, TAG_IDSX,
  TAG_VALS, TAG_VALX,
} from "./format";
import { PolicyTable } from "./policy-table";

// Rule id characters: [A-Za-z0-9._:/\-\[\]#@] (they go into Envoy response details, which allow no spaces).
const ID_CHAR = new StaticArray<u8>(256);
function initIdChars(): void {
  const extra = "._:/-[]#@";
  for (let c = 0; c < 256; c++) {
    const ok = (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57);
    unchecked((ID_CHAR[c] = ok ? 1 : 0));
  }
  for (let i = 0; i < extra.length; i++) unchecked((ID_CHAR[extra.charCodeAt(i)] = 1));
}
initIdChars();

// @ts-ignore: decorator
@inline function rangeExceeds(start: u32, count: u32, limit: u32): bool {
  return <u64>start + <u64>count > <u64>limit;
}

/** "family 12" etc. Built only when reporting an error (validation runs over 100k-record tables). */
function at(kind: string, i: u32): string {
  return kind + " " + i.toString();
}

/** Checks a Str (off, len) against the string pool; "" when fine. `kind i: what` says where. */
function strProblem(t: PolicyTable, rec: usize, kind: string, i: u32, what: string): string {
  const off = load<u32>(rec);
  const len = load<u32>(rec, 4);
  if (rangeExceeds(off, len, t.strsLen)) {
    const where = kind.length != 0 ? at(kind, i) + ": " : "";
    return where + what + " string (offset " + off.toString() + ", length " + len.toString() + ") exceeds STRS (" + t.strsLen.toString() + " bytes)";
  }
  return "";
}

/**
 * Validates every record of the body but the rule ids and hole values, which the loader checks while it builds
 * the index (load.ts): the id check borrows the index's slot array as its scratch set.
 */
export function validateRecords(t: PolicyTable): string {
  let e = validateMeta(t);
  if (e.length != 0) return e;
  e = validateExpr(t);
  if (e.length != 0) return e;
  e = validatePatterns(t);
  if (e.length != 0) return e;
  e = validatePreds(t);
  if (e.length != 0) return e;
  e = validateClauses(t, t.srcc, t.srccCount, "source clause ");
  if (e.length != 0) return e;
  e = validateClauses(t, t.opcl, t.opclCount, "operation clause ");
  if (e.length != 0) return e;
  e = validateResponses(t);
  if (e.length != 0) return e;
  e = validateFamilies(t);
  if (e.length != 0) return e;
  e = validateSchemas(t);
  if (e.length != 0) return e;
  e = checkRestarts(t, TAG_IDSX, "IDSX", t.ruleCount, t.ids.log2);
  if (e.length != 0) return e;
  e = checkRestarts(t, TAG_VALX, "VALX", t.valueCount, t.vals.log2);
  if (e.length != 0) return e;

  // Every entry of a front-coded list takes at least its two varints: counts that the sections cannot hold are
  // refused before they size any allocation.
  if (<u64>t.ruleCount * 2 > <u64>secLenOf(TAG_IDS)) {
    return "IDS: " + secLenOf(TAG_IDS).toString() + " bytes cannot hold the " + t.ruleCount.toString() + " ids of META";
  }
  if (<u64>t.valueCount * 2 > <u64>secLenOf(TAG_VALS)) {
    return "VALS: " + secLenOf(TAG_VALS).toString() + " bytes cannot hold the " + t.valueCount.toString() + " values of META";
  }
  return "";
}

// @ts-ignore: decorator
@inline function secLenOf(tag: u32): u32 {
  return sectionLength(tag);
}

function validateMeta(t: PolicyTable): string {
  const m = t.meta;
  const action = load<u8>(m);
  const kind = load<u8>(m, 1);
  if (action > 1) return "meta: defaultAction " + action.toString() + " is not 0 (ALLOW) or 1 (DENY)";
  if (kind > 2) return "meta: defaultKind " + kind.toString() + " is not 0, 1 or 2";
  if (kind == 2 && action != 1) return "meta: defaultKind 2 requires defaultAction 1 (DENY)";
  const idLog2 = load<u8>(m, 2);
  const valLog2 = load<u8>(m, 3);
  if (idLog2 != 3 && idLog2 != 4) return "meta: id restart interval 2^" + idLog2.toString() + " is not 8 or 16";
  if (valLog2 != 3 && valLog2 != 4) return "meta: value restart interval 2^" + valLog2.toString() + " is not 8 or 16";
  const e = strProblem(t, m + 8, "", 0, "meta: label");
  if (e.length != 0) return e;
  const rules = load<u32>(m, 16);
  if (rules > MAX_RULES) return "meta: " + rules.toString() + " rules exceed the limit of 16777216";
  const flags = load<u32>(m, 24);
  const known = META_FLAG_GRPC_FIRST | META_FLAG_SAMPLE_ALLOWS;
  if ((flags & ~known) != 0) return "meta: unknown flags 0x" + hex32(flags & ~known);
  t.metaFlags = flags;
  t.maxBodyBytes = load<u32>(m, 4);
  t.sampleAllows = (flags & META_FLAG_SAMPLE_ALLOWS) != 0;
  t.sampleThreshold = load<u32>(m, 28);
  if (!t.sampleAllows && t.sampleThreshold != 0) return "meta: bytes 28..31 are not 0, but allowed requests are not sampled";
  t.defaultAction = action;
  t.defaultKind = kind;
  t.ruleCount = rules;
  t.valueCount = load<u32>(m, 20);
  t.ids.count = rules;
  t.ids.log2 = idLog2;
  t.vals.count = t.valueCount;
  t.vals.log2 = valLog2;
  return "";
}

/**
 * The EXPR section: every program validated by CelProgramSet.decode (docs/cel.md "Validation at load"), and META's
 * body settings consistent with what the programs read: maxBodyBytes is set exactly when some program reads a
 * body, and the grpcMessages flag only when some program reads request.grpc.message.
 */
function validateExpr(t: PolicyTable): string {
  let readsBody = false;
  let readsGrpc = false;
  if (t.hasExpr) {
    const set = CelProgramSet.decode(t.exprPtr, <i32>t.exprLen, STANDARD_VAR_KINDS);
    if (set === null) return "EXPR: " + celLoadError;
    if (set.count == 0) return "EXPR: the section holds no programs (leave it out instead)";
    readsGrpc = set.readsVariable(VAR_REQUEST_GRPC_MESSAGE);
    if (set.readsVariable(VAR_REQUEST_PATH)) t.readsPath = true;
    readsBody = readsGrpc || set.readsVariable(VAR_REQUEST_JSON);
    t.cond = new TableConditions(set, t.maxBodyBytes, (t.metaFlags & META_FLAG_GRPC_FIRST) != 0);
  }
  if (readsBody && t.maxBodyBytes == 0) return "meta: maxBodyBytes is 0, but a condition reads the request body";
  if (!readsBody && t.maxBodyBytes != 0) return "meta: maxBodyBytes is " + t.maxBodyBytes.toString() + ", but no condition reads the request body";
  if (t.maxBodyBytes > MAX_REQUEST_BODY_BYTES) return "meta: maxBodyBytes " + t.maxBodyBytes.toString() + " exceeds 64 MiB";
  if ((t.metaFlags & META_FLAG_GRPC_FIRST) != 0 && !readsGrpc) return "meta: the grpcMessages flag is set, but no condition reads request.grpc.message";
  return "";
}

function validatePatterns(t: PolicyTable): string {
  for (let i: u32 = 0; i < t.patCount; i++) {
    const rec = t.pat(i);
    const kind = load<u8>(rec);
    const maxKind: u8 = t.version >= 3 ? 6 : 4;
    if (kind > maxKind) return "pattern " + i.toString() + ": kind " + kind.toString() + " is not 0.." + maxKind.toString() + " (table version " + t.version.toString() + ")";
    if (load<u8>(rec, 1) != 0 || load<u16>(rec, 2) != 0) return "pattern " + i.toString() + ": reserved bytes 1..3 are not 0";
    const e = strProblem(t, rec + 4, "pattern", i, "value");
    if (e.length != 0) return e;
    if (kind == <u8>PatternKind.PRESENT && load<u32>(rec, 8) != 0) return "pattern " + i.toString() + ": PRESENT pattern has a value";
    if (kind == <u8>PatternKind.TEMPLATE) {
      const te = templateProblem(t.patValuePtr(i), t.patValueLen(i));
      if (te.length != 0) return "pattern " + i.toString() + ": " + te;
    }
    if (kind == <u8>PatternKind.GLOB) {
      const ge = globProblem(t.patValuePtr(i), t.patValueLen(i));
      if (ge.length != 0) return "pattern " + i.toString() + ": " + ge;
      globScratch();
    }
    if (kind == <u8>PatternKind.CIDR) {
      const ce = cidrProblem(t.patValuePtr(i), t.patValueLen(i));
      if (ce.length != 0) return "pattern " + i.toString() + ": " + ce;
    }
    if ((kind == <u8>PatternKind.PREFIX || kind == <u8>PatternKind.SUFFIX) && load<u32>(rec, 8) == 0) {
      return "pattern " + i.toString() + ": empty " + (kind == <u8>PatternKind.PREFIX ? "PREFIX" : "SUFFIX") + " pattern";
    }
  }
  return "";
}

/** `{*}` and `{**}` must be whole segments, `{**}` only the last one; no other use of braces. */
function templateProblem(p: usize, len: i32): string {
  let start = 0;
  while (start <= len) {
    let end = start;
    while (end < len && load<u8>(p + <usize>end) != 47) end++;
    const n = end - start;
    let braces = false;
    for (let i = start; i < end; i++) {
      const c = load<u8>(p + <usize>i);
      if (c == 123 || c == 125) braces = true;
    }
    if (braces) {
      const star1 = n == 3 && load<u8>(p + <usize>start) == 123 && load<u8>(p + <usize>(start + 1)) == 42 && load<u8>(p + <usize>(start + 2)) == 125;
      const star2 = n == 4 && load<u8>(p + <usize>start) == 123 && load<u8>(p + <usize>(start + 1)) == 42 && load<u8>(p + <usize>(start + 2)) == 42 && load<u8>(p + <usize>(start + 3)) == 125;
      if (!star1 && !star2) return "template segment at byte " + start.toString() + " uses braces other than {*} or {**}";
      if (star2 && end != len) return "template {**} is not the last segment";
    }
    start = end + 1;
  }
  return "";
}

function validatePreds(t: PolicyTable): string {
  for (let p: u32 = 0; p < t.predCount; p++) {
    const rec = t.pred(p);
    const field = load<u8>(rec);
    const maxField: u8 = t.version >= 3 ? MAX_FIELD : <u8>Field.SNI;
    if (field < 1 || field > maxField) return at("pred", p) + ": field " + field.toString() + " is not 1.." + maxField.toString() + " (table version " + t.version.toString() + ")";
    const negate = load<u8>(rec, 1);
    if (negate > 1) return at("pred", p) + ": negate " + negate.toString() + " is not 0 or 1";
    if (field == <u8>Field.PATH) t.readsPath = true;
    const flags = load<u8>(rec, 2);
    if ((flags & ~(PRED_FLAG_IGNORE_CASE | PRED_FLAG_HOLE | PRED_FLAG_HOST_NAME)) != 0) return at("pred", p) + ": unknown flags 0x" + hex32(flags).substring(6);
    if ((flags & PRED_FLAG_HOST_NAME) != 0 && field != <u8>Field.HOST) return at("pred", p) + ": the HOST_NAME flag on field " + field.toString() + " (only HOST)";
    if (load<u8>(rec, 3) != 0) return at("pred", p) + ": reserved byte 3 is not 0";
    const e = strProblem(t, rec + 4, "pred", p, "arg");
    if (e.length != 0) return e;
    const argLen = load<u32>(rec, 8);
    const argPtr = t.strPtr(load<u32>(rec, 4));
    if (field == <u8>Field.ATTRIBUTE || field == <u8>Field.HEADER || field == <u8>Field.JWT_CLAIM) {
      if (argLen == 0) return at("pred", p) + ": " + (field == <u8>Field.HEADER ? "HEADER" : field == <u8>Field.JWT_CLAIM ? "JWT_CLAIM" : "ATTRIBUTE") + " predicate has an empty arg";
      if (field == <u8>Field.HEADER && hasUpperAscii(argPtr, <i32>argLen)) return at("pred", p) + ": header name is not lower-case";
    } else if (argLen != 0) {
      return at("pred", p) + ": field " + field.toString() + " takes no arg";
    }
    const patStart = load<u32>(rec, 12);
    const patCount = load<u32>(rec, 16);
    const exactCount = load<u32>(rec, 20);
    if ((flags & PRED_FLAG_HOLE) != 0) {
      // A hole is an identity predicate that the index can prove exactly (docs/table-format.md "Rule families").
      if (field > <u8>Field.ATTRIBUTE) return at("pred", p) + ": HOLE predicate on field " + field.toString() + " (only 1..3)";
      if (negate != 0 || (flags & PRED_FLAG_IGNORE_CASE) != 0) return at("pred", p) + ": HOLE predicate is negated or ignores case";
      if (patStart != 0 || patCount != 0 || exactCount != 0) return at("pred", p) + ": HOLE predicate has patterns";
      continue;
    }
    if (patCount == 0) return at("pred", p) + ": patCount is 0";
    if (rangeExceeds(patStart, patCount, t.patCount)) {
      return at("pred", p) + ": patStart+patCount exceeds PATS (" + t.patCount.toString() + " records)";
    }
    if (exactCount > patCount) return at("pred", p) + ": exactCount " + exactCount.toString() + " exceeds patCount " + patCount.toString();
    const fold = (flags & PRED_FLAG_IGNORE_CASE) != 0;
    const ipField = field == <u8>Field.REMOTE_IP || field == <u8>Field.DESTINATION_IP;
    if (field == <u8>Field.REQUEST_PRINCIPAL) {
      // (iss, sub) pairs: no exact block, no case folding.
      if ((patCount & 1) != 0) return at("pred", p) + ": REQUEST_PRINCIPAL patterns do not come in (iss, sub) pairs";
      if (exactCount != 0 || fold) return at("pred", p) + ": REQUEST_PRINCIPAL predicate has an exact block or ignores case";
    }
    for (let i: u32 = 0; i < patCount; i++) {
      const pi = patStart + i;
      const kind = load<u8>(t.pat(pi));
      if (i < exactCount) {
        if (kind != <u8>PatternKind.EXACT) return at("pred", p) + ": pattern " + pi.toString() + " is in the exact block but is not EXACT";
        if (i > 0) {
          const c = bytesCompare(t.patValuePtr(pi - 1), t.patValueLen(pi - 1), t.patValuePtr(pi), t.patValueLen(pi));
          if (c >= 0) {
            return at("pred", p) + ": exact patterns " + (pi - 1).toString() + " and " + pi.toString() + (c == 0 ? " are duplicates" : " are not sorted");
          }
        }
      }
      if (kind == <u8>PatternKind.TEMPLATE && field != <u8>Field.PATH) return at("pred", p) + ": TEMPLATE pattern " + pi.toString() + " on a field other than PATH";
      if ((kind == <u8>PatternKind.CIDR) != ipField) return at("pred", p) + ": pattern " + pi.toString() + (ipField ? " on an IP field is not CIDR" : " is CIDR on a field that is not an IP address");
      if (fold && hasUpperAscii(t.patValuePtr(pi), t.patValueLen(pi))) {
        return at("pred", p) + ": ignore-case pattern " + pi.toString() + " is not stored lower-case";
      }
    }
  }
  return "";
}

function validateClauses(t: PolicyTable, base: usize, n: u32, what: string): string {
  for (let c: u32 = 0; c < n; c++) {
    const rec = base + <usize>(c * CLAUSE_SIZE);
    if (rangeExceeds(load<u32>(rec), load<u32>(rec, 4), t.predCount)) {
      return what + c.toString() + ": predStart+predCount exceeds PRED (" + t.predCount.toString() + " records)";
    }
  }
  return "";
}

// @ts-ignore: decorator
@inline function isHole(t: PolicyTable, p: u32): bool {
  return (load<u8>(t.pred(p), 2) & PRED_FLAG_HOLE) != 0;
}

/** A HOLE predicate in the range other than `allowed` (NO_HOLE: none allowed), or NO_HOLE. */
function strayHole(t: PolicyTable, start: u32, count: u32, allowed: u32): u32 {
  for (let p = start; p < start + count; p++) {
    if (p != allowed && isHole(t, p)) return p;
  }
  return NO_HOLE;
}

/**
 * RESP and RHDR: statuses 300..599, gRPC statuses 1..16 (or "not given"), known flags, one default reply at most,
 * header ranges inside RHDR, header names lower-case tokens and values free of control characters (Envoy would
 * refuse them), strings inside STRS.
 */
function validateResponses(t: PolicyTable): string {
  for (let i: u32 = 0; i < t.respCount; i++) {
    const rec = t.respRec(i);
    const status = load<u16>(rec);
    if (status < 300 || status > 599) return at("deny response", i) + ": status " + status.toString() + " is not 300..599";
    const grpc = load<u8>(rec, 2);
    if (grpc != RESP_GRPC_DEFAULT && (grpc < 1 || grpc > 16)) return at("deny response", i) + ": grpc status " + grpc.toString() + " is not 1..16";
    const flags = load<u8>(rec, 3);
    if ((flags & ~(RESP_FLAG_REQUEST_ID | RESP_FLAG_DEFAULT)) != 0) return at("deny response", i) + ": unknown flags 0x" + hex32(flags).substring(6);
    if ((flags & RESP_FLAG_DEFAULT) != 0) {
      if (t.defaultResponse >= 0) return at("deny response", i) + ": a second default deny response";
      t.defaultResponse = <i32>i;
    }
    let e = strProblem(t, rec + 4, "deny response", i, "body");
    if (e.length != 0) return e;
    const hs = load<u32>(rec, 12);
    const hn = load<u32>(rec, 16);
    if (rangeExceeds(hs, hn, t.rhdrCount)) return at("deny response", i) + ": headers exceed RHDR (" + t.rhdrCount.toString() + " records)";
    for (let k = hs; k < hs + hn; k++) {
      const h = t.rhdr + <usize>(k * RHDR_SIZE);
      e = strProblem(t, h, "deny response", i, "header name");
      if (e.length != 0) return e;
      e = strProblem(t, h + 8, "deny response", i, "header value");
      if (e.length != 0) return e;
      const np = t.strPtr(load<u32>(h));
      const nl = <i32>load<u32>(h, 4);
      if (nl == 0) return at("deny response", i) + ": empty header name";
      for (let j = 0; j < nl; j++) {
        const c = <u32>load<u8>(np + <usize>j);
        if (!isTokenChar(c) || (c >= 65 && c <= 90)) return at("deny response", i) + ": header name is not a lower-case token";
      }
      const vp = t.strPtr(load<u32>(h, 8));
      const vl = <i32>load<u32>(h, 12);
      for (let j = 0; j < vl; j++) {
        const c = <u32>load<u8>(vp + <usize>j);
        if ((c < 0x20 && c != 9) || c == 0x7f) return at("deny response", i) + ": header value has a control character";
      }
    }
  }
  return "";
}

/** An RFC 9110 token character. */
function isTokenChar(c: u32): bool {
  if (c >= 48 && c <= 57) return true;
  if ((c | 0x20) >= 97 && (c | 0x20) <= 122) return true;
  return c == 33 || c == 35 || c == 36 || c == 37 || c == 38 || c == 39 || c == 42 || c == 43 || c == 45 || c == 46 ||
    c == 94 || c == 95 || c == 96 || c == 124 || c == 126;
}

function validateFamilies(t: PolicyTable): string {
  let next: u32 = 0;
  let shadowRules: u32 = 0;
  let shadowRanges: u64 = 0;
  for (let f: u32 = 0; f < t.famCount; f++) {
    const rec = t.fam(f);
    const action = load<u8>(rec);
    const flags = load<u8>(rec, 1);
    if (action > 2) return at("family", f) + ": action " + action.toString() + " is not 0 (ALLOW), 1 (DENY) or 2 (AUDIT)";
    if ((flags & ~(FAM_FLAG_DRY_RUN | FAM_FLAG_RECORD_ALLOWS | FAM_FLAG_METRICS)) != 0) return at("family", f) + ": unknown flags 0x" + hex32(flags).substring(6);
    if ((flags & FAM_FLAG_RECORD_ALLOWS) != 0 && load<u8>(rec) != <u8>Action.ALLOW) return at("family", f) + ": record-allows on a family that is not ALLOW";
    if ((flags & FAM_FLAG_METRICS) != 0) t.hasRuleMetrics = true;
    const respRef = <u32>load<u16>(rec, 2);
    if (respRef > t.respCount) return at("family", f) + ": deny response " + (respRef - 1).toString() + " exceeds RESP (" + t.respCount.toString() + " records)";
    if (respRef != 0 && load<u8>(rec) != <u8>Action.DENY) return at("family", f) + ": a deny response on a family that is not DENY";
    const first = load<u32>(rec, 4);
    const rows = load<u32>(rec, 8);
    if (first != next) return at("family", f) + ": firstRule " + first.toString() + ", but the families before it hold " + next.toString() + " rules";
    if (rows == 0) return at("family", f) + ": rowCount is 0";
    if (rows > t.ruleCount - next) return at("family", f) + ": rows exceed the " + t.ruleCount.toString() + " rules of META";
    next += rows;
    const srcStart = load<u32>(rec, 12);
    const srcCount = load<u32>(rec, 16);
    if (rangeExceeds(srcStart, srcCount, t.srccCount)) {
      return at("family", f) + ": srcStart+srcCount exceeds SRCC (" + t.srccCount.toString() + " records)";
    }
    const opStart = load<u32>(rec, 20);
    const opCount = load<u32>(rec, 24);
    if (rangeExceeds(opStart, opCount, t.opclCount)) {
      return at("family", f) + ": opStart+opCount exceeds OPCL (" + t.opclCount.toString() + " records)";
    }
    const condStart = load<u32>(rec, 28);
    const condCount = load<u32>(rec, 32);
    if (rangeExceeds(condStart, condCount, t.predCount)) {
      return at("family", f) + ": condStart+condCount exceeds PRED (" + t.predCount.toString() + " records)";
    }
    const expr = load<u32>(rec, 36);
    if (expr != NO_EXPR) {
      const cond = t.cond;
      if (cond === null) {
        return at("family", f) + ": expr " + expr.toString() + " refers to a condition program, and the table has no EXPR section";
      }
      if (expr >= <u32>cond.set.count) {
        return at("family", f) + ": expr " + expr.toString() + " exceeds the " + cond.set.count.toString() + " programs of EXPR";
      }
    }
    const holeClause = load<u32>(rec, 40);
    const holePred = load<u32>(rec, 44);
    if ((holeClause == NO_HOLE) != (holePred == NO_HOLE)) return at("family", f) + ": holeClause and holePred must both be set or both be none";
    if (holeClause != NO_HOLE) {
      if (holeClause < srcStart || holeClause - srcStart >= srcCount) return at("family", f) + ": holeClause " + holeClause.toString() + " is not one of its source clauses";
      const c = t.srcClause(holeClause);
      const ps = load<u32>(c);
      if (holePred < ps || holePred - ps >= load<u32>(c, 4)) return at("family", f) + ": holePred " + holePred.toString() + " is not in its hole clause";
      if (!isHole(t, holePred)) return at("family", f) + ": holePred " + holePred.toString() + " is not a HOLE predicate";
    }
    // The hole is the only HOLE predicate a family reaches: anywhere else there is no row value to give it.
    for (let c = srcStart; c < srcStart + srcCount; c++) {
      const crec = t.srcClause(c);
      const stray = strayHole(t, load<u32>(crec), load<u32>(crec, 4), c == holeClause ? holePred : NO_HOLE);
      if (stray != NO_HOLE) return at("family", f) + ": HOLE predicate " + stray.toString() + " outside its family's hole";
    }
    for (let c = opStart; c < opStart + opCount; c++) {
      const crec = t.opClause(c);
      const stray = strayHole(t, load<u32>(crec), load<u32>(crec, 4), NO_HOLE);
      if (stray != NO_HOLE) return at("family", f) + ": HOLE predicate " + stray.toString() + " outside its family's hole";
    }
    const stray = strayHole(t, condStart, condCount, NO_HOLE);
    if (stray != NO_HOLE) return at("family", f) + ": HOLE predicate " + stray.toString() + " outside its family's hole";
    if (action == <u8>Action.AUDIT || (flags & FAM_FLAG_DRY_RUN) != 0) {
      shadowRules += rows;
      shadowRanges += <u64>srcCount + 1;
    }
  }
  if (next != t.ruleCount) return "FAMS: families hold " + next.toString() + " rules, META says " + t.ruleCount.toString();
  if (shadowRanges > MAX_SHADOW_RANGES) {
    return "FAMS: AUDIT and dry-run families reach " + shadowRanges.toString() + " source clauses (at most 16777216)";
  }
  t.shadowRuleCount = shadowRules;
  t.shadowScratch = new StaticArray<u32>(<i32>(shadowRanges * 2));
  return "";
}

function validateSchemas(t: PolicyTable): string {
  for (let k: u32 = 0; k < t.skeyCount; k++) {
    const rec = t.skey + <usize>(k * SKEY_SIZE);
    const e = strProblem(t, rec, "schema key", k, "key");
    if (e.length != 0) return e;
    if (load<u32>(rec, 4) == 0) return "schema key " + k.toString() + " is empty";
  }
  const n = t.schemaCount;
  let cap: u32 = 0;
  if (n > 0) {
    cap = 4;
    while (cap < n * 2) cap <<= 1;
  }
  const slots = new StaticArray<u32>(<i32>cap);
  for (let s: u32 = 0; s < n; s++) {
    const rec = t.schm + <usize>(s * SCHM_SIZE);
    const e = strProblem(t, rec, "schema", s, "trust domain");
    if (e.length != 0) return e;
    const tdPtr = t.strPtr(load<u32>(rec));
    const tdLen = <i32>load<u32>(rec, 4);
    if (tdLen == 0) return at("schema", s) + ": empty trust domain";
    if (rangeExceeds(load<u32>(rec, 8), load<u32>(rec, 12), t.skeyCount)) {
      return at("schema", s) + ": keyStart+keyCount exceeds SKEY (" + t.skeyCount.toString() + " records)";
    }
    let i = hashFinish(hashBytes(HASH_SEED, tdPtr, tdLen)) & (cap - 1);
    while (true) {
      const v = unchecked(slots[i]);
      if (v == 0) {
        unchecked((slots[i] = s + 1));
        break;
      }
      const other = t.schm + <usize>((v - 1) * SCHM_SIZE);
      if (bytesEqual(t.strPtr(load<u32>(other)), <i32>load<u32>(other, 4), tdPtr, tdLen)) {
        return at("schema", s) + ": trust domain \"" + String.UTF8.decodeUnsafe(tdPtr, <usize>tdLen, false) + "\" already has schema " + (v - 1).toString();
      }
      i = (i + 1) & (cap - 1);
    }
  }
  t.schemaSlots = slots;
  return "";
}

/** The restart table of a front-coded list has one u32 per 2^log2 entries. */
function checkRestarts(t: PolicyTable, tag: u32, name: string, count: u32, log2: u32): string {
  const want = <u64>((<u64>count + (<u64>1 << log2) - 1) >> log2) * 4;
  const have = <u64>secLenOf(tag);
  if (have != want) {
    return name + ": " + (have / 4).toString() + " restart offsets, " + count.toString() + " entries need " + (want / 4).toString();
  }
  return "";
}

/**
 * Walks a front-coded list once with every bound checked: restart offsets, varints, shared prefixes, entry
 * lengths. `onEntry` sees each entry decoded in `buf` (before it, `buf` still holds the previous entry beyond
 * the shared prefix, which is what the sortedness check of VALS compares).
 */
class FrontCodedWalk {
  cur: VarintCursor;
  /** Decoded entry (room for maxLen bytes). */
  buf: usize;
  len: u32 = 0;
  i: u32 = 0;
  shared: u32 = 0;
  suffix: usize = 0;
  suffixLen: u32 = 0;
  error: string = "";

  constructor(public list: FrontCoded, public start: usize, public end: usize, public name: string, public maxLen: u32) {
    this.cur = new VarintCursor(start, end);
    this.buf = heap.alloc(<usize>max<u32>(1, min<u32>(maxLen, <u32>(end - start))));
  }

  /** Reads the header and suffix of entry `i` (not yet copied into buf); false with `error` when malformed. */
  step(): bool {
    const i = this.i;
    const interval: u32 = 1 << this.list.log2;
    if ((i & (interval - 1)) == 0) {
      const want = load<u32>(this.list.restarts + (<usize>(i >> this.list.log2) << 2));
      const here = <u32>(this.cur.pos - this.start);
      if (want != here) {
        this.error = this.name + " entry " + i.toString() + ": restart offset " + want.toString() + ", but the entry starts at " + here.toString();
        return false;
      }
    }
    if (!this.cur.next()) return this.bad(this.cur.error);
    const shared = this.cur.value;
    if (!this.cur.next()) return this.bad(this.cur.error);
    const suffix = this.cur.value;
    if ((i & (interval - 1)) == 0 && shared != 0) return this.bad("a restart entry shares " + shared.toString() + " bytes");
    if (shared > this.len) return this.bad("shares " + shared.toString() + " bytes with an entry of " + this.len.toString());
    if (<u64>shared + <u64>suffix > <u64>this.maxLen) return this.bad((<u64>shared + <u64>suffix).toString() + " bytes exceed " + this.maxLen.toString());
    if (<u64>suffix > <u64>(this.end - this.cur.pos)) return this.bad("suffix runs past the end of the section");
    this.shared = shared;
    this.suffix = this.cur.pos;
    this.suffixLen = suffix;
    this.cur.pos += <usize>suffix;
    return true;
  }

  /** Completes entry `i`: appends its suffix to the shared prefix in buf. */
  commit(): void {
    memory.copy(this.buf + <usize>this.shared, this.suffix, <usize>this.suffixLen);
    this.len = this.shared + this.suffixLen;
    this.i++;
  }

  bad(why: string): bool {
    this.error = this.name + " entry " + this.i.toString() + ": " + why;
    return false;
  }

  /** "" when the list ended exactly at the end of its section. */
  finish(): string {
    heap.free(this.buf);
    if (this.error.length != 0) return this.error;
    if (this.cur.pos != this.end) return this.name + ": " + (this.end - this.cur.pos).toString() + " bytes after the last entry";
    return "";
  }
}

/**
 * Rule ids: 1..200 bytes of the id alphabet, unique. Uniqueness uses an open-addressing set of (hash, rule + 1)
 * pairs, held in the index's slot array before the index is built (or in a scratch block when that is smaller).
 */
export function validateIds(t: PolicyTable, ix: PrincipalIndex): string {
  const n = t.ruleCount;
  const w = new FrontCodedWalk(t.ids, t.ids.ptr, t.ids.ptr + <usize>secLenOf(TAG_IDS), "IDS", MAX_RULE_ID_BYTES);
  let cap: u32 = n + (n >> 1) + 8;
  let set: usize = ix.borrowSlots(<usize>cap * 8);
  const own = set == 0;
  if (own) set = heap.alloc(<usize>cap * 8);
  memory.fill(set, 0, <usize>cap * 8);
  let err = "";
  for (let r: u32 = 0; r < n; r++) {
    if (!w.step()) break;
    w.commit();
    const p = w.buf;
    const len = w.len;
    if (len == 0) {
      err = at("rule", r) + ": id length 0 is not 1..200 bytes";
      break;
    }
    let bad: i32 = -1;
    for (let i: u32 = 0; i < len; i++) {
      if (unchecked(ID_CHAR[load<u8>(p + <usize>i)]) == 0) {
        bad = <i32>i;
        break;
      }
    }
    if (bad >= 0) {
      err = at("rule", r) + ": id has byte 0x" + hex32(load<u8>(p + <usize>bad)).substring(6) + " at " + bad.toString() + ", outside [A-Za-z0-9._:/-[]#@]";
      break;
    }
    const h = hashFinish(hashBytes(HASH_SEED, p, <i32>len));
    let s = <u32>((<u64>h * <u64>cap) >> 32);
    while (true) {
      const e = set + (<usize>s << 3);
      const v = load<u32>(e, 4);
      if (v == 0) {
        store<u32>(e, h);
        store<u32>(e, r + 1, 4);
        break;
      }
      if (load<u32>(e) == h && t.ids.equals(v - 1, p, <i32>len)) {
        err = at("rule", r) + ": id \"" + String.UTF8.decodeUnsafe(p, <usize>len, false) + "\" is already used by rule " + (v - 1).toString();
        break;
      }
      s++;
      if (s == cap) s = 0;
    }
    if (err.length != 0) break;
  }
  if (own) heap.free(set);
  const fe = w.finish();
  return err.length != 0 ? err : fe;
}

/**
 * Hole values: at most 64 KiB each, strictly increasing by bytes (sorted and unique), so equal values always
 * have the same index. Stores hashBytes(HASH_SEED, value) of each at `valueHash` for the index.
 */
export function validateValues(t: PolicyTable, valueHash: usize): string {
  const n = t.valueCount;
  const w = new FrontCodedWalk(t.vals, t.vals.ptr, t.vals.ptr + <usize>secLenOf(TAG_VALS), "VALS", MAX_VALUE_BYTES);
  let err = "";
  for (let v: u32 = 0; v < n; v++) {
    if (!w.step()) break;
    if (v > 0) {
      // Entry v = prev[0..shared) + suffix: it is greater than prev when suffix > prev[shared..] by bytes.
      const c = bytesCompare(w.suffix, <i32>w.suffixLen, w.buf + <usize>w.shared, <i32>(w.len - w.shared));
      if (c <= 0) {
        err = "VALS entry " + v.toString() + ": not greater than entry " + (v - 1).toString() + " (values must be sorted and unique)";
        break;
      }
    }
    w.commit();
    store<u32>(valueHash + (<usize>v << 2), hashBytes(HASH_SEED, w.buf, <i32>w.len));
  }
  const fe = w.finish();
  return err.length != 0 ? err : fe;
}
