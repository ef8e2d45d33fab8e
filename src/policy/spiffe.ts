// SPIFFE ID rules (SPIFFE-ID.md, section 2), as the compiler needs them: to reject IDs in a policy that no valid
// peer could ever present. The engine has its own parser for peers (assembly/engine/spiffe.ts).

export const SPIFFE_SCHEME = "spiffe://";
/** The spec's limit on a trust domain name. */
export const MAX_TRUST_DOMAIN_BYTES = 255;
/** IDs up to this length must be supported by every implementation; longer ones are not portable. */
export const MAX_PORTABLE_ID_BYTES = 2048;

const TD_CHARS = /^[a-z0-9._-]+$/;
const SEGMENT_CHARS = /^[a-zA-Z0-9._-]+$/;

/** Why `td` is not a valid trust domain name, or null when it is. */
export function trustDomainProblem(td: string): string | null {
  if (td.length === 0) return "the trust domain is empty";
  if (td.length > MAX_TRUST_DOMAIN_BYTES) return `the trust domain is longer than ${MAX_TRUST_DOMAIN_BYTES} bytes`;
  if (!TD_CHARS.test(td)) {
    const bad = [...td].find((c) => !/[a-z0-9._-]/.test(c))!;
    if (/[A-Z]/.test(bad)) return "the trust domain must be lower-case";
    return `the trust domain contains ${JSON.stringify(bad)}; only a-z, 0-9, ".", "-" and "_" are allowed`;
  }
  return null;
}

/** Why `seg` is not a valid path segment, or null when it is. */
export function segmentProblem(seg: string): string | null {
  if (seg.length === 0) return "the path has an empty segment";
  if (seg === "." || seg === "..") return `the path has a ${JSON.stringify(seg)} segment`;
  if (!SEGMENT_CHARS.test(seg)) {
    const bad = [...seg].find((c) => !/[a-zA-Z0-9._-]/.test(c))!;
    if (bad === "%") return "the path contains \"%\"; percent-encoding is not allowed";
    return `the path contains ${JSON.stringify(bad)}; only a-z, A-Z, 0-9, ".", "-" and "_" are allowed`;
  }
  return null;
}

/** Why `id` is not a valid SPIFFE ID, or null when it is. */
export function spiffeIdProblem(id: string): string | null {
  if (!id.startsWith(SPIFFE_SCHEME)) {
    if (id.toLowerCase().startsWith(SPIFFE_SCHEME)) return "the scheme must be lower-case \"spiffe://\"";
    return "a SPIFFE ID starts with \"spiffe://\"";
  }
  const rest = id.slice(SPIFFE_SCHEME.length);
  const slash = rest.indexOf("/");
  const td = slash < 0 ? rest : rest.slice(0, slash);
  const tdp = trustDomainProblem(td);
  if (tdp) return tdp;
  if (slash < 0) return null;
  const path = rest.slice(slash);
  if (path === "/" || path.endsWith("/")) return "the path must not end with \"/\"";
  for (const seg of path.slice(1).split("/")) {
    const p = segmentProblem(seg);
    if (p) return p;
  }
  return null;
}

/** The trust domain of a valid SPIFFE ID. */
export function trustDomainOf(id: string): string {
  const rest = id.slice(SPIFFE_SCHEME.length);
  const slash = rest.indexOf("/");
  return slash < 0 ? rest : rest.slice(0, slash);
}
