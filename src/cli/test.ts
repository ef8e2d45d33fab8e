// `spiffe-authz test`: runs policy test files (docs/policy-tests.md) on the real filter, as `check` does: each
// policy set is compiled once, loaded into build/release.wasm in the TypeScript host, and every request of the
// tests goes through it. Prints a report, optionally JUnit XML, and which rules no test exercised.
//
// Exit codes: 0 every test passed; 1 a test failed (or, with --require-coverage, a rule was not exercised);
// 2 usage error, or an error in a test file or a policy (file:line:col).

import { mkdirSync, readFileSync, type Stats, statSync, writeFileSync } from "node:fs";
import path from "node:path";

import { formatFlags, parseArgs, UsageError } from "./args.ts";
import type { FlagSpec } from "./args.ts";
import { Checker, ConfigurationRejected } from "../check/checker.ts";
import { ensureWasm } from "./io.ts";
import type { CheckResult } from "../check/checker.ts";
import type { CliIO } from "./io.ts";
import { compileFiles, PolicyError } from "../compiler/index.ts";
import type { CompileResult } from "../compiler/index.ts";
import { DEFAULT_WASM_PATH } from "../host/index.ts";
import { Diagnostics, formatDiagnostic, sortDiagnostics } from "../policy/diagnostics.ts";
import { findTestFiles, parseTestFile } from "../testing/testfile.ts";
import type { Expectation, PolicyTestCase, PolicyTestFile } from "../testing/testfile.ts";

export const TEST_FLAGS: FlagSpec[] = [
  { name: "junit", kind: "value", metavar: "FILE", help: "also write the results as JUnit XML to FILE" },
  { name: "require-coverage", kind: "boolean", help: "fail when a rule of a tested policy set is exercised by no test" },
  { name: "wasm", kind: "value", metavar: "FILE", help: "the filter module (default build/release.wasm)" },
  { name: "quiet", short: "q", kind: "boolean", help: "print only failures and the summary" },
  { name: "help", short: "h", kind: "boolean", help: "show this help" },
];

export const TEST_USAGE = `usage: spiffe-authz test DIR|FILE... [--junit FILE] [--require-coverage] [--quiet]

Runs policy tests (*.test.yaml, found recursively under each DIR) on the real filter (build/release.wasm) and
reports each test, the rules no test exercised, and a summary. The format: docs/policy-tests.md.

flags:
${formatFlags(TEST_FLAGS)}
`;

export interface CaseOutcome {
  test: PolicyTestCase;
  /** null when the request could not be run (see `error`) */
  result: CheckResult | null;
  /** what does not match the expectation; empty when the test passed */
  mismatches: string[];
  error: string | null;
  ms: number;
}

export interface FileOutcome {
  file: string;
  cases: CaseOutcome[];
  /** a problem that stopped the whole file (its policies do not compile) */
  error: string | null;
}

/** What does not match: one line per difference, empty when the result satisfies the expectation. */
export function compareResult(expect: Expectation, r: CheckResult): string[] {
  const out: string[] = [];
  const decidedBy = (rule: string | null): string => (rule === null ? "the default" : `rule "${rule}"`);
  if (r.decision !== expect.decision) out.push(`expected ${expect.decision}, got ${r.decision} by ${decidedBy(r.rule)}`);
  if (expect.rule !== undefined && r.rule !== expect.rule) {
    out.push(`expected the decision by ${decidedBy(expect.rule)}, got ${decidedBy(r.rule)}`);
  }
  if (expect.reason !== undefined) {
    const ok = typeof expect.reason === "string" ? r.reason.includes(expect.reason) : expect.reason.test(r.reason);
    if (!ok) out.push(`expected a reason ${typeof expect.reason === "string" ? `containing ${JSON.stringify(expect.reason)}` : `matching ${expect.reason}`}`);
  }
  if (expect.status !== undefined && r.status !== expect.status) out.push(`expected status ${expect.status}, got ${r.status}`);
  if (expect.grpcStatus !== undefined && r.grpcStatus !== expect.grpcStatus) {
    out.push(`expected grpc-status ${expect.grpcStatus ?? "none"}, got ${r.grpcStatus ?? "none"}`);
  }
  return out;
}

interface PolicySet {
  key: string;
  label: string;
  compiled: CompileResult;
  checker: Checker;
  /** rule ids exercised (decided a request, or logged an audit/dry-run line) */
  exercised: Set<string>;
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c]!)
    // XML 1.0 cannot carry most control characters at all.
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** JUnit XML (the common schema CI systems read): one testsuite per test file. */
export function junitXml(files: FileOutcome[], uncovered: { set: string; rules: string[] }[], requireCoverage: boolean): string {
  const lines = ['<?xml version="1.0" encoding="UTF-8"?>'];
  const all = files.flatMap((f) => f.cases);
  const failures = all.filter((c) => c.mismatches.length > 0).length;
  const errors = all.filter((c) => c.error !== null).length + files.filter((f) => f.error !== null).length;
  lines.push(`<testsuites name="spiffe-authz policy tests" tests="${all.length}" failures="${failures}" errors="${errors}">`);
  for (const f of files) {
    const fFail = f.cases.filter((c) => c.mismatches.length > 0).length;
    const fErr = f.cases.filter((c) => c.error !== null).length + (f.error !== null ? 1 : 0);
    const time = (f.cases.reduce((s, c) => s + c.ms, 0) / 1000).toFixed(3);
    lines.push(`  <testsuite name="${escapeXml(f.file)}" tests="${f.cases.length}" failures="${fFail}" errors="${fErr}" time="${time}">`);
    if (f.error !== null) {
      lines.push(`    <testcase classname="${escapeXml(f.file)}" name="(policies)"><error message="${escapeXml(f.error.split("\n")[0])}">${escapeXml(f.error)}</error></testcase>`);
    }
    for (const c of f.cases) {
      const head = `    <testcase classname="${escapeXml(f.file)}" name="${escapeXml(c.test.name)}" time="${(c.ms / 1000).toFixed(3)}"`;
      if (c.error !== null) lines.push(`${head}><error message="${escapeXml(c.error)}"/></testcase>`);
      else if (c.mismatches.length > 0) {
        const detail = `${c.mismatches.join("\n")}\ngot: ${JSON.stringify(c.result)}\nat ${c.test.pos.file}:${c.test.pos.line}:${c.test.pos.col}`;
        lines.push(`${head}><failure message="${escapeXml(c.mismatches[0])}">${escapeXml(detail)}</failure></testcase>`);
      } else lines.push(`${head}/>`);
    }
    lines.push("  </testsuite>");
  }
  if (uncovered.length > 0) {
    lines.push(`  <testsuite name="rule coverage" tests="${uncovered.reduce((s, u) => s + u.rules.length, 0)}" failures="${requireCoverage ? uncovered.reduce((s, u) => s + u.rules.length, 0) : 0}" errors="0">`);
    for (const u of uncovered) {
      for (const rule of u.rules) {
        const head = `    <testcase classname="${escapeXml(u.set)}" name="rule ${escapeXml(rule)} is exercised"`;
        lines.push(requireCoverage ? `${head}><failure message="no test exercised rule ${escapeXml(rule)}"/></testcase>` : `${head}><skipped message="no test exercised it"/></testcase>`);
      }
    }
    lines.push("  </testsuite>");
  }
  lines.push("</testsuites>");
  return lines.join("\n") + "\n";
}

/** Entry point of `spiffe-authz test`. */
export async function runTest(argv: string[], io: CliIO): Promise<number> {
  let args: ReturnType<typeof parseArgs>;
  try {
    args = parseArgs(argv, TEST_FLAGS);
    if (args.flag("help")) {
      io.stdout.write(TEST_USAGE);
      return 0;
    }
    if (args.positionals.length === 0) throw new UsageError("give the test files or directories to run");
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`spiffe-authz test: ${err.message}\nrun "spiffe-authz test --help" for usage\n`);
      return 2;
    }
    throw err;
  }

  // 1. Find and parse every test file before running anything.
  const files: string[] = [];
  for (const p of args.positionals) {
    let st: Stats;
    try {
      st = statSync(p);
    } catch {
      io.stderr.write(`spiffe-authz test: no such file or directory "${p}"\n`);
      return 2;
    }
    if (st.isDirectory()) {
      const found = findTestFiles(p);
      if (found.length === 0) {
        io.stderr.write(`spiffe-authz test: no test files (*.test.yaml) under "${p}"\n`);
        return 2;
      }
      files.push(...found);
    } else files.push(p);
  }
  const diags = new Diagnostics();
  const parsed: PolicyTestFile[] = [];
  for (const f of [...new Set(files.map((f) => path.relative(process.cwd(), f) || f))]) {
    let text: string;
    try {
      text = readFileSync(f, "utf8");
    } catch (err) {
      diags.error({ file: f, line: 1, col: 1 }, `cannot read test file: ${(err as Error).message}`);
      continue;
    }
    const t = parseTestFile(f, text, diags);
    if (t !== null) parsed.push(t);
  }
  if (diags.failed) {
    for (const d of sortDiagnostics(diags.errors)) io.stderr.write(formatDiagnostic(d) + "\n");
    io.stderr.write(`spiffe-authz test: ${diags.errors.length} error${diags.errors.length === 1 ? "" : "s"} in test files; no test was run\n`);
    return 2;
  }

  // 2. Compile each policy set once and run the tests.
  const wasmPath = path.resolve(args.value("wasm") ?? DEFAULT_WASM_PATH);
  try {
    ensureWasm(wasmPath, io);
  } catch (err) {
    io.stderr.write(`spiffe-authz test: ${(err as Error).message}\n`);
    return 2;
  }
  const sets = new Map<string, PolicySet | { error: string }>();
  const outcomes: FileOutcome[] = [];
  let policyErrors = false;
  for (const t of parsed) {
    const key = JSON.stringify([t.policies, t.protos, t.protoPaths, t.workload ?? null]);
    let set = sets.get(key);
    if (set === undefined) {
      try {
        const compiled = compileFiles(t.policies.map((p) => path.relative(process.cwd(), p) || p), t.workload, { protos: t.protos, protoPaths: t.protoPaths });
        const checker = await Checker.create(compiled.config, { wasmPath });
        const label = t.policies.map((p) => path.relative(process.cwd(), p)).join(", ");
        set = { key, label, compiled, checker, exercised: new Set() };
      } catch (err) {
        const message = err instanceof PolicyError ? err.message : err instanceof ConfigurationRejected ? err.message : (err as Error).message;
        set = { error: message };
      }
      sets.set(key, set);
    }
    if ("error" in set) {
      policyErrors = true;
      outcomes.push({ file: t.file, cases: [], error: set.error });
      continue;
    }
    const cases: CaseOutcome[] = [];
    for (const test of t.tests) {
      const started = performance.now();
      try {
        const { result, shadow } = set.checker.checkWithShadowLines(test.request);
        if (result.rule !== null) set.exercised.add(result.rule);
        for (const line of shadow) {
          const m = /rule=(\S+)/.exec(line);
          if (m !== null) set.exercised.add(m[1]);
        }
        cases.push({ test, result, mismatches: compareResult(test.expect, result), error: null, ms: performance.now() - started });
      } catch (err) {
        cases.push({ test, result: null, mismatches: [], error: (err as Error).message, ms: performance.now() - started });
      }
    }
    outcomes.push({ file: t.file, cases, error: null });
  }

  // 3. Report.
  const quiet = args.flag("quiet");
  for (const f of outcomes) {
    if (!quiet || f.error !== null || f.cases.some((c) => c.error !== null || c.mismatches.length > 0)) io.stdout.write(`${f.file}\n`);
    if (f.error !== null) {
      io.stdout.write(`  ERROR the policies do not compile:\n${f.error.split("\n").map((l) => `    ${l}`).join("\n")}\n`);
      continue;
    }
    for (const c of f.cases) {
      const at = `${c.test.pos.file}:${c.test.pos.line}:${c.test.pos.col}`;
      if (c.error !== null) {
        io.stdout.write(`  ERROR ${c.test.name}\n        ${c.error}\n        at ${at}\n`);
      } else if (c.mismatches.length > 0) {
        io.stdout.write(`  FAIL  ${c.test.name}\n`);
        for (const m of c.mismatches) io.stdout.write(`        ${m}\n`);
        io.stdout.write(`        reason: ${c.result!.reason}\n        at ${at}\n`);
      } else if (!quiet) {
        const r = c.result!;
        io.stdout.write(`  ok    ${c.test.name} (${r.decision}${r.rule !== null ? ` by ${r.rule}` : ""})\n`);
      }
    }
  }
  // Coverage by rule id over every policy set: a rule shared by two test files (the same policy file under test
  // twice) counts once, and is exercised when a test of either set exercised it.
  const exercised = new Set<string>();
  const ruleSets = new Map<string, string>();
  for (const set of sets.values()) {
    if ("error" in set) continue;
    for (const id of set.exercised) exercised.add(id);
    for (const r of set.compiled.ir.rules) if (!ruleSets.has(r.id)) ruleSets.set(r.id, set.label);
  }
  const uncovered: { set: string; rules: string[] }[] = [];
  for (const [id, label] of ruleSets) {
    if (exercised.has(id)) continue;
    const group = uncovered.find((u) => u.set === label);
    if (group !== undefined) group.rules.push(id);
    else uncovered.push({ set: label, rules: [id] });
  }
  const missingCount = uncovered.reduce((n, u) => n + u.rules.length, 0);
  io.stdout.write(`\nrule coverage: ${ruleSets.size - missingCount} of ${ruleSets.size} rules exercised\n`);
  for (const u of uncovered) io.stdout.write(`  not exercised (${u.set}): ${u.rules.join(", ")}\n`);
  const all = outcomes.flatMap((f) => f.cases);
  const passed = all.filter((c) => c.error === null && c.mismatches.length === 0).length;
  const failed = all.length - passed;
  io.stdout.write(`\n${passed} passed, ${failed} failed\n`);

  const junit = args.value("junit");
  if (junit !== undefined) {
    try {
      mkdirSync(path.dirname(path.resolve(junit)), { recursive: true });
      writeFileSync(junit, junitXml(outcomes, uncovered, args.flag("require-coverage")));
    } catch (err) {
      io.stderr.write(`spiffe-authz test: cannot write "${junit}": ${(err as Error).message}\n`);
      return 1;
    }
  }
  if (policyErrors) return 2;
  if (failed > 0) return 1;
  if (args.flag("require-coverage") && uncovered.length > 0) return 1;
  return 0;
}
