// PrincipalIndex: the hash index of docs/table-format.md §5, built at load and never stored. Keys are
// (field, arg, value) for identity predicates that can be looked up exactly; postings say which (rule, source
// clause) such a key proves. Everything lives in flat u32 arrays (open addressing, postings as linked arrays):
// no per-entry objects, so a 100k-rule index costs a few flat arrays and builds in one pass.

import { bytesEqual, hashBytes, hashFinish, hashWord, HASH_SEED } from "./bytes";
import { Field, PolicyTable, PRED_FLAG_IGNORE_CASE } from "./table";

export const NO_ENTRY: u32 = 0xffffffff;

/** Hash of an index key. Identical at load (from table bytes) and per request (from the peer's bytes). */
export function keyHash(field: u32, argPtr: usize, argLen: i32, valPtr: usize, valLen: i32): u32 {
  let h = hashWord(HASH_SEED, field | (<u32>argLen << 8));
  if (argLen > 0) h = hashBytes(h, argPtr, argLen);
  h = hashBytes(h, valPtr, valLen);
  // The slot is taken from the high bits ((hash * cap) >> 32): avalanche them.
  return hashFinish(h);
}

export class PrincipalIndex {
  /** Slot -> key index + 1 (0 = empty). Linear probing; slot = (hash * cap) >> 32. */
  slots: StaticArray<u32>;
  cap: u32;
  /** Per key: hash, the predicate that gave it (field and arg), the pattern (value), first posting. */
  keyHash: StaticArray<u32>;
  keyPred: StaticArray<u32>;
  keyPat: StaticArray<u32>;
  keyHead: StaticArray<u32>;
  keyCount: u32 = 0;
  /** Per posting: the rule, its source clause, the index predicate (already proved by the lookup), next. */
  postRule: StaticArray<u32>;
  postClause: StaticArray<u32>;
  postPred: StaticArray<u32>;
  postNext: StaticArray<u32>;
  postCount: u32 = 0;
  /** Clauses every request evaluates: (rule, clause), clause NO_ENTRY for rules without sources. */
  scanRule: StaticArray<u32>;
  scanClause: StaticArray<u32>;
  scanCount: u32 = 0;
  /** Bit (1 << field) set when some key has that field: lets a request skip useless lookups. */
  fields: u32 = 0;

  constructor(keys: u32, scans: u32) {
    let cap = keys + (keys >> 1) + 8;
    this.cap = cap;
    this.slots = new StaticArray<u32>(<i32>cap);
    this.keyHash = new StaticArray<u32>(<i32>keys);
    this.keyPred = new StaticArray<u32>(<i32>keys);
    this.keyPat = new StaticArray<u32>(<i32>keys);
    this.keyHead = new StaticArray<u32>(<i32>keys);
    this.postRule = new StaticArray<u32>(<i32>keys);
    this.postClause = new StaticArray<u32>(<i32>keys);
    this.postPred = new StaticArray<u32>(<i32>keys);
    this.postNext = new StaticArray<u32>(<i32>keys);
    this.scanRule = new StaticArray<u32>(<i32>scans);
    this.scanClause = new StaticArray<u32>(<i32>scans);
  }

  /** Builds the index of a validated table. */
  static build(t: PolicyTable): PrincipalIndex {
    // Pass 1: size the arrays (a posting per pattern of each clause's index predicate).
    let keys: u32 = 0;
    let scans: u32 = 0;
    for (let r: u32 = 0; r < t.ruleCount; r++) {
      const rec = t.rule(r);
      const srcStart = load<u32>(rec, 12);
      const srcCount = load<u32>(rec, 16);
      if (srcCount == 0) {
        scans++;
        continue;
      }
      for (let c = srcStart; c < srcStart + srcCount; c++) {
        const p = indexPredicate(t, c);
        if (p == NO_ENTRY) scans++;
        else keys += load<u32>(t.pred(p), 16);
      }
    }
    const ix = new PrincipalIndex(keys, scans);
    // Pass 2: fill.
    for (let r: u32 = 0; r < t.ruleCount; r++) {
      const rec = t.rule(r);
      const srcStart = load<u32>(rec, 12);
      const srcCount = load<u32>(rec, 16);
      if (srcCount == 0) {
        ix.addScan(r, NO_ENTRY);
        continue;
      }
      for (let c = srcStart; c < srcStart + srcCount; c++) {
        const p = indexPredicate(t, c);
        if (p == NO_ENTRY) {
          ix.addScan(r, c);
          continue;
        }
        const prec = t.pred(p);
        const patStart = load<u32>(prec, 12);
        const patCount = load<u32>(prec, 16);
        for (let i = patStart; i < patStart + patCount; i++) ix.insert(t, p, i, r, c);
      }
    }
    return ix;
  }

  private addScan(r: u32, c: u32): void {
    const n = this.scanCount;
    unchecked((this.scanRule[n] = r));
    unchecked((this.scanClause[n] = c));
    this.scanCount = n + 1;
  }

  private insert(t: PolicyTable, p: u32, pat: u32, r: u32, c: u32): void {
    const prec = t.pred(p);
    const field = <u32>load<u8>(prec);
    const argPtr = t.strPtr(load<u32>(prec, 4));
    const argLen = <i32>load<u32>(prec, 8);
    const valPtr = t.patValuePtr(pat);
    const valLen = t.patValueLen(pat);
    const h = keyHash(field, argPtr, argLen, valPtr, valLen);
    let k = this.find(t, h, field, argPtr, argLen, valPtr, valLen);
    if (k == NO_ENTRY) {
      k = this.keyCount++;
      unchecked((this.keyHash[k] = h));
      unchecked((this.keyPred[k] = p));
      unchecked((this.keyPat[k] = pat));
      unchecked((this.keyHead[k] = NO_ENTRY));
      const cap = this.cap;
      let s = <u32>((<u64>h * <u64>cap) >> 32);
      while (unchecked(this.slots[s]) != 0) {
        s++;
        if (s == cap) s = 0;
      }
      unchecked((this.slots[s] = k + 1));
      this.fields |= 1 << field;
    }
    const j = this.postCount++;
    unchecked((this.postRule[j] = r));
    unchecked((this.postClause[j] = c));
    unchecked((this.postPred[j] = p));
    unchecked((this.postNext[j] = unchecked(this.keyHead[k])));
    unchecked((this.keyHead[k] = j));
  }

  /** The key (field, arg, value) or NO_ENTRY. `h` is keyHash of the same triple. */
  find(t: PolicyTable, h: u32, field: u32, argPtr: usize, argLen: i32, valPtr: usize, valLen: i32): u32 {
    const cap = this.cap;
    let s = <u32>((<u64>h * <u64>cap) >> 32);
    while (true) {
      const v = unchecked(this.slots[s]);
      if (v == 0) return NO_ENTRY;
      const k = v - 1;
      if (unchecked(this.keyHash[k]) == h) {
        const prec = t.pred(unchecked(this.keyPred[k]));
        const pat = unchecked(this.keyPat[k]);
        if (
          <u32>load<u8>(prec) == field &&
          bytesEqual(t.strPtr(load<u32>(prec, 4)), <i32>load<u32>(prec, 8), argPtr, argLen) &&
          bytesEqual(t.patValuePtr(pat), t.patValueLen(pat), valPtr, valLen)
        ) {
          return k;
        }
      }
      s++;
      if (s == cap) s = 0;
    }
    return NO_ENTRY;
  }

  /** Looks up a key; returns its first posting or NO_ENTRY. */
  @inline lookup(t: PolicyTable, field: u32, argPtr: usize, argLen: i32, valPtr: usize, valLen: i32): u32 {
    if ((this.fields & (1 << field)) == 0) return NO_ENTRY;
    const k = this.find(t, keyHash(field, argPtr, argLen, valPtr, valLen), field, argPtr, argLen, valPtr, valLen);
    return k == NO_ENTRY ? NO_ENTRY : unchecked(this.keyHead[k]);
  }
}

/**
 * The clause's index predicate (§5): the first PRINCIPAL, else ATTRIBUTE, else TRUST_DOMAIN predicate with
 * negate = 0 and only EXACT patterns. Ignore-case predicates are left to evaluation (the hash is of exact bytes).
 */
export function indexPredicate(t: PolicyTable, c: u32): u32 {
  const crec = t.srcClause(c);
  const start = load<u32>(crec);
  const count = load<u32>(crec, 4);
  let best = NO_ENTRY;
  let bestRank = 4;
  for (let p = start; p < start + count; p++) {
    const prec = t.pred(p);
    const field = <u32>load<u8>(prec);
    let rank = 4;
    if (field == <u32>Field.PRINCIPAL) rank = 1;
    else if (field == <u32>Field.ATTRIBUTE) rank = 2;
    else if (field == <u32>Field.TRUST_DOMAIN) rank = 3;
    if (rank >= bestRank) continue;
    if (load<u8>(prec, 1) != 0 || (load<u8>(prec, 2) & PRED_FLAG_IGNORE_CASE) != 0) continue;
    if (load<u32>(prec, 20) != load<u32>(prec, 16)) continue;
    best = p;
    bestRank = rank;
    if (rank == 1) break;
  }
  return best;
}
