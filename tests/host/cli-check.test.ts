// `spiffe-authz check` and the dispatcher, on the real build/release.wasm.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { rmSync } from "node:fs";

import { runCheck } from "../../src/cli/check.ts";
import type { CliIO } from "../../src/cli/io.ts";
import { main, version } from "../../src/cli/main.ts";
import { compileTexts } from "../../src/compiler/index.ts";
import { buildFixture, ROOT } from "./helpers/fixture.ts";
import { requireReleaseWasm } from "./helpers/release.ts";

const POLICY = `apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata: {name: cli}
spec:
  rules:
    - id: allow-orders
      from: [{ids: ["spiffe://example.org/ns/shop/sa/orders"]}]
    - id: deny-staging
      action: deny
      from: [{attributes: {env: staging}}]
`;
const ORDERS = "spiffe://example.org/ns/shop/sa/orders";

let dir = "";
let policy = "";
let hash = "";

before(() => {
  requireReleaseWasm();
  dir = mkdtempSync(path.join(tmpdir(), "spiffe-authz-check-"));
  policy = path.join(dir, "policy.yaml");
  writeFileSync(policy, POLICY);
  hash = compileTexts([{ file: policy, text: POLICY }]).tableHash;
});

after(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function check(argv: string[], stdin = ""): Promise<Run> {
  let stdout = "";
  let stderr = "";
  const io: CliIO = {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    readStdin: async () => stdin,
  };
  const code = await runCheck(argv, io);
  return { code, stdout, stderr };
}

function bin(args: string[], input?: string): Run {
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin/spiffe-authz.js"), ...args], { cwd: ROOT, input, encoding: "utf8" });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function peer(id: string | null, valid: boolean, td: string | null, p: string | null, attributes: Record<string, string>) {
  return { valid, id, trustDomain: td, path: p, attributes };
}

describe("check, one request", () => {
  it("prints a human summary by default", async () => {
    const r = await check(["--policy", policy, "--peer", "spiffe://example.org/env/staging/app/x"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, [
      "DENY 403  rule=deny-staging  reason: denied by rule \"deny-staging\"",
      "  peer: spiffe://example.org/env/staging/app/x",
      "        trust domain \"example.org\", path \"/env/staging/app/x\"",
      "        attributes: env=staging app=x",
      `  table: ${hash}`,
      "",
    ].join("\n"));
  });

  it("prints exactly the result line with --json, keys in the documented order", async () => {
    const r = await check(["--policy", policy, "--peer", ORDERS, "--json", "--method", "PUT", "--path", "/x", "--authority", "h"]);
    assert.equal(r.code, 0, r.stderr);
    const expected = {
      decision: "allow", status: 200, grpcStatus: null, rule: "allow-orders", reason: "allowed by rule \"allow-orders\"",
      tableHash: hash, peer: peer(ORDERS, true, "example.org", "/ns/shop/sa/orders", { ns: "shop", sa: "orders" }),
      reasonCode: "allow_rule", audit: [], dryRun: [],
    };
    assert.equal(r.stdout, JSON.stringify(expected) + "\n");
  });

  it("treats no --peer as no client certificate", async () => {
    const r = await check(["--policy", policy, "--json"]);
    const line = JSON.parse(r.stdout);
    assert.equal(line.decision, "deny");
    assert.equal(line.reason, 'no ALLOW rule matched; closest: rule "allow-orders" (the request matched; the caller did not); peer has no SPIFFE ID (no client certificate)');
    assert.deepEqual(line.peer, peer(null, false, null, null, {}));
  });

  it("sends gRPC requests with their content type and reports grpc-status 7", async () => {
    const body = path.join(dir, "frame.bin");
    writeFileSync(body, Buffer.from([0, 0, 0, 0, 2, 8, 1]));
    const r = await check(["--policy", policy, "--method", "POST", "--path", "/acme.v1.Svc/Get", "--content-type", "application/grpc",
      "--body-file", body, "--header", "x-extra: 1"]);
    assert.equal(r.code, 0, r.stderr);
    // Envoy answers a gRPC denial with a trailers-only HTTP 200 carrying grpc-status 7.
    assert.match(r.stdout, /^DENY 200 {2}grpc-status=7 {2}reason: no ALLOW rule matched/);
  });

  it("shows the audit and dry-run lines the filter logged for the request", async () => {
    const r = await check(["--policy", path.join(ROOT, "tests/cases/audit-dry-run/policy.yaml"), "--method", "POST", "--peer", ORDERS]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    assert.equal(lines[0], 'DENY 403  reason: no ALLOW rule matched; closest: rule "allow-get" (the caller matched; the method, path, host, port or a when condition did not)');
    assert.deepEqual(lines.slice(-2), [
      `  spiffe-authz audit: rule=audit-everything peer=${ORDERS} method=POST path=/ decision=deny`,
      "  spiffe-authz dry-run: rule=dry-deny-all would deny",
    ]);
  });

  it("accepts a compiled table as --policy", async () => {
    const table = path.join(dir, "table.json");
    writeFileSync(table, compileTexts([{ file: policy, text: POLICY }]).config + "\n");
    const r = await check(["--policy", table, "--peer", ORDERS, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).tableHash, hash);
  });

  it("reports a broken compiled table as the user's error (exit 2)", async () => {
    const table = path.join(dir, "broken.json");
    writeFileSync(table, "{\"table\":\"U1BBWgEAAQ==\"}\n");
    const r = await check(["--policy", table]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /broken\.json: not a valid policy table: /);
    assert.equal(r.stdout, "");
  });

  it("prints policy errors as file:line:col and exits 2", async () => {
    const bad = path.join(dir, "bad.yaml");
    writeFileSync(bad, POLICY.replace("action: deny", "action: maybe"));
    const r = await check(["--policy", bad]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:9:15: `, "m"));
  });

  it("says in one line that a binary file is not a policy", async () => {
    const bin = path.join(dir, "policy.bin");
    const bytes = Buffer.alloc(470 * 1024);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) & 0xff;
    writeFileSync(bin, bytes);
    const r = await check(["--policy", bin]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr.slice(0, 500));
    assert.match(r.stderr, /policy\.bin:1:\d+: not a policy file: byte 0x[0-9a-f]{2} at offset \d+ is not UTF-8/);
  });

  const usage: [string[], RegExp][] = [
    [[], /--policy FILE is required/],
    [["--policy", "p", "--bogus"], /unknown flag "--bogus"/],
    [["--policy", "p", "--header", "novalue"], /--header "novalue" must look like "name: value"/],
    [["--policy", "p", "--header", ":path: /x"], /pseudo-header ":path"/],
    [["--policy", "p", "--port", "70000"], /--port "70000" must be an integer from 1 to 65535/],
    [["--policy", "p", "--batch", "-", "--peer", "x"], /--peer cannot be combined with --batch/],
    [["--policy", "p", "extra"], /unexpected argument "extra"/],
  ];
  for (const [argv, message] of usage) {
    it(`exits 2 on a usage error: ${argv.join(" ") || "(nothing)"}`, async () => {
      const r = await check(argv);
      assert.equal(r.code, 2);
      assert.match(r.stderr, message);
      assert.equal(r.stdout, "");
    });
  }

  it("exits 1 when the module's explanation contradicts what it did", async () => {
    // The ABI fixture continues every request but explains "pending": check must not paper over that.
    const fixture = buildFixture();
    const r = await check(["--policy", policy, "--wasm", fixture]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /internal error: the filter's action was "allow" but its explanation says "pending"/);
  });
});

describe("check --batch", () => {
  const lines = [
    { peer: ORDERS },
    { peer: "spiffe://example.org/env/staging", method: "DELETE", path: "/x?y", authority: "a", headers: { "X-A": "b" } },
    {},
    { peer: null, body: "hello" },
    { peer: ORDERS, bodyBase64: Buffer.from([1, 2, 3]).toString("base64"), port: 8443, sni: "api" },
  ];

  it("answers one compact line per request, in order, from a file or stdin", async () => {
    const file = path.join(dir, "requests.jsonl");
    writeFileSync(file, lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
    const fromFile = await check(["--policy", policy, "--batch", file]);
    assert.equal(fromFile.code, 0, fromFile.stderr);
    const out = fromFile.stdout.split("\n");
    assert.equal(out.pop(), "");
    assert.equal(out.length, lines.length);
    assert.deepEqual(out.map((l) => JSON.parse(l).decision), ["allow", "deny", "deny", "deny", "allow"]);
    assert.deepEqual(out.map((l) => JSON.parse(l).rule), ["allow-orders", "deny-staging", null, null, "allow-orders"]);
    const fromStdin = await check(["--policy", policy, "--batch", "-"], lines.map((l) => JSON.stringify(l)).join("\r\n"));
    assert.equal(fromStdin.stdout, fromFile.stdout);
  });

  const bad: [string, RegExp][] = [
    ["{\"peer\": \"x\", \"colour\": 1}", /<stdin>:2: unknown field "colour"/],
    ["not json", /<stdin>:2: not valid JSON/],
    ["[1]", /<stdin>:2: a request must be a JSON object/],
    ["{\"method\": 5}", /<stdin>:2: field "method" must be a string/],
    ["{\"headers\": {\"a\": 1}}", /<stdin>:2: header "a" must have a string value/],
    ["{\"headers\": {\"a\": []}}", /<stdin>:2: header "a" must have a string value, or a list of them/],
    ["{\"peer\": [1]}", /<stdin>:2: field "peer" must be a string or a list of strings/],
    ["{\"body\": \"a\", \"bodyBase64\": \"YQ==\"}", /<stdin>:2: give either "body" or "bodyBase64", not both/],
    ["{\"bodyBase64\": \"a b\"}", /<stdin>:2: field "bodyBase64" is not valid base64/],
    ["{\"port\": 0}", /<stdin>:2: field "port" must be an integer from 1 to 65535/],
    ["{\"jwt\": [1]}", /<stdin>:2: field "jwt" must be an object/],
    ["", /<stdin>:2: empty line/],
  ];
  for (const [line, message] of bad) {
    it(`answers a bad line with an error result of its own and checks the others: ${line || "(empty)"}`, async () => {
      const r = await check(["--policy", policy, "--batch", "-"], `{}\n${line}\n{"peer": "${ORDERS}"}\n`);
      assert.equal(r.code, 2);
      const out = r.stdout.trimEnd().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.equal(out.length, 3);
      assert.equal(out[0].decision, "deny");
      assert.deepEqual(Object.keys(out[1]), ["error"]);
      assert.match(String(out[1].error), message);
      assert.equal(out[2].rule, "allow-orders");
      assert.match(r.stderr, /1 of 3 batch lines could not be read/);
    });
  }

  it("takes a 4 MiB body in a batch line (base64 or text) without failing", async () => {
    const big = Buffer.alloc(4 * 1024 * 1024, 0x61);
    const input = [JSON.stringify({ bodyBase64: big.toString("base64") }), JSON.stringify({ body: big.toString("utf8") })].join("\n");
    const r = await check(["--policy", policy, "--batch", "-"], input);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trimEnd().split("\n").length, 2);
  });

  it("sends a list header value as one line per element, and a list peer as a certificate with those URI SANs", async () => {
    const deny = path.join(dir, "deny-admin.yaml");
    writeFileSync(deny, `apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata: {name: deny-admin}
spec:
  rules:
    - id: no-admin
      action: deny
      when: [{key: "request.headers[x-role]", values: [admin]}]
    - id: orders
      from: [{ids: ["${ORDERS}"]}]
`);
    const lines = [
      { peer: ORDERS, headers: { "x-role": ["adminx", "admin"] } },
      { peer: ORDERS, headers: { "x-role": "adminx,admin" } },
      { peer: [ORDERS, "spiffe://example.org/ns/shop/sa/legacy"] },
      { peer: [] },
    ];
    const r = await check(["--policy", deny, "--batch", "-"], lines.map((l) => JSON.stringify(l)).join("\n"));
    assert.equal(r.code, 0, r.stderr);
    const out = r.stdout.trimEnd().split("\n").map((l) => JSON.parse(l) as { rule: string | null; reason: string });
    assert.deepEqual(out.map((o) => o.rule), ["no-admin", "orders", null, null]);
    assert.match(out[2].reason, /more than one URI SAN/);
    assert.match(out[3].reason, /its client certificate has no URI SAN/);
    const flags = await check(["--policy", deny, "--peer", ORDERS, "--header", "x-role: adminx", "--header", "x-role: admin", "--json"]);
    assert.equal(JSON.parse(flags.stdout).rule, "no-admin");
  });

  it("runs 10,000 requests in one VM within seconds", async () => {
    const input = Array.from({ length: 10_000 }, (_, i) =>
      JSON.stringify(i % 3 === 0 ? { peer: ORDERS } : i % 3 === 1 ? {} : { peer: `spiffe://example.org/env/staging/n/${i}` })).join("\n");
    const started = Date.now();
    const r = await check(["--policy", policy, "--batch", "-"], input);
    const ms = Date.now() - started;
    assert.equal(r.code, 0, r.stderr);
    const out = r.stdout.trimEnd().split("\n");
    assert.equal(out.length, 10_000);
    assert.equal(JSON.parse(out[9_998]).rule, "deny-staging");
    // Generous bound: this is "seconds, not minutes", not a benchmark.
    assert.ok(ms < 30_000, `10,000 requests took ${ms} ms`);
  });
});

describe("check with conditions: bodies, .proto files, JWT claims", () => {
  const COND = `apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata: {name: cond}
spec:
  rules:
    - id: json-tenant
      to: [{paths: ["/json"]}]
      condition: request.json.tenant == 'acme'
    - id: own-config
      to: [{grpc: {service: demo.config.v1.DynamicResourceService, methods: [FetchResource]}}]
      condition: request.grpc.message.appname == 'billing'
    - id: scoped
      to: [{paths: ["/reports"]}]
      condition: "'read' in jwt.claims.scopes"
`;
  const proto = path.join(ROOT, "tests/cases/conditions-grpc/config_service.proto");
  let condPolicy = "";
  before(() => {
    condPolicy = path.join(dir, "cond.yaml");
    writeFileSync(condPolicy, COND);
  });

  it("--body-file and --content-type send a JSON body", async () => {
    const body = path.join(dir, "body.json");
    writeFileSync(body, JSON.stringify({ tenant: "acme" }));
    const args = ["--policy", condPolicy, "--proto", proto, "--method", "POST", "--path", "/json", "--body-file", body, "--json"];
    const ok = await check([...args, "--content-type", "application/json"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(JSON.parse(ok.stdout).rule, "json-tenant");
    const plain = await check([...args, "--content-type", "text/plain"]);
    assert.match(JSON.parse(plain.stdout).reason, /condition failed: cannot read the request body: content-type is not application\/json/);
  });

  it("--proto compiles conditions on gRPC messages; the body file is the framed message", async () => {
    // FetchResourceRequest{appname: "billing"} (field 1, string), framed: flag 0, big-endian length.
    const msg = Buffer.concat([Buffer.from([0x0a, 7]), Buffer.from("billing")]);
    const body = path.join(dir, "grpc.bin");
    writeFileSync(body, Buffer.concat([Buffer.from([0, 0, 0, 0, msg.length]), msg]));
    const r = await check(["--policy", condPolicy, "--proto", proto, "--method", "POST", "--path", "/demo.config.v1.DynamicResourceService/FetchResource",
      "--content-type", "application/grpc", "--body-file", body, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).rule, "own-config");
    const missing = await check(["--policy", condPolicy, "--path", "/json"]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /cond\.yaml:11:18: 'request\.grpc\.message' reads the request message of \/demo\.config\.v1\.DynamicResourceService\/FetchResource, which no \.proto file given defines/);
  });

  it("takes a WasmPlugin's configuration (headers: continue) and decides bodies as with the default mode", async () => {
    const compiled = compileTexts([{ file: condPolicy, text: COND }], undefined, { protos: [proto] });
    const table = path.join(dir, "continue.json");
    writeFileSync(table, JSON.stringify({ headers: "continue", table: (JSON.parse(compiled.config) as { table: string }).table }) + "\n");
    const frame = (app: string) => {
      const msg = Buffer.concat([Buffer.from([0x0a, app.length]), Buffer.from(app)]);
      return Buffer.concat([Buffer.from([0, 0, 0, 0, msg.length]), msg]).toString("base64");
    };
    const line = (app: string) => JSON.stringify({ peer: "spiffe://config.example.com/app/billing/env/prod", method: "POST",
      path: "/demo.config.v1.DynamicResourceService/FetchResource", headers: { "content-type": "application/grpc" }, bodyBase64: frame(app) });
    const r = await check(["--policy", table, "--batch", "-"], `${line("billing")}\n${line("orders")}\n`);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n").map((l) => [JSON.parse(l).decision, JSON.parse(l).tableHash]),
      [["allow", compiled.tableHash], ["deny", compiled.tableHash]]);
  });

  it("--jwt-claims and the batch field jwt give the claims of a verified token", async () => {
    const one = await check(["--policy", condPolicy, "--proto", proto, "--path", "/reports", "--jwt-claims", "{\"scopes\":[\"read\"]}", "--json"]);
    assert.equal(JSON.parse(one.stdout).rule, "scoped");
    const bad = await check(["--policy", condPolicy, "--proto", proto, "--jwt-claims", "[1]"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--jwt-claims must be a JSON object/);
    const batch = await check(["--policy", condPolicy, "--proto", proto, "--batch", "-"],
      `${JSON.stringify({ path: "/reports", jwt: { scopes: ["read"] } })}\n${JSON.stringify({ path: "/reports", headers: { "x-jwt": "{\"scopes\":[\"read\"]}" } })}\n`);
    assert.deepEqual(batch.stdout.trim().split("\n").map((l) => JSON.parse(l).rule), ["scoped", null]);
  });
});

describe("the spiffe-authz command", () => {
  it("prints its version and help, and rejects unknown commands", async () => {
    const v = bin(["--version"]);
    assert.equal(v.code, 0);
    assert.equal(v.stdout, `spiffe-authz ${version()}\n`);
    const none = bin([]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /^usage: spiffe-authz <command>/);
    const unknown = bin(["frobnicate"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
    const help = bin(["help", "check"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^usage: spiffe-authz check --policy FILE/);
  });

  it("runs check end to end through bin/spiffe-authz.js with stdin batches", () => {
    const r = bin(["check", "--policy", policy, "--batch", "-"], `${JSON.stringify({ peer: ORDERS })}\n`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).rule, "allow-orders");
  });

  it("dispatches in-process too (exit codes as documented)", async () => {
    let err = "";
    const io: CliIO = { stdout: { write: () => true }, stderr: { write: (s: string) => (err += s) }, readStdin: async () => "" };
    assert.equal(await main(["check", "--nope"], io), 2);
    assert.match(err, /unknown flag "--nope"/);
    assert.equal(await main(["help"], io), 0);
  });
});
