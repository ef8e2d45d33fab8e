// The few proxy-wasm host functions the probes call, declared directly (ABI 0.2.x signatures).

// @ts-ignore: decorator
@external("env", "proxy_get_property")
export declare function proxy_get_property(pathPtr: usize, pathSize: usize, valuePtrPtr: usize, valueSizePtr: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_get_header_map_pairs")
export declare function proxy_get_header_map_pairs(type: u32, valuePtrPtr: usize, valueSizePtr: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_define_metric")
export declare function proxy_define_metric(type: u32, namePtr: usize, nameSize: usize, idPtr: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_increment_metric")
export declare function proxy_increment_metric(id: u32, offset: i64): u32;

/** Two u32 out-parameters for the host. */
export const RET: usize = memory.data(8, 8);

const PEER = memory.data<u8>([99, 111, 110, 110, 101, 99, 116, 105, 111, 110, 0, 117, 114, 105, 95, 115, 97, 110, 95, 112, 101, 101, 114, 95, 99, 101, 114, 116, 105, 102, 105, 99, 97, 116, 101]); // "connection\0uri_san_peer_certificate"

/** Reads a value the host copies into our memory, and frees it (as the real filter does at the end of a request). */
function readAndFree(rc: u32): void {
  if (rc != 0) return;
  const p = <usize>load<u32>(RET);
  if (p != 0) heap.free(p);
}

export function readPeer(): void {
  readAndFree(proxy_get_property(PEER, 35, RET, RET + 4));
}

/** The request headers as one serialized pair list, the one header call the real filter makes per request. */
export function readHeaders(): void {
  readAndFree(proxy_get_header_map_pairs(0, RET, RET + 4));
}

let counter: u32 = 0xffffffff;
const NAME = memory.data<u8>([112, 114, 111, 98, 101, 46, 97, 108, 108, 111, 119, 101, 100]); // "probe.allowed"

export function countRequest(): void {
  if (counter == 0xffffffff) {
    if (proxy_define_metric(0, NAME, 13, RET) != 0) return;
    counter = load<u32>(RET);
  }
  proxy_increment_metric(counter, 1);
}
