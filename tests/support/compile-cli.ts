/**
 * Compiling through the real `spiffe-authz compile` command, as a user would (and as the README of an example
 * says): policies and `.proto` files in, the plugin configuration string out.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { parse } from "yaml";
import { repoRoot } from "../../dev/envoy/binary.ts";

const execFileAsync = promisify(execFile);

export interface CliCompileOptions {
  /** `--proto FILE` for each (message types of conditions that read `request.grpc.message`). */
  protos?: string[];
  /** More arguments, e.g. `["--namespace", "shop"]`. */
  extraArgs?: string[];
  /** `--emit` (default `table`). */
  emit?: "table" | "envoy" | "wasmplugin" | "trafficextension";
}

/**
 * Runs `bin/spiffe-authz.js compile POLICY... [--proto FILE]... --emit table` from the repository root and returns
 * the plugin configuration (`{"table":"..."}`), or with `emit` what that emitter printed. A non-zero exit throws
 * with the command's diagnostics.
 */
export async function compileWithCli(policies: string[], options: CliCompileOptions = {}): Promise<string> {
  const args = [join(repoRoot, "bin", "spiffe-authz.js"), "compile", ...policies];
  for (const proto of options.protos ?? []) args.push("--proto", proto);
  args.push(...(options.extraArgs ?? []), "--emit", options.emit ?? "table");
  try {
    const { stdout } = await execFileAsync(process.execPath, args, { cwd: repoRoot, timeout: 120_000 });
    return stdout.trim();
  } catch (err) {
    const e = err as { code?: number; stderr?: string; message: string };
    throw new Error(`spiffe-authz compile ${policies.join(" ")} failed (exit ${e.code}):\n${e.stderr ?? e.message}`);
  }
}

/**
 * The plugin configuration an Istio WasmPlugin made by `spiffe-authz compile --emit wasmplugin` hands the filter:
 * its `pluginConfig` as JSON (istiod marshals the Struct to a JSON string, pilot/pkg/model/extensions.go; the filter
 * takes the keys in any order).
 */
export async function wasmPluginConfigWithCli(policies: string[], options: Omit<CliCompileOptions, "emit"> = {}): Promise<string> {
  // A WasmPlugin needs a module URL and a workload selector; neither changes pluginConfig.
  const extraArgs = [...(options.extraArgs ?? []), "--label", "app=under-test", "--wasm-url", "oci://registry.example.com/spiffe-authz:0.1.0"];
  const manifest = parse(await compileWithCli(policies, { ...options, extraArgs, emit: "wasmplugin" })) as { spec: { pluginConfig: unknown } };
  return JSON.stringify(manifest.spec.pluginConfig);
}
