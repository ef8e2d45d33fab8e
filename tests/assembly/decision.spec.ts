import { decide, decideLinear, Decision, DecisionKind } from "../../assembly/engine/decision";
import { writeDenyDetails, writeShadowLine } from "../../assembly/engine/explain";
import { Slice } from "../../assembly/engine/bytes";
import { ByteWriter } from "../../assembly/engine/writer";
import {
  ALLOW, any, attr, AUDIT, bytesOf, clause, DENY, detailsOf, ex, explainOf, F_METHOD, F_PATH, F_PRINCIPAL, F_TD,
  outcome, peerOf, peerOfBytes, pre, pred, programRecord, reasonOf, rule, SchemaB, shadowRules, shadowsOf, TableB,
  TestRequest,
} from "./helpers";
import { BodyState } from "../../assembly/engine/request";

const GET = TestRequest.of("GET", "/x");

function run(t: TableB, peer: string | null, req: TestRequest = GET): string {
  const d = new Decision();
  decide(t.load(), peerOf(peer), req, d);
  return outcome(d);
}

function reason(t: TableB, peer: string | null, req: TestRequest = GET): string {
  const d = new Decision();
  const p = peerOf(peer);
  decide(t.load(), p, req, d);
  return reasonOf(d, p);
}

describe("precedence", () => {
  it("any matching DENY wins over ALLOW, the lowest-index one is reported", () => {
    const t = new TableB();
    t.add(rule("allow-all", ALLOW, []));
    t.add(rule("deny-get", DENY, [], [clause([pred(F_METHOD, [ex("GET")])])]));
    t.add(rule("deny-x", DENY, [], [clause([pred(F_PATH, [ex("/x")])])]));
    expect(run(t, "spiffe://td/a/b")).toBe("deny:deny-get");
    expect(run(t, "spiffe://td/a/b", TestRequest.of("POST", "/x"))).toBe("deny:deny-x");
    expect(run(t, "spiffe://td/a/b", TestRequest.of("POST", "/y"))).toBe("allow:allow-all");
  });
  it("the lowest-index matching ALLOW is reported", () => {
    const t = new TableB();
    t.add(rule("a1", ALLOW, [clause([pred(F_TD, [ex("other")])])]));
    t.add(rule("a2", ALLOW, [clause([attr("app", [ex("x")])])]));
    t.add(rule("a3", ALLOW, [clause([pred(F_PRINCIPAL, [ex("spiffe://td/app/x")])])]));
    expect(run(t, "spiffe://td/app/x")).toBe("allow:a2");
  });
  it("default actions and their reasons", () => {
    const t = new TableB();
    t.add(rule("a", ALLOW, [clause([attr("app", [ex("x")])])]));
    expect(run(t, "spiffe://td/app/y")).toBe("deny:default");
    expect(reason(t, "spiffe://td/app/y")).toBe("no ALLOW rule matched");
    t.defaultKind = 1;
    t.defaultAction = 0;
    expect(run(t, "spiffe://td/app/y")).toBe("allow:default");
    expect(reason(t, "spiffe://td/app/y")).toBe("no rule matched; default action allow");
    t.defaultAction = 1;
    expect(reason(t, "spiffe://td/app/y")).toBe("no rule matched; default action deny");
    const empty = new TableB();
    empty.defaultKind = 0;
    empty.defaultAction = 0;
    expect(run(empty, null)).toBe("allow:default");
    expect(reason(empty, null)).toBe("no rule matched; default action allow; peer has no SPIFFE ID (no client certificate)");
  });
  it("AUDIT and dry-run rules never decide but are reported, in rule order", () => {
    const t = new TableB();
    t.add(rule("audit-1", AUDIT, []));
    t.add(rule("dry-deny", DENY, [], [], [], true));
    t.add(rule("dry-allow", ALLOW, [], [], [], true));
    t.add(rule("audit-2", AUDIT, [clause([attr("app", [ex("x")])])]));
    const table = t.load();
    const d = new Decision();
    decide(table, peerOf("spiffe://td/app/x"), GET, d);
    expect(outcome(d)).toBe("deny:default");
    expect(shadowsOf(d)).toBe("audit-1,dry-deny,dry-allow,audit-2");
    decide(table, peerOf("spiffe://td/app/y"), GET, d);
    expect(shadowsOf(d)).toBe("audit-1,dry-deny,dry-allow");
  });
  it("with no table, denies", () => {
    const d = new Decision();
    const p = peerOf("spiffe://td/a/b");
    decide(null, p, GET, d);
    expect(outcome(d)).toBe("deny:no_table");
    expect(d.kind).toBe(DecisionKind.NO_TABLE);
    expect(reasonOf(d, p)).toBe("no policy table loaded");
  });
});

describe("identity fields without an identity", () => {
  it("negate = 0 never matches; negate = 1 matches only in DENY rules", () => {
    const t = new TableB();
    t.add(rule("deny-not-trusted", DENY, [clause([pred(F_PRINCIPAL, [pre("spiffe://trusted/")], true)])]));
    t.add(rule("allow-not-evil", ALLOW, [clause([pred(F_PRINCIPAL, [ex("spiffe://trusted/evil")], true)])]));
    expect(run(t, "spiffe://trusted/good")).toBe("allow:allow-not-evil");
    expect(run(t, "spiffe://other/x")).toBe("deny:deny-not-trusted");
    expect(run(t, null)).toBe("deny:deny-not-trusted");
    expect(run(t, "https://trusted/good")).toBe("deny:deny-not-trusted");
    const a = new TableB();
    a.add(rule("allow-not-evil", ALLOW, [clause([attr("app", [ex("evil")], true)])]));
    expect(run(a, "spiffe://td/app/good")).toBe("allow:allow-not-evil");
    expect(run(a, "spiffe://td/team/x")).toBe("allow:allow-not-evil"); // absent attribute, valid identity
    expect(run(a, null)).toBe("deny:default");
    expect(run(a, "spiffe://td/app/good/")).toBe("deny:default");
  });
  it("audit rules behave like ALLOW rules for negated identity predicates", () => {
    const t = new TableB();
    t.add(rule("audit-not-x", AUDIT, [clause([pred(F_TD, [ex("x")], true)])]));
    const table = t.load();
    const d = new Decision();
    decide(table, peerOf(null), GET, d);
    expect(d.shadowCount).toBe(0);
    decide(table, peerOf("spiffe://y"), GET, d);
    expect(d.shadowCount).toBe(1);
  });
  it("request-only rules still match without an identity (and no peer note is added)", () => {
    const t = new TableB();
    t.add(rule("health", ALLOW, [], [clause([pred(F_PATH, [ex("/healthz")])])]));
    expect(run(t, null, TestRequest.of("GET", "/healthz"))).toBe("allow:health");
    expect(reason(t, null, TestRequest.of("GET", "/healthz"))).toBe("allowed by rule \"health\"");
    expect(reason(t, null, TestRequest.of("GET", "/other"))).toBe("no ALLOW rule matched; peer has no SPIFFE ID (no client certificate)");
    expect(reason(t, "spiffe://td/a/", TestRequest.of("GET", "/other"))).toBe("no ALLOW rule matched; peer SPIFFE ID is invalid: path cannot have a trailing slash");
  });
});

function schemaTable(): TableB {
  const t = new TableB();
  t.add(rule("allow-td", ALLOW, [clause([pred(F_TD, [ex("strict.td"), ex("loose.td")])])]));
  t.add(rule("deny-not-td", DENY, [clause([pred(F_TD, [ex("strict.td"), ex("loose.td")], true)])]));
  t.schemas.push(new SchemaB("strict.td", ["app", "env"]));
  return t;
}

describe("schemas", () => {
  it("an identity that satisfies its schema is used", () => {
    expect(run(schemaTable(), "spiffe://strict.td/app/a/env/prod")).toBe("allow:allow-td");
    expect(run(schemaTable(), "spiffe://strict.td/env/prod/app/a/extra/1")).toBe("allow:allow-td");
    expect(run(schemaTable(), "spiffe://loose.td/whatever")).toBe("allow:allow-td");
  });
  it("an identity that fails its schema has no identity fields (fail closed) and the reason says why", () => {
    const t = schemaTable();
    expect(run(t, "spiffe://strict.td/app/a")).toBe("deny:deny-not-td");
    const u = new TableB();
    u.add(rule("allow-td", ALLOW, [clause([pred(F_TD, [ex("strict.td")])])]));
    u.schemas.push(new SchemaB("strict.td", ["app", "env"]));
    expect(reason(u, "spiffe://strict.td/app/a")).toBe("no ALLOW rule matched; peer SPIFFE ID does not satisfy the schema of trust domain \"strict.td\": missing attribute \"env\"");
    expect(reason(u, "spiffe://strict.td/app/a/env/p/app/b")).toBe("no ALLOW rule matched; peer SPIFFE ID does not satisfy the schema of trust domain \"strict.td\": attribute \"app\" repeated");
    expect(reason(u, "spiffe://strict.td/app/a/env/p/x")).toBe("no ALLOW rule matched; peer SPIFFE ID does not satisfy the schema of trust domain \"strict.td\": odd number of path segments");
    expect(reason(u, "spiffe://strict.td")).toBe("no ALLOW rule matched; peer SPIFFE ID does not satisfy the schema of trust domain \"strict.td\": missing attribute \"app\"");
    let many = "spiffe://strict.td/app/a/env/p";
    for (let i = 0; i < 63; i++) many += "/k" + i.toString() + "/v";
    expect(reason(u, many)).toBe("no ALLOW rule matched; peer SPIFFE ID does not satisfy the schema of trust domain \"strict.td\": more than 64 attributes");
    // Without a schema, extra pairs are ignored and the identity is used.
    expect(run(schemaTable(), "spiffe://loose.td" + many.substring(18))).toBe("allow:allow-td");
  });
});

describe("explain JSON and output lines", () => {
  it("describes allow, deny and peers exactly", () => {
    const t = new TableB();
    t.add(rule("allow-orders", ALLOW, [clause([attr("app", [ex("orders")])])]));
    const table = t.load();
    const d = new Decision();
    let p = peerOf("spiffe://td/ns/shop/app/orders/x");
    decide(table, p, GET, d);
    expect(explainOf(d, p)).toBe(
      "{\"decision\":\"allow\",\"rule\":\"allow-orders\",\"reason\":\"allowed by rule \\\"allow-orders\\\"\"," +
      "\"tableHash\":\"0123456789abcdef\",\"peer\":{\"valid\":true,\"id\":\"spiffe://td/ns/shop/app/orders/x\"," +
      "\"trustDomain\":\"td\",\"path\":\"/ns/shop/app/orders/x\",\"attributes\":{\"ns\":\"shop\",\"app\":\"orders\"}}," +
      "\"principalSource\":\"certificate\",\"reasonCode\":\"allow_rule\",\"certificate\":false,\"audit\":[],\"dryRun\":[]}",
    );
    p = peerOf("spiffe://td");
    decide(table, p, GET, d);
    expect(explainOf(d, p)).toBe(
      "{\"decision\":\"deny\",\"rule\":null,\"reason\":\"no ALLOW rule matched\",\"tableHash\":\"0123456789abcdef\"," +
      "\"peer\":{\"valid\":true,\"id\":\"spiffe://td\",\"trustDomain\":\"td\",\"path\":\"\",\"attributes\":{}},\"principalSource\":\"certificate\",\"reasonCode\":\"no_allow_rule\",\"certificate\":false,\"audit\":[],\"dryRun\":[]}",
    );
    p = peerOf(null);
    decide(null, p, GET, d);
    expect(explainOf(d, p)).toBe(
      "{\"decision\":\"deny\",\"rule\":null,\"reason\":\"no policy table loaded\",\"tableHash\":null," +
      "\"peer\":{\"valid\":false,\"id\":null,\"trustDomain\":null,\"path\":null,\"attributes\":{}},\"principalSource\":null,\"reasonCode\":\"no_table\",\"certificate\":false,\"audit\":[],\"dryRun\":[]}",
    );
    const pending = new Decision();
    expect(explainOf(pending, p)).toBe(
      "{\"decision\":\"pending\",\"rule\":null,\"reason\":\"no decision yet\",\"tableHash\":null," +
      "\"peer\":{\"valid\":false,\"id\":null,\"trustDomain\":null,\"path\":null,\"attributes\":{}},\"principalSource\":null,\"reasonCode\":\"pending\",\"certificate\":false,\"audit\":[],\"dryRun\":[]}",
    );
  });
  it("escapes invalid IDs and replaces ill-formed UTF-8 like TextDecoder", () => {
    const raw = new Uint8Array(12);
    const src: u8[] = [0x73, 0x22, 0x5c, 0x0a, 0x01, 0xff, 0xc3, 0x28, 0xe2, 0x82, 0xe2, 0x82];
    for (let i = 0; i < 12; i++) raw[i] = src[i];
    const p = peerOfBytes(raw);
    const d = new Decision();
    decide(null, p, GET, d);
    // s " \ \n \x01 <ff> <c3>( <e2 82><e2 82>: each maximal subpart is one U+FFFD.
    expect(explainOf(d, p)).toBe(
      "{\"decision\":\"deny\",\"rule\":null,\"reason\":\"no policy table loaded\",\"tableHash\":null," +
      "\"peer\":{\"valid\":false,\"id\":\"s\\\"\\\\\\n\\u0001\uFFFD\uFFFD(\uFFFD\uFFFD\",\"trustDomain\":null,\"path\":null,\"attributes\":{}}," +
      "\"principalSource\":\"certificate\",\"reasonCode\":\"no_table\",\"certificate\":false,\"audit\":[],\"dryRun\":[]}",
    );
    const e = peerOf("spiffe://td/\u00e9t\u00e9");
    decide(null, e, GET, d);
    expect(explainOf(d, e).includes("\"id\":\"spiffe://td/\u00e9t\u00e9\"")).toBe(true);
  });
  it("writes response details and shadow log lines", () => {
    const t = new TableB();
    t.add(rule("deny-x", DENY, [], [clause([pred(F_PATH, [pre("/x")])])]));
    t.add(rule("audit", AUDIT, []));
    t.add(rule("dry", ALLOW, [], [], [], true));
    const table = t.load();
    const d = new Decision();
    const p = peerOfBytes(bytesOf("spiffe://td/a b\n"));
    decide(table, p, TestRequest.of("GET", "/x?secret"), d);
    const w = new ByteWriter(16);
    writeDenyDetails(w, d, p);
    expect(w.toString()).toBe("spiffe_authz_denied[deny-x]");
    const m = new Slice();
    const path = new Slice();
    const mb = bytesOf("GET");
    const pb = bytesOf("/x");
    m.set(mb.dataStart, mb.length);
    path.set(pb.dataStart, pb.length);
    w.reset();
    writeShadowLine(w, table, shadowRules(d)[0], d, p, m, true, path, true);
    expect(w.toString()).toBe("spiffe-authz audit: rule=audit peer=spiffe://td/a\\x20b\\x0a method=GET path=/x decision=deny");
    w.reset();
    writeShadowLine(w, table, shadowRules(d)[1], d, p, m, false, path, false);
    expect(w.toString()).toBe("spiffe-authz dry-run: rule=dry would allow");
    const none = new Decision();
    decide(t.load(), peerOf(null), TestRequest.of("GET", "/y"), none);
    w.reset();
    writeShadowLine(w, none.table!, shadowRules(none)[0], none, peerOf(null), m, false, path, false);
    expect(w.toString()).toBe("spiffe-authz audit: rule=audit peer=- method=- path=- decision=deny");
    w.reset();
    writeDenyDetails(w, none, peerOf(null));
    expect(w.toString()).toBe("spiffe_authz_denied[default:no_client_certificate]");
    decide(t.load(), peerOf("spiffe://td/ok"), TestRequest.of("GET", "/y"), none);
    w.reset();
    writeDenyDetails(w, none, peerOf("spiffe://td/ok"));
    expect(w.toString()).toBe("spiffe_authz_denied[default]");
    decide(null, peerOf(null), GET, none);
    w.reset();
    writeDenyDetails(w, none, peerOf(null));
    expect(w.toString()).toBe("spiffe_authz_denied[no_table]");
  });
});

describe("laziness", () => {
  it("reads only the request fields some rule needs", () => {
    const t = new TableB();
    t.add(rule("by-id", ALLOW, [clause([pred(F_PRINCIPAL, [ex("spiffe://td/a")])])]));
    const req = TestRequest.of("GET", "/");
    const d = new Decision();
    decide(t.load(), peerOf("spiffe://td/a"), req, d);
    expect(outcome(d)).toBe("allow:by-id");
    expect(req.calls).toBe(0);
  });
});

// request.json.k == 'v'; and 7 (not a bool)
const JSON_K = programRecord(2, ["s:v"], [0x06, 0, 0, 0x01, 0, 0, 0x12, 0x3f]);
const SEVEN = programRecord(1, ["i:7"], [0x01, 0, 0, 0x3f]);

/** A table of rules without sources, each [action, program index or -1]. */
function condTable(rules: i32[][]): TableB {
  const t = new TableB();
  t.programs = [JSON_K, SEVEN];
  t.jsonKeys = ["k"];
  t.maxBodyBytes = 64;
  for (let i = 0; i < rules.length; i++) t.add(rule("r" + i.toString(), <u8>rules[i][0], []).withExpr(rules[i][1]));
  return t;
}

function jsonRequest(state: BodyState, text: string = ""): TestRequest {
  return TestRequest.of("POST", "/").withHeader("content-type", "application/json").withBody(state, text);
}

describe("conditions", () => {
  it("an ALLOW rule's failure is kept for the reason and, unless the input was merely absent, the details", () => {
    const t = condTable([[ALLOW, 0]]);
    const d = new Decision();
    const p = peerOf(null);
    decide(t.load(), p, jsonRequest(BodyState.PRESENT, "{\"k\":"), d);
    expect(reasonOf(d, p)).toBe("no ALLOW rule matched; rule \"r0\" condition failed: cannot read the request body: unexpected end of json at byte 5; peer has no SPIFFE ID (no client certificate)");
    expect(detailsOf(d, p)).toBe("spiffe_authz_denied[default:invalid_json]");
    decide(t.load(), p, jsonRequest(BodyState.TOO_LARGE), d);
    expect(detailsOf(d, p)).toBe("spiffe_authz_denied[default:body_too_large]");
    // An absent input explains nothing beyond the default; the missing identity does.
    decide(t.load(), p, jsonRequest(BodyState.ABSENT), d);
    expect(detailsOf(d, p)).toBe("spiffe_authz_denied[default:no_client_certificate]");
    const id = peerOf("spiffe://td/a");
    decide(t.load(), id, jsonRequest(BodyState.ABSENT), d);
    expect(detailsOf(d, id)).toBe("spiffe_authz_denied[default]");
    decide(t.load(), p, jsonRequest(BodyState.PRESENT, "{}"), d);
    expect(reasonOf(d, p)).toBe("no ALLOW rule matched; rule \"r0\" condition failed: no such key: 'k'; peer has no SPIFFE ID (no client certificate)");
    expect(detailsOf(d, p)).toBe("spiffe_authz_denied[default:no_client_certificate]");
  });

  it("a DENY rule whose condition fails matches and says why; a non-bool value is a failure", () => {
    const t = condTable([[DENY, 1]]);
    const d = new Decision();
    const p = peerOf(null);
    decide(t.load(), p, GET, d);
    expect(outcome(d)).toBe("deny:r0");
    expect(reasonOf(d, p)).toBe("denied by rule \"r0\": condition error: condition value is int, not bool");
    expect(detailsOf(d, p)).toBe("spiffe_authz_denied[r0]");
  });

  it("waits for the body only while a waiting condition could change the decision", () => {
    const d = new Decision();
    const p = peerOf(null);
    const pending = jsonRequest(BodyState.PENDING);
    // A waiting DENY rule before any match: wait.
    decide(condTable([[DENY, 0], [ALLOW, -1]]).load(), p, pending, d);
    expect(outcome(d)).toBe("needs_body");
    // A DENY rule already matched below the waiting one: decided.
    decide(condTable([[DENY, -1], [DENY, 0]]).load(), p, pending, d);
    expect(outcome(d)).toBe("deny:r0");
    // A waiting ALLOW rule after a matched DENY can change nothing.
    decide(condTable([[ALLOW, 0], [DENY, -1]]).load(), p, pending, d);
    expect(outcome(d)).toBe("deny:r1");
    // A waiting ALLOW rule below the matching ALLOW: wait; above it: decided.
    decide(condTable([[ALLOW, 0], [ALLOW, -1]]).load(), p, pending, d);
    expect(outcome(d)).toBe("needs_body");
    decide(condTable([[ALLOW, -1], [ALLOW, 0]]).load(), p, pending, d);
    expect(outcome(d)).toBe("allow:r0");
    // An AUDIT rule waiting: its log line depends on the body.
    decide(condTable([[ALLOW, -1], [AUDIT, 0]]).load(), p, pending, d);
    expect(outcome(d)).toBe("needs_body");
    // A body of another kind is never read: nothing to wait for.
    decide(condTable([[ALLOW, 0]]).load(), p, TestRequest.of("POST", "/").withHeader("content-type", "text/plain").withBody(BodyState.PENDING), d);
    expect(outcome(d)).toBe("deny:default");
  });
});
