/**
 * A client of the OCI distribution API (v2) for pushing and pulling one image: blobs with a monolithic upload
 * (POST then PUT with `?digest=`), an existing blob skipped after a HEAD, the manifest PUT by tag, and every
 * download checked against its digest. Authentication: anonymous, basic, or the bearer token flow registries such
 * as Docker Hub and GHCR use (`WWW-Authenticate: Bearer realm=...,service=...,scope=...`).
 */
import type { ImageContent, WasmImage } from "./image.ts";
import { MEDIA_TYPES, sha256Digest } from "./image.ts";
import type { ImageReference } from "./reference.ts";
import { isLocalRegistry } from "./reference.ts";

export interface RegistryOptions {
  /** Plain HTTP (default: only for registries on this machine). */
  plainHttp?: boolean;
  username?: string;
  password?: string;
  /** Per-request timeout (default 60 s). */
  timeoutMs?: number;
}

export class RegistryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RegistryError";
  }
}

/** The parameters of a `WWW-Authenticate` challenge: `Bearer realm="...",service="...",scope="..."`. */
export function parseChallenge(header: string): { scheme: string; params: Record<string, string> } {
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (m === null) return { scheme: "", params: {} };
  const params: Record<string, string> = {};
  for (const p of m[2].matchAll(/(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) params[p[1].toLowerCase()] = (p[2] ?? p[3]).replace(/\\(.)/g, "$1");
  return { scheme: m[1].toLowerCase(), params };
}

export class RegistryClient {
  private readonly base: string;
  private authorization: string | null = null;

  constructor(readonly ref: ImageReference, private readonly options: RegistryOptions = {}) {
    const plain = options.plainHttp ?? isLocalRegistry(ref.registry);
    this.base = `${plain ? "http" : "https"}://${ref.registry}/v2/${ref.repository}`;
  }

  private async request(method: string, url: string, init: { headers?: Record<string, string>; body?: Buffer } = {}): Promise<Response> {
    const send = (): Promise<Response> =>
      fetch(url, {
        method,
        headers: { ...(init.headers ?? {}), ...(this.authorization !== null ? { authorization: this.authorization } : {}) },
        body: init.body,
        redirect: "follow",
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 60_000),
      }).catch((err: Error) => {
        throw new RegistryError(`${method} ${url}: ${(err.cause as Error | undefined)?.message ?? err.message}`);
      });
    let res = await send();
    if (res.status === 401 && (await this.authenticate(res))) res = await send();
    return res;
  }

  /** Answers a 401 challenge; true when there is something new to retry with. */
  private async authenticate(res: Response): Promise<boolean> {
    await res.arrayBuffer().catch(() => undefined);
    const { scheme, params } = parseChallenge(res.headers.get("www-authenticate") ?? "");
    const { username, password } = this.options;
    const basic = username !== undefined ? `Basic ${Buffer.from(`${username}:${password ?? ""}`).toString("base64")}` : null;
    if (scheme === "basic") {
      if (basic === null || this.authorization === basic) return false;
      this.authorization = basic;
      return true;
    }
    if (scheme !== "bearer" || params.realm === undefined) return false;
    const url = new URL(params.realm);
    if (params.service !== undefined) url.searchParams.set("service", params.service);
    url.searchParams.set("scope", params.scope ?? `repository:${this.ref.repository}:pull,push`);
    const tokenRes = await fetch(url, { headers: basic !== null ? { authorization: basic } : {}, signal: AbortSignal.timeout(30_000) });
    if (!tokenRes.ok) throw new RegistryError(`token request to ${url.origin}${url.pathname} answered ${tokenRes.status}`);
    const body = (await tokenRes.json()) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (token === undefined) throw new RegistryError(`token response from ${url.origin} has no token`);
    const next = `Bearer ${token}`;
    if (next === this.authorization) return false;
    this.authorization = next;
    return true;
  }

  private async fail(what: string, res: Response): Promise<never> {
    const text = (await res.text().catch(() => "")).trim().slice(0, 500);
    throw new RegistryError(`${what}: the registry answered ${res.status}${text ? `: ${text}` : ""}`);
  }

  private async hasBlob(digest: string): Promise<boolean> {
    const res = await this.request("HEAD", `${this.base}/blobs/${digest}`);
    return res.ok;
  }

  private async uploadBlob(digest: string, data: Buffer): Promise<void> {
    const start = await this.request("POST", `${this.base}/blobs/uploads/`, { headers: { "content-length": "0" } });
    if (start.status !== 202) await this.fail(`starting the upload of ${digest}`, start);
    await start.arrayBuffer();
    const location = start.headers.get("location");
    if (location === null) throw new RegistryError(`the registry started the upload of ${digest} without a Location`);
    const url = new URL(location, this.base);
    url.searchParams.set("digest", digest);
    const put = await this.request("PUT", url.toString(), {
      headers: { "content-type": "application/octet-stream", "content-length": String(data.length) },
      body: data,
    });
    if (put.status !== 201) await this.fail(`uploading ${digest}`, put);
    await put.arrayBuffer();
  }

  /** Pushes `image` under the reference's tag (or its digest). Returns the digest the registry reports. */
  async push(image: WasmImage): Promise<string> {
    for (const b of image.blobs) {
      if (!(await this.hasBlob(b.digest))) await this.uploadBlob(b.digest, b.data);
    }
    const target = this.ref.tag ?? image.digest;
    const res = await this.request("PUT", `${this.base}/manifests/${target}`, {
      headers: { "content-type": MEDIA_TYPES.manifest },
      body: image.manifest,
    });
    if (res.status !== 201) await this.fail(`putting the manifest ${target}`, res);
    await res.arrayBuffer();
    const reported = res.headers.get("docker-content-digest");
    if (reported !== null && reported !== image.digest) {
      throw new RegistryError(`the registry stored the manifest as ${reported}, not ${image.digest}`);
    }
    return image.digest;
  }

  /** Pulls the manifest (by digest when the reference has one, else by tag) and verifies it; blobs on demand. */
  async pull(): Promise<ImageContent & { digest: string; mediaType: string }> {
    const target = this.ref.digest ?? this.ref.tag ?? "latest";
    const res = await this.request("GET", `${this.base}/manifests/${target}`, {
      headers: { accept: [MEDIA_TYPES.manifest, "application/vnd.docker.distribution.manifest.v2+json"].join(", ") },
    });
    if (!res.ok) await this.fail(`getting the manifest ${target}`, res);
    const manifest = Buffer.from(await res.arrayBuffer());
    const digest = sha256Digest(manifest);
    if (this.ref.digest !== null && digest !== this.ref.digest) {
      throw new RegistryError(`the manifest of ${this.ref.digest} has the digest ${digest}`);
    }
    return {
      manifest,
      digest,
      mediaType: res.headers.get("content-type") ?? "",
      blob: async (d: string) => {
        const r = await this.request("GET", `${this.base}/blobs/${d}`);
        if (!r.ok) await this.fail(`getting the blob ${d}`, r);
        const data = Buffer.from(await r.arrayBuffer());
        if (sha256Digest(data) !== d) throw new RegistryError(`the blob ${d} has the digest ${sha256Digest(data)}`);
        return data;
      },
    };
  }
}
