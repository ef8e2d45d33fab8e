// The HTTP hooks the real filter exports besides proxy_on_request_headers (assembly/filter/exports.ts), with
// trivial bodies. Envoy calls an exported hook on every request whether it does anything or not.

export function proxy_on_request_body(context_id: u32, body_buffer_length: u32, end_of_stream: u32): u32 {
  return 0;
}
export function proxy_on_request_trailers(context_id: u32, trailers: u32): u32 {
  return 0;
}
