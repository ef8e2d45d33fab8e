// Golden cases (tests/cases/<case>/): one table of policies, requests and expected results shared by the host
// tests and the micro-benchmarks.
//
// A case holds:
//   *.yaml            policy files, compiled together (file names sorted)
//   *.proto           .proto files given to the compiler (`--proto`), for conditions on gRPC messages
//   workload.json     optional {"namespace", "labels", "rootNamespace"} for the compiler's workload selection
//   requests.jsonl    `check --batch` request lines
//   expected.jsonl    the exact `check --batch` result lines; "@table" stands for the compiled table hash
//   expected-error.txt  instead of the two above: the exact diagnostics (`file:line:col: message` lines)
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";

import { ROOT } from "./fixture.ts";

export const CASES_DIR = path.join(ROOT, "tests/cases");
export const TABLE_HASH_PLACEHOLDER = "\"@table\"";

export interface GoldenCase {
  name: string;
  dir: string;
  /** policy files, with the bare file name as the diagnostic file name */
  files: { file: string; text: string }[];
  workload?: { namespace?: string; labels?: Record<string, string>; rootNamespace?: string };
  /** absolute paths of the case's .proto files */
  protos: string[];
  requests: string[];
  expected: string[] | null;
  expectedError: string[] | null;
}

function lines(text: string): string[] {
  const out = text.split("\n");
  if (out.length > 0 && out[out.length - 1] === "") out.pop();
  return out;
}

export function loadCase(name: string): GoldenCase {
  const dir = path.join(CASES_DIR, name);
  const names = readdirSync(dir).filter((f) => f.endsWith(".yaml") || f.endsWith(".yml")).sort();
  const read = (f: string) => readFileSync(path.join(dir, f), "utf8");
  const has = (f: string) => existsSync(path.join(dir, f));
  return {
    name,
    dir,
    files: names.map((f) => ({ file: f, text: read(f) })),
    workload: has("workload.json") ? JSON.parse(read("workload.json")) : undefined,
    protos: readdirSync(dir).filter((f) => f.endsWith(".proto")).sort().map((f) => path.join(dir, f)),
    requests: has("requests.jsonl") ? lines(read("requests.jsonl")) : [],
    expected: has("expected.jsonl") ? lines(read("expected.jsonl")) : null,
    expectedError: has("expected-error.txt") ? lines(read("expected-error.txt")) : null,
  };
}

export function listCases(): GoldenCase[] {
  return readdirSync(CASES_DIR, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort()
    .map(loadCase);
}

/** An expected line with the placeholder replaced by the table hash the compiler reported. */
export function expectedLine(line: string, tableHash: string): string {
  return line.split(TABLE_HASH_PLACEHOLDER).join(JSON.stringify(tableHash));
}
