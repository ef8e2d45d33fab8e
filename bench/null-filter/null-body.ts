// The null filter for requests with a body: it holds the headers (StopIteration) and buffers the body
// (StopIterationAndBuffer) until the end of the stream, then continues, as the real filter does for a rule that
// reads request.json. Measured with the same allow_on_headers_stop_iteration setting as the ABAC variant, it is the
// ABAC row's baseline: Envoy's cost of holding and buffering a body for a wasm filter, without any decision.
export * from "./base";

export function proxy_on_request_headers(context_id: u32, headers: u32, end_of_stream: u32): u32 {
  return end_of_stream != 0 ? 0 : 1; // Continue : StopIteration
}

export function proxy_on_request_body(context_id: u32, body_buffer_length: u32, end_of_stream: u32): u32 {
  return end_of_stream != 0 ? 0 : 1; // Continue : StopIterationAndBuffer
}

export function proxy_on_request_trailers(context_id: u32, trailers: u32): u32 {
  return 0;
}
