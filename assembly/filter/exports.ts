// The proxy-wasm ABI 0.2.0 exports of the filter. Envoy only calls what is exported; hooks the filter does not
// use have trivial bodies. No hook may trap: unknown context ids, hooks in an unexpected order, missing
// properties and hostile configurations all end in a defined result.

import { Slice } from "../engine/bytes";
import { loadConfiguration } from "../engine/config";
import { decide } from "../engine/decision";
import { writeDenyDetails, writeExplain, writeExplainUnknown, writeShadowLine } from "../engine/explain";
import { ByteWriter } from "../engine/writer";
import {
  BUFFER_PLUGIN_CONFIGURATION, CONTINUE, GRPC_PERMISSION_DENIED, GRPC_STATUS_NONE, inMemory, LogLevel, logBytes,
  logString, proxy_get_buffer_bytes, proxy_get_property, proxy_send_local_response, RET, staticBytes,
  STOP_ITERATION, WasmResult,
} from "./abi";
import {
  anyRoot, createRequest, deleteRequest, ensureRoot, findRequest, findRoot, removeRoot, RequestState,
} from "./context";
import { countAllowed, countDenied, countRejected, defineMetrics, setRules } from "./metrics";

const PROP_PEER_URI_SAN = staticBytes("connection\0uri_san_peer_certificate");
const DENY_BODY = staticBytes("spiffe-authz: access denied\n");
const GRPC_PREFIX = staticBytes("application/grpc");
// Serialized header pairs with a count of 0: "no additional headers" for proxy_send_local_response.
const NO_HEADERS: usize = memory.data(4, 4);

const details = new ByteWriter(256);
const line = new ByteWriter(256);
const explainOut = new ByteWriter(1024);
const methodSlice = new Slice();
const pathSlice = new Slice();
const typeSlice = new Slice();

// ---- VM and root context ----

export function proxy_abi_version_0_2_0(): void {}

/** The host allocates the memory it copies values into through this (freed by the filter). */
export function malloc(size: usize): usize {
  return heap.alloc(size);
}

export function proxy_on_memory_allocate(size: usize): usize {
  return heap.alloc(size);
}

export function proxy_on_vm_start(root_context_id: u32, vm_configuration_size: u32): u32 {
  defineMetrics();
  return 1;
}

/** Reads the plugin configuration buffer; returns the host pointer (caller frees) or 0 with `readError` set. */
let readError = "";
let configLen: i32 = 0;
function readConfiguration(size: u32): usize {
  readError = "";
  configLen = 0;
  if (size == 0) return 0;
  const rc = proxy_get_buffer_bytes(BUFFER_PLUGIN_CONFIGURATION, 0, size, RET, RET + 4);
  if (rc != WasmResult.OK) {
    readError = "cannot read the plugin configuration (proxy_get_buffer_bytes status " + rc.toString() + ")";
    return 0;
  }
  const p = <usize>load<u32>(RET);
  const n = load<u32>(RET, 4);
  if (n == 0) return 0;
  if (!inMemory(p, <usize>n)) {
    readError = "the host returned the plugin configuration outside linear memory";
    return 0;
  }
  configLen = <i32>n;
  return p;
}

/** Envoy asks whether a configuration is acceptable before using it: the same checks as proxy_on_configure. */
export function proxy_validate_configuration(root_context_id: u32, configuration_size: u32): u32 {
  const p = readConfiguration(configuration_size);
  if (readError.length != 0) return 0;
  const r = loadConfiguration(p, configLen, true); // p is freed below: its base64 may be decoded in place
  if (p != 0) heap.free(p);
  return r.error.length == 0 ? 1 : 0;
}

/**
 * Loads the table: parse, decode, validate and index first, swap only then. On failure the previous table (if
 * any) keeps serving and Envoy rejects the update because we return 0.
 */
export function proxy_on_configure(root_context_id: u32, configuration_size: u32): u32 {
  // The filter is built with AssemblyScript's "minimal" runtime: no shadow stack on the request path, and the
  // GC runs only when called. Here is the one safe point: no managed reference lives in a wasm local yet, and
  // the garbage of earlier loads (a replaced table, temporary strings) is reclaimed before a new table is built.
  __collect();
  defineMetrics();
  const root = ensureRoot(root_context_id);
  const p = readConfiguration(configuration_size);
  let error = readError;
  if (error.length == 0) {
    const r = loadConfiguration(p, configLen, true); // p is freed below: its base64 may be decoded in place
    error = r.error;
    if (error.length == 0) {
      const t = r.table!;
      root.table = t;
      setRules(t.ruleCount);
      logString(LogLevel.INFO, "spiffe-authz: loaded table " + t.hashHex + " (" + t.ruleCount.toString() + " rules)");
    }
  }
  if (p != 0) heap.free(p);
  if (error.length != 0) {
    countRejected();
    logString(LogLevel.ERROR, "spiffe-authz: rejected configuration: " + error);
    return 0;
  }
  return 1;
}

export function proxy_on_context_create(context_id: u32, root_context_id: u32): void {
  if (root_context_id == 0) {
    ensureRoot(context_id);
    return;
  }
  let root = findRoot(root_context_id);
  if (root === null) root = ensureRoot(root_context_id);
  createRequest(context_id, root);
}

// ---- HTTP stream ----

/** Reads the peer's URI SAN once: NotFound, empty or any error means no identity (never a trap). */
function readPeer(st: RequestState): void {
  const rc = proxy_get_property(changetype<usize>(PROP_PEER_URI_SAN), <usize>PROP_PEER_URI_SAN.byteLength, RET, RET + 4);
  if (rc != WasmResult.OK) {
    st.peer.setAbsent();
    return;
  }
  const p = <usize>load<u32>(RET);
  const n = <i32>load<u32>(RET, 4);
  if (p != 0 && inMemory(p, 1)) st.peerPtr = p;
  if (n <= 0 || !inMemory(p, <usize>n)) {
    st.peer.setAbsent();
    return;
  }
  st.peer.parse(p, n);
}

export function proxy_on_request_headers(context_id: u32, headers: u32, end_of_stream: u32): u32 {
  let st = findRequest(context_id);
  if (st === null) {
    // A stream we were not told about: serve it with the most recent plugin rather than trap.
    if (context_id == 0 || findRoot(context_id) !== null) return CONTINUE;
    st = createRequest(context_id, anyRoot());
  }
  if (st.decided) return st.decision.allow ? CONTINUE : STOP_ITERATION;
  const root = st.root;
  readPeer(st);
  decide(root !== null ? root.table : null, st.peer, st.view, st.decision);
  st.decided = true;
  const d = st.decision;
  if (d.shadowCount > 0) logShadow(st);
  if (d.allow) {
    countAllowed();
    return CONTINUE;
  }
  countDenied();
  details.reset();
  writeDenyDetails(details, d);
  // gRPC callers get a trailers-only reply with grpc-status 7 (PERMISSION_DENIED).
  let grpc = GRPC_STATUS_NONE;
  if (st.view.contentType(typeSlice) && typeSlice.len >= GRPC_PREFIX.byteLength &&
      memory.compare(typeSlice.ptr, changetype<usize>(GRPC_PREFIX), <usize>GRPC_PREFIX.byteLength) == 0) {
    grpc = GRPC_PERMISSION_DENIED;
  }
  proxy_send_local_response(403, details.ptr, <usize>details.len, changetype<usize>(DENY_BODY),
    <usize>DENY_BODY.byteLength, NO_HEADERS, 4, grpc);
  return STOP_ITERATION;
}

/** One info line per matching AUDIT or dry-run rule. */
function logShadow(st: RequestState): void {
  const d = st.decision;
  const t = d.table!;
  const hasMethod = st.view.method(methodSlice);
  const hasPath = st.view.path(pathSlice);
  if (hasPath) {
    // Up to the query: query strings often carry secrets.
    for (let i = 0; i < pathSlice.len; i++) {
      const c = load<u8>(pathSlice.ptr + <usize>i);
      if (c == 63 || c == 35) {
        pathSlice.len = i;
        break;
      }
    }
  }
  const ranges = t.shadowScratch;
  for (let i = 0; i < d.shadowRanges; i++) {
    const first = unchecked(ranges[2 * i]);
    const end = first + unchecked(ranges[2 * i + 1]);
    for (let r = first; r < end; r++) {
      line.reset();
      writeShadowLine(line, t, r, d, st.peer, methodSlice, hasMethod, pathSlice, hasPath);
      logBytes(LogLevel.INFO, line.ptr, line.len);
    }
  }
}

export function proxy_on_request_body(context_id: u32, body_buffer_length: u32, end_of_stream: u32): u32 {
  return 0;
}
export function proxy_on_request_trailers(context_id: u32, trailers: u32): u32 {
  return 0;
}
export function proxy_on_request_metadata(context_id: u32, elements: u32): u32 {
  return 0;
}
export function proxy_on_response_headers(context_id: u32, headers: u32, end_of_stream: u32): u32 {
  return 0;
}
export function proxy_on_response_body(context_id: u32, body_buffer_length: u32, end_of_stream: u32): u32 {
  return 0;
}
export function proxy_on_response_trailers(context_id: u32, trailers: u32): u32 {
  return 0;
}
export function proxy_on_response_metadata(context_id: u32, elements: u32): u32 {
  return 0;
}

/** Stream and root contexts are done at once (nothing asynchronous to finish). */
export function proxy_on_done(context_id: u32): u32 {
  return 1;
}
export function proxy_on_log(context_id: u32): void {}

/** The context is gone: return the request state (and the host memory it owns) to the pool. */
export function proxy_on_delete(context_id: u32): void {
  if (!deleteRequest(context_id)) removeRoot(context_id);
}

export function proxy_on_tick(root_context_id: u32): void {}
export function proxy_on_queue_ready(root_context_id: u32, token: u32): void {}
export function proxy_on_foreign_function(root_context_id: u32, function_id: u32, data_size: u32): void {}
export function proxy_on_http_call_response(context_id: u32, token: u32, headers: u32, body_size: u32, trailers: u32): void {}
export function proxy_on_grpc_receive_initial_metadata(context_id: u32, token: u32, headers: u32): void {}
export function proxy_on_grpc_trailing_metadata(context_id: u32, token: u32, trailers: u32): void {}
export function proxy_on_grpc_receive(context_id: u32, token: u32, response_size: u32): void {}
export function proxy_on_grpc_close(context_id: u32, token: u32, status_code: u32): void {}

// ---- Explain ----

/**
 * The decision of a live request context as JSON, for the TypeScript host and `check` (Envoy never calls it):
 * returns a pointer to a u32 byte length followed by that many bytes of UTF-8 JSON. The buffer belongs to the
 * filter and is valid until the next call.
 */
export function spiffe_authz_explain(context_id: u32): usize {
  const w = explainOut;
  w.reset();
  w.ensure(4);
  w.len = 4;
  const st = findRequest(context_id);
  if (st === null) writeExplainUnknown(w);
  else writeExplain(w, st.decision, st.peer);
  store<u32>(w.ptr, <u32>(w.len - 4));
  return w.ptr;
}
