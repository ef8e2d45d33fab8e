// The proxy-wasm ABI 0.2.0 exports of the filter. Envoy only calls what is exported; hooks the filter does not
// use have trivial bodies. No hook may trap: unknown context ids, hooks in an unexpected order, missing
// properties and hostile configurations all end in a defined result.

import { Slice } from "../engine/bytes";
import { loadConfiguration } from "../engine/config";
import { ShadowLines, Step } from "../engine/flow";
import { reasonCode } from "../engine/reason";
import { XfccMode } from "../engine/identity";
import { writeExplain, writeExplainUnknown } from "../engine/explain";
import { ByteWriter } from "../engine/writer";
import {
  BUFFER_PLUGIN_CONFIGURATION, CONTINUE, LogLevel, logBytes, logString, STOP_ITERATION, STOP_ITERATION_AND_BUFFER,
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
const shadowLines = new ShadowLines();
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
// The request flow (when to decide, on which part of the body) is the engine's (engine/flow.ts); the hooks map
// its steps to proxy-wasm statuses and act on decisions.

export function proxy_on_request_headers(context_id: u32, headers: u32, end_of_stream: u32): u32 {
  let st = findRequest(context_id);
  if (st === null) {
    // A stream we were not told about: serve it with the most recent plugin rather than trap.
    if (context_id == 0 || findRoot(context_id) !== null) return CONTINUE;
    st = createRequest(context_id, anyRoot());
  }
  const step = st.flow.onHeaders(st.root, st.view, end_of_stream != 0);
  if (step == Step.DECIDED) return conclude(st) ? CONTINUE : STOP_ITERATION;
  return step == Step.CONTINUE ? CONTINUE : STOP_ITERATION;
}

export function proxy_on_request_body(context_id: u32, body_buffer_length: u32, end_of_stream: u32): u32 {
  const st = findRequest(context_id);
  if (st === null) return CONTINUE;
  const step = st.flow.onBody(st.root, st.view, body_buffer_length, end_of_stream != 0);
  if (step == Step.DECIDED) return conclude(st) ? CONTINUE : STOP_ITERATION_NO_BUFFER;
  return step == Step.BUFFER ? STOP_ITERATION_AND_BUFFER : CONTINUE;
}

export function proxy_on_request_trailers(context_id: u32, trailers: u32): u32 {
  const st = findRequest(context_id);
  if (st === null) return CONTINUE;
  const step = st.flow.onTrailers(st.root, st.view);
  if (step == Step.DECIDED) return conclude(st) ? CONTINUE : STOP_ITERATION;
  return CONTINUE;
}

/** Acts on a decision: audit lines, the decision record, counters, and for a deny the local reply. Returns whether it allows. */
function conclude(st: RequestState): bool {
  const f = st.flow;
  const d = f.decision;
  if (d.shadowCount > 0) {
    shadowLines.begin(d, f.peer, st.view);
    while (shadowLines.next(line)) logBytes(LogLevel.INFO, line.ptr, line.len);
  }
  const reason = reasonCode(d, f.peer);
  publishRecord(d, f.peer, reason, st.view);
  countDecision(d.allow, reason);
  const root = st.root;
  if (root !== null && root.ruleMetrics !== null && d.table === root.table) root.ruleMetrics!.count(d);
  if (d.allow) return true;
  sendDenial(d, f.peer, st.view);
  return false;
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
  else writeExplain(w, st.flow.decision, st.flow.peer, st.view);
  store<u32>(w.ptr, <u32>(w.len - 4));
  return w.ptr;
}
