// The records of a policy table (docs/table-format.md §3) and the accessors the request path reads them with.
// INVARIANT: every accessor's index and string range was checked by validate.ts before the table is used.

import { bytesEqual, hashBytes, hashFinish, HASH_SEED } from "../bytes";
import { TableConditions } from "../conditions";
import { FrontCoded } from "../frontcode";
import {
  Action, CLAUSE_SIZE, FAM_FLAG_DRY_RUN, FAM_FLAG_METRICS, FAM_FLAG_RECORD_ALLOWS, FAM_SIZE, PAT_SIZE, PRED_SIZE,
  RESP_SIZE, SCHM_SIZE, VERSION,
} from "./format";

/** Where `decodeRuleId` writes (ids are at most 200 bytes); overwritten by the next call. */
export const RULE_ID_BUF: usize = memory.data(256);

/**
 * The records of a table: the body, where each section lies, what META says, and what validation builds beside
 * them (schema slots, the shadow scratch, the conditions). PolicyTable adds the principal index, which reads
 * tables through this class (so the index does not depend on the table that holds it).
 */
export class TableRecords {
  /** The row-major body; every pointer below points into it. */
  body: ArrayBuffer;
  base: usize;
  bodyLen: u32;
  /** The envelope hash as 16 lower-case hex digits. */
  hashHex: string = "";
  /** The envelope's version (2 or 3). */
  version: u32 = VERSION;
  strs: usize = 0;
  strsLen: u32 = 0;
  meta: usize = 0;
  fams: usize = 0;
  famCount: u32 = 0;
  srcc: usize = 0;
  srccCount: u32 = 0;
  opcl: usize = 0;
  opclCount: u32 = 0;
  preds: usize = 0;
  predCount: u32 = 0;
  pats: usize = 0;
  patCount: u32 = 0;
  schm: usize = 0;
  schemaCount: u32 = 0;
  skey: usize = 0;
  skeyCount: u32 = 0;
  rows: usize = 0;
  rowsLen: u32 = 0;
  /** Rule ids in rule order. */
  ids: FrontCoded = new FrontCoded();
  /** Hole values, sorted and unique. */
  vals: FrontCoded = new FrontCoded();
  ruleCount: u32 = 0;
  valueCount: u32 = 0;
  defaultAction: u8 = 0;
  defaultKind: u8 = 0;
  /** Rules that are AUDIT or dry-run: their matches are reported, never decide. */
  shadowRuleCount: u32 = 0;
  /**
   * Matching shadow rules of the decision in progress as (first rule, count) ranges; after the decision sorted,
   * merged and disjoint. Room for every range one decision can record (a shadow family is reached at most once
   * through each source clause and once through its hole or the scan list).
   */
  shadowScratch: StaticArray<u32> = new StaticArray<u32>(0);
  /** Open-addressing map trust domain -> schema index + 1 (0 = empty slot). */
  schemaSlots: StaticArray<u32> = new StaticArray<u32>(0);
  /** The CEL conditions (EXPR section), or null when no rule has one. */
  cond: TableConditions | null = null;
  exprPtr: usize = 0;
  exprLen: u32 = 0;
  hasExpr: bool = false;
  maxBodyBytes: u32 = 0;
  metaFlags: u32 = 0;
  /** Some predicate or condition reads the request path (engine/path.ts: such tables refuse ambiguous paths). */
  readsPath: bool = false;
  /** RESP and RHDR (0 / 0 without them). */
  resp: usize = 0;
  respCount: u32 = 0;
  rhdr: usize = 0;
  rhdrCount: u32 = 0;
  /** The RESP record the default deny replies with, or -1 for the built-in 403. */
  defaultResponse: i32 = -1;
  /** Allowed requests are sampled for the record: recorded when the x-request-id hash is below `sampleThreshold`. */
  sampleAllows: bool = false;
  sampleThreshold: u32 = 0;
  /** Some family has the METRICS flag (per-rule metrics to define at configure). */
  hasRuleMetrics: bool = false;

  /** RESP record `i`. */
  @inline respRec(i: u32): usize {
    return this.resp + <usize>(i * RESP_SIZE);
  }

  /** The RESP record family `f` replies with when it denies, or -1 for the default reply. */
  @inline famResponse(f: u32): i32 {
    return <i32>load<u16>(this.fam(f), 2) - 1;
  }

  /** FAMS flags of family `f`. */
  @inline famFlags(f: u32): u32 {
    return <u32>load<u8>(this.fam(f), 1);
  }

  constructor(body: ArrayBuffer) {
    this.body = body;
    this.base = changetype<usize>(body);
    this.bodyLen = <u32>body.byteLength;
  }

  // Records. INVARIANT: validate() has checked every index and string range these accessors can reach.

  @inline strPtr(off: u32): usize {
    return this.strs + <usize>off;
  }

  @inline fam(f: u32): usize {
    return this.fams + <usize>(f * FAM_SIZE);
  }
  @inline famAction(f: u32): u32 {
    return <u32>load<u8>(this.fam(f));
  }
  @inline famFirst(f: u32): u32 {
    return load<u32>(this.fam(f), 4);
  }
  @inline famRows(f: u32): u32 {
    return load<u32>(this.fam(f), 8);
  }
  @inline famHoleClause(f: u32): u32 {
    return load<u32>(this.fam(f), 40);
  }
  @inline famHolePred(f: u32): u32 {
    return load<u32>(this.fam(f), 44);
  }
  /** AUDIT or dry-run: reported, never decides. */
  @inline famIsShadow(f: u32): bool {
    const rec = this.fam(f);
    return load<u8>(rec) == <u8>Action.AUDIT || (load<u8>(rec, 1) & FAM_FLAG_DRY_RUN) != 0;
  }
  @inline srcClause(c: u32): usize {
    return this.srcc + <usize>(c * CLAUSE_SIZE);
  }
  @inline opClause(c: u32): usize {
    return this.opcl + <usize>(c * CLAUSE_SIZE);
  }
  @inline pred(p: u32): usize {
    return this.preds + <usize>(p * PRED_SIZE);
  }
  @inline pat(i: u32): usize {
    return this.pats + <usize>(i * PAT_SIZE);
  }
  @inline patValuePtr(i: u32): usize {
    return this.strs + <usize>load<u32>(this.pat(i), 4);
  }
  @inline patValueLen(i: u32): i32 {
    return <i32>load<u32>(this.pat(i), 8);
  }

  /** The family holding rule `r` (binary search over FAMS.firstRule). */
  familyOf(r: u32): u32 {
    let lo: u32 = 0;
    let hi = this.famCount;
    while (hi - lo > 1) {
      const mid = (lo + hi) >>> 1;
      if (this.famFirst(mid) <= r) lo = mid;
      else hi = mid;
    }
    return lo;
  }

  /** The action of rule `r`. */
  /** Whether rule `r`'s family has the METRICS flag. */
  ruleHasMetrics(r: u32): bool {
    return (this.famFlags(this.familyOf(r)) & FAM_FLAG_METRICS) != 0;
  }

  /** Whether rule `r`'s family has the RECORD_ALLOWS flag. */
  ruleRecordsAllows(r: u32): bool {
    return (this.famFlags(this.familyOf(r)) & FAM_FLAG_RECORD_ALLOWS) != 0;
  }

  ruleAction(r: u32): u32 {
    return this.famAction(this.familyOf(r));
  }

  /** Writes rule `r`'s id to RULE_ID_BUF and returns its length (reports only: deny details, logs, explain). */
  decodeRuleId(r: u32): i32 {
    return this.ids.decodeInto(r, RULE_ID_BUF);
  }

  /** The rule's id as a GC string (explain and tests only). */
  ruleId(r: u32): string {
    const n = this.decodeRuleId(r);
    return String.UTF8.decodeUnsafe(RULE_ID_BUF, <usize>n, false);
  }

  /** Finds the schema of a trust domain: its SCHM index, or -1. */
  findSchema(td: usize, tdLen: i32): i32 {
    const slots = this.schemaSlots;
    const cap = <u32>slots.length;
    if (cap == 0) return -1;
    let i = hashFinish(hashBytes(HASH_SEED, td, tdLen)) & (cap - 1);
    while (true) {
      const v = unchecked(slots[i]);
      if (v == 0) return -1;
      const rec = this.schm + <usize>((v - 1) * SCHM_SIZE);
      if (bytesEqual(this.strs + <usize>load<u32>(rec), <i32>load<u32>(rec, 4), td, tdLen)) return <i32>(v - 1);
      i = (i + 1) & (cap - 1);
    }
    return -1;
  }
}
