// Every HTTP hook the real filter exports with a trivial body (assembly/filter/exports.ts). Envoy calls an
// exported hook on every request whether it does anything or not.

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
export function proxy_on_log(context_id: u32): void {}
