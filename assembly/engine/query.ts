// CEL `request.query`: the query string of `:path` as a map(string, string). Parameters are separated by `&`, a
// key ends at the first `=` (a parameter without `=` has the value ""), keys and values are percent-decoded
// (`%41` is `A`; a `%` not followed by two hex digits stays as it is).
//
// A condition decides only on a parameter every mainstream query parser reads the same way; anything else is
// ambiguous and fails the condition (a DENY rule matches, an ALLOW rule does not):
// - a key given more than once (`?role=x&role=admin`): frameworks take the first, the last, or a list;
// - a `+` in the key or value: HTML form decoding (Express's qs, Python's parse_qs) reads a space, RFC 3986 a plus;
// - a key also sent in bracket form (`role[]=admin`, `role[a]=admin`): qs turns it into an array or object;
// - a value that does not decode to UTF-8 (`%FF`): decodeURIComponent refuses it and qs keeps the raw text.
// Decoded text goes to the per-request CelArena; nothing else is allocated.

import { Slice } from "./bytes";
import { CelArena } from "./cel/arena";
import { validUtf8 } from "./cel/utf8";

/** Parameters size() looks at; a longer query makes size(request.query) fail rather than cost O(n^2). */
export const MAX_QUERY_PARAMS: i32 = 1024;

/** The query of a `:path`: after the first `?`, up to the first `#`. False when there is none. */
export function queryOf(path: usize, len: i32, out: Slice): bool {
  let q = -1;
  for (let i = 0; i < len; i++) {
    const c = load<u8>(path + <usize>i);
    if (c == 35) break;
    if (c == 63) {
      q = i + 1;
      break;
    }
  }
  if (q < 0) {
    out.clear();
    return false;
  }
  let e = q;
  while (e < len && load<u8>(path + <usize>e) != 35) e++;
  out.set(path + <usize>q, e - q);
  return true;
}

// @ts-ignore: decorator
@inline function hexVal(c: u32): i32 {
  if (c - 48 < 10) return <i32>(c - 48);
  const l = c | 0x20;
  if (l - 97 < 6) return <i32>(l - 87);
  return -1;
}

/** Decoded byte at encoded position `i` of [p, p+n); `step` gets the encoded length (1 or 3). */
let step: i32 = 1;
function decodedAt(p: usize, n: i32, i: i32): u32 {
  const c = <u32>load<u8>(p + <usize>i);
  if (c == 37 && i + 2 < n) {
    const h = hexVal(<u32>load<u8>(p + <usize>(i + 1)));
    const l = hexVal(<u32>load<u8>(p + <usize>(i + 2)));
    if (h >= 0 && l >= 0) {
      step = 3;
      return <u32>((h << 4) | l);
    }
  }
  step = 1;
  return c;
}

/** Whether the encoded bytes [a, a+an) decode to the encoded bytes [b, b+bn) decoded (`bEncoded`) or plain. */
function decodedEqual(a: usize, an: i32, b: usize, bn: i32, bEncoded: bool): bool {
  let i = 0;
  let j = 0;
  while (i < an && j < bn) {
    const x = decodedAt(a, an, i);
    i += step;
    let y: u32;
    if (bEncoded) {
      y = decodedAt(b, bn, j);
      j += step;
    } else {
      y = <u32>load<u8>(b + <usize>j);
      j++;
    }
    if (x != y) return false;
  }
  return i == an && j == bn;
}

/** Decoded length of [p, p+n). */
function decodedLength(p: usize, n: i32): i32 {
  let i = 0;
  let k = 0;
  while (i < n) {
    decodedAt(p, n, i);
    i += step;
    k++;
  }
  return k;
}

function decodeInto(p: usize, n: i32, out: usize): i32 {
  let i = 0;
  let k = 0;
  while (i < n) {
    store<u8>(out + <usize>k, <u8>decodedAt(p, n, i));
    i += step;
    k++;
  }
  return k;
}

// The parameter being scanned: key [kp, kp+kl), value [vp, vp+vl) (encoded).
let kp: usize = 0;
let kl: i32 = 0;
let vp: usize = 0;
let vl: i32 = 0;

/** Reads the parameter starting at `i` of the query; returns where the next one starts. */
function param(q: usize, n: i32, i: i32): i32 {
  let e = i;
  while (e < n && load<u8>(q + <usize>e) != 38) e++;
  let eq = i;
  while (eq < e && load<u8>(q + <usize>eq) != 61) eq++;
  kp = q + <usize>i;
  kl = eq - i;
  if (eq < e) {
    vp = q + <usize>(eq + 1);
    vl = e - eq - 1;
  } else {
    vp = 0;
    vl = 0;
  }
  return e + 1;
}

/** queryLookup: the parameter is there but parsers would read it differently (see the top of this file). */
export const QUERY_AMBIGUOUS: i32 = -2;

/** Whether the encoded key [p, p+n) decodes to `key` followed by `[` (qs's bracket syntax for `key`). */
function bracketForm(p: usize, n: i32, key: usize, keyLen: i32): bool {
  let i = 0;
  let j = 0;
  while (i < n && j < keyLen) {
    const x = decodedAt(p, n, i);
    i += step;
    if (x != <u32>load<u8>(key + <usize>j)) return false;
    j++;
  }
  return j == keyLen && i < n && decodedAt(p, n, i) == 91;
}

function hasPlus(p: usize, n: i32): bool {
  for (let i = 0; i < n; i++) if (load<u8>(p + <usize>i) == 43) return true;
  return false;
}

/**
 * The value of parameter `key` (plain bytes): 1 with `out` set, 0 when absent, -1 when the arena cannot hold the
 * decoded value, QUERY_AMBIGUOUS when parsers would disagree about it.
 */
export function queryLookup(q: usize, n: i32, key: usize, keyLen: i32, arena: CelArena, out: Slice): i32 {
  let matches = 0;
  let foundP: usize = 0;
  let foundL = 0;
  for (let i = 0; i < n; ) {
    const start = i;
    i = param(q, n, i);
    if (i - start <= 1) continue; // empty parameter (`&&`)
    if (bracketForm(kp, kl, key, keyLen)) return QUERY_AMBIGUOUS;
    if (!decodedEqual(kp, kl, key, keyLen, false)) continue;
    if (++matches > 1 || hasPlus(kp, kl) || hasPlus(vp, vl)) return QUERY_AMBIGUOUS;
    foundP = vp;
    foundL = vl;
  }
  if (matches == 0) return 0;
  const d = decodedLength(foundP, foundL);
  if (d == foundL) {
    out.set(foundL > 0 ? foundP : 0, foundL);
    return validUtf8(out.ptr, out.len) ? 1 : QUERY_AMBIGUOUS;
  }
  const buf = arena.alloc(d);
  if (buf == 0 && d > 0) return -1;
  const o = decodeInto(foundP, foundL, buf);
  out.set(buf, o);
  return validUtf8(buf, o) ? 1 : QUERY_AMBIGUOUS;
}

/** Number of distinct decoded keys, or -1 for more than MAX_QUERY_PARAMS parameters. */
export function queryCount(q: usize, n: i32): i32 {
  // Starts of the parameters seen so far are re-scanned for each new one (n is bounded).
  let count = 0;
  let params = 0;
  for (let i = 0; i < n; ) {
    const start = i;
    i = param(q, n, i);
    if (i - start <= 1) continue;
    if (++params > MAX_QUERY_PARAMS) return -1;
    const aP = kp;
    const aL = kl;
    let dup = false;
    for (let j = 0; j < start; ) {
      const s2 = j;
      j = param(q, n, j);
      if (j - s2 <= 1) continue;
      if (decodedEqual(kp, kl, aP, aL, true)) {
        dup = true;
        break;
      }
    }
    if (!dup) count++;
  }
  return count;
}
