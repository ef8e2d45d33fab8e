// probe-headers + one counter increment per request (the real filter counts every allowed request).
export * from "./base";
export * from "./hooks";
import { countRequest, readHeaders, readPeer } from "./host";

export function proxy_on_request_headers(context_id: u32, headers: u32, end_of_stream: u32): u32 {
  readPeer();
  readHeaders();
  countRequest();
  return 0;
}
