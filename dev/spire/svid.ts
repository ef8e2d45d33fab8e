/**
 * X509-SVIDs as the Workload API hands them out (`spire-agent api fetch x509 -output json`: DER in base64), turned
 * into PEM for clients (node's TLS, curl) and written to files.
 */
import { X509Certificate, createPrivateKey } from "node:crypto";
import { chmod, mkdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";

export interface X509Svid {
  spiffeId: string;
  /** The certificate chain, leaf first, PEM. */
  certChainPem: string;
  /** The private key, PKCS#8 PEM. */
  keyPem: string;
  /** The X.509 authorities of the SVID's own trust domain, PEM. */
  bundlePem: string;
  /** Bundles of the trust domains the entry federates with, by trust domain ID (`spiffe://other.example.com`). */
  federatedBundles: Record<string, string>;
  /** The leaf's serial number (hex, as node prints it): a new one means the SVID was rotated. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

/** Splits concatenated DER certificates (the Workload API's encoding of chains and bundles). */
export function splitDer(der: Buffer): Buffer[] {
  const certs: Buffer[] = [];
  let offset = 0;
  while (offset < der.length) {
    if (der[offset] !== 0x30) throw new Error(`not a DER certificate at byte ${offset}`);
    let length = der[offset + 1];
    let header = 2;
    if (length & 0x80) {
      const bytes = length & 0x7f;
      if (bytes === 0 || bytes > 4) throw new Error(`unsupported DER length at byte ${offset}`);
      length = 0;
      for (let i = 0; i < bytes; i++) length = length * 256 + der[offset + 2 + i];
      header += bytes;
    }
    const end = offset + header + length;
    if (end > der.length) throw new Error(`truncated DER certificate at byte ${offset}`);
    certs.push(der.subarray(offset, end));
    offset = end;
  }
  return certs;
}

/** PEM of concatenated DER certificates. */
export function derCertsToPem(der: Buffer): string {
  return splitDer(der)
    .map((c) => new X509Certificate(c).toString())
    .join("");
}

function bytes(value: unknown, what: string): Buffer {
  if (typeof value !== "string" || value === "") throw new Error(`workload API response: ${what} is missing`);
  return Buffer.from(value, "base64");
}

/**
 * Parses `spire-agent api fetch x509 -output json` (the Workload API's X509SVIDResponse in protobuf JSON; field
 * names in either spelling, `spiffe_id` or `spiffeId`).
 */
export function parseX509SvidResponse(json: string): X509Svid[] {
  const parsed = JSON.parse(json) as unknown;
  // The CLI prints one response object; some versions wrap it in a list.
  const response = (Array.isArray(parsed) ? parsed[0] : parsed) as Record<string, unknown>;
  const field = (o: Record<string, unknown>, snake: string, camel: string): unknown => o[snake] ?? o[camel];
  const federated: Record<string, string> = {};
  const federatedRaw = field(response, "federated_bundles", "federatedBundles") as Record<string, string> | undefined;
  for (const [td, der] of Object.entries(federatedRaw ?? {})) federated[td] = derCertsToPem(bytes(der, `federated bundle "${td}"`));
  const svids = (response.svids ?? []) as Record<string, unknown>[];
  return svids.map((s) => {
    const spiffeId = String(field(s, "spiffe_id", "spiffeId") ?? "");
    const chain = bytes(field(s, "x509_svid", "x509Svid"), `x509_svid of "${spiffeId}"`);
    const key = bytes(field(s, "x509_svid_key", "x509SvidKey"), `x509_svid_key of "${spiffeId}"`);
    const leaf = new X509Certificate(splitDer(chain)[0]);
    return {
      spiffeId,
      certChainPem: derCertsToPem(chain),
      keyPem: createPrivateKey({ key, format: "der", type: "pkcs8" }).export({ format: "pem", type: "pkcs8" }).toString(),
      bundlePem: derCertsToPem(bytes(s.bundle, `bundle of "${spiffeId}"`)),
      federatedBundles: federated,
      serial: leaf.serialNumber,
      notBefore: new Date(leaf.validFrom),
      notAfter: new Date(leaf.validTo),
    };
  });
}

export interface SvidFiles {
  /** The certificate chain (leaf first). */
  cert: string;
  key: string;
  /** The trust domain's bundle, plus every federated bundle: what a client verifies a server against. */
  bundle: string;
}

async function replaceFile(path: string, content: string, mode: number): Promise<void> {
  // Written beside and renamed over: a client reading the files while they rotate never sees half a file.
  const temp = `${path}.${process.pid}.tmp`;
  await writeFile(temp, content, { mode });
  await chmod(temp, mode);
  await rename(temp, path);
}

/** Writes an SVID as `svid.pem`, `svid.key` (mode 0600) and `bundle.pem` into `dir`, replacing what is there. */
export async function writeSvidFiles(dir: string, svid: X509Svid): Promise<SvidFiles> {
  await mkdir(dir, { recursive: true });
  const files = { cert: join(dir, "svid.pem"), key: join(dir, "svid.key"), bundle: join(dir, "bundle.pem") };
  await replaceFile(files.key, svid.keyPem, 0o600);
  await replaceFile(files.cert, svid.certChainPem, 0o644);
  await replaceFile(files.bundle, svid.bundlePem + Object.values(svid.federatedBundles).join(""), 0o644);
  return files;
}
