// The only file that imports @solo-io/proxy-runtime, and only its raw host imports: its context classes log
// on every request and throw (abort the VM) on NotFound. asc 0.27 resolves "pkg/sub" to node_modules/pkg/sub.ts
// only, hence the relative path.

export {
  proxy_log,
  proxy_get_property,
  proxy_get_header_map_value,
  proxy_get_header_map_pairs,
  proxy_get_buffer_bytes,
  proxy_send_local_response,
  proxy_define_metric,
  proxy_increment_metric,
  proxy_record_metric,
  proxy_set_property,
  proxy_call_foreign_function,
} from "../../node_modules/@solo-io/proxy-runtime/assembly/imports";

import { proxy_log } from "../../node_modules/@solo-io/proxy-runtime/assembly/imports";

/** proxy-wasm log levels (Envoy maps them to trace..critical). */
export const enum LogLevel {
  TRACE = 0,
  DEBUG = 1,
  INFO = 2,
  WARN = 3,
  ERROR = 4,
  CRITICAL = 5,
}

/** proxy-wasm WasmResult values the filter distinguishes. */
export const enum WasmResult {
  OK = 0,
  NOT_FOUND = 1,
}

export const HEADER_MAP_REQUEST: i32 = 0;
export const BUFFER_HTTP_REQUEST_BODY: i32 = 0;
export const BUFFER_PLUGIN_CONFIGURATION: i32 = 7;
export const METRIC_COUNTER: i32 = 0;
export const METRIC_GAUGE: i32 = 1;

/** FilterHeadersStatus (and Continue of FilterDataStatus / FilterTrailersStatus). */
export const CONTINUE: u32 = 0;
export const STOP_ITERATION: u32 = 1;
/** FilterDataStatus. */
export const STOP_ITERATION_AND_BUFFER: u32 = 1;
export const STOP_ITERATION_NO_BUFFER: u32 = 3;

/** grpc_status argument of proxy_send_local_response meaning "not a gRPC reply" (Envoy: no status). */
export const GRPC_STATUS_NONE: u32 = 0xffffffff;
export const GRPC_PERMISSION_DENIED: u32 = 7;

// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "proc_exit")
declare function proc_exit(code: u32): void;

/**
 * The `abort` of this module (asconfig.json: `use abort=spiffe_authz_abort`). Only reachable through a bug
 * (a failed bounds check or an allocation failure): log what happened and stop the VM, as proxy-runtime's
 * abort_proc_exit does, without pulling in proxy-runtime's runtime.ts.
 */
// @ts-ignore: decorator
@global
export function spiffe_authz_abort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  let text = "spiffe-authz: abort: ";
  if (message !== null) text += message;
  if (fileName !== null) text += " at " + fileName + ":" + line.toString() + ":" + column.toString();
  const bytes = String.UTF8.encode(text, false);
  proxy_log(LogLevel.CRITICAL, changetype<usize>(bytes), <usize>bytes.byteLength);
  proc_exit(255);
}

/** Logs a GC string (configuration path only: allocates). */
export function logString(level: LogLevel, text: string): void {
  const bytes = String.UTF8.encode(text, false);
  proxy_log(level, changetype<usize>(bytes), <usize>bytes.byteLength);
}

/** Logs bytes (no allocation). */
export function logBytes(level: LogLevel, ptr: usize, len: i32): void {
  proxy_log(level, ptr, <usize>len);
}

/** Two u32 out-parameters for host calls (pointer, size). Static: host calls do not nest. */
export const RET: usize = memory.data(8, 4);

/** Whether [ptr, ptr+len) lies inside linear memory (host-written pointers are not trusted blindly). */
export function inMemory(ptr: usize, len: usize): bool {
  const size = <u64>memory.size() << 16;
  return ptr != 0 && <u64>ptr + <u64>len <= size;
}

/** A static NUL-free ASCII byte string, allocated once at start-up. */
export function staticBytes(s: string): ArrayBuffer {
  return String.UTF8.encode(s, false);
}
