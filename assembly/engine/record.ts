// The decision record: what the filter publishes for Envoy's access loggers (docs/observability.md),
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

/** Stores varint `n` at `o`; returns the address after it. */
@inline
function putVarint(o: usize, n: u32): usize {
  while (n >= 0x80) {
    store<u8>(o++, (n & 0x7f) | 0x80);
    n >>= 7;
  }
  store<u8>(o++, n);
  return o;
}

/** Stores the ASCII string `s` (a literal of this code base) at `o`; returns the address after it. */
@inline
function putAscii(o: usize, s: string): usize {
  const n = s.length;
  const src = changetype<usize>(s);
  for (let i = 0; i < n; i++) store<u8>(o + <usize>i, <u8>load<u16>(src + (<usize>i << 1)));
  return o + <usize>n;
}

/** How many bytes `len` bytes at `p` take once escaped: printable ASCII stays, anything else is `\xHH`. */
function escapedSize(p: usize, len: i32): i32 {
  let n = len;
  for (let i = 0; i < len; i++) {
    const c = load<u8>(p + <usize>i);
    if (c < 0x20 || c >= 0x7f || c == 0x5c) n += 3;
  }
  return n;
}

/**
 * Writes the header of the Struct field `key` whose string value takes `vlen` bytes: the map entry, its key, and
 * the Value's tags and lengths, after making room for the whole field (one capacity check per field). Returns
 * the address where the value's bytes go.
 */
@inline
function fieldHeader(w: ByteWriter, key: string, vlen: u32): usize {
  const klen = <u32>key.length;
  const valueMsg = 1 + <u32>varintSize(vlen) + vlen; // Value { string_value }
  const entry = 1 + <u32>varintSize(klen) + klen + 1 + <u32>varintSize(valueMsg) + valueMsg;
  w.ensure(1 + varintSize(entry) + <i32>entry);
  let o = w.ptr + <usize>w.len;
  store<u8>(o++, TAG_FIELDS);
  o = putVarint(o, entry);
  store<u8>(o++, TAG_KEY);
  o = putVarint(o, klen);
  o = putAscii(o, key);
  store<u8>(o++, TAG_VALUE);
  o = putVarint(o, valueMsg);
  store<u8>(o++, TAG_STRING);
  return putVarint(o, vlen);
}

/**
 * Appends the Struct field `key` = string `len` bytes at `p`. The value is written as a log line would be:
 * printable ASCII as is, any other byte (and `\`) as `\xHH`, so the record is always valid UTF-8 (a protobuf
 * string must be) and a hostile identity cannot forge anything in a log.
 */
export function recordField(w: ByteWriter, key: string, p: usize, len: i32): void {
  const vlen = escapedSize(p, len);
  let o = fieldHeader(w, key, <u32>vlen);
  if (vlen == len) {
    memory.copy(o, p, <usize>len);
    o += <usize>len;
  } else {
    for (let i = 0; i < len; i++) {
      const c = <u32>load<u8>(p + <usize>i);
      if (c >= 0x20 && c < 0x7f && c != 0x5c) {
        store<u8>(o++, c);
      } else {
        store<u8>(o, 0x5c);
        store<u8>(o, 0x78, 1);
        store<u8>(o, load<u8>(changetype<usize>(HEX_DIGITS) + <usize>(c >> 4)), 2);
        store<u8>(o, load<u8>(changetype<usize>(HEX_DIGITS) + <usize>(c & 15)), 3);
        o += 4;
      }
    }
  }
  w.len = <i32>(o - w.ptr);
}

/** Appends the Struct field `key` = an ASCII literal of this code base. */
export function recordAscii(w: ByteWriter, key: string, value: string): void {
  const o = putAscii(fieldHeader(w, key, <u32>value.length), value);
  w.len = <i32>(o - w.ptr);
}

const HEX_DIGITS = memory.data<u8>([48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 97, 98, 99, 100, 101, 102]);
