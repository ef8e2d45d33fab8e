// probe-metric + the decision record: declare_property once, one proxy_set_property of a record-sized Struct per
// request (what filter/record.ts adds to every decision).
export * from "./base";
export * from "./hooks";
import { countRequest, publishRecord, readHeaders, readPeer } from "./host";

export function proxy_on_request_headers(context_id: u32, headers: u32, end_of_stream: u32): u32 {
  readPeer();
  readHeaders();
  countRequest();
  publishRecord();
  return 0;
}
