/**
 * The protobuf differential: the filter (build/release.wasm in the TypeScript host, a real table compiled from a
 * policy) against protobufjs as @grpc/proto-loader configures it for a grpc-js server (examples/config-service/
 * server.ts: keepCase, longs String, defaults) and against protobuf-es (@bufbuild/protobuf, by reflection).
 *
 * Each message is one gRPC request. The policy (`differentialPolicy`) has one DENY rule per method whose condition
 * compares every field a condition can read (each scalar of the request message and of its messages a few levels
 * down, and has() of those with presence) with an expected value sent in a request header. So the filter's answer
 * says what it read: allowed (it read the message, every value as expected), denied by the rule with a body error
 * (it refused the message, with the reason), or denied by the rule without one (it read a value that differs).
 *
 * Invariant: whenever the filter reads a message, both decoders accept it, both read the same message (every field,
 * normalized), and every value the filter read is theirs. The expected values come from protobuf-es.
 */
import { createRequire } from "node:module";
import path from "node:path";
import { fromBinary, isFieldSet, toBinary, type DescField, type DescMessage, type Message, type Registry } from "@bufbuild/protobuf";
import type protobufjs from "protobufjs";
import { loadProtos, type ProtoRegistry } from "../../src/cel/index.ts";
import { messageSchema } from "../../src/cel/proto.ts";
import type { ProtoEnumSchema, ProtoMessageSchema } from "../../src/cel/bytecode.ts";
import { compileTexts } from "../../src/compiler/index.ts";
import { ProxyWasmHost, type RequestResult } from "../../src/host/index.ts";
import { registryFromProtobufjs } from "../support/protobuf-es.ts";
import { Rng } from "../cel/generate.ts";
import { CANONICAL_MUTATIONS, MUTATIONS, MessageGen, Mutator, serialize, type Mutation } from "./protobuf-gen.ts";
import type { FuzzReport } from "./targets.ts";

// The protobufjs a grpc-js server decodes with: @grpc/proto-loader's own dependency (7.x), not the root one.
const requireFromLoader = createRequire(createRequire(import.meta.url).resolve("@grpc/proto-loader"));
const protoLoader = requireFromLoader("@grpc/proto-loader") as typeof import("@grpc/proto-loader");
const protobuf7 = requireFromLoader("protobufjs") as typeof protobufjs;

/** What a condition can read: a scalar field (or has() of a field with presence) on a path of singular messages. */
export interface ReadPath {
  /** Field names from the request message. */
  readonly names: readonly string[];
  readonly kind: "string" | "int" | "uint" | "bool" | "double" | "has";
  /** The request header carrying the expected value. */
  readonly header: string;
}

export interface FuzzMethod {
  /** `/pkg.Service/Method` */
  readonly path: string;
  /** Full name of the request message. */
  readonly message: string;
  /** The filter's schema of it (what the table carries). */
  readonly schema: readonly ProtoMessageSchema[];
  readonly enums: readonly ProtoEnumSchema[];
  readonly desc: DescMessage;
  readonly paths: readonly ReadPath[];
  /** protobufjs 7 as @grpc/proto-loader configures it for a grpc-js server. */
  readonly deserialize: (bytes: Buffer) => Record<string, unknown>;
  /** protobufjs 7's own decoder and encoder (a message it decoded, written again). */
  readonly pbjsType: protobufjs.Type;
  readonly ruleId: string;
}

const CEL_KIND: Record<number, ReadPath["kind"]> = {
  1: "double", 2: "double", 3: "int", 4: "uint", 5: "int", 6: "uint", 7: "uint", 8: "bool", 9: "string", 13: "uint",
  14: "int", 15: "int", 16: "int", 17: "int", 18: "int",
};

/** The read paths of `desc`: its singular scalars (not bytes, not in a oneof) and those of its messages, `depth` levels. */
function readPaths(desc: DescMessage, depth: number, prefix: string[] = []): ReadPath[] {
  const out: ReadPath[] = [];
  const header = (names: string[], has = false) => `x-${has ? "h" : "e"}-${names.join("-").toLowerCase()}`;
  for (const f of desc.fields) {
    if (f.oneof) continue;
    const names = [...prefix, f.name];
    if (f.fieldKind === "scalar" || f.fieldKind === "enum") {
      const t = f.fieldKind === "enum" ? 14 : (f.scalar as number);
      // Conditions read neither bytes nor closed enums.
      if (t === 12 || (f.fieldKind === "enum" && !f.enum.open)) continue;
      out.push({ names, kind: CEL_KIND[t], header: header(names) });
      if (f.presence === 1) out.push({ names, kind: "has", header: header(names, true) });
    } else if (f.fieldKind === "message" && depth > 0) {
      out.push({ names, kind: "has", header: header(names, true) });
      out.push(...readPaths(f.message, depth - 1, names));
    }
  }
  return out;
}

/** The condition of a method's rule: true when some value the filter reads differs from the expected one. */
function differsCondition(paths: readonly ReadPath[]): string {
  const m = (p: ReadPath) => `request.grpc.message.${p.names.join(".")}`;
  const h = (p: ReadPath) => `request.headers['${p.header}']`;
  return paths.map((p) => {
    switch (p.kind) {
      case "string": return `${m(p)} != ${h(p)}`;
      case "has": return `has(${m(p)}) != (${h(p)} == 'true')`;
      case "double":
        return `(${h(p)} == 'nan' ? ${m(p)} == ${m(p)} : (${h(p)} == '-inf' ? ${m(p)} != -double('inf') : ${m(p)} != double(${h(p)})))`;
      default: return `string(${m(p)}) != ${h(p)}`;
    }
  }).join(" ||\n  ");
}

/** An AuthzPolicy: default allow, one DENY rule per method that matches when a read value differs. */
function differentialPolicy(methods: readonly { path: string; ruleId: string; paths: readonly ReadPath[] }[]): string {
  const rules = methods.map(({ path: p, ruleId, paths }) => {
    const [, service, method] = /^\/(.+)\/([^/]+)$/.exec(p)!;
    return `    - id: ${ruleId}\n      action: deny\n      to:\n        - grpc: {service: ${service}, methods: [${method}]}\n` +
      `      condition: >-\n        ${differsCondition(paths).replace(/\n/g, "\n      ")}\n`;
  });
  return `apiVersion: spiffe-authz.dev/v1\nkind: AuthzPolicy\nmetadata:\n  name: protobuf-differential\nspec:\n  default: allow\n  rules:\n${rules.join("")}`;
}

// --- normalization: what a decoder read, as comparable JSON -----------------------------------------------------

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");

function scalarText(v: unknown): string {
  if (typeof v === "number") return Number.isNaN(v) ? "nan" : Object.is(v, -0) ? "-0" : String(v);
  if (typeof v === "bigint" || typeof v === "boolean" || typeof v === "string") return String(v);
  if (v instanceof Uint8Array) return `0x${hex(v)}`;
  if (v && typeof v === "object" && "low" in v && "high" in v) return String(v); // a Long (longs: String not applied)
  return `?${typeof v}`;
}

const SIGNED_64 = new Set([3, 16, 18]);
/** protobufjs keys a map with 64-bit keys by an 8-character "hash" of the value's bytes. */
function pbjsMapKey(k: string, keyScalar: number): string {
  if ((keyScalar === 3 || keyScalar === 4 || keyScalar === 6 || keyScalar === 16 || keyScalar === 18) && k.length === 8) {
    let v = 0n;
    for (let i = 7; i >= 0; i--) v = (v << 8n) | BigInt(k.charCodeAt(i));
    return String(SIGNED_64.has(keyScalar) ? BigInt.asIntN(64, v) : v);
  }
  return k;
}

type Side = "pbjs" | "es";

function normValue(f: DescField, v: unknown, side: Side): unknown {
  if (f.fieldKind === "message" || (f.fieldKind === "list" && f.listKind === "message") || (f.fieldKind === "map" && f.mapKind === "message")) {
    return v === null || v === undefined ? "absent" : normMessage(f.message!, v as Record<string, unknown>, side);
  }
  return scalarText(v);
}

/** Every field of a decoded message: implicit scalars with their defaults, presence where the decoders keep it. */
export function normMessage(desc: DescMessage, o: Record<string, unknown>, side: Side): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const get = (f: DescField) => (side === "pbjs" ? o[f.name] : o[f.localName]);
  for (const f of desc.fields) {
    if (f.oneof) continue;
    const v = get(f);
    switch (f.fieldKind) {
      case "scalar":
      case "enum":
        if (f.proto.proto3Optional) {
          const set = side === "pbjs" ? Object.hasOwn(o, f.name) && v != null : isFieldSet(o as unknown as Message, f);
          out[f.name] = set ? scalarText(v) : "unset";
        } else {
          // proto2 optional: proto-loader's `defaults` hides presence, so compare the values only.
          out[f.name] = scalarText(v);
        }
        break;
      case "message":
        out[f.name] = normValue(f, v, side);
        break;
      case "list":
        out[f.name] = ((v as unknown[] | undefined) ?? []).map((x) => normValue(f, x, side));
        break;
      case "map": {
        const entries = Object.entries((v as Record<string, unknown> | undefined) ?? {}).map(([k, x]) => [
          side === "pbjs" ? pbjsMapKey(k, f.mapKey as number) : k, normValue(f, x, side),
        ] as const);
        out[f.name] = entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
        break;
      }
    }
  }
  for (const oneof of desc.oneofs) {
    if (side === "pbjs") {
      out[`oneof ${oneof.name}`] = oneof.fields
        .filter((f) => Object.hasOwn(o, f.name) && o[f.name] != null)
        .map((f) => [f.name, normValue(f, o[f.name], side)]);
    } else {
      const c = o[oneof.localName] as { case?: string; value?: unknown };
      const f = oneof.fields.find((x) => x.localName === c.case);
      out[`oneof ${oneof.name}`] = f ? [[f.name, normValue(f, c.value, side)]] : [];
    }
  }
  return out;
}

/** The header value a read path expects, from a protobuf-es message. */
function expected(desc: DescMessage, msg: Message, p: ReadPath): string {
  let d = desc;
  let o: Record<string, unknown> | undefined = msg as unknown as Record<string, unknown>;
  for (let i = 0; i < p.names.length; i++) {
    const f = d.fields.find((x) => x.name === p.names[i])!;
    const last = i === p.names.length - 1;
    if (last && p.kind === "has") {
      if (o === undefined) return "false";
      return String(f.fieldKind === "message" ? o[f.localName] !== undefined : isFieldSet(o as unknown as Message, f));
    }
    if (last) {
      const v = o === undefined ? undefined : o[f.localName];
      if (p.kind === "string") return (v as string | undefined) ?? "";
      if (p.kind === "bool") return String(v ?? false);
      if (p.kind === "double") {
        const x = (v as number | undefined) ?? 0;
        return Number.isNaN(x) ? "nan" : x === -Infinity ? "-inf" : x === Infinity ? "inf" : String(x);
      }
      return String(v ?? 0);
    }
    o = o === undefined ? undefined : (o[f.localName] as Record<string, unknown> | undefined);
    d = f.message!;
  }
  throw new Error("empty path");
}

// --- the harness ----------------------------------------------------------------------------------------------

export type DecodeResult = { ok: true; value: Record<string, unknown> } | { ok: false; error: string };

export interface FilterVerdict {
  /** read: allowed (every value as expected); refused: a body error; differs: it read a value that differs. */
  outcome: "read" | "refused" | "differs" | "trap" | "unexpected";
  /** The body error, without its field number. */
  reason?: string;
  detail: string;
}

export class ProtobufDifferential {
  private constructor(
    readonly methods: readonly FuzzMethod[],
    readonly host: ProxyWasmHost,
    readonly registry: ProtoRegistry,
    readonly esRegistry: Registry,
  ) {}

  /** Loads the .proto files, compiles the differential policy over `methodPaths`, configures the filter. */
  static async create(files: readonly string[], methodPaths: readonly string[], readDepth = 3): Promise<ProtobufDifferential> {
    const registry = loadProtos(files);
    const esRegistry = registryFromProtobufjs(registry.root);
    const definition = protoLoader.loadSync([...files], { keepCase: true, longs: String, defaults: true });
    const root7 = new protobuf7.Root();
    root7.loadSync([...files], { keepCase: true });
    const methods = methodPaths.map((p, i): FuzzMethod => {
      const info = registry.findMethod(p);
      if (!info) throw new Error(`no method ${p} in ${files.join(", ")}`);
      const message = info.requestType.fullName.replace(/^\./, "");
      const schema = messageSchema(info.requestType);
      if ("error" in schema) throw new Error(schema.error);
      const desc = esRegistry.getMessage(message);
      if (!desc) throw new Error(`protobuf-es has no ${message}`);
      const [, service, method] = /^\/(.+)\/([^/]+)$/.exec(p)!;
      const def = (definition[service] as Record<string, { requestDeserialize: (b: Buffer) => Record<string, unknown> }>)[method];
      return {
        path: p, message, schema: schema.messages, enums: schema.enums, desc, paths: readPaths(desc, readDepth), deserialize: def.requestDeserialize,
        pbjsType: root7.lookupType(message), ruleId: `differs-${i}`,
      };
    });
    const policy = differentialPolicy(methods);
    const compiled = compileTexts([{ file: "protobuf-differential.yaml", text: policy }], undefined, { protos: [...files] });
    const host = await ProxyWasmHost.load({ allowOnHeadersStopIteration: true });
    if (!host.configure(compiled.config)) throw new Error("the filter refused the differential table");
    return new ProtobufDifferential(methods, host, registry, esRegistry);
  }

  pbjs(m: FuzzMethod, bytes: Uint8Array): DecodeResult {
    try {
      return { ok: true, value: m.deserialize(Buffer.from(bytes)) };
    } catch (e) {
      return { ok: false, error: String((e as Error).message) };
    }
  }

  es(m: FuzzMethod, bytes: Uint8Array): { ok: true; value: Message } | { ok: false; error: string } {
    try {
      return { ok: true, value: fromBinary(m.desc, bytes) as Message };
    } catch (e) {
      return { ok: false, error: String((e as Error).message) };
    }
  }

  /** protobufjs's own encoder: the message it decoded from `bytes`, written again. */
  pbjsReencode(m: FuzzMethod, bytes: Uint8Array): Uint8Array {
    return m.pbjsType.encode(m.pbjsType.decode(bytes)).finish();
  }

  /** protobuf-es's own encoder: the message it decoded from `bytes`, written again. */
  esReencode(m: FuzzMethod, bytes: Uint8Array): Uint8Array {
    return toBinary(m.desc, fromBinary(m.desc, bytes));
  }

  /** Sends `bytes` as the one message of a gRPC request to `m`, the expected values from `expect` (protobuf-es). */
  filter(m: FuzzMethod, bytes: Uint8Array, expect: Message | undefined): FilterVerdict {
    const headers: Record<string, string> = { "content-type": "application/grpc" };
    for (const p of m.paths) headers[p.header] = expect === undefined ? "" : expected(m.desc, expect, p);
    const frame = Buffer.alloc(5 + bytes.length);
    frame.writeUInt32BE(bytes.length, 1);
    frame.set(bytes, 5);
    let r: RequestResult;
    try {
      r = this.host.request({ peer: "spiffe://fuzz.example/app/differential", method: "POST", path: m.path, authority: "fuzz", headers, body: frame });
    } catch (e) {
      return { outcome: "trap", detail: `host error: ${(e as Error).message}` };
    }
    if (r.vmFailure) return { outcome: "trap", detail: r.vmFailure.reason };
    const reason = r.explain?.reason ?? "";
    if (r.continued && r.explain?.decision === "allow") return { outcome: "read", detail: reason };
    if (r.explain?.rule === m.ruleId) {
      const body = /condition error: cannot read the request body: (.*)$/.exec(reason);
      if (body) return { outcome: "refused", reason: body[1].replace(/ \(field \d+\)$/, ""), detail: reason };
      if (!/condition error/.test(reason)) return { outcome: "differs", detail: reason };
    }
    return { outcome: "unexpected", detail: `${r.explain?.decision} ${r.explain?.rule}: ${reason}` };
  }

  /** Normalized whole-message views of both decoders, for comparison. */
  views(m: FuzzMethod, pbjs: Record<string, unknown>, es: Message): { pbjs: string; es: string } {
    return {
      pbjs: JSON.stringify(normMessage(m.desc, pbjs, "pbjs")),
      es: JSON.stringify(normMessage(m.desc, es as unknown as Record<string, unknown>, "es")),
    };
  }
}

export const FUZZ_PROTOS = ["fuzz.proto", "order.proto"].map((f) => path.join(path.dirname(new URL(import.meta.url).pathname), "protos", f));
export const FUZZ_METHODS = ["/fuzz.v1.Fuzz/Call", "/fuzz.v2.Orders/Place"];

// --- a run ---------------------------------------------------------------------------------------------------

export interface RunStats {
  seed: number;
  /** canonical messages: written field by field, and the same message as each decoder's own encoder writes it */
  generated: number;
  generatedRead: number;
  mutated: number;
  /** mutated messages the filter read (and both decoders read alike, else it is a disagreement) */
  mutatedRead: number;
  /** mutations that keep a message canonical, which the filter must read */
  canonicalMutations: number;
  /** refusals by reason (the body error, without its field number) */
  refused: Record<string, number>;
  /** per mutation kind: [messages, read by the filter] */
  byMutation: Record<string, [number, number]>;
  /** messages one decoder accepts and the other does not, or that they read differently (the filter must refuse) */
  decodersDisagree: number;
  disagreements: number;
  /** canonical messages the filter did not read */
  canonicalRefused: number;
  traps: number;
  failures: string[];
  ms: number;
  /** The filter's linear memory after the first tenth of the run (at most 1,000 iterations), and at its end. */
  memoryWarm: number;
  memoryEnd: number;
  /** Messages the filter took longer than HANG_MS over. */
  hangs: string[];
}

/** A message the filter takes longer than this over is a hang (the slowest legitimate ones take a few ms). */
const HANG_MS = 2000;

/** Per-message seed, so that any message can be regenerated from (seed, index). */
export function messageSeed(seed: number, index: number): number {
  let z = (seed ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

/**
 * Runs `count` iterations from `seed`. Each is a canonical message (checked as written field by field and as both
 * decoders' own encoders write it: 3 messages) or a mutated one (1 to 3 mutations).
 */
export function runDifferential(d: ProtobufDifferential, seed: number, count: number, first = 0): RunStats {
  const stats: RunStats = {
    seed, generated: 0, generatedRead: 0, mutated: 0, mutatedRead: 0, canonicalMutations: 0, refused: {}, byMutation: {},
    decodersDisagree: 0, disagreements: 0, canonicalRefused: 0, traps: 0, failures: [], ms: 0, memoryWarm: 0, memoryEnd: 0,
    hangs: [],
  };
  const warmAt = first + Math.min(1000, Math.floor(count / 10));
  const schemas = d.methods.flatMap((m) => m.schema);
  const enums = d.methods.flatMap((m) => m.enums);
  const started = performance.now();
  const fail = (what: string, index: number, m: FuzzMethod, bytes: Uint8Array, detail: string) => {
    if (stats.failures.length < 20) {
      stats.failures.push(`${what} (seed ${seed}, message ${index}, ${m.path}): ${detail}\n  message: ${Buffer.from(bytes).toString("hex")}`);
    }
  };
  const check = (index: number, m: FuzzMethod, bytes: Uint8Array, canonical: boolean, label: string): boolean => {
    const pb = d.pbjs(m, bytes);
    const es = d.es(m, bytes);
    let agree = false;
    let why = "";
    if (pb.ok && es.ok) {
      const v = d.views(m, pb.value, es.value);
      agree = v.pbjs === v.es;
      if (!agree) why = `protobufjs read ${v.pbjs}\n  protobuf-es read ${v.es}`;
    } else if (pb.ok !== es.ok) {
      why = pb.ok ? `protobuf-es refused: ${(es as { error: string }).error}` : `protobufjs refused: ${(pb as { error: string }).error}`;
    } else {
      why = "both refused";
    }
    if (!agree && (pb.ok || es.ok)) stats.decodersDisagree++;
    const t0 = performance.now();
    const v = d.filter(m, bytes, es.ok ? es.value : undefined);
    const took = performance.now() - t0;
    if (took > HANG_MS) stats.hangs.push(`seed ${seed}, message ${index}: the filter took ${took.toFixed(0)} ms`);
    switch (v.outcome) {
      case "trap":
        stats.traps++;
        fail("trap", index, m, bytes, v.detail);
        return false;
      case "unexpected":
        fail("unexpected filter answer", index, m, bytes, v.detail);
        return false;
      case "read":
      case "differs":
        if (!agree || v.outcome === "differs") {
          stats.disagreements++;
          fail(`${label}: the filter read a message the decoders do not read alike`, index, m, bytes, `${v.detail}; ${why || "the filter read another value"}`);
        }
        return true;
      case "refused":
        stats.refused[v.reason!] = (stats.refused[v.reason!] ?? 0) + 1;
        if (canonical) {
          stats.canonicalRefused++;
          fail(`${label}: the filter refused a canonical message`, index, m, bytes, `${v.detail}${agree ? "" : `; ${why}`}`);
        }
        return false;
    }
  };
  for (let i = first; i < first + count; i++) {
    if (i === warmAt) stats.memoryWarm = d.host.memoryBytes();
    const r = new Rng(messageSeed(seed, i));
    const m = r.chance(0.75) ? d.methods[0] : d.methods[r.int(d.methods.length)];
    const gen = new MessageGen(schemas, r, enums);
    const msg = gen.message(m.message, 1, { maxDepth: 1 + r.int(5), fieldChance: 0.25 + 0.6 * r.next() });
    if (r.chance(0.4)) {
      const written = serialize(msg);
      const encodings: [string, () => Uint8Array][] = [
        ["written field by field", () => written],
        ["protobufjs's encoder", () => d.pbjsReencode(m, written)],
        ["protobuf-es's encoder", () => d.esReencode(m, written)],
      ];
      for (const [label, encode] of encodings) {
        let bytes: Uint8Array;
        try {
          bytes = encode();
        } catch (e) {
          fail(`${label} failed on a generated message`, i, m, written, (e as Error).message);
          continue;
        }
        stats.generated++;
        if (check(i, m, bytes, true, `generated, ${label}`)) stats.generatedRead++;
      }
      continue;
    }
    const mutator = new Mutator(gen, r);
    const kinds: Mutation[] = [];
    let bytes: Uint8Array | undefined;
    for (let k = 1 + (r.chance(0.7) ? 0 : r.int(3)); k > 0; k--) {
      const kind = r.pick(MUTATIONS);
      const out = mutator.apply(msg, kind);
      if (out === undefined) continue;
      kinds.push(kind);
      bytes = out;
      // Byte-level mutations work on the bytes; nothing structural can follow them.
      if (["bit-flip", "byte", "truncate", "insert-bytes", "delete-bytes"].includes(kind)) break;
    }
    if (bytes === undefined) continue;
    const canonical = kinds.every((k) => CANONICAL_MUTATIONS.has(k));
    stats.mutated++;
    if (canonical) stats.canonicalMutations++;
    const read = check(i, m, bytes, canonical, `mutated (${kinds.join(", ")})`);
    if (read) stats.mutatedRead++;
    for (const k of new Set(kinds)) {
      const c = (stats.byMutation[k] ??= [0, 0]);
      c[0]++;
      if (read) c[1]++;
    }
  }
  stats.ms = performance.now() - started;
  stats.memoryEnd = d.host.memoryBytes();
  return stats;
}

/**
 * The differential as a target of `npm run fuzz` (tests/fuzz/run.ts): `iterations` iterations in rounds of 1,000,
 * `progress` called after each (the long run's watchdog listens to it). `inputs` counts iterations; `accepted` and
 * `rejected` count messages (a generated iteration checks three: as written, and as each decoder's encoder writes it).
 */
export async function fuzzProtobuf(seed: number, iterations: number, progress: (inputs: number) => void = () => {}): Promise<FuzzReport> {
  const d = await ProtobufDifferential.create(FUZZ_PROTOS, FUZZ_METHODS);
  const report: FuzzReport = {
    target: "protobuf", seed, inputs: 0, accepted: 0, rejected: 0, traps: [], hangs: [], contradictions: [], memoryWarm: 0,
    memoryEnd: 0, reasons: {}, ms: 0,
  };
  for (let first = 0; first < iterations; first += 1000) {
    const s = runDifferential(d, seed, Math.min(1000, iterations - first), first);
    report.inputs += Math.min(1000, iterations - first);
    report.accepted += s.generatedRead + s.mutatedRead;
    report.rejected += s.generated + s.mutated - s.generatedRead - s.mutatedRead;
    for (const [k, n] of Object.entries(s.refused)) report.reasons[k] = (report.reasons[k] ?? 0) + n;
    for (const f of s.failures) (/^trap/.test(f) ? report.traps : report.contradictions).push(f);
    report.hangs.push(...s.hangs);
    report.ms += s.ms;
    if (first === 0) report.memoryWarm = s.memoryWarm;
    report.memoryEnd = s.memoryEnd;
    progress(first + 1000);
  }
  return report;
}
