// The decision (docs/table-format.md §4): any matching non-dry-run DENY rule wins (lowest index reported), then
// any matching non-dry-run ALLOW rule, else the table's default. AUDIT and dry-run rules are evaluated and
// reported but never decide. `decide` uses the PrincipalIndex; `decideLinear` evaluates every rule in order and
// is the reference the tests hold `decide` to.

import { holeMatches, predMatches } from "./match";
import {
  activation, BodyProblem, COND_ERROR, COND_FALSE, COND_PENDING, COND_TRUE, E_NOT_BOOL, TableConditions,
} from "./conditions";
import { E_BODY, E_NO_SUCH_ATTRIBUTE, E_NO_SUCH_KEY, writeCelErrorMessage } from "./cel/index";
import { Slice } from "./bytes";
import { Refusal } from "./identity";
import { NO_ENTRY, PrincipalIndex } from "./principal-index";
import { pathIsAmbiguous } from "./path";
import { RequestView } from "./request";
import { PeerStatus, SchemaStatus, SchemaWhy, SpiffeId } from "./spiffe";
import { Action, Field, NO_EXPR, NO_HOLE, SCHM_SIZE, SKEY_SIZE } from "./table/format";
import { PolicyTable } from "./table/policy-table";

export const enum DecisionKind {
  /** Not decided yet. */
  PENDING = 0,
  /** A rule decided: `rule` is its index. */
  RULE = 1,
  /** No rule matched: the table's default. */
  DEFAULT = 2,
  /** No table loaded: deny. */
  NO_TABLE = 3,
  /**
   * Not decided: a rule whose other parts matched has a condition that reads a request body that has not
   * arrived, and its outcome could change the decision (or the audit log). Decide again once it has.
   */
  NEEDS_BODY = 4,
  /** Denied before any rule: the request cannot be judged as the workload will read it (`refusal` says why). */
  REFUSED = 5,
}

/** Why the default decided, when a condition explains it (the suffix of `spiffe_authz_denied[default:...]`). */
export const enum DefaultCause {
  NONE = 0,
  BODY_TOO_LARGE = 1,
  INVALID_JSON = 2,
  GRPC_COMPRESSED = 3,
  GRPC_MULTIPLE_MESSAGES = 4,
  GRPC_TRUNCATED = 5,
  CONDITION_ERROR = 6,
  JSON_MEDIA_TYPE = 7,
  JSON_NOT_UTF8 = 8,
  JSON_CONTENT_ENCODING = 9,
  JSON_AMBIGUOUS = 10,
  PROTOBUF_NONCANONICAL = 11,
}

/** Longest condition error message a decision keeps (the VM cuts details at 120 bytes). */
export const CONDITION_MESSAGE_BYTES: i32 = 256;

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
  /** The deciding DENY rule matched because its condition failed (fail closed); `denyMessage` says how. */
  denyError: bool = false;
  denyMessage: StaticArray<u8> = new StaticArray<u8>(CONDITION_MESSAGE_BYTES);
  denyMessageLen: i32 = 0;
  /**
   * The lowest-index ALLOW (or AUDIT) rule whose condition failed, NO_ENTRY if none: reported when the default
   * decides ("rule "x" condition failed: ...").
   */
  errorRule: u32 = NO_ENTRY;
  errorMessage: StaticArray<u8> = new StaticArray<u8>(CONDITION_MESSAGE_BYTES);
  errorMessageLen: i32 = 0;
  /** For a default deny: the condition failure that explains it (response details), else NONE. */
  cause: DefaultCause = DefaultCause.NONE;
  /** Why a REFUSED request was refused. */
  refusal: Refusal = Refusal.NONE;

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
    this.denyError = false;
    this.errorRule = NO_ENTRY;
    this.cause = DefaultCause.NONE;
    this.refusal = Refusal.NONE;
    if (this.table !== table) this.table = table;
  }
}

// Evaluation state of the decision in progress (decisions do not nest).
let bestDeny: u32 = NO_ENTRY;
let bestAllow: u32 = NO_ENTRY;
/** Shadow ranges recorded so far (pairs in table.shadowScratch). */
let shadowRanges: i32 = 0;
/** The conditions of the table deciding (null: condition-free table, today's path). */
let cond: TableConditions | null = null;
/** bestDeny matched through a failed condition; its error (valid until the decision ends). */
let bestDenyError = false;
let denyErrKind: u8 = 0;
let denyErrPtr: usize = 0;
let denyErrLen: i32 = 0;
/** The lowest-index ALLOW rule (not dry-run) whose condition failed, and its error. */
let errRule: u32 = NO_ENTRY;
let errKind: u8 = 0;
let errPtr: usize = 0;
let errLen: i32 = 0;
/** Lowest-index rules whose condition waits for the body; a shadow rule waiting. */
let pendingDeny: u32 = NO_ENTRY;
let pendingAllow: u32 = NO_ENTRY;
let pendingShadow = false;

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
export function decide(
  table: PolicyTable | null, peer: SpiffeId, req: RequestView, out: Decision, refusal: Refusal = Refusal.NONE,
  allowAmbiguousPaths: bool = false,
): void {
  out.start(table);
  applySchema(table, peer);
  if (table === null) {
    out.kind = DecisionKind.NO_TABLE;
    return;
  }
  const t = table;
  if (refused(t, req, out, refusal, allowAmbiguousPaths)) return;
  begin(t, peer, req);
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
    if ((ix.fields & (1 << <u32>Field.PEER_NAME)) != 0) lookupPeerNames(t, ix, peer, req);
    const scanFam = ix.scanFam;
    const scanClause = ix.scanClause;
    for (let i: u32 = 0; i < ix.scanCount; i++) {
      const f = unchecked(scanFam[i]);
      visit(t, f, t.famFirst(f), t.famRows(f), unchecked(scanClause[i]), NO_ENTRY, peer, req);
    }
  }
  finish(t, out);
}

/**
 * Refuses the request before any rule when the caller's identity could not be read unambiguously (`refusal`,
 * from resolveIdentity), or when a table whose rules read the path meets a path the workload may read
 * differently (engine/path.ts). Returns whether it did.
 */
function refused(t: PolicyTable, req: RequestView, out: Decision, refusal: Refusal, allowAmbiguousPaths: bool): bool {
  if (refusal == Refusal.NONE && t.readsPath && !allowAmbiguousPaths && req.path(pathSlice) &&
      pathIsAmbiguous(pathSlice.ptr, pathSlice.len)) {
    refusal = Refusal.AMBIGUOUS_PATH;
  }
  if (refusal == Refusal.NONE) return false;
  out.kind = DecisionKind.REFUSED;
  out.allow = false;
  out.refusal = refusal;
  return true;
}

const pathSlice = new Slice();

const nameSlice = new Slice();

/**
 * PEER_NAME postings (Istio principals, as Envoy's `authenticated` matcher compares them): the certificate's first
 * URI SAN, and its first DNS SAN and subject only when some key could equal one of those.
 */
function lookupPeerNames(t: PolicyTable, ix: PrincipalIndex, peer: SpiffeId, req: RequestView): void {
  const n = ix.peerNameOtherKeys ? 3 : 1;
  for (let which = 0; which < n; which++) {
    if (!req.peerName(which, nameSlice)) continue;
    visitPostings(t, ix, ix.lookup(t, <u32>Field.PEER_NAME, 0, 0, nameSlice.ptr, nameSlice.len), peer, req);
  }
}

/** How an ALLOW rule missed a request (Closest.why), from closest to farthest. */
export const enum Miss {
  /** Everything matched but the CEL condition, which was false. */
  CONDITION_FALSE = 0,
  /** Everything matched but the CEL condition, which failed (Closest.message says how). */
  CONDITION_ERROR = 1,
  /** The caller (`from`) matched; the operation (`to`) or a `when` condition did not. */
  REQUEST = 2,
  /** The operation and `when` matched; the caller did not. */
  CALLER = 3,
}

/** The ALLOW rules that came closest to allowing a request the default denied: at most CLOSEST of them. */
export const CLOSEST: i32 = 3;
export class Closest {
  count: i32 = 0;
  rule: StaticArray<u32> = new StaticArray<u32>(CLOSEST);
  why: StaticArray<u8> = new StaticArray<u8>(CLOSEST);
  message: StaticArray<u8> = new StaticArray<u8>(CLOSEST * CONDITION_MESSAGE_BYTES);
  messageLen: StaticArray<i32> = new StaticArray<i32>(CLOSEST);

  /** Keeps entry (rule, why) if it is among the CLOSEST closest (by why, then rule order); false when full of closer ones. */
  offer(rule: u32, why: Miss, msgKind: u8, msgPtr: usize, msgLen: i32): void {
    let at = this.count;
    while (at > 0 && <u8>why < unchecked(this.why[at - 1])) at--;
    if (at >= CLOSEST) return;
    const last = this.count < CLOSEST ? this.count : CLOSEST - 1;
    for (let i = last; i > at; i--) {
      unchecked((this.rule[i] = this.rule[i - 1]));
      unchecked((this.why[i] = this.why[i - 1]));
      unchecked((this.messageLen[i] = this.messageLen[i - 1]));
      memory.copy(changetype<usize>(this.message) + <usize>(i * CONDITION_MESSAGE_BYTES),
        changetype<usize>(this.message) + <usize>((i - 1) * CONDITION_MESSAGE_BYTES), <usize>CONDITION_MESSAGE_BYTES);
    }
    unchecked((this.rule[at] = rule));
    unchecked((this.why[at] = <u8>why));
    unchecked((this.messageLen[at] = why == Miss.CONDITION_ERROR
      ? conditionMessageAt(msgKind, msgPtr, msgLen, changetype<usize>(this.message) + <usize>(at * CONDITION_MESSAGE_BYTES))
      : 0));
    if (this.count < CLOSEST) this.count++;
  }
}

/**
 * Which ALLOW rules (not dry-run) came closest to allowing a request: every rule in order, as decideLinear reads
 * them, classified by what missed (Miss). For the reason of a default deny, off Envoy's request path (explain only:
 * its cost grows with the table). Re-reads the request's conditions from `req`.
 */
export function findClosest(t: PolicyTable, peer: SpiffeId, req: RequestView, out: Closest): void {
  out.count = 0;
  applySchema(t, peer);
  const c = t.cond;
  if (cond !== c) cond = c;
  if (c !== null) beginConditions(c, peer, req);
  let rowsPos = t.rows;
  for (let f: u32 = 0; f < t.famCount; f++) {
    const rec = t.fam(f);
    const action = <u32>load<u8>(rec);
    const first = load<u32>(rec, 4);
    const rows = load<u32>(rec, 8);
    const srcStart = load<u32>(rec, 12);
    const srcCount = load<u32>(rec, 16);
    const holeClause = load<u32>(rec, 40);
    const holePred = load<u32>(rec, 44);
    const consider = action == <u32>Action.ALLOW && !t.famIsShadow(f);
    const ops = consider && opsAndCondsMatch(t, rec, action, peer, req);
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
      if (!consider) continue;
      let src = srcCount == 0;
      for (let cl = srcStart; !src && cl < srcStart + srcCount; cl++) {
        src = cl == holeClause
          ? holeClauseMatches(t, t.srcClause(cl), holePred, <u32>value, action, peer, req)
          : clauseMatches(t, t.srcClause(cl), NO_ENTRY, action, peer, req);
      }
      if (src && ops) {
        const expr = load<u32>(rec, 36);
        if (expr == NO_EXPR || c === null) continue; // it would have allowed: not a miss
        const r = c.evaluate(expr);
        if (r == COND_FALSE) out.offer(first + k, Miss.CONDITION_FALSE, 0, 0, 0);
        else if (r == COND_ERROR) out.offer(first + k, Miss.CONDITION_ERROR, activation.errKind, activation.errPtr, activation.errLen);
      } else if (src) {
        out.offer(first + k, Miss.REQUEST, 0, 0, 0);
      } else if (ops) {
        out.offer(first + k, Miss.CALLER, 0, 0, 0);
      }
    }
  }
}

/** The reference: every rule of every family, in order, without the index. */
export function decideLinear(
  table: PolicyTable | null, peer: SpiffeId, req: RequestView, out: Decision, refusal: Refusal = Refusal.NONE,
  allowAmbiguousPaths: bool = false,
): void {
  out.start(table);
  applySchema(table, peer);
  if (table === null) {
    out.kind = DecisionKind.NO_TABLE;
    return;
  }
  const t = table;
  if (refused(t, req, out, refusal, allowAmbiguousPaths)) return;
  begin(t, peer, req);
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
      if (src && opsAndCondsMatch(t, rec, action, peer, req)) matchExpr(t, rec, first + k, 1, action, shadow);
    }
  }
  finish(t, out);
}

// @ts-ignore: decorator
@inline function begin(t: PolicyTable, peer: SpiffeId, req: RequestView): void {
  bestDeny = NO_ENTRY;
  bestAllow = NO_ENTRY;
  shadowRanges = 0;
  const c = t.cond;
  if (cond !== c) cond = c;
  if (c !== null) beginConditions(c, peer, req);
}

/** Decision state of a table with conditions (kept off the condition-free path). */
function beginConditions(c: TableConditions, peer: SpiffeId, req: RequestView): void {
  bestDenyError = false;
  errRule = NO_ENTRY;
  pendingDeny = NO_ENTRY;
  pendingAllow = NO_ENTRY;
  pendingShadow = false;
  c.begin(peer, req);
}

/**
 * The last step of a rule match: rules first..first+count-1 of the family at `rec` matched on sources, operations
 * and `when`; now its CEL condition, if any (evaluated once per request: the program's value does not depend on
 * the row). A failed condition makes a DENY rule match (fail closed) and an ALLOW or AUDIT rule not match; an
 * ALLOW rule's error is kept for the reason of a default deny.
 */
// @ts-ignore: decorator
@inline function matchExpr(t: PolicyTable, rec: usize, first: u32, count: u32, action: u32, shadow: bool): void {
  const expr = load<u32>(rec, 36);
  if (expr == NO_EXPR) record(first, count, action, shadow, t);
  else matchCondition(t, expr, rec, first, count, action, shadow);
}

function matchCondition(t: PolicyTable, expr: u32, rec: usize, first: u32, count: u32, action: u32, shadow: bool): void {
  const c = cond!;
  const r = c.evaluate(expr);
  if (r == COND_TRUE) {
    record(first, count, action, shadow, t);
  } else if (r == COND_ERROR) {
    if (action == <u32>Action.DENY) {
      if (!shadow && first < bestDeny) {
        bestDeny = first;
        bestDenyError = true;
        denyErrKind = activation.errKind;
        denyErrPtr = activation.errPtr;
        denyErrLen = activation.errLen;
        return;
      }
      record(first, count, action, shadow, t);
    } else if (!shadow && first < errRule) {
      // Only an ALLOW rule can explain a default deny: AUDIT and dry-run rules never decide.
      errRule = first;
      errKind = activation.errKind;
      errPtr = activation.errPtr;
      errLen = activation.errLen;
    }
  } else if (r == COND_PENDING) {
    if (shadow) pendingShadow = true;
    else if (action == <u32>Action.DENY) {
      if (first < pendingDeny) pendingDeny = first;
    } else if (first < pendingAllow) {
      pendingAllow = first;
    }
  }
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
  matchExpr(t, rec, first, count, action, shadow);
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
    if (first < bestDeny) {
      bestDeny = first;
      bestDenyError = false;
    }
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
  if (cond !== null && needsBody()) {
    out.kind = DecisionKind.NEEDS_BODY;
    return;
  }
  if (bestDeny != NO_ENTRY) {
    out.kind = DecisionKind.RULE;
    out.allow = false;
    out.rule = bestDeny;
    if (cond !== null && bestDenyError) {
      out.denyError = true;
      out.denyMessageLen = conditionMessage(denyErrKind, denyErrPtr, denyErrLen, out.denyMessage);
    }
  } else if (bestAllow != NO_ENTRY) {
    out.kind = DecisionKind.RULE;
    out.allow = true;
    out.rule = bestAllow;
  } else {
    out.kind = DecisionKind.DEFAULT;
    out.allow = t.defaultAction == 0;
    if (cond !== null && errRule != NO_ENTRY) {
      out.errorRule = errRule;
      out.errorMessageLen = conditionMessage(errKind, errPtr, errLen, out.errorMessage);
      if (!out.allow) out.cause = defaultCause(errKind);
    }
  }
}

/**
 * Whether a condition still waiting for the body could change the decision: a waiting DENY rule below every
 * matching one; with no DENY, a waiting ALLOW rule below every matching one; or a waiting AUDIT / dry-run rule
 * (its log line depends on it).
 */
function needsBody(): bool {
  if (pendingShadow) return true;
  if (pendingDeny != NO_ENTRY && pendingDeny < bestDeny) return true;
  if (bestDeny != NO_ENTRY) return false;
  return pendingAllow != NO_ENTRY && pendingAllow < bestAllow;
}

/**
 * The response-details cause of a default deny explained by a failed condition. A condition that failed because
 * the request does not carry what it reads (no JWT, no peer identity, no body, no such header, query parameter or
 * JSON member) explains nothing beyond the plain default: `default` (the reason still names the condition). A
 * body that could not be read gives its own cause; any other failure (a type mismatch, an overflow, a string that
 * does not convert, a non-bool value, a limit) is `condition_error`: what an operator looks for in access logs.
 */
function defaultCause(kind: u8): DefaultCause {
  if (kind == E_NO_SUCH_ATTRIBUTE || kind == E_NO_SUCH_KEY) return DefaultCause.NONE;
  if (kind == E_BODY) {
    switch (activation.problem) {
      case BodyProblem.TOO_LARGE: return DefaultCause.BODY_TOO_LARGE;
      case BodyProblem.INVALID_JSON: return DefaultCause.INVALID_JSON;
      case BodyProblem.GRPC_COMPRESSED: return DefaultCause.GRPC_COMPRESSED;
      case BodyProblem.GRPC_MULTIPLE: return DefaultCause.GRPC_MULTIPLE_MESSAGES;
      case BodyProblem.GRPC_TRUNCATED: return DefaultCause.GRPC_TRUNCATED;
      case BodyProblem.JSON_MEDIA_TYPE: return DefaultCause.JSON_MEDIA_TYPE;
      case BodyProblem.JSON_NOT_UTF8: return DefaultCause.JSON_NOT_UTF8;
      case BodyProblem.JSON_CONTENT_ENCODING: return DefaultCause.JSON_CONTENT_ENCODING;
      case BodyProblem.JSON_AMBIGUOUS: return DefaultCause.JSON_AMBIGUOUS;
      case BodyProblem.PROTOBUF: return DefaultCause.PROTOBUF_NONCANONICAL;
    }
  }
  return DefaultCause.CONDITION_ERROR;
}

/** Writes a condition error's message into `out` (capacity CONDITION_MESSAGE_BYTES); returns its length. */
function conditionMessage(kind: u8, ptr: usize, len: i32, out: StaticArray<u8>): i32 {
  return conditionMessageAt(kind, ptr, len, changetype<usize>(out));
}

function conditionMessageAt(kind: u8, ptr: usize, len: i32, o: usize): i32 {
  if (kind == E_NOT_BOOL) {
    const n = min(len, CONDITION_MESSAGE_BYTES);
    memory.copy(o, ptr, <usize>n);
    return n;
  }
  return writeCelErrorMessage(kind, ptr, len, o, CONDITION_MESSAGE_BYTES);
}
