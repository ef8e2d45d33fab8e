// all-hooks + the peer's URI SAN read once per request (proxy_get_property), as the real filter does.
export * from "./base";
export * from "./hooks";
import { readPeer } from "./host";

export function proxy_on_request_headers(context_id: u32, headers: u32, end_of_stream: u32): u32 {
  readPeer();
  return 0;
}
