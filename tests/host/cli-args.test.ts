// The shared argument parser (src/cli/args.ts).
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { formatFlags, parseArgs, UsageError } from "../../src/cli/args.ts";
import type { FlagSpec } from "../../src/cli/args.ts";

const SPECS: FlagSpec[] = [
  { name: "policy", kind: "repeat", metavar: "FILE", help: "policy file" },
  { name: "peer", kind: "value", metavar: "ID" },
  { name: "json", kind: "boolean" },
  { name: "output", short: "o", kind: "value" },
];

describe("parseArgs", () => {
  it("accepts --flag value, --flag=value, short flags, booleans and positionals in any order", () => {
    const a = parseArgs(["a.yaml", "--policy", "p1", "--policy=p2", "-o", "out", "--json", "b.yaml", "--peer=spiffe://x/y"], SPECS);
    assert.deepEqual(a.positionals, ["a.yaml", "b.yaml"]);
    assert.deepEqual(a.all("policy"), ["p1", "p2"]);
    assert.equal(a.value("output"), "out");
    assert.equal(a.value("peer"), "spiffe://x/y");
    assert.equal(a.flag("json"), true);
    assert.equal(a.has("peer"), true);
    assert.equal(a.has("missing"), false);
    assert.deepEqual(a.all("missing"), []);
  });

  it("keeps values that contain '=' or start with '-', and treats '-' and everything after '--' as positionals", () => {
    const a = parseArgs(["--peer", "-weird", "--policy=a=b", "-", "--", "--json"], SPECS);
    assert.equal(a.value("peer"), "-weird");
    assert.deepEqual(a.all("policy"), ["a=b"]);
    assert.deepEqual(a.positionals, ["-", "--json"]);
    assert.equal(a.flag("json"), false);
    assert.equal(parseArgs(["-o=f"], SPECS).value("output"), "f");
  });

  const errors: [string[], string][] = [
    [["--bogus"], "unknown flag \"--bogus\""],
    [["--bogus=1"], "unknown flag \"--bogus\""],
    [["-x"], "unknown flag \"-x\""],
    [["--peer"], "flag --peer needs a value (ID)"],
    [["--json=yes"], "flag --json takes no value (got \"yes\")"],
    [["--peer", "a", "--peer", "b"], "flag --peer given more than once"],
  ];
  for (const [argv, message] of errors) {
    it(`rejects ${argv.join(" ")} with a usage error`, () => {
      assert.throws(() => parseArgs(argv, SPECS), (err: unknown) => {
        assert.ok(err instanceof UsageError);
        assert.equal(err.exitCode, 2);
        assert.equal(err.message, message);
        return true;
      });
    });
  }

  it("formats aligned help lines", () => {
    const text = formatFlags(SPECS);
    assert.match(text, /^ {6}--policy FILE {2,}policy file \(repeatable\)$/m);
    assert.match(text, /^ {2}-o, --output VALUE$/m);
  });
});
