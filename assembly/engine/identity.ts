// Who the caller is, read the one way Envoy's other filters and the workload read it, or refused.
//
// 1. A client certificate decides: its URI SAN is the identity. A certificate without a URI SAN identifies
//    nobody; a JWT never stands in for a presented certificate (a token is only the identity of a caller that
//    presents no certificate at all).
// 2. An X.509-SVID carries exactly one URI SAN. Envoy 1.40 shows a wasm filter only the first
//    (`connection.uri_san_peer_certificate`), while its RBAC filter tries every SAN and the workload may read any
//    of them from x-forwarded-client-cert. So the filter counts them in the x-forwarded-client-cert element the
//    listener wrote for this connection (`forward_client_cert_details: SANITIZE_SET` or `APPEND_FORWARD` with
//    `set_current_client_cert_details.uri: true`; Envoy appends its element last and writes one `URI=` per URI
//    SAN, `URI=` when there is none) and refuses a certificate with several, or an element that does not agree
//    with the property. Without the header (a listener that does not set it) the request is refused unless the
//    plugin configuration says `"xfcc": "ignore"` (then the first URI SAN is taken on trust).
// 3. Without a certificate: the `sub` of the JWT that jwt_authn verified, when it is a valid SPIFFE ID.

import { bytesEqual, Slice } from "./bytes";
import { findJwtPayload, payloadSubject } from "./jwt";
import { RequestView } from "./request";
import { SpiffeId } from "./spiffe";

/** Why a request is denied before any rule is evaluated (`spiffe_authz_denied[<code>]`). */
export const enum Refusal {
  NONE = 0,
  /** The client certificate carries more than one URI SAN. */
  MULTIPLE_URI_SANS = 1,
  /** A client certificate was presented but the listener did not set x-forwarded-client-cert. */
  XFCC_MISSING = 2,
  /** x-forwarded-client-cert cannot be read, or its element disagrees with the connection. */
  XFCC_MALFORMED = 3,
  /** A path rule would decide on a path the workload may read differently (engine/path.ts). */
  AMBIGUOUS_PATH = 4,
}

/** How the filter learns how many URI SANs the client certificate has (plugin configuration `xfcc`). */
export const enum XfccMode {
  /** Read the listener's x-forwarded-client-cert; refuse without it. */
  REQUIRE = 0,
  /** Trust the first URI SAN (listeners that cannot set the header; weaker: several SANs go unnoticed). */
  IGNORE = 1,
}

const XFCC_NAME = String.UTF8.encode("x-forwarded-client-cert", false);
const XFCC_URI = 0x3d495255; // "URI=" little-endian

const san = new Slice();
const xfcc = new Slice();
const extra = new Slice();
const meta = new Slice();
const payload = new Slice();
const sub = new Slice();

/**
 * Reads the caller's identity into `peer` (its bytes stay owned by `view`) and returns why the request must be
 * refused, or NONE. `peer` is filled for the explain output even when refused.
 */
export function resolveIdentity(view: RequestView, mode: XfccMode, peer: SpiffeId): Refusal {
  const hasSan = view.uriSan(san);
  if (hasSan || view.mtls() == 1) {
    const valid = hasSan && peer.parse(san.ptr, san.len);
    if (!hasSan) peer.setAbsent();
    peer.certificate = true;
    // Only a certificate whose first URI SAN is a valid SPIFFE ID can satisfy an identity rule, so only then can
    // a second URI SAN change what Envoy's RBAC or the workload would conclude.
    if (!valid || mode == XfccMode.IGNORE) return Refusal.NONE;
    return checkXfcc(view);
  }
  peer.setAbsent();
  if (view.dynamicMetadata(meta) && findJwtPayload(meta.ptr, meta.len, payload) &&
      payloadSubject(payload.ptr, payload.len, sub) && sub.len > 0) {
    // The subject's bytes live in the metadata the view owns until the request ends.
    if (peer.parse(sub.ptr, sub.len)) peer.fromJwt = true;
    else peer.setAbsent(); // a subject that is not a SPIFFE ID is no identity
  }
  return Refusal.NONE;
}

/** Checks the listener's x-forwarded-client-cert element for this connection against the URI SAN in `san`. */
function checkXfcc(view: RequestView): Refusal {
  if (!view.headerValue(changetype<usize>(XFCC_NAME), XFCC_NAME.byteLength, 0, xfcc)) return Refusal.XFCC_MISSING;
  // Envoy keeps x-forwarded-client-cert as one value; a second line came from somewhere else.
  if (view.headerValue(changetype<usize>(XFCC_NAME), XFCC_NAME.byteLength, 1, extra)) return Refusal.XFCC_MALFORMED;
  view.headerValue(changetype<usize>(XFCC_NAME), XFCC_NAME.byteLength, 0, xfcc);
  const start = lastElement(xfcc.ptr, xfcc.len);
  if (start < 0) return Refusal.XFCC_MALFORMED;
  // The element's pairs: key=value separated by ';', values possibly quoted ("..." with \" escapes).
  const p = xfcc.ptr;
  const end = xfcc.len;
  let uris = 0;
  let hashes = 0;
  let match = false;
  let i = start;
  while (i < end) {
    let k = i;
    while (k < end && load<u8>(p + <usize>k) != 0x3d && load<u8>(p + <usize>k) != 0x3b) k++;
    if (k >= end || load<u8>(p + <usize>k) != 0x3d) return Refusal.XFCC_MALFORMED; // a pair without '='
    const keyStart = i;
    const keyLen = k - i;
    let v = k + 1;
    let vEnd = v;
    if (v < end && load<u8>(p + <usize>v) == 0x22) {
      vEnd = closingQuote(p, v, end);
      if (vEnd < 0) return Refusal.XFCC_MALFORMED;
      vEnd++;
      if (vEnd < end && load<u8>(p + <usize>vEnd) != 0x3b) return Refusal.XFCC_MALFORMED;
    } else {
      while (vEnd < end && load<u8>(p + <usize>vEnd) != 0x3b) vEnd++;
    }
    if (keyLen == 3 && load<u32>(p + <usize>keyStart) == XFCC_URI) {
      if (vEnd > v) {
        uris++;
        match = bytesEqual(p + <usize>v, vEnd - v, san.ptr, san.len);
      }
    } else if (keyLen == 4 && isHashKey(p + <usize>keyStart)) {
      hashes++;
    }
    i = vEnd + 1;
  }
  // Envoy writes exactly one Hash= per element it adds.
  if (hashes != 1) return Refusal.XFCC_MALFORMED;
  if (uris > 1) return Refusal.MULTIPLE_URI_SANS;
  if (uris != 1 || !match) return Refusal.XFCC_MALFORMED;
  return Refusal.NONE;
}

// @ts-ignore: decorator
@inline function isHashKey(p: usize): bool {
  return (load<u32>(p) | 0x20202020) == 0x68736168; // "hash", any case
}

/** Index of the closing quote of the quoted value that opens at `open`, or -1. */
function closingQuote(p: usize, open: i32, end: i32): i32 {
  for (let i = open + 1; i < end; i++) {
    const c = load<u8>(p + <usize>i);
    if (c == 0x5c) {
      i++;
      continue;
    }
    if (c == 0x22) return i;
  }
  return -1;
}

/**
 * Where the last element of an x-forwarded-client-cert value starts (elements are separated by ',' outside
 * quotes), or -1 when a quote is left open: a client's unbalanced quote must not swallow the element Envoy
 * appended after it.
 */
function lastElement(p: usize, len: i32): i32 {
  let start = 0;
  let quoted = false;
  for (let i = 0; i < len; i++) {
    const c = load<u8>(p + <usize>i);
    if (quoted) {
      if (c == 0x5c) i++;
      else if (c == 0x22) quoted = false;
    } else if (c == 0x22) {
      quoted = true;
    } else if (c == 0x2c) {
      start = i + 1;
    }
  }
  if (quoted || start >= len) return -1;
  return start;
}
