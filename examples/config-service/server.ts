/**
 * The configuration service of examples/config-service: a real gRPC server (@grpc/grpc-js) for `DynamicResourceService`.
 *
 * It speaks cleartext HTTP/2 (h2c) and is meant to sit behind Envoy, which terminates mTLS and runs the
 * spiffe-authz filter; it trusts whatever reaches it. It records every call it receives, so a test (or a person
 * watching its log) can tell that a denied call never got here, and answers `data = "config of <appname>/<id>"`
 * (`"redacted config of ..."` when `options.redacted` is set).
 *
 *   npx tsx examples/config-service/server.ts [--host 127.0.0.1] [--port 20082]
 */
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

/** The service's .proto, next to this file. */
export const protoFile = join(dirname(fileURLToPath(import.meta.url)), "config_service.proto");

/** The full gRPC method path, as it appears in `:path` and in Envoy's access log. */
export const fetchResourcePath = "/demo.config.v1.DynamicResourceService/FetchResource";

export interface FetchOptions {
  /** Secrets masked: the answer any production app may have for another app (rule fetch-redacted-config). */
  redacted?: boolean;
  /** "yaml" when empty, or "json". */
  format?: string;
}

export interface FetchResourceRequest {
  appname: string;
  resource_id: string;
  /** Absent: null (proto-loader's `defaults` fills in null for an absent message). */
  options?: FetchOptions | null;
}

export interface FetchResourceResponse {
  data: string;
}

/** One call the server received. */
export interface RecordedCall {
  appname: string;
  resourceId: string;
  /** The answer was redacted (options.redacted). */
  redacted: boolean;
  /** What Envoy says about the verified peer (`x-forwarded-client-cert`), or null when absent. */
  forwardedClientCert: string | null;
  receivedAt: number;
}

/**
 * One HTTP/2 stream (one call) as the server's gRPC layer saw it, whether or not a message arrived: recorded by a
 * server interceptor when the request headers arrive. A call that Envoy forwarded before a decision and then reset
 * (the `"headers": "continue"` mode of docs/istio-bodies.md) shows up here with `messages: 0` and `cancelled: true`,
 * and never in `calls`.
 */
export interface RecordedStream {
  /** The gRPC method path (`:path`). */
  path: string;
  /** The request metadata (headers), first value of each key; binary values are left out. */
  metadata: Record<string, string>;
  /** Request messages received. */
  messages: number;
  /** The client ended its side of the stream (END_STREAM after the message). */
  halfClosed: boolean;
  /** The gRPC status the server answered with, or null when it never answered. */
  status: number | null;
  /** The stream was reset or closed before the server answered (an RST_STREAM from Envoy). */
  cancelled: boolean;
  receivedAt: number;
}

export interface ConfigServiceOptions {
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Port (default 0: chosen by the kernel). */
  port?: number;
  /** Called after each recorded call. */
  onCall?: (call: RecordedCall) => void;
}

export interface ConfigService {
  host: string;
  port: number;
  /** Every call received so far, in order (a call is recorded once its request message arrived). */
  readonly calls: RecordedCall[];
  /** Every stream opened to the server so far, in order, including those that never delivered a message. */
  readonly streams: RecordedStream[];
  /** Stops the server and drops its connections. */
  close(): Promise<void>;
}

/** The answer for a request: what the service returns. */
export function configFor(appname: string, resourceId: string, options: FetchOptions | null = null): string {
  return `${options?.redacted ? "redacted " : ""}config of ${appname}/${resourceId}${options?.format ? ` as ${options.format}` : ""}`;
}

/**
 * The loaded `demo.config.v1` package. keepCase: the message fields keep their .proto names (`resource_id`), the
 * names a policy condition uses too.
 */
export function loadConfigServiceProto(): grpc.GrpcObject {
  const definition = protoLoader.loadSync(protoFile, { keepCase: true, longs: String, defaults: true });
  return grpc.loadPackageDefinition(definition);
}

/** The service constructor (for servers) and client class (for clients) of `DynamicResourceService`. */
export function dynamicResourceService(): grpc.ServiceClientConstructor {
  const pkg = loadConfigServiceProto() as unknown as {
    demo: { config: { v1: { DynamicResourceService: grpc.ServiceClientConstructor } } };
  };
  return pkg.demo.config.v1.DynamicResourceService;
}

function firstMetadata(metadata: grpc.Metadata, key: string): string | null {
  const values = metadata.get(key);
  return values.length === 0 ? null : String(values[0]);
}

/** Starts the server; resolves once it is bound. */
export async function startConfigService(options: ConfigServiceOptions = {}): Promise<ConfigService> {
  const host = options.host ?? "127.0.0.1";
  const calls: RecordedCall[] = [];
  const streams: RecordedStream[] = [];
  // Runs before the service handler for every call: sees the headers, each message, the half-close and a cancel,
  // including calls whose handler never runs because no message arrived.
  const recordStreams: grpc.ServerInterceptor = (method, call) => {
    const stream: RecordedStream = {
      path: method.path, metadata: {}, messages: 0, halfClosed: false, status: null, cancelled: false, receivedAt: Date.now(),
    };
    return new grpc.ServerInterceptingCall(call, {
      sendStatus: (status, nextStatus) => {
        stream.status = status.code ?? null;
        nextStatus(status);
      },
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            for (const [key, value] of Object.entries(metadata.getMap())) if (typeof value === "string") stream.metadata[key] = value;
            streams.push(stream);
            nextMetadata(metadata);
          },
          onReceiveMessage: (message, nextMessage) => {
            stream.messages++;
            nextMessage(message);
          },
          onReceiveHalfClose: (nextHalfClose) => {
            stream.halfClosed = true;
            nextHalfClose();
          },
          // grpc-js also reports a cancel after every answered call: only one before the answer is a reset.
          onCancel: () => {
            if (stream.status === null) stream.cancelled = true;
          },
        }),
    });
  };
  const server = new grpc.Server({ interceptors: [recordStreams] });
  server.addService(dynamicResourceService().service, {
    FetchResource(
      call: grpc.ServerUnaryCall<FetchResourceRequest, FetchResourceResponse>,
      callback: grpc.sendUnaryData<FetchResourceResponse>,
    ): void {
      const record: RecordedCall = {
        appname: call.request.appname,
        resourceId: call.request.resource_id,
        redacted: call.request.options?.redacted === true,
        forwardedClientCert: firstMetadata(call.metadata, "x-forwarded-client-cert"),
        receivedAt: Date.now(),
      };
      calls.push(record);
      options.onCall?.(record);
      callback(null, { data: configFor(record.appname, record.resourceId, call.request.options ?? null) });
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    // Envoy's upstream cluster speaks HTTP/2 with prior knowledge (h2c): insecure credentials, no TLS here.
    server.bindAsync(`${host}:${options.port ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, bound) =>
      err === null ? resolve(bound) : reject(new Error(`could not start the config service on ${host}: ${err.message}`)),
    );
  });
  return {
    host,
    port,
    calls,
    streams,
    close: () =>
      new Promise<void>((resolve) => {
        // tryShutdown waits for calls in flight; forceShutdown after a grace period so a stuck client cannot
        // keep a test run alive.
        const timer = setTimeout(() => server.forceShutdown(), 2000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { host: { type: "string", default: "127.0.0.1" }, port: { type: "string", default: "20082" } },
    strict: true,
  });
  const service = await startConfigService({
    host: values.host,
    port: Number(values.port),
    onCall: (c) =>
      console.log(
        `${new Date(c.receivedAt).toISOString()} FetchResource appname=${c.appname} resource_id=${c.resourceId}` +
          `${c.redacted ? " redacted" : ""}` +
          ` xfcc=${c.forwardedClientCert ?? "-"}`,
      ),
  });
  console.log(`config service (h2c) listening on ${service.host}:${service.port}`);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => void service.close().then(() => process.exit(0)));
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err: Error) => {
    console.error(`config-service: ${err.message}`);
    process.exitCode = 1;
  });
}
