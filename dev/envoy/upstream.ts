/**
 * The upstream behind Envoy in tests, `npm start` and docker compose: a real node server that answers every
 * request with a JSON echo of what it saw and records it, so a test can assert that a denied request never reached
 * it.
 *
 * Two listeners: HTTP/1.1 (Envoy's `upstream_http` cluster) and cleartext HTTP/2 with prior knowledge (h2c, the
 * `upstream_grpc` cluster). A gRPC request (content-type application/grpc) gets an empty message and grpc-status 0.
 *
 * This file uses only erasable TypeScript syntax and `node:` imports, so docker compose can run it with node's
 * own type stripping (`node --experimental-strip-types`) without installing anything.
 */
import { createServer as createHttpServer } from "node:http";
import type { IncomingHttpHeaders, Server } from "node:http";
import { createServer as createH2cServer } from "node:http2";
import type { Http2Server, Http2ServerRequest, Http2ServerResponse, ServerHttp2Session } from "node:http2";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface RecordedRequest {
  /** Which listener received it. */
  listener: "http" | "h2c";
  method: string;
  path: string;
  /** Request headers as node parsed them (lower-case names; HTTP/2 pseudo-headers removed). */
  headers: Record<string, string | string[]>;
  /** The body as UTF-8 text. */
  body: string;
  /** Milliseconds since the epoch when the request ended. */
  receivedAt: number;
}

export interface UpstreamOptions {
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Port of the HTTP/1.1 listener (default 0: chosen by the kernel). */
  httpPort?: number;
  /** Port of the h2c listener (default 0). */
  grpcPort?: number;
  /** Called after each recorded request. */
  onRequest?: (request: RecordedRequest) => void;
}

export interface Upstream {
  host: string;
  httpPort: number;
  grpcPort: number;
  /** Every request received so far, in order. */
  readonly requests: RecordedRequest[];
  /** Forgets the recorded requests. */
  clear(): void;
  /** Closes both listeners and their connections. */
  close(): Promise<void>;
}

/** The JSON body the upstream answers with. */
export interface EchoBody {
  upstream: "spiffe-authz-demo-upstream";
  listener: "http" | "h2c";
  method: string;
  path: string;
  headers: Record<string, string | string[]>;
}

function plainHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (name.startsWith(":") || value === undefined) continue;
    out[name] = value;
  }
  return out;
}

function listen(server: Server | Http2Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Starts the upstream; resolves once both listeners are bound. */
export async function startUpstream(options: UpstreamOptions = {}): Promise<Upstream> {
  const host = options.host ?? "127.0.0.1";
  const requests: RecordedRequest[] = [];

  const handle = (
    listener: "http" | "h2c",
    req: IncomingMessage | Http2ServerRequest,
    res: ServerResponse | Http2ServerResponse,
  ): void => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const record: RecordedRequest = {
        listener,
        method: req.method ?? "",
        path: req.url ?? "",
        headers: plainHeaders(req.headers),
        body: Buffer.concat(chunks).toString("utf8"),
        receivedAt: Date.now(),
      };
      requests.push(record);
      options.onRequest?.(record);
      const contentType = String(req.headers["content-type"] ?? "");
      if (listener === "h2c" && contentType.startsWith("application/grpc")) {
        // A unary reply: one empty, uncompressed message (5-byte frame header), then grpc-status 0 in trailers.
        const h2res = res as Http2ServerResponse;
        h2res.writeHead(200, { "content-type": "application/grpc" });
        h2res.addTrailers({ "grpc-status": "0", "grpc-message": "" });
        h2res.end(Buffer.from([0, 0, 0, 0, 0]));
        return;
      }
      const echo: EchoBody = {
        upstream: "spiffe-authz-demo-upstream",
        listener,
        method: record.method,
        path: record.path,
        headers: record.headers,
      };
      const body = JSON.stringify(echo, null, 2) + "\n";
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
    });
  };

  const http = createHttpServer((req, res) => handle("http", req, res));
  // Envoy pools upstream connections; a short keep-alive would race with its reuse and show up as 503s.
  http.keepAliveTimeout = 60_000;
  const h2c = createH2cServer((req, res) => handle("h2c", req, res));
  const sessions = new Set<ServerHttp2Session>();
  h2c.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });

  let httpPort: number;
  let grpcPort: number;
  try {
    httpPort = await listen(http, options.httpPort ?? 0, host);
    grpcPort = await listen(h2c, options.grpcPort ?? 0, host);
  } catch (err) {
    http.close();
    h2c.close();
    throw new Error(`could not start the upstream on ${host}: ${(err as Error).message}`);
  }

  return {
    host,
    httpPort,
    grpcPort,
    requests,
    clear(): void {
      requests.length = 0;
    },
    async close(): Promise<void> {
      http.closeAllConnections();
      for (const session of sessions) session.destroy();
      await Promise.all([
        new Promise<void>((r) => http.close(() => r())),
        new Promise<void>((r) => h2c.close(() => r())),
      ]);
    },
  };
}
