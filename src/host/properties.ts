// proxy_get_property as Envoy 1.40 answers it. Envoy evaluates the NUL-separated path through its CEL
// activation (source/extensions/filters/common/expr/context.cc) and serialises the leaf (wasm/context.cc
// serializeValue): strings and bytes raw, int64/uint64/durations/timestamps as 8 little-endian bytes, bools as
// one byte, maps as pairs. An absent value is NotFound, never an empty string.

import type { Pair } from "./pairs.ts";
import { encodePairs } from "./pairs.ts";
import type { PreparedRequest } from "./request.ts";
import { UnmodelledPropertyError } from "./errors.ts";

const utf8 = new TextEncoder();

export function int64Bytes(v: number | bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigInt64(0, BigInt(v), true);
  return out;
}

export function boolBytes(v: boolean): Uint8Array {
  return Uint8Array.of(v ? 1 : 0);
}

export function stringBytes(v: string): Uint8Array {
  return utf8.encode(v);
}

/** What the resolver needs to know about the context that asks. */
export interface PropertyScope {
  /** null in the root context: Envoy has no stream info there, so every stream attribute is NotFound */
  readonly request: PreparedRequest | null;
  /** the context's current request header map (null once Envoy has released it) */
  readonly headers: readonly Pair[] | null;
  readonly rootId: string;
  readonly vmId: string;
  readonly pluginName: string;
  readonly connectionId: number;
  readonly requestTimeNs: bigint;
  /** values stored with proxy_set_property (Envoy keeps them in filter state as `wasm.<path>`) */
  readonly filterState: ReadonlyMap<string, Uint8Array> | null;
}

// Top-level names Envoy resolves that this host does not model: reading them fails loudly rather than
// pretending they are absent.
const UNMODELLED_TOP = new Set(["response", "upstream", "filter_state", "xds", "node", "cluster_name",
  "cluster_metadata", "route_name", "route_metadata", "upstream_host_metadata", "listener_direction",
  "listener_metadata"]);

function headerValue(headers: readonly Pair[], name: string): string | null {
  // Envoy's HeadersWrapper joins repeated headers with "," (HeaderUtility::getAllOfHeaderAsString).
  let out: string | null = null;
  for (const [k, v] of headers) if (k === name) out = out === null ? v : `${out},${v}`;
  return out;
}

function headersMap(headers: readonly Pair[]): Pair[] {
  const keys: string[] = [];
  for (const [k] of headers) if (!keys.includes(k)) keys.push(k);
  return keys.map((k) => [k, headerValue(headers, k) as string]);
}

function pathOf(headers: readonly Pair[]): string | null {
  return headerValue(headers, ":path");
}

/**
 * Resolves a property path (already split on NUL). Returns the serialised value, or null for NotFound.
 * Throws UnmodelledPropertyError for values Envoy has but this host does not model.
 */
export function resolveProperty(parts: readonly string[], scope: PropertyScope): Uint8Array | null {
  const top = parts[0];
  const leafOnly = (value: Uint8Array | null, depth: number): Uint8Array | null =>
    // A scalar has no fields: Envoy answers NotFound for any deeper path.
    parts.length > depth ? null : value;

  switch (top) {
    case "plugin_root_id":
      return leafOnly(stringBytes(scope.rootId), 1);
    case "plugin_vm_id":
      return leafOnly(stringBytes(scope.vmId), 1);
    case "plugin_name":
      return leafOnly(stringBytes(scope.pluginName), 1);
    case "connection_id":
      return scope.request ? leafOnly(int64Bytes(scope.connectionId), 1) : null;
  }

  const req = scope.request;
  if (top === "connection" || top === "source" || top === "destination" || top === "request") {
    if (!req) return null;
    if (parts.length === 1) throw new UnmodelledPropertyError(parts.join("."));
    const field = parts[1];
    const c = req.connection;
    if (top === "connection") {
      switch (field) {
        case "mtls":
          return leafOnly(boolBytes(c.mtls), 2);
        case "requested_server_name":
          return leafOnly(stringBytes(c.sni), 2);
        case "id":
          return leafOnly(int64Bytes(scope.connectionId), 2);
        case "termination_details":
        case "transport_failure_reason":
          return null;
      }
      // Everything else lives on the TLS connection: NotFound on plaintext.
      if (!c.tls) return null;
      switch (field) {
        case "uri_san_peer_certificate":
          return leafOnly(c.uriSanPeer === null ? null : stringBytes(c.uriSanPeer), 2);
        case "dns_san_peer_certificate":
          return leafOnly(c.dnsSanPeer === null ? null : stringBytes(c.dnsSanPeer), 2);
        case "subject_peer_certificate":
          // Envoy answers the (possibly empty) subject on every TLS connection, with or without a client certificate.
          return leafOnly(stringBytes(c.subjectPeer), 2);
        case "tls_version":
          return leafOnly(stringBytes("TLSv1.3"), 2);
        case "uri_san_local_certificate":
        case "dns_san_local_certificate":
        case "subject_local_certificate":
        case "sha256_peer_certificate_digest":
          throw new UnmodelledPropertyError(parts.join("."));
      }
      return null;
    }
    if (top === "source" || top === "destination") {
      const local = top === "destination";
      switch (field) {
        case "address":
          return leafOnly(stringBytes(local ? c.destinationAddress : c.sourceAddress), 2);
        case "port":
          return leafOnly(int64Bytes(local ? c.destinationPort : c.sourcePort), 2);
      }
      return null;
    }
    // request.*
    const headers = scope.headers;
    switch (field) {
      case "time":
        return leafOnly(int64Bytes(scope.requestTimeNs), 2);
      case "protocol":
        return leafOnly(stringBytes(req.protocol), 2);
      case "duration":
        return null; // only once the request is complete
      case "size": {
        const cl = headers ? headerValue(headers, "content-length") : null;
        const n = cl !== null && /^\d+$/.test(cl) ? Number(cl) : 0;
        return leafOnly(int64Bytes(n), 2);
      }
      case "total_size":
        throw new UnmodelledPropertyError(parts.join("."));
    }
    if (!headers) return null;
    switch (field) {
      case "path": {
        const p = pathOf(headers);
        return leafOnly(p === null ? null : stringBytes(p), 2);
      }
      case "url_path": {
        const p = pathOf(headers) ?? "";
        const q = p.indexOf("?");
        return leafOnly(stringBytes(q >= 0 ? p.slice(0, q) : p), 2);
      }
      case "query": {
        const p = pathOf(headers) ?? "";
        const q = p.indexOf("?");
        if (q < 0) return leafOnly(stringBytes(""), 2);
        const rest = p.slice(q + 1);
        const f = rest.indexOf("#");
        return leafOnly(stringBytes(f >= 0 ? rest.slice(0, f) : rest), 2);
      }
      case "host":
      case "scheme":
      case "method": {
        const v = headerValue(headers, `:${field === "host" ? "authority" : field}`);
        return leafOnly(v === null ? null : stringBytes(v), 2);
      }
      case "referer":
      case "useragent":
      case "id": {
        const name = field === "useragent" ? "user-agent" : field === "id" ? "x-request-id" : "referer";
        const v = headerValue(headers, name);
        return leafOnly(v === null ? null : stringBytes(v), 2);
      }
      case "headers": {
        if (parts.length === 2) return encodePairs(headersMap(headers));
        const v = headerValue(headers, parts[2].toLowerCase());
        return leafOnly(v === null ? null : stringBytes(v), 3);
      }
    }
    return null;
  }

  if (top === "metadata") {
    // Dynamic metadata (metadata.ts): Envoy serialises the whole Metadata message; without any, 0 bytes.
    if (!req) return null;
    if (parts.length === 1) return req.dynamicMetadata;
    // Deeper paths go through Envoy's CEL maps: NotFound when nothing is there; otherwise not modelled (Envoy
    // answers pairs, or SerializationFailure for lists and nulls, which the filter never relies on).
    if (req.dynamicMetadata.length === 0) return null;
    throw new UnmodelledPropertyError(parts.join("."));
  }
  if (UNMODELLED_TOP.has(top)) {
    if (!req && top !== "node" && top !== "listener_direction" && top !== "listener_metadata") return null;
    throw new UnmodelledPropertyError(parts.join("."));
  }
  // Any other name is looked up in filter state under "wasm.<name>", where proxy_set_property puts values.
  const stored = scope.filterState?.get(top);
  if (stored === undefined) return null;
  return parts.length === 1 ? stored : null;
}
