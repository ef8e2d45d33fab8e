// UTF-8 helpers. CEL strings are sequences of code points; ours are UTF-8 bytes, so size() counts lead bytes
// and every ordering is bytewise (which is code point order for valid UTF-8).

/** Strict UTF-8 (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF). */
export function validUtf8(ptr: usize, len: i32): bool {
  let i = 0;
  while (i < len) {
    const c = <u32>load<u8>(ptr + <usize>i);
    if (c < 0x80) { i++; continue; }
    let need = 0;
    let min: u32 = 0;
    let cp: u32 = 0;
    if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { need = 2; cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; min = 0x10000; }
    else return false;
    if (i + need >= len) return false;
    for (let k = 1; k <= need; k++) {
      const cc = <u32>load<u8>(ptr + <usize>(i + k));
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += need + 1;
  }
  return true;
}

/** Number of code points: bytes that are not continuation bytes. */
export function codePointCount(ptr: usize, len: i32): i32 {
  let n = 0;
  for (let i = 0; i < len; i++) {
    if ((<u32>load<u8>(ptr + <usize>i) & 0xC0) != 0x80) n++;
  }
  return n;
}

/** Writes code point `cp` as UTF-8 at `out` (room for 4 bytes); returns the byte count. */
export function encodeUtf8(cp: u32, out: usize): i32 {
  if (cp < 0x80) { store<u8>(out, <u8>cp); return 1; }
  if (cp < 0x800) {
    store<u8>(out, <u8>(0xC0 | (cp >> 6)));
    store<u8>(out + 1, <u8>(0x80 | (cp & 0x3F)));
    return 2;
  }
  if (cp < 0x10000) {
    store<u8>(out, <u8>(0xE0 | (cp >> 12)));
    store<u8>(out + 1, <u8>(0x80 | ((cp >> 6) & 0x3F)));
    store<u8>(out + 2, <u8>(0x80 | (cp & 0x3F)));
    return 3;
  }
  store<u8>(out, <u8>(0xF0 | (cp >> 18)));
  store<u8>(out + 1, <u8>(0x80 | ((cp >> 12) & 0x3F)));
  store<u8>(out + 2, <u8>(0x80 | ((cp >> 6) & 0x3F)));
  store<u8>(out + 3, <u8>(0x80 | (cp & 0x3F)));
  return 4;
}

/** Bytewise equality of two byte ranges. */
export function bytesEqual(p1: usize, l1: i32, p2: usize, l2: i32): bool {
  if (l1 != l2) return false;
  if (l1 == 0 || p1 == p2) return true;
  return memory.compare(p1, p2, <usize>l1) == 0;
}

/** Bytewise ordering (-1, 0, 1); a proper prefix sorts first. */
export function bytesCompare(p1: usize, l1: i32, p2: usize, l2: i32): i32 {
  const n = l1 < l2 ? l1 : l2;
  if (n > 0) {
    const c = memory.compare(p1, p2, <usize>n);
    if (c != 0) return c < 0 ? -1 : 1;
  }
  return l1 < l2 ? -1 : l1 > l2 ? 1 : 0;
}

/** Index of the first occurrence of the needle in the haystack, or -1. An empty needle is found at 0. */
export function bytesIndexOf(hp: usize, hl: i32, np: usize, nl: i32): i32 {
  if (nl == 0) return 0;
  if (nl > hl) return -1;
  const first = load<u8>(np);
  const last = hl - nl;
  for (let i = 0; i <= last; i++) {
    if (load<u8>(hp + <usize>i) != first) continue;
    if (nl == 1 || memory.compare(hp + <usize>i + 1, np + 1, <usize>(nl - 1)) == 0) return i;
  }
  return -1;
}
