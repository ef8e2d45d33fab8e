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

// @ts-ignore: decorator
@external("env", "proxy_set_property")
export declare function proxy_set_property(pathPtr: usize, pathSize: usize, valuePtr: usize, valueSize: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_call_foreign_function")
export declare function proxy_call_foreign_function(namePtr: usize, nameSize: usize, argPtr: usize, argSize: usize, retPtr: usize, retSizePtr: usize): u32;

/** A decision record as the filter writes it (a google.protobuf.Struct of 5 string fields, 156 bytes). */
function struct(fields: string[][]): ArrayBuffer {
  let n = 0;
  for (let i = 0; i < fields.length; i++) {
    const k = fields[i][0].length;
    const v = fields[i][1].length;
    n += 2 + (2 + k + 2 + (2 + v));
  }
  const b = new Uint8Array(n);
  let o = 0;
  for (let i = 0; i < fields.length; i++) {
    const k = fields[i][0];
    const v = fields[i][1];
    b[o++] = 0x0a; b[o++] = <u8>(2 + k.length + 2 + 2 + v.length);
    b[o++] = 0x0a; b[o++] = <u8>k.length;
    for (let j = 0; j < k.length; j++) b[o++] = <u8>k.charCodeAt(j);
    b[o++] = 0x12; b[o++] = <u8>(2 + v.length);
    b[o++] = 0x1a; b[o++] = <u8>v.length;
    for (let j = 0; j < v.length; j++) b[o++] = <u8>v.charCodeAt(j);
  }
  return b.buffer;
}

const RECORD = struct([
  ["decision", "allow"], ["reason", "allow_rule"], ["rule", "bench-0000009"],
  ["peer", "spiffe://bench.example.com/ns/bench/sa/client"], ["table", "0123456789abcdef"],
]);
const PROPERTY = String.UTF8.encode("spiffe_authz");
let declared = false;

/** declare_property once (as filter/record.ts does), then one proxy_set_property per request. */
export function publishRecord(): void {
  if (!declared) {
    declared = true;
    const name = String.UTF8.encode("declare_property");
    const type = "type.googleapis.com/google.protobuf.Struct";
    const args = new Uint8Array(2 + 12 + 2 + 2 + type.length);
    let o = 0;
    args[o++] = 0x0a; args[o++] = 12;
    for (let j = 0; j < 12; j++) args[o++] = <u8>"spiffe_authz".charCodeAt(j);
    args[o++] = 0x18; args[o++] = 3;
    args[o++] = 0x22; args[o++] = <u8>type.length;
    for (let j = 0; j < type.length; j++) args[o++] = <u8>type.charCodeAt(j);
    proxy_call_foreign_function(changetype<usize>(name), name.byteLength, args.dataStart, args.length, RET, RET + 4);
  }
  proxy_set_property(changetype<usize>(PROPERTY), PROPERTY.byteLength, changetype<usize>(RECORD), RECORD.byteLength);
}
