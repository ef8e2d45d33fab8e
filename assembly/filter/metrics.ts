// Envoy stats of the filter. Envoy prefixes custom metrics with "wasmcustom.". Names carry their labels as dotted
// segments that Envoy's stats tag extraction turns into Prometheus labels (the `stats_config.stats_tags` of
// src/envoy/render.ts; docs/design.md "Metrics"):
//   wasmcustom.spiffe_authz.decision.<allow|deny>.reason.<code>.requests -> spiffe_authz_requests{decision,reason}
//   wasmcustom.spiffe_authz.rule.<id>.decision.<allow|deny>.rule_requests -> spiffe_authz_rule_requests{rule,decision}
//     (only the rules that ask for it: `metrics: true`; a 100,000-rule table does not make 100,000 metrics)
//   wasmcustom.spiffe_authz.config_rejected, wasmcustom.spiffe_authz.rules (gauge)
// One counter increment per decision; a (decision, reason) pair is defined the first time it occurs.

import { Decision, DecisionKind } from "../engine/decision";
import { PolicyTable } from "../engine/table/policy-table";
import { RULE_ID_BUF } from "../engine/table/records";
import { METRIC_COUNTER, METRIC_GAUGE, proxy_increment_metric, proxy_record_metric, staticBytes } from "./abi";
import { defineMetric, METRIC_UNDEFINED as UNDEFINED } from "./hostcalls";

let defined = false;
let rejectedId: u32 = UNDEFINED;
let rulesId: u32 = UNDEFINED;

function define(type: i32, name: string): u32 {
  return defineMetric(type, staticBytes(name));
}

/** Defines the table-independent metrics once per VM (from proxy_on_vm_start, or the first configure). */
export function defineMetrics(): void {
  if (defined) return;
  defined = true;
  rejectedId = define(METRIC_COUNTER, "spiffe_authz.config_rejected");
  rulesId = define(METRIC_GAUGE, "spiffe_authz.rules");
}

// (decision, reason) counters, keyed by the reason code's address (reasonCode returns static literals) and the
// decision: defined on first use, then one lookup in a short array.
const MAX_REASONS = 64;
const reasonKey = new StaticArray<usize>(MAX_REASONS * 2);
const reasonId = new StaticArray<u32>(MAX_REASONS * 2);
let reasonCount = 0;

/** Counts a decision under its decision and reason code. */
export function countDecision(allow: bool, reason: string): void {
  const key = changetype<usize>(reason) | (allow ? 1 : 0);
  for (let i = 0; i < reasonCount; i++) {
    if (unchecked(reasonKey[i]) == key) {
      const id = unchecked(reasonId[i]);
      if (id != UNDEFINED) proxy_increment_metric(id, 1);
      return;
    }
  }
  if (reasonCount == MAX_REASONS * 2) return;
  const id = define(METRIC_COUNTER, "spiffe_authz.decision." + (allow ? "allow" : "deny") + ".reason." + reason + ".requests");
  unchecked((reasonKey[reasonCount] = key));
  unchecked((reasonId[reasonCount] = id));
  reasonCount++;
  if (id != UNDEFINED) proxy_increment_metric(id, 1);
}

/**
 * Per-rule counters of a table (rules with `metrics: true`), 2 per rule (allow, deny), UNDEFINED elsewhere; defined
 * at configure. Held by the table's root, so a new table brings its own.
 */
export class RuleMetrics {
  ids: StaticArray<u32> = new StaticArray<u32>(0);

  static of(t: PolicyTable): RuleMetrics | null {
    if (!t.hasRuleMetrics) return null;
    const m = new RuleMetrics();
    m.ids = new StaticArray<u32>(<i32>(t.ruleCount * 2));
    for (let r: u32 = 0; r < t.ruleCount; r++) {
      const wanted = t.ruleHasMetrics(r);
      for (let k = 0; k < 2; k++) unchecked((m.ids[<i32>(r * 2) + k] = UNDEFINED));
      if (!wanted) continue;
      const id = String.UTF8.decodeUnsafe(RULE_ID_BUF, <usize>t.decodeRuleId(r));
      unchecked((m.ids[<i32>(r * 2)] = define(METRIC_COUNTER, "spiffe_authz.rule." + id + ".decision.allow.rule_requests")));
      unchecked((m.ids[<i32>(r * 2) + 1] = define(METRIC_COUNTER, "spiffe_authz.rule." + id + ".decision.deny.rule_requests")));
    }
    return m;
  }

  /** Counts a decision by a rule (kind RULE) whose family asked for metrics. */
  count(d: Decision): void {
    if (d.kind != DecisionKind.RULE) return;
    const id = unchecked(this.ids[<i32>(d.rule * 2) + (d.allow ? 0 : 1)]);
    if (id != UNDEFINED) proxy_increment_metric(id, 1);
  }
}

export function countRejected(): void {
  if (rejectedId != UNDEFINED) proxy_increment_metric(rejectedId, 1);
}
export function setRules(n: u32): void {
  if (rulesId != UNDEFINED) proxy_record_metric(rulesId, <u64>n);
}
