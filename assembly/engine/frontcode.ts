// Front-coded string lists (docs/table-format.md "Front-coded lists"): the rule ids (IDS) and the hole values
// (VALS). Entry i is `varint shared, varint suffixLen, suffix` and shares `shared` leading bytes with entry i-1;
// every 2^log2-th entry is a restart point whose offset is in the restart table. Random access walks forward
// from the restart point at or before the entry. The request path never materialises an entry: `equals`
// compares the subject while it walks.

// The read position of readVarint (one reader at a time).
let vpos: usize = 0;

/** Unsigned LEB128 at `vpos`, advancing it. INVARIANT: the table validated it (at most 5 bytes, below 2^32). */
// @ts-ignore: decorator
@inline function readVarint(): u32 {
  let b = <u32>load<u8>(vpos);
  vpos++;
  if (b < 0x80) return b;
  let v = b & 0x7f;
  let shift: u32 = 7;
  while (true) {
    b = <u32>load<u8>(vpos);
    vpos++;
    v |= (b & 0x7f) << shift;
    if (b < 0x80) break;
    shift += 7;
  }
  return v;
}

/** How many leading bytes of `a` and `b` are equal, looking at most `n`: 8 bytes per step (wasm loads need no alignment). */
// @ts-ignore: decorator
@inline function commonPrefix(a: usize, b: usize, n: u32): u32 {
  let i: u32 = 0;
  while (i + 8 <= n) {
    const x = load<u64>(a + <usize>i) ^ load<u64>(b + <usize>i);
    if (x != 0) return i + <u32>(ctz<u64>(x) >> 3); // little-endian: the lowest set bit is the first byte that differs
    i += 8;
  }
  while (i < n && load<u8>(a + <usize>i) == load<u8>(b + <usize>i)) i++;
  return i;
}

/** A validated front-coded list inside a table body. */
export class FrontCoded {
  /** The entries (section IDS or VALS). */
  ptr: usize = 0;
  /** The restart table (section IDSX or VALX): u32 byte offsets of entries 0, 2^log2, 2*2^log2, ... */
  restarts: usize = 0;
  count: u32 = 0;
  log2: u32 = 4;

  @inline private seek(i: u32): u32 {
    const r = i >> this.log2;
    vpos = this.ptr + <usize>load<u32>(this.restarts + (<usize>r << 2));
    return r << this.log2;
  }

  /**
   * Writes entry `i` to `out` (room for the list's longest entry) and returns its length. For ids, which are
   * decoded only to report a decision.
   */
  decodeInto(i: u32, out: usize): i32 {
    let len: u32 = 0;
    for (let k = this.seek(i); k <= i; k++) {
      const shared = readVarint();
      const suffix = readVarint();
      memory.copy(out + <usize>shared, vpos, <usize>suffix);
      vpos += <usize>suffix;
      len = shared + suffix;
    }
    return <i32>len;
  }

  /**
   * Whether entry `i` equals the subject, without materialising the entry: `lcp` tracks the common prefix of the
   * subject and the entry decoded so far. An entry that shares more than `lcp` bytes with its predecessor also
   * keeps the predecessor's mismatching byte at `lcp` (or the subject ended there), so `lcp` stays; one that
   * shares at most `lcp` bytes continues the comparison from where it diverges. This runs on every indexed
   * decision: the read position is a local, and the usual one-byte varints take one load.
   */
  equals(i: u32, s: usize, slen: i32): bool {
    const n = <u32>slen;
    const r = i >> this.log2;
    let p = this.ptr + <usize>load<u32>(this.restarts + (<usize>r << 2));
    let k = r << this.log2;
    let lcp: u32 = 0;
    let len: u32 = 0;
    while (true) {
      let shared = <u32>load<u8>(p);
      p++;
      if (shared >= 0x80) {
        vpos = p - 1;
        shared = readVarint();
        p = vpos;
      }
      let suffix = <u32>load<u8>(p);
      p++;
      if (suffix >= 0x80) {
        vpos = p - 1;
        suffix = readVarint();
        p = vpos;
      }
      len = shared + suffix;
      if (shared <= lcp) lcp = shared + commonPrefix(p, s + <usize>shared, min<u32>(suffix, n > shared ? n - shared : 0));
      if (k == i) break;
      p += <usize>suffix;
      k++;
    }
    return lcp == len && len == n;
  }
}

/** The outcome of a checked varint read (validation only): the value, or `ok` false. */
export class VarintCursor {
  pos: usize = 0;
  end: usize = 0;
  value: u32 = 0;
  /** "" or why the last read failed. */
  error: string = "";

  constructor(pos: usize, end: usize) {
    this.pos = pos;
    this.end = end;
  }

  /** Reads an unsigned LEB128 varint of at most 5 bytes below 2^32; false (with `error`) when it is not one. */
  next(): bool {
    let v: u64 = 0;
    for (let i = 0; i < 5; i++) {
      if (this.pos >= this.end) {
        this.error = "varint runs past the end of the section";
        return false;
      }
      const b = <u64>load<u8>(this.pos);
      this.pos++;
      v |= (b & 0x7f) << (7 * <u64>i);
      if (b < 0x80) {
        if (v > 0xffffffff) {
          this.error = "varint exceeds 32 bits";
          return false;
        }
        this.value = <u32>v;
        return true;
      }
    }
    this.error = "varint is longer than 5 bytes";
    return false;
  }
}
