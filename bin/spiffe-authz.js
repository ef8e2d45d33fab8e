#!/usr/bin/env node
// The CLI is TypeScript run through tsx, so the package needs no build step for its TypeScript.
import { register } from "tsx/esm/api";
register();
await import("../src/cli/main.ts");
