/**
 * HTTPS requests made as a SPIFFE workload: the client certificate and key are an X509-SVID (in memory, as the
 * Workload API hands it out), and the server is authenticated the SPIFFE way: its chain must lead to the client's
 * trust bundle and its certificate must carry the expected SPIFFE ID (an SVID has no DNS name to check).
 */
import { request } from "node:https";
import type { Agent } from "node:https";
import type { PeerCertificate, TLSSocket } from "node:tls";
import type { X509Svid } from "../../dev/spire/svid.ts";

export interface SvidRequest {
  port: number;
  /** The client's SVID (certificate, key and trust bundles). */
  svid: X509Svid;
  /** The SPIFFE ID the server must present. */
  serverId: string;
  method?: string;
  path: string;
  /** A keep-alive agent to reuse connections; omitted: a new connection per request. */
  agent?: Agent;
  timeoutMs?: number;
}

export interface SvidResponse {
  status: number;
  body: string;
  /** Serial number of the certificate the server presented on this connection. */
  serverSerial: string;
  /** Whether the request went over a connection an earlier request had opened. */
  reused: boolean;
}

/** Returns null when `cert` carries `spiffeId` as a URI SAN, else why not. */
export function checkSpiffeId(cert: PeerCertificate, spiffeId: string): Error | undefined {
  const sans = (cert.subjectaltname ?? "").split(", ");
  return sans.includes(`URI:${spiffeId}`)
    ? undefined
    : new Error(`server certificate has SANs "${cert.subjectaltname ?? ""}", not the SPIFFE ID "${spiffeId}"`);
}

/** The CA certificates an SVID's holder trusts: its own trust domain's and every federated one's. */
export function trustedCas(svid: X509Svid): string {
  return svid.bundlePem + Object.values(svid.federatedBundles).join("");
}

export function svidRequest(options: SvidRequest): Promise<SvidResponse> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port: options.port,
        method: options.method ?? "GET",
        path: options.path,
        ca: trustedCas(options.svid),
        cert: options.svid.certChainPem,
        key: options.svid.keyPem,
        checkServerIdentity: (_host, cert) => checkSpiffeId(cert, options.serverId),
        agent: options.agent ?? false,
        timeout: options.timeoutMs ?? 10_000,
      },
      (res) => {
        const socket = res.socket as TLSSocket;
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString("utf8"),
            serverSerial: socket.getPeerCertificate().serialNumber,
            reused: req.reusedSocket,
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`request to port ${options.port} timed out`)));
    req.on("error", reject);
    req.end();
  });
}
