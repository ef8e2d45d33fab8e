/**
 * Connections a test holds open across a policy update: one HTTP/2 session and one HTTP/1.1 keep-alive connection,
 * each a single TLS connection with a client certificate. Every request goes over that same connection (the HTTP/1.1
 * one is written by hand on the raw TLS socket, so no pool can quietly open another), and each client says whether
 * its connection is still the one it opened.
 */
import { readFileSync } from "node:fs";
import { connect as h2connect } from "node:http2";
import type { ClientHttp2Session } from "node:http2";
import { connect as tlsConnect } from "node:tls";
import type { TLSSocket } from "node:tls";
import type { ClientIdentity } from "./clients.ts";

export interface HeldConnection {
  /** "h2" or "http/1.1": what ALPN chose. */
  readonly protocol: string;
  /** One GET on the held connection; resolves with the status. Rejects if the connection is gone. */
  get(path: string): Promise<number>;
  /** True while the connection opened at the start is open. */
  open(): boolean;
  close(): void;
}

interface ConnectOptions {
  port: number;
  ca: string;
  client: ClientIdentity;
}

function tlsOptions(o: ConnectOptions, alpn: string[]) {
  return {
    host: "127.0.0.1",
    port: o.port,
    servername: "localhost",
    ca: readFileSync(o.ca),
    cert: readFileSync(o.client.cert),
    key: readFileSync(o.client.key),
    ALPNProtocols: alpn,
  };
}

/** An HTTP/2 session (one TLS connection, ALPN h2); each `get` is a new stream on it. */
export async function holdHttp2(o: ConnectOptions): Promise<HeldConnection> {
  const session: ClientHttp2Session = h2connect(`https://localhost:${o.port}`, {
    ...tlsOptions(o, ["h2"]),
    // One connection, never reconnected behind the test's back.
    createConnection: () => tlsConnect(tlsOptions(o, ["h2"])),
  });
  await new Promise<void>((resolve, reject) => {
    session.once("connect", () => resolve());
    session.once("error", reject);
  });
  let closed = false;
  session.on("close", () => (closed = true));
  session.on("error", () => (closed = true));
  const protocol = (session.socket as TLSSocket).alpnProtocol || "none";
  return {
    protocol,
    get: (path) =>
      new Promise((resolve, reject) => {
        if (closed) {
          reject(new Error("the HTTP/2 session was closed"));
          return;
        }
        const stream = session.request({ ":method": "GET", ":path": path, ":authority": `localhost:${o.port}` });
        let status = 0;
        stream.on("response", (h) => (status = Number(h[":status"])));
        stream.on("data", () => undefined);
        stream.on("end", () => resolve(status));
        stream.on("error", reject);
        stream.end();
      }),
    open: () => !closed && !session.destroyed,
    close: () => session.destroy(),
  };
}

/**
 * An HTTP/1.1 keep-alive connection written by hand: a request, then the response read to its end
 * (content-length or chunked), then the next request on the same socket.
 */
export async function holdHttp1(o: ConnectOptions): Promise<HeldConnection> {
  const socket: TLSSocket = tlsConnect(tlsOptions(o, ["http/1.1"]));
  await new Promise<void>((resolve, reject) => {
    socket.once("secureConnect", () => resolve());
    socket.once("error", reject);
  });
  let closed = false;
  socket.on("close", () => (closed = true));
  socket.on("error", () => (closed = true));
  let buffer = Buffer.alloc(0);
  let waiter: (() => void) | null = null;
  socket.on("data", (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk]);
    waiter?.();
  });
  socket.on("close", () => waiter?.());

  /** The length of the first complete response in `buffer`, or -1 while incomplete. */
  const responseLength = (): number => {
    const head = buffer.indexOf("\r\n\r\n");
    if (head < 0) return -1;
    const headers = buffer.subarray(0, head).toString("latin1");
    const length = /^content-length:\s*(\d+)/im.exec(headers);
    if (length !== null) {
      const end = head + 4 + Number(length[1]);
      return buffer.length >= end ? end : -1;
    }
    if (/^transfer-encoding:\s*chunked/im.test(headers)) {
      const end = buffer.indexOf("\r\n0\r\n\r\n", head);
      return end < 0 ? -1 : end + 7;
    }
    return head + 4;
  };

  let queue = Promise.resolve();
  const get = (path: string): Promise<number> => {
    const run = async (): Promise<number> => {
      if (closed) throw new Error("the HTTP/1.1 connection was closed");
      socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost:${o.port}\r\n\r\n`);
      for (;;) {
        const n = responseLength();
        if (n >= 0) {
          const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(buffer.toString("latin1", 0, 12))?.[1] ?? 0);
          buffer = buffer.subarray(n);
          return status;
        }
        if (closed) throw new Error("the HTTP/1.1 connection closed before the response ended");
        await new Promise<void>((resolve) => (waiter = resolve));
        waiter = null;
      }
    };
    const result = queue.then(run);
    queue = result.then(() => undefined, () => undefined);
    return result;
  };
  return {
    protocol: socket.alpnProtocol || "none",
    get,
    open: () => !closed && !socket.destroyed,
    close: () => socket.destroy(),
  };
}
