// Builds the AssemblyScript test module tests/host/fixtures/echo.ts into build/fixtures/echo.wasm (once,
// when the source is newer), safely when several test processes race: each compiles to its own file and
// renames it into place.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, renameSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const SOURCE = path.join(ROOT, "tests/host/fixtures/echo.ts");
const CONFIG = path.join(ROOT, "tests/host/fixtures/asconfig.json");
export const FIXTURE_WASM = path.join(ROOT, "build/fixtures/echo.wasm");

export function buildFixture(): string {
  const fresh = existsSync(FIXTURE_WASM)
    && statSync(FIXTURE_WASM).mtimeMs >= Math.max(statSync(SOURCE).mtimeMs, statSync(CONFIG).mtimeMs);
  if (fresh) return FIXTURE_WASM;
  mkdirSync(path.dirname(FIXTURE_WASM), { recursive: true });
  const tmp = `${FIXTURE_WASM}.${process.pid}.tmp`;
  const asc = path.join(ROOT, "node_modules/.bin/asc");
  // --config points at the fixture's own asconfig, so the project's (abort=abort_proc_exit) does not apply.
  const r = spawnSync(asc, [SOURCE, "--config", CONFIG, "--target", "fixture", "--outFile", tmp], {
    cwd: ROOT, encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`asc failed to build the host fixture:\n${r.stdout}${r.stderr}`);
  renameSync(tmp, FIXTURE_WASM);
  return FIXTURE_WASM;
}
