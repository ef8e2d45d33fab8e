import { addressBytes, cidrContains, cidrProblem, globMatches, globProblem, parseAddress } from "../../assembly/engine/glob";

function g(pattern: string, subject: string): bool {
  const p = String.UTF8.encode(pattern, false);
  const s = String.UTF8.encode(subject, false);
  return globMatches(changetype<usize>(p), p.byteLength, changetype<usize>(s), s.byteLength, false);
}

function problem(pattern: string): string {
  const p = String.UTF8.encode(pattern, false);
  return globProblem(changetype<usize>(p), p.byteLength);
}

function addr(text: string): string {
  const b = String.UTF8.encode(text, false);
  const n = parseAddress(changetype<usize>(b), b.byteLength);
  let out = n.toString() + ":";
  for (let i = 0; i < n; i++) out += (i > 0 ? "." : "") + load<u8>(addressBytes + <usize>i).toString();
  return out;
}

function inRange(text: string, cidr: u8[]): bool {
  const b = String.UTF8.encode(text, false);
  const n = parseAddress(changetype<usize>(b), b.byteLength);
  const v = new Uint8Array(cidr.length);
  for (let i = 0; i < cidr.length; i++) v[i] = cidr[i];
  return n > 0 && cidrContains(v.dataStart, v.length, n);
}

describe("GLOB patterns (istiod's regexes)", () => {
  it("\\* is any run without a newline, \\. one byte (.+ is \\.\\*)", () => {
    expect(g("\\*/ns/foo/\\*", "spiffe://td/ns/foo/sa/a")).toBe(true);
    expect(g("\\*/ns/foo/\\*", "spiffe://td/ns/foo")).toBe(false);
    expect(g("\\*/ns/foo/\\*", "spiffe://td/x/ns/foo/")).toBe(true);
    expect(g("\\*/ns/foo/\\*", "a\n/ns/foo/b")).toBe(false);
    expect(g("\\.\\*", "")).toBe(false);
    expect(g("\\.\\*", "x")).toBe(true);
    expect(g("spiffe://\\*/sa/a", "spiffe:///sa/a")).toBe(true);
    expect(g("spiffe://\\*/sa/a", "spiffe:/sa/a")).toBe(false);
  });
  it("\\/ stops at a slash; \\\\ is a backslash", () => {
    expect(g("spiffe://td\\//\\*", "spiffe://td2.x/ns")).toBe(true);
    expect(g("spiffe://td\\//\\*", "spiffe://td/x/ns")).toBe(true);
    expect(g("spiffe://td\\/.local/\\*", "spiffe://td/a.local/x")).toBe(false);
    expect(g("a\\\\b", "a\\b")).toBe(true);
    expect(g("a\\\\b", "a\\\\b")).toBe(false);
  });
  it("\\p\\P and \\S are Envoy's uri_template * and **", () => {
    expect(g("/api/\\p\\P/x", "/api/a=b*c/x")).toBe(true);
    expect(g("/api/\\p\\P/x", "/api//x")).toBe(false);
    expect(g("/api/\\p\\P/x", "/api/a\"b/x")).toBe(false);
    expect(g("/api/\\S", "/api/")).toBe(true);
    expect(g("/api/\\S", "/api")).toBe(false);
    expect(g("/\\S/edit", "/a/b/edit")).toBe(true);
    expect(g("/\\S/edit", "/edit")).toBe(false);
  });
  it("is validated at load", () => {
    expect(problem("a\\")).toBe("glob ends with a lone \"\\\"");
    expect(problem("a\\q")).toBe("glob operator \"\\q\" is not one of \\* \\. \\/ \\p \\P \\S \\\\");
    expect(problem("\\*x\\S")).toBe("");
  });
});

describe("addresses and CIDR ranges", () => {
  it("parses Envoy's address text: v4 with port, [v6]:port, bare", () => {
    expect(addr("10.1.2.3:80")).toBe("4:10.1.2.3");
    expect(addr("10.1.2.3")).toBe("4:10.1.2.3");
    expect(addr("[::1]:9")).toBe("16:0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1");
    expect(addr("[::ffff:10.1.2.3]:0")).toBe("16:0.0.0.0.0.0.0.0.0.0.255.255.10.1.2.3");
    expect(addr("2001:db8::5")).toBe("16:32.1.13.184.0.0.0.0.0.0.0.0.0.0.0.5");
    expect(addr("/tmp/sock")).toBe("0:");
    expect(addr("010.1.2.3:1")).toBe("0:");
    expect(addr("1.2.3.256:1")).toBe("0:");
    expect(addr("[1::2::3]:1")).toBe("0:");
  });
  it("matches by prefix within one family (an IPv4-mapped address is IPv6)", () => {
    expect(inRange("10.1.2.3:0", [10, 0, 0, 0, 8])).toBe(true);
    expect(inRange("11.1.2.3:0", [10, 0, 0, 0, 8])).toBe(false);
    expect(inRange("10.1.2.3:0", [10, 1, 2, 0, 23])).toBe(true);
    expect(inRange("10.1.4.3:0", [10, 1, 2, 0, 23])).toBe(false);
    expect(inRange("[::ffff:10.1.2.3]:0", [10, 0, 0, 0, 8])).toBe(false);
    expect(inRange("9.9.9.9:0", [0, 0, 0, 0, 0])).toBe(true);
  });
  it("refuses malformed values at load", () => {
    const bad = new Uint8Array(5);
    bad[0] = 10; bad[1] = 1; bad[4] = 8;
    expect(cidrProblem(bad.dataStart, 5)).toBe("CIDR address has bits set after the prefix");
    bad[1] = 0; bad[4] = 33;
    expect(cidrProblem(bad.dataStart, 5)).toBe("CIDR prefix length 33 exceeds 32");
    expect(cidrProblem(bad.dataStart, 4)).toBe("CIDR value is 4 bytes, not 5 or 17");
  });
});
