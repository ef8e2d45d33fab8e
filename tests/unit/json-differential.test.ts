// Differential fuzzer for JSON request bodies (tests/cel/json-fuzz.ts): build/release.wasm in the TypeScript host
// against body-parser's decoding, JSON.parse and a model of the other mainstream readers. Whenever the filter
// reads a value, every reader reads the same value there (or refuses the request); every refusal names the cause
// docs/cel.md gives it; no trap; memory flat.
//
// JSON_DIFF_SEED and JSON_DIFF_CASES override the seed and the case count (the long run: JSON_DIFF_CASES=1000000,
// about ten minutes); a failure prints the seed and the first disagreeing cases, each reproducible with
// generateCase(seed, index).
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import type { AddressInfo } from "node:net";
import { isDeepStrictEqual } from "node:util";
import express from "express";
import type { ErrorRequestHandler } from "express";
import { ensureWasm } from "../../dev/envoy/wasm.ts";
import { appHeaders, bodyParsers, generateCase, runJsonFuzz, type JsonFuzzReport } from "../cel/json-fuzz.ts";
import { runBodyParser, type AppResult } from "../cel/json-readers.ts";

const seed = process.env.JSON_DIFF_SEED !== undefined ? Number(process.env.JSON_DIFF_SEED) : 20251205;
const cases = process.env.JSON_DIFF_CASES !== undefined ? Number(process.env.JSON_DIFF_CASES) : 20000;

function summary(r: JsonFuzzReport): string {
  const rejected = Object.entries(r.rejected).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(", ");
  return `json differential: seed ${r.seed}, ${r.cases} cases, ${r.accepted} accepted (${r.allowed} allowed), rejected: ${rejected}; ` +
    `${r.disagreementCount} disagreements ${JSON.stringify(r.byClass)}, ${r.traps} traps, memory ${r.memoryBytes.start} -> ${r.memoryBytes.end} bytes ` +
    `(${r.ms} ms); body-parser: ${JSON.stringify(r.app)}; allowed and refused by the app: ${r.allowedAppRefused}`;
}

test("JSON_DIFF_SEED and JSON_DIFF_CASES are integers", () => {
  assert.ok(Number.isInteger(seed) && Number.isInteger(cases) && cases > 0);
});

test(`build/release.wasm reads JSON bodies as body-parser and JSON.parse do, or refuses them (${cases} cases, seed ${seed})`, { timeout: 3_600_000 }, async () => {
  await ensureWasm(() => {});
  const progress = (n: number, rep: JsonFuzzReport) => {
    if (n % 100000 === 0) console.log(`  ${n} cases, ${rep.disagreementCount} disagreements, ${rep.traps} traps`);
  };
  const r = await runJsonFuzz({ seed, cases, progress });
  console.log(summary(r));
  const shown = r.disagreements.slice(0, 12).map((d) =>
    `case ${d.index} [${d.class}] ${d.what}; filter: ${d.filter}\n  tags: ${d.tags.join(",")}\n  headers: ${d.headers}\n  body: ${d.body}`);
  assert.equal(r.traps, 0, "traps");
  assert.deepEqual(r.slow, [], "filter calls over 2 s");
  assert.equal(r.disagreementCount, 0, `seed ${seed} (rerun with JSON_DIFF_SEED=${seed}):\n${shown.join("\n")}`);
  assert.equal(r.memoryBytes.end, r.memoryBytes.start, "memory grew");
  // The run must reach every answer, or agreement would mean little.
  assert.ok(r.allowed > cases / 10 && r.accepted - r.allowed > cases / 20, "too few accepted bodies");
  for (const cause of ["json_media_type", "json_not_utf8", "json_content_encoding", "json_ambiguous", "invalid_json"]) {
    assert.ok((r.rejected[cause] ?? 0) > cases / 200, `too few ${cause} refusals`);
  }
  for (const k of ["parsed", "unparsed", "refused 415 charset.unsupported", "refused 415 encoding.unsupported", "refused 400 entity.parse.failed"]) {
    assert.ok((r.app[k] ?? 0) > cases / 500, `body-parser answered '${k}' too rarely`);
  }
});

test("the generator covers each class of the reproduction (seeded: the same cases every run)", () => {
  const tags = new Map<string, number>();
  const n = Math.min(cases, 5000);
  for (let i = 0; i < n; i++) for (const t of generateCase(seed, i).tags) tags.set(t, (tags.get(t) ?? 0) + 1);
  for (const t of ["utf7-dual", "repeated-content-type", "dup-probe-key", "dup-ancestor", "dup-in-object", "invalid-utf8", "bom",
    "near-miss", "encoded-utf-16le", "compressed-gzip", "compressed-br", "deep", "no-content-type", "trailing", "mutated"]) {
    assert.ok((tags.get(t) ?? 0) > 0, `no '${t}' case in ${n}`);
  }
});

/** One raw HTTP/1.1 request, headers exactly as given (node's client would normalise them). */
function rawPost(port: number, path: string, headers: Record<string, string>, body: Uint8Array): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    sock.on("data", (d) => chunks.push(d));
    sock.on("error", reject);
    sock.setTimeout(10_000, () => sock.destroy(new Error(`no answer to ${path} ${JSON.stringify(headers)}`)));
    sock.on("end", () => {
      const all = Buffer.concat(chunks).toString("latin1");
      const split = all.indexOf("\r\n\r\n");
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(all)?.[1]);
      try {
        resolve({ status, json: JSON.parse(Buffer.from(all.slice(split + 4), "latin1").toString("utf8")) });
      } catch {
        reject(new Error(`not a json answer: ${JSON.stringify(all.slice(0, 300))}`));
      }
    });
    const head = Object.entries({ ...headers, "content-length": String(body.length) }).map(([k, v]) => `${k}: ${v}\r\n`).join("");
    // write, not end: node's http server closes a connection the client half-closed before its answer is written.
    sock.write(Buffer.concat([Buffer.from(`POST ${path} HTTP/1.1\r\nhost: app\r\nconnection: close\r\n${head}\r\n`, "latin1"), body]));
  });
}

test("the body-parser oracle answers as a real Express server does (first 300 cases)", async () => {
  const { strict, lax } = bodyParsers();
  const app = express();
  const answer = (req: express.Request, res: express.Response) => {
    res.json(req.body === undefined ? { kind: "unparsed" } : { kind: "parsed", body: req.body });
  };
  app.post("/strict", strict, answer);
  app.post("/lax", lax, answer);
  const onError: ErrorRequestHandler = (err, _req, res, _next) => {
    const e = err as { status?: number; type?: string; message?: string };
    res.status(e.status ?? 500).json({ kind: "refused", status: e.status ?? 500, type: e.type ?? String(e.message) });
  };
  app.use(onError);
  const server = app.listen(0, "127.0.0.1");
  await new Promise<void>((r) => server.once("listening", () => r()));
  const port = (server.address() as AddressInfo).port;
  try {
    const { strict: s, lax: l } = bodyParsers();
    let compared = 0;
    for (let i = 0; i < Math.min(300, cases); i++) {
      const c = generateCase(seed, i);
      const headers = appHeaders(c);
      for (const [path, mw] of [["/strict", s], ["/lax", l]] as const) {
        const real = await rawPost(port, path, headers, c.body);
        const fake: AppResult = await runBodyParser(mw, headers, c.body);
        // Both through JSON text: the server's answer went through res.json (-0 becomes 0 there).
        const want = JSON.parse(JSON.stringify(fake)) as unknown;
        assert.ok(isDeepStrictEqual(real.json, want), `case ${i} ${path} ${JSON.stringify(headers)}: express ${JSON.stringify(real.json)}, oracle ${JSON.stringify(want)}`);
        if (fake.kind === "refused") assert.equal(real.status, fake.status);
        compared++;
      }
    }
    assert.equal(compared, 2 * Math.min(300, cases));
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});
