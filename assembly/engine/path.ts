// Paths a path rule must not decide on. Envoy's `normalize_path` (RFC 3986) resolves dot segments, turns `\` into
// `/` and decodes percent-encoded unreserved characters, but leaves `%2F` and `%5C` alone unless the listener sets
// `path_with_escaped_slashes_action`; a workload that decodes them (Python's http.server, many Java and Go
// routers) then serves `/public/..%2Fadmin/secret` as `/admin/secret`, which a rule on `/public/*` allowed. So a
// path that still holds, before its query, any of
//   - `%2F` or `%5C` (any case): an escaped slash or backslash,
//   - `\`: a backslash (Envoy rewrote it only under normalize_path),
//   - a dot segment `.` or `..`, plain or with `%2E` for a dot, or followed by a `;` parameter (`..;/`, which
//     Tomcat and Jetty read as `..`),
// is ambiguous: a table whose rules read the path refuses it (`spiffe_authz_denied[ambiguous_path]`) unless it
// was compiled to allow such paths.

/** Whether the path (up to `?` or `#`) could be read with different segments by the workload. */
export function pathIsAmbiguous(p: usize, len: i32): bool {
  let segStart = 0;
  let dots = 0; // dots seen in the current segment, -1 once it holds anything else
  for (let i = 0; i <= len; i++) {
    const c: u32 = i < len ? <u32>load<u8>(p + <usize>i) : 0x2f;
    if (c == 0x3f || c == 0x23) {
      return dots == 1 || dots == 2;
    }
    if (c == 0x2f) {
      if (i > segStart && (dots == 1 || dots == 2)) return true;
      segStart = i + 1;
      dots = 0;
      continue;
    }
    if (c == 0x5c) return true;
    if (c == 0x25 && i + 2 < len) {
      const h = <u32>load<u8>(p + <usize>(i + 1));
      const l = <u32>load<u8>(p + <usize>(i + 2)) | 0x20;
      if (h == 0x32 && l == 0x66) return true; // %2F
      if (h == 0x35 && l == 0x63) return true; // %5C
      if (h == 0x32 && l == 0x65) {
        // %2E: an encoded dot
        if (dots >= 0) dots++;
        i += 2;
        continue;
      }
      dots = -1;
      continue;
    }
    if (c == 0x3b) {
      // A path parameter ends what Servlet containers compare: "..;x" is "..".
      if (dots == 1 || dots == 2) return true;
      dots = -1;
      continue;
    }
    if (c == 0x2e) {
      if (dots >= 0) dots++;
      continue;
    }
    dots = -1;
  }
  return false;
}
