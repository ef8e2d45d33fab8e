/**
 * A gRPC client of the configuration service (@grpc/grpc-js) that calls it through Envoy with mTLS: the client
 * certificate's URI SAN is the caller's SPIFFE ID, which is what the proxy authorizes.
 *
 *   npx tsx examples/config-service/client.ts --port 20443 --certs out/config-service/certs \
 *     --as billing-prod --appname billing --resource db-url [--redacted] [--gzip] [--token JWT]
 *
 * `--as NAME` picks `<certs>/NAME.crt` and `<certs>/NAME.key`; the server is verified against `<certs>/ca.crt`.
 * Prints the answer, or the gRPC status and message, and exits 0 on OK and 1 otherwise.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { dynamicResourceService } from "./server.ts";
import type { FetchResourceRequest, FetchResourceResponse } from "./server.ts";

export interface FetchOptions {
  /** `host:port` of Envoy's listener (default host 127.0.0.1). */
  host?: string;
  port: number;
  /** PEM files: the CA that signed Envoy's certificate, and the client's certificate and key. */
  caFile: string;
  certFile?: string;
  keyFile?: string;
  request: FetchResourceRequest;
  /** The name the server certificate must carry (default `localhost`), also sent as TLS SNI. */
  serverName?: string;
  /** Compress the request message (gRPC message compression, flag byte 1 on the wire). */
  compression?: "gzip" | "deflate";
  /** Sent as `authorization: Bearer <token>` (for a listener with jwt_authn). */
  bearerToken?: string;
  /** More request metadata. */
  metadata?: Record<string, string>;
  timeoutMs?: number;
}

export type FetchResult =
  | { ok: true; data: string }
  | { ok: false; code: grpc.status; codeName: string; details: string; metadata: Record<string, string> };

/** grpc-js's numeric ids of the compression algorithms (`grpc.default_compression_algorithm`). */
const compressionIds = { deflate: 1, gzip: 2 } as const;

/**
 * One unary FetchResource call on a fresh channel (so a compression setting or an LDS update always applies to
 * this call), closed afterwards.
 */
export function fetchResource(options: FetchOptions): Promise<FetchResult> {
  const Client = dynamicResourceService();
  const credentials = grpc.credentials.createSsl(
    readFileSync(options.caFile),
    options.keyFile === undefined ? null : readFileSync(options.keyFile),
    options.certFile === undefined ? null : readFileSync(options.certFile),
  );
  // Envoy's test and demo certificates name `localhost` (and 127.0.0.1); verify that name instead of sending an IP
  // address as TLS SNI (which RFC 6066 forbids and node warns about).
  const channelOptions: grpc.ChannelOptions = { "grpc.ssl_target_name_override": options.serverName ?? "localhost" };
  if (options.compression !== undefined) {
    // grpc-js compresses every message of a channel with this algorithm until the server says it does not accept
    // it (grpc-accept-encoding); a fresh channel has heard nothing yet, so the first message is compressed.
    channelOptions["grpc.default_compression_algorithm"] = compressionIds[options.compression];
  }
  const client = new Client(`${options.host ?? "127.0.0.1"}:${options.port}`, credentials, channelOptions);
  const metadata = new grpc.Metadata();
  if (options.bearerToken !== undefined) metadata.set("authorization", `Bearer ${options.bearerToken}`);
  for (const [key, value] of Object.entries(options.metadata ?? {})) metadata.set(key, value);
  const deadline = new Date(Date.now() + (options.timeoutMs ?? 10_000));
  return new Promise<FetchResult>((resolve) => {
    client.FetchResource(
      options.request,
      metadata,
      { deadline },
      (err: grpc.ServiceError | null, response: FetchResourceResponse | undefined) => {
        client.close();
        if (err === null && response !== undefined) {
          resolve({ ok: true, data: response.data });
          return;
        }
        const e = err as grpc.ServiceError;
        const md: Record<string, string> = {};
        for (const [key, value] of Object.entries(e.metadata?.getMap() ?? {})) md[key] = String(value);
        resolve({ ok: false, code: e.code, codeName: grpc.status[e.code] ?? String(e.code), details: e.details, metadata: md });
      },
    );
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "20443" },
      certs: { type: "string", default: "out/config-service/certs" },
      as: { type: "string" },
      appname: { type: "string" },
      resource: { type: "string", default: "db-url" },
      redacted: { type: "boolean", default: false },
      gzip: { type: "boolean", default: false },
      token: { type: "string" },
    },
    strict: true,
  });
  if (values.appname === undefined) throw new Error("--appname is required (the application whose configuration to fetch)");
  const result = await fetchResource({
    host: values.host,
    port: Number(values.port),
    caFile: join(values.certs, "ca.crt"),
    certFile: values.as === undefined ? undefined : join(values.certs, `${values.as}.crt`),
    keyFile: values.as === undefined ? undefined : join(values.certs, `${values.as}.key`),
    request: { appname: values.appname, resource_id: values.resource, ...(values.redacted ? { options: { redacted: true } } : {}) },
    compression: values.gzip ? "gzip" : undefined,
    bearerToken: values.token,
  });
  if (result.ok) {
    console.log(`OK: ${result.data}`);
  } else {
    console.log(`${result.codeName} (${result.code}): ${result.details.trim()}`);
    process.exitCode = 1;
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err: Error) => {
    console.error(`config-service client: ${err.message}`);
    process.exitCode = 2;
  });
}
