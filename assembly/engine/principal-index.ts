// PrincipalIndex: the hash index of docs/table-format.md §5, built at load and never stored. Keys are
// (field, arg, value) for identity predicates that can be looked up exactly: every hole value of a family (its
// postings are the rows, i.e. rule indexes) and every pattern of a non-hole clause's index predicate (its
// postings are (family, clause)). Everything lives in flat u32 arrays: one open-addressing slot array of
// (hash, value ref, first posting), a `next` array chaining the postings of a key, and small arrays for clause
// postings and the scan list. About 16 bytes per key for the usual one posting per key; no per-entry objects.

import { bytesEqual, hashBytes, hashFinish, hashWord, HASH_SEED } from "./bytes";
import { VarintCursor } from "./frontcode";
import { Field, NO_HOLE, PRED_FLAG_HOLE, PRED_FLAG_IGNORE_CASE } from "./table/format";
import { TableRecords } from "./table/records";

export const NO_ENTRY: u32 = 0xffffffff;
/** A slot's value ref with this bit is a PATS index; without it, a VALS index. */
const PAT_REF: u32 = 0x80000000;
/** More postings than this would need more memory than any table deserves: the load is refused. */
const MAX_POSTINGS: u64 = 1 << 24;

/** The part of a key hash that comes from the field and the arg. */
// @ts-ignore: decorator
@inline export function fieldArgHash(field: u32, argPtr: usize, argLen: i32): u32 {
  return hashBytes(hashWord(HASH_SEED, field), argPtr, argLen);
}

/**
 * A key's hash from its value's hash (hashBytes(HASH_SEED, value), computed once per VALS entry at load) and its
 * field/arg hash. The slot is taken from the high bits ((hash * cap) >> 32), so the result is avalanched.
 */
// @ts-ignore: decorator
@inline export function combineKey(valueHash: u32, fa: u32): u32 {
  return hashFinish(hashWord(valueHash, fa));
}

/** Hash of an index key; identical at load (from table bytes) and per request (from the peer's bytes). */
export function keyHash(field: u32, argPtr: usize, argLen: i32, valPtr: usize, valLen: i32): u32 {
  return combineKey(hashBytes(HASH_SEED, valPtr, valLen), fieldArgHash(field, argPtr, argLen));
}

/** What the index of a validated table needs, counted before anything is allocated. */
export class IndexPlan {
  holeRows: u32 = 0;
  holeFams: u32 = 0;
  postings: u32 = 0;
  scans: u32 = 0;
  cap: u32 = 8;
  /** Bytes the index arrays and the load's scratch (the id set when it cannot borrow the slots) take. */
  bytes: usize = 0;
  error: string = "";

  static of(t: TableRecords): IndexPlan {
    const plan = new IndexPlan();
    let postings: u64 = 0;
    for (let f: u32 = 0; f < t.famCount; f++) {
      const rec = t.fam(f);
      const srcStart = load<u32>(rec, 12);
      const srcCount = load<u32>(rec, 16);
      const holeClause = load<u32>(rec, 40);
      if (holeClause != NO_HOLE) {
        plan.holeRows += load<u32>(rec, 8);
        plan.holeFams++;
      }
      if (srcCount == 0) plan.scans++;
      for (let c = srcStart; c < srcStart + srcCount; c++) {
        if (c == holeClause) continue;
        const p = indexPredicate(t, c);
        if (p == NO_ENTRY) plan.scans++;
        else postings += <u64>load<u32>(t.pred(p), 16);
      }
    }
    if (postings > MAX_POSTINGS) {
      plan.error = "the index would need " + postings.toString() + " postings (at most 16777216)";
      postings = 0;
    }
    plan.postings = <u32>postings;
    const keys = plan.holeRows + plan.postings;
    // Load factor at most 3/4: linear probing stays short.
    plan.cap = keys + keys / 3 + 8;
    const slotBytes = <usize>plan.cap * 12;
    const n = t.ruleCount;
    const idSet = (<usize>n + (<usize>n >> 1) + 8) * 8;
    plan.bytes =
      slotBytes + (idSet > slotBytes ? idSet : 0) + (<usize>n + <usize>plan.postings) * 4 + <usize>plan.postings * 12 +
      <usize>plan.scans * 8 + <usize>plan.holeFams * 8 + 256;
    return plan;
  }
}

export class PrincipalIndex {
  /** 3 u32 per slot: key hash, value ref (VALS index, or PATS index | PAT_REF), first posting (NO_ENTRY: empty). */
  slots: StaticArray<u32>;
  cap: u32;
  /**
   * Postings: a hole row is its rule index r (< ruleCount); a clause posting k is ruleCount + k. `next` chains the
   * postings of one key.
   */
  next: StaticArray<u32>;
  ruleCount: u32;
  /** Clause posting k: the family, its source clause, the index predicate (proved by the lookup). */
  cpFam: StaticArray<u32>;
  cpClause: StaticArray<u32>;
  cpPred: StaticArray<u32>;
  /** Families every request evaluates: (family, clause), clause NO_ENTRY for a family without sources. */
  scanFam: StaticArray<u32>;
  scanClause: StaticArray<u32>;
  scanCount: u32 = 0;
  /** First rule and family index of each family with a hole, in rule order: hole row -> family. */
  holeFirst: StaticArray<u32>;
  holeFam: StaticArray<u32>;
  holeFamCount: u32 = 0;
  keyCount: u32 = 0;
  postCount: u32 = 0;
  /** Bit (1 << field) set when some key has that field: lets a request skip useless lookups. */
  fields: u32 = 0;
  /**
   * Some PEER_NAME key does not start with `spiffe://`, so it could equal a DNS SAN or a subject: only then does a
   * request look those up too (Istio principals are SPIFFE IDs, which only a URI SAN can carry).
   */
  peerNameOtherKeys: bool = false;
  /** Why the plan was refused ("" when fine). */
  planError: string;

  constructor(t: TableRecords, plan: IndexPlan) {
    this.cap = plan.cap;
    this.ruleCount = t.ruleCount;
    this.planError = plan.error;
    this.slots = new StaticArray<u32>(<i32>(plan.cap * 3));
    this.next = new StaticArray<u32>(<i32>(t.ruleCount + plan.postings));
    this.cpFam = new StaticArray<u32>(<i32>plan.postings);
    this.cpClause = new StaticArray<u32>(<i32>plan.postings);
    this.cpPred = new StaticArray<u32>(<i32>plan.postings);
    this.scanFam = new StaticArray<u32>(<i32>plan.scans);
    this.scanClause = new StaticArray<u32>(<i32>plan.scans);
    this.holeFirst = new StaticArray<u32>(<i32>plan.holeFams);
    this.holeFam = new StaticArray<u32>(<i32>plan.holeFams);
  }

  /**
   * The slot array's memory as scratch for the load (the rule-id set), when it has at least `bytes`; else 0.
   * `build` overwrites every slot afterwards.
   */
  borrowSlots(bytes: usize): usize {
    return <usize>this.cap * 12 >= bytes ? changetype<usize>(this.slots) : 0;
  }

  /** The family of hole row `r` (binary search over the hole families). */
  @inline holeFamilyOf(r: u32): u32 {
    const first = this.holeFirst;
    let lo: u32 = 0;
    let hi = this.holeFamCount;
    while (hi - lo > 1) {
      const mid = (lo + hi) >>> 1;
      if (unchecked(first[mid]) <= r) lo = mid;
      else hi = mid;
    }
    return unchecked(this.holeFam[lo]);
  }

  /** The predicate that gave posting `j` its key (every posting of a key has the same field and arg). */
  @inline predOf(t: TableRecords, j: u32): u32 {
    if (j < this.ruleCount) return t.famHolePred(this.holeFamilyOf(j));
    return unchecked(this.cpPred[j - this.ruleCount]);
  }

  /** Whether slot `s` (occupied) holds the key (field, arg, bytes). */
  private slotIsKey(t: TableRecords, s: u32, field: u32, argPtr: usize, argLen: i32, valPtr: usize, valLen: i32): bool {
    const prec = t.pred(this.predOf(t, unchecked(this.slots[s * 3 + 2])));
    if (<u32>load<u8>(prec) != field || !bytesEqual(t.strPtr(load<u32>(prec, 4)), <i32>load<u32>(prec, 8), argPtr, argLen)) return false;
    const ref = unchecked(this.slots[s * 3 + 1]);
    if ((ref & PAT_REF) != 0) {
      const pat = ref & ~PAT_REF;
      return bytesEqual(t.patValuePtr(pat), t.patValueLen(pat), valPtr, valLen);
    }
    return t.vals.equals(ref, valPtr, valLen);
  }

  /** Whether slot `s` holds the key (field, arg, VALS[v]). Equal VALS indexes are equal values (VALS is unique). */
  private slotIsValueKey(t: TableRecords, s: u32, field: u32, argPtr: usize, argLen: i32, v: u32): bool {
    const prec = t.pred(this.predOf(t, unchecked(this.slots[s * 3 + 2])));
    if (<u32>load<u8>(prec) != field || !bytesEqual(t.strPtr(load<u32>(prec, 4)), <i32>load<u32>(prec, 8), argPtr, argLen)) return false;
    const ref = unchecked(this.slots[s * 3 + 1]);
    if ((ref & PAT_REF) == 0) return ref == v;
    const pat = ref & ~PAT_REF;
    return t.vals.equals(v, t.patValuePtr(pat), t.patValueLen(pat));
  }

  /** Adds posting `j` to the key in slot `s`, or makes `s` (empty) a new key with hash `h` and value ref `ref`. */
  private post(s: u32, h: u32, ref: u32, field: u32, j: u32): void {
    const head = unchecked(this.slots[s * 3 + 2]);
    if (head == NO_ENTRY) {
      unchecked((this.slots[s * 3] = h));
      unchecked((this.slots[s * 3 + 1] = ref));
      this.keyCount++;
      this.fields |= 1 << field;
    }
    unchecked((this.next[j] = head));
    unchecked((this.slots[s * 3 + 2] = j));
    this.postCount++;
  }

  /**
   * Fills the index: the rows of every hole family (decoding ROWS, which is checked here: each row names a VALS
   * entry, the rows of a family have distinct values, the stream ends with the last row), then the clause
   * postings and the scan list. `valueHash` holds hashBytes(HASH_SEED, VALS[v]) for every v.
   */
  build(t: TableRecords, valueHash: usize): string {
    if (this.planError.length != 0) return this.planError;
    memory.fill(changetype<usize>(this.slots), 0xff, <usize>this.cap * 12);
    const cap = this.cap;
    const cur = new VarintCursor(t.rows, t.rows + <usize>t.rowsLen);
    for (let f: u32 = 0; f < t.famCount; f++) {
      const holePred = t.famHolePred(f);
      if (holePred == NO_HOLE) continue;
      const first = t.famFirst(f);
      const rows = t.famRows(f);
      const hf = this.holeFamCount++;
      unchecked((this.holeFirst[hf] = first));
      unchecked((this.holeFam[hf] = f));
      const prec = t.pred(holePred);
      const field = <u32>load<u8>(prec);
      const argPtr = t.strPtr(load<u32>(prec, 4));
      const argLen = <i32>load<u32>(prec, 8);
      const fa = fieldArgHash(field, argPtr, argLen);
      let prev: i64 = 0;
      for (let k: u32 = 0; k < rows; k++) {
        if (!cur.next()) return "ROWS: family " + f.toString() + " row " + k.toString() + ": " + cur.error;
        const z = cur.value;
        // Zig-zag: 2d for d >= 0, -2d-1 for d < 0.
        const d: i64 = (z & 1) != 0 ? -(<i64>(z >> 1)) - 1 : <i64>(z >> 1);
        const v = prev + d;
        if (v < 0 || v >= <i64>t.valueCount) {
          return "ROWS: family " + f.toString() + " row " + k.toString() + ": value " + v.toString() + " outside VALS (" + t.valueCount.toString() + " entries)";
        }
        prev = v;
        const h = combineKey(load<u32>(valueHash + (<usize>v << 2)), fa);
        let s = <u32>((<u64>h * <u64>cap) >> 32);
        while (true) {
          const head = unchecked(this.slots[s * 3 + 2]);
          if (head == NO_ENTRY) break;
          if (unchecked(this.slots[s * 3]) == h && this.slotIsValueKey(t, s, field, argPtr, argLen, <u32>v)) {
            // Rows of one family have distinct values (one lookup reaches at most one row of a family). Earlier
            // rows of this family are the newest postings of the key.
            if (head >= first && head < this.ruleCount) {
              return "family " + f.toString() + ": rows " + (head - first).toString() + " and " + k.toString() + " have the same hole value";
            }
            break;
          }
          s++;
          if (s == cap) s = 0;
        }
        this.post(s, h, <u32>v, field, first + k);
      }
    }
    if (cur.pos != cur.end) return "ROWS: " + (cur.end - cur.pos).toString() + " bytes after the last row";

    let k: u32 = 0;
    for (let f: u32 = 0; f < t.famCount; f++) {
      const rec = t.fam(f);
      const srcStart = load<u32>(rec, 12);
      const srcCount = load<u32>(rec, 16);
      const holeClause = load<u32>(rec, 40);
      if (srcCount == 0) {
        this.addScan(f, NO_ENTRY);
        continue;
      }
      for (let c = srcStart; c < srcStart + srcCount; c++) {
        if (c == holeClause) continue;
        const p = indexPredicate(t, c);
        if (p == NO_ENTRY) {
          this.addScan(f, c);
          continue;
        }
        const prec = t.pred(p);
        const field = <u32>load<u8>(prec);
        const argPtr = t.strPtr(load<u32>(prec, 4));
        const argLen = <i32>load<u32>(prec, 8);
        const fa = fieldArgHash(field, argPtr, argLen);
        const patStart = load<u32>(prec, 12);
        const patEnd = patStart + load<u32>(prec, 16);
        for (let i = patStart; i < patEnd; i++) {
          const valPtr = t.patValuePtr(i);
          const valLen = t.patValueLen(i);
          const h = combineKey(hashBytes(HASH_SEED, valPtr, valLen), fa);
          unchecked((this.cpFam[k] = f));
          unchecked((this.cpClause[k] = c));
          unchecked((this.cpPred[k] = p));
          let s = <u32>((<u64>h * <u64>cap) >> 32);
          while (unchecked(this.slots[s * 3 + 2]) != NO_ENTRY) {
            if (unchecked(this.slots[s * 3]) == h && this.slotIsKey(t, s, field, argPtr, argLen, valPtr, valLen)) break;
            s++;
            if (s == cap) s = 0;
          }
          this.post(s, h, i | PAT_REF, field, this.ruleCount + k);
          if (field == <u32>Field.PEER_NAME && !hasSpiffeScheme(valPtr, valLen)) this.peerNameOtherKeys = true;
          k++;
        }
      }
    }
    return "";
  }

  private addScan(f: u32, c: u32): void {
    const n = this.scanCount;
    unchecked((this.scanFam[n] = f));
    unchecked((this.scanClause[n] = c));
    this.scanCount = n + 1;
  }

  /** Looks up a key; returns its first posting or NO_ENTRY. */
  lookup(t: TableRecords, field: u32, argPtr: usize, argLen: i32, valPtr: usize, valLen: i32): u32 {
    if ((this.fields & (1 << field)) == 0) return NO_ENTRY;
    const h = keyHash(field, argPtr, argLen, valPtr, valLen);
    const cap = this.cap;
    let s = <u32>((<u64>h * <u64>cap) >> 32);
    while (true) {
      const head = unchecked(this.slots[s * 3 + 2]);
      if (head == NO_ENTRY) return NO_ENTRY;
      if (unchecked(this.slots[s * 3]) == h && this.slotIsKey(t, s, field, argPtr, argLen, valPtr, valLen)) return head;
      s++;
      if (s == cap) s = 0;
    }
    return NO_ENTRY;
  }
}

/**
 * The index predicate of a source clause that is not a family's hole clause (§5): the first PRINCIPAL, else
 * PEER_NAME, else ATTRIBUTE, else TRUST_DOMAIN predicate with negate = 0 and only EXACT patterns. Ignore-case
 * predicates are left to evaluation (the hash is of exact bytes).
 */
export function indexPredicate(t: TableRecords, c: u32): u32 {
  const crec = t.srcClause(c);
  const start = load<u32>(crec);
  const count = load<u32>(crec, 4);
  let best = NO_ENTRY;
  let bestRank = 5;
  for (let p = start; p < start + count; p++) {
    const prec = t.pred(p);
    const field = <u32>load<u8>(prec);
    let rank = 5;
    if (field == <u32>Field.PRINCIPAL) rank = 1;
    else if (field == <u32>Field.PEER_NAME) rank = 2;
    else if (field == <u32>Field.ATTRIBUTE) rank = 3;
    else if (field == <u32>Field.TRUST_DOMAIN) rank = 4;
    if (rank >= bestRank) continue;
    if (load<u8>(prec, 1) != 0 || (load<u8>(prec, 2) & (PRED_FLAG_IGNORE_CASE | PRED_FLAG_HOLE)) != 0) continue;
    if (load<u32>(prec, 20) != load<u32>(prec, 16)) continue;
    best = p;
    bestRank = rank;
    if (rank == 1) break;
  }
  return best;
}

/** Whether the bytes start with `spiffe://`. */
function hasSpiffeScheme(p: usize, len: i32): bool {
  return len >= 9 && load<u64>(p) == 0x2f3a656666697073 && load<u8>(p, 8) == 47;
}
