import { decide, decideLinear, Decision, DecisionKind } from "../../assembly/engine/decision";
import { Refusal } from "../../assembly/engine/identity";
import { ALLOW, any, clause, detailsOf, ex, F_METHOD, F_PATH, outcome, peerOf, pre, pred, reasonOf, rule, TableB, TestRequest } from "./helpers";

const d = new Decision();
const peer = "spiffe://td/ns/a/sa/b";

describe("refusals", () => {
  it("a table that reads the path refuses an ambiguous path, unless allowed", () => {
    const t = new TableB();
    t.add(rule("public", ALLOW, [], [clause([pred(F_PATH, [pre("/public/")])])]));
    const table = t.load();
    const req = TestRequest.of("GET", "/public/..%2Fadmin/secret.txt");
    decide(table, peerOf(peer), req, d);
    expect(d.kind).toBe(DecisionKind.REFUSED);
    expect(d.allow).toBe(false);
    expect(detailsOf(d, peerOf(peer))).toBe("spiffe_authz_denied[ambiguous_path]");
    expect(reasonOf(d, peerOf(peer)).startsWith("refused: the path holds")).toBe(true);
    decideLinear(table, peerOf(peer), req, d);
    expect(d.kind).toBe(DecisionKind.REFUSED);
    decide(table, peerOf(peer), req, d, Refusal.NONE, true);
    expect(outcome(d)).toBe("allow:public");
    decide(table, peerOf(peer), TestRequest.of("GET", "/public/a.txt"), d);
    expect(outcome(d)).toBe("allow:public");
  });
  it("a table that never reads the path does not look at it", () => {
    const t = new TableB();
    t.add(rule("gets", ALLOW, [], [clause([pred(F_METHOD, [ex("GET")])])]));
    const table = t.load();
    decide(table, peerOf(peer), TestRequest.of("GET", "/a/../b"), d);
    expect(outcome(d)).toBe("allow:gets");
  });
  it("an identity refusal denies before any rule, with its code", () => {
    const t = new TableB();
    t.add(rule("all", ALLOW, []));
    const table = t.load();
    decide(table, peerOf(peer), TestRequest.of("GET", "/"), d, Refusal.MULTIPLE_URI_SANS);
    expect(d.kind).toBe(DecisionKind.REFUSED);
    expect(detailsOf(d, peerOf(peer))).toBe("spiffe_authz_denied[multiple_uri_sans]");
    decide(table, peerOf(peer), TestRequest.of("GET", "/"), d, Refusal.XFCC_MISSING);
    expect(detailsOf(d, peerOf(peer))).toBe("spiffe_authz_denied[xfcc_missing]");
    decide(table, peerOf(peer), TestRequest.of("GET", "/"), d, Refusal.XFCC_MALFORMED);
    expect(detailsOf(d, peerOf(peer))).toBe("spiffe_authz_denied[xfcc_malformed]");
    decide(null, peerOf(peer), TestRequest.of("GET", "/"), d, Refusal.XFCC_MALFORMED);
    expect(outcome(d)).toBe("deny:no_table");
  });
});
