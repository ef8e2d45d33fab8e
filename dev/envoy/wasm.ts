/**
 * The filter Envoy loads: `build/release.wasm`, built from `assembly/` when missing or older than its sources.
 */
import { spawn } from "node:child_process";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { DEFAULT_WASM_PATH, PACKAGE_ROOT as repoRoot } from "../../src/paths.ts";

/** Absolute path of the release build. */
export const releaseWasm = DEFAULT_WASM_PATH;

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, await newestMtime(path));
    else if (entry.isFile()) newest = Math.max(newest, (await stat(path)).mtimeMs);
  }
  return newest;
}

/** Why `build/release.wasm` needs building, or null when it is up to date. */
export async function wasmBuildReason(): Promise<string | null> {
  const built = await stat(releaseWasm).catch(() => null);
  if (built === null) return "build/release.wasm is missing";
  const sources = Math.max(
    await newestMtime(join(repoRoot, "assembly")),
    (await stat(join(repoRoot, "asconfig.json"))).mtimeMs,
  );
  return sources > built.mtimeMs ? "assembly/ changed since build/release.wasm was built" : null;
}

/**
 * Builds `build/release.wasm` (the `release` target of asconfig.json) when missing or stale and returns its path.
 * asc writes to a temporary file that is then renamed, so an Envoy starting at the same moment never reads half a
 * module.
 */
export async function ensureWasm(log: (message: string) => void = (m) => process.stderr.write(m + "\n")): Promise<string> {
  const reason = await wasmBuildReason();
  if (reason === null) return releaseWasm;
  const started = Date.now();
  log(`spiffe-authz: ${reason}; building it (asc --target release)`);
  await mkdir(join(repoRoot, "build"), { recursive: true });
  const temp = join(repoRoot, "build", `.release.${process.pid}.wasm`);
  const asc = join(repoRoot, "node_modules", "assemblyscript", "bin", "asc.js");
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, [asc, "assembly/index.ts", "--target", "release", "--outFile", temp], {
      cwd: repoRoot,
      stdio: ["ignore", 2, 2],
    });
    child.once("error", reject);
    child.once("exit", (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`building build/release.wasm failed (${signal ?? `exit code ${code}`})`)),
    );
  });
  try {
    await rename(temp, releaseWasm);
  } finally {
    await rm(temp, { force: true });
  }
  log(`spiffe-authz: built build/release.wasm in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return releaseWasm;
}
