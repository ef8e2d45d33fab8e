// Where the project's own files are, from this module's place in the tree: the same in a clone and in an installed
// package (`npm pack` keeps the layout: package.json, src/, schemas/ and build/release.wasm under one root).

import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The package (repository) root: the directory of package.json. */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** The shipped filter, `npm run build:release`'s output: what Envoy loads and the default `--wasm` of the CLI. */
export const DEFAULT_WASM_PATH = join(PACKAGE_ROOT, "build", "release.wasm");

/** The JSON schemas of our policy format and the Istio CRDs. */
export const SCHEMAS_DIR = join(PACKAGE_ROOT, "schemas");
