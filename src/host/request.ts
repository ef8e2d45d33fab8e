// The request a test or `check` hands to the host, and how Envoy 1.40 would present it to a wasm filter:
// the header map after the HTTP connection manager has normalised it, and the connection facts behind
// proxy_get_property.

import { createHash } from "node:crypto";
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
  /**
   * Every URI SAN of the client certificate, in order (an X.509-SVID has exactly one). Default: `[peer]` when
   * `peer` is given. `connection.uri_san_peer_certificate` shows the first; x-forwarded-client-cert lists all.
   */
  peerUris?: string[];
  /**
   * How the listener sets x-forwarded-client-cert (HCM `forward_client_cert_details`, with
   * `set_current_client_cert_details.uri: true`): "sanitize-set" (default, our Envoy configs) replaces what the
   * client sent with this connection's element, "append-forward" (Istio's inbound sidecar) appends the element to
   * what the client sent, "sanitize" removes the header and adds nothing, "forward-only" passes the client's.
   */
  xfcc?: XfccMode;
  /** The client certificate's first DNS SAN (`connection.dns_san_peer_certificate`); absent: none. */
  peerDns?: string;
  /**
   * The client certificate's subject as Envoy prints it (`connection.subject_peer_certificate`, RFC 2253, e.g.
   * `CN=web,O=acme`). Default "": what Envoy answers on a TLS connection without a client certificate, and a
   * certificate with an empty subject.
   */
  peerSubject?: string;
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

export type XfccMode = "sanitize-set" | "append-forward" | "sanitize" | "forward-only";
export const XFCC_MODES: readonly XfccMode[] = ["sanitize-set", "append-forward", "sanitize", "forward-only"];

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
  readonly dnsSanPeer: string | null;
  readonly subjectPeer: string;
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

/** The client certificate's URI SANs: `peerUris`, else `[peer]`, else none. */
function peerUrisOf(req: HttpRequest): string[] {
  const peer = req.peer ?? null;
  if (req.peerUris !== undefined) {
    if (peer !== null && req.peerUris[0] !== peer) throw new TypeError("HttpRequest: peer must be the first of peerUris");
    return req.peerUris.slice();
  }
  return peer === null ? [] : [peer];
}

/**
 * The client's headers after the connection manager applied `forward_client_cert_details` (Envoy 1.40
 * ConnectionManagerUtility::mutateXfccRequestHeader): this connection's element is `Hash=<sha256 of the
 * certificate>;URI=<san>` per URI SAN (`URI=` for none); several client lines of the header are one value
 * joined with "," (it is an inline header in Envoy's map). `uris` is null without a client certificate.
 */
function xfccHeaders(headers: Pair[], mode: XfccMode, uris: string[] | null): Pair[] {
  const name = "x-forwarded-client-cert";
  const sent = headers.filter(([k]) => k === name).map(([, v]) => v);
  const rest = headers.filter(([k]) => k !== name);
  const clientValue = sent.length > 0 ? sent.join(",") : null;
  const element = uris === null ? null : xfccElement(uris);
  let value: string | null = null;
  switch (mode) {
    case "sanitize-set":
      value = element;
      break;
    case "append-forward":
      value = element === null ? clientValue : clientValue === null ? element : `${clientValue},${element}`;
      break;
    case "forward-only":
      value = clientValue;
      break;
    case "sanitize":
      value = null;
  }
  return value === null ? rest : [...rest, [name, value]];
}

function xfccElement(uris: string[]): string {
  const hash = createHash("sha256").update(uris.join("\n")).digest("hex");
  const sans = uris.length === 0 ? ["URI="] : uris.map((u) => `URI=${u}`);
  return [`Hash=${hash}`, ...sans].join(";");
}

let requestCounter = 0;

function deterministicRequestId(): string {
  requestCounter++;
  const hex = requestCounter.toString(16).padStart(12, "0");
  return `00000000-0000-4000-8000-${hex}`;
}

/**
 * Builds the header map Envoy's HTTP connection manager hands to the first filter: pseudo-headers, then the
 * client's headers (lower-cased, x-forwarded-client-cert as the listener's `forward_client_cert_details` leaves
 * it), `content-length` for a body the client did not size, then the headers the connection manager itself adds
 * (`x-forwarded-proto`, `x-request-id`).
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
  const uris = peerUrisOf(req);
  const mtls = tls && (req.mtls ?? uris.length > 0);
  const extra = xfccHeaders(toPairs(req.headers), req.xfcc ?? "sanitize-set", mtls ? uris : null);
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
  const connection: ConnectionInfo = {
    tls,
    mtls,
    uriSanPeer: mtls && uris.length > 0 ? uris[0] : null,
    dnsSanPeer: mtls ? (req.peerDns ?? null) : null,
    subjectPeer: mtls ? (req.peerSubject ?? "") : "",
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
