// How the engine reads the request. The filter implements RequestView with host calls (each value fetched at
// most once per request, only when a rule asks); the tests implement it with fixed data.

import { Slice } from "./bytes";

/**
 * The request as byte slices. Every method fills the caller-owned `out` and returns true when the value is
 * present (possibly empty), false when it is absent; it must not allocate per call. The bytes must stay valid
 * until the request ends.
 */
export abstract class RequestView {
  /** `:method`. */
  abstract method(out: Slice): bool;
  /** `:path` as received, query included (the engine cuts it at `?` or `#`). */
  abstract path(out: Slice): bool;
  /** `:authority`. */
  abstract host(out: Slice): bool;
  /** The destination port in decimal ASCII. */
  abstract port(out: Slice): bool;
  /** The request header `name` (lower-case); several values joined with `,`. */
  abstract header(namePtr: usize, nameLen: i32, out: Slice): bool;
  /** The TLS SNI (`connection.requested_server_name`). */
  abstract sni(out: Slice): bool;
}
