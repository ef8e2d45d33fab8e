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
 * The methods after `sni` have defaults that answer "absent": the identity (`uriSan`, `mtls`, `dynamicMetadata`),
 * what CEL conditions read and the fields of Istio input (peer names, addresses, the JWT payload). A view that only
 * serves decisions on a parsed peer need not implement them. The body is what the request flow (engine/flow.ts)
 * set with setBody, from what readBufferedBody gave it.
 */
export abstract class RequestView {
  private bodyState: BodyState = BodyState.ABSENT;
  private bodyPtr: usize = 0;
  private bodyLen: i32 = 0;

  /** `:method`. */
  abstract method(out: Slice): bool;
  /** `:path` as received, query included (the engine cuts it at `?` or `#`). */
  abstract path(out: Slice): bool;
  /** `:authority`. */
  abstract host(out: Slice): bool;
  /** The destination port in decimal ASCII. */
  abstract port(out: Slice): bool;
  /**
   * Value number `index` (0-based, in the order the request carries them) of the request header `name`
   * (lower-case); false past the last one. A header sent on several lines has several values, each matched on
   * its own (Envoy 1.40's RBAC does the same since CVE-2026-26308: joining them with "," let `x: adminx` plus
   * `x: admin` slip past a deny on `admin`). The name's memory may be reused after the call (CEL computes
   * names), so an implementation must not cache by its address alone.
   */
  abstract headerValue(namePtr: usize, nameLen: i32, index: i32, out: Slice): bool;
  /** The TLS SNI (`connection.requested_server_name`). */
  abstract sni(out: Slice): bool;
  /** Number of distinct header names (pseudo-headers included, as Envoy's header map holds them); -1 unknown. */
  headerCount(): i32 {
    return -1;
  }
  /** `connection.mtls`: 1 when the client presented a certificate, 0 when not, -1 when unknown. */
  mtls(): i32 {
    return -1;
  }
  /**
   * The first URI SAN of the client certificate (`connection.uri_san_peer_certificate`): false without a
   * certificate or without a URI SAN.
   */
  uriSan(out: Slice): bool {
    out.clear();
    return false;
  }
  /** `content-type` (first value). */
  contentType(out: Slice): bool {
    out.clear();
    return false;
  }
  /** The request body as the request flow (engine/flow.ts) last set it with setBody. */
  body(out: Slice): BodyState {
    if (this.bodyState == BodyState.PRESENT) out.set(this.bodyPtr, this.bodyLen);
    else out.clear();
    return this.bodyState;
  }
  /** What body() answers from now on. The bytes at `ptr` must stay valid until the request ends. */
  setBody(state: BodyState, ptr: usize, len: i32): void {
    this.bodyState = state;
    this.bodyPtr = ptr;
    this.bodyLen = len;
  }
  /**
   * Sets `out` to the first bytes, at most `max`, of the request body buffered so far (the host's buffer while
   * the body hooks answer StopIterationAndBuffer), in memory that stays valid until the request ends. False when
   * the buffer cannot be read. The request flow decides how much it needs.
   */
  readBufferedBody(max: u32, out: Slice): bool {
    out.clear();
    return false;
  }
  /**
   * One of the names Envoy RBAC's `authenticated.principal_name` compares, from the peer certificate: 0 the first
   * URI SAN (`connection.uri_san_peer_certificate`), 1 the first DNS SAN (`connection.dns_san_peer_certificate`),
   * 2 the subject (`connection.subject_peer_certificate`). Absent without a TLS peer certificate (or that SAN).
   */
  peerName(which: i32, out: Slice): bool {
    out.clear();
    return false;
  }
  /** `source.address`: the downstream remote address after Envoy's x-forwarded-for handling (`1.2.3.4:5`, `[::1]:5`). */
  remoteAddress(out: Slice): bool {
    out.clear();
    return false;
  }
  /** `destination.address`: the downstream local address (the address the connection was accepted on). */
  localAddress(out: Slice): bool {
    out.clear();
    return false;
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
