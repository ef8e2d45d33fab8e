/**
 * The filter as an OCI image Istio can pull, following the Wasm image specification that istio-agent implements
 * (pkg/wasm/imagefetcher.go; solo-io/wasm spec/spec.md and spec/spec-compat.md). Two variants:
 *
 * - `compat` (the default): one `application/vnd.oci.image.layer.v1.tar+gzip` layer holding `plugin.wasm` (and
 *   `runtime-config.json`), a standard OCI image config, and the manifest annotation
 *   `module.wasm.image/variant: compat`. Any registry and any image tool (crane, docker, skopeo) handles it; Istio
 *   tries this variant first.
 * - `oci`: the Wasm artifact variant, exactly two layers as istio-agent requires: the runtime config
 *   (`application/vnd.module.wasm.config.v1+json`, also the manifest's config) and the module itself, uncompressed
 *   (`application/vnd.module.wasm.content.layer.v1+wasm`).
 *
 * Images are built byte for byte from the module alone: the tar entries have fixed owners, modes and times, and the
 * gzip stream uses stored (uncompressed) deflate blocks with a fixed header, because zlib's compressed output differs
 * between zlib versions. So the manifest digest, which Istio verifies against `WasmPlugin.spec.sha256`, can be
 * computed from `build/release.wasm` on any machine (`compile --emit wasmplugin` does) and equals the pushed image's.
 */
import { createHash } from "node:crypto";

export type WasmImageVariant = "compat" | "oci";
export const WASM_IMAGE_VARIANTS: readonly WasmImageVariant[] = ["compat", "oci"];

export const MEDIA_TYPES = {
  manifest: "application/vnd.oci.image.manifest.v1+json",
  imageConfig: "application/vnd.oci.image.config.v1+json",
  layerTarGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  wasmConfig: "application/vnd.module.wasm.config.v1+json",
  wasmContent: "application/vnd.module.wasm.content.layer.v1+wasm",
} as const;

/** The file name istio-agent looks for in a compat layer. */
export const PLUGIN_FILE = "plugin.wasm";
export const RUNTIME_CONFIG_FILE = "runtime-config.json";

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

export interface Blob extends Descriptor {
  data: Buffer;
}

export interface WasmImage {
  variant: WasmImageVariant;
  /** The manifest's exact bytes (its digest is the image digest). */
  manifest: Buffer;
  /** `sha256:<hex>` of `manifest`. */
  digest: string;
  /** The config blob, then the layers, in manifest order. */
  blobs: Blob[];
}

export function sha256Digest(data: Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

function blob(mediaType: string, data: Buffer, annotations?: Record<string, string>): Blob {
  const b: Blob = { mediaType, digest: sha256Digest(data), size: data.length, data };
  if (annotations !== undefined) b.annotations = annotations;
  return b;
}

function descriptor(b: Blob): Descriptor {
  const d: Descriptor = { mediaType: b.mediaType, digest: b.digest, size: b.size };
  if (b.annotations !== undefined) d.annotations = b.annotations;
  return d;
}

// ---------------------------------------------------------------------------------------------------------------
// tar and gzip, deterministic

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

/** A ustar archive of regular files (owner 0:0, mode 0644, mtime 0). */
export function tarFiles(files: { name: string; data: Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of files) {
    if (Buffer.byteLength(f.name) > 100) throw new Error(`tar entry name "${f.name}" is longer than 100 bytes`);
    const h = Buffer.alloc(512);
    h.write(f.name, 0, "utf8");
    h.write(octal(0o644, 8), 100, "ascii");
    h.write(octal(0, 8), 108, "ascii");
    h.write(octal(0, 8), 116, "ascii");
    h.write(octal(f.data.length, 12), 124, "ascii");
    h.write(octal(0, 12), 136, "ascii");
    h.fill(0x20, 148, 156); // the checksum field counts as spaces while summing
    h.write("0", 156, "ascii");
    h.write("ustar\0", 257, "ascii");
    h.write("00", 263, "ascii");
    let sum = 0;
    for (const byte of h) sum += byte;
    h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "ascii");
    parts.push(h, f.data, Buffer.alloc((512 - (f.data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(data: Buffer): number {
  let c = 0xffffffff;
  for (const byte of data) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** RFC 1952 gzip of `data` with stored deflate blocks (RFC 1951 BTYPE 00): the same bytes on every machine. */
export function gzipStored(data: Buffer): Buffer {
  // ID1 ID2 CM=8 FLG=0 MTIME=0 XFL=0 OS=3 (Unix)
  const parts: Buffer[] = [Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])];
  const max = 0xffff;
  let offset = 0;
  do {
    const len = Math.min(max, data.length - offset);
    const final = offset + len >= data.length ? 1 : 0;
    const head = Buffer.alloc(5);
    head[0] = final; // BFINAL, BTYPE=00, padded to the byte boundary
    head.writeUInt16LE(len, 1);
    head.writeUInt16LE(~len & 0xffff, 3);
    parts.push(head, data.subarray(offset, offset + len));
    offset += len;
  } while (offset < data.length);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc32(data), 0);
  trailer.writeUInt32LE(data.length >>> 0, 4);
  parts.push(trailer);
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------------------------------
// The image

export interface BuildOptions {
  variant?: WasmImageVariant;
  /** Root ids the module registers (runtime-config.json); default the filter's. */
  rootIds?: string[];
  /** More manifest annotations (e.g. `org.opencontainers.image.version`). */
  annotations?: Record<string, string>;
}

/** The runtime config of the Wasm image spec for an Envoy filter. */
export function runtimeConfig(rootIds: string[]): Buffer {
  return Buffer.from(JSON.stringify({ type: "envoy_proxy", abiVersions: ["v0.2.0"], config: { root_ids: rootIds } }));
}

/** Builds the image of `wasm` (the module's bytes). Throws when the bytes are not a wasm module. */
export function buildWasmImage(wasm: Buffer, options: BuildOptions = {}): WasmImage {
  if (wasm.length < 8 || wasm.readUInt32BE(0) !== 0x0061736d) {
    throw new Error("not a WebAssembly module (no \\0asm magic)");
  }
  const variant = options.variant ?? "compat";
  const rc = runtimeConfig(options.rootIds ?? ["spiffe_authz"]);
  let config: Blob;
  let layers: Blob[];
  const annotations: Record<string, string> = { ...(options.annotations ?? {}) };
  if (variant === "compat") {
    const tar = tarFiles([{ name: PLUGIN_FILE, data: wasm }, { name: RUNTIME_CONFIG_FILE, data: rc }]);
    const layer = blob(MEDIA_TYPES.layerTarGzip, gzipStored(tar));
    const imageConfig = {
      architecture: "wasm",
      os: "wasip1",
      config: {},
      rootfs: { type: "layers", diff_ids: [sha256Digest(tar)] },
    };
    config = blob(MEDIA_TYPES.imageConfig, Buffer.from(JSON.stringify(imageConfig)));
    layers = [layer];
    annotations["module.wasm.image/variant"] = "compat";
  } else {
    config = blob(MEDIA_TYPES.wasmConfig, rc);
    layers = [
      blob(MEDIA_TYPES.wasmConfig, rc, { "org.opencontainers.image.title": RUNTIME_CONFIG_FILE }),
      blob(MEDIA_TYPES.wasmContent, wasm, { "org.opencontainers.image.title": PLUGIN_FILE }),
    ];
  }
  const manifest: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.manifest,
    config: descriptor(config),
    layers: layers.map(descriptor),
  };
  if (Object.keys(annotations).length > 0) manifest.annotations = annotations;
  const bytes = Buffer.from(JSON.stringify(manifest));
  // The config of the oci variant is also its first layer: one blob, stored once.
  const blobs = [config, ...layers.filter((l) => l.digest !== config.digest)];
  return { variant, manifest: bytes, digest: sha256Digest(bytes), blobs };
}

// ---------------------------------------------------------------------------------------------------------------
// Reading an image back, as istio-agent does

/** A pulled image: the manifest bytes and a way to read each blob by digest. */
export interface ImageContent {
  manifest: Buffer;
  blob(digest: string): Buffer | Promise<Buffer>;
}

/** Minimal tar reader: the entries of a ustar archive. */
export function untar(tar: Buffer): { name: string; data: Buffer }[] {
  const out: { name: string; data: Buffer }[] = [];
  let off = 0;
  while (off + 512 <= tar.length) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const name = h.toString("utf8", 0, 100).replace(/\0.*$/s, "");
    const size = parseInt(h.toString("ascii", 124, 136).replace(/\0.*$/s, "").trim() || "0", 8);
    out.push({ name, data: tar.subarray(off + 512, off + 512 + size) });
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

/**
 * The module inside an image, read the way istio-agent reads it: the compat variant's last layer
 * (`...tar+gzip`, the file named `plugin.wasm`), else the oci variant's `...content.layer.v1+wasm` layer of
 * exactly two. Returns the variant too.
 */
export async function extractWasm(image: ImageContent): Promise<{ variant: WasmImageVariant; wasm: Buffer }> {
  const { gunzipSync } = await import("node:zlib");
  const manifest = JSON.parse(image.manifest.toString("utf8")) as { layers?: Descriptor[] };
  const layers = manifest.layers ?? [];
  if (layers.length === 0) throw new Error("the image has no layers");
  const last = layers[layers.length - 1];
  if (last.mediaType === MEDIA_TYPES.layerTarGzip) {
    const entries = untar(gunzipSync(await image.blob(last.digest)));
    const plugin = entries.find((e) => e.name.split("/").pop() === PLUGIN_FILE);
    if (plugin === undefined) throw new Error(`${PLUGIN_FILE} not found in the image's layer`);
    return { variant: "compat", wasm: plugin.data };
  }
  if (layers.length !== 2) throw new Error(`an oci-variant image has exactly 2 layers, this one has ${layers.length}`);
  const content = layers.find((l) => l.mediaType === MEDIA_TYPES.wasmContent);
  if (content === undefined) throw new Error(`no layer of type ${MEDIA_TYPES.wasmContent}`);
  return { variant: "oci", wasm: await image.blob(content.digest) };
}
