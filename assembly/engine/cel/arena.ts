// Per-request scratch memory for strings the VM and the body decoders create (concatenations, conversions,
// JSON strings with escapes). One buffer allocated at load; reset() when a request starts; alloc() never
// grows it, so a request can run out (an E_LIMIT error) but never allocates GC memory.

export class CelArena {
  private readonly buf: StaticArray<u8>;
  private top: i32 = 0;

  constructor(capacity: i32) {
    this.buf = new StaticArray<u8>(capacity > 0 ? capacity : 1);
  }

  /** Forgets everything allocated since the last reset. Call once per request, before the first decode. */
  reset(): void { this.top = 0; }

  get capacity(): i32 { return this.buf.length; }
  get used(): i32 { return this.top; }

  /** Pointer to `len` fresh bytes, or 0 when the arena cannot hold them. */
  alloc(len: i32): usize {
    if (len < 0 || len > this.buf.length - this.top) return 0;
    const p = changetype<usize>(this.buf) + <usize>this.top;
    this.top += len;
    return p;
  }

  /** Gives back the tail of the most recent allocation (used when an upper bound was reserved). */
  shrinkLast(ptr: usize, reserved: i32, used: i32): void {
    const base = changetype<usize>(this.buf);
    if (ptr + <usize>reserved == base + <usize>this.top && used >= 0 && used <= reserved) {
      this.top -= reserved - used;
    }
  }
}
