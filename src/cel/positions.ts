/**
 * Mapping condition offsets back to the policy file.
 *
 * compileCondition reports offsets into the expression string, counted in UTF-16 code units (JavaScript
 * string indexes), which is what @bufbuild/cel's parser reports. In a YAML policy the expression is the value
 * of a scalar whose source text may differ from its value: quotes, `''` and backslash escapes, folded line
 * breaks, block-scalar indentation. The policy compiler passes the scalar's source range and style (the
 * `yaml` package's `Scalar.range` and `Scalar.type`); this module rebuilds, character by character, where each
 * value character came from, and maps an offset of the value to an offset of the file. The compiler then turns
 * that into line:column with its LineCounter.
 */

/** The five YAML scalar styles, spelled as the `yaml` package's Scalar.type. */
export type YamlScalarStyle = "PLAIN" | "QUOTE_SINGLE" | "QUOTE_DOUBLE" | "BLOCK_LITERAL" | "BLOCK_FOLDED";

interface Unit {
  /** One UTF-16 code unit of the decoded value (before folding). */
  readonly u: string;
  /** File offset of the source text that produced it. */
  readonly off: number;
}

const SIMPLE_ESCAPES: Record<string, string> = {
  "0": "\0", a: "\x07", b: "\b", t: "\t", "\t": "\t", n: "\n", v: "\v", f: "\f", r: "\r", e: "\x1b", " ": " ",
  '"': '"', "/": "/", "\\": "\\", N: "\u0085", _: "\u00a0", L: "\u2028", P: "\u2029",
};

/** The source units of a scalar (start, end: its range in `text`), per style. */
function units(text: string, start: number, end: number, style: YamlScalarStyle): Unit[] {
  const out: Unit[] = [];
  switch (style) {
    case "PLAIN":
      for (let i = start; i < end; i++) out.push({ u: text[i], off: i });
      return out;
    case "QUOTE_SINGLE": {
      let i = start + 1;
      while (i < end) {
        if (text[i] === "'") {
          if (text[i + 1] === "'") {
            out.push({ u: "'", off: i });
            i += 2;
            continue;
          }
          break;
        }
        out.push({ u: text[i], off: i });
        i++;
      }
      return out;
    }
    case "QUOTE_DOUBLE": {
      let i = start + 1;
      while (i < end) {
        const c = text[i];
        if (c === '"') break;
        if (c !== "\\") {
          out.push({ u: c, off: i });
          i++;
          continue;
        }
        const e = text[i + 1];
        if (e === "\n" || e === "\r") {
          // Escaped line break: nothing, and the next line's leading blanks are dropped.
          i += 2;
          if (e === "\r" && text[i] === "\n") i++;
          while (i < end && (text[i] === " " || text[i] === "\t")) i++;
          continue;
        }
        const hex = e === "x" ? 2 : e === "u" ? 4 : e === "U" ? 8 : 0;
        if (hex > 0) {
          const cp = parseInt(text.slice(i + 2, i + 2 + hex), 16);
          const s = Number.isFinite(cp) ? String.fromCodePoint(cp) : "";
          for (const unit of s.split("")) out.push({ u: unit, off: i });
          i += 2 + hex;
          continue;
        }
        out.push({ u: SIMPLE_ESCAPES[e] ?? e, off: i });
        i += 2;
      }
      return out;
    }
    case "BLOCK_LITERAL":
    case "BLOCK_FOLDED": {
      // Skip the header (`|`, `>`, indicators, comment) up to the end of its line.
      let i = start;
      while (i < end && text[i] !== "\n") i++;
      for (i++; i < end; i++) out.push({ u: text[i], off: i });
      return out;
    }
  }
}

function isBlank(c: string): boolean {
  return c === " " || c === "\t" || c === "\n" || c === "\r";
}

/**
 * Returns a function from offsets in `value` (the scalar's parsed string) to offsets in `text` (the file).
 * `start`/`end` are the scalar's source range (yaml's `node.range[0]` and `node.range[1]`). Non-blank
 * characters map exactly; blanks that folding or indentation produced map to the nearest source position.
 * If the source cannot be aligned with the value (which would be a bug), offsets map to `start`.
 */
export function yamlScalarOffsets(
  text: string,
  start: number,
  end: number,
  style: YamlScalarStyle,
  value: string,
): (valueOffset: number) => number {
  const src = units(text, start, end, style);
  const map = new Array<number>(value.length + 1);
  let j = 0;
  let aligned = true;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (isBlank(c)) {
      map[i] = j < src.length ? src[j].off : end;
      if (j < src.length && isBlank(src[j].u)) j++;
      continue;
    }
    while (j < src.length && src[j].u !== c) j++;
    if (j >= src.length) {
      aligned = false;
      break;
    }
    map[i] = src[j].off;
    j++;
  }
  if (!aligned) return () => start;
  map[value.length] = j < src.length ? src[j].off : value.length > 0 ? map[value.length - 1] + 1 : start;
  return (valueOffset: number) => {
    if (valueOffset <= 0) return map[0] ?? start;
    if (valueOffset >= value.length) return map[value.length];
    return map[valueOffset];
  };
}

/** Line and column (both 1-based, column in UTF-16 units) of a file offset, for callers without a LineCounter. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text[i] === "\n") {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}
