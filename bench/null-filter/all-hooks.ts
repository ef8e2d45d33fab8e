// The null filter with every HTTP hook the real filter exports.
export * from "./base";
export * from "./hooks";

export function proxy_on_request_headers(context_id: u32, headers: u32, end_of_stream: u32): u32 {
  return 0;
}
