// A proxy-wasm filter that does nothing: it continues every request and imports nothing. `npm run bench --
// --diagnose` runs it, and the probes beside it, in the same Envoy as the real filter, to split the filter's cost
// inside Envoy into: the price of hosting any wasm filter (this module), the price of exported no-op hooks
// (all-hooks.ts), each kind of host call the real filter makes (probe-*.ts), and the filter's own work (the rest).
// Measurement tools only: not shipped, not a substitute for anything.
export * from "./base";

export function proxy_on_request_headers(context_id: u32, headers: u32, end_of_stream: u32): u32 {
  return 0;
}
