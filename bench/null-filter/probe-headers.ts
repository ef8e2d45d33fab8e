// probe-peer + the two header reads the benchmark rules need (:method and :path).
export * from "./base";
export * from "./hooks";
import { readMethodAndPath, readPeer } from "./host";

export function proxy_on_request_headers(context_id: u32, headers: u32, end_of_stream: u32): u32 {
  readPeer();
  readMethodAndPath();
  return 0;
}
