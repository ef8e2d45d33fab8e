// How the engine reads the request. The filter implements RequestView with host calls (each value fetched at
// most once per request, only when a rule asks); the tests implement it with fixed data.

import { Slice } from "./bytes";

/** RequestView.body(): the request body as the decision sees it. */
export const enum BodyState {
  /** The request has no body (end_of_stream came with the headers), or it was never needed. */
  ABSENT = 0,
  /** The whole body (or, in grpcMessages "first" mode, at least its first frame) is in `out`. */
  PRESENT = 1,
  /** The request has a body that has not arrived yet: a condition that reads it cannot be evaluated now. */
  PENDING = 2,
  /** More than META.maxBodyBytes arrived: conditions that read it fail with a body error. */
  TOO_LARGE = 3,
}

/**
 * The request as byte slices. Every method fills the caller-owned `out` and returns true when the value is
 * present (possibly empty), false when it is absent; it must not allocate per call. The bytes must stay valid
 * until the request ends.
 *
 * The methods after `sni` serve CEL conditions only (tables with an EXPR section); their defaults answer
 * "absent", so a view for condition-free tables need not implement them.
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

  /**
   * A request header by a name computed at request time (CEL `request.headers[k]`): like `header`, but the
   * name's memory may be reused after the call, so an implementation must not cache by its address.
   */
  headerByValue(namePtr: usize, nameLen: i32, out: Slice): bool {
    return this.header(namePtr, nameLen, out);
  }
  /** Number of distinct header names (pseudo-headers included, as Envoy's header map holds them); -1 unknown. */
  headerCount(): i32 {
    return -1;
  }
  /** `connection.mtls`: 1 or 0, -1 when unknown. */
  mtls(): i32 {
    return -1;
  }
  /** `content-type` (first value). */
  contentType(out: Slice): bool {
    out.clear();
    return false;
  }
  /** The request body (see BodyState). */
  body(out: Slice): BodyState {
    out.clear();
    return BodyState.ABSENT;
  }
  /**
   * Envoy's dynamic metadata as the `metadata` property serialises it (an envoy.config.core.v3.Metadata message),
   * where jwt_authn leaves the verified JWT payload. Absent or empty: no metadata.
   */
  dynamicMetadata(out: Slice): bool {
    out.clear();
    return false;
  }
}
