// Publishes each decision's record (assembly/engine/record.ts) to the stream's filter state, where Envoy's access
// loggers read it: `%CEL(filter_state['wasm.spiffe_authz'].decision)%` for one field (the envoy.formatter.cel
// extension), `%FILTER_STATE(wasm.spiffe_authz:TYPED)%` for all of them as JSON.

import { Decision, DecisionKind } from "../engine/decision";
import { hashBytes, hashFinish, HASH_SEED, Slice } from "../engine/bytes";
import { RequestView } from "../engine/request";
import { recordAscii, recordField } from "../engine/record";
import { PeerStatus, SpiffeId } from "../engine/spiffe";
import { Action } from "../engine/table/format";
import { RULE_ID_BUF } from "../engine/table/records";
import { ByteWriter } from "../engine/writer";
import { LogLevel, logString, proxy_set_property, staticBytes, WasmResult } from "./abi";
import { callForeignFunction, hostOwned, hostStatus } from "./hostcalls";

const PROPERTY = staticBytes("spiffe_authz");
const DECLARE = staticBytes("declare_property");
const STRUCT_TYPE = "type.googleapis.com/google.protobuf.Struct";

const out = new ByteWriter(512);
const result = new Slice();

/** The property was declared as a Struct (declare_property succeeded): records are published. */
let declared = false;

/**
 * Declares `spiffe_authz` as a google.protobuf.Struct property (Envoy's `declare_property` foreign function,
 * arguments envoy.source.extensions.common.wasm.DeclarePropertyArguments: name = 1, readonly = 2, type = 3
 * (Protobuf = 3), schema = 4 (the type URL), span = 5 (FilterChain = 0)). Once per VM. Without it Envoy would keep
 * the record as bytes that only `:PLAIN` could print, so a host without the function gets no records and a
 * warning.
 */
export function declareRecord(): void {
  if (declared) return;
  const args = new ByteWriter(96);
  args.byte(0x0a);
  args.byte(<u32>PROPERTY.byteLength);
  args.bytes(changetype<usize>(PROPERTY), PROPERTY.byteLength);
  args.byte(0x18);
  args.byte(3);
  args.byte(0x22);
  args.byte(<u32>STRUCT_TYPE.length);
  args.ascii(STRUCT_TYPE);
  // The function's result (empty for declare_property) is not read, only freed.
  callForeignFunction(DECLARE, args.ptr, args.len, result);
  const rc = hostStatus;
  if (hostOwned != 0) heap.free(hostOwned);
  heap.free(args.ptr);
  declared = rc == WasmResult.OK;
  if (!declared) logString(LogLevel.WARN, "spiffe-authz: declare_property failed (status " + rc.toString() + "): decision records are not published");
}

/**
 * Publishes the record of a decided request: decision, reason code, deciding rule, peer (the presented ID, escaped
 * for logs) and its trust domain, table hash, and the AUDIT / dry-run rules that matched. Built from what the
 * decision already read; one host call.
 */
export function publishRecord(d: Decision, peer: SpiffeId, reason: string, view: RequestView): void {
  if (!declared) return;
  const t = d.table;
  if (d.allow && t !== null && t.sampleAllows && !(d.kind == DecisionKind.RULE && t.ruleRecordsAllows(d.rule)) &&
      !sampled(t.sampleThreshold, view)) {
    return;
  }
  const w = out;
  w.reset();
  recordAscii(w, "decision", d.allow ? "allow" : "deny");
  recordAscii(w, "reason", reason);
  if (d.kind == DecisionKind.RULE && t !== null) recordField(w, "rule", RULE_ID_BUF, t.decodeRuleId(d.rule));
  if (peer.status != PeerStatus.ABSENT) recordField(w, "peer", peer.ptr, peer.len);
  if (peer.status == PeerStatus.VALID) recordField(w, "trust_domain", peer.tdPtr(), peer.tdLen);
  if (t !== null && d.kind != DecisionKind.NO_TABLE) recordAscii(w, "table", t.hashHex);
  if (t !== null && d.shadowCount > 0) writeShadows(w, d);
  proxy_set_property(changetype<usize>(PROPERTY), <usize>PROPERTY.byteLength, w.ptr, <usize>w.len);
}

const REQUEST_ID = staticBytes("x-request-id");
const rid = new Slice();

/**
 * Whether an allowed request falls in the sample: the hash of its x-request-id (which Envoy generates before any
 * filter, and which traces and logs share) below the table's threshold. A request without one is recorded.
 */
function sampled(threshold: u32, view: RequestView): bool {
  if (!view.headerValue(changetype<usize>(REQUEST_ID), REQUEST_ID.byteLength, 0, rid)) return true;
  return hashFinish(hashBytes(HASH_SEED, rid.ptr, rid.len)) < threshold;
}

/** `audit`: the first AUDIT rule that matched; `dry_run`: `deny:<rule>` or `allow:<rule>` of the first dry-run rule. */
function writeShadows(w: ByteWriter, d: Decision): void {
  const t = d.table!;
  const s = t.shadowScratch;
  let audit = false;
  let dryRun = false;
  for (let i = 0; i < d.shadowRanges && !(audit && dryRun); i++) {
    const first = unchecked(s[2 * i]);
    const end = first + unchecked(s[2 * i + 1]);
    for (let r = first; r < end && !(audit && dryRun); r++) {
      const action = t.ruleAction(r);
      if (action == <u32>Action.AUDIT) {
        if (audit) continue;
        audit = true;
        recordField(w, "audit", RULE_ID_BUF, t.decodeRuleId(r));
      } else if (!dryRun) {
        dryRun = true;
        const n = t.decodeRuleId(r);
        const prefix = action == <u32>Action.DENY ? "deny:" : "allow:";
        const tmp = scratch;
        tmp.reset();
        tmp.ascii(prefix);
        tmp.bytes(RULE_ID_BUF, n);
        recordField(w, "dry_run", tmp.ptr, tmp.len);
      }
    }
  }
}

const scratch = new ByteWriter(256);
