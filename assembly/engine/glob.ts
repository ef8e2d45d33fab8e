// GLOB and CIDR patterns (docs/table-format.md §3, PATS). They carry the regular expressions and address ranges
// istiod writes into Envoy RBAC for Istio input, in a form this engine compares without a regex engine.
//
// A GLOB is a byte string in which `\` introduces an operator; every other byte is itself:
//   \*  zero or more bytes other than "\n"   (RE2 `.*`)       \.  one byte other than "\n"   (RE2 `.`)
//   \/  zero or more bytes other than "/"    (RE2 `[^/]*`)
//   \p  one pchar (RFC 3986: A-Z a-z 0-9 - . _ ~ % ! $ & ' ( ) * + , ; = : @)   \P  zero or more pchars
//   \S  zero or more pchars or "/"           (Envoy's uri_template `*` is `\p\P`, `**` is `\S`)
//   \\  a literal "\"
// The whole subject must match. Matching simulates the NFA over the operator positions with two bitsets sized at
// load (MAX_GLOB_BYTES), so a match costs O(subject x pattern / 32) and never allocates or backtracks.



/** The longest GLOB value a table may hold (the NFA's state sets are sized for it). */
export const MAX_GLOB_BYTES: i32 = 4096;

const WORDS = (MAX_GLOB_BYTES + 1 + 31) >> 5;
let cur: usize = 0;
let nxt: usize = 0;

/** Allocates the NFA's state sets; the table loader calls it for a table with GLOB patterns, so no request does. */
export function globScratch(): void {
  if (cur == 0) {
    cur = heap.alloc(<usize>(WORDS * 4));
    nxt = heap.alloc(<usize>(WORDS * 4));
  }
}

// @ts-ignore: decorator
@inline function isPchar(c: u32): bool {
  if ((c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57)) return true;
  // - . _ ~ % ! $ & ' ( ) * + , ; = : @
  switch (c) {
    case 45: case 46: case 95: case 126: case 37: case 33: case 36: case 38: case 39: case 40: case 41: case 42:
    case 43: case 44: case 59: case 61: case 58: case 64:
      return true;
  }
  return false;
}

/** Whether operator byte `op` (after `\`) is a star (zero or more) operator. */
// @ts-ignore: decorator
@inline function isStar(op: u32): bool {
  return op == 42 || op == 47 || op == 80 || op == 83; // * / P S
}

/** Whether byte `c` belongs to the class of operator `op`. */
function inClass(op: u32, c: u32): bool {
  switch (op) {
    case 42: // *
    case 46: // .
      return c != 10;
    case 47: // /
      return c != 47;
    case 112: // p
    case 80: // P
      return isPchar(c);
    case 83: // S
      return c == 47 || isPchar(c);
  }
  return false;
}

// @ts-ignore: decorator
@inline function fold(c: u32): u32 {
  return c >= 65 && c <= 90 ? c + 32 : c;
}

/** Why the GLOB value at [p, p+len) is malformed, or "". */
export function globProblem(p: usize, len: i32): string {
  if (len > MAX_GLOB_BYTES) return "glob longer than " + MAX_GLOB_BYTES.toString() + " bytes";
  let i = 0;
  while (i < len) {
    if (load<u8>(p + <usize>i) == 92) {
      if (i + 1 >= len) return "glob ends with a lone \"\\\"";
      const op = <u32>load<u8>(p + <usize>(i + 1));
      if (op != 92 && op != 42 && op != 46 && op != 47 && op != 112 && op != 80 && op != 83) {
        return "glob operator \"\\" + String.fromCharCode(op) + "\" is not one of \\* \\. \\/ \\p \\P \\S \\\\";
      }
      i += 2;
    } else {
      i++;
    }
  }
  return "";
}

/** Adds state `o` and every state reachable from it by skipping star operators. */
function addState(set: usize, p: usize, plen: i32, o: i32): void {
  while (true) {
    store<u32>(set + <usize>((o >> 5) << 2), load<u32>(set + <usize>((o >> 5) << 2)) | (1 << (o & 31)));
    if (o >= plen || load<u8>(p + <usize>o) != 92 || !isStar(<u32>load<u8>(p + <usize>(o + 1)))) return;
    o += 2;
  }
}

// @ts-ignore: decorator
@inline function has(set: usize, o: i32): bool {
  return (load<u32>(set + <usize>((o >> 5) << 2)) & (1 << (o & 31))) != 0;
}

/** Whether the whole subject [s, s+slen) matches the (validated) GLOB [p, p+plen); `ci`: ASCII case-insensitive. */
export function globMatches(p: usize, plen: i32, s: usize, slen: i32, ci: bool): bool {
  globScratch(); // allocated at load already (a no-op then); kept so a direct caller can never read address 0
  const words = (plen + 1 + 31) >> 5;
  memory.fill(cur, 0, <usize>(words * 4));
  addState(cur, p, plen, 0);
  for (let k = 0; k < slen; k++) {
    const c = <u32>load<u8>(s + <usize>k);
    memory.fill(nxt, 0, <usize>(words * 4));
    let any = false;
    let o = 0;
    while (o < plen) {
      const b = <u32>load<u8>(p + <usize>o);
      const width = b == 92 ? 2 : 1;
      if (has(cur, o)) {
        if (b == 92) {
          const op = <u32>load<u8>(p + <usize>(o + 1));
          if (op == 92) {
            if (c == 92) {
              addState(nxt, p, plen, o + 2);
              any = true;
            }
          } else if (inClass(op, c)) {
            addState(nxt, p, plen, isStar(op) ? o : o + 2);
            any = true;
          }
        } else if (ci ? fold(b) == fold(c) : b == c) {
          addState(nxt, p, plen, o + 1);
          any = true;
        }
      }
      o += width;
    }
    if (!any) return false;
    const t = cur;
    cur = nxt;
    nxt = t;
  }
  return has(cur, plen);
}

// ---- IP addresses ----

/** The address parsed last by parseAddress: 4 or 16 bytes. */
export const addressBytes: usize = memory.data(16);

/**
 * Parses Envoy's text form of a socket address (`Address::Instance::asString()`: `1.2.3.4:80`, `[::1]:80`, or a
 * bare address) into addressBytes; returns 4 or 16, or 0 when it is not an IP address (a pipe, garbage).
 */
export function parseAddress(p: usize, len: i32): i32 {
  if (len <= 0) return 0;
  if (load<u8>(p) == 91) {
    // [v6]:port
    let close = 1;
    while (close < len && load<u8>(p + <usize>close) != 93) close++;
    if (close >= len) return 0;
    return parseIpv6(p + 1, close - 1) ? 16 : 0;
  }
  // v4, with or without ":port"
  let end = 0;
  while (end < len && load<u8>(p + <usize>end) != 58) end++;
  if (end < len) {
    // Either "v4:port" or a bare IPv6 address.
    let colons = 0;
    for (let i = 0; i < len; i++) if (load<u8>(p + <usize>i) == 58) colons++;
    if (colons > 1) return parseIpv6(p, len) ? 16 : 0;
  }
  return parseIpv4(p, end, addressBytes) ? 4 : 0;
}

function parseIpv4(p: usize, len: i32, out: usize): bool {
  let part = 0;
  let val = 0;
  let digits = 0;
  for (let i = 0; i <= len; i++) {
    const c = i < len ? <i32>load<u8>(p + <usize>i) : 46;
    if (c == 46) {
      if (digits == 0 || part > 3) return false;
      store<u8>(out + <usize>part, <u8>val);
      part++;
      val = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && val == 0) return false; // no leading zeros
      val = val * 10 + (c - 48);
      digits++;
      if (val > 255) return false;
    } else {
      return false;
    }
  }
  return part == 4;
}

function hexVal(c: i32): i32 {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

const v4tail: usize = memory.data(4);

/** RFC 4291 text (with "::" and a dotted IPv4 tail) into addressBytes. */
function parseIpv6(p: usize, len: i32): bool {
  const out = addressBytes;
  memory.fill(out, 0, 16);
  let words = 0;
  let gap = -1;
  let i = 0;
  if (len >= 2 && load<u8>(p) == 58 && load<u8>(p + 1) == 58) {
    gap = 0;
    i = 2;
  } else if (len >= 1 && load<u8>(p) == 58) {
    return false;
  }
  while (i < len) {
    // A dotted IPv4 tail takes the last two words.
    let j = i;
    let dot = false;
    while (j < len && load<u8>(p + <usize>j) != 58) {
      if (load<u8>(p + <usize>j) == 46) dot = true;
      j++;
    }
    if (dot) {
      if (j != len || words > 6 || !parseIpv4(p + <usize>i, j - i, v4tail)) return false;
      for (let k = 0; k < 4; k++) store<u8>(out + <usize>(words * 2 + k), load<u8>(v4tail + <usize>k));
      words += 2;
      i = j;
      break;
    }
    if (j - i < 1 || j - i > 4 || words >= 8) return false;
    let v = 0;
    for (let k = i; k < j; k++) {
      const h = hexVal(<i32>load<u8>(p + <usize>k));
      if (h < 0) return false;
      v = (v << 4) | h;
    }
    store<u8>(out + <usize>(words * 2), <u8>(v >> 8));
    store<u8>(out + <usize>(words * 2 + 1), <u8>v);
    words++;
    i = j;
    if (i < len) {
      // ":" or "::"
      i++;
      if (i < len && load<u8>(p + <usize>i) == 58) {
        if (gap >= 0) return false;
        gap = words;
        i++;
      } else if (i == len) {
        return false;
      }
    }
  }
  if (gap < 0) return words == 8;
  if (words > 7) return false;
  // Move the words after the gap to the end.
  const tail = words - gap;
  for (let k = tail - 1; k >= 0; k--) {
    const from = (gap + k) * 2;
    const to = (8 - tail + k) * 2;
    store<u8>(out + <usize>to, load<u8>(out + <usize>from));
    store<u8>(out + <usize>(to + 1), load<u8>(out + <usize>(from + 1)));
  }
  for (let k = gap; k < 8 - tail; k++) {
    store<u8>(out + <usize>(k * 2), 0);
    store<u8>(out + <usize>(k * 2 + 1), 0);
  }
  return true;
}

/**
 * Whether the address in addressBytes (`n` = 4 or 16 bytes) lies in the CIDR pattern value [v, v+vlen) (4 or 16
 * address bytes and a prefix length). Like Envoy's CidrRange::isInRange, families must be equal: an IPv4 address
 * never matches an IPv6 range, IPv4-mapped or not.
 */
export function cidrContains(v: usize, vlen: i32, n: i32): bool {
  if (vlen != n + 1) return false;
  const bits = <i32>load<u8>(v + <usize>n);
  const full = bits >> 3;
  for (let i = 0; i < full; i++) if (load<u8>(v + <usize>i) != load<u8>(addressBytes + <usize>i)) return false;
  const rest = bits & 7;
  if (rest == 0) return true;
  const mask = <u8>((0xff << <u8>(8 - rest)) & 0xff);
  return (load<u8>(v + <usize>full) & mask) == (load<u8>(addressBytes + <usize>full) & mask);
}

/** Why the CIDR pattern value at [v, v+vlen) is malformed, or "". */
export function cidrProblem(v: usize, vlen: i32): string {
  if (vlen != 5 && vlen != 17) return "CIDR value is " + vlen.toString() + " bytes, not 5 or 17";
  const n = vlen - 1;
  const bits = <i32>load<u8>(v + <usize>n);
  if (bits > n * 8) return "CIDR prefix length " + bits.toString() + " exceeds " + (n * 8).toString();
  // The address is stored masked (Envoy's CidrRange truncates it the same way).
  for (let i = 0; i < n; i++) {
    const keep = bits - i * 8;
    const mask = keep >= 8 ? 0xff : keep <= 0 ? 0 : (0xff << (8 - keep)) & 0xff;
    if ((<i32>load<u8>(v + <usize>i) & ~mask & 0xff) != 0) return "CIDR address has bits set after the prefix";
  }
  return "";
}

