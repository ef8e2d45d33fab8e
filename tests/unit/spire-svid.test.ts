// The Workload API's X509SVIDResponse as `spire-agent api fetch x509 -output json` prints it (DER in base64) turned
// into PEM, on certificates made here with openssl; and the SPIRE configs the project writes.
import assert from "node:assert/strict";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createPki } from "../../src/envoy/pki.ts";
import type { Pki } from "../../src/envoy/pki.ts";
import { renderAgentConfig, renderServerConfig } from "../../dev/spire/config.ts";
import { parseX509SvidResponse, splitDer, writeSvidFiles } from "../../dev/spire/svid.ts";
import { tempDir } from "../support/envoy-fixture.ts";

const der = (pemText: string): Buffer => new X509Certificate(pemText).raw;

describe("X509-SVIDs from the Workload API", () => {
  let dir: string;
  let pki: Pki;
  let leafPem: string;
  let caPem: string;
  let otherCaPem: string;
  let keyDer: Buffer;
  before(async () => {
    dir = await tempDir("svid-unit");
    pki = await createPki(join(dir, "pki"), { trustDomain: "prod.example.com", clients: [{ name: "a", uri: "spiffe://prod.example.com/app/a" }] });
    leafPem = await readFile(pki.clients.a.cert, "utf8");
    caPem = await readFile(pki.ca.cert, "utf8");
    otherCaPem = await readFile(pki.otherCa.cert, "utf8");
    keyDer = createPrivateKey(await readFile(pki.clients.a.key)).export({ format: "der", type: "pkcs8" });
  });
  after(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  test("splitDer splits concatenated certificates and refuses anything else", () => {
    const chain = Buffer.concat([der(leafPem), der(caPem), der(otherCaPem)]);
    const parts = splitDer(chain);
    assert.deepEqual(parts.map((p) => new X509Certificate(p).serialNumber), [leafPem, caPem, otherCaPem].map((p) => new X509Certificate(p).serialNumber));
    assert.deepEqual(splitDer(Buffer.alloc(0)), []);
    assert.throws(() => splitDer(Buffer.from([0x04, 0x01, 0x00])), /not a DER certificate at byte 0/);
    assert.throws(() => splitDer(chain.subarray(0, chain.length - 1)), /truncated DER certificate at byte \d+/);
  });

  for (const spelling of ["snake", "camel"] as const) {
    test(`parses a response with ${spelling}_case field names into PEM, key, bundles, serial and validity`, () => {
      const b64 = (b: Buffer) => b.toString("base64");
      const svid =
        spelling === "snake"
          ? { spiffe_id: "spiffe://prod.example.com/app/a", x509_svid: b64(Buffer.concat([der(leafPem), der(caPem)])), x509_svid_key: b64(keyDer), bundle: b64(der(caPem)) }
          : { spiffeId: "spiffe://prod.example.com/app/a", x509Svid: b64(Buffer.concat([der(leafPem), der(caPem)])), x509SvidKey: b64(keyDer), bundle: b64(der(caPem)) };
      const federated = { [spelling === "snake" ? "federated_bundles" : "federatedBundles"]: { "spiffe://partner.example.com": b64(der(otherCaPem)) } };
      const [parsed, ...rest] = parseX509SvidResponse(JSON.stringify({ svids: [svid], ...federated }));
      assert.deepEqual(rest, []);
      assert.equal(parsed.spiffeId, "spiffe://prod.example.com/app/a");
      assert.equal(parsed.certChainPem, new X509Certificate(leafPem).toString() + new X509Certificate(caPem).toString());
      assert.equal(parsed.bundlePem, new X509Certificate(caPem).toString());
      assert.deepEqual(parsed.federatedBundles, { "spiffe://partner.example.com": new X509Certificate(otherCaPem).toString() });
      assert.match(parsed.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
      assert.ok(new X509Certificate(leafPem).checkPrivateKey(createPrivateKey(parsed.keyPem)));
      const leaf = new X509Certificate(leafPem);
      assert.equal(parsed.serial, leaf.serialNumber);
      assert.equal(parsed.notAfter.getTime(), new Date(leaf.validTo).getTime());
    });
  }

  test("an SVID without its key or certificate is an error that names it", () => {
    const svid = { spiffe_id: "spiffe://prod.example.com/app/a", x509_svid: der(leafPem).toString("base64"), bundle: der(caPem).toString("base64") };
    assert.throws(() => parseX509SvidResponse(JSON.stringify({ svids: [svid] })), /x509_svid_key of "spiffe:\/\/prod\.example\.com\/app\/a" is missing/);
    assert.deepEqual(parseX509SvidResponse("{}"), []);
  });

  test("writes svid.pem, a private svid.key and bundle.pem (own and federated CAs), replacing earlier files", async () => {
    const b64 = (b: Buffer) => b.toString("base64");
    const response = (leaf: string) =>
      JSON.stringify({
        svids: [{ spiffe_id: "spiffe://prod.example.com/app/a", x509_svid: b64(der(leaf)), x509_svid_key: b64(keyDer), bundle: b64(der(caPem)) }],
        federated_bundles: { "spiffe://partner.example.com": b64(der(otherCaPem)) },
      });
    const out = join(dir, "svid");
    const files = await writeSvidFiles(out, parseX509SvidResponse(response(leafPem))[0]);
    assert.deepEqual(files, { cert: join(out, "svid.pem"), key: join(out, "svid.key"), bundle: join(out, "bundle.pem") });
    assert.equal((await stat(files.key)).mode & 0o777, 0o600);
    assert.equal(await readFile(files.bundle, "utf8"), new X509Certificate(caPem).toString() + new X509Certificate(otherCaPem).toString());
    // Rotation: the same paths now hold the new certificate.
    await writeSvidFiles(out, parseX509SvidResponse(response(caPem))[0]);
    assert.equal(await readFile(files.cert, "utf8"), new X509Certificate(caPem).toString());
  });
});

describe("SPIRE configs", () => {
  test("the server: SQLite, disk keys, join tokens, the bundle endpoint only when asked for", () => {
    const base = { trustDomain: "prod.example.com", port: 18081, socketPath: "/tmp/s/api.sock", dataDir: "/tmp/s/data" };
    const text = renderServerConfig(base);
    assert.match(text, /^ {4}trust_domain = "prod\.example\.com"$/m);
    assert.match(text, /^ {4}bind_address = "127\.0\.0\.1"$/m);
    assert.match(text, /^ {4}bind_port = "18081"$/m);
    assert.match(text, /DataStore "sql" \{\n\s+plugin_data \{\n\s+database_type = "sqlite3"\n\s+connection_string = "\/tmp\/s\/data\/datastore\.sqlite3"/);
    assert.match(text, /KeyManager "disk" \{\n\s+plugin_data \{\n\s+keys_path = "\/tmp\/s\/data\/keys\.json"/);
    assert.match(text, /NodeAttestor "join_token"/);
    assert.match(text, /default_x509_svid_ttl = "1h"/);
    assert.doesNotMatch(text, /federation/);
    const federated = renderServerConfig({ ...base, bundleEndpointPort: 18443, defaultX509SvidTtl: "5m" });
    assert.match(federated, /bundle_endpoint \{\n\s+address = "127\.0\.0\.1"\n\s+port = 18443\n\s+refresh_hint = "1m"\n\s+profile "https_spiffe" \{\}/);
    assert.match(federated, /default_x509_svid_ttl = "5m"/);
    // Paths are HCL string literals: a quote or backslash cannot end the string early.
    assert.match(renderServerConfig({ ...base, dataDir: '/tmp/a"b\\c' }), /data_dir = "\/tmp\/a\\"b\\\\c"/);
  });

  test("the agent: join-token attestation, the unix workload attestor, its socket and the server's bundle", () => {
    const text = renderAgentConfig({
      trustDomain: "prod.example.com",
      serverPort: 18081,
      socketPath: "/tmp/a/api.sock",
      dataDir: "/tmp/a/data",
      trustBundlePath: "/tmp/a/bundle.pem",
    });
    assert.match(text, /^ {4}server_port = "18081"$/m);
    assert.match(text, /^ {4}socket_path = "\/tmp\/a\/api\.sock"$/m);
    assert.match(text, /^ {4}trust_bundle_path = "\/tmp\/a\/bundle\.pem"$/m);
    assert.match(text, /NodeAttestor "join_token"/);
    assert.match(text, /WorkloadAttestor "unix"/);
    assert.match(text, /sync_interval = "1s"/);
  });
});
