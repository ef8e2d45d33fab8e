// findSpire: SPIRE_BIN_DIR, then PATH, then the project's build, made on first use from the Go modules with a
// message, once when two processes race. The build is exercised against a fake `go` that records how it was run
// (the real build is what .ci/run does on a fresh machine, and what every other SPIRE test runs on); each case runs
// `dev/spire/install.ts` in its own process so the environment and caches are fresh.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmod, mkdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { repoRoot } from "../../dev/envoy/binary.ts";
import { findSpire } from "../../dev/spire/binary.ts";
import { agentBinaryFor, workloadAs } from "../../dev/spire/run.ts";
import { tempDir } from "../support/envoy-fixture.ts";

const execFileAsync = promisify(execFile);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function runInstall(env: Record<string, string>): Promise<Run> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, ["--import", "tsx", "dev/spire/install.ts"], {
      cwd: repoRoot,
      env: { HOME: process.env.HOME ?? "/tmp", ...env },
      timeout: 120_000,
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

/** A fake spire-server/spire-agent that prints a version like SPIRE's `--version` (on stderr). */
const fakeSpire = (version: string) => `echo "${version}" >&2`;

/**
 * A fake `go`: appends "<args> | GOMODCACHE GOCACHE GOTOOLCHAIN cwd" to $LOG; `go build -o DIR/ ...` writes fake
 * spire-server and spire-agent into DIR after a second (so a second process has time to find the lock).
 */
const fakeGo = (log: string) => `
echo "$* | $GOMODCACHE $GOCACHE $GOTOOLCHAIN $(pwd)" >> "${log}"
if [ "$1" = build ]; then
  sleep 1
  out="$3"
  for c in spire-server spire-agent; do
    printf '#!/bin/sh\\necho 1.13.3 >&2\\n' > "$out/$c"
    chmod 755 "$out/$c"
  done
fi
`;

describe("findSpire", () => {
  let dir: string;
  let emptyPath: string;
  before(async () => {
    dir = await tempDir("spire-binary");
    emptyPath = join(dir, "empty-path");
    await mkdir(emptyPath);
  });
  after(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  test("SPIRE_BIN_DIR wins, and must hold both executables", async () => {
    const bin = join(dir, "bin-dir");
    await mkdir(bin);
    await script(join(bin, "spire-server"), fakeSpire("1.13.3"));
    await script(join(bin, "spire-agent"), fakeSpire("1.13.3"));
    const ok = await runInstall({ SPIRE_BIN_DIR: bin, PATH: emptyPath });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, new RegExp(`^spire-server: ${bin}/spire-server \\(1\\.13\\.3, from SPIRE_BIN_DIR\\)$`, "m"));
    assert.match(ok.stdout, new RegExp(`^spire-agent: ${bin}/spire-agent \\(1\\.13\\.3, from SPIRE_BIN_DIR\\)$`, "m"));
    assert.equal(ok.stderr, "");

    const half = join(dir, "half-bin-dir");
    await mkdir(half);
    await script(join(half, "spire-server"), fakeSpire("1.13.3"));
    const bad = await runInstall({ SPIRE_BIN_DIR: half, PATH: emptyPath });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, new RegExp(`SPIRE_BIN_DIR "${half}" has no executable "${half}/spire-agent"`));
  });

  test("takes both from PATH, and warns when they are not SPIRE 1.13.3", async () => {
    const bin = join(dir, "path-bin");
    await mkdir(bin);
    await script(join(bin, "spire-server"), fakeSpire("1.12.0"));
    await script(join(bin, "spire-agent"), fakeSpire("1.13.3"));
    const run = await runInstall({ PATH: `${emptyPath}:${bin}` });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /from PATH\)/);
    assert.match(run.stderr, /warning: ".*path-bin\/spire-server" is not SPIRE 1\.13\.3 \(it says "1\.12\.0"\)/);
    assert.doesNotMatch(run.stderr, /spire-agent" is not/);
  });

  test("one of the two on PATH is not enough: it builds both", async () => {
    const bin = join(dir, "path-one");
    await mkdir(bin);
    await script(join(bin, "spire-server"), fakeSpire("1.13.3"));
    const goBin = join(dir, "go-one");
    await mkdir(goBin);
    const log = join(dir, "go-one.log");
    await script(join(goBin, "go"), fakeGo(log));
    const cache = join(dir, "cache-one");
    const run = await runInstall({ PATH: `${bin}:${goBin}`, SPIFFE_AUTHZ_SPIRE_CACHE: cache });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, new RegExp(`^spire-server: ${cache}/bin/spire-server \\(1\\.13\\.3, from build\\)$`, "m"));
  });

  test("builds from the Go modules into the cache on first use, saying so, and only once", async () => {
    const goBin = join(dir, "go-bin");
    await mkdir(goBin);
    const log = join(dir, "go.log");
    await script(join(goBin, "go"), fakeGo(log));
    const cache = join(dir, "cache");
    const env = { PATH: goBin, SPIFFE_AUTHZ_SPIRE_CACHE: cache };
    // Two processes at once: one builds, the other waits for it and takes its binaries.
    const [a, b] = await Promise.all([runInstall(env), runInstall(env)]);
    for (const run of [a, b]) {
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, new RegExp(`^spire-agent: ${cache}/bin/spire-agent \\(1\\.13\\.3, from build\\)$`, "m"));
    }
    const builder = [a, b].find((r) => /building SPIRE/.test(r.stderr));
    assert.ok(builder !== undefined, `one of them builds:\n${a.stderr}\n${b.stderr}`);
    assert.match(
      builder.stderr,
      new RegExp(
        `spire-server/spire-agent not found \\(SPIRE_BIN_DIR unset, not on PATH\\); building SPIRE 1\\.13\\.3 from Go modules into "${cache}/bin"`,
      ),
    );
    assert.match(builder.stderr, /built SPIRE 1\.13\.3 into ".*" in \d+\.\d s/);
    const waiter = builder === a ? b : a;
    assert.doesNotMatch(waiter.stderr, /building SPIRE/);
    assert.match(waiter.stderr, /waiting for another process \(pid \d+\) to build SPIRE 1\.13\.3/);

    const calls = (await readFile(log, "utf8")).trim().split("\n");
    const moduleDir = join(cache, "module");
    const envPart = `${join(cache, "gomod")} ${join(cache, "go-build")} local ${moduleDir}`;
    assert.deepEqual(calls, [
      `get -tool github.com/spiffe/spire/cmd/spire-server@v1.13.3 | ${envPart}`,
      `get -tool github.com/spiffe/spire/cmd/spire-agent@v1.13.3 | ${envPart}`,
      `build -o ${cache}/bin.${calls[2].match(/bin\.(\d+)\.tmp/)?.[1]}.tmp/ github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent | ${envPart}`,
    ]);
    assert.match(await readFile(join(moduleDir, "go.mod"), "utf8"), /^module spiffe-authz\.local\/spire$/m);

    // Built: later runs neither build nor wait.
    const again = await runInstall(env);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stderr, "");
    assert.equal((await readFile(log, "utf8")).trim().split("\n").length, 3);
  });

  test("without Go the error says what is needed", async () => {
    const run = await runInstall({ PATH: emptyPath, SPIFFE_AUTHZ_SPIRE_CACHE: join(dir, "cache-nogo") });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /could not run "go": .*building SPIRE needs Go 1\.25\.3 or newer on PATH \(or set SPIRE_BIN_DIR/);
  });

  test("a failed build leaves no binaries behind and says which command failed", async () => {
    const goBin = join(dir, "go-fail");
    await mkdir(goBin);
    await script(join(goBin, "go"), `echo "go: github.com/spiffe/spire@v1.13.3: refused" >&2; exit 1`);
    const cache = join(dir, "cache-fail");
    const run = await runInstall({ PATH: goBin, SPIFFE_AUTHZ_SPIRE_CACHE: cache });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /"go get -tool github\.com\/spiffe\/spire\/cmd\/spire-server@v1\.13\.3" failed with exit code 1/);
    await assert.rejects(readFile(join(cache, "bin", "spire-server")));
    await assert.rejects(readFile(join(cache, "build.lock")));
  });

  test("a workload uid that cannot reach spire-agent runs a copy it can reach", { skip: process.getuid?.() !== 0 && "switching uids needs root" }, async () => {
    const real = await findSpire();
    const workload = workloadAs(40);
    const reachable = await tempDir("spire-reachable");
    await chmod(reachable, 0o755);
    try {
      // Behind a directory only root may enter, the workload's uid cannot execute it: it gets a copy.
      const hidden = join(dir, "hidden");
      await mkdir(hidden, { mode: 0o700 });
      await symlink(real.agent, join(hidden, "spire-agent"));
      const copy = await agentBinaryFor({ ...real, agent: join(hidden, "spire-agent") }, reachable, workload);
      assert.equal(copy, join(reachable, "spire-agent"));
      const { stderr } = await execFileAsync(copy, ["--version"], { uid: workload.uid, gid: workload.gid, cwd: "/" });
      assert.match(stderr, /1\.13\.3/);
      // A binary the uid can run is used where it is.
      assert.equal(await agentBinaryFor({ ...real, agent: copy }, join(dir, "unused"), workload), copy);
    } finally {
      await rm(reachable, { recursive: true, force: true });
    }
  });
});
