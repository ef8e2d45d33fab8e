// The protobuf wire format's varint, read one way for the whole engine: canonical (as short as its value allows),
// at most 10 bytes, at most 64 bits. cel/proto.ts reads request messages with it (a varint that is not canonical is
// one that decoders read differently, so the message is refused); jwt.ts reads Envoy's serialized Metadata with it
// (Envoy writes canonical varints, and anything else is malformed there too).

/** The varint was read: `WireCursor.value` holds it and `pos` is past it. */
export const WIRE_OK: i32 = 0;
/** More than 10 bytes, or more than 64 bits. */
export const WIRE_OVERLONG: i32 = 1;
/** It runs past the end of the bytes. */
export const WIRE_TRUNCATED: i32 = 2;
/** A longer encoding than its value needs (a final 0x00 byte after continuation bytes). */
export const WIRE_NONCANONICAL: i32 = 7;

/** A position in protobuf bytes and the last varint read there. One per reader; nothing is allocated per read. */
export class WireCursor {
  pos: usize = 0;
  value: u64 = 0;

  /** Reads a canonical varint at `pos`, below `end`: WIRE_OK (then `value` and `pos` move) or why not. */
  @inline
  varint(end: usize): i32 {
    let p = this.pos;
    let v: u64 = 0;
    for (let shift: u64 = 0; shift < 63; shift += 7) {
      if (p >= end) return WIRE_TRUNCATED;
      const b = <u64>load<u8>(p);
      p++;
      v |= (b & 0x7f) << shift;
      if ((b & 0x80) == 0) {
        if (b == 0 && shift != 0) return WIRE_NONCANONICAL;
        this.pos = p;
        this.value = v;
        return WIRE_OK;
      }
    }
    // The tenth byte holds bit 63 only.
    if (p >= end) return WIRE_TRUNCATED;
    const last = load<u8>(p);
    if (last > 1) return WIRE_OVERLONG;
    if (last == 0) return WIRE_NONCANONICAL;
    this.pos = p + 1;
    this.value = v | (<u64>1 << 63);
    return WIRE_OK;
  }
}
