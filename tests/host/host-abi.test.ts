// The host against the proxy-wasm ABI, using the AssemblyScript fixture tests/host/fixtures/echo.ts, which
// logs every answer the host gives. Expected values come from Envoy 1.40 / proxy-wasm-cpp-host behaviour.
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";

import {
  ModuleLoadError, ProxyWasmHost, VmFailedError, encodePairs,
} from "../../src/host/index.ts";
import type { HttpRequest, LoadOptions } from "../../src/host/index.ts";
import { buildFixture } from "./helpers/fixture.ts";

let wasmPath = "";

before(() => {
  wasmPath = buildFixture();
});

async function load(opts: LoadOptions = {}): Promise<ProxyWasmHost> {
  return ProxyWasmHost.load({ wasmPath, logLevel: "trace", ...opts });
}

/** The fixture's `fx: ...` lines (without the prefix), optionally for one context. */
function fx(host: ProxyWasmHost, contextId?: number): string[] {
  return host.logs
    .filter((l) => l.message.startsWith("fx: ") && (contextId === undefined || l.contextId === contextId))
    .map((l) => l.message.slice(4));
}

function script(ops: string[], extra: Partial<HttpRequest> = {}): HttpRequest {
  const given = extra.headers ?? [];
  const headers: [string, string][] = Array.isArray(given) ? given.slice() : Object.entries(given);
  headers.push(["x-script", ops.join(";")]);
  return { ...extra, headers };
}

function hexOf(s: string): string {
  return Buffer.from(s, "utf8").toString("hex");
}

function run(host: ProxyWasmHost, ops: string[], extra: Partial<HttpRequest> = {}) {
  host.clearLogs();
  const r = host.request(script(ops, extra));
  return { r, lines: fx(host, r.contextId) };
}

describe("lifecycle", () => {
  it("starts like envoy: root context create, vm start with the vm configuration, then configure", async () => {
    const host = await load({ vmConfig: "vm-config" });
    assert.deepEqual(fx(host), ["create 1 0", "vm_start 1 9 0 vm-config"]);
    assert.equal(host.configure("plugin-config"), true);
    assert.equal(fx(host).at(-1), "configure 1 13 0 plugin-config");
  });

  it("runs a request as create, headers, log, done, explain, delete and forgets the context", async () => {
    const host = await load();
    host.configure("x");
    const { r, lines } = run(host, []);
    const id = r.contextId;
    assert.equal(id, 2);
    // 6 headers: :authority :path :method :scheme x-script x-forwarded-proto x-request-id -> 7; no body -> eos 1
    assert.deepEqual(lines, [`create ${id} 1`, `headers ${id} 7 1`, `log ${id}`, `done ${id}`, `delete ${id}`]);
    assert.equal(r.continued, true);
    assert.equal(r.localReply, null);
    assert.equal(r.explain?.reason, `fixture context ${id}`);
    assert.equal(host.contextCount(), 1);
    const next = run(host, []);
    assert.equal(next.r.contextId, id + 1);
  });

  it("delivers the body after headers that continue, with end_of_stream on the last call", async () => {
    const host = await load();
    host.clearLogs();
    const r = host.request({ method: "POST", body: "hello" });
    const lines = fx(host, r.contextId);
    // :authority :path :method :scheme content-length x-forwarded-proto x-request-id; a body follows -> eos 0
    assert.equal(lines[1], `headers ${r.contextId} 7 0`);
    assert.equal(lines[2], `body ${r.contextId} 5 1 0 hello`);
    assert.equal(r.continued, true);
    assert.deepEqual(r.forwardedHeaders?.find(([k]) => k === "content-length"), ["content-length", "5"]);
  });

  it("appends buffered chunks when the filter answers StopIterationAndBuffer", async () => {
    const host = await load();
    host.clearLogs();
    const enc = new TextEncoder();
    const r = host.request({
      method: "POST",
      bodyChunks: [enc.encode("ab"), enc.encode("cd")],
      headers: { "x-script": "on body return 1" },
    });
    const lines = fx(host, r.contextId).filter((l) => l.startsWith("body"));
    // First chunk buffered (StopIterationAndBuffer = 1); the second call sees the whole buffer.
    assert.deepEqual(lines, [`body ${r.contextId} 2 0 0 ab`, `body ${r.contextId} 4 1 0 abcd`]);
    assert.equal(r.continued, true);
  });

  it("turns StopIteration from headers into StopAllIteration: no body reaches the filter", async () => {
    const host = await load();
    const { r, lines } = run(host, ["return 1"], { method: "POST", body: "x" });
    assert.equal(r.headersStatus, 1);
    assert.equal(lines.some((l) => l.startsWith("body")), false);
    assert.equal(r.continued, false);
    assert.equal(r.localReply, null);
  });

  it("keeps StopIteration with allowOnHeadersStopIteration, and continues when the body does", async () => {
    const host = await load({ allowOnHeadersStopIteration: true });
    const { r, lines } = run(host, ["return 1"], { method: "POST", body: "x" });
    assert.ok(lines.includes(`body ${r.contextId} 1 1 0 x`));
    assert.equal(r.continued, true);
  });

  it("resumes a stopped stream with proxy_continue_stream", async () => {
    const host = await load({ allowOnHeadersStopIteration: true });
    const { r, lines } = run(host, ["return 1", "on body continue 0,return 1"], { method: "POST", body: "x" });
    assert.ok(lines.includes("continue = 0"));
    assert.equal(r.continued, true);
  });

  it("delivers trailers after the body without ending the stream on the body", async () => {
    const host = await load();
    host.clearLogs();
    const r = host.request({ method: "POST", body: "b", trailers: { "grpc-x": "1" } });
    const lines = fx(host, r.contextId);
    assert.ok(lines.includes(`body ${r.contextId} 1 0 0 b`));
    assert.ok(lines.includes(`trailers ${r.contextId} 1`));
  });
});

describe("properties", () => {
  it("serialises strings raw, bools as one byte and ints as 8 little-endian bytes", async () => {
    const host = await load();
    const { lines } = run(host, [
      "prop connection.uri_san_peer_certificate", "prop connection.mtls", "prop destination.port",
      "propstr source.address", "prop source.port", "propstr connection.requested_server_name",
      "propstr plugin_root_id", "propstr request.protocol",
    ], { peer: "spiffe://example.org/ns/a/sa/b", port: 8443 });
    assert.deepEqual(lines.filter((l) => l.startsWith("prop")), [
      `prop connection.uri_san_peer_certificate = 0 ${hexOf("spiffe://example.org/ns/a/sa/b")}`,
      "prop connection.mtls = 0 01",
      "prop destination.port = 0 fb20000000000000",
      "propstr source.address = 0 10.0.0.2:40000",
      "prop source.port = 0 409c000000000000",
      "propstr connection.requested_server_name = 0 localhost",
      "propstr plugin_root_id = 0 spiffe-authz",
      "propstr request.protocol = 0 HTTP/2",
    ]);
  });

  it("answers NotFound for the peer's URI SAN without a client certificate, and mtls false", async () => {
    const host = await load();
    const { lines } = run(host, ["prop connection.uri_san_peer_certificate", "prop connection.mtls"]);
    assert.deepEqual(lines.filter((l) => l.startsWith("prop")), [
      "prop connection.uri_san_peer_certificate = 1", "prop connection.mtls = 0 00",
    ]);
  });

  it("models a client certificate without a URI SAN and a plaintext connection", async () => {
    const host = await load();
    const cert = run(host, ["prop connection.uri_san_peer_certificate", "prop connection.mtls"], { mtls: true });
    assert.deepEqual(cert.lines.filter((l) => l.startsWith("prop")), [
      "prop connection.uri_san_peer_certificate = 1", "prop connection.mtls = 0 01",
    ]);
    const plain = run(host, ["prop connection.uri_san_peer_certificate", "prop connection.mtls",
      "propstr connection.tls_version", "propstr connection.requested_server_name"], { peer: "spiffe://x/y", tls: false });
    assert.deepEqual(plain.lines.filter((l) => l.startsWith("prop")), [
      "prop connection.uri_san_peer_certificate = 1", "prop connection.mtls = 0 00",
      "propstr connection.tls_version = 1", "propstr connection.requested_server_name = 0 ",
    ]);
  });

  it("has no SNI for an IP authority and the given SNI otherwise", async () => {
    const host = await load();
    const ip = run(host, ["propstr connection.requested_server_name"], { authority: "10.1.2.3:8443" });
    assert.ok(ip.lines.includes("propstr connection.requested_server_name = 0 "));
    const sni = run(host, ["propstr connection.requested_server_name"], { sni: "api.example.com" });
    assert.ok(sni.lines.includes("propstr connection.requested_server_name = 0 api.example.com"));
  });

  it("reads request attributes from the current header map, joining repeated headers with commas", async () => {
    const host = await load();
    const { lines } = run(host, ["propstr request.path", "propstr request.url_path", "propstr request.query",
      "propstr request.method", "propstr request.host", "propstr request.headers.x-multi", "propstr request.headers.absent"], {
      path: "/a/b?x=1#f", method: "PUT", authority: "svc:8080",
      headers: [["x-multi", "a"], ["X-Multi", "b"]],
    });
    assert.deepEqual(lines.filter((l) => l.startsWith("prop")), [
      "propstr request.path = 0 /a/b?x=1#f", "propstr request.url_path = 0 /a/b", "propstr request.query = 0 x=1",
      "propstr request.method = 0 PUT", "propstr request.host = 0 svc:8080", "propstr request.headers.x-multi = 0 a,b",
      "propstr request.headers.absent = 1",
    ]);
  });

  it("answers NotFound for unknown names and for fields of scalars; a trailing NUL is ignored", async () => {
    const host = await load();
    const { lines } = run(host, ["prop nothing.here", "prop connection.mtls.deeper", "prop connection.mtls."]);
    assert.deepEqual(lines.filter((l) => l.startsWith("prop")), [
      "prop nothing.here = 1", "prop connection.mtls.deeper = 1", "prop connection.mtls. = 0 00",
    ]);
  });

  it("stores proxy_set_property values per stream, like Envoy's filter state", async () => {
    const host = await load();
    const first = run(host, ["setprop my_key v1", "propstr my_key"]);
    assert.deepEqual(first.lines.filter((l) => l.includes("my_key")), ["setprop my_key = 0", "propstr my_key = 0 v1"]);
    const second = run(host, ["propstr my_key"]);
    assert.ok(second.lines.includes("propstr my_key = 1"));
  });

  it("has no stream attributes in the root context", async () => {
    const host = await load();
    host.configure("script:prop connection.mtls;propstr plugin_root_id;setprop k v;hdr 0 :path;pairs 0;size 0");
    assert.deepEqual(fx(host).slice(-6), [
      "prop connection.mtls = 1", "propstr plugin_root_id = 0 spiffe-authz", "setprop k = 1",
      "hdr 0 :path = 2", "pairs 0 = 0 ptr0 ", "size 0 = 2 3735928559",
    ]);
  });

  it("fails the vm loudly on a property envoy has but the host does not model", async () => {
    const host = await load();
    const { r } = run(host, ["prop response.code"]);
    assert.equal(r.localReply?.details, "wasm_fail_stream");
    assert.match(r.vmFailure?.reason ?? "", /property "response\.code"/);
  });
});

describe("header maps", () => {
  it("gets the first value, NotFound when absent, BadArgument for unavailable or invalid maps", async () => {
    const host = await load();
    const { lines } = run(host, ["hdr 0 x-dup", "hdr 0 X-DUP", "hdr 0 absent", "hdr 2 :status", "hdr 9 x", "hdr 1 x"], {
      headers: [["x-dup", "one"], ["x-dup", "two"]],
    });
    assert.deepEqual(lines.filter((l) => l.startsWith("hdr")), [
      "hdr 0 x-dup = 0 one", "hdr 0 X-DUP = 0 one", "hdr 0 absent = 1", "hdr 2 :status = 2", "hdr 9 x = 2",
      "hdr 1 x = 2",
    ]);
  });

  it("serialises pairs in envoy's format and reports byteSize as the size", async () => {
    const host = await load();
    const req = script(["pairs 0", "size 0"], { requestId: "rid", path: "/p" });
    host.clearLogs();
    const r = host.request(req);
    const lines = fx(host, r.contextId);
    const expected: [string, string][] = [
      [":authority", "localhost"], [":path", "/p"], [":method", "GET"], [":scheme", "https"],
      ["x-script", "pairs 0;size 0"], ["x-forwarded-proto", "https"], ["x-request-id", "rid"],
    ];
    assert.ok(lines.includes(`pairs 0 = 0 ptr+ ${Buffer.from(encodePairs(expected)).toString("hex")}`));
    const bytes = expected.reduce((n, [k, v]) => n + k.length + v.length, 0);
    assert.ok(lines.includes(`size 0 = 0 ${bytes}`));
    // The layout itself: count, lengths, then NUL-terminated strings.
    const one = encodePairs([["ab", "c"]]);
    assert.equal(Buffer.from(one).toString("hex"), "01000000" + "02000000" + "01000000" + "616200" + "6300");
  });

  it("adds, replaces and removes request headers, lower-casing names, and forwards the result", async () => {
    const host = await load();
    const { r, lines } = run(host, ["add 0 X-Added one", "add 0 x-added two", "replace 0 x-rep new", "remove 0 x-gone",
      "hdr 0 x-added"], { headers: [["x-rep", "old1"], ["x-rep", "old2"], ["x-gone", "g"]] });
    assert.ok(lines.includes("hdr 0 x-added = 0 one"));
    const fwd = r.forwardedHeaders ?? [];
    assert.deepEqual(fwd.filter(([k]) => k.startsWith("x-added")), [["x-added", "one"], ["x-added", "two"]]);
    assert.deepEqual(fwd.filter(([k]) => k === "x-rep"), [["x-rep", "new"]]);
    assert.equal(fwd.some(([k]) => k === "x-gone"), false);
  });

  it("replaces the whole map with proxy_set_header_map_pairs", async () => {
    const host = await load();
    const { r, lines } = run(host, ["setpairs 0 :path=/new A=1"]);
    assert.ok(lines.includes("setpairs = 0"));
    assert.deepEqual(r.forwardedHeaders, [[":path", "/new"], ["a", "1"]]);
  });

  it("releases the request headers once the filter continues, and shows them again read-only in on_log", async () => {
    const host = await load();
    const { lines } = run(host, ["on body hdr 0 :path", "on log hdr 0 :path,add 0 x y,hdr 2 :status"], { method: "POST", body: "x" });
    assert.ok(lines.includes("hdr 0 :path = 2"), "body phase: request_headers_ is gone after Continue");
    const logIdx = lines.findIndex((l) => l.startsWith("log "));
    assert.deepEqual(lines.slice(logIdx + 1, logIdx + 4), ["hdr 0 :path = 0 /", "add x = 2", "hdr 2 :status = 1"]);
  });
});

describe("buffers", () => {
  it("exposes the plugin configuration only during proxy_on_configure", async () => {
    const host = await load({ vmConfig: "vm" });
    host.configure("cfg");
    const { lines } = run(host, ["bufstatus 7", "buf 7 0 3", "bufstatus 6", "buf 6 0 10", "buf 6 1 1", "buf 6 5 1"]);
    assert.deepEqual(lines.filter((l) => l.startsWith("buf")), [
      "bufstatus 7 = 1", "buf 7 = 1", "bufstatus 6 = 0 2 0", "buf 6 = 0 vm", "buf 6 = 0 m", "buf 6 = 6",
    ]);
  });

  it("writes 0/0 for an empty range, as Envoy 1.40 does, and BadArgument for an unknown buffer", async () => {
    const host = await load();
    const { lines } = run(host, ["buf 0 0 10", "buf 9 0 1"]);
    assert.deepEqual(lines.filter((l) => l.startsWith("buf")), ["buf 0 = 0 0/0", "buf 9 = 2"]);
  });

  it("edits the request body with envoy's prepend / replace / append rules", async () => {
    const host = await load();
    const { lines } = run(host, ["on body setbuf 0 0 0 <,buf 0 0 100,setbuf 0 9 0 >,buf 0 0 100,setbuf 0 1 1 x,setbuf 0 0 99 all,buf 0 0 100,setbuf 7 0 0 x"],
      { method: "POST", body: "mid" });
    assert.deepEqual(lines.filter((l) => l.startsWith("setbuf") || l.startsWith("buf")), [
      "setbuf 0 = 0", "buf 0 = 0 <mid", "setbuf 0 = 0", "buf 0 = 0 <mid>", "setbuf 0 = 2", "setbuf 0 = 0",
      "buf 0 = 0 all", "setbuf 7 = 1",
    ]);
  });
});

describe("local replies", () => {
  it("records status, details without whitespace, body, lower-cased headers and the grpc status", async () => {
    const host = await load();
    const { r, lines } = run(host, ["reply 403 7 denied by rule x", "return 0"], { method: "POST", body: "b" });
    assert.deepEqual(r.localReply, {
      status: 403, details: "denied_by_rule_x", body: new TextEncoder().encode("fx denied\n"),
      headers: [["x-fx", "1"], ["x-upper", "two"]], grpcStatus: 7,
    });
    assert.equal(r.continued, false);
    // The stream is over: the body never reaches the filter, though the hook returned Continue.
    assert.equal(lines.some((l) => l.startsWith("body")), false);
    assert.ok(lines.includes(`done ${r.contextId}`));
  });

  it("treats a grpc status outside 0..16 as none", async () => {
    const host = await load();
    const { r } = run(host, ["reply 403 -1 no grpc"]);
    assert.equal(r.localReply?.grpcStatus, null);
    assert.equal(r.localReply?.details, "no_grpc");
  });
});

describe("metrics, time, logs", () => {
  it("defines metrics with envoy's ids and semantics", async () => {
    const host = await load();
    const { lines } = run(host, ["metric 0 c", "metric 1 g", "metric 2 h", "metric 0 c", "inc c 2", "inc c 0",
      "inc g 5", "inc g -2", "rec g 9", "get c", "get g", "rec h 3", "get h"]);
    assert.deepEqual(lines.filter((l) => /^(metric|inc|rec|get) /.test(l)), [
      "metric c = 0 id 0", "metric g = 0 id 1", "metric h = 0 id 2", "metric c = 0 id 4",
      "inc c = 0", "inc c = 2", "inc g = 0", "inc g = 0", "rec g = 0", "get c = 0 2", "get g = 0 9",
      "rec h = 0", "get h = 2 0",
    ]);
    assert.equal(host.metric("c"), 2);
    assert.equal(host.metric("g"), 9);
    assert.equal(host.metric("h"), undefined);
    assert.deepEqual(host.metrics().get("h")?.samples, [3]);
  });

  it("uses the given clock, reports the log level and filters below it", async () => {
    const host = await load({ clock: () => 1234567890123n, logLevel: "info" });
    const { lines } = run(host, ["time", "loglevel", "logat 1 dropped", "logat 4 kept", "logat 9 bad"]);
    assert.ok(lines.includes("time = 0 1234567890123"));
    assert.ok(lines.includes("loglevel = 0 2"));
    assert.ok(lines.includes("logat = 2"), "level 9 is BadArgument");
    assert.equal(host.logs.some((l) => l.message === "dropped"), false);
    assert.deepEqual(host.logs.filter((l) => l.message === "kept").map((l) => l.level), ["error"]);
  });

  it("captures WASI stdout writes and tick periods", async () => {
    const host = await load();
    const { lines } = run(host, ["write hello stdout", "tick 250"]);
    assert.ok(lines.includes("write = 0 13"));
    assert.ok(host.logs.some((l) => l.source === "stdout" && l.message === "hello stdout"));
    assert.equal(host.tickPeriodMs, 250);
    host.clearLogs();
    host.tick();
    assert.deepEqual(fx(host), ["on_tick 1"]);
  });

  it("keeps working after the module grows its memory", async () => {
    const host = await load();
    const before = host.memoryBytes();
    const { lines } = run(host, ["grow 4", "propstr plugin_root_id"]);
    assert.ok(lines.includes("propstr plugin_root_id = 0 spiffe-authz"));
    assert.equal(host.memoryBytes(), before + 4 * 65536);
  });
});

describe("strictness and failure", () => {
  it("lists unimplemented imports at load and refuses them when asked to, as envoy does", async () => {
    const host = await load();
    assert.deepEqual(host.unknownImports, ["env.proxy_http_call"]);
    assert.ok(host.logs.some((l) => l.level === "warn" && l.message.includes("env.proxy_http_call")));
    await assert.rejects(load({ unknownImports: "reject" }), (err: Error) =>
      err instanceof ModuleLoadError && err.message.includes("env.proxy_http_call"));
  });

  it("fails loudly when the module calls an unimplemented import, then fails closed like envoy", async () => {
    const host = await load();
    const { r, lines } = run(host, ["http"]);
    assert.equal(lines.includes("http returned"), false);
    assert.match(r.vmFailure?.reason ?? "", /host error in proxy_on_request_headers: UnimplementedImportError: .*"env\.proxy_http_call"/);
    assert.deepEqual(r.localReply, { status: 503, details: "wasm_fail_stream", body: new Uint8Array(0), headers: [], grpcStatus: 14 });
    assert.ok(host.failure);
    const later = host.request({});
    assert.equal(later.localReply?.status, 503);
    assert.equal(later.continued, false);
    assert.throws(() => host.configure("x"), VmFailedError);
    assert.throws(() => host.createContext({}), VmFailedError);
  });

  it("marks the vm failed on a trap", async () => {
    const host = await load();
    const { r } = run(host, ["trap"]);
    assert.match(r.vmFailure?.reason ?? "", /^trap in proxy_on_request_headers: RuntimeError: unreachable/);
  });

  it("treats proc_exit as the end of the vm, including assemblyscript's abort", async () => {
    const host = await load();
    const { r } = run(host, ["exit 3"]);
    assert.match(r.vmFailure?.reason ?? "", /proc_exit in proxy_on_request_headers: ProcExitError: module called proc_exit\(3\)/);
    const other = await load();
    const a = run(other, ["abort"]);
    assert.ok(a.lines.includes("abort fixture abort"));
    assert.match(a.r.vmFailure?.reason ?? "", /proc_exit\(255\)/);
  });

  it("reports a configuration the module rejects, and a trap while configuring", async () => {
    const host = await load();
    assert.equal(host.configure("reject"), false);
    assert.equal(host.failure, null);
    assert.equal(host.configure("script:trap"), false);
    const failure = host.failure as { reason: string } | null; // (tsc narrowed the getter to null above)
    assert.match(failure?.reason ?? "", /trap in proxy_on_configure/);
  });

  it("refuses a module without a proxy-wasm abi version export", async () => {
    // (module (memory (export "memory") 1))
    const bytes = Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 3, 1, 0, 1,
      7, 10, 1, 6, ...Buffer.from("memory"), 2, 0]);
    await assert.rejects(ProxyWasmHost.load({ wasmBytes: bytes }), (err: Error) =>
      err instanceof ModuleLoadError && /proxy_abi_version/.test(err.message));
  });
});
