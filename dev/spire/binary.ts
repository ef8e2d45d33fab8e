/**
 * Finding SPIRE (`spire-server` and `spire-agent`), and building it on first use.
 *
 * Order: `SPIRE_BIN_DIR` (must hold both, executable), then both on PATH, then the project's own build in
 * `<repo>/.cache/spire/bin` (or `SPIFFE_AUTHZ_SPIRE_CACHE/bin`). The build is made from the Go modules when
 * missing: in a small module under the cache, `go get -tool github.com/spiffe/spire/cmd/spire-server@v1.13.3` and
 * the same for spire-agent, then `go build`. Only exact versions resolve through the Go module proxy here (`@latest`
 * is refused). The Go module and build caches stay under the same directory (`GOMODCACHE`, `GOCACHE`), so the
 * build touches nothing outside the project and a second build is quick. A lock file keeps two processes from
 * building at once (see `installOnce`).
 *
 * Building needs Go 1.25.3 or newer (SPIRE 1.13.3's go.mod) and a C compiler (SPIRE's SQLite datastore uses cgo).
 * On a 2-core machine a cold build takes about 5 minutes and writes about 230 MB + 90 MB of binaries and about
 * 4 GB of Go caches.
 */
import { execFile, spawn } from "node:child_process";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { isExecutable, onPath, repoRoot } from "../envoy/binary.ts";
import { installOnce } from "../envoy/lock.ts";

const execFileAsync = promisify(execFile);

/** The SPIRE release the project is tested with. */
export const spireVersion = "1.13.3";
export const spireModule = "github.com/spiffe/spire";
const commands = ["spire-server", "spire-agent"] as const;

/** How long a process waits for another one's build before giving up. */
const buildWaitMs = 30 * 60 * 1000;

export interface SpireBinaries {
  server: string;
  agent: string;
  /** Where they were found. */
  source: "SPIRE_BIN_DIR" | "PATH" | "build";
}

/** The directory of the project's SPIRE build and its Go caches: `SPIFFE_AUTHZ_SPIRE_CACHE` or `<repo>/.cache/spire`. */
export function spireCacheDir(): string {
  const override = process.env.SPIFFE_AUTHZ_SPIRE_CACHE;
  return override !== undefined && override !== "" ? resolve(override) : join(repoRoot, ".cache", "spire");
}

/** The environment `go` runs in for the build: caches under `cache`, no toolchain download. */
export function goBuildEnv(cache: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GOMODCACHE: join(cache, "gomod"),
    GOCACHE: join(cache, "go-build"),
    // A go.mod that asks for a newer Go would otherwise make go download a toolchain, which is not on any
    // registry this project may use: fail with go's own message instead.
    GOTOOLCHAIN: "local",
    // -modcacherw: the module cache is writable, so `rm -rf .cache` works without a chmod first.
    GOFLAGS: "-modcacherw -buildvcs=false",
    // SPIRE's SQLite datastore (mattn/go-sqlite3) needs cgo.
    CGO_ENABLED: "1",
  };
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    // go's progress goes to our stderr: stdout may be a machine-read stream.
    const child = spawn(command, args, { cwd, env, stdio: ["ignore", 2, 2] });
    child.once("error", (err) => {
      const hint =
        (err as NodeJS.ErrnoException).code === "ENOENT"
          ? `; building SPIRE needs Go ${goVersionNeeded} or newer on PATH (or set SPIRE_BIN_DIR to a directory ` +
            `holding spire-server and spire-agent ${spireVersion})`
          : "";
      reject(new Error(`could not run "${command}": ${err.message}${hint}`));
    });
    child.once("exit", (code, signal) => {
      if (code === 0) resolvePromise();
      else reject(new Error(`"${command} ${args.join(" ")}" failed with ${signal ?? `exit code ${code}`}`));
    });
  });
}

/** The Go release SPIRE 1.13.3's go.mod asks for. */
const goVersionNeeded = "1.25.3";

async function builtBinaries(bin: string): Promise<SpireBinaries | null> {
  const server = join(bin, "spire-server");
  const agent = join(bin, "spire-agent");
  return (await isExecutable(server)) && (await isExecutable(agent)) ? { server, agent, source: "build" } : null;
}

/**
 * Builds both commands into `<cache>/bin` unless they are there. The binaries are written to a scratch directory and
 * renamed into place, so a process that finds them never runs half a file.
 */
export async function buildSpire(cache: string = spireCacheDir(), log: (line: string) => void = stderrLine): Promise<SpireBinaries> {
  const bin = join(cache, "bin");
  return installOnce({
    lockPath: join(cache, "build.lock"),
    what: "SPIRE",
    waitMs: buildWaitMs,
    installed: () => builtBinaries(bin),
    onWait: (pid) => log(`spiffe-authz: waiting for another process${pid === null ? "" : ` (pid ${pid})`} to build SPIRE ${spireVersion} into "${bin}"`),
    install: async () => {
      const started = Date.now();
      log(
        `spiffe-authz: spire-server/spire-agent not found (SPIRE_BIN_DIR unset, not on PATH); building SPIRE ` +
          `${spireVersion} from Go modules into "${bin}" (first use only: about 5 minutes on 2 cores, 320 MB of ` +
          `binaries and about 4 GB of Go caches under "${cache}")`,
      );
      const moduleDir = join(cache, "module");
      await mkdir(moduleDir, { recursive: true });
      // A module of its own: `go get -tool` records both commands and every dependency SPIRE's go.mod pins there.
      await writeFile(join(moduleDir, "go.mod"), "module spiffe-authz.local/spire\n\ngo 1.25.3\n");
      await rm(join(moduleDir, "go.sum"), { force: true });
      const env = goBuildEnv(cache);
      for (const command of commands) {
        await run("go", ["get", "-tool", `${spireModule}/cmd/${command}@v${spireVersion}`], moduleDir, env);
      }
      const scratch = join(cache, `bin.${process.pid}.tmp`);
      await rm(scratch, { recursive: true, force: true });
      await mkdir(scratch, { recursive: true });
      try {
        await run("go", ["build", "-o", scratch + "/", ...commands.map((c) => `${spireModule}/cmd/${c}`)], moduleDir, env);
        await mkdir(bin, { recursive: true });
        for (const command of commands) await rename(join(scratch, command), join(bin, command));
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
      const built = await builtBinaries(bin);
      if (built === null) throw new Error(`go build finished but "${bin}" lacks spire-server or spire-agent`);
      log(`spiffe-authz: built SPIRE ${spireVersion} into "${bin}" in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      return built;
    },
  });
}

function stderrLine(line: string): void {
  process.stderr.write(line + "\n");
}

/** `spire-server --version` (SPIRE prints its version, e.g. `1.13.3`, on stderr). */
export async function spireBinaryVersion(binary: string): Promise<string> {
  const { stdout, stderr } = await execFileAsync(binary, ["--version"], { timeout: 60_000 });
  return (stdout + stderr).trim();
}

async function warnOnOtherVersion(binaries: SpireBinaries, log: (line: string) => void): Promise<void> {
  for (const binary of [binaries.server, binaries.agent]) {
    const version = await spireBinaryVersion(binary).catch((err: Error) => `unknown (${err.message})`);
    // A release says "1.13.3"; a build from the module without release ldflags "1.13.3-dev-unk".
    if (!version.split(/\s+/).some((word) => word === spireVersion || word.startsWith(`${spireVersion}-`))) {
      log(
        `spiffe-authz: warning: "${binary}" is not SPIRE ${spireVersion} (it says "${version}"); ` +
          `the configs and tests are written for ${spireVersion}`,
      );
    }
  }
}

let found: Promise<SpireBinaries> | undefined;

/**
 * Returns the paths of `spire-server` and `spire-agent`: from `SPIRE_BIN_DIR`, else PATH, else the project's
 * build, made when missing (with a message on stderr saying so and how long it took). Warns on stderr when a
 * binary found in `SPIRE_BIN_DIR` or PATH is not SPIRE 1.13.3. Throws when `SPIRE_BIN_DIR` is set but lacks an
 * executable, or the build fails.
 */
export function findSpire(log: (line: string) => void = stderrLine): Promise<SpireBinaries> {
  found ??= locate(log).catch((err: Error) => {
    found = undefined;
    throw err;
  });
  return found;
}

async function locate(log: (line: string) => void): Promise<SpireBinaries> {
  const dir = process.env.SPIRE_BIN_DIR;
  if (dir !== undefined && dir !== "") {
    const server = join(dir, "spire-server");
    const agent = join(dir, "spire-agent");
    for (const path of [server, agent]) {
      if (!(await isExecutable(path))) throw new Error(`SPIRE_BIN_DIR "${dir}" has no executable "${path}"`);
    }
    const binaries: SpireBinaries = { server, agent, source: "SPIRE_BIN_DIR" };
    await warnOnOtherVersion(binaries, log);
    return binaries;
  }
  const server = await onPath("spire-server");
  const agent = await onPath("spire-agent");
  if (server !== null && agent !== null) {
    const binaries: SpireBinaries = { server, agent, source: "PATH" };
    await warnOnOtherVersion(binaries, log);
    return binaries;
  }
  return buildSpire(spireCacheDir(), log);
}
