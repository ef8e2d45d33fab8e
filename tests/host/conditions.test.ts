// CEL conditions in the shipped filter (build/release.wasm) as Envoy drives it: waiting for the body only when a
// condition needs it, the response details of each body problem and condition failure, chunked bodies, trailers,
// the JWT payload in dynamic metadata, configuration checks of the EXPR section, and memory.
import assert from "node:assert/strict";
import path from "node:path";
import { describe, it } from "node:test";

import { compileTexts } from "../../src/compiler/index.ts";
import { encodeBody, encodeEnvelope, configString } from "../../src/compiler/table.ts";
import { ProxyWasmHost } from "../../src/host/index.ts";
import type { HttpRequest } from "../../src/host/index.ts";
import { grpcFrame, messageEncoder } from "./helpers/grpc-bodies.ts";
import { decisions } from "./helpers/metrics.ts";
import { requireReleaseWasm } from "./helpers/release.ts";
import { ROOT } from "./helpers/fixture.ts";

const wasmPath = requireReleaseWasm();
const PROTO = path.join(ROOT, "tests/cases/conditions-grpc/config_service.proto");
const encode = messageEncoder(PROTO, "demo.config.v1.FetchResourceRequest");
const FETCH = "/demo.config.v1.DynamicResourceService/FetchResource";
const BILLING = "spiffe://config.example.com/app/billing/env/prod";

const POLICY = `apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata: {name: cond}
spec:
  body: {maxBytes: 200}
  rules:
    - id: fetch-own
      to: [{grpc: {service: demo.config.v1.DynamicResourceService, methods: [FetchResource]}}]
      condition: request.grpc.message.appname == source.attributes.app
    - id: json-tenant
      to: [{paths: ["/json"]}]
      condition: request.json.tenant == 'acme'
    - id: count
      to: [{paths: ["/count"]}]
      condition: int(request.headers['x-count']) < 10
    - id: deny-bad-json
      action: deny
      to: [{paths: ["/strict"]}]
      condition: request.json.level > 3.0
    - id: header-only
      to: [{paths: ["/header"]}]
      condition: request.headers['x-tenant'] == 'acme'
`;
const compiled = compileTexts([{ file: "policy.yaml", text: POLICY }], undefined, { protos: [PROTO] });

async function host(config = compiled.config, allowOnHeadersStopIteration = true): Promise<ProxyWasmHost> {
  const h = await ProxyWasmHost.load({ wasmPath, allowOnHeadersStopIteration, logLevel: "info" });
  assert.equal(h.configure(config), true, h.logs.map((l) => l.message).join("\n"));
  return h;
}

const grpc = (body: Uint8Array, peer = BILLING): HttpRequest => ({
  peer, method: "POST", path: FETCH, headers: { "content-type": "application/grpc" }, body,
});
const json = (p: string, body: string | Uint8Array | undefined): HttpRequest => ({
  peer: BILLING, method: "POST", path: p, headers: { "content-type": "application/json" }, body,
});

describe("response details name the rule, or the body problem or failure behind a default deny", () => {
  const own = grpcFrame(encode({ appname: "billing", resource_id: "r" }));
  const cases: [string, HttpRequest, string | null][] = [
    ["own resource", grpc(own), null],
    ["another app's resource", grpc(grpcFrame(encode({ appname: "orders", resource_id: "r" }))), "spiffe_authz_denied[default]"],
    ["appname absent (proto3 default \"\")", grpc(grpcFrame(encode({ resource_id: "r" }))), "spiffe_authz_denied[default]"],
    ["compressed frame", grpc(grpcFrame(encode({ appname: "billing" }), true)), "spiffe_authz_denied[default:grpc_compressed]"],
    ["truncated frame", grpc(own.subarray(0, own.length - 2)), "spiffe_authz_denied[default:grpc_truncated]"],
    ["empty gRPC body", { ...grpc(new Uint8Array(0)), body: undefined, bodyChunks: [new Uint8Array(0)] }, "spiffe_authz_denied[default:grpc_truncated]"],
    ["two messages", grpc(Buffer.concat([own, own])), "spiffe_authz_denied[default:grpc_multiple_messages]"],
    ["oversized body", grpc(grpcFrame(encode({ appname: "billing", resource_id: "x".repeat(300) }))), "spiffe_authz_denied[default:body_too_large]"],
    ["malformed protobuf", grpc(grpcFrame(Uint8Array.from([0x0a, 0x09, 0x62]))), "spiffe_authz_denied[default:protobuf_noncanonical]"],
    ["a protobuf field twice", grpc(grpcFrame(Uint8Array.from([0x0a, 0x01, 0x62, 0x0a, 0x01, 0x62]))), "spiffe_authz_denied[default:protobuf_noncanonical]"],
    ["no body at all", { ...grpc(own), body: undefined }, "spiffe_authz_denied[default]"],
    ["invalid JSON", json("/json", "{\"tenant\":"), "spiffe_authz_denied[default:invalid_json]"],
    ["JSON over the limit", json("/json", JSON.stringify({ tenant: "acme", pad: "p".repeat(300) })), "spiffe_authz_denied[default:body_too_large]"],
    ["JSON allowed", json("/json", "{\"tenant\":\"acme\"}"), null],
    ["a conversion error", { path: "/count", headers: { "x-count": "ten" } }, "spiffe_authz_denied[default:condition_error]"],
    ["an overflow", { path: "/count", headers: { "x-count": "9223372036854775808" } }, "spiffe_authz_denied[default:condition_error]"],
    ["a missing header (no identity either)", { path: "/count" }, "spiffe_authz_denied[default:no_client_certificate]"],
    ["a missing header", { peer: BILLING, path: "/count" }, "spiffe_authz_denied[default]"],
    ["a DENY rule that cannot be evaluated matches (fail closed)", json("/strict", "{}"), "spiffe_authz_denied[deny-bad-json]"],
    ["a DENY rule on invalid JSON matches", json("/strict", "{"), "spiffe_authz_denied[deny-bad-json]"],
    // JSON that is not UTF-8 JSON as sent, or that readers read differently (docs/cel.md "JSON bodies").
    ["JSON in UTF-7", { ...json("/json", '{"tenant":"acme"}'), headers: { "content-type": "application/json; charset=utf-7" } }, "spiffe_authz_denied[default:json_not_utf8]"],
    ["JSON with charset=utf-8 (quoted, any case)", { ...json("/json", '{"tenant":"acme"}'), headers: { "content-type": 'application/json; charset="UTF-8"' } }, null],
    ["a body that is not JSON", { ...json("/json", '{"tenant":"acme"}'), headers: { "content-type": "text/plain" } }, "spiffe_authz_denied[default:json_media_type]"],
    ["a body without a content-type", { ...json("/json", '{"tenant":"acme"}'), headers: {} }, "spiffe_authz_denied[default:json_media_type]"],
    ["two content-type lines", { ...json("/json", '{"tenant":"acme"}'), headers: [["content-type", "application/json"], ["content-type", "application/json"]] }, "spiffe_authz_denied[default:json_media_type]"],
    ["gzip", { ...json("/json", '{"tenant":"acme"}'), headers: { "content-type": "application/json", "content-encoding": "gzip" } }, "spiffe_authz_denied[default:json_content_encoding]"],
    ["content-encoding: identity", { ...json("/json", '{"tenant":"acme"}'), headers: { "content-type": "application/json", "content-encoding": "identity" } }, null],
    ["a byte-order mark", json("/json", '\ufeff{"tenant":"acme"}'), "spiffe_authz_denied[default:json_not_utf8]"],
    ["invalid UTF-8", json("/json", Buffer.from([0x7b, 0x22, 0x74, 0x22, 0x3a, 0x22, 0xc0, 0xaf, 0x22, 0x7d])), "spiffe_authz_denied[default:json_not_utf8]"],
    ["a repeated key", json("/json", '{"tenant":"other","tenant":"acme"}'), "spiffe_authz_denied[default:json_ambiguous]"],
    ["a lone surrogate", json("/json", '{"tenant":"acme\\ud800"}'), "spiffe_authz_denied[default:json_ambiguous]"],
    ["a repeated key nobody reads", json("/json", '{"x":1,"x":2,"tenant":"acme"}'), null],
    ["a DENY rule on a UTF-7 body matches", { ...json("/strict", '{"level":1}'), headers: { "content-type": "application/json; charset=utf-7" } }, "spiffe_authz_denied[deny-bad-json]"],
  ];
  for (const [name, req, details] of cases) {
    it(name, async () => {
      const h = await host();
      const r = h.request(req);
      assert.equal(r.vmFailure, null);
      if (details === null) {
        assert.equal(r.localReply, null, r.explain?.reason);
        assert.equal(r.continued, true);
      } else {
        assert.equal(r.localReply?.details, details, r.explain?.reason);
        // The decision record for the access log carries the same cause as the response details.
        const cause = /^spiffe_authz_denied\[default:(\w+)\]$/.exec(details)?.[1];
        if (cause !== undefined) assert.equal((r.filterState.spiffe_authz as { reason?: string }).reason, cause);
        assert.equal(r.localReply?.status, 403);
        assert.equal(r.continued, false);
      }
    });
  }

  it("gRPC callers get grpc-status 7 on a body deny", async () => {
    const h = await host();
    const r = h.request(grpc(grpcFrame(encode({ appname: "orders" }))));
    assert.equal(r.localReply?.grpcStatus, 7);
  });
});

describe("one gRPC classifier: the body path and the deny path agree on what is gRPC", () => {
  // The media type is case-insensitive and `application/grpc` must end there or go on with `+`, `;` or a space
  // (engine/media-type.ts isGrpcContentType): the same test decides whether the body is read as gRPC frames and
  // whether a denial carries grpc-status.
  const GRPC_TYPES = ["Application/grpc", "APPLICATION/GRPC+proto", "application/grpc; charset=utf-8"];
  const NOT_GRPC_TYPES = ["application/grpcx", "application/grpc-web", "application/gr"];
  const withType = (req: HttpRequest, ct: string): HttpRequest => ({ ...req, headers: { "content-type": ct } });

  for (const ct of GRPC_TYPES) {
    it(`${JSON.stringify(ct)} is gRPC: its body is read as frames and its denial carries grpc-status 7`, async () => {
      const h = await host();
      const own = withType(grpc(grpcFrame(encode({ appname: "billing", resource_id: "r" }))), ct);
      const id = h.createContext(own);
      assert.equal(h.onRequestHeaders(id, false), 1, "the decision waits for the body");
      assert.equal(h.localReply(id), null);
      h.onDelete(id);
      const allowed = h.request(own);
      assert.equal(allowed.localReply, null, allowed.explain?.reason);
      assert.equal(allowed.explain?.rule, "fetch-own");
      // Denied on the body (another app's message) and on the headers (no identity): both gRPC replies.
      const other = h.request(withType(grpc(grpcFrame(encode({ appname: "orders" }))), ct));
      assert.equal(other.localReply?.details, "spiffe_authz_denied[default]");
      assert.equal(other.localReply?.grpcStatus, 7);
      const anonymous = h.request({ ...withType(grpc(new Uint8Array(0)), ct), peer: undefined, body: undefined });
      assert.equal(anonymous.localReply?.details, "spiffe_authz_denied[default:no_client_certificate]");
      assert.equal(anonymous.localReply?.grpcStatus, 7);
    });
  }

  for (const ct of NOT_GRPC_TYPES) {
    it(`${JSON.stringify(ct)} is not gRPC: its body is never read as frames and its denial has no grpc-status`, async () => {
      const h = await host();
      const req = withType(grpc(grpcFrame(encode({ appname: "billing", resource_id: "r" }))), ct);
      const id = h.createContext(req);
      // request.grpc.message is absent without a gRPC content type: nothing to wait for, the default deny now.
      assert.equal(h.onRequestHeaders(id, false), 1);
      assert.equal(h.localReply(id)?.details, "spiffe_authz_denied[default]");
      assert.equal(h.localReply(id)?.grpcStatus, null);
      h.onDelete(id);
      const anonymous = h.request({ ...req, peer: undefined, body: undefined });
      assert.equal(anonymous.localReply?.details, "spiffe_authz_denied[default:no_client_certificate]");
      assert.equal(anonymous.localReply?.grpcStatus, null);
    });
  }
});

describe("waiting for the body", () => {
  it("stops iteration at the headers only when a condition that could decide reads a body of the request's kind", async () => {
    const h = await host();
    const cases: [HttpRequest, boolean][] = [
      [grpc(grpcFrame(encode({ appname: "billing" }))), true],
      [json("/json", "{}"), true],
      // The body is never read for these: no condition on this path reads it, or it is of another kind.
      [{ ...json("/header", "{}"), headers: { "content-type": "application/json", "x-tenant": "acme" } }, false],
      // A body the headers refuse is decided at once, never buffered (next test).
      [{ ...json("/json", "{}"), headers: { "content-type": "text/plain" } }, false],
      [{ ...json("/json", "{}"), headers: { "content-type": "application/json; charset=utf-16" } }, false],
      [{ ...json("/json", "{}"), headers: { "content-type": "application/json", "content-encoding": "br" } }, false],
      [{ ...grpc(new Uint8Array(8)), path: "/demo.config.v1.DynamicResourceService/Other" }, false],
    ];
    for (const [req, waits] of cases) {
      const id = h.createContext(req);
      const status = h.onRequestHeaders(id, false);
      assert.equal(status, waits ? 1 : h.localReply(id) ? 1 : 0, `${req.path} ${JSON.stringify(req.headers)}`);
      if (waits) assert.equal(h.localReply(id), null, "no decision before the body");
      h.onDelete(id);
    }
  });

  it("a JSON body its headers refuse is denied at the headers, before any of it arrives", async () => {
    const h = await host();
    const cases: [Record<string, string>, string][] = [
      [{ "content-type": "application/json; charset=utf-7" }, "spiffe_authz_denied[default:json_not_utf8]"],
      [{ "content-type": "text/plain" }, "spiffe_authz_denied[default:json_media_type]"],
      [{ "content-type": "application/json", "content-encoding": "gzip" }, "spiffe_authz_denied[default:json_content_encoding]"],
    ];
    for (const [headers, details] of cases) {
      const id = h.createContext({ ...json("/json", "{}"), headers });
      assert.equal(h.onRequestHeaders(id, false), 1);
      assert.equal(h.localReply(id)?.details, details, JSON.stringify(headers));
      h.onDelete(id);
    }
    // Without a body (the headers end the stream) there is nothing to refuse: request.json is absent.
    const id = h.createContext({ ...json("/json", undefined), headers: { "content-type": "text/plain" } });
    h.onRequestHeaders(id, true);
    assert.equal(h.localReply(id)?.details, "spiffe_authz_denied[default]");
  });

  it("a table whose conditions never read a body does not buffer one", async () => {
    const t = compileTexts([{ file: "p.yaml", text: "apiVersion: spiffe-authz.dev/v1\nkind: AuthzPolicy\nmetadata: {name: p}\nspec:\n  rules:\n    - condition: request.headers['x-tenant'] == 'acme'\n" }]);
    assert.equal(t.ir.maxBodyBytes, 0);
    const h = await host(t.config);
    const id = h.createContext({ method: "POST", headers: { "x-tenant": "acme", "content-type": "application/json" }, body: "{}" });
    assert.equal(h.onRequestHeaders(id, false), 0);
  });

  it("buffers chunk by chunk (StopIterationAndBuffer) and decides on the whole body at end_of_stream", async () => {
    const h = await host();
    const body = grpcFrame(encode({ appname: "billing", resource_id: "r" }));
    const id = h.createContext({ ...grpc(body), body: undefined, bodyChunks: [body.subarray(0, 3), body.subarray(3, 9), body.subarray(9)] });
    assert.equal(h.onRequestHeaders(id, false), 1);
    assert.equal(h.onRequestBody(id, body.subarray(0, 3), false), 1);
    assert.equal(h.onRequestBody(id, body.subarray(3, 9), false), 1);
    assert.equal(h.explain(id)?.decision, "pending");
    assert.equal(h.onRequestBody(id, body.subarray(9), true), 0);
    assert.equal(h.explain(id)?.rule, "fetch-own");
    assert.equal(decisions(h, "allow"), 1);
  });

  it("denies as soon as the buffered body exceeds the limit, without waiting for its end", async () => {
    const h = await host();
    const id = h.createContext(grpc(new Uint8Array(0)));
    assert.equal(h.onRequestHeaders(id, false), 1);
    assert.equal(h.onRequestBody(id, new Uint8Array(150), false), 1);
    h.onRequestBody(id, new Uint8Array(150), false);
    assert.equal(h.localReply(id)?.details, "spiffe_authz_denied[default:body_too_large]");
  });

  it("request trailers end the body: the decision takes what was buffered", async () => {
    const h = await host();
    const body = grpcFrame(encode({ appname: "billing" }));
    const r = h.request({ ...grpc(body), trailers: { "x-end": "1" } });
    assert.equal(r.continued, true, r.explain?.reason);
    assert.equal(r.explain?.rule, "fetch-own");
  });

  for (const emptyBuffer of ["zero", "untouched"] as const) {
    it(`trailers after an empty body: decided on 0 bytes, never on a stale pointer (empty buffer ${emptyBuffer})`, async () => {
      // Hosts before proxy-wasm-cpp-host 2022 answered Ok without writing the out-parameters for an empty buffer;
      // a filter that trusted them took the header pairs of the previous call as the body and freed them twice.
      const h = await ProxyWasmHost.load({ wasmPath, allowOnHeadersStopIteration: true, emptyBuffer });
      assert.equal(h.configure(compiled.config), true);
      for (let i = 0; i < 200; i++) {
        const r = h.request({ ...json("/json", undefined), trailers: { "x-end": "1" } });
        assert.equal(r.vmFailure, null);
        assert.equal(r.localReply?.details, "spiffe_authz_denied[default:invalid_json]", r.explain?.reason);
        const ok = h.request(json("/json", JSON.stringify({ tenant: "acme" })));
        assert.equal(ok.explain?.rule, "json-tenant", ok.explain?.reason);
      }
      assert.equal(decisions(h, "deny"), 200);
      assert.equal(decisions(h, "allow"), 200);
    });
  }

  it("without allow_on_headers_stop_iteration Envoy withholds the body: the request is never let through", async () => {
    const h = await host(compiled.config, false);
    const r = h.request(grpc(grpcFrame(encode({ appname: "billing" }))));
    assert.equal(r.continued, false);
    assert.equal(r.explain?.decision, "pending");
  });
});

describe("\"headers\": \"continue\" (for an Istio WasmPlugin, without allow_on_headers_stop_iteration)", () => {
  const table = (JSON.parse(compiled.config) as { table: string }).table;
  const continueConfig = JSON.stringify({ headers: "continue", table });
  const own = grpcFrame(encode({ appname: "billing", resource_id: "r" }));
  const foreign = grpcFrame(encode({ appname: "orders", resource_id: "r" }));
  const hex = (b: Uint8Array | null) => (b === null ? null : Buffer.from(b).toString("hex"));

  // The option does not matter to a filter that never stops at the headers: both give the same result.
  for (const allowOnHeadersStopIteration of [false, true]) {
    it(`headers go upstream at once; allowed: the body follows; denied: local reply, no body, upstream reset (option ${allowOnHeadersStopIteration})`, async () => {
      const h = await host(continueConfig, allowOnHeadersStopIteration);
      assert.match(h.logs.map((l) => l.message).join("\n"), /loaded table [0-9a-f]{16} \(5 rules, headers continue\)/);
      const allowed = h.request(grpc(own));
      assert.equal(allowed.headersStatus, 0);
      assert.equal(allowed.continued, true, allowed.explain?.reason);
      assert.equal(allowed.explain?.rule, "fetch-own");
      assert.notEqual(allowed.forwardedHeaders, null);
      assert.equal(hex(allowed.forwardedBody), hex(own));
      assert.equal(allowed.upstreamReset, false);

      const denied = h.request(grpc(foreign));
      assert.equal(denied.headersStatus, 0, "the headers were not held");
      assert.equal(denied.continued, false);
      assert.equal(denied.localReply?.details, "spiffe_authz_denied[default]");
      assert.equal(denied.localReply?.grpcStatus, 7);
      assert.ok(denied.forwardedHeaders?.some(([k, v]) => k === ":path" && v === FETCH), "the upstream saw the headers");
      assert.equal(denied.forwardedBody, null, "and none of the body");
      assert.equal(denied.upstreamReset, true);
    });
  }

  it("holds the body chunk by chunk (StopIterationAndBuffer) and decides at end_of_stream", async () => {
    const h = await host(continueConfig, false);
    const id = h.createContext({ ...grpc(foreign), body: undefined, bodyChunks: [foreign.subarray(0, 4), foreign.subarray(4)] });
    assert.equal(h.onRequestHeaders(id, false), 0);
    assert.equal(h.explain(id)?.reason, "waiting for the request body");
    assert.equal(h.onRequestBody(id, foreign.subarray(0, 4), false), 1);
    assert.equal(h.localReply(id), null);
    assert.equal(h.onRequestBody(id, foreign.subarray(4), true), 3);
    assert.equal(h.localReply(id)?.details, "spiffe_authz_denied[default]");
    assert.equal(decisions(h, "deny"), 1);
  });

  it("a body over the limit is denied as soon as it is, the trailers end a body, and header-only decisions are unchanged", async () => {
    const h = await host(continueConfig, false);
    const big = h.request(grpc(grpcFrame(encode({ appname: "billing", resource_id: "x".repeat(300) }))));
    assert.equal(big.localReply?.details, "spiffe_authz_denied[default:body_too_large]");
    assert.equal(big.forwardedBody, null);
    assert.equal(big.upstreamReset, true);
    const trailers = h.request({ ...grpc(own), trailers: { "x-end": "1" } });
    assert.equal(trailers.continued, true, trailers.explain?.reason);
    assert.equal(hex(trailers.forwardedBody), hex(own));
    // Decided on the headers (no condition reads this body): a deny holds the headers, as in the default mode.
    const onHeaders = h.request({ peer: BILLING, path: "/count", headers: { "x-count": "11" }, body: "ignored" });
    assert.equal(onHeaders.localReply?.details, "spiffe_authz_denied[default]");
    assert.equal(onHeaders.forwardedHeaders, null);
    assert.equal(onHeaders.upstreamReset, false);
  });

  it("the default (hold) mode keeps the headers until the decision: a denied request sends the upstream nothing", async () => {
    const h = await host(compiled.config, true);
    const denied = h.request(grpc(foreign));
    assert.equal(denied.headersStatus, 1);
    assert.equal(denied.localReply?.details, "spiffe_authz_denied[default]");
    assert.equal(denied.forwardedHeaders, null);
    assert.equal(denied.forwardedBody, null);
    assert.equal(denied.upstreamReset, false);
    const allowed = h.request(grpc(own));
    assert.notEqual(allowed.forwardedHeaders, null);
    assert.equal(hex(allowed.forwardedBody), hex(own));
  });

  it("a configuration update does not change the answer of a request already waiting", async () => {
    const h = await host(continueConfig, false);
    const id = h.createContext(grpc(own));
    assert.equal(h.onRequestHeaders(id, false), 0);
    assert.equal(h.configure(compiled.config), true);
    assert.equal(h.onRequestBody(id, own, true), 0);
    assert.equal(h.explain(id)?.rule, "fetch-own");
    const next = h.createContext(grpc(own));
    assert.equal(h.onRequestHeaders(next, false), 1, "the new configuration holds headers");
  });
});

describe("JWT payload from dynamic metadata", () => {
  const jwtPolicy = compileTexts([{ file: "jwt.yaml", text: `apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata: {name: jwt}
spec:
  rules:
    - id: scoped
      to: [{paths: ["/reports"]}]
      condition: "'read' in jwt.claims.scopes && jwt.claims.n == 1.5 && jwt.claims.nested.k == 'v' && jwt.claims.neg == -0.0"
    - id: alice
      from: [{ids: ["spiffe://example.com/user/alice"]}]
` }]);

  it("claims with lists, numbers, nested objects and nulls arrive as Envoy serialises them", async () => {
    const h = await host(jwtPolicy.config);
    // biome-ignore lint/correctness/noPrecisionLoss: 2^53 + 1 rounds as JSON.stringify and the metadata encoder round it
    const jwtPayload = { sub: "x", scopes: ["read", 3, null, { a: [] }], n: 1.5, nested: { k: "v", z: null }, neg: -0, big: 9007199254740993 };
    assert.equal(h.request({ path: "/reports", jwtPayload }).explain?.rule, "scoped");
    assert.equal(h.request({ path: "/reports", jwtPayload: { ...jwtPayload, scopes: ["write"] } }).explain?.rule, null);
    assert.match(h.request({ path: "/reports" }).explain!.reason, /condition failed: no such attribute: 'jwt\.claims'/);
  });

  it("the subject is the principal only without a client certificate, and only when it is a SPIFFE ID", async () => {
    const h = await host(jwtPolicy.config);
    const alice = h.request({ path: "/x", jwtPayload: { sub: "spiffe://example.com/user/alice" } });
    assert.equal(alice.explain?.rule, "alice");
    assert.equal(alice.explain?.principalSource, "jwt");
    assert.equal(alice.explain?.peer.id, "spiffe://example.com/user/alice");
    const both = h.request({ path: "/x", peer: "spiffe://example.com/app/billing", jwtPayload: { sub: "spiffe://example.com/user/alice" } });
    assert.equal(both.explain?.rule, null);
    assert.equal(both.explain?.principalSource, "certificate");
    const notSpiffe = h.request({ path: "/x", jwtPayload: { sub: "alice@example.com" } });
    assert.equal(notSpiffe.explain?.peer.id, null);
    assert.equal(notSpiffe.explain?.principalSource, null);
  });

  it("a client-sent header that looks like a payload is just a header", async () => {
    const h = await host(jwtPolicy.config);
    const r = h.request({ path: "/x", headers: { "x-jwt-payload": JSON.stringify({ sub: "spiffe://example.com/user/alice" }) } });
    assert.equal(r.explain?.rule, null);
  });

  describe("stored under the token's issuer (istiod's payload_in_metadata)", () => {
    const alice = "spiffe://example.com/user/alice";
    const bob = "spiffe://example.com/user/bob";
    const issuer = "https://issuer.example.com";
    const claims = { iss: issuer, sub: alice, scopes: ["read"], n: 1.5, nested: { k: "v" }, neg: -0 };

    it("claims and subject are read from the key equal to the payload's own iss", async () => {
      const h = await host(jwtPolicy.config);
      const reports = h.request({ path: "/reports", jwtPayload: claims, jwtPayloadKey: issuer });
      assert.equal(reports.explain?.rule, "scoped", reports.explain?.reason);
      const principal = h.request({ path: "/x", jwtPayload: claims, jwtPayloadKey: issuer });
      assert.equal(principal.explain?.rule, "alice");
      assert.equal(principal.explain?.principalSource, "jwt");
    });

    it("istiod 1.21+ stores it under the fixed key payload", async () => {
      const h = await host(jwtPolicy.config);
      const reports = h.request({ path: "/reports", jwtPayload: { ...claims, iss: "https://another.example.com" }, jwtPayloadKey: "payload" });
      assert.equal(reports.explain?.rule, "scoped", reports.explain?.reason);
      const principal = h.request({ path: "/x", jwtPayload: claims, jwtPayloadKey: "payload" });
      assert.equal(principal.explain?.rule, "alice");
      assert.equal(principal.explain?.principalSource, "jwt");
    });

    it("another key is not a payload: the key must be the payload's iss, a string", async () => {
      const h = await host(jwtPolicy.config);
      for (const [key, payload] of [
        ["payloads", claims],
        ["https://other.example.com", claims],
        [issuer, { sub: alice, scopes: ["read"] }],
        [issuer, { ...claims, iss: [issuer] }],
        ["", { ...claims, iss: "" }],
      ] as const) {
        const r = h.request({ path: "/reports", jwtPayload: payload as Record<string, unknown>, jwtPayloadKey: key });
        assert.match(r.explain!.reason, /no such attribute: 'jwt\.claims'/, `key ${JSON.stringify(key)}`);
        assert.equal(r.explain?.principalSource, null);
      }
      const notStruct = h.request({ path: "/reports", jwtMetadata: { [issuer]: issuer } });
      assert.match(notStruct.explain!.reason, /no such attribute: 'jwt\.claims'/);
    });

    it("jwt_payload wins when present; among issuer keys, the first in key order, whatever the wire order", async () => {
      const h = await host(jwtPolicy.config);
      const z = "https://z.example.com";
      const a = "https://a.example.com";
      const both = h.request({ path: "/x", jwtMetadata: { [a]: { iss: a, sub: bob }, jwt_payload: { iss: a, sub: alice } } });
      assert.equal(both.explain?.peer.id, alice);
      const two = h.request({ path: "/x", jwtMetadata: { [z]: { iss: z, sub: bob }, [a]: { iss: a, sub: alice } } });
      assert.equal(two.explain?.peer.id, alice);
      assert.equal(two.explain?.rule, "alice");
      const reversed = h.request({ path: "/x", jwtMetadata: { [a]: { iss: a, sub: bob }, [z]: { iss: z, sub: alice } } });
      assert.equal(reversed.explain?.peer.id, bob);
      // Entries jwt_authn writes besides payloads (a JWT header, a failure status) are skipped.
      const mixed = h.request({ path: "/x", jwtMetadata: { header: { alg: "ES256", kid: "k" }, status: { code: 0, message: "" }, [z]: { iss: z, sub: alice } } });
      assert.equal(mixed.explain?.peer.id, alice);
    });
  });
});

describe("request.headers and request.query", () => {
  const q = compileTexts([{ file: "q.yaml", text: `apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata: {name: q}
spec:
  rules:
    - id: no-admin
      action: deny
      to: [{paths: ["/h"]}]
      condition: request.headers['x-role'] == 'admin'
    - id: no-admin-query
      action: deny
      to: [{paths: ["/q"]}]
      condition: "'role' in request.query && request.query.role == 'admin'"
    - id: one-line
      to: [{paths: ["/h"]}]
      condition: request.headers['x-role'] == 'a,b' && request.headers[':method'] == 'GET' && request.headers['x-' + 'role'] == 'a,b'
    - id: query
      to: [{paths: ["/q"]}]
      condition: request.query['a b'] == 'c&d' && request.query.t == '1' && size(request.query) == 3 && request.query.e == ''
` }]);

  it("one header line is one value; pseudo-headers are in the map; computed keys work", async () => {
    const h = await host(q.config);
    assert.equal(h.request({ path: "/h", headers: [["x-role", "a,b"]] }).explain?.rule, "one-line");
  });

  it("a header sent on several lines has no value a condition decides on: a DENY matches, an ALLOW does not", async () => {
    const h = await host(q.config);
    // Joined with "," the lines read "adminx,admin" and slipped past the DENY; an upstream reading the last line
    // saw "admin".
    const split = h.request({ path: "/h", headers: [["x-role", "adminx"], ["x-role", "admin"]] });
    assert.equal(split.explain?.rule, "no-admin");
    assert.match(split.explain!.reason, /condition error: unsupported: request header sent on several lines/);
    const ab = h.request({ path: "/h", headers: [["x-role", "a"], ["x-role", "b"]] });
    assert.equal(ab.explain?.decision, "deny");
  });

  it("query parameters are percent-decoded; repeated, bracketed or '+' parameters are refused", async () => {
    const h = await host(q.config);
    assert.equal(h.request({ path: "/q?a%20b=c%26d&t=1&e" }).explain?.rule, "query");
    for (const path of [
      "/q?role=adminx&role=admin", // frameworks take the first, the last or a list
      "/q?role%5B%5D=admin", // qs: role = ['admin'], and ['admin'] == 'admin' in JavaScript
      "/q?role[x]=admin",
      "/q?role=admin+", // form decoding reads "admin " and RFC 3986 "admin+"
      "/q?role=%FF", // not UTF-8 once decoded
    ]) {
      const r = h.request({ path });
      assert.equal(r.explain?.rule, "no-admin-query", path);
      assert.match(r.explain!.reason, /query parameter repeated, in bracket form/, path);
    }
    assert.equal(h.request({ path: "/q?a%20b=c%26d&t=1&t=2&e" }).explain?.decision, "deny");
  });
});


describe("configuration of the EXPR section", () => {
  /** The compiled table's body with `patch` applied, re-enveloped. */
  function patched(patch: (body: Buffer, dir: Map<number, { offset: number; length: number }>) => void): string {
    const body = Buffer.from(encodeBody(compiled.ir));
    const dir = new Map<number, { offset: number; length: number }>();
    for (let i = 0, n = body.readUInt32LE(0); i < n; i++) {
      dir.set(body.readUInt32LE(4 + 12 * i), { offset: body.readUInt32LE(8 + 12 * i), length: body.readUInt32LE(12 + 12 * i) });
    }
    patch(body, dir);
    return configString(encodeEnvelope(body));
  }
  const rejected = async (config: string): Promise<string> => {
    const h = await ProxyWasmHost.load({ wasmPath });
    assert.equal(h.configure(config), false);
    return h.logs.map((l) => l.message).find((m) => m.includes("rejected configuration"))!.replace(/^.*rejected configuration: /, "");
  };

  it("rejects a rule that names a program the section does not have", async () => {
    const why = await rejected(patched((b, d) => b.writeUInt32LE(99, d.get(3)!.offset + 36)));
    assert.equal(why, "table: family 0: expr 99 exceeds the 5 programs of EXPR");
  });

  it("rejects a program the engine's validator refuses, naming the defect", async () => {
    // The first program's first opcode (after version, paths and the program header) made unknown.
    const why = await rejected(patched((b, d) => {
      const e = d.get(15)!;
      const text = b.subarray(e.offset, e.offset + e.length);
      const at = text.indexOf(Buffer.from([0x3f])); // a RETURN: replace it with an unknown opcode
      b[e.offset + at] = 0xee;
    }));
    assert.match(why, /^table: EXPR: /);
  });

  it("rejects body settings that do not match what the programs read", async () => {
    const why = await rejected(patched((b, d) => b.writeUInt32LE(0, d.get(2)!.offset + 4)));
    assert.equal(why, "table: meta: maxBodyBytes is 0, but a condition reads the request body");
  });
});

describe("memory", () => {
  it("does not grow over 50,000 requests that buffer bodies and evaluate conditions", async () => {
    const h = await host();
    const reqs = [
      grpc(grpcFrame(encode({ appname: "billing", resource_id: "r" }))),
      grpc(grpcFrame(encode({ appname: "orders" }))),
      grpc(grpcFrame(encode({ appname: "billing" }), true)),
      json("/json", "{\"tenant\":\"acme\",\"x\":[1,2,{\"y\":\"\\u00e9\"}]}"),
      json("/json", "{\"tenant\":"),
      { path: "/count", headers: { "x-count": "5" } },
      { path: "/h?x=%41", jwtPayload: { sub: "spiffe://example.com/user/alice", scopes: ["a"] } },
    ].map((r) => h.prepare(r));
    const run = (n: number) => {
      for (let i = 0; i < n; i++) h.request(reqs[i % reqs.length]);
    };
    run(3_000);
    const warm = h.memoryBytes();
    run(50_000);
    assert.equal(h.memoryBytes(), warm);
    assert.equal(h.contextCount(), 1);
    assert.ok((decisions(h, "allow") ?? 0) > 10_000);
    assert.ok((decisions(h, "deny") ?? 0) > 10_000);
  });
});
