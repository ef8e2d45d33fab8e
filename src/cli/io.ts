// What every command shares with its caller: where it writes and reads (tests pass their own), and the filter
// module it runs.

import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";

import { InternalCheckError } from "../check/checker.ts";
import { DEFAULT_WASM_PATH, PACKAGE_ROOT } from "../paths.ts";
import { UsageError } from "./args.ts";

/** Where the CLI writes; tests pass their own. */
export interface CliIO {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  /** reads all of standard input (for `--batch -`) */
  readStdin(): Promise<string>;
}

export function processIO(): CliIO {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    readStdin: async () => {
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(c as Buffer);
      return Buffer.concat(chunks).toString("utf8");
    },
  };
}

/** Builds build/release.wasm with `npm run build:release` when it is missing (what `check` runs). */
export function ensureWasm(wasmPath: string, io: CliIO): void {
  if (existsSync(wasmPath)) return;
  if (path.resolve(wasmPath) !== DEFAULT_WASM_PATH) throw new UsageError(`no such module "${wasmPath}"`);
  io.stderr.write("spiffe-authz: build/release.wasm is missing; building it with `npm run build:release`\n");
  const r = spawnSync("npm", ["run", "--silent", "build:release"], { cwd: PACKAGE_ROOT, encoding: "utf8" });
  if (r.status !== 0 || !existsSync(wasmPath)) {
    throw new InternalCheckError(`npm run build:release failed:\n${r.stdout ?? ""}${r.stderr ?? ""}`);
  }
}
