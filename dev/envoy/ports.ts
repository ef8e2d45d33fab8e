/**
 * Free TCP ports for tests and the demo.
 *
 * A port is found by binding port 0 on the loopback address and closing the socket, then handed to Envoy in its
 * config (Envoy cannot inherit an open socket). Another process could take the port in between; the window is
 * milliseconds, and Envoy then fails to start with "Address already in use" in the error. Servers we write ourselves
 * (the upstream) bind port 0 directly instead, and admin uses port 0 with --admin-address-path (see run.ts).
 */
import { createServer } from "node:net";

/** Returns a TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        server.close();
        reject(new Error("could not read the address of a probe socket"));
        return;
      }
      const port = address.port;
      server.close(() => resolve(port));
    });
  });
}

/** Returns `count` distinct free ports. */
export async function freePorts(count: number, host = "127.0.0.1"): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort(host));
  return [...ports];
}
