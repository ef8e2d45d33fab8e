/**
 * The demo upstream as a standalone process, for docker compose (`node --experimental-strip-types`, no
 * dependencies) and for anyone who wants to run Envoy by hand:
 *
 *   node --import tsx dev/demo/upstream-main.ts [--host 127.0.0.1] [--http-port 20080] [--grpc-port 20081]
 *
 * Logs one line per request it receives; stops on SIGINT/SIGTERM.
 */
import { parseArgs } from "node:util";
import { startUpstream } from "../envoy/upstream.ts";

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    "http-port": { type: "string", default: "20080" },
    "grpc-port": { type: "string", default: "20081" },
  },
  strict: true,
});

const upstream = await startUpstream({
  host: values.host,
  httpPort: Number(values["http-port"]),
  grpcPort: Number(values["grpc-port"]),
  onRequest: (r) => {
    const peer = r.headers["x-forwarded-client-cert"] ?? "-";
    console.log(`${new Date(r.receivedAt).toISOString()} ${r.listener} ${r.method} ${r.path} xfcc=${String(peer)}`);
  },
});
console.log(`upstream listening on http://${upstream.host}:${upstream.httpPort} and h2c ${upstream.host}:${upstream.grpcPort}`);

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    upstream.close().then(() => process.exit(0), () => process.exit(1));
  });
}
