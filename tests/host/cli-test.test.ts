// `spiffe-authz test` on the real build/release.wasm: the example policy repository passes; a wrong expectation
// fails with its file:line:col and a JUnit <failure>; uncovered rules are listed (and fail --require-coverage);
// errors in test files are file:line:col and stop the run before anything is decided.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { main } from "../../src/cli/main.ts";
import type { CliIO } from "../../src/cli/io.ts";

const dir = mkdtempSync(join(tmpdir(), "spiffe-authz-cli-test-"));
after(() => rmSync(dir, { recursive: true, force: true }));

async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const io: CliIO = { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) }, readStdin: async () => "" };
  return { code: await main(["test", ...argv], io), stdout, stderr };
}

function write(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

copyFileSync("examples/policy-repo/policies/orders.yaml", join(dir, "orders.yaml"));

describe("spiffe-authz test", () => {
  it("passes the example policy repository, every rule exercised", async () => {
    const junit = join(dir, "out", "junit.xml");
    const r = await run("examples/policy-repo", "--junit", junit, "--require-coverage");
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^  ok    frontend reads an order \(allow by readers\)$/m);
    assert.match(r.stdout, /^rule coverage: 5 of 5 rules exercised$/m);
    assert.match(r.stdout, /^9 passed, 0 failed$/m);
    const xml = readFileSync(junit, "utf8");
    assert.match(xml, /<testsuites name="spiffe-authz policy tests" tests="9" failures="0" errors="0">/);
    assert.equal((xml.match(/<testcase /g) ?? []).length, 9);
  });

  it("fails a wrong expectation with what differs and where, and writes a JUnit failure", async () => {
    const file = write("wrong.test.yaml", [
      "policies: [orders.yaml]",
      "tests:",
      "  - name: frontend reads",
      "    request: {peer: spiffe://prod.example.com/app/frontend/env/prod, method: GET, path: /orders/1}",
      "    expect: {decision: allow, rule: readers}",
      "  - name: legacy is allowed (wrong)",
      "    request: {peer: spiffe://prod.example.com/app/legacy/env/prod, method: GET, path: /orders/1}",
      "    expect: {decision: allow}",
      "  - name: right decision, wrong rule",
      "    request: {peer: spiffe://prod.example.com/app/legacy/env/prod, method: GET, path: /orders/1}",
      "    expect: {decision: deny, rule: readers, reason: nothing like this}",
      "",
    ].join("\n"));
    const junit = join(dir, "wrong.xml");
    const r = await run(file, "--junit", junit);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /  FAIL  legacy is allowed \(wrong\)\n        expected allow, got deny by rule "no-legacy"\n        reason: denied by rule "no-legacy"\n        at .*wrong\.test\.yaml:6:5\n/);
    assert.match(r.stdout, /  FAIL  right decision, wrong rule\n        expected the decision by rule "readers", got rule "no-legacy"\n        expected a reason containing "nothing like this"\n/);
    assert.match(r.stdout, /^1 passed, 2 failed$/m);
    assert.match(r.stdout, /not exercised \(.*orders\.yaml\): billing-refunds, ops-tenant/);
    const xml = readFileSync(junit, "utf8");
    assert.equal((xml.match(/<failure /g) ?? []).length, 2);
    assert.match(xml, /<failure message="expected allow, got deny by rule &quot;no-legacy&quot;">/);
    assert.match(xml, /<testcase classname="rule coverage|<testsuite name="rule coverage"/);
  });

  it("--require-coverage fails when a rule is exercised by no test", async () => {
    const file = write("thin.test.yaml", [
      "policies: [orders.yaml]",
      "tests:",
      "  - name: frontend reads",
      "    request: {peer: spiffe://prod.example.com/app/frontend/env/prod, method: GET, path: /orders/1}",
      "    expect: {decision: allow}",
      "",
    ].join("\n"));
    const plain = await run(file);
    assert.equal(plain.code, 0, plain.stdout);
    assert.match(plain.stdout, /rule coverage: 1 of 4 rules exercised\n  not exercised \(.*\): no-legacy, billing-refunds, ops-tenant/);
    assert.equal((await run(file, "--require-coverage")).code, 1);
  });

  it("reports errors in test files as file:line:col and runs nothing", async () => {
    const file = write("bad.test.yaml", [
      "policies: [orders.yaml, missing.yaml]",
      "tests:",
      "  - name: one",
      "    request: {peer: spiffe://x/y, mehtod: GET, headers: {x-a: {b: c}}}",
      "    expect: {decision: maybe}",
      "  - name: one",
      "    request: {port: 70000}",
      "    expect: {rule: x}",
      "  - request: {}",
      "    expect: {decision: deny, reason: '/(/'}",
      "",
    ].join("\n"));
    const r = await run(file);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    // Test files are named relative to the working directory.
    const lines = r.stderr.trim().split("\n").map((l) => l.replace(/^\S*bad\.test\.yaml/, "bad.test.yaml"));
    assert.deepEqual(lines, [
      'bad.test.yaml:1:25: policy file "missing.yaml" does not exist (paths are relative to the test file)',
      'bad.test.yaml:4:35: unknown field "mehtod" in request (fields: peer, method, path, authority, headers, body, json, bodyBase64, port, sni, jwt)',
      'bad.test.yaml:4:63: header "x-a" must be a string',
      'bad.test.yaml:5:24: decision must be allow or deny, not "maybe"',
      'bad.test.yaml:6:11: test name "one" is used twice (first at line 3)',
      "bad.test.yaml:7:21: port must be an integer from 1 to 65535",
      'bad.test.yaml:8:13: missing required field "decision" in expect (allow or deny)',
      'bad.test.yaml:9:5: missing required field "name" in tests[2]',
      'bad.test.yaml:10:38: reason "/(/" is not a valid regular expression: Invalid regular expression: /(/: Unterminated group',
      "spiffe-authz test: 9 errors in test files; no test was run",
    ]);
    const yaml = write("syntax.test.yaml", "policies: [orders.yaml\ntests: []\n");
    const s = await run(yaml);
    assert.equal(s.code, 2);
    assert.match(s.stderr, /syntax\.test\.yaml:\d+:\d+: yaml: /);
  });

  it("a policy that does not compile is reported with its own file:line:col", async () => {
    const policy = write("broken.yaml", "apiVersion: spiffe-authz.dev/v1\nkind: AuthzPolicy\nmetadata: {name: b}\nspec:\n  rules:\n    - id: x\n      acton: deny\n");
    const file = write("broken.test.yaml", "policies: [broken.yaml]\ntests:\n  - name: a\n    request: {}\n    expect: {decision: deny}\n");
    const r = await run(file);
    assert.equal(r.code, 2);
    assert.match(r.stdout, new RegExp(`ERROR the policies do not compile:\\n    ${policy.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/^.*\//, ".*")}:7:7: unknown field "acton"`));
  });

  it("usage: no arguments, a directory without tests", async () => {
    assert.equal((await run()).code, 2);
    const r = await run("src/cli");
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no test files \(\*\.test\.yaml\) under "src\/cli"/);
  });
});
