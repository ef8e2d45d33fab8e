// `spiffe-authz diff` on the real build/release.wasm: a one-rule change names exactly the requests it flips, from
// a corpus mixing the shipped access-log text format, JSON access-log records and check --batch requests.
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { main } from "../../src/cli/main.ts";
import type { CliIO } from "../../src/cli/io.ts";
import { compileFiles } from "../../src/compiler/index.ts";
import { readCorpus } from "../../src/corpus/read.ts";

const dir = mkdtempSync(join(tmpdir(), "spiffe-authz-cli-diff-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const repo = "examples/policy-repo";
const corpus = `${repo}/traffic/sample.log`;

async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const io: CliIO = { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) }, readStdin: async () => "" };
  return { code: await main(["diff", ...argv], io), stdout, stderr };
}

/** A copy of the example policies with `edit` applied to orders.yaml. */
function variant(name: string, edit: (text: string) => string): string {
  const d = join(dir, name);
  mkdirSync(d);
  for (const f of ["orders.yaml", "mesh.yaml"]) copyFileSync(join(repo, "policies", f), join(d, f));
  const text = readFileSync(join(d, "orders.yaml"), "utf8");
  const edited = edit(text);
  assert.notEqual(edited, text, "the edit applies");
  writeFileSync(join(d, "orders.yaml"), edited);
  return d;
}

describe("the request corpus", () => {
  it("reads access-log text lines, JSON access-log records and batch requests, skipping blanks and comments", () => {
    const entries = readCorpus(readFileSync(corpus, "utf8") + "\n# a comment\n\n", "sample.log");
    assert.deepEqual(entries.map((e) => [e.line, e.kind]), [
      [1, "access-log"], [2, "access-log"], [3, "access-log"], [4, "access-log"], [5, "access-log"],
      [6, "access-log-json"], [7, "access-log-json"], [8, "request"],
    ]);
    assert.deepEqual(entries[4].request, { method: "GET", path: "/orders/42" }, "a - peer is no client certificate");
    assert.deepEqual(entries[5].request, { method: "GET", path: "/admin/flags", authority: "orders.shop", peer: "spiffe://prod.example.com/app/ops/env/prod" });
    assert.equal(entries[6].request.peer, "spiffe://prod.example.com/app/billing/env/prod", "%DOWNSTREAM_PEER_URI_SAN% as a key");
    assert.deepEqual(entries[5].recorded, { start_time: "2026-11-28T16:50:04.000Z", response_code: 403, response_code_details: "spiffe_authz_denied[default]" });
    assert.equal(entries[2].recorded?.details, "spiffe_authz_denied[no-legacy]");
  });

  it("names the line it cannot read", () => {
    assert.throws(() => readCorpus('{"method":"GET","path":"/"}\nGET / HTTP/1.1\n', "t.log"), /^CorpusError: t\.log:2: not a JSON request, a JSON access log record/);
    assert.throws(() => readCorpus('{"status": 200}\n', "t.log"), /t\.log:1: neither a request .* nor an access log record with a method and a path/);
    assert.throws(() => readCorpus('{"peer": 1}\n', "t.log"), /t\.log:1: field "peer"/);
    assert.throws(() => readCorpus("{nope\n", "t.log"), /t\.log:1: not valid JSON/);
  });
});

describe("spiffe-authz diff", () => {
  it("names exactly the requests a one-rule change flips, with the rule before and after", async () => {
    const next = variant("no-shipping", (t) => t.replace("app: [billing, shipping, frontend]", "app: [billing, frontend]"));
    const r = await run(`${repo}/policies`, next, "--requests", corpus);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /^8 requests replayed from .*sample\.log; 2 change decision$/m);
    const changed = [...r.stdout.matchAll(/^  line (\d+): (.*)\n    (.*)\n/gm)].map((m) => [Number(m[1]), m[2], m[3]]);
    assert.deepEqual(changed, [
      [2, "GET /orders/42  spiffe://prod.example.com/app/shipping/env/prod", "allow by readers -> deny by default"],
      [4, "GET /orders/7  spiffe://prod.example.com/app/shipping/env/prod", "allow by readers -> deny by default"],
    ]);
    assert.match(r.stdout, /^\s+2  allow \(readers\) -> deny \(default\)$/m);

    const json = await run(`${repo}/policies`, next, "--requests", corpus, "--json");
    assert.equal(json.code, 1);
    const lines = json.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => [l.line, l.before.rule, l.after.decision]), [[2, "readers", "deny"], [4, "readers", "deny"]]);
  });

  it("a grant to a new caller, a deny rule, and a rule renamed: decisions and deciding rules", async () => {
    const next = variant("ops-wide", (t) =>
      t.replace('to: [{paths: ["/admin/*"]}]\n      when:\n        - key: request.headers[x-tenant]\n          values: [acme]', 'to: [{paths: ["/admin/*"]}]')
        .replace("- id: readers", "- id: order-readers")
        .replace("- id: billing-refunds", "- id: no-refunds\n      action: deny\n      to: [{paths: [\"/orders/{*}/refund\"]}]\n    - id: billing-refunds"));
    const r = await run(`${repo}/policies`, next, "--requests", corpus, "--all");
    assert.equal(r.code, 1, r.stderr);
    const changed = [...r.stdout.matchAll(/^  line (\d+): .*\n    (.*)\n/gm)].map((m) => [Number(m[1]), m[2]]);
    assert.deepEqual(changed, [
      [6, "deny by default -> allow by ops-tenant"],
      [8, "allow by billing-refunds -> deny by no-refunds"],
    ]);
    assert.match(r.stdout, /^4 requests keep their decision under another rule:$/m);
    assert.match(r.stdout, /line 1: GET \/orders\/42  spiffe:\/\/prod\.example\.com\/app\/frontend\/env\/prod  allow: readers -> order-readers/);
  });

  it("no change: exit 0; a compiled table works as a side", async () => {
    const table = join(dir, "table.json");
    writeFileSync(table, compileFiles([`${repo}/policies/mesh.yaml`, `${repo}/policies/orders.yaml`]).config + "\n");
    const r = await run(table, `${repo}/policies`, "--requests", corpus);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /; 0 change decision$/m);
  });

  it("usage and input errors exit 2", async () => {
    assert.equal((await run(`${repo}/policies`, "--requests", corpus)).code, 2);
    assert.match((await run(`${repo}/policies`, `${repo}/policies`)).stderr, /--requests FILE is required/);
    const bad = join(dir, "bad.log");
    writeFileSync(bad, "hello\n");
    const r = await run(`${repo}/policies`, `${repo}/policies`, "--requests", bad);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bad\.log:1: not a JSON request/);
  });
});
