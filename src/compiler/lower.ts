// Stage 3, lower: the selected policies -> one table IR. Rule ids, the table default (Istio precedence) and the
// trust-domain schemas are decided here, across all policies.

import { Diagnostics, formatDiagnostic, q, type Pos } from "../policy/diagnostics.ts";
import { isAllowPolicy, policyRef, type PolicyAst } from "../policy/ast.ts";
import { MAX_RULES } from "./table.ts";
import { normalizeIR, RULE_ID_PATTERN, type DefaultKind, type RuleIR, type SchemaIR, type TableIR } from "./ir.ts";

/** The longest META label; a table of thousands of policies keeps its first names and a count. */
export const MAX_LABEL_BYTES = 1024;

function where(p: Pos): string {
  return formatDiagnostic({ file: p.file, line: p.line, col: p.col, message: "" }).slice(0, -2);
}

/**
 * The default id of rule `index` of a policy. Our format: `<name>[<index>]`. Istio: the name Envoy's RBAC filter
 * gives the same rule (`ns[<namespace>]-policy[<name>]-rule[<index>]`), so ids read the same in both worlds.
 */
export function defaultRuleId(p: PolicyAst, index: number): string {
  if (p.format === "istio") return `${p.namespace ? `ns[${p.namespace}]-` : ""}policy[${p.name}]-rule[${index}]`;
  return `${p.name}[${index}]`;
}

function label(policies: PolicyAst[]): string {
  let out = "";
  for (let i = 0; i < policies.length; i++) {
    const next = (out ? ", " : "") + policyRef(policies[i]);
    const more = ` (+${policies.length - i} more)`;
    if (Buffer.byteLength(out + next, "utf8") + more.length > MAX_LABEL_BYTES) return out + more;
    out += next;
  }
  return out;
}

/** Lowers checked, selected policies into a table IR (canonical form). Errors go to `diags`. */
export function lowerPolicies(policies: PolicyAst[], diags: Diagnostics): TableIR {
  const rules: RuleIR[] = [];
  const ids = new Map<string, Pos>();
  for (const p of policies) {
    for (const r of p.rules) {
      const id = r.id ?? defaultRuleId(p, r.index);
      if (!RULE_ID_PATTERN.test(id)) {
        diags.error(r.pos, `rule id ${q(id)} (from the policy name) is longer than 200 characters; shorten the name or give the rule an "id"`);
        continue;
      }
      const prev = ids.get(id);
      if (prev) {
        const fix = r.id ? "give one of them a different \"id\"" : p.format === "istio" ? "rename one of the policies" : "give the rule an \"id\" or rename the policy";
        diags.error(r.pos, `duplicate rule id ${q(id)} (also at ${where(prev)}); ${fix}`);
        continue;
      }
      ids.set(id, r.pos);
      rules.push({
        id,
        action: r.action,
        dryRun: r.dryRun || p.dryRun,
        sources: r.sources,
        operations: r.operations,
        conditions: r.conditions,
        expr: null,
      });
    }
  }
  if (rules.length > MAX_RULES) diags.error(policies[0].pos, `${rules.length} rules exceed the table limit of ${MAX_RULES}`);

  // Defaults. Istio: once any ALLOW policy applies to a workload, a request no ALLOW rule matches is denied.
  let defaultAction: "allow" | "deny" = "allow";
  let defaultKind: DefaultKind = 0;
  const withDefault = policies.filter((p) => p.default);
  const first = withDefault[0];
  for (const p of withDefault.slice(1)) {
    if (p.default!.action !== first.default!.action) {
      diags.error(
        p.default!.pos,
        `conflicting defaults: ${q(p.default!.action)} here, ${q(first.default!.action)} in policy ${q(policyRef(first))} at ${where(first.default!.pos)}; make them agree or keep one`,
      );
    }
  }
  const allowPolicy = policies.find(isAllowPolicy);
  if (allowPolicy) {
    defaultAction = "deny";
    defaultKind = 2;
    for (const p of withDefault) {
      if (p.default!.action === "allow") {
        diags.error(
          p.default!.pos,
          `"default: allow" cannot hold: ALLOW policy ${q(policyRef(allowPolicy))} (${where(allowPolicy.pos)}) applies, and as in Istio a request that no ALLOW rule matches is then denied; remove the default, or add an allow rule without "from"/"to" to allow everything else`,
        );
      }
    }
  } else if (first) {
    defaultAction = first.default!.action;
    defaultKind = 1;
  }

  // Trust-domain schemas apply to the whole table, so every policy that declares one must agree.
  const schemas = new Map<string, { keys: string[]; pos: Pos; policy: PolicyAst }>();
  for (const p of policies) {
    for (const s of p.schemas) {
      const prev = schemas.get(s.trustDomain);
      if (!prev) {
        schemas.set(s.trustDomain, { keys: s.keys, pos: s.pos, policy: p });
      } else if ([...prev.keys].sort().join("\0") !== [...s.keys].sort().join("\0")) {
        diags.error(
          s.pos,
          `trust domain ${q(s.trustDomain)} requires [${s.keys.join(", ")}] here but [${prev.keys.join(", ")}] in policy ${q(policyRef(prev.policy))} at ${where(prev.pos)}; a schema applies to every rule, so they must agree`,
        );
      }
    }
  }
  const schemaList: SchemaIR[] = [...schemas].map(([trustDomain, s]) => ({ trustDomain, keys: s.keys }));

  return normalizeIR({ defaultAction, defaultKind, maxBodyBytes: 0, label: label(policies), rules, schemas: schemaList });
}
