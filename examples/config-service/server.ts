/**
 * The configuration service of issue 3: a real gRPC server (@grpc/grpc-js) for `DynamicResourceService`.
 *
 * It speaks cleartext HTTP/2 (h2c) and is meant to sit behind Envoy, which terminates mTLS and runs the
 * spiffe-authz filter; it trusts whatever reaches it. It records every call it receives, so a test (or a person
 * watching its log) can tell that a denied call never got here, and answers `data = "config of <appname>/<id>"`.
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

export interface FetchResourceRequest {
  appname: string;
  resource_id: string;
}

export interface FetchResourceResponse {
  data: string;
}

/** One call the server received. */
export interface RecordedCall {
  appname: string;
  resourceId: string;
  /** What Envoy says about the verified peer (`x-forwarded-client-cert`), or null when absent. */
  forwardedClientCert: string | null;
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
  /** Every call received so far, in order. */
  readonly calls: RecordedCall[];
  /** Stops the server and drops its connections. */
  close(): Promise<void>;
}

/** The answer for a request: what the service returns. */
export function configFor(appname: string, resourceId: string): string {
  return `config of ${appname}/${resourceId}`;
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
  const server = new grpc.Server();
  server.addService(dynamicResourceService().service, {
    FetchResource(
      call: grpc.ServerUnaryCall<FetchResourceRequest, FetchResourceResponse>,
      callback: grpc.sendUnaryData<FetchResourceResponse>,
    ): void {
      const record: RecordedCall = {
        appname: call.request.appname,
        resourceId: call.request.resource_id,
        forwardedClientCert: firstMetadata(call.metadata, "x-forwarded-client-cert"),
        receivedAt: Date.now(),
      };
      calls.push(record);
      options.onCall?.(record);
      callback(null, { data: configFor(record.appname, record.resourceId) });
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
