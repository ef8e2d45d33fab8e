// Golden diagnostics: tests/unit/diagnostics/<case>.yaml beside <case>.expected (the exact `file:line:col: message`
// lines a failing compilation reports) and/or <case>.warnings (the exact warnings of a successful one). The file
// is compiled under its base name, so the golden lines do not depend on where the repository lives.

import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { compileTexts, PolicyError } from "../../src/compiler/index.ts";
import { formatDiagnostic, MAX_ERRORS } from "../../src/policy/diagnostics.ts";

const dir = join(import.meta.dirname, "diagnostics");
const lines = (path: string) => readFileSync(path, "utf8").split("\n").filter((l) => l !== "");

describe("golden diagnostics", () => {
  const cases = readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort();
  it("has cases, each with an expectation", () => {
    assert.ok(cases.length >= 10);
    for (const f of cases) {
      const base = join(dir, f.slice(0, -5));
      assert.ok(existsSync(base + ".expected") || existsSync(base + ".warnings"), `${f} has no .expected or .warnings`);
    }
  });

  for (const f of cases) {
    const base = join(dir, f.slice(0, -5));
    it(f, () => {
      const text = readFileSync(join(dir, f), "utf8");
      let errors: string[] = [];
      let warnings: string[] | undefined;
      try {
        warnings = compileTexts([{ file: f, text }]).warnings.map(formatDiagnostic);
      } catch (e) {
        if (!(e instanceof PolicyError)) throw e;
        errors = e.diagnostics.map(formatDiagnostic);
        // PolicyError's message is the same lines, for callers that only print it.
        assert.equal(e.message, errors.join("\n"));
      }
      if (existsSync(base + ".expected")) {
        assert.deepEqual(errors, lines(base + ".expected"));
        for (const l of errors) {
          const message = l.replace(/^[^:]+:\d+:\d+: /, "");
          assert.match(l, /^[\w.-]+\.yaml:\d+:\d+: /, "file:line:col prefix");
          assert.ok(!/\.$/.test(message), `no final period: ${l}`);
          assert.equal(message.charAt(0), message.charAt(0).toLowerCase(), `lower-case start: ${l}`);
        }
      } else {
        assert.deepEqual(errors, [], "compiles");
      }
      if (existsSync(base + ".warnings")) assert.deepEqual(warnings, lines(base + ".warnings"));
    });
  }

  it(`stops at ${MAX_ERRORS} errors`, () => {
    assert.equal(lines(join(dir, "too-many-errors.expected")).length, MAX_ERRORS);
  });
});
