// A growable byte buffer on the raw heap (heap.alloc, not the GC). Used for response details, audit lines and
// the explain JSON: once grown it is reused, so steady-state writing allocates nothing.

const HEX: string = "0123456789abcdef";

export class ByteWriter {
  ptr: usize = 0;
  cap: i32 = 0;
  len: i32 = 0;

  constructor(initial: i32 = 256) {
    this.ptr = heap.alloc(<usize>initial);
    this.cap = initial;
  }

  @inline reset(): void {
    this.len = 0;
  }

  /** Makes room for `n` more bytes. */
  ensure(n: i32): void {
    const need = this.len + n;
    if (need <= this.cap) return;
    let cap = this.cap << 1;
    while (cap < need) cap <<= 1;
    this.ptr = heap.realloc(this.ptr, <usize>cap);
    this.cap = cap;
  }

  byte(b: u32): void {
    this.ensure(1);
    store<u8>(this.ptr + <usize>this.len, <u8>b);
    this.len++;
  }

  bytes(src: usize, n: i32): void {
    if (n <= 0) return;
    this.ensure(n);
    memory.copy(this.ptr + <usize>this.len, src, <usize>n);
    this.len += n;
  }

  /** Writes the low byte of each UTF-16 unit: for the ASCII literals of this code base (no allocation). */
  ascii(s: string): void {
    const n = s.length;
    this.ensure(n);
    const base = this.ptr + <usize>this.len;
    for (let i = 0; i < n; i++) store<u8>(base + <usize>i, <u8>s.charCodeAt(i));
    this.len += n;
  }

  /** Two lower-case hex digits. */
  hexByte(b: u32): void {
    this.byte(HEX.charCodeAt((b >> 4) & 15));
    this.byte(HEX.charCodeAt(b & 15));
  }

  /**
   * Writes bytes for a log line: printable ASCII as is, anything else (space, control bytes, DEL, non-ASCII) as
   * `\xHH`, so a hostile peer ID or header cannot forge log lines.
   */
  loggable(src: usize, n: i32): void {
    for (let i = 0; i < n; i++) {
      const c = <u32>load<u8>(src + <usize>i);
      if (c > 0x20 && c < 0x7f && c != 0x5c) {
        this.byte(c);
      } else {
        this.byte(0x5c);
        this.byte(0x78);
        this.hexByte(c);
      }
    }
  }

  /**
   * Writes a JSON string literal (with quotes) of the bytes read as UTF-8: `"` `\` and control characters are
   * escaped; every ill-formed sequence becomes U+FFFD by the WHATWG "maximal subpart" rule, the same result as
   * node's `Buffer.toString("utf8")` / `TextDecoder`.
   */
  jsonString(src: usize, n: i32): void {
    this.byte(0x22);
    let i = 0;
    while (i < n) {
      const c = <u32>load<u8>(src + <usize>i);
      if (c < 0x80) {
        if (c == 0x22 || c == 0x5c) {
          this.byte(0x5c);
          this.byte(c);
        } else if (c < 0x20) {
          if (c == 0x0a) this.ascii("\\n");
          else if (c == 0x0d) this.ascii("\\r");
          else if (c == 0x09) this.ascii("\\t");
          else if (c == 0x08) this.ascii("\\b");
          else if (c == 0x0c) this.ascii("\\f");
          else {
            this.ascii("\\u00");
            this.hexByte(c);
          }
        } else {
          this.byte(c);
        }
        i++;
        continue;
      }
      // Multi-byte sequence: find its expected length and the valid range of the second byte.
      let need = 0;
      let lo: u32 = 0x80;
      let hi: u32 = 0xbf;
      if (c >= 0xc2 && c <= 0xdf) need = 1;
      else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        if (c == 0xe0) lo = 0xa0;
        else if (c == 0xed) hi = 0x9f;
      } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        if (c == 0xf0) lo = 0x90;
        else if (c == 0xf4) hi = 0x8f;
      }
      if (need == 0) {
        this.replacement();
        i++;
        continue;
      }
      let j = 1;
      let ok = true;
      while (j <= need) {
        if (i + j >= n) {
          ok = false;
          break;
        }
        const d = <u32>load<u8>(src + <usize>(i + j));
        const l = j == 1 ? lo : 0x80;
        const h = j == 1 ? hi : 0xbf;
        if (d < l || d > h) {
          ok = false;
          break;
        }
        j++;
      }
      if (ok) {
        this.bytes(src + <usize>i, need + 1);
        i += need + 1;
      } else {
        // The maximal subpart (lead byte plus the valid continuation bytes seen) becomes one U+FFFD.
        this.replacement();
        i += j;
      }
    }
    this.byte(0x22);
  }

  /** JSON string literal of an ASCII literal (no allocation). */
  jsonAscii(s: string): void {
    this.byte(0x22);
    this.ascii(s);
    this.byte(0x22);
  }

  private replacement(): void {
    this.byte(0xef);
    this.byte(0xbf);
    this.byte(0xbd);
  }

  /** A GC string copy of the content (tests and configuration path only). */
  toString(): string {
    return String.UTF8.decodeUnsafe(this.ptr, <usize>this.len, false);
  }
}
