// gRPC request body framing (gRPC over HTTP/2, "Length-Prefixed-Message"): a 1-byte compressed flag, a 4-byte
// big-endian length, the message. Authorization reads exactly one uncompressed message; anything else gets a
// distinct reason so the decision can say why it did not look inside.

import { StaticText } from "./value";

export const GRPC_OK: i32 = 0;
/** The body is empty: no message arrived. */
export const GRPC_EMPTY: i32 = 1;
/** Fewer bytes than the prefix or its length announce. */
export const GRPC_TRUNCATED: i32 = 2;
/** Compressed-Flag is 1: the message is compressed (grpc-encoding), which the filter does not inflate. */
export const GRPC_COMPRESSED: i32 = 3;
/** Bytes follow the first message: a client-streaming call, not a unary request. */
export const GRPC_MULTIPLE: i32 = 4;
/** Compressed-Flag is neither 0 nor 1. */
export const GRPC_BAD_FLAG: i32 = 5;

const R_EMPTY = new StaticText("grpc request has no message");
const R_TRUNCATED = new StaticText("truncated grpc frame");
const R_COMPRESSED = new StaticText("grpc message is compressed");
const R_MULTIPLE = new StaticText("grpc request has more than one message");
const R_BAD_FLAG = new StaticText("invalid grpc frame flag");

/** Where the message of a parsed frame is. */
export class GrpcFrame {
  status: i32 = GRPC_EMPTY;
  /** Offset of the message bytes from the start of the body. */
  offset: i32 = 0;
  length: i32 = 0;
}

/** Parses the body at [ptr, ptr+len) into `out`; returns out.status. Never traps. */
export function parseGrpcFrame(ptr: usize, len: i32, out: GrpcFrame): i32 {
  out.offset = 0;
  out.length = 0;
  if (len <= 0) { out.status = GRPC_EMPTY; return GRPC_EMPTY; }
  if (len < 5) { out.status = GRPC_TRUNCATED; return GRPC_TRUNCATED; }
  const flag = load<u8>(ptr);
  if (flag > 1) { out.status = GRPC_BAD_FLAG; return GRPC_BAD_FLAG; }
  const n: u64 = (<u64>load<u8>(ptr + 1) << 24) | (<u64>load<u8>(ptr + 2) << 16) | (<u64>load<u8>(ptr + 3) << 8) | <u64>load<u8>(ptr + 4);
  if (n > <u64>(len - 5)) { out.status = GRPC_TRUNCATED; return GRPC_TRUNCATED; }
  if (flag == 1) { out.status = GRPC_COMPRESSED; return GRPC_COMPRESSED; }
  if (n < <u64>(len - 5)) { out.status = GRPC_MULTIPLE; return GRPC_MULTIPLE; }
  out.status = GRPC_OK;
  out.offset = 5;
  out.length = <i32>n;
  return GRPC_OK;
}

/** The reason for a non-OK status, as UTF-8 bytes that live as long as the module. */
export function grpcFrameReason(status: i32): StaticText {
  switch (status) {
    case GRPC_EMPTY: return R_EMPTY;
    case GRPC_TRUNCATED: return R_TRUNCATED;
    case GRPC_COMPRESSED: return R_COMPRESSED;
    case GRPC_MULTIPLE: return R_MULTIPLE;
  }
  return R_BAD_FLAG;
}
