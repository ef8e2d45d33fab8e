// The decision (docs/table-format.md §4): any matching non-dry-run DENY rule wins (lowest index reported), then
// any matching non-dry-run ALLOW rule, else the table's default. AUDIT and dry-run rules are evaluated and
// reported but never decide. `decide` uses the PrincipalIndex; `decideLinear` evaluates every rule in order and
// is the reference the tests hold `decide` to.

import { holeMatches, predMatches } from "./match";
import { NO_ENTRY, PrincipalIndex } from "./index";
import { RequestView } from "./request";
import { PeerStatus, SchemaStatus, SchemaWhy, SpiffeId } from "./spiffe";
import { Action, Field, NO_HOLE, PolicyTable, SKEY_SIZE, SCHM_SIZE } from "./table";

export const enum DecisionKind {
  /** Not decided yet. */
  PENDING = 0,
  /** A rule decided: `rule` is its index. */
  RULE = 1,
  /** No rule matched: the table's default. */
  DEFAULT = 2,
  /** No table loaded: deny. */
  NO_TABLE = 3,
}

/** One request's decision. Preallocated per request context and reused. */
export class Decision {
  kind: DecisionKind = DecisionKind.PENDING;
  allow: bool = false;
  /** The deciding rule (kind RULE), else NO_ENTRY. */
  rule: u32 = NO_ENTRY;
  /** The table that decided (null without one). */
  table: PolicyTable | null = null;
  /** How many AUDIT / dry-run rules matched. */
  shadowCount: i32 = 0;
  /**
   * They are the rules of `shadowRanges` disjoint ranges, ascending: range i starts at rule
   * `table.shadowScratch[2i]` and holds `table.shadowScratch[2i+1]` rules (valid until the next decision).
   */
  shadowRanges: i32 = 0;

  reset(): void {
    this.start(null);
  }

  /**
   * Clears the outcome for a decision by `table`. The reference is stored only when it changes: under the
   * incremental runtime every reference store runs a GC write barrier, and the request path stores none.
   */
  start(table: PolicyTable | null): void {
    this.kind = DecisionKind.PENDING;
    this.allow = false;
    this.rule = NO_ENTRY;
    this.shadowCount = 0;
    this.shadowRanges = 0;
    if (this.table !== table) this.table = table;
  }
}

// Evaluation state of the decision in progress (decisions do not nest).
let bestDeny: u32 = NO_ENTRY;
let bestAllow: u32 = NO_ENTRY;
/** Shadow ranges recorded so far (pairs in table.shadowScratch). */
let shadowRanges: i32 = 0;

/** Checks the peer against its trust domain's schema in `t` (SCHM/SKEY, §3), recording the outcome on `peer`. */
export function applySchema(t: PolicyTable | null, peer: SpiffeId): void {
  peer.clearSchema();
  if (t === null || peer.status != PeerStatus.VALID || t.schemaCount == 0) return;
  const s = t.findSchema(peer.tdPtr(), peer.tdLen);
  if (s < 0) return;
  peer.schema = SchemaStatus.FAILED;
  if ((peer.segmentCount & 1) != 0) {
    peer.schemaWhy = SchemaWhy.ODD;
    return;
  }
  if (peer.overflow) {
    peer.schemaWhy = SchemaWhy.TOO_MANY;
    return;
  }
  if (peer.repeatedOff >= 0) {
    peer.schemaWhy = SchemaWhy.REPEATED;
    peer.schemaKeyPtr = peer.ptr + <usize>peer.repeatedOff;
    peer.schemaKeyLen = peer.repeatedLen;
    return;
  }
  const rec = t.schm + <usize>(<u32>s * SCHM_SIZE);
  const keyStart = load<u32>(rec, 8);
  const keyCount = load<u32>(rec, 12);
  for (let k = keyStart; k < keyStart + keyCount; k++) {
    const krec = t.skey + <usize>(k * SKEY_SIZE);
    const kp = t.strPtr(load<u32>(krec));
    const kl = <i32>load<u32>(krec, 4);
    if (!hasAttribute(peer, kp, kl)) {
      peer.schemaWhy = SchemaWhy.MISSING;
      peer.schemaKeyPtr = kp;
      peer.schemaKeyLen = kl;
      return;
    }
  }
  peer.schema = SchemaStatus.OK;
  peer.schemaWhy = SchemaWhy.NONE;
}

function hasAttribute(peer: SpiffeId, kp: usize, kl: i32): bool {
  for (let a = 0; a < peer.attrCount; a++) {
    if (peer.attrKeyLen(a) == kl && memory.compare(peer.attrKeyPtr(a), kp, <usize>kl) == 0) return true;
  }
  return false;
}

/**
 * Decides a request. `peer` is already parsed (or absent); its schema outcome is (re)computed for `table`.
 * With no table the request is denied (kind NO_TABLE).
 */
export function decide(table: PolicyTable | null, peer: SpiffeId, req: RequestView, out: Decision): void {
  out.start(table);
  applySchema(table, peer);
  if (table === null) {
    out.kind = DecisionKind.NO_TABLE;
    return;
  }
  const t = table;
  begin();
  const ix = t.index;
  if (ix !== null) {
    if (peer.identityOk()) {
      visitPostings(t, ix, ix.lookup(t, <u32>Field.PRINCIPAL, 0, 0, peer.ptr, peer.len), peer, req);
      visitPostings(t, ix, ix.lookup(t, <u32>Field.TRUST_DOMAIN, 0, 0, peer.tdPtr(), peer.tdLen), peer, req);
      if ((ix.fields & (1 << <u32>Field.ATTRIBUTE)) != 0) {
        for (let a = 0; a < peer.attrCount; a++) {
          const j = ix.lookup(t, <u32>Field.ATTRIBUTE, peer.attrKeyPtr(a), peer.attrKeyLen(a), peer.attrValPtr(a), peer.attrValLen(a));
          visitPostings(t, ix, j, peer, req);
        }
      }
    }
    const scanFam = ix.scanFam;
    const scanClause = ix.scanClause;
    for (let i: u32 = 0; i < ix.scanCount; i++) {
      const f = unchecked(scanFam[i]);
      visit(t, f, t.famFirst(f), t.famRows(f), unchecked(scanClause[i]), NO_ENTRY, peer, req);
    }
  }
  finish(t, out);
}

/** The reference: every rule of every family, in order, without the index. */
export function decideLinear(table: PolicyTable | null, peer: SpiffeId, req: RequestView, out: Decision): void {
  out.start(table);
  applySchema(table, peer);
  if (table === null) {
    out.kind = DecisionKind.NO_TABLE;
    return;
  }
  const t = table;
  begin();
  // Row values are read straight from ROWS (validated at load), family after family.
  let rowsPos = t.rows;
  for (let f: u32 = 0; f < t.famCount; f++) {
    const rec = t.fam(f);
    const action = <u32>load<u8>(rec);
    const shadow = t.famIsShadow(f);
    const first = load<u32>(rec, 4);
    const rows = load<u32>(rec, 8);
    const srcStart = load<u32>(rec, 12);
    const srcCount = load<u32>(rec, 16);
    const holeClause = load<u32>(rec, 40);
    const holePred = load<u32>(rec, 44);
    let value: i64 = 0;
    for (let k: u32 = 0; k < rows; k++) {
      if (holeClause != NO_HOLE) {
        let z: u32 = 0;
        let shift: u32 = 0;
        while (true) {
          const b = <u32>load<u8>(rowsPos++);
          z |= (b & 0x7f) << shift;
          if (b < 0x80) break;
          shift += 7;
        }
        value += (z & 1) != 0 ? -(<i64>(z >> 1)) - 1 : <i64>(z >> 1);
      }
      let src = srcCount == 0;
      for (let c = srcStart; !src && c < srcStart + srcCount; c++) {
        if (c == holeClause) {
          src = holeClauseMatches(t, t.srcClause(c), holePred, <u32>value, action, peer, req);
        } else {
          src = clauseMatches(t, t.srcClause(c), NO_ENTRY, action, peer, req);
        }
      }
      if (src && opsAndCondsMatch(t, rec, action, peer, req)) record(first + k, 1, action, shadow, t);
    }
  }
  finish(t, out);
}

// @ts-ignore: decorator
@inline function begin(): void {
  bestDeny = NO_ENTRY;
  bestAllow = NO_ENTRY;
  shadowRanges = 0;
}

function visitPostings(t: PolicyTable, ix: PrincipalIndex, j: u32, peer: SpiffeId, req: RequestView): void {
  const rules = ix.ruleCount;
  while (j != NO_ENTRY) {
    if (j < rules) {
      // A hole row: the lookup proved the hole predicate for this row (rule) alone.
      const f = ix.holeFamilyOf(j);
      visit(t, f, j, 1, t.famHoleClause(f), t.famHolePred(f), peer, req);
    } else {
      // A shared clause: when it matches, every row of the family does.
      const k = j - rules;
      const f = unchecked(ix.cpFam[k]);
      visit(t, f, t.famFirst(f), t.famRows(f), unchecked(ix.cpClause[k]), unchecked(ix.cpPred[k]), peer, req);
    }
    j = unchecked(ix.next[j]);
  }
}

/**
 * Evaluates rules first..first+count-1 of family `f` (which match or fail together) through source clause `c`
 * (NO_ENTRY: a family without sources), `skip` already proved.
 */
function visit(t: PolicyTable, f: u32, first: u32, count: u32, c: u32, skip: u32, peer: SpiffeId, req: RequestView): void {
  const rec = t.fam(f);
  const action = <u32>load<u8>(rec);
  const shadow = t.famIsShadow(f);
  if (!shadow) {
    if (action == <u32>Action.DENY) {
      if (first >= bestDeny) return;
    } else if (bestDeny != NO_ENTRY || first >= bestAllow) {
      return; // an ALLOW cannot change the outcome any more
    }
  }
  if (c != NO_ENTRY && !clauseMatches(t, t.srcClause(c), skip, action, peer, req)) return;
  if (!opsAndCondsMatch(t, rec, action, peer, req)) return;
  record(first, count, action, shadow, t);
}

function record(first: u32, count: u32, action: u32, shadow: bool, t: PolicyTable): void {
  if (shadow) {
    // Ranges may overlap or repeat (a family reached through several clauses); finish() merges them.
    const s = t.shadowScratch;
    const n = shadowRanges;
    if (n > 0 && unchecked(s[2 * n - 2]) + unchecked(s[2 * n - 1]) == first) {
      // decideLinear records row after row: extend the last range rather than add one per rule.
      unchecked((s[2 * n - 1] = unchecked(s[2 * n - 1]) + count));
      return;
    }
    // INVARIANT: at most (srcCount + 1) ranges per shadow family per decision, which is the scratch's room; the
    // check only keeps a broken invariant from writing out of bounds.
    if (2 * n + 1 < s.length) {
      unchecked((s[2 * n] = first));
      unchecked((s[2 * n + 1] = count));
      shadowRanges = n + 1;
    }
  } else if (action == <u32>Action.DENY) {
    if (first < bestDeny) bestDeny = first;
  } else if (first < bestAllow) {
    bestAllow = first;
  }
}

/** A conjunction of PRED records (an SRCC/OPCL record at `crec`), skipping predicate `skip`. */
function clauseMatches(t: PolicyTable, crec: usize, skip: u32, action: u32, peer: SpiffeId, req: RequestView): bool {
  const start = load<u32>(crec);
  const end = start + load<u32>(crec, 4);
  for (let p = start; p < end; p++) {
    if (p != skip && !predMatches(t, p, action, peer, req)) return false;
  }
  return true;
}

/** The hole clause of a family for the row whose value is VALS[v] (decideLinear). */
function holeClauseMatches(t: PolicyTable, crec: usize, hole: u32, v: u32, action: u32, peer: SpiffeId, req: RequestView): bool {
  const start = load<u32>(crec);
  const end = start + load<u32>(crec, 4);
  for (let p = start; p < end; p++) {
    if (p == hole ? !holeMatches(t, p, v, peer) : !predMatches(t, p, action, peer, req)) return false;
  }
  return true;
}

function opsAndCondsMatch(t: PolicyTable, rec: usize, action: u32, peer: SpiffeId, req: RequestView): bool {
  const opStart = load<u32>(rec, 20);
  const opCount = load<u32>(rec, 24);
  if (opCount != 0) {
    let any = false;
    for (let c = opStart; c < opStart + opCount; c++) {
      if (clauseMatches(t, t.opClause(c), NO_ENTRY, action, peer, req)) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  const condStart = load<u32>(rec, 28);
  const condEnd = condStart + load<u32>(rec, 32);
  for (let p = condStart; p < condEnd; p++) {
    if (!predMatches(t, p, action, peer, req)) return false;
  }
  return true;
}

function finish(t: PolicyTable, out: Decision): void {
  // Shadow ranges in rule order (the index visits them in lookup order), merged where they overlap or touch.
  const s = t.shadowScratch;
  const n = shadowRanges;
  for (let i = 1; i < n; i++) {
    const a = unchecked(s[2 * i]);
    const b = unchecked(s[2 * i + 1]);
    let j = i - 1;
    while (j >= 0 && unchecked(s[2 * j]) > a) {
      unchecked((s[2 * j + 2] = unchecked(s[2 * j])));
      unchecked((s[2 * j + 3] = unchecked(s[2 * j + 1])));
      j--;
    }
    unchecked((s[2 * j + 2] = a));
    unchecked((s[2 * j + 3] = b));
  }
  let m = 0;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const a = unchecked(s[2 * i]);
    const end = a + unchecked(s[2 * i + 1]);
    if (m > 0) {
      const lastEnd = unchecked(s[2 * m - 2]) + unchecked(s[2 * m - 1]);
      if (a <= lastEnd) {
        if (end > lastEnd) {
          unchecked((s[2 * m - 1] = end - unchecked(s[2 * m - 2])));
          total += <i32>(end - lastEnd);
        }
        continue;
      }
    }
    unchecked((s[2 * m] = a));
    unchecked((s[2 * m + 1] = end - a));
    total += <i32>(end - a);
    m++;
  }
  out.shadowRanges = m;
  out.shadowCount = total;
  if (bestDeny != NO_ENTRY) {
    out.kind = DecisionKind.RULE;
    out.allow = false;
    out.rule = bestDeny;
  } else if (bestAllow != NO_ENTRY) {
    out.kind = DecisionKind.RULE;
    out.allow = true;
    out.rule = bestAllow;
  } else {
    out.kind = DecisionKind.DEFAULT;
    out.allow = t.defaultAction == 0;
  }
}
