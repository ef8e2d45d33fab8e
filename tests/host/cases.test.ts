// Every golden case (tests/cases/) through the compiler and the real build/release.wasm, compared line by line
// with results derived from docs/table-format.md §3-4 and Istio's semantics.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { compileTexts, PolicyError } from "../../src/compiler/index.ts";
import { Checker } from "../../src/check/checker.ts";
import { parseBatchLine } from "../../src/check/batch.ts";
import { expectedLine, listCases } from "./helpers/cases.ts";
import { requireReleaseWasm } from "./helpers/release.ts";

describe("golden cases", () => {
  const wasmPath = requireReleaseWasm();
  for (const c of listCases()) {
    it(c.name, async () => {
      if (c.expectedError) {
        assert.throws(() => compileTexts(c.files, c.workload, { protos: c.protos }), (err: unknown) => {
          assert.ok(err instanceof PolicyError, `expected a PolicyError, got ${String(err)}`);
          assert.deepEqual(err.message.split("\n"), c.expectedError);
          return true;
        });
        return;
      }
      assert.ok(c.expected, `case ${c.name} has neither expected.jsonl nor expected-error.txt`);
      assert.equal(c.requests.length, c.expected.length, "requests.jsonl and expected.jsonl differ in length");
      const compiled = compileTexts(c.files, c.workload, { protos: c.protos });
      const checker = await Checker.create(compiled.config, { wasmPath });
      const failures: string[] = [];
      c.requests.forEach((line, i) => {
        const actual = JSON.stringify(checker.check(parseBatchLine(line, `requests.jsonl:${i + 1}: `)));
        const want = expectedLine(c.expected![i], compiled.tableHash);
        if (actual !== want) failures.push(`line ${i + 1}: ${line}\n  want ${want}\n  got  ${actual}`);
      });
      assert.equal(failures.length, 0, `${c.name}:\n${failures.join("\n")}`);
    });
  }
});
