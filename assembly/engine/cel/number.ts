// Number text <-> value conversions for the VM (int(), uint(), double(), string()) and the JSON extractor.
//
// Decimal-to-double must round correctly (JSON.parse and every CEL implementation do), so it has two paths:
// Clinger's exact fast path for short mantissas and small exponents, and otherwise the arbitrary-precision
// decimal shifting algorithm of Go's strconv (decimal.go / atof.go floatBits), which works in a fixed
// 800-digit buffer and keeps a sticky "truncated" bit, so it is exact without allocating.

export const PARSE_OK: i32 = 0;
export const PARSE_SYNTAX: i32 = 1;
export const PARSE_RANGE: i32 = 2;

/** Result of the last parse*, read right after the call (single-threaded, no allocation). */
export let parsedInt: i64 = 0;
export let parsedDouble: f64 = 0;

// ---------------------------------------------------------------------------------------------------------
// Decimal digits buffer (Go strconv's `decimal`).

const MAX_DIGITS: i32 = 800;
// INVARIANT: leftShift writes at most 19 digits past nd before it trims back to MAX_DIGITS, hence the slack.
const digits = new StaticArray<u8>(MAX_DIGITS + 24);
let nd: i32 = 0;
let dp: i32 = 0;
let trunc: bool = false;
const MAX_SHIFT: i32 = 60;
const POWTAB: StaticArray<i32> = [1, 3, 6, 9, 13, 16, 19, 23, 26];
const POW10: StaticArray<f64> = [
  1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
  1e20, 1e21, 1e22,
];

function trimDigits(): void {
  while (nd > 0 && unchecked(digits[nd - 1]) == 0) nd--;
  if (nd == 0) dp = 0;
}

function rightShift(k: i32): void {
  let r = 0;
  let w = 0;
  let n: u64 = 0;
  for (; (n >> <u64>k) == 0; r++) {
    if (r >= nd) {
      if (n == 0) { nd = 0; return; }
      while ((n >> <u64>k) == 0) { n = n * 10; r++; }
      break;
    }
    n = n * 10 + <u64>unchecked(digits[r]);
  }
  dp -= r - 1;
  const mask: u64 = (<u64>1 << <u64>k) - 1;
  for (; r < nd; r++) {
    const c = <u64>unchecked(digits[r]);
    const dig = n >> <u64>k;
    n &= mask;
    unchecked(digits[w] = <u8>dig);
    w++;
    n = n * 10 + c;
  }
  while (n > 0) {
    const dig = n >> <u64>k;
    n &= mask;
    if (w < MAX_DIGITS) {
      unchecked(digits[w] = <u8>dig);
      w++;
    } else if (dig > 0) {
      trunc = true;
    }
    n = n * 10;
  }
  nd = w;
  trimDigits();
}

function leftShift(k: i32): void {
  // Write the product right-aligned at nd + 19 (k <= 60 adds at most 19 digits), then slide it to index 0.
  const end = nd + 19;
  let w = end;
  let n: u64 = 0;
  for (let r = nd - 1; r >= 0; r--) {
    n += <u64>unchecked(digits[r]) << <u64>k;
    const quo = n / 10;
    w--;
    unchecked(digits[w] = <u8>(n - 10 * quo));
    n = quo;
  }
  while (n > 0) {
    const quo = n / 10;
    w--;
    unchecked(digits[w] = <u8>(n - 10 * quo));
    n = quo;
  }
  const delta = (end - w) - nd;
  const count = end - w;
  memory.copy(changetype<usize>(digits), changetype<usize>(digits) + <usize>w, <usize>count);
  nd = count;
  dp += delta;
  if (nd > MAX_DIGITS) {
    for (let i = MAX_DIGITS; i < nd; i++) if (unchecked(digits[i]) != 0) trunc = true;
    nd = MAX_DIGITS;
  }
  trimDigits();
}

function shiftDecimal(k: i32): void {
  if (nd == 0) return;
  if (k > 0) {
    while (k > MAX_SHIFT) { leftShift(MAX_SHIFT); k -= MAX_SHIFT; }
    leftShift(k);
  } else if (k < 0) {
    while (k < -MAX_SHIFT) { rightShift(MAX_SHIFT); k += MAX_SHIFT; }
    rightShift(-k);
  }
}

function shouldRoundUp(at: i32): bool {
  if (at < 0 || at >= nd) return false;
  if (unchecked(digits[at]) == 5 && at + 1 == nd) {
    if (trunc) return true;
    return at > 0 && (unchecked(digits[at - 1]) & 1) == 1;
  }
  return unchecked(digits[at]) >= 5;
}

function roundedInteger(): u64 {
  if (dp > 20) return 0xFFFFFFFFFFFFFFFF;
  let i = 0;
  let n: u64 = 0;
  for (; i < dp && i < nd; i++) n = n * 10 + <u64>unchecked(digits[i]);
  for (; i < dp; i++) n *= 10;
  if (shouldRoundUp(dp)) n++;
  return n;
}

/** Go strconv decimal.floatBits for float64: the correctly rounded value of the buffered decimal. */
function decimalToDouble(neg: bool): f64 {
  const MANT_BITS: i32 = 52;
  const EXP_BITS: i32 = 11;
  const BIAS: i32 = -1023;
  let exp: i32 = 0;
  let mant: u64 = 0;
  let overflow = false;
  if (nd == 0) {
    exp = BIAS;
  } else if (dp > 310) {
    overflow = true;
  } else if (dp < -330) {
    exp = BIAS;
  } else {
    while (dp > 0) {
      const n = dp >= POWTAB.length ? 27 : unchecked(POWTAB[dp]);
      shiftDecimal(-n);
      exp += n;
    }
    while (dp < 0 || (dp == 0 && unchecked(digits[0]) < 5)) {
      const n = -dp >= POWTAB.length ? 27 : unchecked(POWTAB[-dp]);
      shiftDecimal(n);
      exp -= n;
    }
    exp--;
    if (exp < BIAS + 1) {
      const n = BIAS + 1 - exp;
      shiftDecimal(-n);
      exp += n;
    }
    if (exp - BIAS >= (1 << EXP_BITS) - 1) {
      overflow = true;
    } else {
      shiftDecimal(1 + MANT_BITS);
      mant = roundedInteger();
      if (mant == (<u64>2 << <u64>MANT_BITS)) {
        mant >>= 1;
        exp++;
        if (exp - BIAS >= (1 << EXP_BITS) - 1) overflow = true;
      }
      if (!overflow && (mant & (<u64>1 << <u64>MANT_BITS)) == 0) exp = BIAS;
    }
  }
  if (overflow) {
    mant = 0;
    exp = (1 << EXP_BITS) - 1 + BIAS;
  }
  let bits: u64 = mant & ((<u64>1 << <u64>MANT_BITS) - 1);
  bits |= (<u64>((exp - BIAS) & ((1 << EXP_BITS) - 1))) << <u64>MANT_BITS;
  if (neg) bits |= <u64>1 << 63;
  return reinterpret<f64>(bits);
}

// @ts-ignore: decorator
@inline function isDigit(c: u32): bool { return c - 48 < 10; }

/**
 * Parses `[+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?` exactly as written (no whitespace), or
 * `[+-]? (inf | infinity | nan)` in any case, as Go's strconv.ParseFloat (cel-go's double()) accepts them.
 * JSON numbers are a subset of this grammar. Sets parsedDouble. Never traps.
 */
export function parseDouble(ptr: usize, len: i32): i32 {
  let i = 0;
  let neg = false;
  if (len <= 0) return PARSE_SYNTAX;
  let c = <u32>load<u8>(ptr);
  if (c == 43 || c == 45) { neg = c == 45; i = 1; }
  if (i < len && !isDigit(<u32>load<u8>(ptr + <usize>i)) && <u32>load<u8>(ptr + <usize>i) != 46) {
    return parseSpecial(ptr + <usize>i, len - i, neg);
  }
  // Digits and the decimal point; remember where the digits are for the fast path.
  nd = 0; dp = 0; trunc = false;
  let sawDot = false;
  let sawDigits = false;
  let mant: u64 = 0;
  let mantDigits = 0;
  // Significant digits seen, including those past the buffer: the decimal point's position counts them all.
  let total = 0;
  for (; i < len; i++) {
    c = <u32>load<u8>(ptr + <usize>i);
    if (c == 46) {
      if (sawDot) return PARSE_SYNTAX;
      sawDot = true;
      dp = total;
      continue;
    }
    if (!isDigit(c)) break;
    sawDigits = true;
    const d = <u8>(c - 48);
    if (d == 0 && total == 0) { dp--; continue; }
    total++;
    if (nd < MAX_DIGITS) {
      unchecked(digits[nd] = d);
      nd++;
      if (mantDigits < 19) { mant = mant * 10 + <u64>d; mantDigits++; }
    } else if (d != 0) {
      trunc = true;
    }
  }
  if (!sawDigits) return PARSE_SYNTAX;
  if (!sawDot) dp = total;
  if (i < len) {
    c = <u32>load<u8>(ptr + <usize>i);
    if (c != 101 && c != 69) return PARSE_SYNTAX;
    i++;
    let eneg = false;
    if (i < len) {
      c = <u32>load<u8>(ptr + <usize>i);
      if (c == 43 || c == 45) { eneg = c == 45; i++; }
    }
    if (i >= len) return PARSE_SYNTAX;
    let e = 0;
    for (; i < len; i++) {
      c = <u32>load<u8>(ptr + <usize>i);
      if (!isDigit(c)) return PARSE_SYNTAX;
      if (e < 100000) e = e * 10 + <i32>(c - 48);
    }
    dp += eneg ? -e : e;
  }
  if (nd == 0) {
    parsedDouble = neg ? -0.0 : 0.0;
    return PARSE_OK;
  }
  // Clinger's fast path: mantissa and 10^|e| are both exact doubles, so one IEEE operation rounds correctly.
  const e10 = dp - nd;
  if (!trunc && total == nd && nd <= 15 && e10 >= -22 && e10 <= 22) {
    let f = <f64>mant;
    if (e10 >= 0) f *= unchecked(POW10[e10]);
    else f /= unchecked(POW10[-e10]);
    parsedDouble = neg ? -f : f;
    return PARSE_OK;
  }
  parsedDouble = decimalToDouble(neg);
  return PARSE_OK;
}

function lowerAscii(c: u32): u32 { return c - 65 < 26 ? c + 32 : c; }

function equalsFolded(ptr: usize, len: i32, word: string): bool {
  if (len != word.length) return false;
  for (let i = 0; i < len; i++) {
    if (lowerAscii(<u32>load<u8>(ptr + <usize>i)) != <u32>word.charCodeAt(i)) return false;
  }
  return true;
}

function parseSpecial(ptr: usize, len: i32, neg: bool): i32 {
  if (equalsFolded(ptr, len, "inf") || equalsFolded(ptr, len, "infinity")) {
    parsedDouble = neg ? -Infinity : Infinity;
    return PARSE_OK;
  }
  if (equalsFolded(ptr, len, "nan")) {
    parsedDouble = NaN;
    return PARSE_OK;
  }
  return PARSE_SYNTAX;
}

/** `[+-]? digits` in base 10 (Go strconv.ParseInt(s, 10, 64)); sets parsedInt. */
export function parseInt64(ptr: usize, len: i32): i32 {
  if (len <= 0) return PARSE_SYNTAX;
  let i = 0;
  let neg = false;
  const c0 = <u32>load<u8>(ptr);
  if (c0 == 43 || c0 == 45) { neg = c0 == 45; i = 1; }
  if (i >= len) return PARSE_SYNTAX;
  // Accumulate the magnitude as u64 so that -9223372036854775808 is representable.
  let mag: u64 = 0;
  let range = false;
  for (; i < len; i++) {
    const c = <u32>load<u8>(ptr + <usize>i);
    if (!isDigit(c)) return PARSE_SYNTAX;
    if (mag > 1844674407370955161 || (mag == 1844674407370955161 && c - 48 > 5)) range = true;
    else mag = mag * 10 + <u64>(c - 48);
  }
  if (range) return PARSE_RANGE;
  if (neg) {
    if (mag > 9223372036854775808) return PARSE_RANGE;
    parsedInt = <i64>(0 - mag);
  } else {
    if (mag > 9223372036854775807) return PARSE_RANGE;
    parsedInt = <i64>mag;
  }
  return PARSE_OK;
}

/** `digits` in base 10, no sign (Go strconv.ParseUint(s, 10, 64)); sets parsedInt to the u64 bits. */
export function parseUint64(ptr: usize, len: i32): i32 {
  if (len <= 0) return PARSE_SYNTAX;
  let mag: u64 = 0;
  let range = false;
  for (let i = 0; i < len; i++) {
    const c = <u32>load<u8>(ptr + <usize>i);
    if (!isDigit(c)) return PARSE_SYNTAX;
    if (mag > 1844674407370955161 || (mag == 1844674407370955161 && c - 48 > 5)) range = true;
    else mag = mag * 10 + <u64>(c - 48);
  }
  if (range) return PARSE_RANGE;
  parsedInt = <i64>mag;
  return PARSE_OK;
}

/** Writes the decimal form of `v` (signed when `signed`) at `out` (at least 20 bytes); returns the length. */
export function formatInteger(v: i64, signed: bool, out: usize): i32 {
  let mag: u64 = <u64>v;
  let neg = false;
  if (signed && v < 0) { neg = true; mag = 0 - <u64>v; }
  // Digits are produced least significant first into the tail of the 20-byte window, then moved to the front.
  let w = 20;
  do {
    const q = mag / 10;
    w--;
    store<u8>(out + <usize>w, <u8>(48 + (mag - q * 10)));
    mag = q;
  } while (mag != 0);
  let len = 20 - w;
  if (neg) { w--; store<u8>(out + <usize>w, 45); len++; }
  memory.copy(out, out + <usize>w, <usize>len);
  return len;
}
