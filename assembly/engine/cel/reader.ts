// The EXPR section reader shared by the program and schema decoders.

/** A bounds-checked little-endian reader over a section; a read past the end sets `failed` and yields 0. */
export class SectionReader {
  pos: i32 = 0;
  failed: bool = false;
  constructor(public base: usize, public len: i32) {}
  need(n: i32): bool {
    if (this.failed || n < 0 || n > this.len - this.pos) { this.failed = true; return false; }
    return true;
  }
  u8(): u8 { if (!this.need(1)) return 0; const v = load<u8>(this.base + <usize>this.pos); this.pos += 1; return v; }
  u16(): i32 { if (!this.need(2)) return 0; const v = load<u16>(this.base + <usize>this.pos); this.pos += 2; return <i32>v; }
  u32(): u32 { if (!this.need(4)) return 0; const v = load<u32>(this.base + <usize>this.pos); this.pos += 4; return v; }
  i64(): i64 { if (!this.need(8)) return 0; const v = load<i64>(this.base + <usize>this.pos); this.pos += 8; return v; }
  /** Reserves n bytes and returns their address. */
  bytes(n: i32): usize { if (!this.need(n)) return 0; const p = this.base + <usize>this.pos; this.pos += n; return p; }
}
