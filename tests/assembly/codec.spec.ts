import { base64Decode } from "../../assembly/engine/base64";
import { crc32 } from "../../assembly/engine/crc32";
import { inflateRaw } from "../../assembly/engine/inflate";
import { DEFLATE_CASES, FIXED_DEFLATE, FIXED_N, FIXED_SEED } from "./fixtures";
import { bytesOf, Rng, sampleText, xorshiftBytes } from "./helpers";

function b64(s: string): string {
  const b = bytesOf(s);
  const r = base64Decode(b.dataStart, b.length);
  if (r.error.length != 0) return "error: " + r.error;
  return String.UTF8.decode(r.data!, false);
}

function staticPtr(a: StaticArray<u8>): usize {
  return changetype<usize>(a);
}

function plainOf(kind: i32, n: i32, seed: u32): Uint8Array {
  if (kind == 0) return sampleText(n, seed);
  if (kind == 1) return xorshiftBytes(n, seed);
  const a = new Uint8Array(n);
  a.fill(97);
  return a;
}

function same(a: Uint8Array, b: Uint8Array): bool {
  if (a.length != b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] != b[i]) return false;
  return true;
}

describe("base64Decode", () => {
  it("decodes RFC 4648 test vectors", () => {
    expect(b64("")).toBe("");
    expect(b64("Zg==")).toBe("f");
    expect(b64("Zm8=")).toBe("fo");
    expect(b64("Zm9v")).toBe("foo");
    expect(b64("Zm9vYg==")).toBe("foob");
    expect(b64("Zm9vYmE=")).toBe("fooba");
    expect(b64("Zm9vYmFy")).toBe("foobar");
  });
  it("decodes every byte value", () => {
    // base64 of bytes 0..255 as produced by node's Buffer.toString("base64").
    const text = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6ChoqOkpaanqKmqq6ytrq+wsbKztLW2t7i5uru8vb6/wMHCw8TFxsfIycrLzM3Oz9DR0tPU1dbX2Nna29zd3t/g4eLj5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7/P3+/w==";
    const b = bytesOf(text);
    const r = base64Decode(b.dataStart, b.length);
    expect(r.error).toBe("");
    const out = Uint8Array.wrap(r.data!);
    expect(out.length).toBe(256);
    for (let i = 0; i < 256; i++) expect(<i32>out[i]).toBe(i);
  });
  it("rejects malformed input without trapping", () => {
    expect(b64("Zm9")).toBe("error: base64 length 3 is not a multiple of 4");
    expect(b64("Zm9v\n")).toBe("error: base64 length 5 is not a multiple of 4");
    expect(b64("Zm 9")).toBe("error: invalid base64 character at offset 2");
    expect(b64("Z=9v")).toBe("error: invalid base64 character at offset 1");
    expect(b64("Zm=v")).toBe("error: invalid base64 character at offset 2");
    expect(b64("====")).toBe("error: invalid base64 character at offset 0");
    expect(b64("Zg==Zg==")).toBe("error: invalid base64 character at offset 2");
    expect(b64("Zm9v-_==")).toBe("error: invalid base64 character at offset 4");
  });
});

describe("crc32", () => {
  it("matches zlib's check values", () => {
    const s = bytesOf("123456789");
    expect(crc32(s.dataStart, 9)).toBe(0xcbf43926);
    expect(crc32(0, 0)).toBe(0);
    const q = bytesOf("The quick brown fox jumps over the lazy dog");
    expect(crc32(q.dataStart, <usize>q.length)).toBe(0x414fa339);
  });
  it("gives the same result in one call or in pieces, at every alignment", () => {
    const data = xorshiftBytes(1000, 99);
    const whole = crc32(data.dataStart, 1000);
    for (let split = 0; split <= 17; split++) {
      const a = crc32(data.dataStart, <usize>split);
      expect(crc32(data.dataStart + <usize>split, <usize>(1000 - split), a)).toBe(whole);
    }
  });
});

describe("inflateRaw", () => {
  it("inflates node zlib streams (stored, fixed, dynamic, random, runs)", () => {
    for (let i = 0; i < DEFLATE_CASES.length; i++) {
      const c = DEFLATE_CASES[i];
      const plain = plainOf(c.kind, c.n, c.seed);
      const out = new Uint8Array(c.n);
      const err = inflateRaw(staticPtr(c.data), c.data.length, out.dataStart, c.n);
      expect(err).toBe("", c.name);
      expect(same(out, plain)).toBe(true, c.name);
    }
    const out = new Uint8Array(FIXED_N);
    expect(inflateRaw(staticPtr(FIXED_DEFLATE), FIXED_DEFLATE.length, out.dataStart, FIXED_N)).toBe("");
    expect(same(out, sampleText(FIXED_N, FIXED_SEED))).toBe(true);
  });
  it("requires exactly the declared length", () => {
    const c = DEFLATE_CASES[3];
    const big = new Uint8Array(c.n + 10);
    expect(inflateRaw(staticPtr(c.data), c.data.length, big.dataStart, c.n + 10)).toBe(
      "inflate: body is " + c.n.toString() + " bytes, the envelope declares " + (c.n + 10).toString(),
    );
    expect(inflateRaw(staticPtr(c.data), c.data.length, big.dataStart, c.n - 1)).toBe(
      "inflate: output exceeds the declared body length " + (c.n - 1).toString(),
    );
  });
  it("peeks at a prefix of the output when asked", () => {
    for (let k = 1; k < DEFLATE_CASES.length; k++) {
      const c = DEFLATE_CASES[k];
      const plain = plainOf(c.kind, c.n, c.seed);
      for (let want = 1; want < c.n; want = want * 3 + 1) {
        const out = new Uint8Array(want);
        expect(inflateRaw(staticPtr(c.data), c.data.length, out.dataStart, want, true)).toBe("", c.name);
        expect(same(out, plain.subarray(0, want))).toBe(true, c.name + " prefix " + want.toString());
      }
    }
  });
  it("rejects trailing bytes after the final block", () => {
    const c = DEFLATE_CASES[1];
    const padded = new Uint8Array(c.data.length + 2);
    for (let i = 0; i < c.data.length; i++) padded[i] = c.data[i];
    const out = new Uint8Array(c.n);
    expect(inflateRaw(padded.dataStart, padded.length, out.dataStart, c.n)).toBe("inflate: 2 bytes follow the end of the compressed data");
  });
  it("returns an error for every truncation", () => {
    for (let k = 0; k < DEFLATE_CASES.length; k++) {
      const c = DEFLATE_CASES[k];
      if (c.n == 0) continue;
      const out = new Uint8Array(c.n);
      const step = c.data.length > 400 ? c.data.length / 200 : 1;
      for (let len = 0; len < c.data.length; len += step) {
        const err = inflateRaw(staticPtr(c.data), len, out.dataStart, c.n);
        expect(err.length).toBeGreaterThan(0, c.name + " truncated to " + len.toString());
      }
    }
  });
  it("never traps or hangs on corrupted streams", () => {
    const rng = new Rng(12345);
    const c = DEFLATE_CASES[3];
    const out = new Uint8Array(c.n);
    let failures = 0;
    for (let round = 0; round < 400; round++) {
      const data = new Uint8Array(c.data.length);
      for (let i = 0; i < data.length; i++) data[i] = c.data[i];
      const flips = 1 + rng.below(4);
      for (let f = 0; f < flips; f++) { const at = rng.below(data.length); data[at] = data[at] ^ <u8>(<i32>1 << rng.below(8)); }
      if (inflateRaw(data.dataStart, data.length, out.dataStart, c.n).length != 0) failures++;
    }
    // Almost every corruption is detected here; the envelope's CRC catches the rest.
    expect(failures).toBeGreaterThan(300);
  });
  it("rejects garbage and hand-made invalid blocks", () => {
    const out = new Uint8Array(100);
    for (let seed: u32 = 1; seed < 300; seed++) {
      const g = xorshiftBytes(1 + <i32>(seed % 64), seed);
      inflateRaw(g.dataStart, g.length, out.dataStart, 100); // must return, whatever it says
    }
    const bad = new Uint8Array(1);
    bad[0] = 0x07; // final block, type 3
    expect(inflateRaw(bad.dataStart, 1, out.dataStart, 100)).toBe("inflate: invalid block type 3 at input byte 0");
    const stored = new Uint8Array(5);
    stored[0] = 0x01; // final stored block, LEN 1, NLEN not its complement
    stored[1] = 1;
    stored[2] = 0;
    stored[3] = 0;
    stored[4] = 0;
    expect(inflateRaw(stored.dataStart, 5, out.dataStart, 100)).toBe("inflate: stored block length check failed at input byte 5");
    // Fixed block whose first code is a match (distance 1) with nothing before it.
    const far = new Uint8Array(3);
    far[0] = 0x03; // final, fixed; then length symbol 257 (0000001) and distance 0 (00000)
    far[1] = 0x02;
    far[2] = 0x00;
    expect(inflateRaw(far.dataStart, 3, out.dataStart, 100)).toBe("inflate: distance 1 too far back at output byte 0");
  });
});
