// The shipped filter for host tests: build/release.wasm, built with `npm run build:release` when missing.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

import { DEFAULT_WASM_PATH } from "../../../src/host/index.ts";
import { ROOT } from "./fixture.ts";

export function requireReleaseWasm(): string {
  if (!existsSync(DEFAULT_WASM_PATH)) {
    const r = spawnSync("npm", ["run", "--silent", "build:release"], { cwd: ROOT, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`npm run build:release failed:\n${r.stdout}${r.stderr}`);
  }
  return DEFAULT_WASM_PATH;
}
