// Envoy stats of the filter. Envoy prefixes custom metrics with "wasmcustom.", so these appear as
// wasmcustom.spiffe_authz.allowed etc.

import { METRIC_COUNTER, METRIC_GAUGE, proxy_define_metric, proxy_increment_metric, proxy_record_metric, RET, staticBytes } from "./abi";

const UNDEFINED: u32 = 0xffffffff;

let defined = false;
let allowedId: u32 = UNDEFINED;
let deniedId: u32 = UNDEFINED;
let rejectedId: u32 = UNDEFINED;
let rulesId: u32 = UNDEFINED;

function define(type: i32, name: string): u32 {
  const b = staticBytes(name);
  if (proxy_define_metric(type, changetype<usize>(b), <usize>b.byteLength, RET) != 0) return UNDEFINED;
  return load<u32>(RET);
}

/** Defines the metrics once per VM (from proxy_on_vm_start, or the first configure if Envoy skipped it). */
export function defineMetrics(): void {
  if (defined) return;
  defined = true;
  allowedId = define(METRIC_COUNTER, "spiffe_authz.allowed");
  deniedId = define(METRIC_COUNTER, "spiffe_authz.denied");
  rejectedId = define(METRIC_COUNTER, "spiffe_authz.config_rejected");
  rulesId = define(METRIC_GAUGE, "spiffe_authz.rules");
}

// @ts-ignore: decorator
@inline function bump(id: u32): void {
  if (id != UNDEFINED) proxy_increment_metric(id, 1);
}

export function countAllowed(): void {
  bump(allowedId);
}
export function countDenied(): void {
  bump(deniedId);
}
export function countRejected(): void {
  bump(rejectedId);
}
export function setRules(n: u32): void {
  if (rulesId != UNDEFINED) proxy_record_metric(rulesId, <u64>n);
}
