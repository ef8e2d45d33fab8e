import { Slice } from "../../assembly/engine/bytes";
import {
  MAX_ATTRIBUTES, PeerStatus, SpiffeId, WHY_DOT, WHY_EMPTY, WHY_EMPTY_SEGMENT, WHY_PATH_CHAR, WHY_SCHEME, WHY_TD_CHAR,
  WHY_TD_LONG, WHY_TD_MISSING, WHY_TOO_LONG, WHY_TRAILING,
} from "../../assembly/engine/spiffe";
import { bytesOf, peerOf, peerOfBytes } from "./helpers";

function why(id: string): string {
  const p = peerOf(id);
  return p.status == PeerStatus.VALID ? "valid" : p.why;
}

function td(p: SpiffeId): string {
  return String.UTF8.decodeUnsafe(p.tdPtr(), <usize>p.tdLen, false);
}
function path(p: SpiffeId): string {
  return String.UTF8.decodeUnsafe(p.pathPtr(), <usize>p.pathLen, false);
}
function attrs(p: SpiffeId): string {
  let s = "";
  for (let a = 0; a < p.attrCount; a++) {
    if (a > 0) s += ",";
    s += String.UTF8.decodeUnsafe(p.attrKeyPtr(a), <usize>p.attrKeyLen(a), false) + "=" +
      String.UTF8.decodeUnsafe(p.attrValPtr(a), <usize>p.attrValLen(a), false);
  }
  return s;
}

function isTdChar(c: i32): bool {
  return (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c == 46 || c == 45 || c == 95;
}
function isPathChar(c: i32): bool {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c == 46 || c == 45 || c == 95;
}

function withByte(prefix: string, c: i32, suffix: string): Uint8Array {
  const a = bytesOf(prefix);
  const b = bytesOf(suffix);
  const out = new Uint8Array(a.length + 1 + b.length);
  out.set(a, 0);
  out[a.length] = <u8>c;
  out.set(b, a.length + 1);
  return out;
}

function repeat(s: string, n: i32): string {
  let out = "";
  for (let i = 0; i < n; i++) out += s;
  return out;
}

describe("SpiffeId.parse: go-spiffe's cases", () => {
  it("accepts well-formed IDs", () => {
    expect(why("spiffe://domain.test/path/element")).toBe("valid");
    expect(why("spiffe://domain.test")).toBe("valid");
    expect(why("spiffe://a")).toBe("valid");
    expect(why("spiffe://x.y-z_0/A-b.C_d/...")).toBe("valid");
    expect(why("spiffe://td/.a/a./..b")).toBe("valid");
  });
  it("rejects scheme problems", () => {
    expect(why("")).toBe(WHY_EMPTY);
    expect(why("192.168.2.2:6688")).toBe(WHY_SCHEME);
    expect(why("http://domain.test/path/element")).toBe(WHY_SCHEME);
    expect(why("SPIFFE://domain.test/path/element")).toBe(WHY_SCHEME);
    expect(why("Spiffe://domain.test")).toBe(WHY_SCHEME);
    expect(why("spiffe:path/element")).toBe(WHY_SCHEME);
    expect(why("spiffe:/path/element")).toBe(WHY_SCHEME);
    expect(why("spiffe:/")).toBe(WHY_SCHEME);
    expect(why(" spiffe://td")).toBe(WHY_SCHEME);
  });
  it("rejects trust domain problems", () => {
    expect(why("spiffe://")).toBe(WHY_TD_MISSING);
    expect(why("spiffe:///path/element")).toBe(WHY_TD_MISSING);
    expect(why("spiffe://domain.test:8080/path/element")).toBe(WHY_TD_CHAR);
    expect(why("spiffe://user:password@test.org/path/element")).toBe(WHY_TD_CHAR);
    expect(why("spiffe://Domain.test")).toBe(WHY_TD_CHAR);
    expect(why("spiffe://d%41.test")).toBe(WHY_TD_CHAR);
  });
  it("rejects path problems", () => {
    expect(why("spiffe://domain.test/path/element?query=1")).toBe(WHY_PATH_CHAR);
    expect(why("spiffe://domain.test/path/element#fragment-1")).toBe(WHY_PATH_CHAR);
    expect(why("spiffe://domain.test/path/elem%5uent")).toBe(WHY_PATH_CHAR);
    expect(why("spiffe://domain.test/pa:th/element")).toBe(WHY_PATH_CHAR);
    expect(why("spiffe://domain.test/")).toBe(WHY_TRAILING);
    expect(why("spiffe://domain.test/path/")).toBe(WHY_TRAILING);
    expect(why("spiffe://domain.test//path")).toBe(WHY_EMPTY_SEGMENT);
    expect(why("spiffe://domain.test/a//b")).toBe(WHY_EMPTY_SEGMENT);
    expect(why("spiffe://domain.test/./x")).toBe(WHY_DOT);
    expect(why("spiffe://domain.test/../x")).toBe(WHY_DOT);
    expect(why("spiffe://domain.test/x/.")).toBe(WHY_DOT);
    expect(why("spiffe://domain.test/x/..")).toBe(WHY_DOT);
  });
  it("reports the first problem, in go-spiffe's order", () => {
    // An empty segment is found at the next '/', before a bad character after it.
    expect(why("spiffe://td//a%")).toBe(WHY_EMPTY_SEGMENT);
    // A bad character comes before the empty segment that follows it.
    expect(why("spiffe://td/a%//b")).toBe(WHY_PATH_CHAR);
    // Trust domain characters are checked before the path.
    expect(why("spiffe://T/./x")).toBe(WHY_TD_CHAR);
  });
});

describe("SpiffeId.parse: every byte value", () => {
  it("in the trust domain", () => {
    for (let c = 0; c < 256; c++) {
      const p = peerOfBytes(withByte("spiffe://a", c, "b/path"));
      if (isTdChar(c)) {
        expect(p.status).toBe(PeerStatus.VALID, "td byte " + c.toString());
        expect(p.tdLen).toBe(3);
      } else if (c == 47) {
        // '/' ends the trust domain: spiffe://a/b/path
        expect(p.status).toBe(PeerStatus.VALID);
        expect(td(p)).toBe("a");
        expect(path(p)).toBe("/b/path");
      } else {
        expect(p.status).toBe(PeerStatus.INVALID, "td byte " + c.toString());
        expect(p.why).toBe(WHY_TD_CHAR);
      }
    }
  });
  it("in a path segment", () => {
    for (let c = 0; c < 256; c++) {
      const p = peerOfBytes(withByte("spiffe://td/p", c, "q"));
      if (isPathChar(c)) {
        expect(p.status).toBe(PeerStatus.VALID, "path byte " + c.toString());
        expect(p.segmentCount).toBe(1);
      } else if (c == 47) {
        expect(p.status).toBe(PeerStatus.VALID);
        expect(p.segmentCount).toBe(2);
      } else {
        expect(p.status).toBe(PeerStatus.INVALID, "path byte " + c.toString());
        expect(p.why).toBe(WHY_PATH_CHAR);
      }
    }
  });
  it("as a whole segment", () => {
    for (let c = 0; c < 256; c++) {
      const p = peerOfBytes(withByte("spiffe://td/", c, ""));
      if (c == 46) expect(p.why).toBe(WHY_DOT);
      else if (c == 47) expect(p.why).toBe(WHY_EMPTY_SEGMENT);
      else if (isPathChar(c)) expect(p.status).toBe(PeerStatus.VALID);
      else expect(p.why).toBe(WHY_PATH_CHAR);
    }
  });
});

describe("SpiffeId.parse: lengths", () => {
  it("takes trust domains up to 255 bytes", () => {
    expect(why("spiffe://" + repeat("a", 255))).toBe("valid");
    expect(why("spiffe://" + repeat("a", 255) + "/x")).toBe("valid");
    expect(why("spiffe://" + repeat("a", 256))).toBe(WHY_TD_LONG);
    expect(why("spiffe://" + repeat("a", 256) + "/x")).toBe(WHY_TD_LONG);
  });
  it("accepts 2048-byte and 64 KiB IDs, rejects longer ones", () => {
    const base = "spiffe://example.org/";
    const id2048 = base + repeat("a", 2048 - base.length);
    expect(id2048.length).toBe(2048);
    expect(why(id2048)).toBe("valid");
    const segs = "spiffe://example.org" + repeat("/seg", 500);
    expect(why(segs)).toBe("valid");
    const id64k = base + repeat("b", 65536 - base.length);
    expect(why(id64k)).toBe("valid");
    expect(why(id64k + "c")).toBe(WHY_TOO_LONG);
  });
});

describe("SpiffeId attributes", () => {
  it("reads the path pairwise", () => {
    const p = peerOf("spiffe://prod.example.com/cluster/c1/app/orders/env/prod");
    expect(attrs(p)).toBe("cluster=c1,app=orders,env=prod");
    expect(td(p)).toBe("prod.example.com");
    expect(path(p)).toBe("/cluster/c1/app/orders/env/prod");
    expect(p.segmentCount).toBe(6);
    expect(attrs(peerOf("spiffe://cluster.local/ns/shop/sa/orders"))).toBe("ns=shop,sa=orders");
  });
  it("drops an odd last segment", () => {
    const p = peerOf("spiffe://td/a/1/b");
    expect(attrs(p)).toBe("a=1");
    expect(p.segmentCount).toBe(3);
    expect(attrs(peerOf("spiffe://td/lonely"))).toBe("");
  });
  it("keeps the first value of a repeated key and remembers the repeat", () => {
    const p = peerOf("spiffe://td/a/1/b/2/a/3");
    expect(attrs(p)).toBe("a=1,b=2");
    expect(p.repeatedOff).toBeGreaterThan(0);
    expect(p.repeatedLen).toBe(1);
    expect(peerOf("spiffe://td/a/1/b/2").repeatedOff).toBe(-1);
  });
  it("has none for an empty path or an invalid ID", () => {
    expect(peerOf("spiffe://td").attrCount).toBe(0);
    expect(peerOf("spiffe://td/a/1/").attrCount).toBe(0);
  });
  it("keeps 64 pairs and flags more", () => {
    let id = "spiffe://td";
    for (let i = 0; i < MAX_ATTRIBUTES; i++) id += "/k" + i.toString() + "/v" + i.toString();
    const p = peerOf(id);
    expect(p.attrCount).toBe(64);
    expect(p.overflow).toBe(false);
    const q = peerOf(id + "/extra/1");
    expect(q.attrCount).toBe(64);
    expect(q.overflow).toBe(true);
    const out = new Slice();
    expect(q.attribute(changetype<usize>(String.UTF8.encode("k63")), 3, out)).toBe(true);
    expect(String.UTF8.decodeUnsafe(out.ptr, <usize>out.len, false)).toBe("v63");
  });
  it("looks attributes up by key, distinguishing absent from empty-named keys", () => {
    const p = peerOf("spiffe://td/ns/shop/sa/orders");
    const out = new Slice();
    const k = bytesOf("sa");
    expect(p.attribute(k.dataStart, k.length, out)).toBe(true);
    expect(String.UTF8.decodeUnsafe(out.ptr, <usize>out.len, false)).toBe("orders");
    const missing = bytesOf("app");
    expect(p.attribute(missing.dataStart, missing.length, out)).toBe(false);
  });
  it("re-parses cleanly when a state is reused", () => {
    const p = peerOf("spiffe://td/a/1/a/2");
    const b = bytesOf("spiffe://other/x/y");
    p.parse(b.dataStart, b.length);
    expect(attrs(p)).toBe("x=y");
    expect(p.repeatedOff).toBe(-1);
    p.setAbsent();
    expect(p.status).toBe(PeerStatus.ABSENT);
    expect(p.attrCount).toBe(0);
  });
});
