// Stage 3, lower: the selected policies -> one table IR. Rule ids, the table default (Istio precedence) and the
// trust-domain schemas are decided here, across all policies.

import { type Diagnostics, formatDiagnostic, q, type Pos } from "../policy/diagnostics.ts";
import { isAllowPolicy, policyRef, type PolicyAst, type RuleAst, type Setting } from "../policy/ast.ts";
import { compileCondition, encodePrograms, loadProtos, ProtoLoadError, type CelProgram, type ProtoRegistry } from "../cel/index.ts";
import { MAX_RULES } from "./table.ts";
import { normalizeIR, RULE_ID_PATTERN, type DefaultKind, type DenyResponseIR, type RuleIR, type SchemaIR, type TableIR } from "./ir.ts";

/** The longest META label; a table of thousands of policies keeps its first names and a count. */
export const MAX_LABEL_BYTES = 1024;

/**
 * The default `spec.body.maxBytes`: 64 KiB. Authorization reads a few fields of a request message, not uploads;
 * Envoy holds what the filter buffers in memory for every stream waiting on a decision (1,000 concurrent
 * streams cost at most 64 MiB), and the limit stays far below Envoy's default per-connection buffer limit
 * (1 MiB), beyond which Envoy itself answers 413 before the filter could decide.
 */
export const DEFAULT_MAX_BODY_BYTES = 65536;

/** What the compiler needs beyond the policies: `.proto` files for conditions on gRPC messages. */
export interface CompileOptions {
  /** `--proto FILE`: .proto files (besides each policy's `spec.protos`) */
  protos?: string[];
  /** `--proto-path DIR`: directories imports are resolved against (besides each file's own) */
  protoPaths?: string[];
  /** `--trust-domain TD`: the mesh's trust domain (meshConfig.trustDomain) for Istio principals; default cluster.local */
  trustDomain?: string;
  /** `--trust-domain-alias TD`: meshConfig.trustDomainAliases */
  trustDomainAliases?: string[];
}

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
export function lowerPolicies(policies: PolicyAst[], diags: Diagnostics, options: CompileOptions = {}): TableIR {
  const rules: RuleIR[] = [];
  const responses = new ResponseList();
  /** The checked rule behind each IR rule (conditions are compiled once every rule is known). */
  const asts: RuleAst[] = [];
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
      const response = r.denyResponse ?? (r.action === "deny" ? p.denyResponse?.value : undefined);
      rules.push({
        id,
        action: r.action,
        dryRun: r.dryRun || p.dryRun,
        sources: r.sources,
        operations: r.operations,
        conditions: r.conditions,
        expr: null,
        ...(r.recordAllows ? { recordAllows: true } : {}),
        ...(r.metrics ? { metrics: true } : {}),
        ...(response ? { denyResponse: responses.index(response) } : {}),
      });
      asts.push(r);
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

  const cel = lowerConditions(policies, rules, asts, diags, options);
  // The table-wide settings every policy that gives them must agree on.
  const rate = agreed(policies, (p) => p.allowSampleRate, "audit.allowSampleRate", diags);
  const defaultResponse = agreedResponse(policies, diags);

  return normalizeIR({
    defaultAction, defaultKind, maxBodyBytes: cel.maxBodyBytes, grpcFirst: cel.grpcFirst, expr: cel.expr,
    label: label(policies), rules, schemas: schemaList,
    ...(rate !== undefined ? { allowSampleRate: rate.value } : {}),
    ...(defaultResponse ? { defaultDenyResponse: responses.index(defaultResponse) } : {}),
    ...(responses.list.length ? { denyResponses: responses.list } : {}),
  });
}

/** The distinct deny replies of a table, each written once. */
class ResponseList {
  readonly list: DenyResponseIR[] = [];
  private readonly byKey = new Map<string, number>();
  index(r: DenyResponseIR): number {
    const key = JSON.stringify(r);
    let i = this.byKey.get(key);
    if (i === undefined) {
      i = this.list.length;
      this.list.push(r);
      this.byKey.set(key, i);
    }
    return i;
  }
}

/**
 * `spec.denyResponse` is also the reply of the table's default deny, so the policies that give one must agree on
 * it (the first one's position is named when they do not).
 */
function agreedResponse(policies: PolicyAst[], diags: Diagnostics): DenyResponseIR | undefined {
  let first: { r: Setting<DenyResponseIR>; p: PolicyAst } | undefined;
  for (const p of policies) {
    const r = p.denyResponse;
    if (!r) continue;
    if (!first) first = { r, p };
    else if (JSON.stringify(r.value) !== JSON.stringify(first.r.value)) {
      diags.error(
        r.pos,
        `"denyResponse" differs from the one in policy ${q(policyRef(first.p))} at ${where(first.r.pos)}; the table's default deny has one reply, so policies that set it must agree (set replies of single rules on the rules)`,
      );
    }
  }
  return first?.r.value;
}

/** One setting that every policy giving it must agree on; the first policy's value wins. */
function agreed<T>(policies: PolicyAst[], get: (p: PolicyAst) => Setting<T> | undefined, what: string, diags: Diagnostics): Setting<T> | undefined {
  let first: { s: Setting<T>; p: PolicyAst } | undefined;
  for (const p of policies) {
    const s = get(p);
    if (!s) continue;
    if (!first) first = { s, p };
    else if (s.value !== first.s.value) {
      diags.error(s.pos, `conflicting ${what}: ${q(s.value)} here, ${q(first.s.value)} in policy ${q(policyRef(first.p))} at ${where(first.s.pos)}; one table has one setting, so make them agree or keep one`);
    }
  }
  return first?.s;
}

/** Loads the .proto files of the command line and of every policy's `spec.protos`, reporting failures. */
function protoRegistry(policies: PolicyAst[], diags: Diagnostics, options: CompileOptions): ProtoRegistry | undefined {
  const files = new Map<string, Pos | undefined>();
  for (const f of options.protos ?? []) if (!files.has(f)) files.set(f, undefined);
  for (const p of policies) for (const f of p.protos ?? []) if (!files.has(f.value)) files.set(f.value, f.pos);
  if (files.size === 0) return undefined;
  try {
    return loadProtos([...files.keys()], { includeDirs: options.protoPaths });
  } catch (e) {
    if (!(e instanceof ProtoLoadError)) throw e;
    // protobufjs names the file and line of a syntax error: "... (file.proto, line 3)".
    const m = /\(([^,()]+), line (\d+)\)/.exec(e.message);
    const at = e.file !== undefined ? files.get(e.file) : undefined;
    const pos: Pos = at ?? (m ? { file: m[1], line: Number(m[2]), col: 1 } : { file: e.file ?? "<proto>", line: 1, col: 1 });
    diags.error(pos, e.message);
    return undefined;
  }
}

/**
 * Compiles every rule's `condition` (docs/cel.md): programs deduplicated (rules with the same condition share one,
 * so they can still form one family), the EXPR section, and the body settings of META.
 */
function lowerConditions(
  policies: PolicyAst[], rules: RuleIR[], asts: RuleAst[], diags: Diagnostics, options: CompileOptions,
): { expr: Uint8Array | null; maxBodyBytes: number; grpcFirst: boolean } {
  const maxBytes = agreed(policies, (p) => p.body?.maxBytes, "spec.body.maxBytes", diags);
  const grpcMessages = agreed(policies, (p) => p.body?.grpcMessages, "spec.body.grpcMessages", diags);
  const registry = protoRegistry(policies, diags, options);
  const programs: CelProgram[] = [];
  const byBytes = new Map<string, number>();
  let readsBody = false;
  let readsGrpc = false;
  rules.forEach((ir, i) => {
    const r = asts[i];
    const c = r.condition;
    if (!c) return;
    const method = r.grpcMethod !== undefined ? registry?.findMethod(r.grpcMethod) : undefined;
    const result = compileCondition(c.text, method ? { grpc: { path: method.path, requestType: method.requestType } } : {});
    if ("errors" in result) {
      for (const e of result.errors) {
        let message = e.message;
        if (r.grpcMethod !== undefined && !method && /request\.grpc\.message' needs a rule scoped/.test(message)) {
          message = `'request.grpc.message' reads the request message of ${r.grpcMethod}, which no .proto file given defines; ` +
            `pass the file with --proto FILE or list it in spec.protos`;
        }
        diags.error(c.posAt(e.offset), message);
      }
      return;
    }
    if (result.usesBody !== "none") readsBody = true;
    if (result.usesBody === "grpc") {
      readsGrpc = true;
      if (method?.requestStream && grpcMessages?.value !== "first") {
        diags.warn(c.pos, `${method.path} is client-streaming: a call that sends more than one message is denied (spec.body.grpcMessages: single); set grpcMessages: first to decide on the first message`);
      }
    }
    const key = Buffer.from(encodePrograms([result.program])).toString("base64");
    let index = byBytes.get(key);
    if (index === undefined) {
      index = programs.length;
      programs.push(result.program);
      byBytes.set(key, index);
    }
    ir.expr = index;
  });
  if (maxBytes && !readsBody) diags.warn(maxBytes.pos, "spec.body.maxBytes has no effect: no condition reads request.json or request.grpc.message");
  if (grpcMessages && !readsGrpc) diags.warn(grpcMessages.pos, "spec.body.grpcMessages has no effect: no condition reads request.grpc.message");
  if (maxBytes && maxBytes.value > 1024 * 1024) {
    diags.warn(maxBytes.pos, "spec.body.maxBytes is above Envoy's default per-connection buffer limit (1 MiB): Envoy answers 413 to larger bodies before the filter decides unless the listener's per_connection_buffer_limit_bytes is raised");
  }
  return {
    expr: programs.length > 0 ? encodePrograms(programs) : null,
    maxBodyBytes: readsBody ? (maxBytes?.value ?? DEFAULT_MAX_BODY_BYTES) : 0,
    grpcFirst: readsGrpc && grpcMessages?.value === "first",
  };
}
