import { bytesCompare, Slice } from "../../assembly/engine/bytes";
import { decide, Decision } from "../../assembly/engine/decision";
import { hostName, pathEnd, templateMatches } from "../../assembly/engine/match";
import { PolicyTable } from "../../assembly/engine/table/policy-table";
import {
  ALLOW, any, DENY, attr, bytesOf, clause, ex, F_HOST, F_METHOD, F_PATH, F_PORT, F_PRINCIPAL, F_SNI, F_TD, header, outcome,
  PatB, peerOf, pre, pred, PredB, rule, suf, TableB, TestRequest, tpl,
} from "./helpers";

function tm(pattern: string, path: string): bool {
  const p = bytesOf(pattern);
  const s = bytesOf(path);
  return templateMatches(p.dataStart, p.length, s.dataStart, s.length, false);
}

/** A table with one ALLOW rule of one operation predicate; default deny. */
function opTable(p: PredB): PolicyTable {
  const t = new TableB();
  t.add(rule("hit", ALLOW, [], [clause([p])]));
  return t.load();
}

function srcTable(p: PredB): PolicyTable {
  const t = new TableB();
  t.add(rule("hit", ALLOW, [clause([p])]));
  return t.load();
}

const d = new Decision();
function hits(t: PolicyTable, req: TestRequest, peer: string | null = "spiffe://td/ns/a/sa/b"): bool {
  decide(t, peerOf(peer), req, d);
  return outcome(d) == "allow:hit";
}

describe("bytesCompare", () => {
  it("orders as unsigned memcmp, shorter first", () => {
    const a = bytesOf("ab");
    const b = bytesOf("abc");
    const c = bytesOf("\u00e9"); // 0xc3 0xa9 sorts after ASCII
    expect(bytesCompare(a.dataStart, 2, b.dataStart, 3)).toBeLessThan(0);
    expect(bytesCompare(b.dataStart, 3, a.dataStart, 2)).toBeGreaterThan(0);
    expect(bytesCompare(a.dataStart, 2, a.dataStart, 2)).toBe(0);
    expect(bytesCompare(c.dataStart, 2, a.dataStart, 2)).toBeGreaterThan(0);
  });
});

describe("path templates", () => {
  it("match literal segments, {*} and {**}", () => {
    expect(tm("/api/{*}/items/{**}", "/api/x/items")).toBe(true);
    expect(tm("/api/{*}/items/{**}", "/api/x/items/1/2")).toBe(true);
    expect(tm("/api/{*}/items/{**}", "/api/x/items/")).toBe(true);
    expect(tm("/api/{*}/items/{**}", "/api//items/1")).toBe(false);
    expect(tm("/api/{*}/items/{**}", "/api/x/y/items")).toBe(false);
    expect(tm("/api/{*}/items/{**}", "/api/x/itemsz")).toBe(false);
    expect(tm("/api/{*}", "/api/x")).toBe(true);
    expect(tm("/api/{*}", "/api/x/y")).toBe(false);
    expect(tm("/api/{*}", "/api/")).toBe(false);
    expect(tm("/api/{*}", "/api")).toBe(false);
    expect(tm("/{**}", "/")).toBe(true);
    expect(tm("/{**}", "/anything/at/all")).toBe(true);
    expect(tm("/a/b", "/a/b")).toBe(true);
    expect(tm("/a/b", "/a/b/")).toBe(false);
    expect(tm("/a/b", "/a")).toBe(false);
    expect(tm("{**}", "")).toBe(true);
  });
  it("cut :path at the query or fragment", () => {
    const s = bytesOf("/a/b?x=/c#d");
    expect(pathEnd(s.dataStart, s.length)).toBe(4);
    const f = bytesOf("/a#b?c");
    expect(pathEnd(f.dataStart, f.length)).toBe(2);
  });
});

describe("patterns on request fields", () => {
  it("EXACT, PREFIX, SUFFIX, PRESENT on :path (query ignored)", () => {
    const t = opTable(pred(F_PATH, [ex("/exact"), pre("/pre/"), suf(".json")]));
    expect(hits(t, TestRequest.of("GET", "/exact"))).toBe(true);
    expect(hits(t, TestRequest.of("GET", "/exact?q=1"))).toBe(true);
    expect(hits(t, TestRequest.of("GET", "/exact/"))).toBe(false);
    expect(hits(t, TestRequest.of("GET", "/pre/x"))).toBe(true);
    expect(hits(t, TestRequest.of("GET", "/pre"))).toBe(false);
    expect(hits(t, TestRequest.of("GET", "/a/b.json"))).toBe(true);
    expect(hits(t, TestRequest.of("GET", "/a/b.json?x=.yaml"))).toBe(true);
    expect(hits(t, TestRequest.of("GET", "/a/b.yaml?x=.json"))).toBe(false);
    expect(hits(t, TestRequest.of("GET", null))).toBe(false);
    const p = opTable(pred(F_PATH, [any()]));
    expect(hits(p, TestRequest.of("GET", "/"))).toBe(true);
    expect(hits(p, TestRequest.of("GET", "?only-query"))).toBe(false);
    expect(hits(p, TestRequest.of("GET", null))).toBe(false);
  });
  it("binary-searches many exact patterns", () => {
    const pats: PatB[] = [];
    for (let i = 0; i < 200; i++) pats.push(ex("/p/" + (i * 7).toString()));
    const t = opTable(pred(F_PATH, pats));
    for (let i = 0; i < 1400; i++) {
      expect(hits(t, TestRequest.of("GET", "/p/" + i.toString()))).toBe(i % 7 == 0, i.toString());
    }
  });
  it("HOST ignores case (patterns stored lower-case)", () => {
    const t = opTable(pred(F_HOST, [ex("API.example.com"), suf(".Internal"), pre("Svc.")]));
    expect(hits(t, TestRequest.of("GET", "/").withHost("api.example.com"))).toBe(true);
    expect(hits(t, TestRequest.of("GET", "/").withHost("API.EXAMPLE.COM"))).toBe(true);
    expect(hits(t, TestRequest.of("GET", "/").withHost("x.INTERNAL"))).toBe(true);
    expect(hits(t, TestRequest.of("GET", "/").withHost("SVC.a"))).toBe(true);
    expect(hits(t, TestRequest.of("GET", "/").withHost("api.example.org"))).toBe(false);
    expect(hits(t, TestRequest.of("GET", "/"))).toBe(false);
  });
  it("METHOD, PORT, SNI, and case-sensitive fields", () => {
    expect(hits(opTable(pred(F_METHOD, [ex("GET"), ex("HEAD")])), TestRequest.of("HEAD", "/"))).toBe(true);
    expect(hits(opTable(pred(F_METHOD, [ex("GET")])), TestRequest.of("get", "/"))).toBe(false);
    expect(hits(opTable(pred(F_PORT, [ex("8443")])), TestRequest.of("GET", "/").withPort("8443"))).toBe(true);
    expect(hits(opTable(pred(F_PORT, [ex("8443")])), TestRequest.of("GET", "/").withPort("443"))).toBe(false);
    expect(hits(opTable(pred(F_PORT, [ex("8443")])), TestRequest.of("GET", "/"))).toBe(false);
    expect(hits(opTable(pred(F_SNI, [suf(".example.com")])), TestRequest.of("GET", "/").withSni("a.example.com"))).toBe(true);
    expect(hits(opTable(pred(F_SNI, [suf(".example.com")])), TestRequest.of("GET", "/"))).toBe(false);
  });
  it("HEADER: absent vs empty; every line of a repeated header is a value of its own", () => {
    const present = opTable(header("x-a", [any()]));
    expect(hits(present, TestRequest.of("GET", "/").withHeader("x-a", "1"))).toBe(true);
    expect(hits(present, TestRequest.of("GET", "/").withHeader("x-a", ""))).toBe(false);
    expect(hits(present, TestRequest.of("GET", "/"))).toBe(false);
    const empty = opTable(header("x-a", [ex("")]));
    expect(hits(empty, TestRequest.of("GET", "/").withHeader("x-a", ""))).toBe(true);
    expect(hits(empty, TestRequest.of("GET", "/"))).toBe(false);
    // Values are never joined: "1" + "2" is not "1,2" (one line "1,2" is).
    const joined = opTable(header("x-a", [ex("1,2")]));
    expect(hits(joined, TestRequest.of("GET", "/").withHeader("X-A", "1").withHeader("x-a", "2"))).toBe(false);
    expect(hits(joined, TestRequest.of("GET", "/").withHeader("x-a", "1,2"))).toBe(true);
    // Any line that matches satisfies the predicate, wherever it comes.
    const admin = opTable(header("x-role", [ex("admin")]));
    expect(hits(admin, TestRequest.of("GET", "/").withHeader("x-role", "adminx").withHeader("x-role", "admin"))).toBe(true);
    expect(hits(admin, TestRequest.of("GET", "/").withHeader("x-role", "admin").withHeader("x-role", "adminx"))).toBe(true);
    expect(hits(admin, TestRequest.of("GET", "/").withHeader("x-role", "adminx").withHeader("x-role", "xadmin"))).toBe(false);
    // An absent header satisfies a negated predicate.
    const not = opTable(header("x-a", [ex("bad")], true));
    expect(hits(not, TestRequest.of("GET", "/"))).toBe(true);
    expect(hits(not, TestRequest.of("GET", "/").withHeader("x-a", "bad"))).toBe(false);
    expect(hits(not, TestRequest.of("GET", "/").withHeader("x-a", "good"))).toBe(true);
    // A negated predicate fails as soon as one line matches.
    expect(hits(not, TestRequest.of("GET", "/").withHeader("x-a", "good").withHeader("x-a", "bad"))).toBe(false);
  });
  it("HEADER in a DENY rule: a repeated header cannot hide the value it denies", () => {
    const t = new TableB();
    t.add(rule("no-admin", DENY, [], [clause([header("x-role", [ex("admin")])])]));
    t.add(rule("all", ALLOW, []));
    const table = t.load();
    decide(table, peerOf("spiffe://td/ns/a/sa/b"), TestRequest.of("GET", "/").withHeader("x-role", "adminx").withHeader("x-role", "admin"), d);
    expect(outcome(d)).toBe("deny:no-admin");
    decide(table, peerOf("spiffe://td/ns/a/sa/b"), TestRequest.of("GET", "/").withHeader("x-role", "adminx"), d);
    expect(outcome(d)).toBe("allow:all");
  });
  it("TEMPLATE on :path", () => {
    const t = opTable(pred(F_PATH, [tpl("/pkg.Svc/{*}")]));
    expect(hits(t, TestRequest.of("POST", "/pkg.Svc/Get"))).toBe(true);
    expect(hits(t, TestRequest.of("POST", "/pkg.Svc/Get?x"))).toBe(true);
    expect(hits(t, TestRequest.of("POST", "/pkg.Svc/"))).toBe(false);
  });
});

describe("patterns on identity fields", () => {
  it("PRINCIPAL exact, prefix, suffix, present", () => {
    const t = srcTable(pred(F_PRINCIPAL, [ex("spiffe://td/a"), pre("spiffe://corp/"), suf("/sa/admin")]));
    const r = TestRequest.of("GET", "/");
    expect(hits(t, r, "spiffe://td/a")).toBe(true);
    expect(hits(t, r, "spiffe://td/a/b")).toBe(false);
    expect(hits(t, r, "spiffe://corp/x")).toBe(true);
    expect(hits(t, r, "spiffe://other/ns/x/sa/admin")).toBe(true);
    expect(hits(t, r, null)).toBe(false);
    const p = srcTable(pred(F_PRINCIPAL, [any()]));
    expect(hits(p, r, "spiffe://td")).toBe(true);
    expect(hits(p, r, null)).toBe(false);
    expect(hits(p, r, "spiffe://TD")).toBe(false);
  });
  it("TRUST_DOMAIN and ATTRIBUTE", () => {
    const r = TestRequest.of("GET", "/");
    const t = srcTable(pred(F_TD, [ex("prod.example.com")]));
    expect(hits(t, r, "spiffe://prod.example.com/x/y")).toBe(true);
    expect(hits(t, r, "spiffe://prod.example.com")).toBe(true);
    expect(hits(t, r, "spiffe://dev.example.com/x/y")).toBe(false);
    const a = srcTable(attr("app", [ex("orders"), pre("bill")]));
    expect(hits(a, r, "spiffe://td/app/orders")).toBe(true);
    expect(hits(a, r, "spiffe://td/env/prod/app/billing")).toBe(true);
    expect(hits(a, r, "spiffe://td/app/shipping")).toBe(false);
    expect(hits(a, r, "spiffe://td/orders/app")).toBe(false);
    // A repeated key keeps its first value.
    expect(hits(a, r, "spiffe://td/app/shipping/app/orders")).toBe(false);
    expect(hits(a, r, "spiffe://td/app/orders/app/shipping")).toBe(true);
  });
});

function hn(authority: string): string {
  const b = bytesOf(authority);
  const s = new Slice();
  s.set(b.dataStart, b.length);
  hostName(s);
  return String.UTF8.decodeUnsafe(s.ptr, <usize>s.len);
}

describe("hostName", () => {
  it("drops userinfo, the port and one trailing dot; keeps IPv6 brackets", () => {
    expect(hn("api.example.com")).toBe("api.example.com");
    expect(hn("api.example.com:8443")).toBe("api.example.com");
    expect(hn("api.example.com.")).toBe("api.example.com");
    expect(hn("api.example.com.:443")).toBe("api.example.com");
    expect(hn("user:pw@api.example.com:443")).toBe("api.example.com");
    expect(hn("a@b@api.example.com")).toBe("api.example.com");
    expect(hn("[::1]:8443")).toBe("[::1]");
    expect(hn("[::1]")).toBe("[::1]");
    expect(hn("api.example.com:")).toBe("api.example.com");
    expect(hn("")).toBe("");
    expect(hn("..")).toBe(".");
  });
});
