// `compile --emit rbac-matcher`: the indexed form of Envoy's RBAC filter. Shape (a map keyed by exact SPIFFE IDs,
// rules in table order, one filter per action), the refusals naming the rule and the reason, and the CLI. That the
// emitted filters decide like the table in a real Envoy is tests/integration/rbac-emit.test.ts.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { parse } from "yaml";
import { runCompile } from "../../src/cli/compile.ts";
import { RbacEmitError } from "../../src/compiler/emit/rbac.ts";
import {
  MAX_REQUEST_GROUPS, MULTIPLE_URI_SANS, NO_MATCH_NAME, RbacMatcherEmitError, rbacMatcherFilters, type MatcherLayout,
} from "../../src/compiler/emit/rbac-matcher.ts";
import { compileYaml, istio } from "./support/helpers.ts";

type Obj = Record<string, any>;

const policy = (rules: string, extra = ""): string =>
  `apiVersion: spiffe-authz.dev/v1\nkind: AuthzPolicy\nmetadata: {name: p}\nspec:\n${extra}  rules:\n${rules}`;

const filtersOf = (rules: string, extra = "", layout: MatcherLayout = "by-principal"): Obj[] =>
  rbacMatcherFilters(compileYaml(policy(rules, extra)).ir, layout) as Obj[];

/** The rule names an on_match leads to, in order (a direct action, or a matcher_list's entries then its on_no_match). */
function outcomes(onMatch: Obj): string[] {
  if (onMatch.action) return [`${onMatch.action.typed_config.action}:${onMatch.action.name}`];
  const m = onMatch.matcher;
  return [...m.matcher_list.matchers.flatMap((x: Obj) => outcomes(x.on_match)), ...outcomes(m.on_no_match)];
}

function refusals(rules: string, extra = ""): string[] {
  try {
    filtersOf(rules, extra);
  } catch (e) {
    assert.ok(e instanceof RbacMatcherEmitError, String(e));
    assert.ok(e instanceof RbacEmitError, "the CLI and the benchmark catch both forms' refusals alike");
    return e.problems;
  }
  assert.fail("expected the emitter to refuse");
}

const A = "spiffe://example.org/ns/a/sa/one";
const B = "spiffe://example.org/ns/a/sa/two";

describe("compile --emit rbac-matcher: the by-principal layout", () => {
  it("keys the caller's URI SAN in an exact map, with each principal's rules in table order", () => {
    const [f] = filtersOf(
      `    - {id: r1, from: [{ids: ["${A}", "${B}"]}], to: [{methods: [GET]}]}\n` +
        `    - {id: r2, from: [{ids: ["${B}"]}], to: [{paths: ["/x"]}]}\n` +
        `    - {id: r3, from: [{ids: ["${A}"]}]}\n`,
    );
    assert.equal(f.name, "envoy.filters.http.rbac");
    const m = f.typed_config.matcher;
    assert.equal(m.matcher_tree.input.typed_config["@type"], "type.googleapis.com/envoy.extensions.matching.common_inputs.ssl.v3.UriSanInput");
    assert.deepEqual(Object.keys(m.matcher_tree.exact_match_map.map).sort(), [A, B]);
    // A: r1 (GET), then r3 matches every request of A: no default after it.
    assert.deepEqual(outcomes(m.matcher_tree.exact_match_map.map[A]), ["ALLOW:r1", "ALLOW:r3"]);
    assert.deepEqual(outcomes(m.matcher_tree.exact_match_map.map[B]), ["ALLOW:r1", "ALLOW:r2", `DENY:${NO_MATCH_NAME}`]);
    assert.deepEqual(outcomes(m.on_no_match), [`DENY:${NO_MATCH_NAME}`], "a caller no rule names gets the default deny");
  });

  it("emits one filter per action in istiod's order (LOG, DENY, ALLOW), dry-run rules as shadow matchers", () => {
    const fs = filtersOf(
      `    - {id: a, from: [{ids: ["${A}"]}]}\n` +
        `    - {id: d, action: deny, from: [{ids: ["${B}"]}], to: [{methods: [DELETE]}]}\n` +
        `    - {id: l, action: audit, from: [{ids: ["${A}"]}]}\n` +
        `    - {id: s, action: deny, dryRun: true, from: [{ids: ["${A}"]}]}\n`,
    );
    assert.deepEqual(fs.map((f) => Object.keys(f.typed_config).filter((k) => k !== "@type").join("+")), [
      "matcher", "matcher+shadow_matcher+shadow_rules_stat_prefix", "matcher",
    ]);
    const [log, deny, allow] = fs.map((f) => f.typed_config);
    assert.deepEqual(outcomes(log.matcher.matcher_tree.exact_match_map.map[A]), ["LOG:l"]);
    assert.deepEqual(outcomes(log.matcher.on_no_match), [`ALLOW:${NO_MATCH_NAME}`], "a LOG filter never denies");
    assert.deepEqual(outcomes(deny.matcher.matcher_tree.exact_match_map.map[B]), ["DENY:d", `ALLOW:${NO_MATCH_NAME}`]);
    assert.deepEqual(outcomes(deny.shadow_matcher.matcher_tree.exact_match_map.map[A]), ["DENY:s"]);
    assert.equal(deny.shadow_rules_stat_prefix, "istio_dry_run_deny_");
    assert.deepEqual(outcomes(allow.matcher.matcher_tree.exact_match_map.map[A]), ["ALLOW:a"]);
  });

  it("adds a rule without `from` to every principal's list and to the no-match list, after the refusal of several URI SANs", () => {
    const [f] = filtersOf(`    - {id: keyed, from: [{ids: ["${A}"]}], to: [{methods: [POST]}]}\n    - {id: anyone, to: [{paths: ["/public"]}]}\n`);
    const m = f.typed_config.matcher;
    assert.deepEqual(outcomes(m.matcher_tree.exact_match_map.map[A]), ["ALLOW:keyed", "ALLOW:anyone", `DENY:${NO_MATCH_NAME}`]);
    assert.deepEqual(outcomes(m.on_no_match), [`DENY:${MULTIPLE_URI_SANS}`, "ALLOW:anyone", `DENY:${NO_MATCH_NAME}`]);
  });

  it("refuses several URI SANs in a DENY filter when the table's default allows, and nowhere when only keyed rules allow", () => {
    const denyOnly = filtersOf(`    - {id: d, action: deny, from: [{ids: ["${A}"]}]}\n`);
    assert.equal(denyOnly.length, 1);
    assert.deepEqual(outcomes(denyOnly[0].typed_config.matcher.on_no_match), [`DENY:${MULTIPLE_URI_SANS}`, `ALLOW:${NO_MATCH_NAME}`]);
    const keyed = filtersOf(`    - {id: a, from: [{ids: ["${A}"]}]}\n`);
    assert.equal(JSON.stringify(keyed).includes(MULTIPLE_URI_SANS), false, "the default deny already covers a certificate that matches no key");
  });

  it("matches paths on :path up to the query, as the filter's PATH", () => {
    const [f] = filtersOf(`    - {id: r, from: [{ids: ["${A}"]}], to: [{paths: ["/exact", "/pre*", "*.json", "/t/{*}/x"]}]}\n`);
    const preds = f.typed_config.matcher.matcher_tree.exact_match_map.map[A].matcher.matcher_list.matchers[0].predicate.or_matcher.predicate;
    const matchers = preds.map((p: Obj) => p.single_predicate.value_match);
    assert.ok(preds.every((p: Obj) => p.single_predicate.input.typed_config.header_name === ":path"));
    const full = (m: Obj, path: string): boolean =>
      m.prefix !== undefined ? path.startsWith(m.prefix) : new RegExp(`^(?:${m.safe_regex.regex})$`).test(path);
    const table: [string, boolean[]][] = [
      ["/exact", [true, false, false, false]],
      ["/exact?q=1", [true, false, false, false]],
      ["/exactly", [false, false, false, false]],
      ["/prefix?x", [false, true, false, false]],
      ["/a.json?z=/b", [false, false, true, false]],
      ["/a?z=.json", [false, false, false, false]],
      ["/t/1/x?y", [false, false, false, true]],
      ["/t/1/2/x", [false, false, false, false]],
    ];
    for (const [path, want] of table) assert.deepEqual(matchers.map((m: Obj) => full(m, path)), want, path);
  });

  it("leaves out an exact ID the filter would never accept, and writes distinct objects (no YAML aliases)", () => {
    const ir = compileYaml(policy(`    - {id: r, from: [{ids: ["${A}"]}]}\n`)).ir;
    ir.rules[0].sources[0].predicates[0].patterns.push({ kind: "exact", value: `spiffe://${"a".repeat(256)}/x` });
    const [f] = rbacMatcherFilters(ir, "by-principal") as Obj[];
    assert.deepEqual(Object.keys(f.typed_config.matcher.matcher_tree.exact_match_map.map), [A]);
    // The same input and action objects are used for many entries while the tree is built.
    const seen = new Set<object>();
    const walk = (x: unknown): void => {
      if (x === null || typeof x !== "object") return;
      assert.equal(seen.has(x), false, `object ${JSON.stringify(x).slice(0, 80)} appears twice`);
      seen.add(x);
      Object.values(x).forEach(walk);
    };
    walk(f);
    assert.ok(seen.size > 10);
  });
});

describe("compile --emit rbac-matcher: the by-request layout", () => {
  const C = "spiffe://example.org/ns/b/sa/three";

  /** [predicate kind, the principals of its map (or the action of an entry without map)] per list entry. */
  const entries = (m: Obj): [string, string[] | string][] =>
    m.matcher_list.matchers.map((x: Obj) => [
      Object.keys(x.predicate)[0],
      x.on_match.action ? `${x.on_match.action.typed_config.action}:${x.on_match.action.name}` : Object.keys(x.on_match.matcher.matcher_tree.exact_match_map.map),
    ]);

  it("puts every principal of one request predicate in one map (the benchmark's shape: many callers, one operation)", () => {
    const rules = [A, B, C].map((id, i) => `    - {id: r${i}, from: [{ids: ["${id}"]}], to: [{methods: [GET], paths: ["/echo*"]}]}\n`).join("");
    const [f] = filtersOf(rules, "", "auto");
    const m = f.typed_config.matcher;
    assert.deepEqual(entries(m), [["and_matcher", [A, B, C]]]);
    const map = m.matcher_list.matchers[0].on_match.matcher;
    assert.equal(map.on_no_match, undefined, "a caller not in the map falls through to the next entry");
    assert.deepEqual(outcomes({ action: map.matcher_tree.exact_match_map.map[B].action }), ["ALLOW:r1"]);
    assert.deepEqual(outcomes(m.on_no_match), [`DENY:${NO_MATCH_NAME}`]);
  });

  it("keeps one entry per distinct request predicate in table order, then the rules without `from`, the refusal first", () => {
    const [f] = filtersOf(
      `    - {id: reads, from: [{ids: ["${A}"]}, {ids: ["${B}"]}], to: [{methods: [GET]}]}\n` +
        `    - {id: writes, from: [{ids: ["${A}"]}], to: [{methods: [POST]}]}\n` +
        `    - {id: reads-too, from: [{ids: ["${C}"]}], to: [{methods: [GET]}]}\n` +
        `    - {id: anyone, to: [{paths: ["/public"]}]}\n` +
        `    - {id: all-of-b, from: [{ids: ["${B}"]}]}\n`,
      "",
      "by-request",
    );
    assert.deepEqual(entries(f.typed_config.matcher), [
      ["and_matcher", `DENY:${MULTIPLE_URI_SANS}`],
      ["or_matcher", [A, B, C]], // GET or HEAD
      ["single_predicate", [A]], // POST
      ["single_predicate", [B]], // any request
      ["single_predicate", "ALLOW:anyone"],
    ]);
  });

  it("chooses by request up to MAX_REQUEST_GROUPS distinct predicates, by principal above", () => {
    const rules = (n: number): string =>
      Array.from({ length: n }, (_, i) => `    - {id: r${i}, from: [{ids: ["${A}"]}], to: [{paths: ["/p${i}"]}]}\n`).join("");
    assert.ok("matcher_list" in filtersOf(rules(MAX_REQUEST_GROUPS), "", "auto")[0].typed_config.matcher);
    assert.ok("matcher_tree" in filtersOf(rules(MAX_REQUEST_GROUPS + 1), "", "auto")[0].typed_config.matcher);
  });
});

describe("compile --emit rbac-matcher: what the index cannot hold is refused, naming the rule and why", () => {
  it("refuses identity patterns, trust domains, attributes and excluded IDs", () => {
    assert.deepEqual(refusals(`    - {id: pat, from: [{ids: ["spiffe://example.org/ns/a/*"]}]}\n`), [
      'rule "pat": principal pattern "spiffe://example.org/ns/a/*" is not an exact ID; the indexed matcher keys on exact SPIFFE IDs (give the rule exact "ids", or use --emit rbac)',
    ]);
    const [td] = refusals(`    - {id: td, from: [{trustDomains: [example.org]}]}\n`);
    assert.match(td, /^rule "td": a source tests the caller's "trustDomain"/);
    const [attr] = refusals(`    - {id: ns, from: [{namespaces: [shop]}]}\n`);
    assert.match(attr, /^rule "ns": a source tests the caller's "attribute"/);
    const [not] = refusals(`    - {id: nope, action: deny, from: [{notIds: ["${A}"]}]}\n`);
    assert.match(not, /^rule "nope": a source (names no principal|excludes principals)/);
  });

  it("refuses header rules (Envoy's header input joins repeated values), CEL conditions and schemas", () => {
    const [h] = refusals(`    - {id: hdr, from: [{ids: ["${A}"]}], when: [{key: "request.headers[x-env]", values: [prod]}]}\n`);
    assert.match(h, /^rule "hdr": tests header "x-env": Envoy's header match input joins the values of a repeated header with ","/);
    const [cel] = refusals(`    - {id: own, from: [{ids: ["${A}"]}], condition: "request.headers['x-app'] == source.attributes.app"}\n`);
    assert.match(cel, /^rule "own" has a CEL condition/);
    const problems = refusals(`    - {id: r, from: [{ids: ["${A}"]}]}\n`, "  trustDomains: {example.org: {require: [ns]}}\n");
    assert.match(problems[0], /trust-domain schemas \("example\.org"\)/);
  });

  it("refuses Istio principals (peer names: URI SAN, DNS SAN or subject) and takes Istio path templates", () => {
    const refused = (yaml: string): string[] => {
      try {
        rbacMatcherFilters(compileYaml(yaml).ir);
        return [];
      } catch (e) {
        return (e as RbacMatcherEmitError).problems;
      }
    };
    const [p] = refused(istio("p", "rules:\n  - from:\n      - source:\n          principals: [cluster.local/ns/a/sa/b]", { namespace: "shop" }));
    assert.match(p, /an Istio principal is a peer name, which Envoy's principal_name compares with the certificate's URI SAN, DNS SAN and subject/);
    const template = istio("t", "rules:\n  - to:\n      - operation:\n          paths: [\"/api/{*}/items/{**}\"]", { namespace: "shop" });
    const [f] = rbacMatcherFilters(compileYaml(template).ir) as Obj[];
    const m = JSON.stringify(f);
    assert.match(m, /safe_regex/);
    assert.deepEqual(refused(template), []);
  });

  it("lists every rule that prevents the indexed form, not only the first", () => {
    const problems = refusals(`    - {id: one, from: [{trustDomains: [example.org]}]}\n    - {id: ok, from: [{ids: ["${A}"]}]}\n    - {id: two, from: [{ids: ["spiffe://example.org/*"]}]}\n`);
    assert.deepEqual(problems.map((p) => /^rule "([^"]+)"/.exec(p)?.[1]), ["one", "two"]);
  });
});

describe("spiffe-authz compile --emit rbac-matcher", () => {
  const dir = mkdtempSync(join(tmpdir(), "spiffe-authz-rbac-matcher-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    let stdout = "";
    let stderr = "";
    const [ow, ew] = [process.stdout.write, process.stderr.write];
    process.stdout.write = ((c: string | Uint8Array) => ((stdout += String(c)), true)) as typeof process.stdout.write;
    process.stderr.write = ((c: string | Uint8Array) => ((stderr += String(c)), true)) as typeof process.stderr.write;
    try {
      return { code: await runCompile(argv), stdout, stderr };
    } finally {
      process.stdout.write = ow;
      process.stderr.write = ew;
    }
  }

  it("prints the filters as a YAML list for http_filters", async () => {
    const file = join(dir, "ok.yaml");
    writeFileSync(file, policy(`    - {id: frontend, from: [{ids: ["${A}"]}], to: [{methods: [GET]}]}\n`));
    const r = await run(file, "--emit", "rbac-matcher");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^# spiffe-authz: 1 rule\(s\) as Envoy RBAC with indexed matchers/);
    const filters = parse(r.stdout) as Obj[];
    const map = filters[0].typed_config.matcher.matcher_list.matchers[0].on_match.matcher.matcher_tree.exact_match_map.map;
    assert.deepEqual(Object.keys(map), [A]);
    assert.doesNotMatch(r.stdout, /[&*]a\d/, "no YAML anchors or aliases");
  });

  it("exits 2 naming each rule that prevents it and the form asked for", async () => {
    const file = join(dir, "refused.yaml");
    writeFileSync(file, policy(`    - {id: wild, from: [{ids: ["spiffe://example.org/*"]}]}\n`));
    const r = await run(file, "--emit", "rbac-matcher");
    assert.equal(r.code, 2);
    assert.match(r.stderr, /spiffe-authz compile: rule "wild": principal pattern "spiffe:\/\/example\.org\/\*" is not an exact ID/);
    assert.match(r.stderr, /the policy cannot be expressed as Envoy RBAC's indexed matcher \(--emit rbac-matcher\)\n$/);
    assert.equal(r.stdout, "");
  });
});
