/**
 * Image references as Istio's WasmPlugin `url` names them: `oci://REGISTRY/REPOSITORY[:TAG][@sha256:HEX]` (the
 * `oci://` is optional there, as in Istio). The grammar is the distribution reference's
 * (github.com/distribution/reference): a first component with a `.` or `:`, or `localhost`, is the registry; without
 * one the registry is Docker Hub and a one-component repository is under `library/`.
 */

export interface ImageReference {
  /** `host[:port]` */
  registry: string;
  repository: string;
  tag: string | null;
  /** `sha256:<64 hex>` */
  digest: string | null;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::\d{1,5})?$|^\[[0-9a-fA-F:]+\](?::\d{1,5})?$/;

/** Thrown for a reference that does not parse; the message says what is wrong with it. */
export class ImageReferenceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ImageReferenceError";
  }
}

/** Parses `text`, with or without `oci://`. */
export function parseImageReference(text: string): ImageReference {
  const raw = text.startsWith("oci://") ? text.slice("oci://".length) : text;
  if (raw === "") throw new ImageReferenceError("empty image reference");
  if (/[\s]/.test(raw)) throw new ImageReferenceError(`image reference "${text}" contains whitespace`);
  let rest = raw;
  let digest: string | null = null;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new ImageReferenceError(`digest "${digest}" in "${text}" is not sha256:<64 lower-case hex digits>`);
  }
  let tag: string | null = null;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new ImageReferenceError(`tag "${tag}" in "${text}" is not a valid tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})`);
  }
  const parts = rest.split("/");
  let registry = "registry-1.docker.io";
  if (parts.length > 1 && (parts[0].includes(".") || parts[0].includes(":") || parts[0] === "localhost")) {
    registry = parts.shift()!;
    if (!HOST.test(registry)) throw new ImageReferenceError(`registry "${registry}" in "${text}" is not a host name with an optional port`);
  } else if (parts.length === 1) {
    parts.unshift("library");
  }
  for (const p of parts) {
    if (!COMPONENT.test(p)) {
      throw new ImageReferenceError(`repository component "${p}" in "${text}" must be lower-case letters and digits separated by ".", "_", "__" or "-"`);
    }
  }
  const repository = parts.join("/");
  if (repository.length > 255) throw new ImageReferenceError(`repository in "${text}" is longer than 255 characters`);
  if (tag === null && digest === null) tag = "latest";
  return { registry, repository, tag, digest };
}

/** `oci://registry/repository[:tag][@digest]` */
export function formatImageReference(ref: ImageReference): string {
  return `oci://${ref.registry}/${ref.repository}${ref.tag !== null ? `:${ref.tag}` : ""}${ref.digest !== null ? `@${ref.digest}` : ""}`;
}

/** Whether the registry is on this machine (spoken to over plain HTTP unless told otherwise, as crane and docker do). */
export function isLocalRegistry(registry: string): boolean {
  const host = registry.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}
