/**
 * Test and demo certificates, made at run time with the `openssl` CLI (node can verify X.509 but not write it).
 *
 * Everything is EC P-256 and short-lived. Client certificates follow the X509-SVID shape: one URI SAN holding the
 * SPIFFE ID, clientAuth usage. Three special clients are always made, so tests of the failure paths need no setup:
 * one whose only URI SAN is not a valid SPIFFE ID, one with no URI SAN, and one signed by a second, untrusted CA.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, rm, writeFile, chmod } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** Names of the special clients every PKI has. */
export const specialClients = {
  /** URI SAN `spiffe://Prod.Example.com/app//x/`: upper-case trust domain, empty segment, trailing slash. */
  invalidSpiffeId: "invalid-spiffe-id",
  /** Signed by the main CA, but with no URI SAN at all (only a common name). */
  noUriSan: "no-uri-san",
  /** A valid SPIFFE ID of the trust domain, signed by a CA that no listener trusts. */
  otherCa: "other-ca",
} as const;

/** The invalid SPIFFE ID carried by the `invalid-spiffe-id` client. */
export const invalidSpiffeId = "spiffe://Prod.Example.com/app//x/";

export interface ClientSpec {
  /** File stem, `[a-z0-9-]`: the certificate is `<name>.crt`, the key `<name>.key`. */
  name: string;
  /** The only URI SAN. Omitted: no URI SAN. */
  uri?: string;
  /**
   * More URI SANs after `uri`, in this order (an X509-SVID has exactly one: tests of the filter's refusal of a
   * certificate carrying several).
   */
  extraUris?: string[];
  /** A DNS SAN. Omitted: none. */
  dns?: string;
  /** The subject's common name (default: `name`); "/" is allowed. */
  cn?: string;
}

export interface PkiOptions {
  /** Trust domain of the server's SPIFFE ID and of the `other-ca` client. */
  trustDomain: string;
  /** Validity of every certificate, in days (default 1). */
  days?: number;
  server?: {
    /** DNS SANs (default `localhost`). */
    dns?: string[];
    /** IP SANs (default `127.0.0.1`). */
    ips?: string[];
    /** URI SAN (default `spiffe://<trustDomain>/app/envoy`). */
    spiffeId?: string;
  };
  clients: ClientSpec[];
}

export interface KeyPair {
  /** PEM certificate (leaf only; the CA is `Pki.ca.cert`). */
  cert: string;
  /** PEM private key (PKCS#8, mode 0600). */
  key: string;
}

export interface ClientCert extends KeyPair {
  /** The URI SAN, or null when the certificate has none. */
  uri: string | null;
}

export interface Pki {
  dir: string;
  /** The CA listeners trust (`validation_context.trusted_ca`) and clients use to verify the server. */
  ca: KeyPair;
  /** A second CA that nothing trusts. */
  otherCa: KeyPair;
  server: KeyPair & { spiffeId: string };
  /** Every requested client plus the special ones, by name. */
  clients: Record<string, ClientCert>;
}

const namePattern = /^[a-z0-9][a-z0-9-]*$/;

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await execFileAsync("openssl", args, { cwd, timeout: 60_000 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === "ENOENT") throw new Error("the openssl command is required to make certificates and was not found on PATH");
    throw new Error(`openssl ${args[0]} failed: ${(e.stderr ?? e.message).trim()}`);
  }
}

const keyArgs = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

function serial(): string {
  // Positive 63-bit serial: RFC 5280 wants unique, positive, at most 20 bytes.
  const bytes = randomBytes(8);
  bytes[0] &= 0x7f;
  return `0x${bytes.toString("hex")}`;
}

async function makeCa(dir: string, stem: string, subject: string, days: number): Promise<KeyPair> {
  const pair = { cert: join(dir, `${stem}.crt`), key: join(dir, `${stem}.key`) };
  await openssl(
    [
      "req", "-x509", "-new", ...keyArgs, "-keyout", pair.key, "-out", pair.cert,
      "-days", String(days), "-set_serial", serial(), "-subj", subject,
      "-addext", "basicConstraints=critical,CA:TRUE",
      "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    ],
    dir,
  );
  await chmod(pair.key, 0o600);
  return pair;
}

async function makeLeaf(
  dir: string,
  stem: string,
  issuer: KeyPair,
  days: number,
  sans: string[],
  usage: string,
  cn = stem,
): Promise<KeyPair> {
  const pair = { cert: join(dir, `${stem}.crt`), key: join(dir, `${stem}.key`) };
  const csr = join(dir, `${stem}.csr`);
  const ext = join(dir, `${stem}.ext`);
  const lines = [
    "basicConstraints=critical,CA:FALSE",
    "keyUsage=critical,digitalSignature,keyAgreement",
    `extendedKeyUsage=${usage}`,
    "subjectKeyIdentifier=hash",
    "authorityKeyIdentifier=keyid",
  ];
  if (sans.length > 0) lines.push(`subjectAltName=${sans.join(",")}`);
  await writeFile(ext, lines.join("\n") + "\n");
  await openssl(["req", "-new", ...keyArgs, "-keyout", pair.key, "-out", csr, "-subj", `/O=spiffe-authz test/CN=${cn.replaceAll("/", "\\/")}`], dir);
  await openssl(
    [
      "x509", "-req", "-in", csr, "-CA", issuer.cert, "-CAkey", issuer.key, "-set_serial", serial(),
      "-days", String(days), "-extfile", ext, "-out", pair.cert,
    ],
    dir,
  );
  await chmod(pair.key, 0o600);
  await Promise.all([rm(csr), rm(ext)]);
  return pair;
}

/**
 * Makes a CA, a second (untrusted) CA, a server certificate and the client certificates in `dir` (created if
 * missing; files of the same names are overwritten). Returns absolute file paths.
 */
export async function createPki(dir: string, options: PkiOptions): Promise<Pki> {
  const root = resolve(dir);
  const days = options.days ?? 1;
  const td = options.trustDomain;
  const specs: ClientSpec[] = [
    ...options.clients,
    { name: specialClients.invalidSpiffeId, uri: invalidSpiffeId },
    { name: specialClients.noUriSan },
  ];
  const names = new Set<string>([...Object.values(specialClients), "ca", "untrusted-ca", "server"]);
  for (const spec of options.clients) {
    if (!namePattern.test(spec.name)) throw new Error(`client name "${spec.name}" must match ${namePattern}`);
    if (names.has(spec.name)) throw new Error(`client name "${spec.name}" is reserved or repeated`);
    names.add(spec.name);
    for (const uri of [spec.uri ?? "", ...(spec.extraUris ?? [])]) {
      if (/[,\n]/.test(uri)) throw new Error(`client uri "${uri}" contains a comma or newline`);
    }
    if (spec.extraUris?.length && spec.uri === undefined) throw new Error(`client "${spec.name}" has extraUris but no uri`);
  }
  await mkdir(root, { recursive: true });
  const [ca, otherCa] = await Promise.all([
    makeCa(root, "ca", "/O=spiffe-authz test/CN=spiffe-authz test CA", days),
    makeCa(root, "untrusted-ca", "/O=spiffe-authz test/CN=spiffe-authz untrusted CA", days),
  ]);
  const serverId = options.server?.spiffeId ?? `spiffe://${td}/app/envoy`;
  const serverSans = [
    ...(options.server?.dns ?? ["localhost"]).map((d) => `DNS:${d}`),
    ...(options.server?.ips ?? ["127.0.0.1"]).map((ip) => `IP:${ip}`),
    `URI:${serverId}`,
  ];
  const clients: Record<string, ClientCert> = {};
  const jobs: Promise<void>[] = [
    makeLeaf(root, "server", ca, days, serverSans, "serverAuth,clientAuth").then(() => undefined),
    makeLeaf(root, specialClients.otherCa, otherCa, days, [`URI:spiffe://${td}/app/frontend`], "clientAuth").then((p) => {
      clients[specialClients.otherCa] = { ...p, uri: `spiffe://${td}/app/frontend` };
    }),
  ];
  for (const spec of specs) {
    const sans = [
      ...(spec.uri === undefined ? [] : [spec.uri, ...(spec.extraUris ?? [])].map((u) => `URI:${u}`)),
      ...(spec.dns === undefined ? [] : [`DNS:${spec.dns}`]),
    ];
    jobs.push(
      makeLeaf(root, spec.name, ca, days, sans, "clientAuth", spec.cn).then((p) => {
        clients[spec.name] = { ...p, uri: spec.uri ?? null };
      }),
    );
  }
  await Promise.all(jobs);
  return {
    dir: root,
    ca,
    otherCa,
    server: { cert: join(root, "server.crt"), key: join(root, "server.key"), spiffeId: serverId },
    clients,
  };
}

/**
 * Issues one client certificate (an X509-SVID shape: `uri` as the only URI SAN, clientAuth) signed by the CA in
 * `caDir` (`ca.crt`, `ca.key`, as `createPki` writes them) into `outDir` as `<name>.crt` / `<name>.key`.
 */
export async function issueClientCertificate(
  caDir: string,
  options: { name: string; uri: string; outDir: string; days?: number },
): Promise<ClientCert> {
  if (!namePattern.test(options.name)) throw new Error(`certificate name "${options.name}" must match ${namePattern}`);
  if (/[,\n]/.test(options.uri)) throw new Error(`uri "${options.uri}" contains a comma or newline`);
  const ca = { cert: join(resolve(caDir), "ca.crt"), key: join(resolve(caDir), "ca.key") };
  const out = resolve(options.outDir);
  await mkdir(out, { recursive: true });
  const pair = await makeLeaf(out, options.name, ca, options.days ?? 1, [`URI:${options.uri}`], "clientAuth");
  return { ...pair, uri: options.uri };
}
