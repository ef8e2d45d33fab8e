// `spiffe-authz check --batch` on the configuration service example (examples/config-service/): the example's
// policy and .proto, gRPC request bodies built here exactly as they travel, the decisions and their reasons; and
// the response details Envoy would log for each (what tests/integration/config-service.test.ts sees in a real
// Envoy). When the example is absent the golden case tests/cases/conditions-grpc stands in for it.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";

import { runCheck } from "../../src/cli/check.ts";
import type { CliIO } from "../../src/cli/io.ts";
import { compileTexts } from "../../src/compiler/index.ts";
import { ProxyWasmHost } from "../../src/host/index.ts";
import { ROOT } from "./helpers/fixture.ts";
import { grpcFrame, messageEncoder } from "./helpers/grpc-bodies.ts";
import { requireReleaseWasm } from "./helpers/release.ts";

const example = path.join(ROOT, "examples/config-service");
const present = existsSync(path.join(example, "policy.yaml")) && existsSync(path.join(example, "config_service.proto"));
const POLICY = present ? path.join(example, "policy.yaml") : path.join(ROOT, "tests/cases/conditions-grpc/policy.yaml");
const PROTO = present ? path.join(example, "config_service.proto") : path.join(ROOT, "tests/cases/conditions-grpc/config_service.proto");
const METHOD = "/demo.config.v1.DynamicResourceService/FetchResource";
const encode = messageEncoder(PROTO, "demo.config.v1.FetchResourceRequest");
const caller = (app: string, env = "prod") => `spiffe://config.example.com/app/${app}/env/${env}`;
const ascii = (s: string) => [...Buffer.from(s)];

interface Line {
  name: string;
  request: Record<string, unknown>;
  decision: "allow" | "deny";
  rule: string | null;
  /** a fragment of the reason */
  reason: RegExp;
  /** Envoy's response code details (null: allowed) */
  details: string | null;
}

const grpc = (peer: string, body: Uint8Array | null) => ({
  peer, method: "POST", path: METHOD, authority: "config.svc:50051", headers: { "content-type": "application/grpc" },
  ...(body === null ? {} : { bodyBase64: Buffer.from(body).toString("base64") }),
});
// The default limit (64 KiB) unless the example sets its own: an oversized message is built past whichever.
const compiled = compileTexts([{ file: POLICY, text: readFileSync(POLICY, "utf8") }], undefined, { protos: [PROTO] });
const limit = compiled.ir.maxBodyBytes;

const lines: Line[] = [
  {
    name: "own resource", request: grpc(caller("billing"), grpcFrame(encode({ appname: "billing", resource_id: "db" }))),
    decision: "allow", rule: "fetch-own-config", reason: /^allowed by rule "fetch-own-config"$/, details: null,
  },
  {
    name: "another app's resource", request: grpc(caller("billing"), grpcFrame(encode({ appname: "orders", resource_id: "db" }))),
    decision: "deny", rule: null, reason: /^no ALLOW rule matched; closest: rule "fetch-own-config" \(its condition was false\)/, details: "spiffe_authz_denied[default]",
  },
  {
    name: "appname absent: proto3 default \"\" is not the caller's app", request: grpc(caller("billing"), grpcFrame(encode({ resource_id: "db" }))),
    decision: "deny", rule: null, reason: /^no ALLOW rule matched; closest: rule "fetch-own-config" \(its condition was false\)/, details: "spiffe_authz_denied[default]",
  },
  {
    name: "compressed frame", request: grpc(caller("billing"), grpcFrame(encode({ appname: "billing", resource_id: "db" }), true)),
    decision: "deny", rule: null, reason: /\(its condition failed: cannot read the request body: grpc message is compressed\)$/,
    details: "spiffe_authz_denied[default:grpc_compressed]",
  },
  {
    name: "truncated frame", request: grpc(caller("billing"), grpcFrame(encode({ appname: "billing", resource_id: "db" })).subarray(0, 8)),
    decision: "deny", rule: null, reason: /\(its condition failed: cannot read the request body: truncated grpc frame\)$/,
    details: "spiffe_authz_denied[default:grpc_truncated]",
  },
  {
    name: "oversized body", request: grpc(caller("billing"), grpcFrame(encode({ appname: "billing", resource_id: "x".repeat(limit + 10) }))),
    decision: "deny", rule: null, reason: new RegExp(`\\(its condition failed: cannot read the request body: request body over ${limit} bytes\\)$`),
    details: "spiffe_authz_denied[default:body_too_large]",
  },
  {
    name: "two messages on a unary method", request: grpc(caller("billing"), Buffer.concat([grpcFrame(encode({ appname: "billing" })), grpcFrame(encode({ appname: "billing" }))])),
    decision: "deny", rule: null, reason: /\(its condition failed: cannot read the request body: grpc request has more than one message\)$/,
    details: "spiffe_authz_denied[default:grpc_multiple_messages]",
  },
  {
    name: "another app's resource, redacted", request: grpc(caller("billing"), grpcFrame(encode({ appname: "orders", resource_id: "db", options: { redacted: true } }))),
    decision: "allow", rule: "fetch-redacted-config", reason: /^allowed by rule "fetch-redacted-config"$/, details: null,
  },
  // Messages protobufjs (the grpc-js server's decoder) reads as "orders" where a reader taking the encoding at its
  // word reads "billing" (tests/integration/config-service.test.ts sends the same bytes through Envoy).
  {
    name: "a 6-byte field tag", request: grpc(caller("billing"), grpcFrame(Uint8Array.from([0x92, 0x80, 0x80, 0x80, 0x80, 0x00, 3, ...ascii("xxx"), 0x0a, 7, ...ascii("billing"), 0x7a, 8, 0x0a, 6, ...ascii("orders")]))),
    decision: "deny", rule: null, reason: /\(its condition failed: cannot read the request body: non-canonical varint in protobuf message\)$/,
    details: "spiffe_authz_denied[default:protobuf_noncanonical]",
  },
  {
    name: "a string field with wire type 0", request: grpc(caller("billing"), grpcFrame(Uint8Array.from([0x10, 11, 0x0a, 7, ...ascii("billing"), 0x7a, 8, 0x0a, 6, ...ascii("orders")]))),
    decision: "deny", rule: null, reason: /\(its condition failed: cannot read the request body: unexpected wire type for protobuf field \(field 2\)\)$/,
    details: "spiffe_authz_denied[default:protobuf_noncanonical]",
  },
  {
    name: "a singular message field twice", request: grpc(caller("billing"), grpcFrame(Uint8Array.from([0x0a, 6, ...ascii("orders"), 0x1a, 2, 0x08, 0x01, 0x1a, 6, 0x12, 4, ...ascii("json")]))),
    decision: "deny", rule: null, reason: /\(its condition failed: cannot read the request body: singular protobuf field occurs more than once \(field 3\)\)$/,
    details: "spiffe_authz_denied[default:protobuf_noncanonical]",
  },
  {
    name: "a staging caller, even for its own app", request: grpc(caller("billing", "staging"), grpcFrame(encode({ appname: "billing" }))),
    decision: "deny", rule: "prod-only", reason: /^denied by rule "prod-only"$/, details: "spiffe_authz_denied[prod-only]",
  },
  {
    name: "no client certificate", request: grpc("", grpcFrame(encode({ appname: "billing" }))),
    decision: "deny", rule: "prod-only", reason: /^denied by rule "prod-only"$/, details: "spiffe_authz_denied[prod-only]",
  },
];
// An empty peer means none.
for (const l of lines) if (l.request.peer === "") delete l.request.peer;

const dir = mkdtempSync(path.join(tmpdir(), "spiffe-authz-config-service-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe(`check --batch on ${present ? "examples/config-service" : "tests/cases/conditions-grpc (the example is absent)"}`, () => {
  requireReleaseWasm();

  it("gives the right decision and reason for every body, in order", async () => {
    const batch = path.join(dir, "requests.jsonl");
    writeFileSync(batch, lines.map((l) => JSON.stringify(l.request)).join("\n") + "\n");
    let stdout = "";
    let stderr = "";
    const io: CliIO = { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) }, readStdin: async () => "" };
    const code = await runCheck(["--policy", POLICY, "--proto", PROTO, "--batch", batch], io);
    assert.equal(code, 0, stderr);
    const results = stdout.trim().split("\n").map((l) => JSON.parse(l) as { decision: string; rule: string | null; reason: string; grpcStatus: number | null });
    assert.equal(results.length, lines.length);
    results.forEach((r, i) => {
      const l = lines[i];
      assert.equal(r.decision, l.decision, `${l.name}: ${r.reason}`);
      assert.equal(r.rule, l.rule, l.name);
      assert.match(r.reason, l.reason, l.name);
      assert.equal(r.grpcStatus, l.decision === "deny" ? 7 : null, l.name);
    });
  });

  it("puts the rule or the cause in the response details Envoy logs", async () => {
    const host = await ProxyWasmHost.load({ allowOnHeadersStopIteration: true });
    assert.equal(host.configure(compiled.config), true);
    for (const l of lines) {
      const req = l.request as { peer?: string; bodyBase64?: string; method: string; path: string; authority: string; headers: Record<string, string> };
      const r = host.request({ ...req, peer: req.peer ?? null, body: req.bodyBase64 === undefined ? undefined : Buffer.from(req.bodyBase64, "base64") });
      assert.equal(r.localReply?.details ?? null, l.details, l.name);
    }
  });
});
