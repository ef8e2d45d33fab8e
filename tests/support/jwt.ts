/**
 * Real JWTs for the integration tests: a key pair generated at test time (jose), its public key as a JWKS
 * (inlined into Envoy's config or served over HTTP), and tokens signed with it, or with another key for forgeries.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import type { JWK, JWTPayload, CryptoKey } from "jose";

export type JwtAlgorithm = "ES256" | "RS256";

export interface SigningKey {
  alg: JwtAlgorithm;
  kid: string;
  privateKey: CryptoKey;
  /** The public key as a JWK (with `kid`, `alg`, `use: sig`). */
  publicJwk: JWK;
}

/** A fresh key pair. */
export async function createSigningKey(kid: string, alg: JwtAlgorithm = "ES256"): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return { alg, kid, privateKey, publicJwk };
}

/** A JWKS document (RFC 7517) holding the public keys. */
export function jwksOf(keys: SigningKey[]): string {
  return JSON.stringify({ keys: keys.map((k) => k.publicJwk) });
}

export interface TokenOptions {
  issuer: string;
  audience?: string;
  subject?: string;
  /** Lifetime from now (default 10 minutes); negative: already expired. */
  expiresInSeconds?: number;
}

/** A signed JWT (compact form) with `iat`, `exp` and the given claims. */
export async function mintToken(key: SigningKey, claims: JWTPayload, options: TokenOptions): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  let jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT" })
    .setIssuer(options.issuer)
    .setIssuedAt(now)
    .setExpirationTime(now + (options.expiresInSeconds ?? 600));
  if (options.audience !== undefined) jwt = jwt.setAudience(options.audience);
  if (options.subject !== undefined) jwt = jwt.setSubject(options.subject);
  return jwt.sign(key.privateKey);
}

export interface JwksServer {
  port: number;
  /** `http://127.0.0.1:<port>/.well-known/jwks.json` */
  uri: string;
  /** How many times the JWKS was fetched. */
  fetches(): number;
  close(): Promise<void>;
}

/** Serves `jwks` at `/.well-known/jwks.json` on 127.0.0.1 (port chosen by the kernel); 404 elsewhere. */
export async function serveJwks(jwks: string): Promise<JwksServer> {
  let fetches = 0;
  const path = "/.well-known/jwks.json";
  const server = createServer((req, res) => {
    if (req.url !== path) {
      res.writeHead(404).end();
      return;
    }
    fetches++;
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(jwks) }).end(jwks);
  });
  // Envoy keeps its JWKS connection open between refreshes; do not let a short keep-alive race with it.
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    uri: `http://127.0.0.1:${port}${path}`,
    fetches: () => fetches,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
