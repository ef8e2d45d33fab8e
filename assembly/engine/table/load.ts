// The loader of a policy table: opens the envelope (envelope.ts), validates the records (validate.ts), which
// also decodes the conditions of the EXPR section, then sizes and builds the principal index (principal-index.ts)
// while it checks the rule ids and hole values. The one place that ties table, index and conditions together.

import { IndexPlan, PrincipalIndex } from "../principal-index";
import { openEnvelope, sectionLength } from "./envelope";
import { MAX_LOAD_BYTES, MAX_VALUE_BYTES, TAG_VALS } from "./format";
import { fail, PolicyTable, TableResult } from "./policy-table";
import { validateIds, validateRecords, validateValues } from "./validate";

/**
 * Decodes an envelope (the base64-decoded plugin configuration), checks it, restores and validates the body
 * and builds the index. Errors start with "table: ".
 */
export function decodeEnvelope(ptr: usize, len: i32): TableResult {
  const r = openEnvelope(ptr, len);
  if (r.error.length != 0) return r;
  const t = r.table!;
  r.table = null;
  const err = validateAndIndex(t);
  if (err.length != 0) return fail(r, "table: " + err);
  r.table = t;
  return r;
}

/**
 * Validates every record of the body, then sizes and builds the index. The index's arrays are allocated before
 * the rule ids and values are checked: the id check borrows the index's slot array as its scratch set, and the
 * one reservation below makes memory grow once, to what the whole load needs.
 */
function validateAndIndex(t: PolicyTable): string {
  let e = validateRecords(t);
  if (e.length != 0) return e;
  const plan = IndexPlan.of(t);
  if (plan.error.length != 0) return plan.error;
  const need = <u64>plan.bytes + <u64>t.valueCount * 4 + <u64>min<u32>(sectionLength(TAG_VALS), MAX_VALUE_BYTES) + 1024;
  // A failed memory.grow inside the allocator is a trap: refuse what no sensible table needs instead.
  if (need > MAX_LOAD_BYTES) return "loading the table needs " + need.toString() + " bytes of memory (at most 536870912)";
  reserveHeap(<usize>need);
  const ix = new PrincipalIndex(t, plan);
  e = validateIds(t, ix);
  if (e.length != 0) return e;
  const valueHash = t.valueCount > 0 ? heap.alloc(<usize>t.valueCount * 4) : 0;
  e = validateValues(t, valueHash);
  if (e.length == 0) e = ix.build(t, valueHash);
  if (valueHash != 0) heap.free(valueHash);
  if (e.length != 0) return e;
  t.index = ix;
  return "";
}

/**
 * Makes the heap hold `bytes` of free memory in one piece, by allocating and freeing a block that size. The
 * allocator then grows memory once, by what the load needs, instead of doubling it whenever a piece does not
 * fit (AssemblyScript's TLSF grows by at least the current size, and wasm memory never shrinks).
 */
function reserveHeap(bytes: usize): void {
  if (bytes < (256 << 10)) return;
  heap.free(heap.alloc(bytes));
}
