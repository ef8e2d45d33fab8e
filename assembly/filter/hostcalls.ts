// One typed wrapper per proxy-wasm call that writes out-parameters. Each clears the out-parameter slots before
// the call, so a host that answers Ok without writing them (proxy-wasm-cpp-host before 2022 did
// for an empty buffer; Envoy 1.40 writes 0/0) can never make the filter read the previous call's pointer, then
// checks what the host wrote before anything is read through it.

import { Slice } from "../engine/bytes";
import {
  HEADER_MAP_REQUEST, inMemory, proxy_call_foreign_function, proxy_define_metric, proxy_get_buffer_bytes,
  proxy_get_header_map_pairs, proxy_get_header_map_value, proxy_get_property, RET, WasmResult,
} from "./abi";

/**
 * The memory the last successful read was copied into (allocated through our malloc: the caller owns it and
 * frees it), or 0. Host calls do not nest, so one slot serves them all.
 */
export let hostOwned: usize = 0;

/** The status of the last call (WasmResult). */
export let hostStatus: u32 = 0;

// @ts-ignore: decorator
@inline function clearRet(): void {
  store<u64>(RET, 0);
}

/**
 * Reads the (pointer, size) the host wrote. True when the call succeeded and the bytes lie inside linear memory;
 * `out` is then the value (empty for an empty value). On false `out` is empty.
 */
function finish(rc: u32, out: Slice): bool {
  hostStatus = rc;
  hostOwned = 0;
  out.clear();
  if (rc != WasmResult.OK) return false;
  const p = <usize>load<u32>(RET);
  const n = <usize>load<u32>(RET, 4);
  if (p != 0 && inMemory(p, 1)) hostOwned = p;
  if (n == 0) return true;
  if (!inMemory(p, n) || n > <usize>i32.MAX_VALUE) return false;
  out.set(p, <i32>n);
  return true;
}

/** proxy_get_property with a NUL-separated path. */
export function getProperty(path: ArrayBuffer, out: Slice): bool {
  clearRet();
  return finish(proxy_get_property(changetype<usize>(path), <usize>path.byteLength, RET, RET + 4), out);
}

/** proxy_get_header_map_value on the request headers (the first value of a repeated header only). */
export function getRequestHeader(name: ArrayBuffer, out: Slice): bool {
  clearRet();
  return finish(proxy_get_header_map_value(HEADER_MAP_REQUEST, changetype<usize>(name), <usize>name.byteLength, RET, RET + 4), out);
}

/** proxy_get_header_map_pairs on the request headers (the serialized pair list). */
export function getRequestHeaderPairs(out: Slice): bool {
  clearRet();
  return finish(proxy_get_header_map_pairs(HEADER_MAP_REQUEST, RET, RET + 4), out);
}

/** proxy_get_buffer_bytes: up to `length` bytes of buffer `type` from `start`. */
export function getBufferBytes(type: i32, start: u32, length: u32, out: Slice): bool {
  clearRet();
  return finish(proxy_get_buffer_bytes(type, start, length, RET, RET + 4), out);
}

/**
 * proxy_call_foreign_function: calls the host function `name` with `args`; `out` is its result (the memory in
 * hostOwned, which the caller frees).
 */
export function callForeignFunction(name: ArrayBuffer, argsPtr: usize, argsLen: i32, out: Slice): bool {
  clearRet();
  const rc = proxy_call_foreign_function(changetype<usize>(name), <usize>name.byteLength, argsPtr, <usize>argsLen,
    RET, RET + 4);
  return finish(rc, out);
}

/** The id proxy_define_metric returns for a metric of `type` (abi.ts METRIC_*) named `name`. */
export const METRIC_UNDEFINED: u32 = 0xffffffff;

/** proxy_define_metric: the metric's id, or METRIC_UNDEFINED when the host refuses it. */
export function defineMetric(type: i32, name: ArrayBuffer): u32 {
  store<u32>(RET, METRIC_UNDEFINED);
  hostStatus = proxy_define_metric(type, changetype<usize>(name), <usize>name.byteLength, RET);
  return hostStatus == WasmResult.OK ? load<u32>(RET) : METRIC_UNDEFINED;
}
