import { decide, decideLinear, Decision } from "../../assembly/engine/decision";
import { indexPredicate, NO_ENTRY } from "../../assembly/engine/index";
import {
  ALLOW, any, attr, AUDIT, clause, ClauseB, DENY, ex, F_HOST, F_METHOD, F_PATH, F_PRINCIPAL, F_TD, header, outcome,
  PatB, peerOf, pre, pred, PredB, reasonOf, Rng, rule, SchemaB, shadowsOf, suf, TableB, TestRequest, tpl,
} from "./helpers";

const TDS: string[] = ["a.td", "b.td", "c.td"];
const KEYS: string[] = ["app", "env", "ns"];
const VALUES: string[] = ["x", "y", "z"];
const METHODS: string[] = ["GET", "POST", "PUT"];
const PATHS: string[] = ["/", "/api/x", "/api/y/z", "/admin", "/pkg.Svc/Get"];
const HOSTS: string[] = ["a.example.com", "B.example.com", "c.other"];

function pick(rng: Rng, a: string[]): string {
  return a[rng.below(a.length)];
}

function randomPath(rng: Rng): string {
  let s = "";
  const pairs = rng.below(4);
  for (let i = 0; i < pairs; i++) s += "/" + pick(rng, KEYS) + "/" + pick(rng, VALUES);
  if (rng.chance(15)) s += "/" + pick(rng, VALUES);
  return s;
}

function randomPeer(rng: Rng): string | null {
  const k = rng.below(10);
  if (k == 0) return null;
  if (k == 1) return "spiffe://" + pick(rng, TDS) + "/bad/"; // invalid
  return "spiffe://" + pick(rng, TDS) + randomPath(rng);
}

function patterns(rng: Rng, field: u8): PatB[] {
  const out: PatB[] = [];
  const n = 1 + rng.below(3);
  for (let i = 0; i < n; i++) {
    const kind = rng.below(10);
    let v = "";
    if (field == F_PRINCIPAL) v = "spiffe://" + pick(rng, TDS) + randomPath(rng);
    else if (field == F_TD) v = pick(rng, TDS);
    else if (field == F_METHOD) v = pick(rng, METHODS);
    else if (field == F_PATH) v = pick(rng, PATHS);
    else if (field == F_HOST) v = pick(rng, HOSTS);
    else v = pick(rng, VALUES);
    if (kind < 6) out.push(ex(v));
    else if (kind == 6) out.push(pre(v.substring(0, 1 + rng.below(v.length))));
    else if (kind == 7) out.push(suf(v.substring(rng.below(v.length))));
    else if (kind == 8) out.push(any());
    else if (field == F_PATH) out.push(tpl(rng.chance(50) ? "/api/{*}" : "/api/{**}"));
    else out.push(ex(v));
  }
  return out;
}

function identityPred(rng: Rng): PredB {
  const f = rng.below(3);
  const negate = rng.chance(15);
  if (f == 0) return pred(F_PRINCIPAL, patterns(rng, F_PRINCIPAL), negate);
  if (f == 1) return pred(F_TD, patterns(rng, F_TD), negate);
  return attr(pick(rng, KEYS), patterns(rng, 3), negate);
}

function requestPred(rng: Rng): PredB {
  const f = rng.below(4);
  const negate = rng.chance(15);
  if (f == 0) return pred(F_METHOD, patterns(rng, F_METHOD), negate);
  if (f == 1) return pred(F_PATH, patterns(rng, F_PATH), negate);
  if (f == 2) return pred(F_HOST, patterns(rng, F_HOST), negate);
  return header("x-h", patterns(rng, 8), negate);
}

function randomTable(rng: Rng, rules: i32): TableB {
  const t = new TableB();
  t.defaultKind = <u8>rng.below(3);
  t.defaultAction = t.defaultKind == 2 ? 1 : <u8>rng.below(2);
  for (let r = 0; r < rules; r++) {
    const sources: ClauseB[] = [];
    const ns = rng.below(3);
    for (let c = 0; c < ns; c++) {
      const preds: PredB[] = [];
      const np = rng.below(4);
      for (let p = 0; p < np; p++) preds.push(rng.chance(80) ? identityPred(rng) : requestPred(rng));
      sources.push(clause(preds));
    }
    const ops: ClauseB[] = [];
    const no = rng.below(3);
    for (let c = 0; c < no; c++) {
      const preds: PredB[] = [];
      const np = rng.below(3);
      for (let p = 0; p < np; p++) preds.push(requestPred(rng));
      ops.push(clause(preds));
    }
    const conds: PredB[] = [];
    const nc = rng.below(3) == 0 ? 1 : 0;
    for (let p = 0; p < nc; p++) conds.push(rng.chance(50) ? identityPred(rng) : requestPred(rng));
    const a = rng.below(10);
    const action = a < 5 ? ALLOW : a < 8 ? DENY : AUDIT;
    t.add(rule("r" + r.toString(), action, sources, ops, conds, rng.chance(10)));
  }
  if (rng.chance(40)) t.schemas.push(new SchemaB("a.td", rng.chance(50) ? ["app"] : ["app", "env"]));
  return t;
}

function randomRequest(rng: Rng): TestRequest {
  const req = TestRequest.of(rng.chance(90) ? pick(rng, METHODS) : null, rng.chance(90) ? pick(rng, PATHS) + (rng.chance(20) ? "?q" : "") : null);
  if (rng.chance(80)) req.withHost(pick(rng, HOSTS));
  if (rng.chance(50)) req.withHeader("x-h", pick(rng, VALUES));
  return req;
}

describe("PrincipalIndex", () => {
  it("picks index predicates by §5: PRINCIPAL, else ATTRIBUTE, else TRUST_DOMAIN, positive and all-exact", () => {
    const t = new TableB();
    t.add(rule("r0", ALLOW, [clause([pred(F_TD, [ex("a.td")]), attr("app", [ex("x")]), pred(F_PRINCIPAL, [ex("spiffe://a.td/app/x")])])]));
    t.add(rule("r1", ALLOW, [clause([pred(F_PRINCIPAL, [pre("spiffe://")]), pred(F_TD, [ex("a.td")])])]));
    t.add(rule("r2", ALLOW, [clause([attr("app", [ex("x")], true), pred(F_METHOD, [ex("GET")])])]));
    t.add(rule("r3", ALLOW, []));
    const table = t.load();
    expect(indexPredicate(table, 0)).toBe(2);
    expect(indexPredicate(table, 1)).toBe(4);
    expect(indexPredicate(table, 2)).toBe(NO_ENTRY);
    const ix = table.index!;
    expect(ix.keyCount).toBe(2);
    expect(ix.postCount).toBe(2);
    expect(ix.scanCount).toBe(2);
  });
  it("shares keys between clauses and still finds every rule", () => {
    const t = new TableB();
    for (let i = 0; i < 50; i++) {
      t.add(rule("r" + i.toString(), i % 2 == 0 ? ALLOW : AUDIT, [clause([attr("app", [ex("x"), ex("y")])])]));
    }
    const table = t.load();
    expect(table.index!.keyCount).toBe(2);
    expect(table.index!.postCount).toBe(100);
    const d = new Decision();
    decide(table, peerOf("spiffe://td/app/y"), TestRequest.of("GET", "/"), d);
    expect(outcome(d)).toBe("allow:r0");
    expect(d.shadowCount).toBe(25);
  });
  it("gives the same decisions as evaluating every rule (randomized, seeded)", () => {
    const rng = new Rng(0x5eed);
    const a = new Decision();
    const b = new Decision();
    let compared = 0;
    let ruleDecisions = 0;
    for (let round = 0; round < 150; round++) {
      const table = randomTable(rng, 1 + rng.below(25)).load();
      for (let q = 0; q < 40; q++) {
        const peerId = randomPeer(rng);
        const req = randomRequest(rng);
        const p1 = peerOf(peerId);
        const p2 = peerOf(peerId);
        decide(table, p1, req, a);
        const got = outcome(a) + " [" + shadowsOf(a) + "] " + reasonOf(a, p1);
        decideLinear(table, p2, req, b);
        const want = outcome(b) + " [" + shadowsOf(b) + "] " + reasonOf(b, p2);
        expect(got).toBe(want, "round " + round.toString() + " request " + q.toString());
        compared++;
        if (a.rule != NO_ENTRY) ruleDecisions++;
      }
    }
    expect(compared).toBe(6000);
    // The generator must exercise rule decisions, not only defaults.
    expect(ruleDecisions).toBeGreaterThan(1500);
  });
});
