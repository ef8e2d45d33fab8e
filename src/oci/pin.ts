/**
 * The module URL and checksum of an emitted WasmPlugin / TrafficExtension, checked and pinned the way istio-agent
 * verifies them (pkg/wasm/cache.go): for `oci://` the checksum is the image's manifest digest, for `http(s)://` the
 * sha256 of the module's bytes; `file://` is read by Envoy directly (the checksum is not checked there, it documents
 * which module was meant).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { buildWasmImage } from "./image.ts";
import type { WasmImageVariant } from "./image.ts";
import { readLayoutIndex } from "./layout.ts";
import { parseImageReference, ImageReferenceError } from "./reference.ts";

export class PinError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PinError";
  }
}

export interface PinOptions {
  /** `--wasm-url` */
  url: string;
  /** `--sha256` (64 hex digits, optionally `sha256:`-prefixed) */
  sha256?: string;
  /** `--image DIR`: an OCI image layout written by `spiffe-authz image --out DIR` */
  imageDir?: string;
  /** the module whose image (oci) or bytes (http, file) give the checksum when nothing else does */
  wasmPath: string;
  /** the image variant built from the module for an oci URL (default compat, what `spiffe-authz image` pushes) */
  variant?: WasmImageVariant;
}

export interface Pin {
  /** the URL to emit */
  url: string;
  /** 64 lower-case hex digits */
  sha256: string;
  /** where the checksum came from, for a note on stderr */
  source: string;
}

/** Checks a module URL; returns its scheme. Throws PinError with what is wrong. */
export function checkWasmUrl(url: string): "oci" | "http" | "https" | "file" {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    throw new PinError(`invalid --wasm-url "${url}": give the scheme, e.g. oci://registry.example.com/spiffe-authz:0.1.0 (or https://, http://, file://)`);
  }
  if (scheme === "oci") {
    try {
      parseImageReference(url);
    } catch (err) {
      if (err instanceof ImageReferenceError) throw new PinError(`invalid --wasm-url: ${err.message}`);
      throw err;
    }
    return "oci";
  }
  if (scheme === "http" || scheme === "https") {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new PinError(`invalid --wasm-url "${url}": not a URL`);
    }
    if (u.hostname === "") throw new PinError(`invalid --wasm-url "${url}": no host`);
    if (u.username !== "" || u.password !== "") throw new PinError(`invalid --wasm-url "${url}": credentials do not belong in the URL (use imagePullSecret)`);
    return scheme;
  }
  if (scheme === "file") {
    if (!url.startsWith("file:///") || url.length <= "file:///".length) {
      throw new PinError(`invalid --wasm-url "${url}": a file URL is file:///absolute/path/on/the/proxy.wasm`);
    }
    return "file";
  }
  throw new PinError(`invalid --wasm-url "${url}": scheme "${scheme}" is not one Istio fetches (oci, https, http, file)`);
}

function normalizeSha256(text: string, what: string): string {
  const hex = text.startsWith("sha256:") ? text.slice("sha256:".length) : text;
  if (!/^[a-f0-9]{64}$/.test(hex)) throw new PinError(`invalid ${what} "${text}": expected 64 lower-case hex digits`);
  return hex;
}

function readModule(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch {
    throw new PinError(`cannot read the module "${path}" to compute the checksum (build it, or pass --sha256 or --image DIR)`);
  }
}

/** Resolves the checksum to pin for `options.url`. */
export async function resolvePin(options: PinOptions): Promise<Pin> {
  const scheme = checkWasmUrl(options.url);
  const given = options.sha256 !== undefined ? normalizeSha256(options.sha256, "--sha256") : undefined;
  if (scheme === "oci") {
    const ref = parseImageReference(options.url);
    if (ref.digest !== null) {
      const inUrl = ref.digest.slice("sha256:".length);
      if (given !== undefined && given !== inUrl) throw new PinError(`--sha256 ${given} contradicts the digest in --wasm-url (${inUrl})`);
      return { url: options.url, sha256: inUrl, source: "the digest in --wasm-url" };
    }
    if (given !== undefined) return { url: options.url, sha256: given, source: "--sha256" };
    if (options.imageDir !== undefined) {
      const entries = await readLayoutIndex(options.imageDir).catch((err: Error) => {
        throw new PinError(err.message);
      });
      const byTag = entries.filter((e) => e.name === ref.tag);
      const chosen = byTag.length === 1 ? byTag[0] : entries.length === 1 ? entries[0] : undefined;
      if (chosen === undefined) {
        throw new PinError(`the image layout "${options.imageDir}" has no single image for tag "${ref.tag}" (it has: ${entries.map((e) => e.name ?? "?").join(", ")})`);
      }
      return { url: options.url, sha256: normalizeSha256(chosen.digest, "digest in the image layout"), source: `the image layout ${options.imageDir}` };
    }
    const variant = options.variant ?? "compat";
    const image = buildWasmImage(readModule(options.wasmPath), { variant });
    return {
      url: options.url,
      sha256: image.digest.slice("sha256:".length),
      source: `the ${variant} image of ${options.wasmPath} (what \`spiffe-authz image\` pushes from it)`,
    };
  }
  if (options.imageDir !== undefined) throw new PinError(`--image is for oci:// URLs; "${options.url}" serves the module itself`);
  if (given !== undefined) return { url: options.url, sha256: given, source: "--sha256" };
  const hex = createHash("sha256").update(readModule(options.wasmPath)).digest("hex");
  return { url: options.url, sha256: hex, source: `the sha256 of ${options.wasmPath}` };
}
