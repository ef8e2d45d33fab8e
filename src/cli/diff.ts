// `spiffe-authz diff OLD NEW --requests FILE`: replays a request corpus (src/corpus/read.ts: JSONL requests or an
// Envoy access log) through the real filter twice, once with each policy set, and reports the requests whose
// decision changes, with the rule (or default) that decided before and after and the new reason.
//
// Exit codes, as diff(1): 0 no request changes decision; 1 some do; 2 usage, policy or corpus error.

import { readdirSync, readFileSync, type Stats, statSync } from "node:fs";
import path from "node:path";

import { formatFlags, parseArgs, UsageError } from "./args.ts";
import type { FlagSpec } from "./args.ts";
import { Checker, ConfigurationRejected } from "../check/checker.ts";
import { ensureWasm } from "./io.ts";
import type { CheckRequest, CheckResult } from "../check/checker.ts";
import type { CliIO } from "./io.ts";
import { DEFAULT_WASM_PATH } from "../host/index.ts";
import { CorpusError, readCorpus } from "../corpus/read.ts";
import type { CorpusEntry } from "../corpus/read.ts";

export const DIFF_FLAGS: FlagSpec[] = [
  { name: "requests", kind: "value", metavar: "FILE", help: "the corpus: JSONL requests (check --batch's shape) or an Envoy access log (- for stdin)" },
  { name: "json", kind: "boolean", help: "one JSON line per changed request" },
  { name: "all", kind: "boolean", help: "also list requests whose decision stays but whose deciding rule changes" },
  { name: "namespace", kind: "value", metavar: "NS", help: "the workload's namespace (selects Istio policies)" },
  { name: "label", kind: "repeat", metavar: "K=V", help: "a workload label (selects Istio policies)" },
  { name: "root-namespace", kind: "value", metavar: "NS", help: "Istio's root namespace (default istio-system)" },
  { name: "proto", kind: "repeat", metavar: "FILE", help: ".proto file for conditions on gRPC messages" },
  { name: "proto-path", kind: "repeat", metavar: "DIR", help: "directory .proto imports are resolved against" },
  { name: "wasm", kind: "value", metavar: "FILE", help: "the filter module (default build/release.wasm)" },
  { name: "help", short: "h", kind: "boolean", help: "show this help" },
];

export const DIFF_USAGE = `usage: spiffe-authz diff OLD NEW --requests FILE [--json] [--all] [--namespace NS] [--label K=V]...

Replays every request of FILE through the real filter with the OLD and the NEW policies and lists the requests
whose decision changes, with the rule before and after. OLD and NEW are each a policy file, a directory of policy
files (*.yaml, test files skipped), or a compiled table. Exit 0: no decision changes; 1: some change; 2: an error.

flags:
${formatFlags(DIFF_FLAGS)}
`;

interface Side {
  source: string;
  checker: Checker;
  tableHash: string;
  ruleCount: number | null;
}

/** The policy files a command-line argument names (a file, or a directory's non-test *.yaml files). */
function policyFilesOf(arg: string): string[] {
  let st: Stats;
  try {
    st = statSync(arg);
  } catch {
    throw new UsageError(`no such file or directory "${arg}"`);
  }
  if (!st.isDirectory()) return [arg];
  const files = readdirSync(arg)
    .filter((n) => /\.ya?ml$/.test(n) && !/\.test\.ya?ml$/.test(n))
    .sort()
    .map((n) => path.join(arg, n));
  if (files.length === 0) throw new UsageError(`directory "${arg}" holds no policy files (*.yaml)`);
  return files;
}

async function loadSide(arg: string, args: ReturnType<typeof parseArgs>, wasmPath: string): Promise<Side> {
  const compiler = await import("../compiler/index.ts");
  const files = policyFilesOf(arg);
  if (files.length === 1) {
    const text = readFileSync(files[0], "utf8");
    if (compiler.isCompiledTable(text) || /^\s*\{\s*"(table|headers)"\s*:/.test(text)) {
      try {
        const checker = await Checker.create(text.trim(), { wasmPath });
        return { source: arg, checker, tableHash: checker.check({}).tableHash ?? "?", ruleCount: null };
      } catch (err) {
        if (err instanceof ConfigurationRejected) throw new UsageError(`"${arg}" is not a valid policy table: ${err.why}`);
        throw err;
      }
    }
  }
  const labels: Record<string, string> = {};
  for (const l of args.all("label")) {
    const eq = l.indexOf("=");
    if (eq <= 0) throw new UsageError(`--label "${l}" must look like "key=value"`);
    labels[l.slice(0, eq)] = l.slice(eq + 1);
  }
  const workload = args.has("namespace") || args.has("label") || args.has("root-namespace")
    ? { namespace: args.value("namespace"), labels, rootNamespace: args.value("root-namespace") }
    : undefined;
  const result = compiler.compileFiles(files, workload, { protos: args.all("proto"), protoPaths: args.all("proto-path") });
  return { source: arg, checker: await Checker.create(result.config, { wasmPath }), tableHash: result.tableHash, ruleCount: result.ruleCount };
}

function decidedBy(r: CheckResult): string {
  return r.rule !== null ? r.rule : r.reason.startsWith("no policy table") ? "no table" : "default";
}

function describeRequest(req: CheckRequest): string {
  const peer = req.peer === undefined || req.peer === null ? "(no client certificate)" : Array.isArray(req.peer) ? req.peer.join(",") : req.peer;
  return `${req.method ?? "GET"} ${req.path ?? "/"}${req.authority !== undefined ? ` (${req.authority})` : ""}  ${peer}`;
}

/** Entry point of `spiffe-authz diff`. */
export async function runDiff(argv: string[], io: CliIO): Promise<number> {
  try {
    const args = parseArgs(argv, DIFF_FLAGS);
    if (args.flag("help")) {
      io.stdout.write(DIFF_USAGE);
      return 0;
    }
    if (args.positionals.length !== 2) throw new UsageError(`give two policy sets, OLD and NEW (got ${args.positionals.length} arguments)`);
    const corpusFile = args.value("requests");
    if (corpusFile === undefined) throw new UsageError("--requests FILE is required: JSONL requests or an Envoy access log");
    let text: string;
    if (corpusFile === "-") text = await io.readStdin();
    else {
      try {
        text = readFileSync(corpusFile, "utf8");
      } catch {
        throw new UsageError(`cannot read the corpus "${corpusFile}"`);
      }
    }
    const corpus: CorpusEntry[] = readCorpus(text, corpusFile === "-" ? "<stdin>" : corpusFile);
    const wasmPath = path.resolve(args.value("wasm") ?? DEFAULT_WASM_PATH);
    ensureWasm(wasmPath, io);
    const [oldSide, newSide] = [await loadSide(args.positionals[0], args, wasmPath), await loadSide(args.positionals[1], args, wasmPath)];

    const changed: { entry: CorpusEntry; before: CheckResult; after: CheckResult }[] = [];
    const ruleOnly: typeof changed = [];
    const transitions = new Map<string, number>();
    for (const entry of corpus) {
      const before = oldSide.checker.check(entry.request);
      const after = newSide.checker.check(entry.request);
      if (before.decision !== after.decision) {
        changed.push({ entry, before, after });
        const key = `${before.decision} (${decidedBy(before)}) -> ${after.decision} (${decidedBy(after)})`;
        transitions.set(key, (transitions.get(key) ?? 0) + 1);
      } else if (before.rule !== after.rule) {
        ruleOnly.push({ entry, before, after });
      }
    }

    if (args.flag("json")) {
      const pick = (r: CheckResult) => ({ decision: r.decision, rule: r.rule, reason: r.reason });
      for (const c of [...changed, ...(args.flag("all") ? ruleOnly : [])]) {
        io.stdout.write(JSON.stringify({ line: c.entry.line, request: { ...c.entry.request, body: undefined }, before: pick(c.before), after: pick(c.after) }) + "\n");
      }
    } else {
      const side = (s: Side) => `${s.source} (table ${s.tableHash}${s.ruleCount !== null ? `, ${s.ruleCount} rules` : ""})`;
      io.stdout.write(`old: ${side(oldSide)}\nnew: ${side(newSide)}\n`);
      io.stdout.write(`${corpus.length} requests replayed from ${corpusFile}; ${changed.length} change decision\n`);
      for (const c of changed) {
        io.stdout.write(`\n  line ${c.entry.line}: ${describeRequest(c.entry.request)}\n`);
        io.stdout.write(`    ${c.before.decision} by ${decidedBy(c.before)} -> ${c.after.decision} by ${decidedBy(c.after)}\n`);
        io.stdout.write(`    now: ${c.after.reason}\n`);
      }
      if (transitions.size > 0) {
        io.stdout.write("\nby change:\n");
        for (const [k, n] of [...transitions].sort((a, b) => b[1] - a[1])) io.stdout.write(`  ${String(n).padStart(6)}  ${k}\n`);
      }
      if (ruleOnly.length > 0) {
        io.stdout.write(`\n${ruleOnly.length} request${ruleOnly.length === 1 ? "" : "s"} keep their decision under another rule${args.flag("all") ? ":" : " (--all lists them)"}\n`);
        if (args.flag("all")) {
          for (const c of ruleOnly) {
            io.stdout.write(`  line ${c.entry.line}: ${describeRequest(c.entry.request)}  ${c.before.decision}: ${decidedBy(c.before)} -> ${decidedBy(c.after)}\n`);
          }
        }
      }
    }
    return changed.length > 0 ? 1 : 0;
  } catch (err) {
    if (err instanceof UsageError || err instanceof CorpusError) {
      io.stderr.write(`spiffe-authz diff: ${err.message}\nrun "spiffe-authz diff --help" for usage\n`);
      return 2;
    }
    if (err instanceof Error && err.name === "PolicyError") {
      io.stderr.write(err.message + "\n");
      return 2;
    }
    io.stderr.write(`spiffe-authz diff: internal error: ${(err as Error).message}\n`);
    return 2;
  }
}
