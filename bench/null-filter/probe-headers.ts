// probe-peer + the request headers read once as a pair list (proxy_get_header_map_pairs), as the real filter does.
export * from "./base";
export * from "./hooks";
import { readHeaders, readPeer } from "./host";

export function proxy_on_request_headers(context_id: u32, headers: u32, end_of_stream: u32): u32 {
  readPeer();
  readHeaders();
  return 0;
}
