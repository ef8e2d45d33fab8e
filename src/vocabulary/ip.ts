// IP addresses as the rules hold them: 4 or 16 bytes, parsed and printed as Envoy and node do.

/** Zeroes the bits after the first `len` (Envoy's CidrRange truncates the address the same way). */
export function maskAddress(addr: Uint8Array, len: number): Buffer {
  const out = Buffer.from(addr);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, len - i * 8));
    out[i] &= keep === 0 ? 0 : (0xff << (8 - keep)) & 0xff;
  }
  return out;
}

/** An IPv4 (4 bytes) or IPv6 (16 bytes) address in text, or null. IPv4-mapped IPv6 stays 16 bytes. */
export function parseIp(s: string): Buffer | null {
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(s)) {
    const parts = s.split(".").map(Number);
    if (parts.some((n, i) => n > 255 || (s.split(".")[i].length > 1 && s.split(".")[i].startsWith("0")))) return null;
    return Buffer.from(parts);
  }
  if (!/^[0-9a-fA-F:.]+$/.test(s) || !s.includes(":")) return null;
  let head = s;
  let v4: Buffer | null = null;
  const lastColon = s.lastIndexOf(":");
  if (s.slice(lastColon + 1).includes(".")) {
    v4 = parseIp(s.slice(lastColon + 1));
    if (v4 === null || v4.length !== 4) return null;
    head = s.slice(0, lastColon + 1) + "0:0";
  }
  const dbl = head.indexOf("::");
  if (dbl !== head.lastIndexOf("::")) return null;
  const groups = (x: string) => (x === "" ? [] : x.split(":"));
  let words: string[];
  if (dbl >= 0) {
    const a = groups(head.slice(0, dbl));
    const b = groups(head.slice(dbl + 2));
    if (a.length + b.length > 7) return null;
    words = [...a, ...Array(8 - a.length - b.length).fill("0"), ...b];
  } else {
    words = head.split(":");
  }
  if (words.length !== 8 || words.some((w) => !/^[0-9a-fA-F]{1,4}$/.test(w))) return null;
  const out = Buffer.alloc(16);
  words.forEach((w, i) => out.writeUInt16BE(parseInt(w, 16), i * 2));
  if (v4) v4.copy(out, 12);
  return out;
}

/** Text of a 4- or 16-byte address (IPv6 in the RFC 5952 form node prints). */
export function formatIp(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join(".");
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((b[i] << 8) | b[i + 1]).toString(16));
  // RFC 5952: the longest run (at least two) of zero words becomes "::".
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === "0") j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return words.join(":");
  return `${words.slice(0, best).join(":")}::${words.slice(best + bestLen).join(":")}`;
}
