// The decision record: what the filter publishes for Envoy's access loggers (docs/design.md "Decision record"),
// encoded as a serialized google.protobuf.Struct of string fields. The filter declares its property with that
// type, so Envoy's `%CEL(filter_state['wasm.spiffe_authz'].decision)%` (the envoy.formatter.cel extension) reads
// one field and `%FILTER_STATE(wasm.spiffe_authz:TYPED)%` the whole record as JSON. Written into a reused heap
// buffer: no allocation per request.

import { ByteWriter } from "./writer";

// Struct.fields (map entry, field 1), entry key (1) and value (2), Value.string_value (3): all length-delimited.
const TAG_FIELDS: u32 = 0x0a;
const TAG_KEY: u32 = 0x0a;
const TAG_VALUE: u32 = 0x12;
const TAG_STRING: u32 = 0x1a;

function varintSize(n: u32): i32 {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
}

function varint(w: ByteWriter, n: u32): void {
  while (n >= 0x80) {
    w.byte((n & 0x7f) | 0x80);
    n >>= 7;
  }
  w.byte(n);
}

/** How many bytes `len` bytes at `p` take once escaped: printable ASCII stays, anything else is `\xHH`. */
function escapedSize(p: usize, len: i32): i32 {
  let n = 0;
  for (let i = 0; i < len; i++) {
    const c = load<u8>(p + <usize>i);
    n += c >= 0x20 && c < 0x7f && c != 0x5c ? 1 : 4;
  }
  return n;
}

/**
 * Appends the Struct field `key` = string `len` bytes at `p`. The value is written as a log line would be:
 * printable ASCII as is, any other byte (and `\`) as `\xHH`, so the record is always valid UTF-8 (a protobuf
 * string must be) and a hostile identity cannot forge anything in a log.
 */
export function recordField(w: ByteWriter, key: string, p: usize, len: i32): void {
  const klen = <u32>key.length;
  const vlen = <u32>escapedSize(p, len);
  const valueMsg = 1 + varintSize(vlen) + vlen; // Value { string_value }
  const entry = 1 + varintSize(klen) + klen + 1 + varintSize(valueMsg) + valueMsg;
  w.byte(TAG_FIELDS);
  varint(w, entry);
  w.byte(TAG_KEY);
  varint(w, klen);
  w.ascii(key);
  w.byte(TAG_VALUE);
  varint(w, valueMsg);
  w.byte(TAG_STRING);
  varint(w, vlen);
  if (vlen == <u32>len) {
    w.bytes(p, len);
  } else {
    for (let i = 0; i < len; i++) {
      const c = <u32>load<u8>(p + <usize>i);
      if (c >= 0x20 && c < 0x7f && c != 0x5c) {
        w.byte(c);
      } else {
        w.byte(0x5c);
        w.byte(0x78);
        w.hexByte(c);
      }
    }
  }
}

/** Appends the Struct field `key` = an ASCII literal of this code base. */
export function recordAscii(w: ByteWriter, key: string, value: string): void {
  const klen = <u32>key.length;
  const vlen = <u32>value.length;
  const valueMsg = 1 + varintSize(vlen) + vlen;
  const entry = 1 + varintSize(klen) + klen + 1 + varintSize(valueMsg) + valueMsg;
  w.byte(TAG_FIELDS);
  varint(w, entry);
  w.byte(TAG_KEY);
  varint(w, klen);
  w.ascii(key);
  w.byte(TAG_VALUE);
  varint(w, valueMsg);
  w.byte(TAG_STRING);
  varint(w, vlen);
  w.ascii(value);
}
