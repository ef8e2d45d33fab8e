// Predicate and pattern matching (docs/table-format.md §3, PRED and PATS). Pure comparisons over table memory
// and caller-owned slices: nothing here allocates.

import { Slice, bytesCompare, bytesCompareFold, bytesEqual, bytesEqualFold, endsWith, startsWith } from "./bytes";
import { RequestView } from "./request";
import { SpiffeId } from "./spiffe";
import { Action, Field, PatternKind, PRED_FLAG_HOST_NAME, PRED_FLAG_IGNORE_CASE } from "./table/format";
import { PolicyTable } from "./table/policy-table";
import { cidrContains, globMatches, parseAddress } from "./glob";
import { istioJwtPayload, listNext, payloadClaimValue, payloadStringClaim, valueList, valueString } from "./jwt";

// The subject being matched. The engine evaluates one predicate at a time, so one slice serves all.
const subject = new Slice();
// Scratch for the fields of Istio input (JWT payload walks, the second of an (iss, sub) pair).
const meta = new Slice();
const payload = new Slice();
const claim = new Slice();
const list = new Slice();
const subject2 = new Slice();
const ISS = String.UTF8.encode("iss", false);
const SUB = String.UTF8.encode("sub", false);

/** Whether predicate `p` matches, for a rule with `action` (identity predicates fail closed in DENY rules). */
export function predMatches(t: PolicyTable, p: u32, action: u32, peer: SpiffeId, req: RequestView): bool {
  const rec = t.pred(p);
  const field = <u32>load<u8>(rec);
  const negate = load<u8>(rec, 1) != 0;
  let present = false;
  if (field <= <u32>Field.ATTRIBUTE) {
    // Identity fields have a subject only for a valid ID that satisfies its schema (§3 "Identity fields").
    if (!peer.identityOk()) return negate && action == <u32>Action.DENY;
    if (field == <u32>Field.PRINCIPAL) {
      subject.set(peer.ptr, peer.len);
      present = true;
    } else if (field == <u32>Field.TRUST_DOMAIN) {
      subject.set(peer.tdPtr(), peer.tdLen);
      present = true;
    } else {
      present = peer.attribute(t.strPtr(load<u32>(rec, 4)), <i32>load<u32>(rec, 8), subject);
    }
  } else {
    switch (field) {
      case Field.METHOD:
        present = req.method(subject);
        break;
      case Field.PATH:
        present = req.path(subject);
        if (present) subject.len = pathEnd(subject.ptr, subject.len);
        break;
      case Field.HOST:
        present = req.host(subject);
        if (present && (load<u8>(rec, 2) & PRED_FLAG_HOST_NAME) != 0) hostName(subject);
        break;
      case Field.PORT:
        present = req.port(subject);
        break;
      case Field.HEADER:
        return negate ? !headerMatches(t, rec, req) : headerMatches(t, rec, req);
      case Field.SNI:
        present = req.sni(subject);
        break;
      case Field.PEER_NAME:
      case Field.REQUEST_PRINCIPAL:
      case Field.JWT_CLAIM:
      case Field.REMOTE_IP:
      case Field.DESTINATION_IP: {
        const m = sourceFieldMatches(t, rec, field, req);
        return negate ? !m : m;
      }
      default:
        present = false;
    }
  }
  const matched = present && patternsMatch(t, rec, subject.ptr, subject.len);
  return negate ? !matched : matched;
}

/**
 * Whether any value of the predicate's header matches one of its patterns. Every line of a repeated header is
 * its own value (RequestView.headerValue): a DENY on `admin` catches `x: adminx` + `x: admin`, and an ALLOW on
 * `admin` is satisfied by the line that says so, as Envoy 1.40's RBAC decides.
 */
function headerMatches(t: PolicyTable, rec: usize, req: RequestView): bool {
  const np = t.strPtr(load<u32>(rec, 4));
  const nl = <i32>load<u32>(rec, 8);
  for (let i = 0; req.headerValue(np, nl, i, subject); i++) {
    if (patternsMatch(t, rec, subject.ptr, subject.len)) return true;
  }
  return false;
}

/**
 * The fields of Istio input, with Envoy RBAC's meaning (docs/table-format.md §3): whether any pattern matches, before
 * negation. An absent subject matches nothing.
 */
function sourceFieldMatches(t: PolicyTable, rec: usize, field: u32, req: RequestView): bool {
  switch (field) {
    case Field.PEER_NAME:
      // Envoy's authenticated matcher tries the URI SANs, then the DNS SANs, then the subject.
      for (let which = 0; which < 3; which++) {
        if (req.peerName(which, subject) && patternsMatch(t, rec, subject.ptr, subject.len)) return true;
      }
      return false;
    case Field.REMOTE_IP:
    case Field.DESTINATION_IP: {
      const ok = field == <u32>Field.REMOTE_IP ? req.remoteAddress(subject) : req.localAddress(subject);
      if (!ok) return false;
      const n = parseAddress(subject.ptr, subject.len);
      if (n == 0) return false;
      const start = load<u32>(rec, 12);
      const count = load<u32>(rec, 16);
      for (let i = start; i < start + count; i++) {
        if (cidrContains(t.patValuePtr(i), t.patValueLen(i), n)) return true;
      }
      return false;
    }
    case Field.REQUEST_PRINCIPAL: {
      if (!req.dynamicMetadata(meta) || !istioJwtPayload(meta.ptr, meta.len, payload)) return false;
      const hasIss = payloadStringClaim(payload.ptr, payload.len, changetype<usize>(ISS), ISS.byteLength, subject);
      const hasSub = payloadStringClaim(payload.ptr, payload.len, changetype<usize>(SUB), SUB.byteLength, subject2);
      if (!hasIss || !hasSub) return false;
      const start = load<u32>(rec, 12);
      const count = load<u32>(rec, 16);
      for (let i = start; i + 1 < start + count; i += 2) {
        if (patternMatches(t, i, subject.ptr, subject.len, false) && patternMatches(t, i + 1, subject2.ptr, subject2.len, false)) return true;
      }
      return false;
    }
    case Field.JWT_CLAIM: {
      if (!req.dynamicMetadata(meta) || !istioJwtPayload(meta.ptr, meta.len, payload)) return false;
      const path = t.strPtr(load<u32>(rec, 4));
      const pathLen = <i32>load<u32>(rec, 8);
      if (!payloadClaimValue(payload.ptr, payload.len, path, pathLen, claim)) return false;
      // istiod's matcher: the claim is a matching string, or a list with a matching string element.
      if (valueString(claim.ptr, claim.len, subject)) return patternsMatch(t, rec, subject.ptr, subject.len);
      if (!valueList(claim.ptr, claim.len, list)) return false;
      const lp = list.ptr;
      const ll = list.len;
      let at = 0;
      while (true) {
        at = listNext(lp, ll, at, claim);
        if (at < 0) return false;
        // listNext's cursor is the list's own bytes: reading the element does not disturb it.
        if (valueString(claim.ptr, claim.len, subject) && patternsMatch(t, rec, subject.ptr, subject.len)) return true;
      }
      return false;
    }
  }
  return false;
}

/**
 * Narrows an `:authority` to its host name (our format's `hosts`, docs/policy-language.md "Hosts and methods"):
 * userinfo before the last `@` removed (URL parsers take the host after it), the port removed (`[v6]:port` keeps
 * its brackets), then one trailing dot removed (`example.com.` is the same DNS name). Envoy 1.40 passes all of
 * these on as the client sent them.
 */
export function hostName(s: Slice): void {
  let start = 0;
  for (let i = s.len - 1; i >= 0; i--) {
    if (load<u8>(s.ptr + <usize>i) == 0x40) {
      start = i + 1;
      break;
    }
  }
  let end = s.len;
  if (start < end && load<u8>(s.ptr + <usize>start) == 0x5b) {
    let close = start;
    while (close < end && load<u8>(s.ptr + <usize>close) != 0x5d) close++;
    if (close < end) end = close + 1;
  } else {
    for (let i = start; i < end; i++) {
      if (load<u8>(s.ptr + <usize>i) == 0x3a) {
        end = i;
        break;
      }
    }
    if (end > start && load<u8>(s.ptr + <usize>(end - 1)) == 0x2e) end--;
  }
  s.set(s.ptr + <usize>start, end - start);
}

/** The length of a `:path` up to (not including) the first `?` or `#`. */
export function pathEnd(p: usize, len: i32): i32 {
  for (let i = 0; i < len; i++) {
    const c = load<u8>(p + <usize>i);
    if (c == 63 || c == 35) return i;
  }
  return len;
}

/** Whether any pattern of the predicate record `rec` matches the subject. */
export function patternsMatch(t: PolicyTable, rec: usize, s: usize, slen: i32): bool {
  const fold = (load<u8>(rec, 2) & PRED_FLAG_IGNORE_CASE) != 0;
  const start = load<u32>(rec, 12);
  const count = load<u32>(rec, 16);
  const exact = load<u32>(rec, 20);
  if (exact > 0) {
    // The exact block is sorted by bytes (patterns of ignore-case predicates are stored lower-case).
    let lo: u32 = start;
    let hi: u32 = start + exact;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = fold
        ? bytesCompareFold(s, slen, t.patValuePtr(mid), t.patValueLen(mid))
        : bytesCompare(s, slen, t.patValuePtr(mid), t.patValueLen(mid));
      if (c == 0) return true;
      if (c < 0) hi = mid;
      else lo = mid + 1;
    }
  }
  for (let i = start + exact; i < start + count; i++) {
    if (patternMatches(t, i, s, slen, fold)) return true;
  }
  return false;
}

/** Whether pattern record `i` matches the subject (CIDR patterns are matched by sourceFieldMatches). */
function patternMatches(t: PolicyTable, i: u32, s: usize, slen: i32, fold: bool): bool {
  const prec = t.pat(i);
  const kind = <u32>load<u8>(prec);
  const v = t.strPtr(load<u32>(prec, 4));
  const vlen = <i32>load<u32>(prec, 8);
  switch (kind) {
    case PatternKind.EXACT:
      return fold ? bytesEqualFold(s, slen, v, vlen) : bytesEqual(s, slen, v, vlen);
    case PatternKind.PREFIX:
      return startsWith(s, slen, v, vlen, fold);
    case PatternKind.SUFFIX:
      return endsWith(s, slen, v, vlen, fold);
    case PatternKind.PRESENT:
      return slen > 0;
    case PatternKind.TEMPLATE:
      return templateMatches(v, vlen, s, slen, fold);
    case PatternKind.GLOB:
      return globMatches(v, vlen, s, slen, fold);
  }
  return false;
}

/**
 * Istio path templates: both sides split on `/`; a literal segment matches itself, `{*}` exactly one non-empty
 * segment, `{**}` (validated to be last) zero or more segments.
 */
export function templateMatches(p: usize, plen: i32, s: usize, slen: i32, fold: bool): bool {
  let ps = 0;
  let ss = 0;
  let subjectDone = false;
  while (true) {
    let pe = ps;
    while (pe < plen && load<u8>(p + <usize>pe) != 47) pe++;
    const pn = pe - ps;
    const lastPattern = pe == plen;
    const seg = p + <usize>ps;
    const anyDeep = pn == 4 && load<u8>(seg) == 123 && load<u8>(seg, 1) == 42 && load<u8>(seg, 2) == 42 && load<u8>(seg, 3) == 125;
    if (anyDeep) return true;
    if (subjectDone) return false;
    let se = ss;
    while (se < slen && load<u8>(s + <usize>se) != 47) se++;
    const sn = se - ss;
    const anyOne = pn == 3 && load<u8>(seg) == 123 && load<u8>(seg, 1) == 42 && load<u8>(seg, 2) == 125;
    if (anyOne) {
      if (sn == 0) return false;
    } else {
      const sseg = s + <usize>ss;
      if (!(fold ? bytesEqualFold(sseg, sn, seg, pn) : bytesEqual(sseg, sn, seg, pn))) return false;
    }
    if (se == slen) subjectDone = true;
    else ss = se + 1;
    if (lastPattern) return subjectDone;
    ps = pe + 1;
  }
  return false;
}

/**
 * A family's HOLE predicate for the row whose value is VALS[v] (decideLinear only: the indexed decision proves
 * holes by lookup). A hole is an identity predicate with negate = 0 and one EXACT pattern: without an identity,
 * or without the attribute, it does not match.
 */
export function holeMatches(t: PolicyTable, p: u32, v: u32, peer: SpiffeId): bool {
  if (!peer.identityOk()) return false;
  const rec = t.pred(p);
  const field = <u32>load<u8>(rec);
  if (field == <u32>Field.PRINCIPAL) {
    subject.set(peer.ptr, peer.len);
  } else if (field == <u32>Field.TRUST_DOMAIN) {
    subject.set(peer.tdPtr(), peer.tdLen);
  } else if (!peer.attribute(t.strPtr(load<u32>(rec, 4)), <i32>load<u32>(rec, 8), subject)) {
    return false;
  }
  return t.vals.equals(v, subject.ptr, subject.len);
}
