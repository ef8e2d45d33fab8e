// Human-readable CEL evaluation errors, built only when a decision needs to report one (never on the
// evaluation path itself).

import {
  E_NO_SUCH_KEY, E_NO_SUCH_ATTRIBUTE, E_NO_MATCHING_OVERLOAD, E_OVERFLOW, E_DIVIDE_BY_ZERO, E_MODULUS_BY_ZERO,
  E_CONVERSION, E_UNSUPPORTED, E_BODY, E_LIMIT,
} from "./value";

/** Stable, machine-readable name of an error kind (for logs and `check --json`). */
export function celErrorKindName(kind: u8): string {
  switch (kind) {
    case E_NO_SUCH_KEY: return "no_such_key";
    case E_NO_SUCH_ATTRIBUTE: return "no_such_attribute";
    case E_NO_MATCHING_OVERLOAD: return "no_matching_overload";
    case E_OVERFLOW: return "overflow";
    case E_DIVIDE_BY_ZERO: return "divide_by_zero";
    case E_MODULUS_BY_ZERO: return "modulus_by_zero";
    case E_CONVERSION: return "conversion";
    case E_UNSUPPORTED: return "unsupported";
    case E_BODY: return "body";
    case E_LIMIT: return "limit";
  }
  return "error";
}

function prefix(kind: u8): string {
  switch (kind) {
    case E_NO_SUCH_KEY: return "no such key";
    case E_NO_SUCH_ATTRIBUTE: return "no such attribute";
    case E_NO_MATCHING_OVERLOAD: return "no matching overload for";
    case E_OVERFLOW: return "overflow in";
    case E_DIVIDE_BY_ZERO: return "division by zero in";
    case E_MODULUS_BY_ZERO: return "modulus by zero in";
    case E_CONVERSION: return "cannot convert string";
    case E_UNSUPPORTED: return "unsupported:";
    case E_BODY: return "cannot read the request body:";
    case E_LIMIT: return "limit exceeded:";
  }
  return "error";
}

/** Details that are user input or names are quoted; reasons are not. */
function quoted(kind: u8): bool {
  return kind != E_UNSUPPORTED && kind != E_BODY && kind != E_LIMIT;
}

/** Longest detail a message carries; longer ones (a huge header value) are cut with "...". */
const MAX_DETAIL: i32 = 120;

/**
 * Writes the message for error (kind, detailPtr, detailLen) as UTF-8 at `out` (capacity `cap`) and returns
 * its length. Does not allocate.
 */
export function writeCelErrorMessage(kind: u8, detailPtr: usize, detailLen: i32, out: usize, cap: i32): i32 {
  let n = 0;
  const p = prefix(kind);
  for (let i = 0; i < p.length && n < cap; i++) { store<u8>(out + <usize>n, <u8>p.charCodeAt(i)); n++; }
  if (detailLen <= 0 || detailPtr == 0) return n;
  const q = quoted(kind);
  if (n < cap) { store<u8>(out + <usize>n, kind == E_NO_SUCH_KEY || kind == E_NO_SUCH_ATTRIBUTE ? 0x3a : 0x20); n++; }
  if ((kind == E_NO_SUCH_KEY || kind == E_NO_SUCH_ATTRIBUTE) && n < cap) { store<u8>(out + <usize>n, 0x20); n++; }
  if (q && n < cap) { store<u8>(out + <usize>n, 0x27); n++; }
  let dl = detailLen;
  let cut = false;
  if (dl > MAX_DETAIL) {
    dl = MAX_DETAIL;
    // Do not split a UTF-8 sequence.
    while (dl > 0 && (load<u8>(detailPtr + <usize>dl) & 0xc0) == 0x80) dl--;
    cut = true;
  }
  const room = cap - n;
  const copy = dl < room ? dl : room;
  if (copy > 0) { memory.copy(out + <usize>n, detailPtr, <usize>copy); n += copy; }
  if (cut) for (let i = 0; i < 3 && n < cap; i++) { store<u8>(out + <usize>n, 0x2e); n++; }
  if (q && n < cap) { store<u8>(out + <usize>n, 0x27); n++; }
  return n;
}

/** The same message as a string (allocates: for reports and tests). */
export function celErrorMessage(kind: u8, detailPtr: usize, detailLen: i32): string {
  const buf = new ArrayBuffer(256);
  const n = writeCelErrorMessage(kind, detailPtr, detailLen, changetype<usize>(buf), 256);
  return String.UTF8.decodeUnsafe(changetype<usize>(buf), <usize>n);
}
