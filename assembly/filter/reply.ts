// The local reply of a denial: the rule's own reply (RESP, docs/table-format.md), the table's default deny reply, or
// the built-in 403. A gRPC request gets a trailers-only reply with its grpc-status (7, PERMISSION_DENIED, unless
// the reply says otherwise): Envoy 1.40 turns the call into HTTP 200 with grpc-status in the headers.

import { Decision, DecisionKind } from "../engine/decision";
import { writeDenyDetails } from "../engine/explain";
import { Slice } from "../engine/bytes";
import { RESP_FLAG_REQUEST_ID, RESP_GRPC_DEFAULT } from "../engine/table/format";
import { isGrpcRequest } from "../engine/media-type";
import { RequestView } from "../engine/request";
import { SpiffeId } from "../engine/spiffe";
import { ByteWriter } from "../engine/writer";
import { GRPC_PERMISSION_DENIED, GRPC_STATUS_NONE, proxy_send_local_response, staticBytes } from "./abi";

const DENY_BODY = staticBytes("spiffe-authz: access denied\n");
const REQUEST_ID = staticBytes("x-request-id");
// Serialized header pairs with a count of 0: "no additional headers" for proxy_send_local_response.
const NO_HEADERS: usize = memory.data(4, 4);

const details = new ByteWriter(256);
const headers = new ByteWriter(256);
const ridSlice = new Slice();

/** Sends the reply of a denied request (kind RULE with a DENY rule, DEFAULT, REFUSED or NO_TABLE). */
export function sendDenial(d: Decision, peer: SpiffeId, view: RequestView): void {
  details.reset();
  writeDenyDetails(details, d, peer);
  const grpc = isGrpcRequest(view);
  const t = d.table;
  let resp: i32 = -1;
  if (t !== null) {
    if (d.kind == DecisionKind.RULE) resp = t.famResponse(t.familyOf(d.rule));
    else if (d.kind == DecisionKind.DEFAULT || d.kind == DecisionKind.REFUSED) resp = t.defaultResponse;
  }
  if (resp < 0) {
    proxy_send_local_response(403, details.ptr, <usize>details.len, changetype<usize>(DENY_BODY),
      <usize>DENY_BODY.byteLength, NO_HEADERS, 4, grpc ? GRPC_PERMISSION_DENIED : GRPC_STATUS_NONE);
    return;
  }
  const table = t!;
  const rec = table.respRec(<u32>resp);
  const status = <u32>load<u16>(rec);
  const code = load<u8>(rec, 2);
  const withId = (load<u8>(rec, 3) & RESP_FLAG_REQUEST_ID) != 0 &&
    view.headerValue(changetype<usize>(REQUEST_ID), REQUEST_ID.byteLength, 0, ridSlice);
  const hs = load<u32>(rec, 12);
  const hn = load<u32>(rec, 16);
  // proxy-wasm serialized pairs: u32 count, count x (u32 name length, u32 value length), then each name and value
  // followed by a NUL.
  const w = headers;
  w.reset();
  const n = hn + (withId ? 1 : 0);
  w.ensure(4 + 8 * <i32>n);
  store<u32>(w.ptr, n);
  w.len = 4;
  for (let k = hs; k < hs + hn; k++) {
    const h = table.rhdr + <usize>(k * 16);
    pairLengths(w, load<u32>(h, 4), load<u32>(h, 12));
  }
  if (withId) pairLengths(w, <u32>REQUEST_ID.byteLength, <u32>ridSlice.len);
  for (let k = hs; k < hs + hn; k++) {
    const h = table.rhdr + <usize>(k * 16);
    w.bytes(table.strPtr(load<u32>(h)), <i32>load<u32>(h, 4));
    w.byte(0);
    w.bytes(table.strPtr(load<u32>(h, 8)), <i32>load<u32>(h, 12));
    w.byte(0);
  }
  if (withId) {
    w.bytes(changetype<usize>(REQUEST_ID), REQUEST_ID.byteLength);
    w.byte(0);
    w.bytes(ridSlice.ptr, ridSlice.len);
    w.byte(0);
  }
  const grpcStatus: u32 = !grpc ? GRPC_STATUS_NONE : code == RESP_GRPC_DEFAULT ? GRPC_PERMISSION_DENIED : <u32>code;
  proxy_send_local_response(status, details.ptr, <usize>details.len, table.strPtr(load<u32>(rec, 4)),
    <usize>load<u32>(rec, 8), w.ptr, <usize>w.len, grpcStatus);
}

function pairLengths(w: ByteWriter, name: u32, value: u32): void {
  w.ensure(8);
  store<u32>(w.ptr + <usize>w.len, name);
  store<u32>(w.ptr + <usize>w.len, value, 4);
  w.len += 8;
}
