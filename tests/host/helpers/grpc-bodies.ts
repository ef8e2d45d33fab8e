// gRPC request bodies built from scratch, exactly as they travel (gRPC over HTTP/2, "Length-Prefixed-Message":
// a 1-byte compressed flag, a 4-byte big-endian length, the message), for `check` batches and golden cases.
// Messages are encoded with protobufjs from the .proto file, field names as written (keepCase).
import protobuf from "protobufjs";
import { gzipSync } from "node:zlib";

/** One length-prefixed message; `compressed` sets the flag (the bytes are gzipped, as grpc-encoding gzip sends them). */
export function grpcFrame(message: Uint8Array, compressed = false): Buffer {
  const payload = compressed ? gzipSync(message) : Buffer.from(message);
  const out = Buffer.alloc(5 + payload.length);
  out[0] = compressed ? 1 : 0;
  out.writeUInt32BE(payload.length, 1);
  payload.copy(out, 5);
  return out;
}

/** An encoder of one message type of a .proto file. */
export function messageEncoder(protoFile: string, typeName: string): (fields: Record<string, unknown>) => Uint8Array {
  const root = new protobuf.Root().loadSync(protoFile, { keepCase: true });
  const type = root.lookupType(typeName);
  return (fields) => {
    const problem = type.verify(fields);
    if (problem) throw new Error(`${typeName}: ${problem}`);
    return type.encode(type.create(fields)).finish();
  };
}
