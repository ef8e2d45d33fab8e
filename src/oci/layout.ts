/**
 * The OCI image layout on disk (image-spec image-layout.md): `oci-layout`, `index.json` naming each manifest with
 * `org.opencontainers.image.ref.name`, and `blobs/sha256/<hex>`. What `spiffe-authz image --out DIR` writes; crane,
 * skopeo and oras read it, and `compile --emit wasmplugin --image DIR` takes the digest to pin from it.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Descriptor, WasmImage } from "./image.ts";
import { MEDIA_TYPES } from "./image.ts";

export const REF_NAME = "org.opencontainers.image.ref.name";
export const VARIANT_ANNOTATION = "dev.spiffe-authz.wasm-image-variant";

/** Writes `images` (each with the name it is known by, e.g. its tag) as an OCI image layout in `dir`. */
export async function writeLayout(dir: string, images: { name: string; image: WasmImage }[]): Promise<void> {
  await mkdir(join(dir, "blobs", "sha256"), { recursive: true });
  const write = (digest: string, data: Buffer): Promise<void> => writeFile(join(dir, "blobs", "sha256", digest.slice("sha256:".length)), data);
  const manifests: Descriptor[] = [];
  for (const { name, image } of images) {
    for (const b of image.blobs) await write(b.digest, b.data);
    await write(image.digest, image.manifest);
    manifests.push({
      mediaType: MEDIA_TYPES.manifest,
      digest: image.digest,
      size: image.manifest.length,
      annotations: { [REF_NAME]: name, [VARIANT_ANNOTATION]: image.variant },
    });
  }
  await writeFile(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }) + "\n");
  await writeFile(join(dir, "index.json"), JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests }, null, 2) + "\n");
}

/** The manifests an image layout lists, with their names and variants. */
export async function readLayoutIndex(dir: string): Promise<{ name: string | null; variant: string | null; digest: string }[]> {
  let text: string;
  try {
    text = await readFile(join(dir, "index.json"), "utf8");
  } catch {
    throw new Error(`"${dir}" is not an OCI image layout (no index.json); write one with \`spiffe-authz image --out DIR\``);
  }
  const index = JSON.parse(text) as { manifests?: Descriptor[] };
  return (index.manifests ?? []).map((m) => ({
    name: m.annotations?.[REF_NAME] ?? null,
    variant: m.annotations?.[VARIANT_ANNOTATION] ?? null,
    digest: m.digest,
  }));
}
