// The request a test or `check` hands to the host, and how Envoy 1.40 would present it to a wasm filter:
// the header map after the HTTP connection manager has normalised it, and the connection facts behind
// proxy_get_property.

import type { Pair } from "./pairs.ts";
import { encodePairs } from "./pairs.ts";
import { dynamicMetadataBytes, JWT_PAYLOAD_KEY } from "./metadata.ts";

/** One HTTP request on one downstream connection, as a client would send it. */
export interface HttpRequest {
  /**
   * The URI SAN of the client certificate (normally a SPIFFE ID, but any string is passed through as Envoy
   * would). `null`/absent: the client presents no certificate.
   */
  peer?: string | null;
  /**
   * Whether the client presented a certificate. Defaults to `peer != null`; `mtls: true` with no `peer` models
   * a client certificate without any URI SAN.
   */
  mtls?: boolean;
  /** Whether the downstream connection is TLS at all (default true: our listeners are HTTPS). */
  tls?: boolean;
  /** TLS SNI. Default: the authority's host name when TLS is on and it is not an IP literal, else empty. */
  sni?: string;
  method?: string;
  path?: string;
  authority?: string;
  scheme?: string;
  /** Extra request headers; names are lower-cased as Envoy does. Repeated names stay separate entries. */
  headers?: Record<string, string> | Pair[];
  /** Request body, delivered in one proxy_on_request_body call. Adds `content-length` unless given. */
  body?: Uint8Array | string;
  /** Request body delivered in several proxy_on_request_body calls (takes precedence over `body`). */
  bodyChunks?: Uint8Array[];
  /** Request trailers; when present, the body (if any) does not end the stream and trailers do. */
  trailers?: Record<string, string> | Pair[];
  /** Destination (listener) port, `destination.port`. Default 443. */
  port?: number;
  /** `source.address` (`ip:port`). Default `10.0.0.2:40000`. */
  sourceAddress?: string;
  /** `destination.address` (`ip:port`). Default `10.0.0.1:<port>`. */
  destinationAddress?: string;
  /** `request.protocol`. Default `HTTP/2`. */
  protocol?: string;
  /** `x-request-id` Envoy adds. Default: a deterministic UUID derived from the request counter. */
  requestId?: string;
  /** Optional upstream response, delivered to the response hooks when the request is not locally replied. */
  response?: HttpResponse;
  /**
   * The payload of a JWT that Envoy's jwt_authn filter verified (`payload_in_metadata: jwt_payload`): it reaches
   * the filter as dynamic metadata (the `metadata` property), exactly as Envoy 1.40 serialises it. Absent: no
   * verified token (the property is then empty). Never taken from a header.
   */
  jwtPayload?: Record<string, unknown>;
  /**
   * The key jwt_authn stores `jwtPayload` under (the provider's `payload_in_metadata`). Default `jwt_payload`, what
   * our Envoy configs set; istiod's RequestAuthentication has used the token's issuer.
   */
  jwtPayloadKey?: string;
  /**
   * The whole `envoy.filters.http.jwt_authn` namespace of the dynamic metadata, key by key in this order (e.g. the
   * payloads of tokens from several issuers, or other entries jwt_authn writes). Instead of `jwtPayload`.
   */
  jwtMetadata?: Record<string, unknown>;
}

export interface HttpResponse {
  status: number;
  headers?: Record<string, string> | Pair[];
  body?: Uint8Array | string;
}

/** A request turned into what Envoy shows the filter. Reusable: contexts copy what they may mutate. */
export interface PreparedRequest {
  readonly headers: readonly Pair[];
  /** the serialised header pairs, valid while a context has not modified its copy */
  readonly headerPairs: Uint8Array;
  readonly headerBytes: number;
  readonly bodyChunks: readonly Uint8Array[];
  readonly trailers: readonly Pair[] | null;
  readonly connection: ConnectionInfo;
  readonly protocol: string;
  readonly response: PreparedResponse | null;
  /** The `metadata` property: a serialised envoy.config.core.v3.Metadata (empty without dynamic metadata). */
  readonly dynamicMetadata: Uint8Array;
}

export interface PreparedResponse {
  readonly headers: readonly Pair[];
  readonly body: Uint8Array | null;
}

export interface ConnectionInfo {
  readonly tls: boolean;
  readonly mtls: boolean;
  readonly uriSanPeer: string | null;
  readonly sni: string;
  readonly sourceAddress: string;
  readonly sourcePort: number;
  readonly destinationAddress: string;
  readonly destinationPort: number;
}

const utf8 = new TextEncoder();

function toPairs(h: Record<string, string> | Pair[] | undefined): Pair[] {
  if (!h) return [];
  const list: Pair[] = Array.isArray(h) ? h : Object.entries(h);
  return list.map(([k, v]) => [k.toLowerCase(), String(v)]);
}

function hostOf(authority: string): string {
  if (authority.startsWith("[")) return authority.slice(0, authority.indexOf("]") + 1);
  const colon = authority.lastIndexOf(":");
  return colon >= 0 ? authority.slice(0, colon) : authority;
}

function isIpLiteral(host: string): boolean {
  return host.startsWith("[") || /^\d{1,3}(\.\d{1,3}){3}$/.test(host);
}

function splitAddress(addr: string): [string, number] {
  const colon = addr.lastIndexOf(":");
  const port = colon >= 0 ? Number(addr.slice(colon + 1)) : 0;
  return [addr, Number.isInteger(port) ? port : 0];
}

/** The jwt_authn dynamic metadata of a request (its `jwtPayload` under `jwtPayloadKey`, or `jwtMetadata`). */
function jwtMetadataOf(req: HttpRequest): Uint8Array {
  if (req.jwtMetadata !== undefined) {
    if (req.jwtPayload !== undefined || req.jwtPayloadKey !== undefined) {
      throw new TypeError("HttpRequest: give jwtMetadata or jwtPayload (with jwtPayloadKey), not both");
    }
    return dynamicMetadataBytes(req.jwtMetadata);
  }
  if (req.jwtPayload === undefined) return dynamicMetadataBytes(undefined);
  return dynamicMetadataBytes({ [req.jwtPayloadKey ?? JWT_PAYLOAD_KEY]: req.jwtPayload });
}

let requestCounter = 0;

function deterministicRequestId(): string {
  requestCounter++;
  const hex = requestCounter.toString(16).padStart(12, "0");
  return `00000000-0000-4000-8000-${hex}`;
}

/**
 * Builds the header map Envoy's HTTP connection manager hands to the first filter: pseudo-headers, then the
 * client's headers (lower-cased), `content-length` for a body the client did not size, then the headers the
 * connection manager itself adds (`x-forwarded-proto`, `x-request-id`).
 */
export function prepareRequest(req: HttpRequest): PreparedRequest {
  const tls = req.tls ?? true;
  const scheme = req.scheme ?? (tls ? "https" : "http");
  const authority = req.authority ?? "localhost";
  const headers: Pair[] = [
    [":authority", authority],
    [":path", req.path ?? "/"],
    [":method", req.method ?? "GET"],
    [":scheme", scheme],
  ];
  const extra = toPairs(req.headers);
  headers.push(...extra);

  let chunks: Uint8Array[] = [];
  if (req.bodyChunks) chunks = req.bodyChunks.slice();
  else if (req.body !== undefined) chunks = [typeof req.body === "string" ? utf8.encode(req.body) : req.body];
  const bodyLength = chunks.reduce((n, c) => n + c.length, 0);
  if (chunks.length > 0 && !extra.some(([k]) => k === "content-length" || k === "transfer-encoding")) {
    headers.push(["content-length", String(bodyLength)]);
  }
  // The connection manager sets x-forwarded-proto and generates x-request-id (generate_request_id defaults
  // to true) before any HTTP filter runs.
  if (!extra.some(([k]) => k === "x-forwarded-proto")) headers.push(["x-forwarded-proto", scheme]);
  if (!extra.some(([k]) => k === "x-request-id")) headers.push(["x-request-id", req.requestId ?? deterministicRequestId()]);

  const port = req.port ?? 443;
  const [sourceAddress, sourcePort] = splitAddress(req.sourceAddress ?? "10.0.0.2:40000");
  const [destinationAddress, destinationPort] = req.destinationAddress
    ? splitAddress(req.destinationAddress)
    : [`10.0.0.1:${port}`, port];
  const host = hostOf(authority);
  const peer = req.peer ?? null;
  const mtls = tls && (req.mtls ?? peer !== null);
  const connection: ConnectionInfo = {
    tls,
    mtls,
    uriSanPeer: mtls ? peer : null,
    sni: req.sni ?? (tls && !isIpLiteral(host) ? host : ""),
    sourceAddress,
    sourcePort,
    destinationAddress,
    destinationPort: req.port ?? destinationPort,
  };
  let headerBytes = 0;
  for (const [k, v] of headers) headerBytes += utf8.encode(k).length + utf8.encode(v).length;
  let response: PreparedResponse | null = null;
  if (req.response) {
    const rh: Pair[] = [[":status", String(req.response.status)], ...toPairs(req.response.headers)];
    const rb = req.response.body === undefined ? null
      : typeof req.response.body === "string" ? utf8.encode(req.response.body) : req.response.body;
    if (rb && !rh.some(([k]) => k === "content-length")) rh.push(["content-length", String(rb.length)]);
    response = { headers: rh, body: rb };
  }
  return {
    headers,
    headerPairs: encodePairs(headers),
    headerBytes,
    bodyChunks: chunks,
    trailers: req.trailers ? toPairs(req.trailers) : null,
    connection,
    protocol: req.protocol ?? "HTTP/2",
    response,
    dynamicMetadata: jwtMetadataOf(req),
  };
}
