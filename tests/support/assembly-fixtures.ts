// Generates tests/assembly/fixtures.ts, the data the as-pect tests cannot make themselves: raw DEFLATE streams from
// node's zlib (codec.spec.ts inflates them) and a table from the real encoder (table.spec.ts loads it).
//
//   node --import tsx tests/support/assembly-fixtures.ts           writes the file
//   node --import tsx tests/support/assembly-fixtures.ts --check   fails when the file differs from what it writes
//
// tests/unit/assembly-fixtures.test.ts runs the check, so the committed file is always what this script writes.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import zlib from "node:zlib";

import { compileTexts } from "../../src/compiler/index.ts";
import type { PredicateIR, RuleIR, TableIR } from "../../src/compiler/ir.ts";
import { configString, encodeBody, encodeEnvelope, sha256Prefix } from "../../src/compiler/table.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const FIXTURES_PATH = path.join(ROOT, "tests/assembly/fixtures.ts");

// sampleText() and xorshiftBytes() of tests/assembly/helpers.ts: the as-pect tests rebuild the plain texts with
// them and compare the inflated bytes.
const TOKENS = [
  "spiffe://",
  "cluster.local",
  "/ns/",
  "shop",
  "/sa/",
  "orders",
  " allow",
  " deny",
  " ",
  "\n",
  "rule-",
  "{**}",
];

export function sampleText(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0;
  let o = 0;
  while (o < n) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const r = x >>> 16;
    if (r % 7 === 0) {
      out[o++] = 48 + (r % 10);
      continue;
    }
    const t = TOKENS[r % TOKENS.length];
    for (let i = 0; i < t.length && o < n; i++) out[o++] = t.charCodeAt(i);
  }
  return out;
}

export function xorshiftBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** kind 0: sampleText, 1: xorshiftBytes, 2: a run of "a" (codec.spec.ts plainOf). */
function plain(kind: number, n: number, seed: number): Uint8Array {
  if (kind === 0) return sampleText(n, seed);
  if (kind === 1) return xorshiftBytes(n, seed);
  return new Uint8Array(n).fill(97);
}

// Each exercises another part of the inflater: the empty stream, fixed and stored blocks, dynamic Huffman tables
// at two levels, incompressible bytes, and (Z_RLE) matches at distance 1 far longer than 258 bytes in all.
const DEFLATE_CASES: [name: string, kind: number, n: number, seed: number, level: number, strategy?: number][] = [
  ["empty", 0, 0, 1, 9],
  ["short fixed", 0, 40, 2, 9],
  ["stored level 0", 0, 3000, 3, 0],
  ["dynamic 20k", 0, 20000, 4, 9],
  ["dynamic level 1", 0, 40000, 5, 1],
  ["random 5000", 1, 5000, 6, 9],
  ["long runs", 2, 10000, 7, 9, zlib.constants.Z_RLE],
];
const FIXED_N = 2000;
const FIXED_SEED = 8;

const exact = (value: string) => ({ kind: "exact" as const, value });
const pred = (field: PredicateIR["field"], patterns: PredicateIR["patterns"], arg = ""): PredicateIR => ({
  field,
  negate: false,
  ignoreCase: false,
  arg,
  patterns,
});
const ruleOf = (
  id: string,
  action: RuleIR["action"],
  sources: PredicateIR[][],
  operations: PredicateIR[][],
): RuleIR => ({
  id,
  action,
  dryRun: false,
  sources: sources.map((predicates) => ({ predicates })),
  operations: operations.map((predicates) => ({ predicates })),
  conditions: [],
  expr: null,
});

/** The compiled table table.spec.ts decides with (its rules are described next to COMPILED_CONFIG). */
const COMPILED_IR: TableIR = {
  defaultAction: "deny",
  defaultKind: 2,
  maxBodyBytes: 0,
  grpcFirst: false,
  expr: null,
  label: "fixture",
  rules: [
    ruleOf("deny-evil", "deny", [[pred("principal", [exact("spiffe://prod.example.com/app/evil")])]], []),
    ruleOf(
      "allow-orders-read",
      "allow",
      [[pred("attribute", [exact("billing"), exact("orders")], "app")]],
      [[pred("method", [exact("GET")]), pred("path", [{ kind: "prefix", value: "/api/" }])]],
    ),
    ruleOf("audit-admin", "audit", [], [[pred("path", [{ kind: "prefix", value: "/admin" }])]]),
    ruleOf("read-web", "allow", [[pred("attribute", [exact("web")], "app")]], [[pred("method", [exact("GET")])]]),
    ruleOf("read-api", "allow", [[pred("attribute", [exact("api")], "app")]], [[pred("method", [exact("GET")])]]),
  ],
  schemas: [{ trustDomain: "prod.example.com", keys: ["app"] }],
};

/**
 * A table with what the test encoder (tests/assembly/helpers.ts TableB) writes besides COMPILED_IR: negation,
 * ignore-case hosts, header arguments, every pattern kind the test encoder has, several clauses, `when`
 * conditions, dry-run, families of identical rules and hole families, two schemas. table.spec.ts builds the
 * same table with TableB and expects the same body bytes.
 */
const OVERLAP_IR: TableIR = {
  defaultAction: "allow",
  defaultKind: 1,
  maxBodyBytes: 0,
  grpcFirst: false,
  expr: null,
  label: "overlap",
  rules: [
    ruleOf(
      "hole-a",
      "allow",
      [[pred("principal", [exact("spiffe://td/a")]), pred("attribute", [exact("x")], "env")]],
      [[pred("method", [exact("GET")])]],
    ),
    ruleOf(
      "hole-b",
      "allow",
      [[pred("principal", [exact("spiffe://td/b")]), pred("attribute", [exact("x")], "env")]],
      [[pred("method", [exact("GET")])]],
    ),
    ruleOf(
      "hole-c",
      "allow",
      [[pred("principal", [exact("spiffe://td/c")]), pred("attribute", [exact("x")], "env")]],
      [[pred("method", [exact("GET")])]],
    ),
    ruleOf(
      "same-1",
      "deny",
      [[pred("trustDomain", [exact("evil.td")])]],
      [[pred("path", [{ kind: "suffix", value: ".php" }])]],
    ),
    ruleOf(
      "same-2",
      "deny",
      [[pred("trustDomain", [exact("evil.td")])]],
      [[pred("path", [{ kind: "suffix", value: ".php" }])]],
    ),
    {
      ...ruleOf(
        "mixed",
        "deny",
        [
          [pred("principal", [exact("spiffe://td/z"), exact("spiffe://td/y")])],
          [pred("trustDomain", [exact("other.td")])],
        ],
        [
          [{ ...pred("host", [exact("api.example.com"), { kind: "suffix", value: ".internal" }]), ignoreCase: true }],
          [
            pred("path", [{ kind: "template", value: "/v1/{*}/items" }]),
            { ...pred("port", [exact("8443")]), negate: true },
          ],
        ],
      ),
      conditions: [
        pred("header", [{ kind: "present", value: "" }], "x-tenant"),
        { ...pred("sni", [{ kind: "prefix", value: "api." }]), negate: true },
      ],
    },
    { ...ruleOf("dry", "allow", [[pred("attribute", [exact("web"), exact("api")], "app")]], []), dryRun: true },
    ruleOf("audit-all", "audit", [], []),
  ],
  schemas: [
    { trustDomain: "a.td", keys: ["app", "env"] },
    { trustDomain: "td", keys: ["env"] },
  ],
};

/** The golden case conditions-grpc-first (grpcMessages "first", maxBytes 512), compiled: flow.spec.ts reads frames with it. */
function grpcFirstConfig(): string {
  const dir = path.join(ROOT, "tests/cases/conditions-grpc-first");
  return compileTexts(
    [{ file: "policy.yaml", text: fs.readFileSync(path.join(dir, "policy.yaml"), "utf8") }],
    undefined,
    { protos: [path.join(dir, "upload.proto")] },
  ).config;
}

/** The text of tests/assembly/fixtures.ts. */
export function generateFixtures(): string {
  const bytes = (b: Uint8Array) => `[${Array.from(b).join(",")}]`;
  const cases = DEFLATE_CASES.map(
    ([name, kind, n, seed, level, strategy]) =>
      `  new DeflateCase(${JSON.stringify(name)}, ${kind}, ${n}, ${seed}, ${level}, ${bytes(zlib.deflateRawSync(plain(kind, n, seed), { level, strategy }))}),\n`,
  );
  const fixed = zlib.deflateRawSync(sampleText(FIXED_N, FIXED_SEED), { level: 9, strategy: zlib.constants.Z_FIXED });
  const body = encodeBody(COMPILED_IR);
  // Version 2 in the header: the engine still reads version-2 tables, and this body uses nothing version 3 added.
  const envelope = Buffer.from(encodeEnvelope(body));
  envelope.writeUInt16LE(2, 4);
  const hash = sha256Prefix(body).toString("hex");
  return `// Generated by tests/support/assembly-fixtures.ts from zlib.deflateRawSync and the real encoder
// (src/compiler/table.ts): regenerate with \`node --import tsx tests/support/assembly-fixtures.ts\`, do not edit.
// The plain texts come from sampleText() and xorshiftBytes() in helpers.ts (the same generators).

export class DeflateCase {
  constructor(public name: string, public kind: i32, public n: i32, public seed: u32, public level: i32, public data: StaticArray<u8>) {}
}

export const DEFLATE_CASES: DeflateCase[] = [
${cases.join("")}];

export const FIXED_DEFLATE: StaticArray<u8> = ${bytes(fixed)};
export const FIXED_N: i32 = ${FIXED_N};
export const FIXED_SEED: u32 = ${FIXED_SEED};

// "${hash}": deny-evil (principal), allow-orders-read (app in [orders, billing], GET /api/*), audit-admin (path
// /admin*), then read-web and read-api (app web / api, GET): one family; default deny (kind 2); schema
// prod.example.com requires "app".
export const COMPILED_CONFIG: string = ${JSON.stringify(configString(envelope))};
export const COMPILED_HASH: string = "${hash}";

// The table of OVERLAP_IR in tests/support/assembly-fixtures.ts, from the real encoder.
export const OVERLAP_CONFIG: string = ${JSON.stringify(configString(encodeEnvelope(encodeBody(OVERLAP_IR))))};

// tests/cases/conditions-grpc-first compiled: own-uploads allows /demo.upload.v1.Uploads/Upload when the first
// message's owner (field 1) is the caller's app; grpcMessages "first", maxBytes 512.
export const GRPC_FIRST_CONFIG: string = ${JSON.stringify(grpcFirstConfig())};
`;
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const text = generateFixtures();
  if (process.argv.includes("--check")) {
    if (fs.readFileSync(FIXTURES_PATH, "utf8") !== text) {
      console.error(
        `${path.relative(ROOT, FIXTURES_PATH)} is not what tests/support/assembly-fixtures.ts writes: regenerate it`,
      );
      process.exit(1);
    }
  } else {
    fs.writeFileSync(FIXTURES_PATH, text);
  }
}
