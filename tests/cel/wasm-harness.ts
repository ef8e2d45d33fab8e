/**
 * TypeScript side of build/cel-harness.wasm (tests/cel/harness.ts): loads an EXPR section, runs a program
 * on variable bindings, and returns a normalized CelOutcome.
 */
import fs from "node:fs";
import { buildHarness } from "./build.ts";
import { ENGINE_ERROR_CLASSES, type CelOutcome, type CelValueOut } from "./outcome.ts";
import type { VarInput } from "./vars.ts";

export type { VarInput } from "./vars.ts";

// The slice of the WebAssembly JS API used here, typed locally: the project compiles against @types/node
// without lib.dom, which is where TypeScript declares the WebAssembly namespace.
interface WasmApi {
  compile(bytes: Uint8Array): Promise<object>;
  instantiate(module: object, imports: object): Promise<{ exports: object }>;
}
const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

interface HarnessExports {
  memory: { buffer: ArrayBuffer };
  buffer(size: number): number;
  output(): number;
  outputLen(): number;
  loadSection(sectionLen: number, kindsLen: number): number;
  programCount(): number;
  run(program: number, inputLen: number): number;
  repeat(program: number, n: number): number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const KIND = { absent: 0, string: 1, bool: 2, int: 3, uint: 4, double: 5, null: 6, map: 7, json: 8, proto: 9, error: 10 } as const;

class Bytes {
  private parts: Uint8Array[] = [];
  length = 0;
  private push(b: Uint8Array) { this.parts.push(b); this.length += b.length; }
  u8(v: number) { this.push(Uint8Array.of(v)); }
  u32(v: number) { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v, true); this.push(b); }
  i64(v: bigint) { const b = new Uint8Array(8); new DataView(b.buffer).setBigInt64(0, BigInt.asIntN(64, v), true); this.push(b); }
  f64(v: number) { const b = new Uint8Array(8); new DataView(b.buffer).setFloat64(0, v, true); this.push(b); }
  bytes(b: Uint8Array) { this.u32(b.length); this.push(b); }
  raw(b: Uint8Array) { this.push(b); }
  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const p of this.parts) { out.set(p, o); o += p.length; }
    return out;
  }
}

/** Encodes bindings as the harness's variable record. */
export function encodeVars(vars: readonly VarInput[]): Uint8Array {
  const w = new Bytes();
  w.u32(vars.length);
  for (const v of vars) {
    w.u8(v.id);
    w.u8(KIND[v.kind]);
    switch (v.kind) {
      case "string": w.bytes(enc.encode(v.value)); break;
      case "bool": w.u8(v.value ? 1 : 0); break;
      case "int": case "uint": w.i64(v.value); break;
      case "double": w.f64(v.value); break;
      case "map":
        w.u32(v.entries.length);
        for (const [k, val] of v.entries) { w.bytes(enc.encode(k)); w.bytes(enc.encode(val)); }
        break;
      case "json": w.bytes(typeof v.text === "string" ? enc.encode(v.text) : v.text); break;
      case "proto": w.bytes(enc.encode(v.method)); w.u8(v.framed ? 1 : 0); w.bytes(v.bytes); break;
      case "error": w.u8(v.errorKind); w.bytes(enc.encode(v.detail)); break;
    }
  }
  return w.finish();
}

export class CelHarness {
  private constructor(private readonly x: HarnessExports) {}

  static async create(): Promise<CelHarness> {
    const file = await buildHarness();
    const module = await Wasm.compile(fs.readFileSync(file));
    let memory: { buffer: ArrayBuffer } | undefined;
    const instance = await Wasm.instantiate(module, {
      env: {
        abort(msg: number, fileName: number, line: number, col: number) {
          // AssemblyScript strings: UTF-16 with the byte length at ptr - 4.
          const read = (p: number) => {
            if (!p || !memory) return "";
            const len = new Uint32Array(memory.buffer, p - 4, 1)[0];
            return String.fromCharCode(...new Uint16Array(memory.buffer, p, len / 2));
          };
          throw new Error(`cel harness aborted: ${read(msg)} at ${read(fileName)}:${line}:${col}`);
        },
      },
    });
    const x = instance.exports as unknown as HarnessExports;
    memory = x.memory;
    return new CelHarness(x);
  }

  private write(bytes: Uint8Array): void {
    const p = this.x.buffer(bytes.length);
    new Uint8Array(this.x.memory.buffer, p, bytes.length).set(bytes);
  }

  private out(): Uint8Array {
    return new Uint8Array(this.x.memory.buffer, this.x.output(), this.x.outputLen()).slice();
  }

  /** Loads an EXPR section; returns the engine's reason when it rejects it, undefined when accepted. */
  tryLoad(section: Uint8Array, kinds: Uint8Array): string | undefined {
    const input = new Uint8Array(section.length + kinds.length);
    input.set(section);
    input.set(kinds, section.length);
    this.write(input);
    if (this.x.loadSection(section.length, kinds.length) === 0) return undefined;
    return dec.decode(this.out());
  }

  load(section: Uint8Array, kinds: Uint8Array): void {
    const why = this.tryLoad(section, kinds);
    if (why !== undefined) throw new Error(`engine rejected the program: ${why}`);
  }

  get programCount(): number {
    return this.x.programCount();
  }

  /** Evaluates `program` n more times on the last run's inputs (timing only); returns the last result tag. */
  repeat(program: number, n: number): number {
    return this.x.repeat(program, n);
  }

  run(program: number, vars: readonly VarInput[]): CelOutcome {
    const input = encodeVars(vars);
    this.write(input);
    this.x.run(program, input.length);
    const out = this.out();
    const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
    let p = 0;
    const read = (): CelOutcome => {
      const tag = out[p++];
      if (tag >= 16) {
        const n = view.getUint32(p, true);
        p += 4;
        const message = dec.decode(out.subarray(p, p + n));
        p += n;
        return { kind: "error", cls: ENGINE_ERROR_CLASSES[tag] ?? "other", message };
      }
      const value = (): CelValueOut => {
        switch (tag) {
          case 0: return { t: "null" };
          case 1: { const v = view.getBigInt64(p, true); p += 8; return { t: "bool", v: v !== 0n }; }
          case 2: { const v = view.getBigInt64(p, true); p += 8; return { t: "int", v }; }
          case 3: { const v = view.getBigUint64(p, true); p += 8; return { t: "uint", v }; }
          case 4: { const v = view.getFloat64(p, true); p += 8; return { t: "double", v }; }
          case 5: { const n = view.getUint32(p, true); p += 4; const s = dec.decode(out.subarray(p, p + n)); p += n; return { t: "string", v: s }; }
          case 6: {
            const n = view.getUint32(p, true);
            p += 4;
            const items: CelValueOut[] = [];
            for (let i = 0; i < n; i++) {
              const o = read();
              if (o.kind !== "value") throw new Error("error inside a list");
              items.push(o.value);
            }
            return { t: "list", v: items };
          }
          case 7: { const n = view.getUint32(p, true); p += 4; return { t: "map", size: n }; }
          case 8: { const n = view.getUint32(p, true); p += 4; return { t: "array", size: n }; }
        }
        throw new Error(`unexpected result tag ${tag}`);
      };
      return { kind: "value", value: value() };
    };
    return read();
  }
}
