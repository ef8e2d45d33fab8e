// The `spiffe-authz` command: parses the subcommand and dispatches to one file per subcommand.
// Exit codes: 0 ok, 2 usage or policy error, 1 internal error.

import { readFileSync, realpathSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { PACKAGE_ROOT } from "../paths.ts";
import { processIO } from "./io.ts";
import { runCheck } from "./check.ts";
import type { CliIO } from "./io.ts";

export const USAGE = `usage: spiffe-authz <command> [flags]

commands:
  compile POLICY... [--emit table|envoy|ecds|wasmplugin|trafficextension|rbac] [-o FILE]
                 compile policies into the filter's plugin configuration or Envoy / Istio resources
  check --policy FILE [request flags] | --batch FILE.jsonl
                 run requests through the real filter and show what it decides and why
  test DIR|FILE... [--junit FILE]
                 run policy tests (*.test.yaml) on the real filter; report failures and rules no test exercised
  diff OLD NEW --requests FILE
                 replay requests (JSONL or an Envoy access log) against two policies; show what changes and why
  image [--out DIR] [--push REF]
                 package the filter as an OCI image Istio can pull (Wasm image spec) and push it to a registry
  cert --id SPIFFE_ID [--out DIR]
                 make a client certificate for a SPIFFE ID from the demo CA (to try a policy with curl)
  help [command] show help
  version        print the version

run "spiffe-authz <command> --help" for a command's flags
`;

export function version(): string {
  const pkg = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string };
  return pkg.version;
}

async function runCompileCommand(argv: string[]): Promise<number> {
  // Loaded on demand: `check` should not pay for (or depend on) the compile command's imports.
  const { runCompile } = await import("./compile.ts");
  return runCompile(argv);
}

/** Subcommands loaded on demand, each from its own file. */
const LAZY: Record<string, () => Promise<(argv: string[], io: CliIO) => Promise<number>>> = {
  test: async () => (await import("./test.ts")).runTest,
  diff: async () => (await import("./diff.ts")).runDiff,
  image: async () => (await import("./image.ts")).runImage,
  cert: async () => (await import("./cert.ts")).runCert,
};

async function runLazy(command: string, argv: string[], io: CliIO): Promise<number> {
  return (await LAZY[command]())(argv, io);
}

/** Runs the CLI with `argv` (without node and the script) and returns the exit code. */
export async function main(argv: string[], io: CliIO = processIO()): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
        io.stderr.write(USAGE);
        return 2;
      case "-h":
      case "--help":
        io.stdout.write(USAGE);
        return 0;
      case "help": {
        const topic = rest[0];
        if (topic === undefined) {
          io.stdout.write(USAGE);
          return 0;
        }
        if (topic === "check") return runCheck(["--help"], io);
        if (topic === "compile") return runCompileCommand(["--help"]);
        if (topic in LAZY) return runLazy(topic, ["--help"], io);
        io.stderr.write(`spiffe-authz: no help for unknown command "${topic}"\n${USAGE}`);
        return 2;
      }
      case "-V":
      case "--version":
      case "version":
        io.stdout.write(`spiffe-authz ${version()}\n`);
        return 0;
      case "check":
        return await runCheck(rest, io);
      case "compile":
        return await runCompileCommand(rest);
      case "test":
      case "diff":
      case "image":
      case "cert":
        return await runLazy(command, rest, io);
      default:
        io.stderr.write(`spiffe-authz: unknown command "${command}"\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    const msg = err instanceof Error ? err.stack ?? err.message : String(err);
    io.stderr.write(`spiffe-authz: internal error: ${msg}\n`);
    return 1;
  }
}

function invokedAsCli(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  let resolved = entry;
  try {
    resolved = realpathSync(entry);
  } catch {
    // keep the path as given
  }
  // bin/spiffe-authz.js (possibly through a node_modules/.bin symlink) imports this module; so may tsx directly.
  return resolved === fileURLToPath(import.meta.url) || /[\\/]spiffe-authz(\.js)?$/.test(resolved);
}

if (invokedAsCli()) {
  // A closed pipe (`| head`) is not an error worth a stack trace.
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw err;
  });
  process.exitCode = await main(process.argv.slice(2));
}
