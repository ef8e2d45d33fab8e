// `spiffe-authz image`: the filter module as an OCI image Istio can pull (src/oci/image.ts says which variants and
// why their digests are reproducible), written as an OCI image layout and/or pushed to a registry with the OCI
// distribution API. No Docker engine is involved.

import { readFileSync } from "node:fs";

import { formatFlags, parseArgs, UsageError } from "./args.ts";
import type { FlagSpec } from "./args.ts";
import type { CliIO } from "./io.ts";
import { DEFAULT_WASM_PATH } from "../host/index.ts";
import { buildWasmImage, WASM_IMAGE_VARIANTS } from "../oci/image.ts";
import type { WasmImage, WasmImageVariant } from "../oci/image.ts";
import { writeLayout } from "../oci/layout.ts";
import { formatImageReference, parseImageReference, ImageReferenceError } from "../oci/reference.ts";
import { RegistryClient, RegistryError } from "../oci/registry.ts";

export const IMAGE_FLAGS: FlagSpec[] = [
  { name: "wasm", kind: "value", metavar: "FILE", help: "the module (default: build/release.wasm of this package)" },
  { name: "variant", kind: "value", metavar: "V", help: "compat (default) | oci | both (compat as TAG, oci as TAG-oci)" },
  { name: "out", short: "o", kind: "value", metavar: "DIR", help: "write an OCI image layout to DIR" },
  { name: "push", kind: "value", metavar: "REF", help: "push to oci://REGISTRY/REPOSITORY:TAG" },
  { name: "plain-http", kind: "boolean", help: "talk to the registry over HTTP (default only for localhost/127.x)" },
  { name: "username", kind: "value", metavar: "USER", help: "registry user (password from SPIFFE_AUTHZ_REGISTRY_PASSWORD or --password-stdin)" },
  { name: "password-stdin", kind: "boolean", help: "read the registry password from standard input" },
  { name: "json", kind: "boolean", help: "print the result as JSON" },
  { name: "help", short: "h", kind: "boolean", help: "show this help" },
];

export const IMAGE_USAGE = `usage: spiffe-authz image [--wasm FILE] [--variant compat|oci|both] [--out DIR] [--push REF]
                         [--plain-http] [--username USER [--password-stdin]] [--json]

Packages the filter module as an OCI image following Istio's Wasm image specification: the compat variant (one
tar+gzip layer with plugin.wasm, annotation module.wasm.image/variant=compat) or the oci variant (a
runtime-config layer and an application/vnd.module.wasm.content.layer.v1+wasm layer). The image is a function of the
module's bytes alone, so its digest (WasmPlugin.spec.sha256) is the same on every machine.

flags:
${formatFlags(IMAGE_FLAGS)}
`;

export interface ImageResult {
  variant: WasmImageVariant;
  digest: string;
  /** for WasmPlugin.spec.sha256 */
  sha256: string;
  pushed: string | null;
}

/** Entry point of `spiffe-authz image`. 0 ok, 2 usage error, 1 registry or I/O failure. */
export async function runImage(argv: string[], io: CliIO): Promise<number> {
  try {
    const args = parseArgs(argv, IMAGE_FLAGS);
    if (args.flag("help")) {
      io.stdout.write(IMAGE_USAGE);
      return 0;
    }
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument "${args.positionals[0]}"`);
    const variantArg = args.value("variant") ?? "compat";
    if (variantArg !== "both" && !(WASM_IMAGE_VARIANTS as readonly string[]).includes(variantArg)) {
      throw new UsageError(`invalid --variant "${variantArg}": expected compat, oci or both`);
    }
    const variants: WasmImageVariant[] = variantArg === "both" ? ["compat", "oci"] : [variantArg as WasmImageVariant];
    const out = args.value("out");
    const pushArg = args.value("push");
    if (out === undefined && pushArg === undefined) throw new UsageError("nothing to do: give --out DIR, --push REF or both");
    let ref = null;
    if (pushArg !== undefined) {
      if (/^[a-z][a-z0-9+.-]*:\/\//i.test(pushArg) && !pushArg.startsWith("oci://")) {
        throw new UsageError(`--push "${pushArg}": an image reference is oci://REGISTRY/REPOSITORY:TAG`);
      }
      ref = parseImageReference(pushArg);
      if (ref.digest !== null) throw new UsageError(`--push "${pushArg}": push to a tag; the digest is the image's own`);
    }
    if (args.flag("password-stdin") && args.value("username") === undefined) throw new UsageError("--password-stdin needs --username");
    const wasmPath = args.value("wasm") ?? DEFAULT_WASM_PATH;
    let wasm: Buffer;
    try {
      wasm = readFileSync(wasmPath);
    } catch {
      throw new UsageError(`cannot read the module "${wasmPath}"${args.value("wasm") === undefined ? " (run npm run build:release)" : ""}`);
    }
    let images: WasmImage[];
    try {
      images = variants.map((variant) => buildWasmImage(wasm, { variant }));
    } catch (err) {
      throw new UsageError(`"${wasmPath}": ${(err as Error).message}`);
    }
    const tagOf = (variant: WasmImageVariant, base: string): string => (variants.length > 1 && variant === "oci" ? `${base}-oci` : base);
    if (out !== undefined) {
      await writeLayout(out, images.map((image) => ({ name: tagOf(image.variant, ref?.tag ?? "latest"), image })));
    }
    const results: ImageResult[] = [];
    let password = process.env.SPIFFE_AUTHZ_REGISTRY_PASSWORD;
    if (args.flag("password-stdin")) password = (await io.readStdin()).replace(/\r?\n$/, "");
    for (const image of images) {
      let pushed: string | null = null;
      if (ref !== null) {
        const target = { ...ref, tag: tagOf(image.variant, ref.tag!) };
        const client = new RegistryClient(target, {
          plainHttp: args.flag("plain-http") ? true : undefined,
          username: args.value("username"),
          password,
        });
        const digest = await client.push(image);
        pushed = formatImageReference({ ...target, digest });
      }
      results.push({ variant: image.variant, digest: image.digest, sha256: image.digest.slice("sha256:".length), pushed });
    }
    if (args.flag("json")) {
      io.stdout.write(JSON.stringify({ module: wasmPath, out: out ?? null, images: results }) + "\n");
      return 0;
    }
    for (const r of results) {
      io.stdout.write(`${r.variant.padEnd(6)} ${r.digest}${r.pushed !== null ? `  pushed ${r.pushed}` : ""}\n`);
    }
    if (out !== undefined) io.stdout.write(`wrote the OCI image layout ${out}\n`);
    const first = results[0];
    if (first.pushed !== null) {
      io.stdout.write(`next: spiffe-authz compile POLICY... --emit wasmplugin --label app=NAME --wasm-url ${first.pushed.replace(/@sha256:.*$/, "")} --sha256 ${first.sha256}\n`);
    }
    return 0;
  } catch (err) {
    if (err instanceof UsageError || err instanceof ImageReferenceError) {
      io.stderr.write(`spiffe-authz image: ${err.message}\nrun "spiffe-authz image --help" for usage\n`);
      return 2;
    }
    if (err instanceof RegistryError) {
      io.stderr.write(`spiffe-authz image: ${err.message}\n`);
      return 1;
    }
    io.stderr.write(`spiffe-authz image: ${(err as Error).message}\n`);
    return 1;
  }
}
