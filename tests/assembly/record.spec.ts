// The decision record's encoding (assembly/engine/record.ts): a google.protobuf.Struct of string fields, every
// value escaped as a log line is (printable ASCII as is, any other byte and `\` as \xHH), lengths as varints.

import { recordAscii, recordField } from "../../assembly/engine/record";
import { ByteWriter } from "../../assembly/engine/writer";

function hex(w: ByteWriter): string {
  let s = "";
  for (let i = 0; i < w.len; i++) {
    const b = load<u8>(w.ptr + <usize>i);
    s += (b < 16 ? "0" : "") + b.toString(16);
  }
  return s;
}

function asciiHex(s: string): string {
  let out = "";
  for (let i = 0; i < s.length; i++) out += s.charCodeAt(i).toString(16);
  return out;
}

describe("decision record encoding", () => {
  it("writes a field as a Struct map entry with a string Value", () => {
    const w = new ByteWriter(4);
    recordAscii(w, "decision", "allow");
    // 0a 13 | 0a 08 "decision" | 12 07 | 1a 05 "allow"
    expect(hex(w)).toBe("0a13" + "0a08" + asciiHex("decision") + "1207" + "1a05" + asciiHex("allow"));
  });

  it("escapes every byte that is not printable ASCII, and the backslash", () => {
    const w = new ByteWriter(4);
    const raw: u8[] = [0x61, 0x0a, 0x5c, 0xff, 0x7e];
    const p = heap.alloc(5);
    for (let i = 0; i < 5; i++) store<u8>(p + <usize>i, raw[i]);
    recordField(w, "peer", p, 5);
    heap.free(p);
    // a \x0a \x5c \xff ~ : 14 bytes
    const v = "a\\x0a\\x5c\\xff~";
    expect(v.length).toBe(14);
    expect(hex(w)).toBe("0a18" + "0a04" + asciiHex("peer") + "1210" + "1a0e" + asciiHex(v));
  });

  it("writes two-byte lengths for long values, and appends after what the buffer holds", () => {
    const w = new ByteWriter(2);
    recordAscii(w, "a", "b");
    const before = w.len;
    const n = 200;
    const p = heap.alloc(<usize>n);
    memory.fill(p, 0x78, <usize>n);
    recordField(w, "k", p, n);
    heap.free(p);
    // entry = 1+1+1 (key) + 1+2 (value tag, length 203) + 203 (1a, c8 01, 200 bytes) = 209 = d1 01
    let want = "0ad101" + "0a01" + asciiHex("k") + "12cb01" + "1ac801";
    for (let i = 0; i < n; i++) want += "78";
    expect(hex(w).substring(before * 2)).toBe(want);
    expect(w.len).toBe(before + 3 + 209);
  });
});
