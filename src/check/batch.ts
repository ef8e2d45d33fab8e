// The JSONL request format of `check --batch` (and of `diff --requests`): one JSON object per line, each a
// CheckRequest.

import type { CheckRequest } from "./checker.ts";

/** A batch line that is not a request; the message starts with the `where` the caller gave (`file:line: `). */
export class RequestFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RequestFormatError";
  }
}

export const BATCH_FIELDS = [
  "peer",
  "method",
  "path",
  "authority",
  "headers",
  "body",
  "bodyBase64",
  "port",
  "sni",
  "jwt",
  "peerDns",
  "peerSubject",
  "sourceAddress",
  "destinationAddress",
] as const;
/** Standard base64 with padding, checked without a regular expression (a 4 MiB body overflowed V8's regex stack). */
function isBase64(s: string): boolean {
  if (s.length % 4 !== 0) return false;
  let pad = 0;
  if (s.endsWith("==")) pad = 2;
  else if (s.endsWith("=")) pad = 1;
  for (let i = 0; i < s.length - pad; i++) {
    const c = s.charCodeAt(i);
    const ok = (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 43 || c === 47;
    if (!ok) return false;
  }
  return true;
}

/** A header name as the host takes it (lower-cased); pseudo-headers and invalid names are refused. */
export function checkHeaderName(name: string, where: string): string {
  if (name.startsWith(":")) {
    throw new RequestFormatError(
      `${where}pseudo-header "${name}" cannot be set as a header; use method, path or authority`,
    );
  }
  if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name))
    throw new RequestFormatError(`${where}invalid header name "${name}"`);
  return name.toLowerCase();
}

/** Parses one batch line. `where` prefixes messages, e.g. `requests.jsonl:3: `. */
export function parseBatchLine(line: string, where: string): CheckRequest {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (err) {
    throw new RequestFormatError(`${where}not valid JSON: ${(err as Error).message}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new RequestFormatError(`${where}a request must be a JSON object`);
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!(BATCH_FIELDS as readonly string[]).includes(k)) {
      throw new RequestFormatError(`${where}unknown field "${k}" (fields: ${BATCH_FIELDS.join(", ")})`);
    }
  }
  const str = (k: string): string | undefined => {
    if (o[k] === undefined) return undefined;
    if (typeof o[k] !== "string") throw new RequestFormatError(`${where}field "${k}" must be a string`);
    return o[k] as string;
  };
  const req: CheckRequest = {};
  if (Array.isArray(o.peer)) {
    if (!o.peer.every((u) => typeof u === "string"))
      throw new RequestFormatError(`${where}field "peer" must be a string or a list of strings`);
    req.peer = o.peer as string[];
  } else if (o.peer !== undefined && o.peer !== null) {
    req.peer = str("peer");
  }
  req.method = str("method");
  req.path = str("path");
  req.authority = str("authority");
  req.sni = str("sni");
  req.peerDns = str("peerDns");
  req.peerSubject = str("peerSubject");
  req.sourceAddress = str("sourceAddress");
  req.destinationAddress = str("destinationAddress");
  if (o.port !== undefined) {
    if (!Number.isInteger(o.port) || (o.port as number) < 1 || (o.port as number) > 65535) {
      throw new RequestFormatError(`${where}field "port" must be an integer from 1 to 65535`);
    }
    req.port = o.port as number;
  }
  if (o.headers !== undefined) {
    if (typeof o.headers !== "object" || o.headers === null || Array.isArray(o.headers)) {
      throw new RequestFormatError(`${where}field "headers" must be an object of strings`);
    }
    const h: Record<string, string | string[]> = {};
    for (const [k, val] of Object.entries(o.headers as Record<string, unknown>)) {
      const ok =
        typeof val === "string" || (Array.isArray(val) && val.length > 0 && val.every((x) => typeof x === "string"));
      if (!ok)
        throw new RequestFormatError(
          `${where}header "${k}" must have a string value, or a list of them (one line each)`,
        );
      const name = checkHeaderName(k, where);
      const prev = h[name];
      const add = val as string | string[];
      h[name] =
        prev === undefined ? add : [...(Array.isArray(prev) ? prev : [prev]), ...(Array.isArray(add) ? add : [add])];
    }
    req.headers = h;
  }
  if (o.body !== undefined && o.bodyBase64 !== undefined) {
    throw new RequestFormatError(`${where}give either "body" or "bodyBase64", not both`);
  }
  if (o.jwt !== undefined && o.jwt !== null) {
    if (typeof o.jwt !== "object" || Array.isArray(o.jwt))
      throw new RequestFormatError(`${where}field "jwt" must be an object (the verified token's claims)`);
    req.jwt = o.jwt as Record<string, unknown>;
  }
  const body = str("body");
  if (body !== undefined) req.body = new TextEncoder().encode(body);
  const b64 = str("bodyBase64");
  if (b64 !== undefined) {
    if (!isBase64(b64)) throw new RequestFormatError(`${where}field "bodyBase64" is not valid base64`);
    req.body = new Uint8Array(Buffer.from(b64, "base64"));
  }
  return req;
}
