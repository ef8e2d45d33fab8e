// Human- and machine-readable output of a decision: the reason text, the explain JSON read by the TypeScript
// host and `check`, the Envoy response details, and the audit / dry-run log lines. All of it writes into a
// ByteWriter; only the explain JSON (never on Envoy's request path) touches GC strings.

import { ByteWriter } from "./writer";
import { Closest, CONDITION_MESSAGE_BYTES, Decision, DecisionKind, DefaultCause, findClosest, Miss } from "./decision";
import { RequestView } from "./request";
import { Refusal } from "./identity";
import { reasonCode, refusalCode } from "./reason";
import { NO_ENTRY } from "./principal-index";
import { PeerStatus, SchemaStatus, SchemaWhy, SpiffeId } from "./spiffe";
import { Action } from "./table/format";
import { PolicyTable } from "./table/policy-table";
import { RULE_ID_BUF } from "./table/records";
import { Slice } from "./bytes";

const reasonBuf = new ByteWriter(256);

const closest = new Closest();

/**
 * The `reason` text of a decision (docs/design.md "Filter ABI"). With the request (`req`), a default deny of a
 * table with ALLOW rules names the rules that came closest to allowing it and what missed (findClosest).
 */
export function writeReason(w: ByteWriter, d: Decision, peer: SpiffeId, req: RequestView | null = null): void {
  switch (d.kind) {
    case DecisionKind.PENDING:
      w.ascii("no decision yet");
      return;
    case DecisionKind.NEEDS_BODY:
      w.ascii("waiting for the request body");
      return;
    case DecisionKind.NO_TABLE:
      w.ascii("no policy table loaded");
      return;
    case DecisionKind.REFUSED:
      writeRefusal(w, d.refusal);
      return;
    case DecisionKind.RULE: {
      const t = d.table!;
      w.ascii(d.allow ? "allowed by rule \"" : "denied by rule \"");
      w.bytes(RULE_ID_BUF, t.decodeRuleId(d.rule));
      w.byte(0x22);
      if (d.denyError) {
        w.ascii(": condition error: ");
        w.bytes(changetype<usize>(d.denyMessage), d.denyMessageLen);
      }
      return;
    }
    default: {
      const t = d.table!;
      if (t.defaultKind == 2) w.ascii("no ALLOW rule matched");
      else w.ascii(t.defaultAction == 0 ? "no rule matched; default action allow" : "no rule matched; default action deny");
      if (req !== null && !d.allow) {
        findClosest(t, peer, req, closest);
        writeClosest(w, t, closest);
      } else if (d.errorRule != NO_ENTRY) {
        w.ascii("; rule \"");
        w.bytes(RULE_ID_BUF, t.decodeRuleId(d.errorRule));
        w.ascii("\" condition failed: ");
        w.bytes(changetype<usize>(d.errorMessage), d.errorMessageLen);
      }
      writePeerProblem(w, peer);
    }
  }
}

/** The reason of a refusal (engine/identity.ts, engine/path.ts). */
function writeRefusal(w: ByteWriter, r: Refusal): void {
  switch (r) {
    case Refusal.MULTIPLE_URI_SANS:
      w.ascii("refused: the client certificate has more than one URI SAN (an X.509-SVID has exactly one)");
      break;
    case Refusal.XFCC_MISSING:
      w.ascii("refused: a client certificate was presented but the listener sets no x-forwarded-client-cert, so its URI SANs cannot be counted (set forward_client_cert_details: SANITIZE_SET with set_current_client_cert_details.uri, or the plugin setting \"xfcc\": \"ignore\")");
      break;
    case Refusal.XFCC_MALFORMED:
      w.ascii("refused: x-forwarded-client-cert cannot be read or does not match the client certificate");
      break;
    case Refusal.AMBIGUOUS_PATH:
      w.ascii("refused: the path holds an escaped slash or backslash, a backslash or a dot segment, which the workload may read differently (plugin setting \"ambiguousPaths\": \"allow\" to accept)");
      break;
    default:
      w.ascii("refused");
  }
}


/** `; closest: rule "a" (condition false), rule "b" (...)` for the rules findClosest kept; nothing without any. */
function writeClosest(w: ByteWriter, t: PolicyTable, c: Closest): void {
  for (let i = 0; i < c.count; i++) {
    w.ascii(i == 0 ? "; closest: rule \"" : ", rule \"");
    w.bytes(RULE_ID_BUF, t.decodeRuleId(unchecked(c.rule[i])));
    switch (<Miss>unchecked(c.why[i])) {
      case Miss.CONDITION_FALSE:
        w.ascii("\" (its condition was false)");
        break;
      case Miss.CONDITION_ERROR:
        w.ascii("\" (its condition failed: ");
        w.bytes(changetype<usize>(c.message) + <usize>(i * CONDITION_MESSAGE_BYTES), unchecked(c.messageLen[i]));
        w.byte(0x29);
        break;
      case Miss.REQUEST:
        w.ascii("\" (the caller matched; the method, path, host, port or a when condition did not)");
        break;
      default:
        w.ascii("\" (the request matched; the caller did not)");
    }
  }
}

/** `; peer ...` when the identity was missing, invalid or failed its schema; nothing otherwise. */
function writePeerProblem(w: ByteWriter, peer: SpiffeId): void {
  if (peer.status == PeerStatus.ABSENT && peer.certificate) {
    w.ascii("; peer has no SPIFFE ID (its client certificate has no URI SAN)");
  } else if (peer.status == PeerStatus.ABSENT) {
    w.ascii("; peer has no SPIFFE ID (no client certificate)");
  } else if (peer.status == PeerStatus.INVALID) {
    w.ascii("; peer SPIFFE ID is invalid: ");
    w.ascii(peer.why);
  } else if (peer.schema == SchemaStatus.FAILED) {
    w.ascii("; peer SPIFFE ID does not satisfy the schema of trust domain \"");
    w.bytes(peer.tdPtr(), peer.tdLen);
    w.ascii("\": ");
    switch (peer.schemaWhy) {
      case SchemaWhy.MISSING:
        w.ascii("missing attribute \"");
        w.bytes(peer.schemaKeyPtr, peer.schemaKeyLen);
        w.byte(0x22);
        break;
      case SchemaWhy.REPEATED:
        w.ascii("attribute \"");
        w.bytes(peer.schemaKeyPtr, peer.schemaKeyLen);
        w.ascii("\" repeated");
        break;
      case SchemaWhy.ODD:
        w.ascii("odd number of path segments");
        break;
      default:
        w.ascii("more than 64 attributes");
    }
  }
}

/**
 * The explain JSON: {"decision","rule","reason","tableHash","peer":{"valid","id","trustDomain","path",
 * "attributes"}}. `peer.id` is the presented URI SAN even when invalid (ill-formed UTF-8 as U+FFFD).
 */
export function writeExplain(w: ByteWriter, d: Decision, peer: SpiffeId, req: RequestView | null = null): void {
  w.ascii("{\"decision\":");
  if (d.kind == DecisionKind.PENDING || d.kind == DecisionKind.NEEDS_BODY) w.jsonAscii("pending");
  else w.jsonAscii(d.allow ? "allow" : "deny");
  w.ascii(",\"rule\":");
  if (d.kind == DecisionKind.RULE) {
    const t = d.table!;
    w.jsonString(RULE_ID_BUF, t.decodeRuleId(d.rule));
  } else {
    w.ascii("null");
  }
  w.ascii(",\"reason\":");
  reasonBuf.reset();
  writeReason(reasonBuf, d, peer, req);
  w.jsonString(reasonBuf.ptr, reasonBuf.len);
  w.ascii(",\"tableHash\":");
  const t = d.table;
  if (t !== null && d.kind != DecisionKind.PENDING && d.kind != DecisionKind.NEEDS_BODY && d.kind != DecisionKind.NO_TABLE) {
    w.jsonAscii(t.hashHex);
  } else {
    w.ascii("null");
  }
  w.ascii(",\"peer\":");
  writePeer(w, peer);
  // Where the principal came from: the client certificate, or (no certificate) the verified JWT's `sub`.
  w.ascii(",\"principalSource\":");
  if (peer.status == PeerStatus.ABSENT) w.ascii("null");
  else w.jsonAscii(peer.fromJwt ? "jwt" : "certificate");
  // The decision record's parts (engine/reason.ts, filter/record.ts), for `check`.
  w.ascii(",\"reasonCode\":");
  w.jsonAscii(reasonCode(d, peer));
  w.ascii(",\"certificate\":");
  w.ascii(peer.certificate ? "true" : "false");
  w.ascii(",\"audit\":[");
  writeShadowIds(w, d, true);
  w.ascii("],\"dryRun\":[");
  writeShadowIds(w, d, false);
  w.ascii("]}");
}

/**
 * The AUDIT rules (`audit`) or the dry-run rules (`!audit`, as `deny:<id>` / `allow:<id>`) the decision matched,
 * as JSON strings in rule order.
 */
function writeShadowIds(w: ByteWriter, d: Decision, audit: bool): void {
  const t = d.table;
  if (t === null || d.kind == DecisionKind.PENDING || d.kind == DecisionKind.NEEDS_BODY || d.kind == DecisionKind.REFUSED) return;
  const s = t.shadowScratch;
  let n = 0;
  for (let i = 0; i < d.shadowRanges; i++) {
    const first = unchecked(s[2 * i]);
    const end = first + unchecked(s[2 * i + 1]);
    for (let r = first; r < end; r++) {
      const action = t.ruleAction(r);
      if ((action == <u32>Action.AUDIT) != audit) continue;
      if (n++ > 0) w.byte(0x2c);
      reasonBuf.reset();
      if (!audit) reasonBuf.ascii(action == <u32>Action.DENY ? "deny:" : "allow:");
      reasonBuf.bytes(RULE_ID_BUF, t.decodeRuleId(r));
      w.jsonString(reasonBuf.ptr, reasonBuf.len);
    }
  }
}

/** The explain JSON of a context the filter does not know. */
export function writeExplainUnknown(w: ByteWriter): void {
  w.ascii("{\"decision\":\"pending\",\"rule\":null,\"reason\":\"unknown context\",\"tableHash\":null,");
  w.ascii("\"peer\":{\"valid\":false,\"id\":null,\"trustDomain\":null,\"path\":null,\"attributes\":{}},\"principalSource\":null,");
  w.ascii("\"reasonCode\":\"pending\",\"certificate\":false,\"audit\":[],\"dryRun\":[]}");
}

function writePeer(w: ByteWriter, peer: SpiffeId): void {
  const valid = peer.status == PeerStatus.VALID;
  w.ascii(valid ? "{\"valid\":true,\"id\":" : "{\"valid\":false,\"id\":");
  if (peer.status == PeerStatus.ABSENT) w.ascii("null");
  else w.jsonString(peer.ptr, peer.len);
  w.ascii(",\"trustDomain\":");
  if (valid) w.jsonString(peer.tdPtr(), peer.tdLen);
  else w.ascii("null");
  w.ascii(",\"path\":");
  if (valid) w.jsonString(peer.pathPtr(), peer.pathLen);
  else w.ascii("null");
  w.ascii(",\"attributes\":{");
  if (valid) {
    for (let a = 0; a < peer.attrCount; a++) {
      if (a > 0) w.byte(0x2c);
      w.jsonString(peer.attrKeyPtr(a), peer.attrKeyLen(a));
      w.byte(0x3a);
      w.jsonString(peer.attrValPtr(a), peer.attrValLen(a));
    }
  }
  w.ascii("}}");
}

/**
 * Envoy response code details for a deny: `spiffe_authz_denied[<rule-id>|default|no_table]`, and for a default
 * deny that a failed condition explains `default:<cause>` (body_too_large, invalid_json, grpc_compressed,
 * grpc_multiple_messages, grpc_truncated, protobuf_noncanonical, condition_error, json_media_type, json_not_utf8,
 * json_content_encoding, json_ambiguous). Integration tests match these strings in Envoy's access log.
 */
export function writeDenyDetails(w: ByteWriter, d: Decision, peer: SpiffeId): void {
  w.ascii("spiffe_authz_denied[");
  if (d.kind == DecisionKind.RULE) {
    w.bytes(RULE_ID_BUF, d.table!.decodeRuleId(d.rule));
  } else if (d.kind == DecisionKind.NO_TABLE) {
    w.ascii("no_table");
  } else if (d.kind == DecisionKind.REFUSED) {
    w.ascii(refusalCode(d.refusal));
  } else {
    // The default denied: say what explains it, when something does (a body or condition failure, or an identity
    // problem), as its reason code (engine/reason.ts).
    w.ascii("default");
    const code = reasonCode(d, peer);
    if (code != "no_allow_rule" && code != "default_deny") {
      w.byte(0x3a);
      w.ascii(code);
    }
  }
  w.byte(0x5d);
}

/**
 * The log line of a matching shadow rule: AUDIT rules give
 * `spiffe-authz audit: rule=<id> peer=<id or -> method=<m> path=<p> decision=<allow|deny>`, dry-run ALLOW/DENY
 * rules give `spiffe-authz dry-run: rule=<id> would <allow|deny>`. Peer, method and path are written with
 * non-printable bytes as \xHH; the path stops before `?` so query strings (often secrets) are not logged.
 */
export function writeShadowLine(
  w: ByteWriter, t: PolicyTable, r: u32, d: Decision, peer: SpiffeId, method: Slice, methodPresent: bool,
  path: Slice, pathPresent: bool,
): void {
  const action = t.ruleAction(r);
  if (action == <u32>Action.AUDIT) {
    w.ascii("spiffe-authz audit: rule=");
    w.bytes(RULE_ID_BUF, t.decodeRuleId(r));
    w.ascii(" peer=");
    if (peer.status == PeerStatus.ABSENT) w.byte(0x2d);
    else w.loggable(peer.ptr, peer.len);
    w.ascii(" method=");
    if (methodPresent) w.loggable(method.ptr, method.len);
    else w.byte(0x2d);
    w.ascii(" path=");
    if (pathPresent) w.loggable(path.ptr, path.len);
    else w.byte(0x2d);
    w.ascii(d.allow ? " decision=allow" : " decision=deny");
  } else {
    w.ascii("spiffe-authz dry-run: rule=");
    w.bytes(RULE_ID_BUF, t.decodeRuleId(r));
    w.ascii(action == <u32>Action.DENY ? " would deny" : " would allow");
  }
}
