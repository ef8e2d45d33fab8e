// Raw DEFLATE (RFC 1951) decoder for the table payload. Table-driven: a 10-bit (literal/length) or 9-bit
// (distance) lookup resolves most codes in one step; longer codes fall back to the canonical walk of zlib's
// puff.c. Every read is bounds-checked: a corrupt or truncated stream returns an error, never traps, and
// cannot loop forever (each step consumes input, and reading past the end is detected).

const LIT_BITS = 10;
const DIST_BITS = 9;
const CL_BITS = 7;

const LBASE: StaticArray<u16> = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99,
  115, 131, 163, 195, 227, 258];
const LEXT: StaticArray<u8> = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DBASE: StaticArray<u16> = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025,
  1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577];
const DEXT: StaticArray<u8> = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12,
  13, 13];
const CL_ORDER: StaticArray<u8> = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/** A canonical Huffman code: a direct lookup table for short codes plus counts/symbols for the rest. */
class Huffman {
  lut: StaticArray<u32>;
  counts: StaticArray<u16> = new StaticArray<u16>(16);
  symbols: StaticArray<u16>;
  bits: i32;

  constructor(bits: i32, maxSymbols: i32) {
    this.bits = bits;
    this.lut = new StaticArray<u32>(1 << bits);
    this.symbols = new StaticArray<u16>(maxSymbols);
  }
}

const litCode = new Huffman(LIT_BITS, 288);
const distCode = new Huffman(DIST_BITS, 32);
const clCode = new Huffman(CL_BITS, 19);
const fixedLit = new Huffman(LIT_BITS, 288);
const fixedDist = new Huffman(DIST_BITS, 32);
const lengths = new StaticArray<u8>(320);
const offs = new StaticArray<u16>(16);
const nextCode = new StaticArray<u16>(16);

/**
 * Builds `h` from `n` code lengths at `lens`. Returns 0 for a complete code, >0 for an incomplete one, <0 for
 * an over-subscribed one (puff.c's `construct`).
 */
function build(h: Huffman, lens: usize, n: i32): i32 {
  const counts = h.counts;
  for (let i = 0; i < 16; i++) unchecked((counts[i] = 0));
  for (let s = 0; s < n; s++) {
    const l = <i32>load<u8>(lens + <usize>s);
    unchecked((counts[l] = unchecked(counts[l]) + 1));
  }
  let left = 1;
  for (let len = 1; len < 16; len++) {
    left <<= 1;
    left -= <i32>unchecked(counts[len]);
    if (left < 0) return left;
  }
  unchecked((offs[1] = 0));
  for (let len = 1; len < 15; len++) unchecked((offs[len + 1] = unchecked(offs[len]) + unchecked(counts[len])));
  const syms = h.symbols;
  for (let s = 0; s < n; s++) {
    const l = <i32>load<u8>(lens + <usize>s);
    if (l != 0) {
      const o = unchecked(offs[l]);
      unchecked((syms[o] = <u16>s));
      unchecked((offs[l] = o + 1));
    }
  }
  // Lookup table: each code is stored bit-reversed (DEFLATE sends Huffman codes most significant bit first
  // into a least-significant-bit-first stream), replicated over the unused high bits.
  const lut = h.lut;
  const size = 1 << h.bits;
  memory.fill(changetype<usize>(lut), 0, <usize>(size << 2));
  let code = 0;
  unchecked((nextCode[0] = 0));
  for (let len = 1; len < 16; len++) {
    code = (code + <i32>unchecked(counts[len - 1])) << 1;
    if (len == 1) code = 0;
    unchecked((nextCode[len] = <u16>code));
  }
  for (let s = 0; s < n; s++) {
    const l = <i32>load<u8>(lens + <usize>s);
    if (l == 0) continue;
    const c = <i32>unchecked(nextCode[l]);
    unchecked((nextCode[l] = <u16>(c + 1)));
    if (l > h.bits) continue;
    let rev = 0;
    for (let i = 0; i < l; i++) rev |= ((c >> i) & 1) << (l - 1 - i);
    const entry = <u32>s | (<u32>l << 16);
    for (let i = rev; i < size; i += 1 << l) unchecked((lut[i] = entry));
  }
  return left;
}

function initFixed(): void {
  const p = changetype<usize>(lengths);
  for (let i = 0; i < 144; i++) store<u8>(p + <usize>i, 8);
  for (let i = 144; i < 256; i++) store<u8>(p + <usize>i, 9);
  for (let i = 256; i < 280; i++) store<u8>(p + <usize>i, 7);
  for (let i = 280; i < 288; i++) store<u8>(p + <usize>i, 8);
  build(fixedLit, p, 288);
  for (let i = 0; i < 30; i++) store<u8>(p + <usize>i, 5);
  build(fixedDist, p, 30);
}
initFixed();

// Decoder state (the decoder is not re-entrant; one inflation runs at a time).
let inStart: usize = 0;
let inPos: usize = 0;
let inEnd: usize = 0;
let bitBuf: u64 = 0;
let bitCnt: i32 = 0;

/** Tops the bit buffer up to at least 56 bits. Past the end of input it feeds zero bytes; callers detect that. */
// @ts-ignore: decorator
@inline function refill(): void {
  if (inPos + 8 <= inEnd) {
    bitBuf |= load<u64>(inPos) << <u64>bitCnt;
    const n = (63 - bitCnt) >> 3;
    inPos += <usize>n;
    bitCnt += n << 3;
  } else {
    while (bitCnt <= 56) {
      const b: u64 = inPos < inEnd ? <u64>load<u8>(inPos) : 0;
      bitBuf |= b << <u64>bitCnt;
      inPos++;
      bitCnt += 8;
    }
  }
}

/** Whether the bits consumed so far go past the real input. */
// @ts-ignore: decorator
@inline function overrun(): bool {
  return <i64>(inPos - inStart) * 8 - <i64>bitCnt > <i64>(inEnd - inStart) * 8;
}

/** The input byte holding the next unread bit (for error messages). */
function bytePos(): i64 {
  return (<i64>(inPos - inStart) * 8 - <i64>bitCnt) >> 3;
}

// @ts-ignore: decorator
@inline function bits(n: i32): u32 {
  const v = <u32>(bitBuf & ((<u64>1 << <u64>n) - 1));
  bitBuf >>= <u64>n;
  bitCnt -= n;
  return v;
}

/** Decodes one symbol (needs at least 15 bits buffered). Returns -1 for a code that is not in `h`. */
function decode(h: Huffman): i32 {
  const e = unchecked(h.lut[<i32>(bitBuf & <u64>((1 << h.bits) - 1))]);
  if (e != 0) {
    const l = <i32>(e >> 16);
    bitBuf >>= <u64>l;
    bitCnt -= l;
    return <i32>(e & 0xffff);
  }
  // Canonical walk, one bit at a time (puff.c's `decode`).
  let code = 0;
  let first = 0;
  let index = 0;
  const counts = h.counts;
  for (let len = 1; len < 16; len++) {
    code |= <i32>((bitBuf >> <u64>(len - 1)) & 1);
    const count = <i32>unchecked(counts[len]);
    if (code - first < count) {
      bitBuf >>= <u64>len;
      bitCnt -= len;
      return <i32>unchecked(h.symbols[index + code - first]);
    }
    index += count;
    first += count;
    first <<= 1;
    code <<= 1;
  }
  return -1;
}

/**
 * Inflates the raw DEFLATE stream of `srcLen` bytes at `src` into exactly `dstLen` bytes at `dst`. The stream
 * must end exactly at the end of the input (only the padding bits of its last byte may follow the final block)
 * and must produce exactly `dstLen` bytes. Returns "" on success, else what is wrong and where. With
 * `prefixOnly`, stops (successfully) once `dstLen` bytes are out: a peek at the start of the stream.
 */
export function inflateRaw(src: usize, srcLen: i32, dst: usize, dstLen: i32, prefixOnly: bool = false): string {
  inStart = src;
  inPos = src;
  inEnd = src + <usize>srcLen;
  bitBuf = 0;
  bitCnt = 0;
  let out = dst;
  const outEnd = dst + <usize>dstLen;
  let last = false;
  while (!last) {
    refill();
    if (overrun()) return "inflate: unexpected end of compressed data";
    last = bits(1) == 1;
    const type = bits(2);
    if (type == 0) {
      // Stored block: drop to a byte boundary, then LEN and its one's complement.
      bits(bitCnt & 7);
      const len = bits(16);
      const nlen = bits(16);
      if (overrun()) return "inflate: unexpected end of compressed data";
      if (len != (~nlen & 0xffff)) {
        return "inflate: stored block length check failed at input byte " + bytePos().toString();
      }
      // Give the buffered whole bytes back to the input, then copy straight from it.
      inPos -= <usize>(bitCnt >> 3);
      bitBuf = 0;
      bitCnt = 0;
      if (inPos + <usize>len > inEnd) return "inflate: unexpected end of compressed data";
      if (out + <usize>len > outEnd) {
        if (!prefixOnly) return "inflate: output exceeds the declared body length " + dstLen.toString();
        memory.copy(out, inPos, outEnd - out);
        return "";
      }
      memory.copy(out, inPos, <usize>len);
      out += <usize>len;
      inPos += <usize>len;
      continue;
    }
    let lit: Huffman;
    let dist: Huffman;
    if (type == 1) {
      lit = fixedLit;
      dist = fixedDist;
    } else if (type == 2) {
      const err = readDynamic();
      if (err.length != 0) return err;
      lit = litCode;
      dist = distCode;
    } else {
      return "inflate: invalid block type 3 at input byte " + bytePos().toString();
    }
    // Codes: literal bytes, lengths with distances, end of block.
    while (true) {
      if (bitCnt < 48) {
        refill();
        if (overrun()) return "inflate: unexpected end of compressed data";
      }
      const sym = decode(lit);
      if (sym < 256) {
        if (sym < 0) return "inflate: invalid literal/length code at output byte " + (out - dst).toString();
        if (out >= outEnd) {
          if (prefixOnly) return "";
          return "inflate: output exceeds the declared body length " + dstLen.toString();
        }
        store<u8>(out, <u8>sym);
        out++;
        continue;
      }
      if (sym == 256) break;
      const ls = sym - 257;
      if (ls >= 29) return "inflate: invalid length symbol " + sym.toString() + " at output byte " + (out - dst).toString();
      const fullLength = <usize>unchecked(LBASE[ls]) + <usize>bits(<i32>unchecked(LEXT[ls]));
      const ds = decode(dist);
      if (ds < 0 || ds >= 30) return "inflate: invalid distance code at output byte " + (out - dst).toString();
      const d = <usize>unchecked(DBASE[ds]) + <usize>bits(<i32>unchecked(DEXT[ds]));
      if (d > out - dst) return "inflate: distance " + d.toString() + " too far back at output byte " + (out - dst).toString();
      let length = fullLength;
      if (out + length > outEnd) {
        if (!prefixOnly) return "inflate: output exceeds the declared body length " + dstLen.toString();
        length = outEnd - out;
      }
      const from = out - d;
      if (d >= length) {
        memory.copy(out, from, length);
      } else if (d == 1) {
        memory.fill(out, load<u8>(from), length);
      } else {
        for (let i: usize = 0; i < length; i++) store<u8>(out + i, load<u8>(from + i));
      }
      out += length;
      if (prefixOnly && out == outEnd) return "";
    }
  }
  if (prefixOnly && out == outEnd) return "";
  if (overrun()) return "inflate: unexpected end of compressed data";
  const consumedBits = <i64>(inPos - inStart) * 8 - <i64>bitCnt;
  const consumed = <i32>((consumedBits + 7) >> 3);
  if (consumed != srcLen) {
    return "inflate: " + (srcLen - consumed).toString() + " bytes follow the end of the compressed data";
  }
  if (out != outEnd) {
    return "inflate: body is " + (out - dst).toString() + " bytes, the envelope declares " + dstLen.toString();
  }
  return "";
}

/** Reads a dynamic block's code descriptions into litCode and distCode. */
function readDynamic(): string {
  refill();
  const nlen = <i32>bits(5) + 257;
  const ndist = <i32>bits(5) + 1;
  const ncode = <i32>bits(4) + 4;
  if (nlen > 286 || ndist > 30) return "inflate: bad code counts in dynamic block header";
  const lens = changetype<usize>(lengths);
  memory.fill(lens, 0, 19);
  for (let i = 0; i < ncode; i++) {
    if (bitCnt < 8) refill();
    store<u8>(lens + <usize>unchecked(CL_ORDER[i]), <u8>bits(3));
  }
  if (overrun()) return "inflate: unexpected end of compressed data";
  if (build(clCode, lens, 19) != 0) return "inflate: incomplete code-length code";
  let index = 0;
  const total = nlen + ndist;
  while (index < total) {
    if (bitCnt < 32) {
      refill();
      if (overrun()) return "inflate: unexpected end of compressed data";
    }
    const sym = decode(clCode);
    if (sym < 0) return "inflate: invalid code-length code";
    if (sym < 16) {
      store<u8>(lens + <usize>index, <u8>sym);
      index++;
      continue;
    }
    let len: u8 = 0;
    let rep = 0;
    if (sym == 16) {
      if (index == 0) return "inflate: repeat of a code length with no previous length";
      len = load<u8>(lens + <usize>(index - 1));
      rep = 3 + <i32>bits(2);
    } else if (sym == 17) {
      rep = 3 + <i32>bits(3);
    } else {
      rep = 11 + <i32>bits(7);
    }
    if (index + rep > total) return "inflate: code lengths exceed the counts in the dynamic block header";
    memory.fill(lens + <usize>index, len, <usize>rep);
    index += rep;
  }
  if (load<u8>(lens + 256) == 0) return "inflate: dynamic block has no end-of-block code";
  // An incomplete code is only allowed when it is a single code of length one (as zlib allows).
  let err = build(litCode, lens, nlen);
  if (err < 0 || (err > 0 && nlen != <i32>unchecked(litCode.counts[0]) + <i32>unchecked(litCode.counts[1]))) {
    return "inflate: invalid literal/length code lengths";
  }
  err = build(distCode, lens + <usize>nlen, ndist);
  if (err < 0 || (err > 0 && ndist != <i32>unchecked(distCode.counts[0]) + <i32>unchecked(distCode.counts[1]))) {
    return "inflate: invalid distance code lengths";
  }
  return "";
}
