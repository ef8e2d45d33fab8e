// The configuration service example, end to end: examples/config-service/ (proto, policy, gRPC server) behind a
// real Envoy 1.40 with mTLS and the real filter, called by real gRPC clients (@grpc/grpc-js) whose client
// certificates carry SPIFFE IDs. The table comes from the real `spiffe-authz compile --proto`.
//
// Every outcome is checked on three sides: what the client got, what Envoy logged (response code details name the
// rule or reason; `upstream=-` when the request never left Envoy) and what the server recorded. Envoy's
// `cluster.upstream_grpc.upstream_rq_total` shows that a denied call did not even open a stream to the server:
// with allow_on_headers_stop_iteration the headers wait in Envoy while the filter reads the body.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { DEFAULT_MAX_BODY_BYTES } from "../../src/compiler/index.ts";
import { repoRoot } from "../../dev/envoy/binary.ts";
import { eventually, explainFailure, startAuthzEnvoy } from "../support/envoy-fixture.ts";
import type { AuthzEnvoy } from "../support/envoy-fixture.ts";
import type { AccessLogEntry } from "../../src/envoy/render.ts";
import { compileWithCli, wasmPluginConfigWithCli } from "../support/compile-cli.ts";
import { configFor, dynamicResourceService, fetchResourcePath, startConfigService } from "../../examples/config-service/server.ts";
import type { ConfigService, FetchOptions, FetchResourceRequest } from "../../examples/config-service/server.ts";
import { fetchResource } from "../../examples/config-service/client.ts";
import type { FetchResult } from "../../examples/config-service/client.ts";

const exampleDir = join(repoRoot, "examples", "config-service");
const td = "config.example.com";
const callers = {
  "billing-prod": `spiffe://${td}/app/billing/env/prod`,
  "orders-prod": `spiffe://${td}/app/orders/env/prod`,
  "billing-staging": `spiffe://${td}/app/billing/env/staging`,
} as const;
type Caller = keyof typeof callers;

// The example policy leaves spec.body.maxBytes at its default.
const bodyLimitBytes = DEFAULT_MAX_BODY_BYTES;
// Response details of a default deny name the body problem that kept the ALLOW rule's condition from holding.
const oversizedReason = /^spiffe_authz_denied\[default:body_too_large\]$/;
const compressedReason = /^spiffe_authz_denied\[default:grpc_compressed\]$/;
const noncanonicalReason = /^spiffe_authz_denied\[default:protobuf_noncanonical\]$/;

// Request messages built byte by byte: each is read one way by protobufjs (what the grpc-js server decodes with,
// through @grpc/proto-loader) and another way by a reader that takes the encoding at its word (what the filter did
// before it refused such messages).
const ascii = (s: string) => [...Buffer.from(s)];
const bypasses = {
  // A tag as a 6-byte varint: protobufjs reads 5 bytes and skips 5 more. A reader that takes the 6 bytes sees
  // resource_id "xxx", appname "billing", and an unknown field 15 hiding appname "orders"; protobufjs sees a
  // resource_id that swallowed "billing", then appname "orders".
  "a 6-byte field tag": [0x92, 0x80, 0x80, 0x80, 0x80, 0x00, 3, ...ascii("xxx"), 0x0a, 7, ...ascii("billing"), 0x7a, 8, 0x0a, 6, ...ascii("orders")],
  // resource_id (a string) with wire type 0: a reader that skips a varint sees appname "billing" and field 15
  // hiding "orders"; protobufjs reads a string of that length, which swallows "billing", then appname "orders".
  "a string field with wire type 0": [0x10, 11, 0x0a, 7, ...ascii("billing"), 0x7a, 8, 0x0a, 6, ...ascii("orders")],
  // options twice, {redacted: true} then {format: "json"}: merged (the protobuf spec, protobuf-es) it is redacted;
  // protobufjs keeps the last one only, so the server answers orders' full configuration.
  "a singular message field twice": [0x0a, 6, ...ascii("orders"), 0x12, 5, ...ascii("twice"), 0x1a, 2, 0x08, 0x01, 0x1a, 6, 0x12, 4, ...ascii("json")],
} as const;

function assertDenied(result: FetchResult): asserts result is Extract<FetchResult, { ok: false }> {
  assert.equal(result.ok, false, `expected PERMISSION_DENIED, got ${JSON.stringify(result)}`);
  if (result.ok) return;
  assert.equal(result.code, grpc.status.PERMISSION_DENIED, `expected PERMISSION_DENIED, got ${result.codeName}: ${result.details}`);
}

describe("config service example: RBAC on the caller, ABAC on the gRPC message", () => {
  let service: ConfigService;
  let env: AuthzEnvoy;

  before(async () => {
    const [configuration, started] = await Promise.all([
      compileWithCli([join(exampleDir, "policy.yaml")], { protos: [join(exampleDir, "config_service.proto")] }),
      startConfigService(),
    ]);
    service = started;
    env = await startAuthzEnvoy({
      variant: "mtls",
      trustDomain: td,
      clients: Object.entries(callers).map(([name, uri]) => ({ name, uri })),
      configuration,
      grpcUpstream: { port: service.port },
    });
  });
  after(async () => {
    await env?.close();
    await service?.close();
  });

  const call = (caller: Caller, appname: string, resourceId: string, extra: { compression?: "gzip"; options?: FetchOptions } = {}) =>
    fetchResource({
      port: env.port,
      caFile: env.pki.ca.cert,
      certFile: env.pki.clients[caller].cert,
      keyFile: env.pki.clients[caller].key,
      request: { appname, resource_id: resourceId, ...(extra.options ? { options: extra.options } : {}) },
      compression: extra.compression,
    });
  /** A FetchResource call whose request message is `message`, byte for byte (grpc-js only frames it). */
  const callRaw = (caller: Caller, message: readonly number[]) =>
    new Promise<FetchResult>((resolve) => {
      const credentials = grpc.credentials.createSsl(
        readFileSync(env.pki.ca.cert), readFileSync(env.pki.clients[caller].key), readFileSync(env.pki.clients[caller].cert),
      );
      const client = new grpc.Client(`127.0.0.1:${env.port}`, credentials, { "grpc.ssl_target_name_override": "localhost" });
      const { responseDeserialize } = dynamicResourceService().service.FetchResource;
      client.makeUnaryRequest(
        fetchResourcePath, (b: Buffer) => b, (b: Buffer) => responseDeserialize(b) as { data: string }, Buffer.from(message),
        new grpc.Metadata(), { deadline: Date.now() + 10_000 },
        (err, response) => {
          client.close();
          if (err || !response) resolve({ ok: false, code: err!.code, codeName: grpc.status[err!.code], details: err!.details, metadata: {} });
          else resolve({ ok: true, data: response.data });
        },
      );
    });
  /** Streams Envoy opened to the config service so far. */
  const upstreamStreams = async () => (await env.envoy.stat("cluster.upstream_grpc.upstream_rq_total")) ?? 0;
  const seen = (resourceId: string) => service.calls.filter((c) => c.resourceId === resourceId);
  const logLine = (caller: Caller) => env.envoy.waitForAccessLog((e) => e.path === fetchResourcePath && e.peer === callers[caller]);

  test("a prod caller fetching its own configuration gets it; the server saw the call from the verified peer", () =>
    explainFailure(env.envoy, async () => {
      const streamsBefore = await upstreamStreams();
      const billing = await call("billing-prod", "billing", "own-1");
      assert.deepEqual(billing, { ok: true, data: configFor("billing", "own-1") });
      const orders = await call("orders-prod", "orders", "own-2");
      assert.deepEqual(orders, { ok: true, data: configFor("orders", "own-2") });
      assert.equal(seen("own-1").length, 1);
      assert.match(String(seen("own-1")[0].forwardedClientCert), new RegExp(`URI=${callers["billing-prod"]}$`));
      assert.equal(seen("own-2").length, 1);
      assert.equal((await upstreamStreams()) - streamsBefore, 2);
      const line = await env.envoy.waitForAccessLog((e) => e.path === fetchResourcePath && e.peer === callers["billing-prod"]);
      assert.equal(line.protocol, "HTTP/2");
      assert.equal(line.details, "via_upstream");
      assert.equal(line.grpcStatus, 0);
      assert.notEqual(line.upstream, null);
    }));

  test("a prod caller asking for another app's configuration gets PERMISSION_DENIED from the proxy; the server never sees it", () =>
    explainFailure(env.envoy, async () => {
      const streamsBefore = await upstreamStreams();
      const result = await call("billing-prod", "orders", "foreign-1");
      assertDenied(result);
      assert.deepEqual(seen("foreign-1"), []);
      assert.equal(await upstreamStreams(), streamsBefore, "Envoy opened no stream to the config service");
      const line = await env.envoy.waitForAccessLog(
        (e) => e.path === fetchResourcePath && e.peer === callers["billing-prod"] && e.grpcStatus === 7,
      );
      assert.equal(line.upstream, null);
      // The RBAC part allowed billing (env=prod); the ABAC condition did not hold, so no ALLOW rule matched.
      assert.equal(line.details, "spiffe_authz_denied[default]");
    }));

  test("another app's configuration redacted (options.redacted) is allowed; the server answers it redacted", () =>
    explainFailure(env.envoy, async () => {
      const result = await call("billing-prod", "orders", "redacted-1", { options: { redacted: true } });
      assert.deepEqual(result, { ok: true, data: configFor("orders", "redacted-1", { redacted: true }) });
      assert.deepEqual(seen("redacted-1").map((c) => [c.appname, c.redacted]), [["orders", true]]);
    }));

  for (const [name, bytes] of Object.entries(bypasses)) {
    test(`a message protobufjs reads differently (${name}) is denied by the proxy; the server never sees it`, () =>
      explainFailure(env.envoy, async () => {
        // What the server would make of it: billing would get orders' full configuration.
        const asServerReads = dynamicResourceService().service.FetchResource.requestDeserialize(Buffer.from(bytes)) as FetchResourceRequest;
        assert.equal(asServerReads.appname, "orders");
        assert.notEqual(asServerReads.options?.redacted, true);
        const streamsBefore = await upstreamStreams();
        const callsBefore = service.calls.length;
        const isThisDeny = (e: AccessLogEntry) =>
          e.path === fetchResourcePath && e.peer === callers["billing-prod"] && e.grpcStatus === 7 && noncanonicalReason.test(e.details);
        const linesBefore = env.envoy.accessLog().filter(isThisDeny).length;
        const result = await callRaw("billing-prod", bytes);
        assertDenied(result);
        assert.equal(service.calls.length, callsBefore, "the server received no call");
        assert.equal(await upstreamStreams(), streamsBefore, "Envoy opened no stream to the config service");
        await eventually("the access log line of this denial", async () => env.envoy.accessLog().filter(isThisDeny).length === linesBefore + 1);
        assert.equal(env.envoy.accessLog().filter(isThisDeny).at(-1)!.upstream, null);
      }));
  }

  test("a caller from env staging is denied by the RBAC rule, even for its own app's configuration", () =>
    explainFailure(env.envoy, async () => {
      const streamsBefore = await upstreamStreams();
      const result = await call("billing-staging", "billing", "staging-1");
      assertDenied(result);
      assert.deepEqual(seen("staging-1"), []);
      assert.equal(await upstreamStreams(), streamsBefore);
      const line = await logLine("billing-staging");
      assert.equal(line.grpcStatus, 7);
      assert.equal(line.upstream, null);
      assert.equal(line.details, "spiffe_authz_denied[prod-only]");
    }));

  test("a message over the body limit is denied with the reason in the response details; the server never sees it", () =>
    explainFailure(env.envoy, async () => {
      const streamsBefore = await upstreamStreams();
      // billing asks for its own configuration: only the size can make the proxy say no.
      const resourceId = `big-${"x".repeat(bodyLimitBytes + 1024)}`;
      const result = await call("billing-prod", "billing", resourceId);
      assertDenied(result);
      assert.deepEqual(seen(resourceId), []);
      assert.equal(await upstreamStreams(), streamsBefore);
      const line = await env.envoy.waitForAccessLog(
        (e) => e.path === fetchResourcePath && e.peer === callers["billing-prod"] && e.grpcStatus === 7 && oversizedReason.test(e.details),
      );
      assert.equal(line.upstream, null);
    }));

  test("a compressed message (grpc-encoding gzip) is denied with the reason in the response details; the server never sees it", () =>
    explainFailure(env.envoy, async () => {
      const streamsBefore = await upstreamStreams();
      // Allowed when sent uncompressed (first test): the compression alone makes the proxy say no.
      const result = await call("billing-prod", "billing", "gzip-1", { compression: "gzip" });
      assertDenied(result);
      assert.deepEqual(seen("gzip-1"), []);
      assert.equal(await upstreamStreams(), streamsBefore);
      const line = await env.envoy.waitForAccessLog(
        (e) => e.path === fetchResourcePath && e.peer === callers["billing-prod"] && e.grpcStatus === 7 && compressedReason.test(e.details),
      );
      assert.equal(line.upstream, null);
    }));
});

// What happens under an Istio WasmPlugin (docs/istio-bodies.md): it cannot set allow_on_headers_stop_iteration, so
// `spiffe-authz compile --emit wasmplugin` puts the filter in `"headers": "continue"` mode, and this suite runs the
// WasmPlugin's own pluginConfig in an Envoy 1.40 without the option. A call the body rule must decide has its
// headers sent on at once (Envoy opens the stream to the server) while the filter holds the body; allowed, the body
// follows; denied, the caller gets the local reply and Envoy resets the upstream stream: the server saw headers and
// a reset, never the message, and its handler never ran. Decisions on the headers alone still hold the headers.
describe("config service example under an Istio WasmPlugin: no allow_on_headers_stop_iteration, \"headers\": \"continue\"", () => {
  let service: ConfigService;
  let env: AuthzEnvoy;

  before(async () => {
    const [configuration, started] = await Promise.all([
      wasmPluginConfigWithCli([join(exampleDir, "policy.yaml")], { protos: [join(exampleDir, "config_service.proto")] }),
      startConfigService(),
    ]);
    assert.equal((JSON.parse(configuration) as { headers?: string }).headers, "continue");
    service = started;
    env = await startAuthzEnvoy({
      variant: "mtls",
      trustDomain: td,
      clients: [
        { name: "billing-prod", uri: callers["billing-prod"] },
        { name: "billing-staging", uri: callers["billing-staging"] },
      ],
      configuration,
      grpcUpstream: { port: service.port },
      allowOnHeadersStopIteration: false,
    });
  });
  after(async () => {
    await env?.close();
    await service?.close();
  });

  /** Each call carries its own id as metadata: the server records it with the stream even when no message came. */
  const call = (caller: Caller, appname: string, callId: string, resourceId = callId) =>
    fetchResource({
      port: env.port,
      caFile: env.pki.ca.cert,
      certFile: env.pki.clients[caller].cert,
      keyFile: env.pki.clients[caller].key,
      request: { appname, resource_id: resourceId },
      metadata: { "x-call-id": callId },
      timeoutMs: 5000,
    });
  const streamsOf = (callId: string) => service.streams.filter((s) => s.metadata["x-call-id"] === callId);
  // Envoy 1.40 sends the headers on as soon as the filter continues, on an upstream connection that is up. On a cold
  // one the filter may decide (the body arrives with the headers) before the connection is: Envoy then cancels the
  // pending stream and the server sees nothing at all. A sidecar's connection to its app is normally up; the tests
  // of what the server sees make sure it is.
  let warmCalls = 0;
  const warmUpstream = async () => {
    const id = `wp-warm-${++warmCalls}`;
    assert.deepEqual(await call("billing-prod", "billing", id), { ok: true, data: configFor("billing", id) });
  };
  const stat = async (name: string) => (await env.envoy.stat(name)) ?? 0;
  const upstreamStreams = () => stat("cluster.upstream_grpc.upstream_rq_total");

  test("an allowed call completes: the message follows the headers to the server", () =>
    explainFailure(env.envoy, async () => {
      const result = await call("billing-prod", "billing", "wp-own-1");
      assert.deepEqual(result, { ok: true, data: configFor("billing", "wp-own-1") });
      assert.equal(service.calls.filter((c) => c.resourceId === "wp-own-1").length, 1);
      const [stream] = streamsOf("wp-own-1");
      assert.equal(stream.messages, 1);
      assert.equal(stream.status, grpc.status.OK);
      const line = await env.envoy.waitForAccessLog((e) => e.path === fetchResourcePath && e.details === "via_upstream");
      assert.equal(line.grpcStatus, 0);
    }));

  test("a call the body rule denies gets PERMISSION_DENIED; the server saw its headers and a reset, never the message", () =>
    explainFailure(env.envoy, async () => {
      await warmUpstream();
      const streamsBefore = await upstreamStreams();
      const resetsBefore = await stat("cluster.upstream_grpc.upstream_rq_tx_reset");
      const result = await call("billing-prod", "orders", "wp-foreign-1");
      assertDenied(result);
      // The server's gRPC layer got the stream (the headers went upstream before the decision)...
      await eventually("the server to see the stream reset", async () => streamsOf("wp-foreign-1")[0]?.cancelled === true);
      const [stream] = streamsOf("wp-foreign-1");
      assert.equal(streamsOf("wp-foreign-1").length, 1);
      // ...but not one message: its handler never ran, and it never answered.
      assert.equal(stream.messages, 0);
      assert.equal(stream.status, null);
      assert.deepEqual(service.calls.filter((c) => c.resourceId === "wp-foreign-1"), []);
      assert.equal((await upstreamStreams()) - streamsBefore, 1, "Envoy opened a stream to the config service");
      assert.equal((await stat("cluster.upstream_grpc.upstream_rq_tx_reset")) - resetsBefore, 1, "and reset it");
      const line = await env.envoy.waitForAccessLog(
        (e) => e.path === fetchResourcePath && e.grpcStatus === 7 && e.details === "spiffe_authz_denied[default]",
      );
      assert.notEqual(line.upstream, null, "the router had picked the upstream host");
    }));

  test("a message over the body limit is denied as soon as the limit is passed; the server never gets the message", () =>
    explainFailure(env.envoy, async () => {
      await warmUpstream();
      const resourceId = `big-${"x".repeat(bodyLimitBytes + 1024)}`;
      const result = await call("billing-prod", "billing", "wp-big-1", resourceId);
      assertDenied(result);
      await eventually("the server to see the stream reset", async () => streamsOf("wp-big-1")[0]?.cancelled === true);
      assert.equal(streamsOf("wp-big-1")[0].messages, 0);
      assert.deepEqual(service.calls.filter((c) => c.resourceId === resourceId), []);
      await env.envoy.waitForAccessLog((e) => e.path === fetchResourcePath && e.grpcStatus === 7 && oversizedReason.test(e.details));
    }));

  test("a call denied on the headers alone (RBAC) still never leaves Envoy", () =>
    explainFailure(env.envoy, async () => {
      const streamsBefore = await upstreamStreams();
      const result = await call("billing-staging", "billing", "wp-staging-1");
      assertDenied(result);
      const line = await env.envoy.waitForAccessLog((e) => e.path === fetchResourcePath && e.peer === callers["billing-staging"]);
      assert.equal(line.details, "spiffe_authz_denied[prod-only]");
      assert.equal(line.upstream, null);
      assert.deepEqual(streamsOf("wp-staging-1"), []);
      assert.equal(await upstreamStreams(), streamsBefore);
    }));
});
