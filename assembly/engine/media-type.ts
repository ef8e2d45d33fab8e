// Which request bodies the filter reads as JSON or as gRPC: one classifier for the content-type (and
// content-encoding) of a body that a condition reads through `request.json`, see docs/cel.md "JSON bodies", and one
// for gRPC, which every caller asks (whether request.grpc.message reads frames, whether the filter waits for the
// first frame, whether a denial is a gRPC reply with grpc-status).
//
// The filter decides on a body only when every mainstream reader decodes it to the same text: UTF-8, as sent. A
// reader that honours a charset parameter (Express's body-parser decodes utf-7, utf-16 and utf-32 with
// iconv-lite) or inflates a content-encoding (body-parser: gzip, deflate, br) reads other text than the bytes the
// filter sees, so such requests are refused before the body is parsed.

import { Slice } from "./bytes";
import { RequestView } from "./request";

/** What a content-type says about reading the body as JSON. */
export const enum JsonMediaType {
  /** `application/json` or `application/<name>+json`, without a charset parameter or with `charset=utf-8`. */
  UTF8 = 0,
  /** A JSON media type with a charset parameter other than utf-8 (or several charset parameters, one not utf-8). */
  OTHER_CHARSET = 1,
  /** A well-formed media type that is not JSON. */
  NOT_JSON = 2,
  /**
   * Not exactly one media type in the grammar below: empty, a stray character, an unterminated quote, or (Envoy
   * 1.40 merges repeated content-type lines into one value joined with ",") two content-types.
   */
  MALFORMED = 3,
}

// @ts-ignore: decorator
@inline function lower(c: u32): u32 {
  return c - 65 < 26 ? c | 0x20 : c;
}

/** RFC 9110 tchar. */
function isTokenChar(c: u32): bool {
  if (c - 48 < 10 || (c | 0x20) - 97 < 26) return true;
  // ! # $ % & ' * + - . ^ _ ` | ~
  return c == 33 || (c >= 35 && c <= 39) || c == 42 || c == 43 || c == 45 || c == 46 || c == 94 || c == 95 ||
    c == 96 || c == 124 || c == 126;
}

/** RFC 6838 restricted-name-chars (after the first, which is ALPHA / DIGIT). */
function isRestrictedChar(c: u32): bool {
  if (c - 48 < 10 || (c | 0x20) - 97 < 26) return true;
  // ! # $ & - ^ _ . +
  return c == 33 || c == 35 || c == 36 || c == 38 || c == 45 || c == 94 || c == 95 || c == 46 || c == 43;
}

/** Whether [p, p+n) equals the lower-case ASCII `word`, ignoring ASCII case. */
function equalsFolded(p: usize, n: i32, word: string): bool {
  if (n != word.length) return false;
  for (let i = 0; i < n; i++) {
    if (lower(<u32>load<u8>(p + <usize>i)) != <u32>word.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * Classifies a content-type value for a JSON body. The grammar is RFC 9110 §8.3.1 without its rarely used
 * freedoms, so that every parser that accepts a value reads the same type and charset from it:
 *
 *   media-type = type "/" subtype *( *SP ";" *SP name "=" ( token / quoted-string ) ) *SP
 *   quoted-string = DQUOTE *( SP / %x21 / %x23-5B / %x5D-7E ) DQUOTE      (no quoted-pair, no HTAB, no obs-text)
 *
 * JSON is `application/json` and `application/<name>+json` (RFC 6839) whose subtype is an RFC 6838
 * restricted-name of at most 127 characters: exactly what body-parser's `type: ["application/json",
 * "application/*+json"]` parses (type-is checks names with media-typer). Every `charset` parameter must be
 * `utf-8` (any case, quoted or not): parsers disagree on which of two charset parameters counts (content-type 2.x
 * takes the first).
 */
export function jsonMediaType(ct: Slice): JsonMediaType {
  const p = ct.ptr;
  const n = ct.len;
  let i = 0;
  // type
  const typeStart = i;
  while (i < n && isTokenChar(<u32>load<u8>(p + <usize>i))) i++;
  const typeLen = i - typeStart;
  if (typeLen == 0 || i >= n || load<u8>(p + <usize>i) != 47) return JsonMediaType.MALFORMED;
  i++;
  const subStart = i;
  while (i < n && isTokenChar(<u32>load<u8>(p + <usize>i))) i++;
  const subLen = i - subStart;
  if (subLen == 0) return JsonMediaType.MALFORMED;
  let charsetOk = true;
  for (;;) {
    while (i < n && load<u8>(p + <usize>i) == 32) i++;
    if (i == n) break;
    if (load<u8>(p + <usize>i) != 59) return JsonMediaType.MALFORMED;
    i++;
    while (i < n && load<u8>(p + <usize>i) == 32) i++;
    const nameStart = i;
    while (i < n && isTokenChar(<u32>load<u8>(p + <usize>i))) i++;
    const nameLen = i - nameStart;
    if (nameLen == 0 || i >= n || load<u8>(p + <usize>i) != 61) return JsonMediaType.MALFORMED;
    i++;
    let valueStart = i;
    let valueLen = 0;
    if (i < n && load<u8>(p + <usize>i) == 34) {
      i++;
      valueStart = i;
      while (i < n) {
        const c = <u32>load<u8>(p + <usize>i);
        if (c == 34) break;
        if (c < 32 || c == 92 || c > 126) return JsonMediaType.MALFORMED;
        i++;
      }
      if (i >= n) return JsonMediaType.MALFORMED; // unterminated
      valueLen = i - valueStart;
      i++;
    } else {
      while (i < n && isTokenChar(<u32>load<u8>(p + <usize>i))) i++;
      valueLen = i - valueStart;
      if (valueLen == 0) return JsonMediaType.MALFORMED;
    }
    if (equalsFolded(p + <usize>nameStart, nameLen, "charset") &&
      !equalsFolded(p + <usize>valueStart, valueLen, "utf-8")) charsetOk = false;
  }
  if (!equalsFolded(p + <usize>typeStart, typeLen, "application")) return JsonMediaType.NOT_JSON;
  const sub = p + <usize>subStart;
  if (!equalsFolded(sub, subLen, "json")) {
    // <name>+json, name non-empty, the whole subtype a restricted-name.
    if (subLen <= 5 || subLen > 127 || !equalsFolded(sub + <usize>(subLen - 5), 5, "+json")) {
      return JsonMediaType.NOT_JSON;
    }
    const first = <u32>load<u8>(sub);
    if (!(first - 48 < 10 || (first | 0x20) - 97 < 26)) return JsonMediaType.NOT_JSON;
    for (let k = 1; k < subLen; k++) {
      if (!isRestrictedChar(<u32>load<u8>(sub + <usize>k))) return JsonMediaType.NOT_JSON;
    }
  }
  return charsetOk ? JsonMediaType.UTF8 : JsonMediaType.OTHER_CHARSET;
}

/**
 * Whether a content-encoding value leaves the body as sent: empty (body-parser treats an empty value as
 * identity) or `identity` in any case. Anything else, including a list such as `identity,gzip` (Envoy 1.40 joins
 * repeated lines), is a coding some reader would undo.
 */
export function isIdentityEncoding(ce: Slice): bool {
  return ce.len == 0 || equalsFolded(ce.ptr, ce.len, "identity");
}

/**
 * gRPC (gRPC over HTTP/2): `application/grpc` in any case, alone or followed by `+` (a codec suffix such as
 * `+proto`), `;` (parameters), a space or a tab. `application/grpc-web` frames differ (and may be base64 text), so
 * it is not gRPC, nor is `application/grpcx`.
 */
export function isGrpcContentType(ct: Slice): bool {
  const p = "application/grpc";
  if (ct.len < p.length) return false;
  for (let i = 0; i < p.length; i++) {
    if (lower(<u32>load<u8>(ct.ptr + <usize>i)) != <u32>p.charCodeAt(i)) return false;
  }
  if (ct.len == p.length) return true;
  const next = <u32>load<u8>(ct.ptr + <usize>p.length);
  return next == 43 || next == 59 || next == 32 || next == 9;
}

const grpcType = new Slice();

/** Whether the request's content-type (its first value) is gRPC (isGrpcContentType). */
export function isGrpcRequest(view: RequestView): bool {
  return view.contentType(grpcType) && isGrpcContentType(grpcType);
}
