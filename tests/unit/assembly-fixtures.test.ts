// tests/assembly/fixtures.ts is exactly what its generator writes (tests/support/assembly-fixtures.ts): the DEFLATE
// streams of node's zlib and the real encoder's table, never edited by hand. (The as-pect tests check the other
// half: that the inflated bytes equal what helpers.ts sampleText / xorshiftBytes rebuild.)
import assert from "node:assert/strict";
import fs from "node:fs";
import { test } from "node:test";

import { FIXTURES_PATH, generateFixtures } from "../support/assembly-fixtures.ts";

test("tests/assembly/fixtures.ts is what tests/support/assembly-fixtures.ts writes", () => {
  assert.equal(
    fs.readFileSync(FIXTURES_PATH, "utf8"),
    generateFixtures(),
    "regenerate it: node --import tsx tests/support/assembly-fixtures.ts",
  );
});
