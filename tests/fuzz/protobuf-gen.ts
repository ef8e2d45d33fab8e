/**
 * Protobuf messages for the differential (tests/fuzz/protobuf-differential.test.ts): canonical messages generated
 * from a schema, written field by field (so each can be changed), and mutations of them. A message is a tree of
 * wire records; `serialize` writes it, with whatever non-canonical forms the mutations asked for.
 *
 * The schema is the one the compiler puts in the table (src/cel/proto.ts `messageSchema`): every field of every
 * message reachable from the request message, map fields as repeated entry messages.
 */
import { PROTO_TYPE_BYTES, ProtoType, type ProtoEnumSchema, type ProtoMessageSchema, type ProtoSchemaField } from "../../src/cel/bytecode.ts";
import type { Rng } from "../cel/generate.ts";

// --- wire records -------------------------------------------------------------------------------------------

/** One field on the wire. The optional parts make it non-canonical (a mutation's doing). */
export type Rec =
  | { k: "varint"; field: number; value: bigint; wire?: number; tagPad?: number; valuePad?: number }
  | { k: "fixed"; field: number; bytes: Uint8Array; wire?: number; tagPad?: number }
  | { k: "len"; field: number; body: Uint8Array | Msg; wire?: number; tagPad?: number; lenPad?: number; lenDelta?: number }
  | { k: "raw"; bytes: Uint8Array };

/** A message: its schema name and its records in wire order. */
export interface Msg {
  readonly name: string;
  recs: Rec[];
}

/** A varint of `value` (as unsigned 64 bits), `pad` bytes longer than needed (continuation bytes, then 0x00). */
export function varint(value: bigint, pad = 0): number[] {
  let v = BigInt.asUintN(64, value);
  const out: number[] = [];
  do {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  } while (v !== 0n);
  for (let i = 0; i < pad; i++) out.push(0x80);
  out[out.length - 1] &= 0x7f;
  return out;
}

const wireOf = (r: Exclude<Rec, { k: "raw" }>): number =>
  r.wire ?? (r.k === "varint" ? 0 : r.k === "len" ? 2 : r.bytes.length === 8 ? 1 : 5);

/** The bytes of a message. */
export function serialize(m: Msg | Rec[]): Uint8Array {
  const out: number[] = [];
  const write = (recs: Rec[]) => {
    for (const r of recs) {
      if (r.k === "raw") {
        out.push(...r.bytes);
        continue;
      }
      out.push(...varint((BigInt(r.field) << 3n) | BigInt(wireOf(r)), r.tagPad ?? 0));
      if (r.k === "varint") out.push(...varint(r.value, r.valuePad ?? 0));
      else if (r.k === "fixed") out.push(...r.bytes);
      else {
        const body = r.body instanceof Uint8Array ? r.body : serialize(r.body);
        out.push(...varint(BigInt(Math.max(0, body.length + (r.lenDelta ?? 0))), r.lenPad ?? 0));
        for (let i = 0; i < body.length; i++) out.push(body[i]);
      }
    }
  };
  write(Array.isArray(m) ? m : m.recs);
  return Uint8Array.from(out);
}

export function cloneMsg(m: Msg): Msg {
  return { name: m.name, recs: m.recs.map(cloneRec) };
}

function cloneRec(r: Rec): Rec {
  if (r.k === "len") return { ...r, body: r.body instanceof Uint8Array ? r.body : cloneMsg(r.body) };
  return { ...r };
}

// --- value pools --------------------------------------------------------------------------------------------

const STRINGS = [
  "", "billing", "orders", "a", "é", "日本語", "😀", "\uFEFFbilling", "a\u0000b", "e\u0301", "\u2028", "x".repeat(130),
  "ünïcödé ✓", "orders\n", " billing", "\u{10FFFF}", "\uFFFD",
];
const INT32S = [0n, 1n, -1n, 2n, 127n, 128n, 300n, 2147483647n, -2147483648n, -129n];
const INT64S = [0n, 1n, -1n, 2n ** 31n, -(2n ** 31n) - 1n, 2n ** 32n, 9223372036854775807n, -9223372036854775808n, 1234567890123n];
const UINT32S = [0n, 1n, 127n, 128n, 16384n, 4294967295n, 2147483648n];
const UINT64S = [0n, 1n, 2n ** 32n, 2n ** 63n, 18446744073709551615n, 2n ** 56n - 1n];
const DOUBLES = [0, -0, 1.5, -2.25, 0.1, 1e308, 5e-324, Infinity, -Infinity, NaN, 2 ** 53 + 2, -1e-7];
const FLOATS = [0, -0, 1.5, 0.1, 3.4e38, 1e-45, Infinity, -Infinity, NaN, -7];
const ENUMS = [0n, 1n, 2n, 7n, -1n, 2147483647n];

function f64(v: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setFloat64(0, v, true);
  return b;
}
function f32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, v, true);
  return b;
}
function fixed(bits: 32 | 64, v: bigint): Uint8Array {
  const b = new Uint8Array(bits / 8);
  const dv = new DataView(b.buffer);
  if (bits === 64) dv.setBigUint64(0, BigInt.asUintN(64, v), true);
  else dv.setUint32(0, Number(BigInt.asUintN(32, v)), true);
  return b;
}
const zigzag32 = (v: bigint) => BigInt.asUintN(32, (v << 1n) ^ (v >> 31n));
const zigzag64 = (v: bigint) => BigInt.asUintN(64, (v << 1n) ^ (v >> 63n));

// --- generation ---------------------------------------------------------------------------------------------

/** How a generated message is written (the canonical choices an encoder may make). */
export interface GenOptions {
  /** Message nesting levels to generate (the request message is level 1). */
  maxDepth: number;
  /** Chance of writing an optional field. */
  fieldChance: number;
}

export class MessageGen {
  readonly messages: ReadonlyMap<string, ProtoMessageSchema>;
  readonly enums: ReadonlyMap<string, ProtoEnumSchema>;

  constructor(messages: readonly ProtoMessageSchema[], readonly r: Rng, enums: readonly ProtoEnumSchema[] = []) {
    this.messages = new Map(messages.map((m) => [m.name, m]));
    this.enums = new Map(enums.map((e) => [e.name, e]));
  }

  schema(name: string): ProtoMessageSchema {
    const m = this.messages.get(name);
    if (!m) throw new Error(`no message '${name}' in the schema`);
    return m;
  }

  /** A random scalar of type `t` (of closed enum `closed`, when given) as the record that carries it (field `field`). */
  scalar(field: number, t: number, closed?: string): Rec {
    const r = this.r;
    if (closed !== undefined) return { k: "varint", field, value: BigInt.asUintN(64, BigInt(r.pick(this.enums.get(closed)!.values))) };
    switch (t) {
      case ProtoType.DOUBLE: return { k: "fixed", field, bytes: f64(r.chance(0.2) ? r.next() * 1e6 - 5e5 : r.pick(DOUBLES)) };
      case ProtoType.FLOAT: return { k: "fixed", field, bytes: f32(r.pick(FLOATS)) };
      case ProtoType.INT64: return { k: "varint", field, value: BigInt.asUintN(64, r.pick(INT64S)) };
      case ProtoType.UINT64: return { k: "varint", field, value: r.pick(UINT64S) };
      case ProtoType.INT32: return { k: "varint", field, value: BigInt.asUintN(64, r.chance(0.3) ? BigInt(r.int(1000) - 500) : r.pick(INT32S)) };
      case ProtoType.FIXED64: return { k: "fixed", field, bytes: fixed(64, r.pick(UINT64S)) };
      case ProtoType.FIXED32: return { k: "fixed", field, bytes: fixed(32, r.pick(UINT32S)) };
      case ProtoType.BOOL: return { k: "varint", field, value: BigInt(r.int(2)) };
      case ProtoType.STRING: return { k: "len", field, body: new TextEncoder().encode(this.string()) };
      case PROTO_TYPE_BYTES: return { k: "len", field, body: Uint8Array.from({ length: r.int(6) }, () => r.int(256)) };
      case ProtoType.UINT32: return { k: "varint", field, value: r.pick(UINT32S) };
      case ProtoType.ENUM: return { k: "varint", field, value: BigInt.asUintN(64, r.pick(ENUMS)) };
      case ProtoType.SFIXED32: return { k: "fixed", field, bytes: fixed(32, r.pick(INT32S)) };
      case ProtoType.SFIXED64: return { k: "fixed", field, bytes: fixed(64, r.pick(INT64S)) };
      case ProtoType.SINT32: return { k: "varint", field, value: zigzag32(r.pick(INT32S)) };
      case ProtoType.SINT64: return { k: "varint", field, value: zigzag64(r.pick(INT64S)) };
    }
    throw new Error(`no scalar of type ${t}`);
  }

  string(): string {
    const r = this.r;
    if (r.chance(0.25)) return Array.from({ length: r.int(12) }, () => String.fromCharCode(0x20 + r.int(95))).join("");
    return r.pick(STRINGS);
  }

  /** A canonical message `name`; `depth` is its nesting level (1 = the request message). */
  message(name: string, depth: number, opts: GenOptions): Msg {
    const r = this.r;
    const m = this.schema(name);
    const recs: Rec[] = [];
    const oneofChoice = new Map<number, ProtoSchemaField>();
    for (let o = 0; o < m.oneofs; o++) {
      const members = m.fields.filter((f) => f.oneof === o);
      if (members.length > 0 && r.chance(opts.fieldChance)) oneofChoice.set(o, r.pick(members));
    }
    for (const f of m.fields) {
      if (f.oneof >= 0 ? oneofChoice.get(f.oneof) !== f : !f.required && !r.chance(opts.fieldChance)) continue;
      recs.push(...this.field(f, depth, opts));
    }
    // Encoders write fields in number order; a decoder must take any order.
    return { name, recs: r.chance(0.3) ? r.shuffle(recs) : recs };
  }

  /** The records of one field (several for a repeated field written unpacked). */
  field(f: ProtoSchemaField, depth: number, opts: GenOptions): Rec[] {
    const r = this.r;
    const one = (): Rec | undefined => {
      if (f.type !== ProtoType.MESSAGE) return this.scalar(f.number, f.type, f.enum);
      // A message deeper than allowed is left out (unless required: then an empty one).
      if (depth >= opts.maxDepth && !f.required) return undefined;
      return { k: "len", field: f.number, body: this.message(f.message!, depth + 1, { ...opts, fieldChance: opts.fieldChance * 0.8 }) };
    };
    if (!f.repeated) {
      const rec = one();
      return rec ? [rec] : [];
    }
    const n = 1 + r.int(4);
    const items: Rec[] = [];
    for (let i = 0; i < n; i++) {
      const rec = one();
      if (rec) items.push(rec);
    }
    if (f.type !== ProtoType.MESSAGE && f.type !== ProtoType.STRING && f.type !== PROTO_TYPE_BYTES && r.chance(0.6)) return [pack(f.number, items)];
    return items;
  }
}

/** Records of one repeated number as one packed record. */
export function pack(field: number, items: Rec[]): Rec {
  const body: number[] = [];
  for (const it of items) {
    if (it.k === "varint") body.push(...varint(it.value));
    else if (it.k === "fixed") body.push(...it.bytes);
  }
  return { k: "len", field, body: Uint8Array.from(body) };
}

/** A packed record's elements as unpacked records, given the field's type. */
export function unpack(rec: Extract<Rec, { k: "len" }>, t: number): Rec[] {
  const body = rec.body instanceof Uint8Array ? rec.body : serialize(rec.body);
  const out: Rec[] = [];
  const size = t === ProtoType.DOUBLE || t === ProtoType.FIXED64 || t === ProtoType.SFIXED64 ? 8
    : t === ProtoType.FLOAT || t === ProtoType.FIXED32 || t === ProtoType.SFIXED32 ? 4 : 0;
  for (let p = 0; p < body.length; ) {
    if (size > 0) {
      out.push({ k: "fixed", field: rec.field, bytes: body.slice(p, p + size) });
      p += size;
      continue;
    }
    let v = 0n;
    let shift = 0n;
    for (;;) {
      const b = body[p++];
      v |= BigInt(b & 0x7f) << shift;
      shift += 7n;
      if ((b & 0x80) === 0 || p >= body.length) break;
    }
    out.push({ k: "varint", field: rec.field, value: BigInt.asUintN(64, v) });
  }
  return out;
}

// --- mutations ----------------------------------------------------------------------------------------------

/**
 * Mutation kinds. Those in CANONICAL_MUTATIONS keep a message canonical (the filter must still read it); the others
 * may or may not break it.
 */
export const MUTATIONS = [
  "bit-flip", "byte", "truncate", "insert-bytes", "delete-bytes",
  "overlong-tag", "overlong-length", "overlong-value", "wire-type", "duplicate", "duplicate-new-value", "reorder",
  "nested-overrun", "nested-garbage", "oneof-double", "packed-toggle", "empty-packed", "unknown-field", "group",
  "group-message", "out-of-range", "field-number", "bad-utf8", "drop-field", "deep-nesting", "int32-as-uint32",
  "map-entry-swap",
] as const;
export type Mutation = (typeof MUTATIONS)[number];
export const CANONICAL_MUTATIONS: ReadonlySet<Mutation> = new Set<Mutation>(["reorder", "packed-toggle", "empty-packed", "map-entry-swap"]);

/** Where a record sits: its list, index, and the message (schema) it belongs to. */
interface Site {
  msg: Msg;
  index: number;
}

function sites(m: Msg, out: Site[] = []): Site[] {
  m.recs.forEach((r, index) => {
    out.push({ msg: m, index });
    if (r.k === "len" && !(r.body instanceof Uint8Array)) sites(r.body, out);
  });
  return out;
}

function messages(m: Msg, out: Msg[] = []): Msg[] {
  out.push(m);
  for (const r of m.recs) if (r.k === "len" && !(r.body instanceof Uint8Array)) messages(r.body, out);
  return out;
}

const INVALID_UTF8 = [[0xc3, 0x28], [0xed, 0xa0, 0x80], [0xc0, 0x80], [0xff], [0xe2, 0x82], [0xf4, 0x90, 0x80, 0x80], [0x80]];

export class Mutator {
  constructor(readonly gen: MessageGen, readonly r: Rng) {}

  private fieldOf(site: Site): ProtoSchemaField | undefined {
    const rec = site.msg.recs[site.index];
    if (rec.k === "raw") return undefined;
    return this.gen.messages.get(site.msg.name)?.fields.find((f) => f.number === rec.field);
  }

  /**
   * Applies `kind` to `m` (a canonical message, changed in place) and returns the bytes, or undefined when the kind
   * does not apply to this message (no record of the right sort).
   */
  apply(m: Msg, kind: Mutation): Uint8Array | undefined {
    const r = this.r;
    const all = sites(m);
    const pickSite = (pred: (s: Site, rec: Rec) => boolean): Site | undefined => {
      const c = all.filter((s) => pred(s, s.msg.recs[s.index]));
      return c.length > 0 ? r.pick(c) : undefined;
    };
    const bytes = () => serialize(m);
    switch (kind) {
      case "bit-flip": {
        const b = bytes();
        if (b.length === 0) return undefined;
        for (let i = 1 + r.int(3); i > 0; i--) b[r.int(b.length)] ^= 1 << r.int(8);
        return b;
      }
      case "byte": {
        const b = bytes();
        if (b.length === 0) return undefined;
        b[r.int(b.length)] = r.pick([0x00, 0x80, 0xff, 0x08, 0x0a, 0x12, 0x03, 0x04, 0x7f, r.int(256)]);
        return b;
      }
      case "truncate": {
        const b = bytes();
        if (b.length === 0) return undefined;
        return b.slice(0, r.int(b.length));
      }
      case "insert-bytes": {
        const b = [...bytes()];
        const at = r.int(b.length + 1);
        b.splice(at, 0, ...Array.from({ length: 1 + r.int(3) }, () => r.pick([0x00, 0x80, 0x08, 0x0a, 0x12, 0x1a, 0x0b, 0x0c, r.int(256)])));
        return Uint8Array.from(b);
      }
      case "delete-bytes": {
        const b = [...bytes()];
        if (b.length === 0) return undefined;
        b.splice(r.int(b.length), 1 + r.int(3));
        return Uint8Array.from(b);
      }
      case "overlong-tag": {
        const s = pickSite((_, rec) => rec.k !== "raw");
        if (!s) return undefined;
        (s.msg.recs[s.index] as { tagPad?: number }).tagPad = 1 + r.int(6);
        return bytes();
      }
      case "overlong-length": {
        const s = pickSite((_, rec) => rec.k === "len");
        if (!s) return undefined;
        (s.msg.recs[s.index] as { lenPad?: number }).lenPad = 1 + r.int(6);
        return bytes();
      }
      case "overlong-value": {
        const s = pickSite((_, rec) => rec.k === "varint");
        if (!s) return undefined;
        const rec = s.msg.recs[s.index] as Extract<Rec, { k: "varint" }>;
        rec.valuePad = 1 + r.int(Math.max(1, 10 - varint(rec.value).length + 2));
        return bytes();
      }
      case "wire-type": {
        const s = pickSite((_, rec) => rec.k !== "raw");
        if (!s) return undefined;
        const rec = s.msg.recs[s.index] as Exclude<Rec, { k: "raw" }>;
        const current = wireOf(rec);
        rec.wire = r.pick([0, 1, 2, 5, 3, 4, 6, 7].filter((w) => w !== current));
        return bytes();
      }
      case "duplicate": {
        const s = pickSite((_, rec) => rec.k !== "raw");
        if (!s) return undefined;
        s.msg.recs.splice(s.index + 1 + r.int(s.msg.recs.length - s.index), 0, cloneRec(s.msg.recs[s.index]));
        return bytes();
      }
      case "duplicate-new-value": {
        // The same field again with another value: for a message, one that sets other fields (merge and replace
        // then differ).
        const s = pickSite((site) => this.fieldOf(site) !== undefined);
        if (!s) return undefined;
        const f = this.fieldOf(s)!;
        const again = this.gen.field({ ...f, repeated: false }, 2, { maxDepth: 4, fieldChance: 0.5 });
        if (again.length === 0) return undefined;
        s.msg.recs.splice(s.index + 1 + r.int(s.msg.recs.length - s.index), 0, again[0]);
        return bytes();
      }
      case "reorder": {
        const ms = messages(m).filter((x) => x.recs.length > 1);
        if (ms.length === 0) return undefined;
        const target = r.pick(ms);
        target.recs = r.shuffle(target.recs);
        return bytes();
      }
      case "nested-overrun": {
        const s = pickSite((_, rec) => rec.k === "len" && !(rec.body instanceof Uint8Array));
        if (!s) return undefined;
        const rec = s.msg.recs[s.index] as Extract<Rec, { k: "len" }>;
        rec.lenDelta = r.pick([-3, -2, -1, 1, 2, 3, 5]);
        return bytes();
      }
      case "nested-garbage": {
        const s = pickSite((_, rec) => rec.k === "len" && !(rec.body instanceof Uint8Array));
        if (!s) return undefined;
        const rec = s.msg.recs[s.index] as Extract<Rec, { k: "len" }>;
        rec.body = Uint8Array.from({ length: r.int(10) }, () => r.pick([0x08, 0x0a, 0x12, 0x80, 0x01, 0x00, 0xff, r.int(256)]));
        return bytes();
      }
      case "oneof-double": {
        const target = r.pick(messages(m));
        const schema = this.gen.schema(target.name);
        if (schema.oneofs === 0) return undefined;
        const o = r.int(schema.oneofs);
        const members = schema.fields.filter((f) => f.oneof === o);
        for (let i = 0; i < 2; i++) target.recs.splice(r.int(target.recs.length + 1), 0, ...this.gen.field(r.pick(members), 2, { maxDepth: 3, fieldChance: 0.5 }));
        return bytes();
      }
      case "packed-toggle": {
        const s = pickSite((site) => {
          const f = this.fieldOf(site);
          return f?.repeated === true && f.type !== ProtoType.MESSAGE && f.type !== ProtoType.STRING && f.type !== PROTO_TYPE_BYTES;
        });
        if (!s) return undefined;
        const f = this.fieldOf(s)!;
        const rec = s.msg.recs[s.index];
        if (rec.k === "len") s.msg.recs.splice(s.index, 1, ...unpack(rec, f.type));
        else s.msg.recs.splice(s.index, 1, pack(f.number, [rec]));
        return bytes();
      }
      case "empty-packed": {
        const target = r.pick(messages(m));
        const packable = this.gen.schema(target.name).fields.filter((f) => f.repeated && f.type !== ProtoType.MESSAGE && f.type !== ProtoType.STRING && f.type !== PROTO_TYPE_BYTES);
        if (packable.length === 0) return undefined;
        target.recs.splice(r.int(target.recs.length + 1), 0, { k: "len", field: r.pick(packable).number, body: new Uint8Array(0) });
        return bytes();
      }
      case "unknown-field": {
        const target = r.pick(messages(m));
        const known = new Set(this.gen.schema(target.name).fields.map((f) => f.number));
        let field = r.pick([1, 2, 3, 5, 15, 16, 99, 1000, 19000, 536870911]);
        while (known.has(field)) field++;
        const wire = r.pick([0, 1, 2, 5]);
        const rec: Rec = wire === 0 ? { k: "varint", field, value: BigInt(r.int(1000)) }
          : wire === 2 ? { k: "len", field, body: Uint8Array.from([0x0a, 0x01, 0x61]) }
          : { k: "fixed", field, bytes: new Uint8Array(wire === 1 ? 8 : 4) };
        target.recs.splice(r.int(target.recs.length + 1), 0, rec);
        return bytes();
      }
      case "group": {
        const target = r.pick(messages(m));
        const field = r.pick([1, 2, 50, 99]);
        const inner = r.chance(0.5) ? [...varint(BigInt((field + 1) << 3)), 0x01] : [];
        const end = r.chance(0.8) ? field : field + 1;
        const raw = [...varint(BigInt((field << 3) | 3)), ...inner, ...varint(BigInt((end << 3) | 4))];
        target.recs.splice(r.int(target.recs.length + 1), 0, { k: "raw", bytes: Uint8Array.from(r.chance(0.2) ? raw.slice(-varint(BigInt((end << 3) | 4)).length) : raw) });
        return bytes();
      }
      case "group-message": {
        // A singular message written as a group (delimited): start tag, its fields, end tag.
        const s = pickSite((_, rec) => rec.k === "len" && !(rec.body instanceof Uint8Array));
        if (!s) return undefined;
        const rec = s.msg.recs[s.index] as Extract<Rec, { k: "len" }>;
        const inner = serialize(rec.body as Msg);
        s.msg.recs[s.index] = { k: "raw", bytes: Uint8Array.from([...varint(BigInt((rec.field << 3) | 3)), ...inner, ...varint(BigInt((rec.field << 3) | 4))]) };
        return bytes();
      }
      case "out-of-range": {
        const s = pickSite((site, rec) => {
          const f = this.fieldOf(site);
          return rec.k === "varint" && f !== undefined && [ProtoType.BOOL, ProtoType.INT32, ProtoType.UINT32, ProtoType.ENUM, ProtoType.SINT32].includes(f.type as 8);
        });
        if (!s) return undefined;
        const f = this.fieldOf(s)!;
        const rec = s.msg.recs[s.index] as Extract<Rec, { k: "varint" }>;
        if (f.enum !== undefined && r.chance(0.6)) {
          // A number its closed enum does not declare.
          const declared = new Set(this.gen.enums.get(f.enum)!.values);
          let v = r.pick([-1, 0, 3, 4, 100, 2147483647]);
          while (declared.has(v)) v++;
          rec.value = BigInt.asUintN(64, BigInt(v));
        } else {
          rec.value = f.type === ProtoType.BOOL ? BigInt(2 + r.int(300)) : r.pick([2n ** 32n, 2n ** 31n, 2n ** 40n + 5n, 2n ** 63n, 2n ** 32n + 1n]);
        }
        return bytes();
      }
      case "field-number": {
        const target = r.pick(messages(m));
        const field = r.pick([0n, 2n ** 29n, 2n ** 29n + 7n, 2n ** 32n]);
        target.recs.splice(r.int(target.recs.length + 1), 0, { k: "raw", bytes: Uint8Array.from([...varint((field << 3n) | 0n), 0x01]) });
        return bytes();
      }
      case "bad-utf8": {
        const s = pickSite((site, rec) => rec.k === "len" && this.fieldOf(site)?.type === ProtoType.STRING);
        if (!s) return undefined;
        const rec = s.msg.recs[s.index] as Extract<Rec, { k: "len" }>;
        const body = [...(rec.body as Uint8Array)];
        body.splice(r.int(body.length + 1), 0, ...r.pick(INVALID_UTF8));
        rec.body = Uint8Array.from(body);
        return bytes();
      }
      case "drop-field": {
        const s = pickSite(() => true);
        if (!s) return undefined;
        s.msg.recs.splice(s.index, 1);
        return bytes();
      }
      case "deep-nesting": {
        // A chain of messages through a self-referencing field, around the filter's 64 levels.
        const target = r.pick(messages(m));
        const selfRef = this.gen.schema(target.name).fields.find((f) => !f.repeated && f.message === target.name && f.oneof < 0);
        if (!selfRef) return undefined;
        let chain: Msg = { name: target.name, recs: [] };
        for (let i = 60 + r.int(45); i > 0; i--) chain = { name: target.name, recs: [{ k: "len", field: selfRef.number, body: chain }] };
        target.recs = target.recs.filter((x) => x.k === "raw" || x.field !== selfRef.number);
        target.recs.push(...chain.recs);
        return bytes();
      }
      case "int32-as-uint32": {
        // A negative int32 written as 32-bit two's complement (5 bytes) instead of sign-extended to 64 bits.
        const s = pickSite((site, rec) => rec.k === "varint" && this.fieldOf(site)?.type === ProtoType.INT32);
        if (!s) return undefined;
        const rec = s.msg.recs[s.index] as Extract<Rec, { k: "varint" }>;
        rec.value = BigInt.asUintN(32, -BigInt(1 + r.int(1000)));
        return bytes();
      }
      case "map-entry-swap": {
        const entries = messages(m).filter((x) => x.name.startsWith("map<") && x.recs.length === 2);
        if (entries.length === 0) return undefined;
        r.pick(entries).recs.reverse();
        return bytes();
      }
    }
  }
}
