// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as zlib's crc32. Slicing-by-16 (16 KiB of tables):
// a 100k-rule body is over 10 MB and is checked on every configuration load.

const TABLES = new StaticArray<u32>(256 * 16);
function initTables(): void {
  for (let n: u32 = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    unchecked((TABLES[n] = c));
  }
  for (let n = 0; n < 256; n++) {
    let c = unchecked(TABLES[n]);
    for (let t = 1; t < 16; t++) {
      c = unchecked(TABLES[c & 0xff]) ^ (c >>> 8);
      unchecked((TABLES[t * 256 + n] = c));
    }
  }
}
initTables();

// Table `k` entry for byte `b`.
// @ts-ignore: decorator
@inline function tb(t: usize, k: u32, b: u32): u32 {
  return load<u32>(t + (((k << 8) + b) << 2));
}

/** CRC-32 of `len` bytes at `ptr`, continuing from `crc` (0 to start). */
export function crc32(ptr: usize, len: usize, crc: u32 = 0): u32 {
  let c = ~crc;
  const t = changetype<usize>(TABLES);
  let p = ptr;
  const end = ptr + len;
  while (p + 16 <= end) {
    const a = load<u32>(p) ^ c;
    const b = load<u32>(p, 4);
    const d = load<u32>(p, 8);
    const e = load<u32>(p, 12);
    c =
      tb(t, 15, a & 0xff) ^ tb(t, 14, (a >>> 8) & 0xff) ^ tb(t, 13, (a >>> 16) & 0xff) ^ tb(t, 12, a >>> 24) ^
      tb(t, 11, b & 0xff) ^ tb(t, 10, (b >>> 8) & 0xff) ^ tb(t, 9, (b >>> 16) & 0xff) ^ tb(t, 8, b >>> 24) ^
      tb(t, 7, d & 0xff) ^ tb(t, 6, (d >>> 8) & 0xff) ^ tb(t, 5, (d >>> 16) & 0xff) ^ tb(t, 4, d >>> 24) ^
      tb(t, 3, e & 0xff) ^ tb(t, 2, (e >>> 8) & 0xff) ^ tb(t, 1, (e >>> 16) & 0xff) ^ tb(t, 0, e >>> 24);
    p += 16;
  }
  while (p < end) {
    c = tb(t, 0, (c ^ <u32>load<u8>(p)) & 0xff) ^ (c >>> 8);
    p++;
  }
  return ~c;
}
