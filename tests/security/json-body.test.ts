// JSON body rules end to end: a real Envoy 1.40 with the real filter in front of a real Express 5 app that reads
// JSON the way most Node services do (express.json(), i.e. body-parser: it honours the charset parameter and
// inflates content-encodings). The policy is the config-service ABAC rule on a JSON body: a caller may fetch only
// its own app's configuration, `request.json.appname == source.attributes.app`.
//
// Each class is a request `billing` sends to obtain `orders`' configuration. In the first two the body says
// "billing" read as UTF-8 and "orders" read as UTF-7, which Express does when the content-type asks for it (in the
// second through a repeated content-type line). Each is denied with its cause in the response details, and Express
// never sees it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { connect } from "node:tls";
import { gzipSync } from "node:zlib";
import { after, before, describe, test } from "node:test";
import express from "express";
import iconv from "iconv-lite";
import { explainFailure, startAuthzEnvoy } from "../support/envoy-fixture.ts";
import type { AuthzEnvoy } from "../support/envoy-fixture.ts";
import { https } from "../support/clients.ts";

const td = "config.example.com";
const billing = `spiffe://${td}/app/billing/env/prod`;

const POLICY = `apiVersion: spiffe-authz.dev/v1
kind: AuthzPolicy
metadata: {name: config-json}
spec:
  trustDomains:
    ${td}: {require: [app, env]}
  rules:
    - id: fetch-own-config
      from: [{trustDomains: [${td}]}]
      to: [{methods: [POST], paths: ["/config/*"]}]
      condition: request.json.appname == source.attributes.app
`;

/**
 * Valid UTF-8 JSON whose `appname` is "billing"; decoded as UTF-7, the string after it closes and a second
 * `appname` follows ("+ACI-" is a quote in UTF-7), and JSON.parse keeps the last one: "orders".
 */
const dualBody = `{"appname":"billing","x":"${iconv.encode('","appname":"orders","z":"', "utf7").toString("latin1")}"}`;

interface Served {
  path: string;
  appname: unknown;
}

/** The app behind Envoy: serves the configuration of the app its JSON body names, and records what it served. */
async function startApp(): Promise<{ server: Server; port: number; served: Served[] }> {
  const served: Served[] = [];
  const app = express();
  app.use(express.json({ type: ["application/json", "application/*+json"] }));
  app.post("/config/:case", (req, res) => {
    const appname = (req.body as { appname?: unknown } | undefined)?.appname;
    served.push({ path: req.path, appname });
    res.json({ config: `configuration of ${String(appname)}` });
  });
  const server = app.listen(0, "127.0.0.1");
  await new Promise<void>((r) => server.once("listening", () => r()));
  return { server, port: (server.address() as AddressInfo).port, served };
}

describe("JSON bodies: the filter decides only on UTF-8 JSON as sent (real Envoy, real Express)", () => {
  let env: AuthzEnvoy;
  let app: Awaited<ReturnType<typeof startApp>>;

  before(async () => {
    app = await startApp();
    env = await startAuthzEnvoy({
      variant: "mtls",
      trustDomain: td,
      clients: [{ name: "billing", uri: billing }],
      policies: [{ file: "config-json.yaml", text: POLICY }],
      httpUpstream: { port: app.port },
    });
  });

  after(async () => {
    await env?.close();
    app?.server.closeAllConnections();
    await new Promise((r) => app?.server.close(r));
  });

  /** One HTTPS request with the given header lines (repeats allowed), as billing, over a fresh connection. */
  function rawPost(path: string, headerLines: [string, string][], body: Uint8Array): Promise<{ status: number; body: string }> {
    const client = env.pki.clients.billing;
    return new Promise((resolve, reject) => {
      const sock = connect({
        host: "127.0.0.1", port: env.port, servername: "localhost", ca: readFileSync(env.pki.ca.cert),
        cert: readFileSync(client.cert), key: readFileSync(client.key),
      }, () => {
        const head = [...headerLines, ["content-length", String(body.length)]].map(([k, v]) => `${k}: ${v}\r\n`).join("");
        sock.write(Buffer.concat([Buffer.from(`POST ${path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n${head}\r\n`, "latin1"), body]));
      });
      const chunks: Buffer[] = [];
      sock.on("data", (d) => chunks.push(d));
      sock.on("error", reject);
      sock.setTimeout(10_000, () => sock.destroy(new Error(`no answer to ${path}`)));
      sock.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]), body: text.slice(text.indexOf("\r\n\r\n") + 4) });
      });
    });
  }

  const post = (path: string, contentType: string, body: string) =>
    https({ port: env.port, ca: env.pki.ca.cert, client: env.pki.clients.billing, method: "POST", path, headers: { "content-type": contentType }, body });

  async function assertDenied(path: string, status: number, details: string): Promise<void> {
    assert.equal(status, 403);
    const line = await env.envoy.waitForAccessLog((e) => e.path === path);
    assert.equal(line.details, details);
    assert.equal(line.upstream, null, "the request left Envoy");
    assert.deepEqual(app.served.filter((s) => s.path === path), [], "Express served it");
  }

  test("the caller's own configuration is served (the rule reads the body)", () =>
    explainFailure(env.envoy, async () => {
      const res = await post("/config/own", "application/json", '{"appname":"billing"}');
      assert.equal(res.status, 200, res.body);
      assert.deepEqual(JSON.parse(res.body), { config: "configuration of billing" });
      const other = await post("/config/other", "application/json", '{"appname":"orders"}');
      await assertDenied("/config/other", other.status, "spiffe_authz_denied[default]");
    }));

  test("charset=utf-7: a body that reads 'billing' as UTF-8 and 'orders' as UTF-7 is denied (json_not_utf8)", () =>
    explainFailure(env.envoy, async () => {
      // Express alone (no Envoy) reads the body as UTF-7: the attack is real.
      const direct = await fetch(`http://127.0.0.1:${app.port}/config/direct`, {
        method: "POST", headers: { "content-type": "application/json; charset=utf-7" }, body: dualBody,
      });
      assert.deepEqual(await direct.json(), { config: "configuration of orders" });
      for (const [i, ct] of ["application/json; charset=utf-7", 'application/json;charset="UTF-7"', "application/json; charset=utf-7; charset=utf-8"].entries()) {
        const path = `/config/utf7-${i}`;
        const res = await post(path, ct, dualBody);
        await assertDenied(path, res.status, "spiffe_authz_denied[default:json_not_utf8]");
      }
    }));

  test("repeated content-type lines (the charset in the second) are denied (json_media_type)", () =>
    explainFailure(env.envoy, async () => {
      // Envoy 1.40 forwards them as one line, "application/json; x=1,application/json; charset=utf-7", in which
      // body-parser finds x="1,application/json" and charset=utf-7.
      const res = await rawPost("/config/repeated", [["content-type", "application/json; x=1"], ["content-type", "application/json; charset=utf-7"]], Buffer.from(dualBody));
      await assertDenied("/config/repeated", res.status, "spiffe_authz_denied[default:json_media_type]");
    }));

  test("a compressed body, a byte-order mark and a repeated key are denied with their causes", () =>
    explainFailure(env.envoy, async () => {
      const gz = await rawPost("/config/gzip", [["content-type", "application/json"], ["content-encoding", "gzip"]], gzipSync('{"appname":"orders"}'));
      await assertDenied("/config/gzip", gz.status, "spiffe_authz_denied[default:json_content_encoding]");
      const bom = await post("/config/bom", "application/json", '\ufeff{"appname":"billing"}');
      await assertDenied("/config/bom", bom.status, "spiffe_authz_denied[default:json_not_utf8]");
      // JSON.parse keeps the last "appname", readers such as gjson the first: no reading is the right one.
      const dup = await post("/config/dup", "application/json", '{"appname":"orders","appname":"billing"}');
      await assertDenied("/config/dup", dup.status, "spiffe_authz_denied[default:json_ambiguous]");
    }));
});
