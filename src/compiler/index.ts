// The compiler's public API. Stages (as cel-go and Cedar split them):
//   parse   src/policy/yaml.ts        YAML with positions
//   check   src/policy/{ours,istio}.ts  schema, unknown fields, values -> PolicyAst
//   select  src/policy/select.ts      the policies that apply to the workload (istiod's rules)
//   lower   src/compiler/lower.ts     PolicyAst[] -> TableIR (rule ids, defaults, schemas)
//   encode  src/compiler/table.ts     TableIR -> body, envelope, configuration string
//   emit    src/compiler/emit/        table, envoy, wasmplugin, trafficextension

import { readFileSync } from "node:fs";
import { checkFile } from "../policy/index.ts";
import { DEFAULT_TRUST_DOMAIN, trustDomainBundle } from "../policy/istio-values.ts";
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
    const istio = {
      bundle: trustDomainBundle(options.trustDomain ?? DEFAULT_TRUST_DOMAIN, options.trustDomainAliases ?? []),
      namespace: workload?.namespace,
    };
    for (const input of inputs) policies.push(...checkFile(input.file, input.text, diags, istio));
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
/**
 * Why `bytes` cannot be YAML text (a NUL or another control character YAML forbids, or bytes that are not UTF-8),
 * with where, or null. One line instead of a screen of parse errors quoting binary data.
 */
export function binaryProblem(bytes: Uint8Array): { line: number; col: number; why: string } | null {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    const at = firstInvalidUtf8(bytes);
    const before = bytes.subarray(0, at);
    const line = before.filter((b) => b === 10).length + 1;
    return { line, col: at - before.lastIndexOf(10), why: `byte 0x${bytes[at].toString(16).padStart(2, "0")} at offset ${at} is not UTF-8 (binary data?)` };
  }
  const m = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.exec(text);
  if (m === null) return null;
  const before = text.slice(0, m.index);
  const line = before.split("\n").length;
  const col = m.index - before.lastIndexOf("\n");
  return { line, col, why: `control character U+${m[0].charCodeAt(0).toString(16).padStart(4, "0")} (binary data?)` };
}

function firstInvalidUtf8(b: Uint8Array): number {
  for (let i = 0; i < b.length; ) {
    const c = b[i];
    const n = c < 0x80 ? 1 : c >= 0xc2 && c < 0xe0 ? 2 : c >= 0xe0 && c < 0xf0 ? 3 : c >= 0xf0 && c < 0xf5 ? 4 : 0;
    if (n === 0 || i + n > b.length) return i;
    try {
      new TextDecoder("utf-8", { fatal: true }).decode(b.subarray(i, i + n));
    } catch {
      return i;
    }
    i += n;
  }
  return 0;
}

export function compileFiles(paths: string[], workload?: Workload, options: CompileOptions = {}): CompileResult {
  const inputs: { file: string; text: string }[] = [];
  const errors: Diagnostic[] = [];
  for (const p of paths) {
    try {
      const bytes = readFileSync(p);
      const problem = binaryProblem(bytes);
      if (problem !== null) {
        errors.push({ file: p, line: problem.line, col: problem.col, message: `not a policy file: ${problem.why}` });
        continue;
      }
      inputs.push({ file: p, text: bytes.toString("utf8") });
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      const why = err.code === "ENOENT" ? "no such file" : err.code === "EISDIR" ? "is a directory, not a policy file" : err.message;
      errors.push({ file: p, line: 1, col: 1, message: `cannot read policy file: ${why}` });
    }
  }
  if (errors.length) throw new PolicyError(errors);
  return compileTexts(inputs, workload, options);
}
