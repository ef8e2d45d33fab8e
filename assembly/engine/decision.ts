// The decision (docs/table-format.md §4): any matching non-dry-run DENY rule wins (lowest index reported), then
// any matching non-dry-run ALLOW rule, else the table's default. AUDIT and dry-run rules are evaluated and
// reported but never decide. `decide` uses the PrincipalIndex; `decideLinear` evaluates every rule in order and
// is the reference the tests hold `decide` to.

import { predMatches } from "./match";
import { NO_ENTRY, PrincipalIndex } from "./index";
import { RequestView } from "./request";
import { PeerStatus, SchemaStatus, SchemaWhy, SpiffeId } from "./spiffe";
import { Action, Field, PolicyTable, SKEY_SIZE, SCHM_SIZE } from "./table";

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
  /** Matching AUDIT / dry-run rules, ascending, in `table.shadowScratch[0..shadowCount)` until the next decision. */
  shadowCount: i32 = 0;

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
    if (this.table !== table) this.table = table;
  }
}

// Evaluation state of the decision in progress (decisions do not nest).
let bestDeny: u32 = NO_ENTRY;
let bestAllow: u32 = NO_ENTRY;
let shadowCount: i32 = 0;

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
    const scanRule = ix.scanRule;
    const scanClause = ix.scanClause;
    for (let i: u32 = 0; i < ix.scanCount; i++) {
      visit(t, unchecked(scanRule[i]), unchecked(scanClause[i]), NO_ENTRY, peer, req);
    }
  }
  finish(t, out);
}

/** The reference: every rule, in order, without the index. */
export function decideLinear(table: PolicyTable | null, peer: SpiffeId, req: RequestView, out: Decision): void {
  out.start(table);
  applySchema(table, peer);
  if (table === null) {
    out.kind = DecisionKind.NO_TABLE;
    return;
  }
  const t = table;
  begin();
  for (let r: u32 = 0; r < t.ruleCount; r++) {
    const rec = t.rule(r);
    const action = <u32>load<u8>(rec, 8);
    const srcStart = load<u32>(rec, 12);
    const srcCount = load<u32>(rec, 16);
    let src = srcCount == 0;
    for (let c = srcStart; !src && c < srcStart + srcCount; c++) {
      src = clauseMatches(t, t.srcClause(c), NO_ENTRY, action, peer, req);
    }
    if (src && opsAndCondsMatch(t, rec, action, peer, req)) record(t, r, action);
  }
  finish(t, out);
}

// @ts-ignore: decorator
@inline function begin(): void {
  bestDeny = NO_ENTRY;
  bestAllow = NO_ENTRY;
  shadowCount = 0;
}

function visitPostings(t: PolicyTable, ix: PrincipalIndex, j: u32, peer: SpiffeId, req: RequestView): void {
  while (j != NO_ENTRY) {
    visit(t, unchecked(ix.postRule[j]), unchecked(ix.postClause[j]), unchecked(ix.postPred[j]), peer, req);
    j = unchecked(ix.postNext[j]);
  }
}

/** Evaluates rule `r` through source clause `c` (NO_ENTRY: a rule without sources), `skip` already proved. */
function visit(t: PolicyTable, r: u32, c: u32, skip: u32, peer: SpiffeId, req: RequestView): void {
  const rec = t.rule(r);
  const action = <u32>load<u8>(rec, 8);
  if (t.ruleIsShadow(r)) {
    // Only a rule with several source clauses can be reached twice (through two postings, or a posting and
    // the scan list); the linear check is skipped for the rest.
    if (load<u32>(rec, 16) > 1 && seenShadow(t, r)) return;
  } else if (action == <u32>Action.DENY) {
    if (r >= bestDeny) return;
  } else if (bestDeny != NO_ENTRY || r >= bestAllow) {
    return; // an ALLOW cannot change the outcome any more
  }
  if (c != NO_ENTRY && !clauseMatches(t, t.srcClause(c), skip, action, peer, req)) return;
  if (!opsAndCondsMatch(t, rec, action, peer, req)) return;
  record(t, r, action);
}

function seenShadow(t: PolicyTable, r: u32): bool {
  const s = t.shadowScratch;
  for (let i = 0; i < shadowCount; i++) if (unchecked(s[i]) == r) return true;
  return false;
}

function record(t: PolicyTable, r: u32, action: u32): void {
  if (t.ruleIsShadow(r)) {
    // INVARIANT: each shadow rule is recorded at most once, so the scratch (one slot per shadow rule) has room;
    // the check only keeps a broken invariant from writing out of bounds.
    const s = t.shadowScratch;
    if (shadowCount < s.length) {
      unchecked((s[shadowCount] = r));
      shadowCount++;
    }
  } else if (action == <u32>Action.DENY) {
    if (r < bestDeny) bestDeny = r;
  } else if (r < bestAllow) {
    bestAllow = r;
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
  // Shadow matches in rule order (the index visits them in lookup order).
  const s = t.shadowScratch;
  for (let i = 1; i < shadowCount; i++) {
    const v = unchecked(s[i]);
    let j = i - 1;
    while (j >= 0 && unchecked(s[j]) > v) {
      unchecked((s[j + 1] = unchecked(s[j])));
      j--;
    }
    unchecked((s[j + 1] = v));
  }
  out.shadowCount = shadowCount;
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
