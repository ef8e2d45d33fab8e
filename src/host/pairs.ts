// proxy-wasm "pairs" serialisation (proxy-wasm-cpp-host pairs_util.cc), used for header maps, local-reply
// headers and map-valued properties:
//
//   u32 count
//   count x { u32 keyLength, u32 valueLength }
//   count x { key bytes, 0x00, value bytes, 0x00 }
//
// All integers little-endian. An empty list is sent as a null pointer with size 0, not as a 4-byte zero.

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: false });

export type Pair = [string, string];

/** Serialises pairs exactly as the host does before copying them into the module's memory. */
export function encodePairs(pairs: readonly Pair[]): Uint8Array {
  const keys = pairs.map((p) => encoder.encode(p[0]));
  const values = pairs.map((p) => encoder.encode(p[1]));
  let size = 4;
  for (let i = 0; i < pairs.length; i++) size += 8 + keys[i].length + 1 + values[i].length + 1;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, pairs.length, true);
  let off = 4;
  for (let i = 0; i < pairs.length; i++) {
    dv.setUint32(off, keys[i].length, true);
    dv.setUint32(off + 4, values[i].length, true);
    off += 8;
  }
  for (let i = 0; i < pairs.length; i++) {
    out.set(keys[i], off);
    off += keys[i].length + 1; // NUL already 0
    out.set(values[i], off);
    off += values[i].length + 1;
  }
  return out;
}

/**
 * Parses pairs the module sent (proxy_send_local_response headers, proxy_set_header_map_pairs). Like
 * cpp-host's toPairs, a buffer too short for its own directory yields no pairs rather than an error; a buffer
 * whose strings overrun it yields null (the caller reports InvalidMemoryAccess).
 */
export function decodePairs(bytes: Uint8Array): Pair[] | null {
  if (bytes.length < 4) return [];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = dv.getUint32(0, true);
  if (4 + count * 8 > bytes.length) return [];
  const lengths: number[] = [];
  let off = 4;
  for (let i = 0; i < count; i++) {
    lengths.push(dv.getUint32(off, true), dv.getUint32(off + 4, true));
    off += 8;
  }
  const out: Pair[] = [];
  for (let i = 0; i < count; i++) {
    const kl = lengths[2 * i];
    const vl = lengths[2 * i + 1];
    if (off + kl + 1 + vl + 1 > bytes.length) return null;
    const key = decoder.decode(bytes.subarray(off, off + kl));
    off += kl + 1;
    const value = decoder.decode(bytes.subarray(off, off + vl));
    off += vl + 1;
    out.push([key, value]);
  }
  return out;
}
