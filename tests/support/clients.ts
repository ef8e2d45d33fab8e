/**
 * HTTPS and gRPC-over-HTTP/2 clients for the integration tests: real TLS, a client certificate when given (node's
 * https offers no ALPN, so Envoy speaks HTTP/1.1; the gRPC client offers h2), a new connection per request (so an LDS update is seen by the next request, never hidden by a pooled connection).
 */
import { readFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import type { IncomingHttpHeaders } from "node:http";
import { connect } from "node:http2";
import type { IncomingHttpHeaders as H2Headers } from "node:http2";
import type { TLSSocket } from "node:tls";

export interface ClientIdentity {
  cert: string;
  key: string;
}

export interface HttpsOptions {
  port: number;
  /** CA the server certificate must chain to. */
  ca: string;
  /** Client certificate and key; null or omitted: no client certificate. */
  client?: ClientIdentity | null;
  method?: string;
  path: string;
  /** A list value sends the header once per element, on lines of its own. */
  headers?: Record<string, string | string[]>;
  body?: string;
  timeoutMs?: number;
}

export interface HttpsResult {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** The ALPN protocol the connection used. */
  alpn: string | false | null;
}

const pemCache = new Map<string, Buffer>();
function pem(path: string): Buffer {
  let data = pemCache.get(path);
  if (data === undefined) {
    data = readFileSync(path);
    pemCache.set(path, data);
  }
  return data;
}

/** One HTTPS request over HTTP/1.1 on a fresh connection. */
export function https(options: HttpsOptions): Promise<HttpsResult> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: "127.0.0.1",
        port: options.port,
        method: options.method ?? "GET",
        path: options.path,
        headers: options.headers,
        ca: pem(options.ca),
        cert: options.client ? pem(options.client.cert) : undefined,
        key: options.client ? pem(options.client.key) : undefined,
        agent: false,
        timeout: options.timeoutMs ?? 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString("utf8"),
            alpn: (res.socket as TLSSocket).alpnProtocol ?? null,
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`request to port ${options.port} timed out`)));
    req.on("error", reject);
    req.end(options.body);
  });
}

export interface GrpcOptions {
  port: number;
  ca: string;
  client?: ClientIdentity | null;
  /** `/package.Service/Method` */
  path: string;
  /** The serialized protobuf message (default: empty); framed here with the 5-byte gRPC prefix. */
  message?: Buffer;
  timeoutMs?: number;
}

export interface GrpcResult {
  /** The response headers (the only header block of a trailers-only response). */
  headers: H2Headers;
  /** The trailers, undefined when there were none (a trailers-only response). */
  trailers: H2Headers | undefined;
  /** Response DATA bytes. */
  body: Buffer;
  /** grpc-status from the trailers, or from the headers of a trailers-only response; null when absent. */
  grpcStatus: number | null;
  grpcMessage: string | null;
  /** True when the response carried grpc-status in its only header block and no body. */
  trailersOnly: boolean;
}

/** Frames one gRPC message: 1 byte compressed flag (0), 4 bytes big-endian length, the message. */
export function grpcFrame(message: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt8(0, 0);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

/** One unary gRPC call over HTTP/2 (ALPN h2) on a fresh connection, the frame built by hand. */
export function grpc(options: GrpcOptions): Promise<GrpcResult> {
  return new Promise((resolve, reject) => {
    const session = connect(`https://127.0.0.1:${options.port}`, {
      ca: pem(options.ca),
      cert: options.client ? pem(options.client.cert) : undefined,
      key: options.client ? pem(options.client.key) : undefined,
    });
    const timer = setTimeout(() => {
      session.destroy(new Error(`grpc call to port ${options.port} timed out`));
    }, options.timeoutMs ?? 10_000);
    session.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    const stream = session.request({
      ":method": "POST",
      ":path": options.path,
      "content-type": "application/grpc",
      te: "trailers",
    });
    let headers: H2Headers = {};
    let trailers: H2Headers | undefined;
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (headers = h));
    stream.on("trailers", (t) => (trailers = t));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("error", (err) => {
      clearTimeout(timer);
      session.destroy();
      reject(err);
    });
    stream.on("close", () => {
      clearTimeout(timer);
      session.close();
      const source = trailers ?? headers;
      const status = source["grpc-status"];
      const message = source["grpc-message"];
      resolve({
        headers,
        trailers,
        body: Buffer.concat(chunks),
        grpcStatus: status === undefined ? null : Number(status),
        grpcMessage: message === undefined ? null : decodeURIComponent(String(message)),
        trailersOnly: trailers === undefined && headers["grpc-status"] !== undefined && chunks.length === 0,
      });
    });
    stream.end(grpcFrame(options.message ?? Buffer.alloc(0)));
  });
}
