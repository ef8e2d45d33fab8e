// `spiffe-authz compile`: policies in, the table (or a manifest carrying it) out.
//
// Exit codes: 0 compiled; 2 usage error or policy errors (printed as `file:line:col: message`); 1 anything else
// (an output file that cannot be written, an emitted manifest the CRD rejects: a bug).

import { renameSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { compileFiles, PolicyError, type CompileResult } from "../compiler/index.ts";
import { EMIT_KINDS, EmitError, emit, emitOptions, IMAGE_PULL_POLICIES, type EmitKind, type ImagePullPolicy } from "../compiler/emit/index.ts";
import { PinError, resolvePin } from "../oci/pin.ts";
import { validateIstioManifest } from "../compiler/emit/validate.ts";
import { RbacEmitError } from "../compiler/emit/rbac.ts";
import { DNS1123_LABEL, DNS1123_SUBDOMAIN } from "../policy/metadata.ts";
import { formatDiagnostic } from "../policy/diagnostics.ts";
import { DEFAULT_ROOT_NAMESPACE } from "../policy/select.ts";
import { formatFlags, parseArgs, UsageError, type FlagSpec } from "./args.ts";

export const compileFlags: FlagSpec[] = [
  { name: "emit", kind: "value", metavar: "KIND", help: `output: ${EMIT_KINDS.join(" | ")} (default table)` },
  { name: "output", short: "o", kind: "value", metavar: "FILE", help: "write to FILE instead of standard output" },
  { name: "namespace", kind: "value", metavar: "NS", help: "compile for a workload in NS: keep the policies istiod would apply" },
  { name: "label", kind: "repeat", metavar: "K=V", help: "a label of the workload (also the selector of emitted Istio resources)" },
  { name: "root-namespace", kind: "value", metavar: "NS", help: `Istio's root namespace, whose policies apply mesh-wide (default ${DEFAULT_ROOT_NAMESPACE})` },
  { name: "wasm", kind: "value", metavar: "PATH", help: "the filter module for --emit envoy (default: this checkout's build/release.wasm)" },
  { name: "wasm-url", kind: "value", metavar: "URL", help: "where Istio pulls the filter (--emit wasmplugin|trafficextension): oci://REGISTRY/REPO:TAG, https://..., file:///..." },
  { name: "sha256", kind: "value", metavar: "HEX", help: "the checksum to pin (default: the digest of the image built from --wasm, or of the module for http/file URLs)" },
  { name: "image", kind: "value", metavar: "DIR", help: "take the checksum from this OCI image layout (spiffe-authz image --out DIR)" },
  { name: "image-pull-policy", kind: "value", metavar: "P", help: "IfNotPresent (default) | Always" },
  { name: "all-workloads", kind: "boolean", help: "emit an Istio resource without a selector (every workload of the namespace)" },
  { name: "name", kind: "value", metavar: "NAME", help: "metadata.name of emitted Istio resources (default spiffe-authz)" },
  { name: "proto", kind: "repeat", metavar: "FILE", help: ".proto file whose messages conditions read as request.grpc.message" },
  { name: "proto-path", kind: "repeat", metavar: "DIR", help: "directory .proto imports are resolved against" },
  { name: "trust-domain", kind: "value", metavar: "TD", help: "the mesh's trust domain for Istio principals (meshConfig.trustDomain; default cluster.local)" },
  { name: "trust-domain-alias", kind: "repeat", metavar: "TD", help: "a trust-domain alias (meshConfig.trustDomainAliases): Istio principals match in every one" },
  { name: "help", short: "h", kind: "boolean", help: "show this help" },
];

export const compileUsage = `usage: spiffe-authz compile POLICY... [--emit ${EMIT_KINDS.join("|")}] [-o FILE]
                            [--namespace NS] [--label K=V]... [--all-workloads] [--root-namespace NS]
                            [--wasm PATH] [--wasm-url URL] [--sha256 HEX | --image DIR] [--image-pull-policy P]
                            [--name NAME]
                            [--proto FILE]... [--proto-path DIR]...
                            [--trust-domain TD] [--trust-domain-alias TD]...

Compiles AuthzPolicy (spiffe-authz.dev/v1) and Istio AuthorizationPolicy (security.istio.io/v1, v1beta1)
documents into a policy table. Errors are printed as file:line:col: message. -o replaces FILE atomically (a
temporary file renamed over it), so a watched ECDS or LDS file is never read half-written.

${formatFlags(compileFlags)}`;

/** Parses `k=v` labels (Kubernetes label syntax: an optional DNS prefix and "/", a name, a value). */
function parseLabels(values: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  const name = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$/;
  for (const raw of values) {
    const eq = raw.indexOf("=");
    if (eq <= 0) throw new UsageError(`invalid --label ${JSON.stringify(raw)}: write key=value, e.g. --label app=orders`);
    const key = raw.slice(0, eq);
    const value = raw.slice(eq + 1);
    const slash = key.lastIndexOf("/");
    const prefix = slash >= 0 ? key.slice(0, slash) : "";
    const keyName = slash >= 0 ? key.slice(slash + 1) : key;
    if ((slash >= 0 && (!DNS1123_SUBDOMAIN.test(prefix) || prefix.length > 253)) || !name.test(keyName)) {
      throw new UsageError(`invalid --label key ${JSON.stringify(key)}: use [prefix/]name with letters, digits, "-", "_", "." (63 characters at most)`);
    }
    if (value !== "" && !name.test(value)) {
      throw new UsageError(`invalid --label value ${JSON.stringify(value)}: use letters, digits, "-", "_", "." (63 characters at most)`);
    }
    if (key in out && out[key] !== value) throw new UsageError(`--label ${JSON.stringify(key)} given twice with different values`);
    out[key] = value;
  }
  return out;
}

function checkNamespace(flag: string, ns: string | undefined): void {
  if (ns !== undefined && (ns.length > 63 || !DNS1123_LABEL.test(ns))) {
    throw new UsageError(`invalid --${flag} ${JSON.stringify(ns)}: a namespace is lower-case letters, digits and "-" (63 characters at most)`);
  }
}

/** Runs `spiffe-authz compile` with `argv` (the arguments after `compile`). Returns the exit code. */
export async function runCompile(argv: string[]): Promise<number> {
  let args: ReturnType<typeof parseArgs>;
  let kind: EmitKind;
  let labels: Record<string, string>;
  try {
    args = parseArgs(argv, compileFlags);
    if (args.flag("help")) {
      process.stdout.write(compileUsage + "\n");
      return 0;
    }
    const emitArg = args.value("emit") ?? "table";
    if (!(EMIT_KINDS as readonly string[]).includes(emitArg)) {
      throw new UsageError(`invalid --emit ${JSON.stringify(emitArg)}: expected one of ${EMIT_KINDS.join(", ")}`);
    }
    kind = emitArg as EmitKind;
    if (args.positionals.length === 0) throw new UsageError("no policy files given");
    labels = parseLabels(args.all("label"));
    checkNamespace("namespace", args.value("namespace"));
    checkNamespace("root-namespace", args.value("root-namespace"));
    const name = args.value("name");
    if (name !== undefined && (name.length > 253 || !DNS1123_SUBDOMAIN.test(name))) {
      throw new UsageError(`invalid --name ${JSON.stringify(name)}: a Kubernetes name is lower-case letters, digits, "-" and "."`);
    }
    if (args.positionals.includes("-")) throw new UsageError("reading policies from standard input is not supported; give file names");
    const policy = args.value("image-pull-policy");
    if (policy !== undefined && !(IMAGE_PULL_POLICIES as readonly string[]).includes(policy)) {
      throw new UsageError(`invalid --image-pull-policy ${JSON.stringify(policy)}: expected ${IMAGE_PULL_POLICIES.join(" or ")}`);
    }
    const istio = kind === "wasmplugin" || kind === "trafficextension";
    for (const f of ["wasm-url", "sha256", "image", "image-pull-policy", "all-workloads"]) {
      if (!istio && args.has(f)) throw new UsageError(`--${f} is for --emit wasmplugin or trafficextension`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`spiffe-authz compile: ${e.message}\n${compileUsage}\n`);
      return 2;
    }
    throw e;
  }

  let result: CompileResult;
  try {
    result = compileFiles(args.positionals, {
      namespace: args.value("namespace"),
      labels,
      rootNamespace: args.value("root-namespace"),
    }, {
      protos: args.all("proto"), protoPaths: args.all("proto-path"),
      trustDomain: args.value("trust-domain"), trustDomainAliases: args.all("trust-domain-alias"),
    });
  } catch (e) {
    if (e instanceof PolicyError) {
      for (const d of e.diagnostics) process.stderr.write(formatDiagnostic(d) + "\n");
      const n = e.diagnostics.length;
      process.stderr.write(`spiffe-authz compile: ${n} error${n === 1 ? "" : "s"}${n >= 20 ? " (stopped at 20)" : ""}\n`);
      return 2;
    }
    throw e;
  }
  for (const w of result.warnings) process.stderr.write(`${w.file}:${w.line}:${w.col}: warning: ${w.message}\n`);

  const options = emitOptions({
    wasmPath: args.value("wasm"),
    wasmUrl: args.value("wasm-url"),
    imagePullPolicy: args.value("image-pull-policy") as ImagePullPolicy | undefined,
    allWorkloads: args.flag("all-workloads"),
    name: args.value("name"),
    namespace: args.value("namespace"),
    labels,
  });
  let text: string;
  try {
    if ((kind === "wasmplugin" || kind === "trafficextension") && options.wasmUrl !== undefined) {
      const pin = await resolvePin({ url: options.wasmUrl, sha256: args.value("sha256"), imageDir: args.value("image"), wasmPath: options.wasmPath });
      options.sha256 = pin.sha256;
      process.stderr.write(`spiffe-authz compile: sha256 ${pin.sha256} pinned from ${pin.source}\n`);
    }
    text = emit(kind, result, options);
  } catch (e) {
    if (e instanceof EmitError || e instanceof PinError) {
      process.stderr.write(`spiffe-authz compile: ${e.message}\n`);
      return 2;
    }
    // --emit rbac|rbac-matcher: a policy Envoy's RBAC filter cannot express (CEL conditions, schemas, ...; for the
    // indexed form also patterns instead of exact IDs, header rules) is the user's input.
    if (e instanceof RbacEmitError) {
      for (const p of e.problems) process.stderr.write(`spiffe-authz compile: ${p}\n`);
      const form = kind === "rbac-matcher" ? "Envoy RBAC's indexed matcher" : "Envoy RBAC";
      process.stderr.write(`spiffe-authz compile: the policy cannot be expressed as ${form} (--emit ${kind})\n`);
      return 2;
    }
    throw e;
  }
  if (kind === "wasmplugin" || kind === "trafficextension") {
    // Every emitted Istio manifest must pass its CRD; a failure here is a bug (or a bad --wasm-url), not user input.
    const problems = validateIstioManifest(text, "<emitted>");
    if (problems.length) {
      for (const p of problems) process.stderr.write(p + "\n");
      process.stderr.write("spiffe-authz compile: the emitted manifest does not pass its CRD\n");
      return 1;
    }
  }
  const out = args.value("output");
  if (out === undefined || out === "-") {
    process.stdout.write(text);
  } else {
    try {
      // Atomically: Envoy watches ECDS and LDS files for a rename and must never read one half-written.
      const temp = join(dirname(out), `.${basename(out)}.${process.pid}.tmp`);
      writeFileSync(temp, text);
      renameSync(temp, out);
    } catch (e) {
      process.stderr.write(`spiffe-authz compile: cannot write ${JSON.stringify(out)}: ${(e as Error).message}\n`);
      return 1;
    }
    process.stderr.write(`wrote ${out}: ${result.ruleCount} rule(s), table ${result.tableHash}, configuration ${result.config.length} bytes\n`);
  }
  return 0;
}
