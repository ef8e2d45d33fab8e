// The shipped filter (build/release.wasm) in the TypeScript host: configuration handling, the deny reply,
// counters, body handling and memory stability. Expectations follow docs/design.md and docs/table-format.md.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { compileTexts } from "../../src/compiler/index.ts";
import { ProxyWasmHost } from "../../src/host/index.ts";
import type { HttpRequest, RequestResult } from "../../src/host/index.ts";
import { toCheckResult } from "../../src/check/checker.ts";
import { decisions } from "./helpers/metrics.ts";
import { requireReleaseWasm } from "./helpers/release.ts";

const wasmPath = requireReleaseWasm();

const POLICY = `apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata: {name: filter-test}
spec:
  rules:
    - id: allow-orders
      from: [{ids: ["spiffe://example.org/ns/shop/sa/orders"]}]
    - id: deny-delete
      action: deny
      to: [{methods: [DELETE]}]
`;
const OTHER_POLICY = POLICY.replace("allow-orders", "allow-orders-v2");

const compiled = compileTexts([{ file: "policy.yaml", text: POLICY }]);
const ORDERS = "spiffe://example.org/ns/shop/sa/orders";

async function configured(config = compiled.config): Promise<ProxyWasmHost> {
  const host = await ProxyWasmHost.load({ wasmPath });
  assert.equal(host.configure(config), true, host.logs.map((l) => l.message).join("\n"));
  return host;
}

function envelopeConfig(mutate: (env: Uint8Array) => Uint8Array): string {
  const env = mutate(Uint8Array.from(compiled.envelope));
  return JSON.stringify({ table: Buffer.from(env).toString("base64") });
}

function rejectedLines(host: ProxyWasmHost): string[] {
  return host.logs.map((l) => l.message).filter((m) => m.startsWith("spiffe-authz: rejected configuration: "));
}

describe("the filter's imports", () => {
  it("uses only host functions this host implements, so envoy can link it", async () => {
    const host = await ProxyWasmHost.load({ wasmPath, unknownImports: "reject" });
    assert.deepEqual(host.unknownImports, []);
  });
});

describe("configuration", () => {
  const bad: [string, string][] = [
    ["not JSON", "this is not json"],
    ["empty", ""],
    ["an unknown key", JSON.stringify({ table: Buffer.from(compiled.envelope).toString("base64"), extra: 1 })],
    ["no table key", "{}"],
    ["bad base64", "{\"table\":\"!!!not-base64!!!\"}"],
    ["a truncated table", envelopeConfig((e) => e.slice(0, e.length - 7))],
    ["a truncated header", envelopeConfig((e) => e.slice(0, 20))],
    ["the wrong magic", envelopeConfig((e) => { e[0] = 0x58; return e; })],
    ["the wrong version", envelopeConfig((e) => { e[4] += 1; return e; })],
    ["unknown flag bits", envelopeConfig((e) => { e[6] |= 0x80; return e; })],
    ["a CRC mismatch", envelopeConfig((e) => { e[20] ^= 0xff; return e; })],
    ["a body length mismatch", envelopeConfig((e) => { e[16] ^= 0x01; return e; })],
    ["a corrupted payload", envelopeConfig((e) => { for (let i = 24; i < e.length; i += 3) e[i] ^= 0x5a; return e; })],
  ];

  for (const [what, config] of bad) {
    it(`rejects ${what} without trapping, and the previous table keeps deciding`, async () => {
      const host = await configured();
      const before = host.request({ peer: ORDERS });
      assert.equal(before.continued, true);
      host.clearLogs();
      assert.equal(host.configure(config), false);
      assert.equal(host.failure, null, "the vm must survive a bad configuration");
      assert.equal(rejectedLines(host).length, 1, host.logs.map((l) => l.message).join("\n"));
      assert.equal(host.metric("spiffe_authz.config_rejected"), 1);
      const after = host.request({ peer: ORDERS });
      assert.equal(after.continued, true);
      assert.equal(after.explain?.tableHash, compiled.tableHash);
      assert.equal(after.explain?.rule, "allow-orders");
      const denied = host.request({ peer: ORDERS, method: "DELETE" });
      assert.equal(denied.localReply?.details, "spiffe_authz_denied[deny-delete]");
    });
  }

  it("says why in the log line", async () => {
    const host = await ProxyWasmHost.load({ wasmPath });
    host.configure("{\"table\":\"AAAA\",\"x\":1}");
    const [line] = rejectedLines(host);
    assert.match(line, /unknown field "x"/);
  });

  it("swaps in a new valid table and reports its hash", async () => {
    const host = await configured();
    const next = compileTexts([{ file: "policy.yaml", text: OTHER_POLICY }]);
    assert.notEqual(next.tableHash, compiled.tableHash);
    assert.equal(host.configure(next.config), true);
    const r = host.request({ peer: ORDERS });
    assert.equal(r.explain?.rule, "allow-orders-v2");
    assert.equal(r.explain?.tableHash, next.tableHash);
    assert.equal(host.metric("spiffe_authz.rules"), 2);
  });

  it("denies every request while no table has been accepted", async () => {
    const host = await ProxyWasmHost.load({ wasmPath });
    for (const cfg of [null, "garbage"]) {
      if (cfg !== null) assert.equal(host.configure(cfg), false);
      const r = host.request({ peer: ORDERS });
      assert.equal(r.continued, false);
      assert.equal(r.localReply?.status, 403);
      assert.equal(r.localReply?.details, "spiffe_authz_denied[no_table]");
      const line = toCheckResult(r);
      assert.equal(line.decision, "deny");
      assert.equal(line.rule, null);
      assert.equal(line.tableHash, null);
      assert.equal(line.peer.id, ORDERS);
    }
  });
});

describe("decisions as envoy sees them", () => {
  it("denies with 403, the rule in the details and a short body; grpc-status only for gRPC", async () => {
    const host = await configured();
    const r = host.request({ method: "DELETE", peer: ORDERS });
    assert.deepEqual(r.localReply, {
      status: 403,
      details: "spiffe_authz_denied[deny-delete]",
      body: new TextEncoder().encode("spiffe-authz: access denied\n"),
      headers: [],
      grpcStatus: null,
    });
    const g = host.request({ method: "POST", path: "/pkg.Svc/M", headers: { "content-type": "application/grpc" } });
    assert.equal(g.localReply?.details, "spiffe_authz_denied[default:no_client_certificate]");
    assert.equal(g.localReply?.grpcStatus, 7);
  });

  it("allows by continuing, with the request headers untouched", async () => {
    const host = await configured();
    const req: HttpRequest = { peer: ORDERS, path: "/a?b=c", headers: { "x-keep": "1" } };
    const r = host.request(req);
    assert.equal(r.headersStatus, 0);
    assert.deepEqual(r.forwardedHeaders, host.prepare({ ...req, requestId: r.forwardedHeaders?.find(([k]) => k === "x-request-id")?.[1] }).headers);
  });

  it("counts allowed and denied requests and reports the rule count", async () => {
    const host = await configured();
    host.request({ peer: ORDERS });
    host.request({ peer: ORDERS });
    host.request({});
    assert.equal(decisions(host, "allow"), 2);
    assert.equal(decisions(host, "deny"), 1);
    assert.equal(host.metric("spiffe_authz.rules"), 2);
  });

  it("does not buffer bodies for a table that never reads them", async () => {
    const host = await configured();
    const id = host.createContext({ peer: ORDERS, method: "POST", body: "payload" });
    assert.equal(host.onRequestHeaders(id, false), 0);
    assert.equal(host.onRequestBody(id, new TextEncoder().encode("payload"), true), 0);
    host.onLog(id);
    host.onDone(id);
    host.onDelete(id);
    assert.equal(host.contextCount(), 1);
  });
});

describe("memory", () => {
  it("does not grow over 100,000 requests after warm-up", async () => {
    const host = await configured();
    const requests = [
      { peer: ORDERS },
      { peer: ORDERS, method: "DELETE" },
      {},
      { peer: "spiffe://example.org/ns/shop/sa/orders/" },
      { peer: "spiffe://other.org/x/y", path: "/long/" + "p".repeat(300) },
      { peer: ORDERS, method: "POST", path: "/pkg.Svc/M", headers: { "content-type": "application/grpc" }, body: "abc" },
    ].map((r) => host.prepare(r as HttpRequest));
    const run = (n: number) => {
      for (let i = 0; i < n; i++) {
        const req = requests[i % requests.length];
        const id = host.createContext(req);
        host.onRequestHeaders(id, req.bodyChunks.length === 0);
        if (req.bodyChunks.length > 0 && host.localReply(id) === null) host.onRequestBody(id, req.bodyChunks[0], true);
        host.onLog(id);
        host.onDone(id);
        host.onDelete(id);
      }
    };
    run(5_000);
    const warm = host.memoryBytes();
    run(100_000);
    assert.equal(host.memoryBytes(), warm);
    assert.equal(host.contextCount(), 1);
    assert.equal(host.failure, null);
    // Sanity: the loop did decide (the counters moved).
    assert.ok((decisions(host, "deny") ?? 0) > 50_000);
  });

  it("keeps explain output stable across many calls (no leak through explain)", async () => {
    const host = await configured();
    let last: RequestResult | null = null;
    for (let i = 0; i < 2_000; i++) last = host.request({ peer: ORDERS });
    const warm = host.memoryBytes();
    for (let i = 0; i < 20_000; i++) last = host.request({ peer: ORDERS });
    assert.equal(host.memoryBytes(), warm);
    assert.equal(last?.explain?.rule, "allow-orders");
  });
});
