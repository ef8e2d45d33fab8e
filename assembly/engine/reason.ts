// Reason codes: one stable, machine-readable word per way a decision can come out (docs/design.md "Reason
// codes"). They name the decision in the record published to Envoy's access log, in the metrics, in `check`'s
// result and (for denials) in the response details. Static strings: nothing is allocated per request.

import { Decision, DecisionKind, DefaultCause } from "./decision";
import { Refusal } from "./identity";
import { PeerStatus, SchemaStatus, SpiffeId } from "./spiffe";

/** The code of a refusal (engine/identity.ts, engine/path.ts). */
export function refusalCode(r: Refusal): string {
  switch (r) {
    case Refusal.MULTIPLE_URI_SANS: return "multiple_uri_sans";
    case Refusal.XFCC_MISSING: return "xfcc_missing";
    case Refusal.XFCC_MALFORMED: return "xfcc_malformed";
    case Refusal.AMBIGUOUS_PATH: return "ambiguous_path";
  }
  return "refused";
}

/** The code of a body or condition failure behind a default deny, or "" for none. */
export function causeCode(c: DefaultCause): string {
  switch (c) {
    case DefaultCause.BODY_TOO_LARGE: return "body_too_large";
    case DefaultCause.INVALID_JSON: return "invalid_json";
    case DefaultCause.GRPC_COMPRESSED: return "grpc_compressed";
    case DefaultCause.GRPC_MULTIPLE_MESSAGES: return "grpc_multiple_messages";
    case DefaultCause.GRPC_TRUNCATED: return "grpc_truncated";
    case DefaultCause.CONDITION_ERROR: return "condition_error";
    case DefaultCause.JSON_MEDIA_TYPE: return "json_media_type";
    case DefaultCause.JSON_NOT_UTF8: return "json_not_utf8";
    case DefaultCause.JSON_CONTENT_ENCODING: return "json_content_encoding";
    case DefaultCause.JSON_AMBIGUOUS: return "json_ambiguous";
    case DefaultCause.PROTOBUF_NONCANONICAL: return "protobuf_noncanonical";
  }
  return "";
}

/** Why the peer has no usable identity, as a code, or "" when it has one. */
export function peerProblemCode(peer: SpiffeId): string {
  if (peer.status == PeerStatus.ABSENT) return peer.certificate ? "no_uri_san" : "no_client_certificate";
  if (peer.status == PeerStatus.INVALID) return "invalid_spiffe_id";
  if (peer.schema == SchemaStatus.FAILED) return "schema_failure";
  return "";
}

/**
 * The reason code of a decision: allow_rule, default_allow, deny_rule, no_table, a refusal code, a body or
 * condition cause, an identity problem (no_client_certificate, no_uri_san, invalid_spiffe_id, schema_failure) or,
 * when the default denied for no other reason, no_allow_rule (an ALLOW policy applies) / default_deny (explicit).
 * Pending decisions have "pending".
 */
export function reasonCode(d: Decision, peer: SpiffeId): string {
  switch (d.kind) {
    case DecisionKind.NO_TABLE: return "no_table";
    case DecisionKind.REFUSED: return refusalCode(d.refusal);
    case DecisionKind.RULE: return d.allow ? "allow_rule" : "deny_rule";
    case DecisionKind.DEFAULT: {
      if (d.allow) return "default_allow";
      const cause = causeCode(d.cause);
      if (cause.length != 0) return cause;
      const who = peerProblemCode(peer);
      if (who.length != 0) return who;
      return d.table !== null && d.table!.defaultKind == 2 ? "no_allow_rule" : "default_deny";
    }
  }
  return "pending";
}
