// Byte-range helpers for the engine. Everything here works on raw (pointer, length) ranges so the request
// path can compare host-owned memory and table memory without creating GC objects.

/**
 * A caller-owned view of bytes: `ptr`/`len` are overwritten by whoever fills it. Holding a Slice never owns
 * the memory it points to.
 */
export class Slice {
  ptr: usize = 0;
  len: i32 = 0;

  @inline set(ptr: usize, len: i32): void {
    this.ptr = ptr;
    this.len = len;
  }

  @inline clear(): void {
    this.ptr = 0;
    this.len = 0;
  }
}

/** ASCII lower-case of one byte; other bytes unchanged. */
// @ts-ignore: decorator
@inline export function foldByte(c: u32): u32 {
  return c - 65 < 26 ? c | 0x20 : c;
}

/** Byte equality of two ranges (8 bytes at a time: wasm loads need no alignment). */
export function bytesEqual(a: usize, alen: i32, b: usize, blen: i32): bool {
  if (alen != blen) return false;
  if (a == b) return true;
  let n = <usize>alen;
  while (n >= 8) {
    if (load<u64>(a) != load<u64>(b)) return false;
    a += 8;
    b += 8;
    n -= 8;
  }
  if (n >= 4) {
    if (load<u32>(a) != load<u32>(b)) return false;
    a += 4;
    b += 4;
    n -= 4;
  }
  while (n > 0) {
    if (load<u8>(a) != load<u8>(b)) return false;
    a++;
    b++;
    n--;
  }
  return true;
}

/**
 * Orders two ranges as unsigned memcmp, shorter first on a common prefix (the order of the sorted EXACT block,
 * docs/table-format.md §3 PRED). Returns <0, 0, >0.
 */
export function bytesCompare(a: usize, alen: i32, b: usize, blen: i32): i32 {
  const n = alen < blen ? alen : blen;
  if (n > 0) {
    const c = memory.compare(a, b, <usize>n);
    if (c != 0) return c;
  }
  return alen - blen;
}

/** Like bytesCompare, with the subject `a` ASCII-folded (the pattern `b` is stored lower-case). */
export function bytesCompareFold(a: usize, alen: i32, b: usize, blen: i32): i32 {
  const n = alen < blen ? alen : blen;
  for (let i = 0; i < n; i++) {
    const x = foldByte(<u32>load<u8>(a + <usize>i));
    const y = <u32>load<u8>(b + <usize>i);
    if (x != y) return <i32>x - <i32>y;
  }
  return alen - blen;
}

/** Equality with the subject `a` ASCII-folded. */
export function bytesEqualFold(a: usize, alen: i32, b: usize, blen: i32): bool {
  if (alen != blen) return false;
  for (let i = 0; i < alen; i++) {
    if (foldByte(<u32>load<u8>(a + <usize>i)) != <u32>load<u8>(b + <usize>i)) return false;
  }
  return true;
}

/** Whether subject `a` starts with `b` (folding the subject when `fold`). */
export function startsWith(a: usize, alen: i32, b: usize, blen: i32, fold: bool): bool {
  if (blen > alen) return false;
  return fold ? bytesEqualFold(a, blen, b, blen) : bytesEqual(a, blen, b, blen);
}

/** Whether subject `a` ends with `b` (folding the subject when `fold`). */
export function endsWith(a: usize, alen: i32, b: usize, blen: i32, fold: bool): bool {
  if (blen > alen) return false;
  const start = a + <usize>(alen - blen);
  return fold ? bytesEqualFold(start, blen, b, blen) : bytesEqual(start, blen, b, blen);
}

/** Whether the range holds an ASCII upper-case letter (tables store ignore-case patterns lower-cased). */
export function hasUpperAscii(a: usize, alen: i32): bool {
  for (let i = 0; i < alen; i++) {
    if (<u32>load<u8>(a + <usize>i) - 65 < 26) return true;
  }
  return false;
}

// The index hash: murmur3's 32-bit mixing over 4-byte words (unaligned loads are fine in wasm). Identical at
// load (table bytes) and per request (the peer's bytes); several times faster than a byte-wise hash on the
// 40-60 byte principals every request hashes.
// @ts-ignore: decorator
@inline export const HASH_SEED: u32 = 0x9747b28c;

// @ts-ignore: decorator
@inline function mixWord(h: u32, k: u32): u32 {
  k *= 0xcc9e2d51;
  k = rotl<u32>(k, 15);
  k *= 0x1b873593;
  h ^= k;
  h = rotl<u32>(h, 13);
  return h * 5 + 0xe6546b64;
}

/** Continues the hash over a range. */
export function hashBytes(h: u32, ptr: usize, len: i32): u32 {
  let p = ptr;
  const end = ptr + <usize>len;
  while (p + 4 <= end) {
    h = mixWord(h, load<u32>(p));
    p += 4;
  }
  let k: u32 = 0;
  let shift: u32 = 0;
  while (p < end) {
    k |= <u32>load<u8>(p) << shift;
    shift += 8;
    p++;
  }
  return mixWord(h, k ^ <u32>len);
}

/** Continues the hash with one word. */
// @ts-ignore: decorator
@inline export function hashWord(h: u32, w: u32): u32 {
  return mixWord(h, w);
}

/** Final avalanche (murmur3 fmix32). */
// @ts-ignore: decorator
@inline export function hashFinish(h: u32): u32 {
  h ^= h >>> 16;
  h *= 0x85ebca6b;
  h ^= h >>> 13;
  h *= 0xc2b2ae35;
  h ^= h >>> 16;
  return h;
}

/**
 * An ArrayBuffer whose bytes are not zeroed (the caller writes every one): `new ArrayBuffer(n)` clears the
 * memory first, which costs milliseconds on a 10+ MB table body.
 */
export function uninitializedBuffer(n: i32): ArrayBuffer {
  return changetype<ArrayBuffer>(__new(<usize>n, idof<ArrayBuffer>()));
}
