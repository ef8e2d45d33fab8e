// Stage 1, parse: YAML text -> documents made of position-carrying nodes.
//
// The `yaml` package keeps byte ranges on every node; a LineCounter turns them into 1-based line and column. The
// rest of the compiler works on the small tree below, where every node, and every mapping key, knows its position.

import { type Alias, isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseAllDocuments, type Scalar } from "yaml";
import type { Document, Node as YamlNode } from "yaml";
import { type Diagnostics, q, type Pos } from "./diagnostics.ts";

export interface YScalar {
  kind: "scalar";
  pos: Pos;
  /** the value the YAML 1.2 core schema gives: string, number, boolean or null */
  value: string | number | boolean | null;
  /** the text as written for plain scalars (so `007` stays `007`), the decoded string for quoted ones */
  text: string;
  /** true for quoted and block scalars */
  quoted: boolean;
  /** where the scalar's source text is in the file (`yaml`'s Scalar.range: start, value end), for sub-positions */
  range?: [number, number];
  /** `yaml`'s Scalar.type: PLAIN, QUOTE_SINGLE, QUOTE_DOUBLE, BLOCK_LITERAL, BLOCK_FOLDED */
  style?: string;
}

export interface YEntry {
  key: string;
  keyPos: Pos;
  value: YNode;
}

export interface YMap {
  kind: "map";
  pos: Pos;
  entries: YEntry[];
}

export interface YSeq {
  kind: "seq";
  pos: Pos;
  items: YNode[];
}

export type YNode = YScalar | YMap | YSeq;

/** One YAML document of a file. */
export interface YDoc {
  file: string;
  /** 0-based index of the document in its file */
  index: number;
  /** position of the document's first node */
  pos: Pos;
  root: YNode;
  /** the whole file's text, and the position of an offset into it (diagnostics inside a scalar: CEL conditions) */
  text: string;
  posAt: (offset: number) => Pos;
}

/** True for a `null` scalar (`key:` with nothing, `~`, `null`): Kubernetes treats such fields as absent. */
export function isNull(n: YNode | undefined): boolean {
  return n === undefined || (n.kind === "scalar" && n.value === null);
}

/** The entry for `key` in a mapping, ignoring null values (absent fields). */
export function entry(m: YMap, key: string): YEntry | undefined {
  const e = m.entries.find((x) => x.key === key);
  return e && !isNull(e.value) ? e : undefined;
}

/** Plain JavaScript value of a node, dropping null-valued mapping entries as the Kubernetes API server does. */
export function toJS(n: YNode): unknown {
  switch (n.kind) {
    case "scalar":
      return n.value;
    case "seq":
      return n.items.map(toJS);
    case "map": {
      const o: Record<string, unknown> = {};
      for (const e of n.entries) if (!isNull(e.value)) o[e.key] = toJS(e.value);
      return o;
    }
  }
}

/** The node at a JSON-pointer-like path (`["spec", "rules", 0]`), or the deepest node found on the way. */
export function nodeAt(root: YNode, path: readonly (string | number)[]): { node: YNode; keyPos?: Pos; complete: boolean } {
  let node = root;
  let keyPos: Pos | undefined;
  for (const seg of path) {
    if (node.kind === "map") {
      const e = node.entries.find((x) => x.key === String(seg));
      if (!e) return { node, keyPos, complete: false };
      node = e.value;
      keyPos = e.keyPos;
    } else if (node.kind === "seq") {
      const i = typeof seg === "number" ? seg : Number(seg);
      if (!Number.isInteger(i) || i < 0 || i >= node.items.length) return { node, keyPos, complete: false };
      node = node.items[i];
      keyPos = undefined;
    } else {
      return { node, keyPos, complete: false };
    }
  }
  return { node, keyPos, complete: true };
}

/** yaml's messages start with a capital and end with a period; ours do neither. */
function restyle(message: string): string {
  let m = message.split("\n")[0].trim();
  m = m.replace(/\s*at line \d+, column \d+:?$/, "");
  if (m.endsWith(".")) m = m.slice(0, -1);
  return "yaml: " + m.charAt(0).toLowerCase() + m.slice(1);
}

/**
 * Parses every document of a YAML file. YAML syntax errors are reported with their position; documents with
 * errors are skipped. Empty documents (a trailing `---`) are dropped.
 */
export function parseYamlFile(file: string, text: string, diags: Diagnostics): YDoc[] {
  const lc = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true, merge: false });
  const pos = (offset: number): Pos => {
    const lp = lc.linePos(Math.max(0, Math.min(offset, text.length)));
    return { file, line: lp.line, col: lp.col };
  };
  const out: YDoc[] = [];
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc: Document.Parsed, index: number) => {
    if (doc.errors.length > 0) {
      for (const e of doc.errors) diags.error(pos(e.pos[0]), restyle(e.message));
      return;
    }
    for (const w of doc.warnings) diags.warn(pos(w.pos[0]), restyle(w.message));
    if (doc.contents === null || doc.contents === undefined) return;
    const conv = new Converter(doc, pos, diags);
    const root = conv.convert(doc.contents as YamlNode, 0);
    if (root.kind === "scalar" && root.value === null) return;
    out.push({ file, index, pos: root.pos, root, text, posAt: pos });
  });
  return out;
}

class Converter {
  constructor(
    private readonly doc: Document.Parsed,
    private readonly pos: (offset: number) => Pos,
    private readonly diags: Diagnostics,
  ) {}

  private at(node: YamlNode | null | undefined, fallback: Pos): Pos {
    const r = node?.range;
    return r ? this.pos(r[0]) : fallback;
  }

  convert(node: YamlNode | null | undefined, depth: number, fallback?: Pos): YNode {
    const here = this.at(node, fallback ?? this.pos(0));
    if (depth > 100) {
      this.diags.error(here, "yaml: nesting deeper than 100 levels (a recursive alias?)");
      return { kind: "scalar", pos: here, value: null, text: "", quoted: false };
    }
    if (node === null || node === undefined) return { kind: "scalar", pos: here, value: null, text: "", quoted: false };
    if (isAlias(node)) {
      const target = (node as Alias).resolve(this.doc);
      if (!target) {
        this.diags.error(here, `yaml: unresolved alias ${q((node as Alias).source)}`);
        return { kind: "scalar", pos: here, value: null, text: "", quoted: false };
      }
      return this.convert(target as YamlNode, depth + 1, here);
    }
    if (isScalar(node)) {
      const s = node as Scalar;
      let value = s.value;
      if (typeof value === "bigint") value = Number(value);
      if (value instanceof Uint8Array || (value !== null && typeof value === "object")) value = String(value);
      const plain = s.type === "PLAIN" || s.type === undefined;
      const text = plain && typeof s.source === "string" ? s.source : value === null ? "" : String(value);
      const out: YScalar = { kind: "scalar", pos: here, value: value as YScalar["value"], text, quoted: !plain };
      if (s.range) {
        out.range = [s.range[0], s.range[1]];
        out.style = s.type ?? "PLAIN";
      }
      return out;
    }
    if (isMap(node)) {
      const entries: YEntry[] = [];
      for (const item of node.items) {
        if (!isPair(item)) continue;
        const k = item.key as YamlNode | null;
        const keyPos = this.at(k, here);
        let key: string;
        if (k !== null && isScalar(k)) {
          key = k.value === null ? "" : String(k.value);
        } else if (k !== null && isAlias(k)) {
          const t = (k as Alias).resolve(this.doc);
          key = t && isScalar(t) ? String(t.value) : "";
        } else {
          this.diags.error(keyPos, "yaml: mapping keys must be plain strings");
          continue;
        }
        entries.push({ key, keyPos, value: this.convert(item.value as YamlNode | null, depth + 1, keyPos) });
      }
      return { kind: "map", pos: here, entries };
    }
    if (isSeq(node)) {
      return { kind: "seq", pos: here, items: node.items.map((x) => this.convert(x as YamlNode, depth + 1, here)) };
    }
    this.diags.error(here, "yaml: unsupported node");
    return { kind: "scalar", pos: here, value: null, text: "", quoted: false };
  }
}

/** A short description of a node's type, for messages: "a mapping", "a list", "a string", "a number". */
export function describe(n: YNode): string {
  if (n.kind === "map") return "a mapping";
  if (n.kind === "seq") return "a list";
  if (n.value === null) return "null";
  if (typeof n.value === "boolean") return "a boolean";
  if (typeof n.value === "number") return "a number";
  return "a string";
}

/** A string from the policy with its position. */
export interface Item {
  value: string;
  pos: Pos;
}

// Defensive readers for trees that already passed schema validation (so wrong types were reported there and are
// skipped silently here).

export function mapOf(n: YNode | undefined): YMap | undefined {
  return n && n.kind === "map" ? n : undefined;
}

export function listOf(n: YNode | undefined): YNode[] | undefined {
  return n && n.kind === "seq" ? n.items : undefined;
}

export function stringOf(n: YNode | undefined): string | undefined {
  if (n?.kind !== "scalar" || n.value === null) return undefined;
  return typeof n.value === "string" ? n.value : n.text;
}

/**
 * A list of scalars as items; a single scalar counts as a one-element list when `allowScalar` (our attribute
 * values, where booleans are accepted too). Elsewhere only strings and numbers are read: other types were
 * reported by the schema pass.
 */
export function itemsOf(n: YNode | undefined, allowScalar = false): Item[] | undefined {
  if (!n || isNull(n)) return undefined;
  const ok = (x: YNode) => x.kind === "scalar" && (typeof x.value === "string" || typeof x.value === "number" || (allowScalar && typeof x.value === "boolean"));
  if (n.kind === "scalar") return allowScalar && ok(n) ? [{ value: stringOf(n) ?? "", pos: n.pos }] : undefined;
  if (n.kind !== "seq") return undefined;
  const out: Item[] = [];
  for (const x of n.items) {
    const s = stringOf(x);
    if (s !== undefined && ok(x)) out.push({ value: s, pos: x.pos });
  }
  return out;
}

/** Items of field `key` of a mapping. */
export function fieldItems(m: YMap, key: string, allowScalar = false): Item[] | undefined {
  return itemsOf(entry(m, key)?.value, allowScalar);
}
