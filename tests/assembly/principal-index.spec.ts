import { decide, decideLinear, Decision } from "../../assembly/engine/decision";
import { indexPredicate, NO_ENTRY } from "../../assembly/engine/principal-index";
import { BodyState } from "../../assembly/engine/request";
import {
  ALLOW, any, attr, AUDIT, clause, ClauseB, DENY, detailsOf, ex, F_HOST, F_METHOD, F_PATH, F_PRINCIPAL, F_TD, header,
  outcome, PatB, peerOf, pre, pred, PredB, programRecord, reasonOf, Rng, rule, SchemaB, shadowsOf, suf, TableB,
  TestRequest, tpl,
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

function randomSources(rng: Rng): ClauseB[] {
  const sources: ClauseB[] = [];
  const ns = rng.below(3);
  for (let c = 0; c < ns; c++) {
    const preds: PredB[] = [];
    const np = rng.below(4);
    for (let p = 0; p < np; p++) preds.push(rng.chance(80) ? identityPred(rng) : requestPred(rng));
    sources.push(clause(preds));
  }
  return sources;
}

function randomOps(rng: Rng): ClauseB[] {
  const ops: ClauseB[] = [];
  const no = rng.below(3);
  for (let c = 0; c < no; c++) {
    const preds: PredB[] = [];
    const np = rng.below(3);
    for (let p = 0; p < np; p++) preds.push(requestPred(rng));
    ops.push(clause(preds));
  }
  return ops;
}

function randomConds(rng: Rng): PredB[] {
  const conds: PredB[] = [];
  if (rng.below(3) == 0) conds.push(rng.chance(50) ? identityPred(rng) : requestPred(rng));
  return conds;
}

function randomAction(rng: Rng): u8 {
  const a = rng.below(10);
  return a < 5 ? ALLOW : a < 8 ? DENY : AUDIT;
}

const FAMILY_VALUES: string[] = ["x", "y", "z", "w"];

/**
 * A run of 2..6 rules that differ only in the one EXACT value of a principal or attribute predicate (the hole,
 * somewhere in a source clause with other predicates or alone), with or without further source clauses shared
 * by every rule of the run. The table builder stores such a run as one family.
 */
function addFamilyRun(rng: Rng, t: TableB, firstId: i32, maxRules: i32): i32 {
  const byAttr = rng.chance(40);
  const key = pick(rng, KEYS);
  const values: string[] = [];
  const want = 2 + rng.below(5);
  for (let tries = 0; tries < 20 && values.length < want; tries++) {
    const v = byAttr ? pick(rng, FAMILY_VALUES) : "spiffe://" + pick(rng, TDS) + randomPath(rng);
    if (!values.includes(v)) values.push(v);
  }
  const n = min(values.length, maxRules);
  const others: PredB[] = [];
  const no = rng.below(3);
  for (let p = 0; p < no; p++) others.push(rng.chance(60) ? identityPred(rng) : requestPred(rng));
  const holeAt = rng.below(others.length + 1);
  const before = rng.below(2);
  const shared = rng.chance(50) ? randomSources(rng) : new Array<ClauseB>(0);
  const ops = randomOps(rng);
  const conds = randomConds(rng);
  const action = randomAction(rng);
  const dry = rng.chance(10);
  for (let i = 0; i < n; i++) {
    const preds: PredB[] = [];
    for (let p = 0; p <= others.length; p++) {
      if (p == holeAt) preds.push(byAttr ? attr(key, [ex(values[i])]) : pred(F_PRINCIPAL, [ex(values[i])]));
      if (p < others.length) preds.push(others[p]);
    }
    const sources: ClauseB[] = [];
    if (before == 1) for (let c = 0; c < shared.length; c++) sources.push(shared[c]);
    sources.push(clause(preds));
    if (before == 0) for (let c = 0; c < shared.length; c++) sources.push(shared[c]);
    t.add(rule("r" + (firstId + i).toString(), action, sources, ops, conds, dry));
  }
  return n;
}

function randomTable(rng: Rng, rules: i32, families: bool = false): TableB {
  const t = new TableB();
  t.defaultKind = <u8>rng.below(3);
  t.defaultAction = t.defaultKind == 2 ? 1 : <u8>rng.below(2);
  let r = 0;
  while (r < rules) {
    if (families && rng.chance(40)) {
      r += addFamilyRun(rng, t, r, rules - r);
      continue;
    }
    t.add(rule("r" + r.toString(), randomAction(rng), randomSources(rng), randomOps(rng), randomConds(rng), rng.chance(10)));
    r++;
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
  it("gives the same decisions with rule families: runs differing in one principal or attribute (randomized)", () => {
    const rng = new Rng(0xfa3117);
    const a = new Decision();
    const b = new Decision();
    let compared = 0;
    let ruleDecisions = 0;
    let familyRows = 0;
    let sharedClauseFamilies = 0;
    let shadowDecisions = 0;
    for (let round = 0; round < 150; round++) {
      const builder = randomTable(rng, 2 + rng.below(30), true);
      const table = builder.load();
      for (let f = 0; f < builder.fams.length; f++) {
        const fb = builder.fams[f];
        if (fb.holeClause < 0 || fb.count < 2) continue;
        familyRows += fb.count;
        if (builder.rules[fb.first].sources.length > 1) sharedClauseFamilies++;
      }
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
        if (a.shadowCount > 0) shadowDecisions++;
      }
    }
    expect(compared).toBe(6000);
    // The generator must exercise families (with and without shared clauses), rule decisions and shadow rules.
    expect(familyRows).toBeGreaterThan(300);
    expect(sharedClauseFamilies).toBeGreaterThan(20);
    expect(ruleDecisions).toBeGreaterThan(1500);
    expect(shadowDecisions).toBeGreaterThan(300);
  });

  it("gives the same decisions with CEL conditions: errors, fail-closed DENY rules, waiting for the body (randomized)", () => {
    // Hand-assembled programs over variables the test request carries (docs/cel.md instruction table):
    const programs: Uint8Array[] = [
      // request.headers['x-h'] == 'a' (no such key without the header)
      programRecord(2, ["s:x-h", "s:a"], [0x01, 0, 0, 0x03, 6, 0x01, 1, 0, 0x12, 0x3f]),
      // connection.sni == 's1' (no such attribute without SNI)
      programRecord(2, ["s:s1"], [0x02, 9, 0x01, 0, 0, 0x12, 0x3f]),
      // source.attributes.app == 'x' (an error without an identity)
      programRecord(2, ["s:app", "s:x"], [0x01, 0, 0, 0x03, 2, 0x01, 1, 0, 0x12, 0x3f]),
      // true
      programRecord(1, ["b:1"], [0x01, 0, 0, 0x3f]),
      // 7: not a bool
      programRecord(1, ["i:7"], [0x01, 0, 0, 0x3f]),
      // request.json.k == 'v' (reads the body)
      programRecord(2, ["s:v"], [0x06, 0, 0, 0x01, 0, 0, 0x12, 0x3f]),
      // false
      programRecord(1, ["b:0"], [0x01, 0, 0, 0x3f]),
    ];
    const BODIES: string[] = ["{\"k\":\"v\"}", "{\"k\":\"w\"}", "{\"k\":", "{}"];
    const rng = new Rng(0xce1);
    const a = new Decision();
    const b = new Decision();
    let compared = 0;
    let needsBody = 0;
    let errorReasons = 0;
    let denyByError = 0;
    let causes = 0;
    for (let round = 0; round < 150; round++) {
      const builder = randomTable(rng, 2 + rng.below(25), true);
      builder.programs = programs;
      builder.jsonKeys = ["k"];
      builder.maxBodyBytes = 1024;
      // Runs of rules keep the previous rule's condition often, so families with conditions form.
      let last = -1;
      for (let r = 0; r < builder.rules.length; r++) {
        if (!rng.chance(70)) last = rng.chance(40) ? -1 : rng.below(programs.length);
        builder.rules[r].expr = last;
      }
      const table = builder.load();
      for (let q = 0; q < 40; q++) {
        const peerId = randomPeer(rng);
        const req = randomRequest(rng);
        if (rng.chance(60)) req.withSni(rng.chance(50) ? "s1" : "s2");
        if (rng.chance(70)) {
          req.withHeader("content-type", "application/json");
          const k = rng.below(5);
          req.withBody(k == 0 ? BodyState.PENDING : k == 1 ? BodyState.ABSENT : k == 2 ? BodyState.TOO_LARGE : BodyState.PRESENT, pick(rng, BODIES));
        }
        const p1 = peerOf(peerId);
        const p2 = peerOf(peerId);
        decide(table, p1, req, a);
        const got = outcome(a) + " [" + shadowsOf(a) + "] " + reasonOf(a, p1) + " " + detailsOf(a, p1);
        decideLinear(table, p2, req, b);
        const want = outcome(b) + " [" + shadowsOf(b) + "] " + reasonOf(b, p2) + " " + detailsOf(b, p2);
        expect(got).toBe(want, "round " + round.toString() + " request " + q.toString());
        compared++;
        if (outcome(a) == "needs_body") needsBody++;
        if (reasonOf(a, p1).includes("condition failed")) errorReasons++;
        if (a.denyError) denyByError++;
        if (detailsOf(a, p1).includes("default:")) causes++;
      }
    }
    expect(compared).toBe(6000);
    // Every path of a condition's outcome must be exercised.
    expect(needsBody).toBeGreaterThan(40);
    expect(errorReasons).toBeGreaterThan(200);
    expect(denyByError).toBeGreaterThan(100);
    expect(causes).toBeGreaterThan(50);
  });
});
