// GLOB patterns (docs/table-format.md §3, PATS): the regular expressions istiod writes into Envoy RBAC for Istio
// input, in the form the engine matches without a regex engine (assembly/engine/glob.ts). `\` introduces an
// operator, every other byte is itself:
//   \*  zero or more bytes other than "\n" (RE2 `.*`)     \.  one byte other than "\n" (RE2 `.`)
//   \/  zero or more bytes other than "/" (RE2 `[^/]*`)
//   \p  one pchar, \P zero or more pchars, \S zero or more pchars or "/" (Envoy's uri_template `*` and `**`)
//   \\  a literal "\"

/** The longest GLOB value (the engine sizes its state sets for it). */
export const MAX_GLOB_BYTES = 4096;

/** RFC 3986 pchar as Envoy 1.40's uri_template matches it: unreserved, "%", sub-delims, ":" and "@". */
export const PCHAR_CLASS = "A-Za-z0-9\\-._~%!$&'()*+,;=:@";

const OPS = new Set(["*", ".", "/", "p", "P", "S", "\\"]);

/** A literal string as GLOB text (backslashes doubled). */
export function globLiteral(s: string): string {
  return s.replace(/\\/g, "\\\\");
}

/** Why a GLOB value is malformed, or null. */
export function globProblem(g: string): string | null {
  if (Buffer.byteLength(g, "utf8") > MAX_GLOB_BYTES) return `glob longer than ${MAX_GLOB_BYTES} bytes`;
  for (let i = 0; i < g.length; i++) {
    if (g[i] !== "\\") continue;
    if (i + 1 >= g.length) return "glob ends with a lone \"\\\"";
    if (!OPS.has(g[i + 1])) return `glob operator "\\${g[i + 1]}" is not one of \\* \\. \\/ \\p \\P \\S \\\\`;
    i++;
  }
  return null;
}

/**
 * The RE2 regular expression a GLOB stands for, without anchors; `js`: the JavaScript one (whose "." also refuses
 * "\r" and U+2028/2029, so "any but newline" is spelt out).
 */
export function globToRegex(g: string, js = false): string {
  const dot = js ? "[^\\n]" : ".";
  let out = "";
  for (let i = 0; i < g.length; i++) {
    const c = g[i];
    if (c !== "\\") {
      out += c.replace(/[\\^$.|?*+()[\]{}]/g, "\\$&");
      continue;
    }
    const op = g[++i];
    if (op === "." && g[i + 1] === "\\" && g[i + 2] === "*") {
      out += `${dot}+`; // istiod's ".+"
      i += 2;
      continue;
    }
    switch (op) {
      case "*": out += `${dot}*`; break;
      case ".": out += dot; break;
      case "/": out += "[^/]*"; break;
      case "p": out += `[${PCHAR_CLASS}]`; break;
      case "P": out += `[${PCHAR_CLASS}]*`; break;
      case "S": out += `[${PCHAR_CLASS}/]*`; break;
      default: out += "\\\\";
    }
  }
  return out;
}

/** Whether `subject` matches the GLOB as a whole (bytes, as the engine compares them). */
export function globMatches(g: string, subject: string, ignoreCase = false): boolean {
  // Over latin1 strings each byte is one JS character, so "." and classes see bytes as the engine does.
  const re = new RegExp(`^(?:${globToRegex(Buffer.from(g, "utf8").toString("latin1"), true)})$`, ignoreCase ? "i" : "");
  return re.test(Buffer.from(subject, "utf8").toString("latin1"));
}
