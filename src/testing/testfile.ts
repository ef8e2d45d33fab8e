/**
 * Policy test files (`*.test.yaml`, docs/policy-tests.md): the policies under test and a list of requests with the
 * decision each must get. Parsed with positions (src/policy/yaml.ts), so every problem is `file:line:col: message`,
 * and strictly: an unknown field is an error (a misspelt `expect` must not silently pass).
 *
 * ```yaml
 * policies: [orders.yaml]                # relative to this file; a directory means its policy files
 * tests:
 *   - name: billing reads an order
 *     request: {peer: spiffe://prod.example.com/app/billing, method: GET, path: /orders/42}
 *     expect: {decision: allow, rule: billing-reads}
 * ```
 */
import { readdirSync, type Stats, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { CheckRequest } from "../check/checker.ts";
import { type Diagnostics, q, type Pos } from "../policy/diagnostics.ts";
import { entry, isNull, parseYamlFile, toJS, type YMap, type YNode } from "../policy/yaml.ts";

export interface Expectation {
  decision: "allow" | "deny";
  /** the rule that must decide; null: the default must decide; undefined: not checked */
  rule?: string | null;
  /** a substring of the reason, or a regular expression (`/.../`) */
  reason?: string | RegExp;
  status?: number;
  grpcStatus?: number | null;
}

export interface PolicyTestCase {
  name: string;
  pos: Pos;
  request: CheckRequest;
  expect: Expectation;
}

export interface PolicyTestFile {
  file: string;
  /** absolute paths of the policy files */
  policies: string[];
  protos: string[];
  protoPaths: string[];
  workload?: { namespace?: string; labels: Record<string, string>; rootNamespace?: string };
  tests: PolicyTestCase[];
}

const TOP_FIELDS = ["policies", "protos", "protoPaths", "workload", "tests"];
const WORKLOAD_FIELDS = ["namespace", "labels", "rootNamespace"];
const CASE_FIELDS = ["name", "request", "expect"];
const REQUEST_FIELDS = ["peer", "method", "path", "authority", "headers", "body", "json", "bodyBase64", "port", "sni", "jwt"];
const EXPECT_FIELDS = ["decision", "rule", "reason", "status", "grpcStatus"];

/** Test files are named `*.test.yaml` or `*.test.yml`. */
export function isTestFile(name: string): boolean {
  return /\.test\.ya?ml$/.test(name);
}

/** Every test file under `dir`, sorted (directories named node_modules or starting with "." are skipped). */
export function findTestFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (e.isDirectory()) {
        if (e.name !== "node_modules" && !e.name.startsWith(".")) walk(join(d, e.name));
      } else if (isTestFile(e.name)) out.push(join(d, e.name));
    }
  };
  walk(dir);
  return out;
}

/** The policy files a `policies:` entry names: the file, or a directory's `*.yaml`/`*.yml` that are not tests. */
function policyFiles(path: string): string[] | null {
  let st: Stats;
  try {
    st = statSync(path);
  } catch {
    return null;
  }
  if (!st.isDirectory()) return [path];
  return readdirSync(path)
    .filter((n) => /\.ya?ml$/.test(n) && !isTestFile(n))
    .sort()
    .map((n) => join(path, n));
}

class Reader {
  constructor(readonly diags: Diagnostics) {}

  map(n: YNode, what: string, fields: string[]): YMap | null {
    if (n.kind !== "map") {
      this.diags.error(n.pos, `${what} must be a mapping`);
      return null;
    }
    for (const e of n.entries) {
      if (!fields.includes(e.key)) this.diags.error(e.keyPos, `unknown field ${q(e.key)} in ${what} (fields: ${fields.join(", ")})`);
    }
    return n;
  }

  string(n: YNode | undefined, what: string): string | undefined {
    if (n === undefined || isNull(n)) return undefined;
    if (n.kind !== "scalar" || typeof n.value !== "string") {
      // A plain scalar that YAML reads as a number or a boolean is still text to us (`path: /1` is fine, `method: 1` not).
      if (n.kind === "scalar" && n.value !== null && !n.quoted && typeof n.value !== "object") return n.text;
      this.diags.error(n.pos, `${what} must be a string`);
      return undefined;
    }
    return n.value;
  }

  strings(n: YNode | undefined, what: string): string[] {
    if (n === undefined || isNull(n)) return [];
    if (n.kind === "scalar") {
      const s = this.string(n, what);
      return s === undefined ? [] : [s];
    }
    if (n.kind !== "seq") {
      this.diags.error(n.pos, `${what} must be a list of strings`);
      return [];
    }
    return n.items.map((i) => this.string(i, `each of ${what}`)).filter((s): s is string => s !== undefined);
  }

  integer(n: YNode | undefined, what: string, min: number, max: number): number | undefined {
    if (n === undefined || isNull(n)) return undefined;
    if (n.kind !== "scalar" || typeof n.value !== "number" || !Number.isInteger(n.value) || n.value < min || n.value > max) {
      this.diags.error(n.pos, `${what} must be an integer from ${min} to ${max}`);
      return undefined;
    }
    return n.value;
  }
}

function parseRequest(r: Reader, n: YNode): CheckRequest {
  const m = r.map(n, "request", REQUEST_FIELDS);
  const req: CheckRequest = {};
  if (m === null) return req;
  const peer = entry(m, "peer")?.value;
  if (peer !== undefined) req.peer = peer.kind === "seq" ? r.strings(peer, "peer") : r.string(peer, "peer");
  req.method = r.string(entry(m, "method")?.value, "method");
  req.path = r.string(entry(m, "path")?.value, "path");
  req.authority = r.string(entry(m, "authority")?.value, "authority");
  req.sni = r.string(entry(m, "sni")?.value, "sni");
  req.port = r.integer(entry(m, "port")?.value, "port", 1, 65535);
  const headers = entry(m, "headers")?.value;
  if (headers !== undefined) {
    if (headers.kind !== "map") {
      r.diags.error(headers.pos, "headers must be a mapping of names to a value or a list of values (one header line each)");
    } else {
      const h: Record<string, string | string[]> = {};
      for (const e of headers.entries) {
        if (e.key.startsWith(":")) {
          r.diags.error(e.keyPos, `pseudo-header ${q(e.key)} cannot be set as a header; use method, path or authority`);
          continue;
        }
        if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(e.key)) {
          r.diags.error(e.keyPos, `invalid header name ${q(e.key)}`);
          continue;
        }
        h[e.key.toLowerCase()] = e.value.kind === "seq" ? r.strings(e.value, `header ${q(e.key)}`) : r.string(e.value, `header ${q(e.key)}`) ?? "";
      }
      req.headers = h;
    }
  }
  const bodies = ["body", "json", "bodyBase64"].filter((k) => entry(m, k) !== undefined);
  if (bodies.length > 1) r.diags.error(entry(m, bodies[1])!.keyPos, `give one of body, json and bodyBase64, not ${bodies.join(" and ")}`);
  const body = r.string(entry(m, "body")?.value, "body");
  if (body !== undefined) req.body = new TextEncoder().encode(body);
  const json = entry(m, "json")?.value;
  if (json !== undefined) {
    req.body = new TextEncoder().encode(JSON.stringify(toJS(json)));
    req.headers = { "content-type": "application/json", ...(req.headers ?? {}) };
  }
  const b64 = r.string(entry(m, "bodyBase64")?.value, "bodyBase64");
  if (b64 !== undefined) {
    if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(b64)) r.diags.error(entry(m, "bodyBase64")!.value.pos, "bodyBase64 is not valid base64");
    else req.body = new Uint8Array(Buffer.from(b64, "base64"));
  }
  const jwt = entry(m, "jwt")?.value;
  if (jwt !== undefined) {
    if (jwt.kind !== "map") r.diags.error(jwt.pos, "jwt must be a mapping: the claims of a token jwt_authn verified");
    else req.jwt = toJS(jwt) as Record<string, unknown>;
  }
  return req;
}

function parseExpect(r: Reader, n: YNode): Expectation | null {
  const m = r.map(n, "expect", EXPECT_FIELDS);
  if (m === null) return null;
  const d = entry(m, "decision");
  if (d === undefined) {
    r.diags.error(m.pos, 'missing required field "decision" in expect (allow or deny)');
    return null;
  }
  const decision = r.string(d.value, "decision");
  if (decision !== "allow" && decision !== "deny") {
    if (decision !== undefined) r.diags.error(d.value.pos, `decision must be allow or deny, not ${q(decision)}`);
    return null;
  }
  const exp: Expectation = { decision };
  const rule = m.entries.find((e) => e.key === "rule");
  if (rule !== undefined) exp.rule = isNull(rule.value) ? null : r.string(rule.value, "rule");
  const reason = entry(m, "reason");
  if (reason !== undefined) {
    const text = r.string(reason.value, "reason");
    if (text !== undefined) {
      const re = /^\/(.*)\/([imsu]*)$/s.exec(text);
      if (re !== null) {
        try {
          exp.reason = new RegExp(re[1], re[2]);
        } catch (err) {
          r.diags.error(reason.value.pos, `reason ${q(text)} is not a valid regular expression: ${(err as Error).message}`);
        }
      } else exp.reason = text;
    }
  }
  exp.status = r.integer(entry(m, "status")?.value, "status", 100, 599);
  const grpc = m.entries.find((e) => e.key === "grpcStatus");
  if (grpc !== undefined) exp.grpcStatus = isNull(grpc.value) ? null : r.integer(grpc.value, "grpcStatus", 0, 16);
  if (decision === "allow" && exp.rule !== undefined && exp.rule !== null && rule !== undefined) {
    // An allow may name its rule; nothing more to check here.
  }
  return exp;
}

/** Parses one test file. Problems go to `diags` (`file:line:col`); the result holds what could be read. */
export function parseTestFile(file: string, text: string, diags: Diagnostics): PolicyTestFile | null {
  const docs = parseYamlFile(file, text, diags);
  if (docs.length === 0) {
    if (!diags.failed) diags.error({ file, line: 1, col: 1 }, "empty test file: expected policies and tests");
    return null;
  }
  if (docs.length > 1) diags.error(docs[1].pos, "a test file holds one YAML document");
  const r = new Reader(diags);
  const root = r.map(docs[0].root, "a test file", TOP_FIELDS);
  if (root === null) return null;
  const base = dirname(resolve(file));
  const out: PolicyTestFile = { file, policies: [], protos: [], protoPaths: [], tests: [] };

  const policies = entry(root, "policies");
  if (policies === undefined) {
    diags.error(root.pos, 'missing required field "policies": the policy files under test, relative to this file');
  } else {
    const items = policies.value.kind === "seq" ? policies.value.items : [policies.value];
    for (const item of items) {
      const p = r.string(item, "each of policies");
      if (p === undefined) continue;
      const files = policyFiles(resolve(base, p));
      if (files === null) diags.error(item.pos, `policy file ${q(p)} does not exist (paths are relative to the test file)`);
      else if (files.length === 0) diags.error(item.pos, `directory ${q(p)} holds no policy files (*.yaml)`);
      else out.policies.push(...files);
    }
  }
  out.protos = r.strings(entry(root, "protos")?.value, "protos").map((p) => resolve(base, p));
  out.protoPaths = r.strings(entry(root, "protoPaths")?.value, "protoPaths").map((p) => resolve(base, p));
  const workload = entry(root, "workload")?.value;
  if (workload !== undefined) {
    const w = r.map(workload, "workload", WORKLOAD_FIELDS);
    if (w !== null) {
      const labels: Record<string, string> = {};
      const l = entry(w, "labels")?.value;
      if (l !== undefined) {
        if (l.kind !== "map") diags.error(l.pos, "labels must be a mapping");
        else for (const e of l.entries) labels[e.key] = r.string(e.value, `label ${q(e.key)}`) ?? "";
      }
      out.workload = {
        namespace: r.string(entry(w, "namespace")?.value, "namespace"),
        labels,
        rootNamespace: r.string(entry(w, "rootNamespace")?.value, "rootNamespace"),
      };
    }
  }

  const tests = entry(root, "tests");
  if (tests === undefined) {
    diags.error(root.pos, 'missing required field "tests": a list of {name, request, expect}');
  } else if (tests.value.kind !== "seq") {
    diags.error(tests.value.pos, "tests must be a list");
  } else {
    const names = new Map<string, Pos>();
    tests.value.items.forEach((item, i) => {
      const m = r.map(item, `tests[${i}]`, CASE_FIELDS);
      if (m === null) return;
      const nameEntry = entry(m, "name");
      const name = nameEntry !== undefined ? r.string(nameEntry.value, "name") : undefined;
      if (nameEntry === undefined) diags.error(m.pos, `missing required field "name" in tests[${i}]`);
      if (name !== undefined) {
        const prev = names.get(name);
        if (prev !== undefined) diags.error(nameEntry!.value.pos, `test name ${q(name)} is used twice (first at line ${prev.line})`);
        names.set(name, nameEntry!.value.pos);
      }
      const req = entry(m, "request");
      const exp = entry(m, "expect");
      if (req === undefined) diags.error(m.pos, `missing required field "request" in tests[${i}]`);
      if (exp === undefined) diags.error(m.pos, `missing required field "expect" in tests[${i}]`);
      const request = req !== undefined ? parseRequest(r, req.value) : {};
      const expect = exp !== undefined ? parseExpect(r, exp.value) : null;
      if (name !== undefined && expect !== null && req !== undefined) out.tests.push({ name, pos: m.pos, request, expect });
    });
    if (tests.value.items.length === 0) diags.error(tests.value.pos, "tests is empty");
  }
  return out;
}
