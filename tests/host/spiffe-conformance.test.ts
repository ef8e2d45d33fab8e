// SPIFFE ID conformance: `spiffe-authz check --batch` (the real filter, through bin/spiffe-authz.js) must agree
// with an independent reading of the SPIFFE ID spec (tests/support/spiffe-reference.ts) on validity, trust
// domain and path, for a few hundred seeded IDs plus a sweep of every ASCII character in each position.
// SPIFFE_SEED=<n> runs an additional fresh seed.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";

import { generateSpiffeIds, judgeSpiffeId } from "../support/spiffe-reference.ts";
import type { GeneratedId } from "../support/spiffe-reference.ts";
import { ROOT } from "./helpers/fixture.ts";
import { requireReleaseWasm } from "./helpers/release.ts";

const POLICY = `apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata: {name: conformance}
spec:
  rules:
    - id: any-valid-identity
      from: [{ids: ["*"]}]
`;

function sweep(): GeneratedId[] {
  const out: GeneratedId[] = [];
  const chars: string[] = [];
  for (let c = 0; c < 128; c++) chars.push(String.fromCharCode(c));
  chars.push("é", "\u00ff", "\u0100", "€", "😀");
  for (const c of chars) {
    out.push({ id: `spiffe://ex${c}ample.org/path`, kind: `trust domain char U+${c.codePointAt(0)!.toString(16)}` });
    out.push({ id: `spiffe://example.org/pa${c}th/x`, kind: `path char U+${c.codePointAt(0)!.toString(16)}` });
  }
  return out;
}

function runBatch(ids: GeneratedId[]): unknown[] {
  const dir = mkdtempSync(path.join(tmpdir(), "spiffe-conformance-"));
  try {
    const policy = path.join(dir, "policy.yaml");
    writeFileSync(policy, POLICY);
    const input = ids.map((g) => JSON.stringify({ peer: g.id })).join("\n") + "\n";
    const r = spawnSync(process.execPath, [path.join(ROOT, "bin/spiffe-authz.js"), "check", "--policy", policy, "--batch", "-"], {
      cwd: ROOT, input, encoding: "utf8", maxBuffer: 64 * 1024 * 1024,
    });
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    assert.equal(lines.length, ids.length);
    return lines.map((l) => JSON.parse(l));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function compare(ids: GeneratedId[]): void {
  const results = runBatch(ids) as { decision: string; peer: { valid: boolean; id: string | null; trustDomain: string | null; path: string | null } }[];
  const mismatches: string[] = [];
  let valid = 0;
  ids.forEach((g, i) => {
    const want = judgeSpiffeId(g.id);
    const got = results[i].peer;
    if (want.valid) valid++;
    const same = got.valid === want.valid && got.trustDomain === want.trustDomain && got.path === want.path && got.id === g.id
      // A valid identity is allowed by the policy; an invalid one never reaches the rule.
      && results[i].decision === (want.valid ? "allow" : "deny");
    if (!same) {
      mismatches.push(`${g.kind}: ${JSON.stringify(g.id)}\n  spec: ${JSON.stringify(want)}\n  filter: ${JSON.stringify(got)} (${results[i].decision})`);
    }
  });
  assert.ok(valid > ids.length / 10 && valid < ids.length * 0.9, `the generator should mix valid and invalid IDs (${valid} valid)`);
  assert.equal(mismatches.length, 0, `${mismatches.length} of ${ids.length} disagree:\n${mismatches.slice(0, 20).join("\n")}`);
}

describe("SPIFFE ID conformance", () => {
  requireReleaseWasm();

  it("agrees with the spec on 400 seeded IDs", () => {
    compare(generateSpiffeIds(20240611, 400));
  });

  it("agrees with the spec on every ASCII character in the trust domain and the path", () => {
    compare(sweep());
  });

  const extra = process.env.SPIFFE_SEED;
  if (extra) {
    it(`agrees with the spec on 400 IDs from seed ${extra}`, () => {
      compare(generateSpiffeIds(Number(extra), 400));
    });
  }
});
