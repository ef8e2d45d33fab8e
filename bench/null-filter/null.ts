// A proxy-wasm filter that does nothing: it continues every request and imports nothing. The benchmark runs it in
// the same Envoy as the real filter: the filter's own cost is what it adds over this module (the price of hosting
// any wasm filter), and `npm run bench -- --diagnose` adds the probes beside it, to split the rest into exported
// no-op hooks (all-hooks.ts), each kind of host call the real filter makes (probe-*.ts), and the filter's own work.
// Measurement tools only: not shipped, not a substitute for anything.
export * from "./base";

export function proxy_on_request_headers(context_id: u32, headers: u32, end_of_stream: u32): u32 {
  return 0;
}
