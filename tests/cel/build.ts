/**
 * Builds build/cel-harness.wasm from tests/cel/harness.ts (the engine's CEL VM behind a small test ABI) when
 * it is missing or older than its sources. Safe to call from concurrent test processes: each compiles to a
 * private temporary file and renames it into place.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const HARNESS_WASM = path.join(ROOT, "build/cel-harness.wasm");

function newestSource(): number {
  const dirs = [path.join(ROOT, "assembly/engine/cel")];
  let newest = fs.statSync(path.join(ROOT, "tests/cel/harness.ts")).mtimeMs;
  newest = Math.max(newest, fs.statSync(path.join(ROOT, "tests/cel/harness.asconfig.json")).mtimeMs);
  for (const d of dirs) {
    for (const f of fs.readdirSync(d)) if (f.endsWith(".ts")) newest = Math.max(newest, fs.statSync(path.join(d, f)).mtimeMs);
  }
  return newest;
}

/** Returns the harness .wasm path, compiling it first when needed. */
export async function buildHarness(): Promise<string> {
  if (fs.existsSync(HARNESS_WASM) && fs.statSync(HARNESS_WASM).mtimeMs >= newestSource()) return HARNESS_WASM;
  fs.mkdirSync(path.dirname(HARNESS_WASM), { recursive: true });
  const tmp = `${HARNESS_WASM}.${process.pid}.tmp`;
  let stderr = "";
  // Imported only when compiling: binaryen installs a process-wide uncaughtException hook that prints its
  // whole source on any later failure.
  const { default: asc } = await import("assemblyscript/asc");
  const { error } = await asc.main(
    ["tests/cel/harness.ts", "--config", "tests/cel/harness.asconfig.json", "--outFile", path.relative(ROOT, tmp), "--baseDir", ROOT],
    { stderr: { write: (s: string | Uint8Array) => { stderr += String(s); return true; } } as never },
  );
  if (error) throw new Error(`cannot compile the cel harness: ${error.message}\n${stderr}`);
  fs.renameSync(tmp, HARNESS_WASM);
  return HARNESS_WASM;
}
