import { uninitializedBuffer } from "./bytes";

// Standard base64 (RFC 4648 §4, with padding) decoding of the plugin configuration's "table" string.

// 255 = not in the alphabet. Built once at start-up.
const DECODE = new StaticArray<u8>(256);
function initDecode(): void {
  for (let i = 0; i < 256; i++) unchecked((DECODE[i] = 255));
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (let i = 0; i < 64; i++) unchecked((DECODE[alphabet.charCodeAt(i)] = <u8>i));
}
initDecode();

/** Decoding outcome: `error` is empty on success. */
export class Base64Result {
  /** The decoded bytes when not decoded in place. */
  data: ArrayBuffer | null = null;
  /** Where the decoded bytes are (inside `data`, or over the input when decoded in place). */
  ptr: usize = 0;
  len: i32 = 0;
  error: string = "";
}

/**
 * Decodes `len` bytes of base64 text at `ptr`. Strict: the length must be a multiple of 4, `=` may only pad
 * the last quantum, and no other byte outside the alphabet (no whitespace) is accepted. With `inPlace` the bytes
 * are written over the text itself (output byte 3k+2 lies before input byte 4k+3, and each quantum is read
 * before it is written), so loading a table needs no second copy of the envelope.
 */
export function base64Decode(ptr: usize, len: i32, inPlace: bool = false): Base64Result {
  const r = new Base64Result();
  if (len % 4 != 0) {
    r.error = "base64 length " + len.toString() + " is not a multiple of 4";
    return r;
  }
  let pad = 0;
  if (len > 0 && load<u8>(ptr + <usize>(len - 1)) == 61) pad++;
  if (pad == 1 && len > 1 && load<u8>(ptr + <usize>(len - 2)) == 61) pad++;
  const outLen = (len / 4) * 3 - pad;
  let dst = ptr;
  if (!inPlace) {
    const out = uninitializedBuffer(outLen); // every byte is written below
    r.data = out;
    dst = changetype<usize>(out);
  }
  let o = 0;
  for (let i = 0; i < len; i += 4) {
    const a = <u32>unchecked(DECODE[load<u8>(ptr + <usize>i)]);
    const b = <u32>unchecked(DECODE[load<u8>(ptr + <usize>(i + 1))]);
    let c = <u32>unchecked(DECODE[load<u8>(ptr + <usize>(i + 2))]);
    let d = <u32>unchecked(DECODE[load<u8>(ptr + <usize>(i + 3))]);
    const last = i + 4 == len;
    if (last && pad > 0) {
      if (pad == 2) c = 0;
      d = 0;
    }
    if ((a | b | c | d) > 63) {
      let at = i;
      while (at < i + 4 && unchecked(DECODE[load<u8>(ptr + <usize>at)]) != 255) at++;
      r.error = "invalid base64 character at offset " + at.toString();
      return r;
    }
    const v = (a << 18) | (b << 12) | (c << 6) | d;
    store<u8>(dst + <usize>o, <u8>(v >> 16));
    if (o + 1 < outLen) store<u8>(dst + <usize>(o + 1), <u8>(v >> 8));
    if (o + 2 < outLen) store<u8>(dst + <usize>(o + 2), <u8>v);
    o += 3;
  }
  r.ptr = dst;
  r.len = outLen;
  return r;
}
