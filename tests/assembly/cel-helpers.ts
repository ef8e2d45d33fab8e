// Test-only helpers for the CEL engine specs: an EXPR section writer (docs/cel.md, "EXPR section") and a
// CelActivation over fixed data, the shape phase 2's filter activation takes.

import {
  CelActivation, CelSlot, DynResults, ProtoResults, CelProgramSet, STANDARD_VAR_KINDS, VAR_JWT_CLAIMS, EXPR_SECTION_VERSION,
} from "../../assembly/engine/cel/index";

/** Little-endian byte writer. */
export class CelBytes {
  bytes: Array<u8> = new Array<u8>();
  u8(v: i32): CelBytes { this.bytes.push(<u8>v); return this; }
  u16(v: i32): CelBytes { this.u8(v & 255); this.u8((v >> 8) & 255); return this; }
  u32(v: i32): CelBytes { for (let i = 0; i < 4; i++) this.u8((v >>> (8 * i)) & 255); return this; }
  i64(v: i64): CelBytes { for (let i = 0; i < 8; i++) this.u8(<i32>((v >>> (8 * i)) & 255)); return this; }
  f64(v: f64): CelBytes { return this.i64(reinterpret<i64>(v)); }
  str(s: string): CelBytes {
    const b = Uint8Array.wrap(String.UTF8.encode(s));
    this.u32(b.length);
    for (let i = 0; i < b.length; i++) this.u8(b[i]);
    return this;
  }
  append(o: CelBytes): CelBytes { for (let i = 0; i < o.bytes.length; i++) this.bytes.push(o.bytes[i]); return this; }
  get length(): i32 { return this.bytes.length; }
  /** A copy in a buffer that stays alive as long as the returned array. */
  finish(): Uint8Array {
    const out = new Uint8Array(this.bytes.length);
    for (let i = 0; i < this.bytes.length; i++) out[i] = this.bytes[i];
    return out;
  }
}

/** A program record: u32 length, then maxStack, constants and code. */
export function programRecord(maxStack: i32, constCount: i32, consts: CelBytes, code: CelBytes): CelBytes {
  const rec = new CelBytes().u16(maxStack).u16(constCount).append(consts).u32(code.length).append(code);
  return new CelBytes().u32(rec.length).append(rec);
}

/** A whole section; `schema` is the closed enums, message schemas and methods (none by default). */
export function section(
  dynCount: i32, dyn: CelBytes, protoCount: i32, proto: CelBytes, programs: Array<CelBytes>,
  schema: CelBytes = new CelBytes().u32(0).u32(0).u32(0),
): Uint8Array {
  const w = new CelBytes().u32(EXPR_SECTION_VERSION).u32(dynCount).append(dyn).append(schema).u32(protoCount).append(proto).u32(programs.length);
  for (let i = 0; i < programs.length; i++) w.append(programs[i]);
  return w.finish();
}

/** A dyn path of keys under `root`. */
export function dynPath(root: i32, keys: Array<string>, members: bool = false): CelBytes {
  const w = new CelBytes().u8(root).u8(members ? 1 : 0).u16(keys.length);
  for (let i = 0; i < keys.length; i++) w.u8(0).str(keys[i]);
  return w;
}

/** Decodes a section for the request environment; aborts the spec with the engine's reason on failure. */
export function decode(bytes: Uint8Array): CelProgramSet {
  const set = CelProgramSet.decode(bytes.dataStart, bytes.length, STANDARD_VAR_KINDS);
  return set!;
}

/**
 * Fixed request data. Scalars and map entries are strings; documents and the message go through the real
 * decoders, as the filter will do it.
 */
export class FixedActivation extends CelActivation {
  names: Array<string> = new Array<string>();
  values: Array<string> = new Array<string>();
  /** Encoded values, kept alive while the activation is. */
  private encoded: Array<ArrayBuffer> = new Array<ArrayBuffer>();
  json: DynResults | null = null;
  claims: DynResults | null = null;
  message: ProtoResults | null = null;

  /** Sets variable `id` (map entries are "<id>:<key>"). */
  set(name: string, value: string): FixedActivation {
    this.names.push(name);
    this.values.push(value);
    this.encoded.push(String.UTF8.encode(value));
    return this;
  }

  private find(name: string, out: CelSlot): void {
    for (let i = this.names.length - 1; i >= 0; i--) {
      if (this.names[i] == name) {
        const b = this.encoded[i];
        out.setString(changetype<usize>(b), b.byteLength);
        return;
      }
    }
    out.setAbsent();
  }

  variable(id: i32, out: CelSlot): void { this.find(id.toString(), out); }

  mapEntry(id: i32, keyPtr: usize, keyLen: i32, out: CelSlot): void {
    this.find(id.toString() + ":" + String.UTF8.decodeUnsafe(keyPtr, <usize>keyLen), out);
  }

  mapSize(id: i32): i32 {
    const prefix = id.toString() + ":";
    let n = 0;
    for (let i = 0; i < this.names.length; i++) if (this.names[i].startsWith(prefix)) n++;
    return n;
  }

  /** The program set the dyn paths belong to. */
  programs: CelProgramSet | null = null;

  private dyn(path: i32): DynResults | null {
    return <i32>this.programs!.dyn.root[path] == VAR_JWT_CLAIMS ? this.claims : this.json;
  }

  dynPath(path: i32, out: CelSlot): void {
    const d = this.dyn(path);
    if (d == null) out.setAbsent(); else d.read(path, out);
  }

  dynMemberCount(path: i32): i32 {
    const d = this.dyn(path);
    return d == null ? -1 : d.memberCount(path);
  }

  dynMember(path: i32, index: i32, out: CelSlot): void {
    const d = this.dyn(path);
    if (d == null) out.setNull(); else d.member(path, index, out);
  }

  protoField(path: i32, out: CelSlot): void {
    const m = this.message;
    if (m == null) out.setAbsent(); else m.read(path, out);
  }
}
