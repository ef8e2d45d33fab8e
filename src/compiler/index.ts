// The compiler's public API. Stages (as cel-go and Cedar split them):
//   parse   src/policy/yaml.ts        YAML with positions
//   check   src/policy/{ours,istio}.ts  schema, unknown fields, values -> PolicyAst
//   select  src/policy/select.ts      the policies that apply to the workload (istiod's rules)
//   lower   src/compiler/lower.ts     PolicyAst[] -> TableIR (rule ids, defaults, schemas)
//   encode  src/compiler/table.ts     TableIR -> body, envelope, configuration string
//   emit    src/compiler/emit/        table, envoy, wasmplugin, trafficextension

import { readFileSync } from "node:fs";
import { checkFile } from "../policy/index.ts";
import { Diagnostics, PolicyError, TooManyErrors, sortDiagnostics, type Diagnostic } from "../policy/diagnostics.ts";
import { selectPolicies, type Workload } from "../policy/select.ts";
import type { PolicyAst } from "../policy/ast.ts";
import { lowerPolicies, type CompileOptions } from "./lower.ts";
import { encodeTable } from "./table.ts";
import type { TableIR } from "./ir.ts";

export { PolicyError, type Diagnostic } from "../policy/diagnostics.ts";
export type { Workload } from "../policy/select.ts";
export type { TableIR } from "./ir.ts";
export type { CompileOptions } from "./lower.ts";
export { DEFAULT_MAX_BODY_BYTES } from "./lower.ts";
export { isCompiledTable, decodeConfig, parsePluginConfiguration, TableFormatError, HEADERS_MODES } from "./decode.ts";
export type { HeadersMode } from "./decode.ts";

export interface CompileResult {
  /** the exact plugin configuration string `{"table":"<base64>"}` (no trailing newline) */
  config: string;
  /** 16 lower-case hex digits: the first 8 bytes of SHA-256 over the table body */
  tableHash: string;
  ruleCount: number;
  /** the decoded base64 of `config` */
  envelope: Uint8Array;
  ir: TableIR;
  /** non-fatal findings (dropped policies, literal "*", ...) */
  warnings: Diagnostic[];
}

/** Runs every stage over in-memory files. Throws {@link PolicyError} with every error found (at most 20). */
export function compileTexts(inputs: { file: string; text: string }[], workload?: Workload, options: CompileOptions = {}): CompileResult {
  const diags = new Diagnostics();
  let ir: TableIR | undefined;
  try {
    const policies: PolicyAst[] = [];
    for (const input of inputs) policies.push(...checkFile(input.file, input.text, diags));
    if (policies.length === 0 && !diags.failed) {
      const file = inputs[0]?.file ?? "<input>";
      diags.error({ file, line: 1, col: 1 }, "no policy documents found; give at least one AuthzPolicy or AuthorizationPolicy");
    }
    const selected = selectPolicies(policies, workload, diags);
    if (policies.length > 0 && selected.length === 0) {
      diags.warn(policies[0].pos, "no policy applies to the workload: the table allows every request");
    }
    ir = lowerPolicies(selected, diags, options);
  } catch (e) {
    if (!(e instanceof TooManyErrors)) throw e;
  }
  diags.throwIfFailed();
  const table = encodeTable(ir!);
  return {
    config: table.config,
    tableHash: table.tableHash,
    ruleCount: ir!.rules.length,
    envelope: table.envelope,
    ir: ir!,
    warnings: sortDiagnostics(diags.warnings),
  };
}

/** Reads the files and compiles them. An unreadable file is a PolicyError at `file:1:1`. */
export function compileFiles(paths: string[], workload?: Workload, options: CompileOptions = {}): CompileResult {
  const inputs: { file: string; text: string }[] = [];
  const errors: Diagnostic[] = [];
  for (const p of paths) {
    try {
      inputs.push({ file: p, text: readFileSync(p, "utf8") });
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      const why = err.code === "ENOENT" ? "no such file" : err.code === "EISDIR" ? "is a directory, not a policy file" : err.message;
      errors.push({ file: p, line: 1, col: 1, message: `cannot read policy file: ${why}` });
    }
  }
  if (errors.length) throw new PolicyError(errors);
  return compileTexts(inputs, workload, options);
}
