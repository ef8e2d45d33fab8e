// The CLI as a tool: `npm pack` (its prepack builds build/release.wasm into the package), `npm install -g` into a
// temporary prefix, and `spiffe-authz` from that prefix's bin/ works from a directory outside the checkout, with
// only the package's runtime dependencies (no devDependencies, no repository around it).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cpSync, readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { parse } from "yaml";
import { repoRoot } from "../../dev/envoy/binary.ts";
import { buildWasmImage } from "../../src/oci/image.ts";
import { tempDir } from "../support/envoy-fixture.ts";

const execFileAsync = promisify(execFile);

// The npm on the user's PATH, not one a dependency put into node_modules/.bin (under `npm test` that directory comes
// first on PATH, and a dependency here ships an old npm without --pack-destination).
const npmEnv = {
  ...process.env,
  PATH: (process.env.PATH ?? "").split(":").filter((p) => !p.includes("node_modules")).join(":"),
};

describe("npm pack + npm install -g", { timeout: 600_000 }, () => {
  let dir: string;
  let bin: string;
  let work: string;
  let packed: string;

  const cli = async (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    try {
      const { stdout, stderr } = await execFileAsync(bin, args, { cwd: work, env: { ...process.env, PATH: `${join(dir, "prefix", "bin")}:/usr/bin:/bin` } });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
    }
  };

  before(async () => {
    dir = await tempDir("npm-package");
    const { stdout } = await execFileAsync("npm", ["pack", "--pack-destination", dir, "--json"], { cwd: repoRoot, env: npmEnv, maxBuffer: 16 << 20 });
    // The prepack script's output comes first; npm's JSON report is the rest.
    const info = JSON.parse(stdout.slice(stdout.search(/^\[$/m))) as { filename: string; files: { path: string }[] }[];
    packed = join(dir, info[0].filename);
    const files = info[0].files.map((f) => f.path);
    assert.ok(files.includes("build/release.wasm"), "the module is in the package");
    assert.ok(files.includes("bin/spiffe-authz.js"));
    assert.ok(!files.some((f) => f.startsWith("tests/") || f.startsWith("node_modules/") || f.startsWith("assembly/") || f.startsWith("dev/")), files.join(", "));
    await execFileAsync("npm", ["install", "-g", "--prefix", join(dir, "prefix"), packed, "--no-audit", "--no-fund", "--prefer-offline"], { cwd: dir, env: npmEnv });
    bin = join(dir, "prefix", "bin", "spiffe-authz");
    // A policy repository somewhere else, not inside the checkout.
    work = join(dir, "policy-repo");
    cpSync(join(repoRoot, "examples", "policy-repo"), work, { recursive: true });
  });
  after(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  test("spiffe-authz runs from the prefix's bin/ outside the checkout", async () => {
    const v = await cli("version");
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /^spiffe-authz \d+\.\d+\.\d+\n$/);
    const check = await cli("check", "--policy", "policies/orders.yaml", "--peer", "spiffe://prod.example.com/app/legacy/env/prod", "--path", "/orders/1", "--json");
    assert.equal(check.code, 0, check.stderr);
    assert.equal(JSON.parse(check.stdout).rule, "no-legacy");
  });

  test("test, diff, image and compile work with the packaged module", async () => {
    const t = await cli("test", ".", "--junit", "junit.xml");
    assert.equal(t.code, 0, t.stdout + t.stderr);
    assert.match(t.stdout, /^9 passed, 0 failed$/m);
    assert.match(readFileSync(join(work, "junit.xml"), "utf8"), /tests="9" failures="0"/);
    const d = await cli("diff", "policies", "policies", "--requests", "traffic/sample.log");
    assert.equal(d.code, 0, d.stdout + d.stderr);
    const img = await cli("image", "--out", "image", "--json");
    assert.equal(img.code, 0, img.stderr);
    const packagedWasm = readFileSync(join(dir, "prefix", "lib", "node_modules", "spiffe-authz", "build", "release.wasm"));
    const digest = (JSON.parse(img.stdout) as { images: { digest: string }[] }).images[0].digest;
    assert.equal(digest, buildWasmImage(packagedWasm).digest);
    const wp = await cli("compile", "policies/orders.yaml", "--emit", "wasmplugin", "--label", "app=orders", "--wasm-url", "oci://registry.example.com/spiffe-authz:0.1.0");
    assert.equal(wp.code, 0, wp.stderr);
    assert.equal((parse(wp.stdout) as { spec: { sha256: string } }).spec.sha256, digest.slice("sha256:".length));
  });
});
