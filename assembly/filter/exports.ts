// The proxy-wasm ABI 0.2.0 exports of the filter. Envoy only calls what is exported; hooks the filter does not
// use have trivial bodies. No hook may trap: unknown context ids, hooks in an unexpected order, missing
// properties and hostile configurations all end in a defined result.

import { Slice } from "../engine/bytes";
import { loadConfiguration } from "../engine/config";
import { isGrpcContentType } from "../engine/conditions";
import { decide, DecisionKind } from "../engine/decision";
import { reasonCode } from "../engine/reason";
import { resolveIdentity, XfccMode } from "../engine/identity";
import { BodyState } from "../engine/request";
import { writeExplain, writeExplainUnknown, writeShadowLine } from "../engine/explain";
import { ByteWriter } from "../engine/writer";
import {
  BUFFER_HTTP_REQUEST_BODY, BUFFER_PLUGIN_CONFIGURATION, CONTINUE,
  LogLevel, logBytes, logString, STOP_ITERATION, STOP_ITERATION_AND_BUFFER,
  STOP_ITERATION_NO_BUFFER,
} from "./abi";
import {
  anyRoot, createRequest, deleteRequest, ensureRoot, findRequest, findRoot, removeRoot, RequestState,
} from "./context";
import { getBufferBytes, hostOwned, hostStatus } from "./hostcalls";
import { countDecision, countRejected, defineMetrics, RuleMetrics, setRules } from "./metrics";
import { declareRecord, publishRecord } from "./record";
import { sendDenial } from "./reply";

const line = new ByteWriter(256);
const explainOut = new ByteWriter(1024);
const methodSlice = new Slice();
const pathSlice = new Slice();
const typeSlice = new Slice();
const hostSlice = new Slice();

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
  declareRecord();
  return 1;
}

/** Reads the plugin configuration buffer; returns the host pointer (caller frees) or 0 with `readError` set. */
let readError = "";
let configLen: i32 = 0;
function readConfiguration(size: u32): usize {
  readError = "";
  configLen = 0;
  if (size == 0) return 0;
  const ok = getBufferBytes(BUFFER_PLUGIN_CONFIGURATION, 0, size, hostSlice);
  const owned = hostOwned;
  if (!ok) {
    if (owned != 0) heap.free(owned);
    readError = hostStatus != 0
      ? "cannot read the plugin configuration (proxy_get_buffer_bytes status " + hostStatus.toString() + ")"
      : "the host returned the plugin configuration outside linear memory";
    return 0;
  }
  if (hostSlice.len == 0) {
    if (owned != 0) heap.free(owned);
    return 0;
  }
  configLen = hostSlice.len;
  return hostSlice.ptr;
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
  declareRecord();
  const root = ensureRoot(root_context_id);
  const p = readConfiguration(configuration_size);
  let error = readError;
  if (error.length == 0) {
    const r = loadConfiguration(p, configLen, true); // p is freed below: its base64 may be decoded in place
    error = r.error;
    if (error.length == 0) {
      const t = r.table!;
      root.table = t;
      root.ruleMetrics = RuleMetrics.of(t);
      root.continueHeaders = r.continueHeaders;
      root.xfccMode = r.xfccIgnore ? XfccMode.IGNORE : XfccMode.REQUIRE;
      root.allowAmbiguousPaths = r.allowAmbiguousPaths;
      setRules(t.ruleCount);
      logString(LogLevel.INFO, "spiffe-authz: loaded table " + t.hashHex + " (" + t.ruleCount.toString() + " rules" +
        (r.continueHeaders ? ", headers continue" : "") + ")");
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

/** Decides with the plugin's table and settings (the identity was read when the headers arrived). */
function decideNow(st: RequestState): void {
  const root = st.root;
  decide(root !== null ? root.table : null, st.peer, st.view, st.decision, st.refusal,
    root !== null && root.allowAmbiguousPaths);
}

export function proxy_on_request_headers(context_id: u32, headers: u32, end_of_stream: u32): u32 {
  let st = findRequest(context_id);
  if (st === null) {
    // A stream we were not told about: serve it with the most recent plugin rather than trap.
    if (context_id == 0 || findRoot(context_id) !== null) return CONTINUE;
    st = createRequest(context_id, anyRoot());
  }
  if (st.decided) return st.decision.allow ? CONTINUE : STOP_ITERATION;
  if (st.waitingBody) return st.headersContinued ? CONTINUE : STOP_ITERATION;
  const root = st.root;
  st.refusal = resolveIdentity(st.view, root !== null ? root.xfccMode : XfccMode.REQUIRE, st.peer);
  // Without end_of_stream a body follows; a condition that reads it makes the decision wait.
  st.view.setBody(end_of_stream != 0 ? BodyState.ABSENT : BodyState.PENDING, 0, 0);
  decideNow(st);
  if (st.decision.kind == DecisionKind.NEEDS_BODY) {
    st.waitingBody = true;
    // "hold" (default): StopIteration. With Envoy's allow_on_headers_stop_iteration (our configs) the headers stay
    // in Envoy and the body still reaches onRequestBody, so the upstream sees nothing before the decision. Without
    // it (an Istio WasmPlugin cannot set it) Envoy 1.40 turns StopIteration into StopAllIterationAndWatermark and
    // never calls onRequestBody: the request stalls.
    // "continue": the headers go upstream now and onRequestBody holds the body (StopIterationAndBuffer) until the
    // decision; a deny then sends the local reply and Envoy resets the upstream stream, which got no body.
    st.headersContinued = root !== null && root.continueHeaders;
    return st.headersContinued ? CONTINUE : STOP_ITERATION;
  }
  return conclude(st) ? CONTINUE : STOP_ITERATION;
}

/** Acts on a decision: audit lines, the decision record, counters, and for a deny the local reply. Returns whether it allows. */
function conclude(st: RequestState): bool {
  st.decided = true;
  st.waitingBody = false;
  const d = st.decision;
  if (d.shadowCount > 0) logShadow(st);
  const reason = reasonCode(d, st.peer);
  publishRecord(d, st.peer, reason, st.view);
  countDecision(d.allow, reason);
  const root = st.root;
  if (root !== null && root.ruleMetrics !== null && d.table === root.table) root.ruleMetrics!.count(d);
  if (d.allow) return true;
  sendDenial(d, st.peer, st.view);
  return false;
}

/** Decides a waiting request with the body in the given state. */
function decideWithBody(st: RequestState, state: BodyState, ptr: usize, len: i32): bool {
  st.view.setBody(state, ptr, len);
  decideNow(st);
  // The body is complete (or over the limit): nothing can be pending any more.
  return conclude(st);
}

/**
 * Copies the first `len` bytes of the buffered request body into filter memory (freed with the request).
 * Returns the pointer, or 0 when the host did not give exactly `len` readable bytes.
 */
function readBody(st: RequestState, len: u32): usize {
  if (len == 0) return 0;
  const ok = getBufferBytes(BUFFER_HTTP_REQUEST_BODY, 0, len, hostSlice);
  st.view.adoptHostMemory();
  if (!ok || <u32>hostSlice.len != len) return 0;
  return hostSlice.ptr;
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

/**
 * The body of a request whose decision waits for it. Envoy appends each chunk to its buffer while we answer
 * StopIterationAndBuffer and reports the total size; the filter reads the buffer once, when the body is complete
 * (or, in grpcMessages "first" mode, when the first frame is). Over META.maxBodyBytes the decision is taken at
 * once with a body error: a request is never let through because it is large.
 */
export function proxy_on_request_body(context_id: u32, body_buffer_length: u32, end_of_stream: u32): u32 {
  const st = findRequest(context_id);
  if (st === null || !st.waitingBody) return CONTINUE;
  const t = st.root !== null ? st.root!.table : null;
  const c = t !== null ? t.cond : null;
  // A configuration update replaced the table meanwhile and the new one reads no body: decide without it.
  if (c === null) return decideWithBody(st, BodyState.ABSENT, 0, 0) ? CONTINUE : STOP_ITERATION_NO_BUFFER;
  if (c.grpcFirst && st.view.contentType(typeSlice) && isGrpcContentType(typeSlice)) {
    // grpcMessages "first": decide as soon as the first message is complete, whatever follows it (a client
    // stream may go on for long); the limit applies to that message, so chunking never changes the decision.
    if (st.firstFrameBytes < 0 && body_buffer_length >= 5) {
      const p = readBody(st, 5);
      if (p == 0) return decideWithBody(st, BodyState.ABSENT, 0, 0) ? CONTINUE : STOP_ITERATION_NO_BUFFER;
      st.firstFrameBytes = 5 + ((<i64>load<u8>(p + 1) << 24) | (<i64>load<u8>(p + 2) << 16) | (<i64>load<u8>(p + 3) << 8) | <i64>load<u8>(p + 4));
    }
    if (st.firstFrameBytes > <i64>c.maxBodyBytes) {
      return decideWithBody(st, BodyState.TOO_LARGE, 0, 0) ? CONTINUE : STOP_ITERATION_NO_BUFFER;
    }
    if (st.firstFrameBytes >= 0 && <i64>body_buffer_length >= st.firstFrameBytes) {
      return decideBuffered(st, <u32>st.firstFrameBytes);
    }
    if (end_of_stream == 0) return STOP_ITERATION_AND_BUFFER;
    return decideBuffered(st, body_buffer_length); // ends inside the first frame: truncated
  }
  if (body_buffer_length > c.maxBodyBytes) {
    return decideWithBody(st, BodyState.TOO_LARGE, 0, 0) ? CONTINUE : STOP_ITERATION_NO_BUFFER;
  }
  if (end_of_stream == 0) return STOP_ITERATION_AND_BUFFER;
  return decideBuffered(st, body_buffer_length);
}

/** Decides on the first `take` bytes of the buffered body. */
function decideBuffered(st: RequestState, take: u32): u32 {
  // An empty body that ended the stream is a body of 0 bytes (for gRPC: no message, a truncated frame).
  if (take == 0) return decideWithBody(st, BodyState.PRESENT, 0, 0) ? CONTINUE : STOP_ITERATION_NO_BUFFER;
  const p = readBody(st, take);
  // An unreadable buffer is treated as no body: conditions that read it fail (absent), never allow by accident.
  return decideWithBody(st, p != 0 ? BodyState.PRESENT : BodyState.ABSENT, p, p != 0 ? <i32>take : 0) ? CONTINUE : STOP_ITERATION_NO_BUFFER;
}

/** Trailers end the request: a decision still waiting for the body takes what was buffered. */
export function proxy_on_request_trailers(context_id: u32, trailers: u32): u32 {
  const st = findRequest(context_id);
  if (st === null || !st.waitingBody) return CONTINUE;
  const st2 = st;
  // proxy_get_buffer_status is not imported: ask for "everything" and take what the host returns (an empty
  // buffer gives Ok with 0/0, or nothing written: hostcalls clears the slots either way).
  const ok = getBufferBytes(BUFFER_HTTP_REQUEST_BODY, 0, 0xffffffff, hostSlice);
  st2.view.adoptHostMemory();
  const n = ok ? <u32>hostSlice.len : 0;
  const c = st2.root !== null && st2.root!.table !== null ? st2.root!.table!.cond : null;
  if (c !== null && n > c.maxBodyBytes) return decideWithBody(st2, BodyState.TOO_LARGE, 0, 0) ? CONTINUE : STOP_ITERATION;
  return decideWithBody(st2, BodyState.PRESENT, n > 0 ? hostSlice.ptr : 0, <i32>n) ? CONTINUE : STOP_ITERATION;
}
// Envoy 1.40 calls every exported hook on every stream (each call is a V8 entry plus the host's own work: about
// 5-9 µs of CPU per request for the no-op hooks, measured by bench/ --diagnose). So the hooks this filter does not
// need are not exported at all: request metadata, the response phase, on_done (Envoy treats a missing on_done as
// "done") and on_log; nor the root-level timer, queue, foreign-function, HTTP and gRPC callouts, which it never
// starts.

/** The context is gone: return the request state (and the host memory it owns) to the pool. */
export function proxy_on_delete(context_id: u32): void {
  if (!deleteRequest(context_id)) removeRoot(context_id);
}

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
  else writeExplain(w, st.decision, st.peer, st.view);
  store<u32>(w.ptr, <u32>(w.len - 4));
  return w.ptr;
}
