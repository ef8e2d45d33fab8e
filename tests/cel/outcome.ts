/**
 * Evaluation outcomes in one normalized shape, whatever produced them (our VM through a harness, or the
 * @bufbuild/cel reference), and the error classes the differential test compares.
 */

export type CelValueOut =
  | { readonly t: "null" }
  | { readonly t: "bool"; readonly v: boolean }
  | { readonly t: "int"; readonly v: bigint }
  | { readonly t: "uint"; readonly v: bigint }
  | { readonly t: "double"; readonly v: number }
  | { readonly t: "string"; readonly v: string }
  | { readonly t: "list"; readonly v: readonly CelValueOut[] }
  /** A list we only know the size of (a JSON array). */
  | { readonly t: "array"; readonly size: number }
  /** A map we only know the size of (a JSON object). */
  | { readonly t: "map"; readonly size: number };

/**
 * Error classes. The reference does not distinguish a missing key from selecting a field of a scalar, nor
 * from an index out of range ("field not found", "index out of bounds"), so those are one class: access.
 */
export type ErrorClass =
  | "access"
  | "attribute"
  | "overload"
  | "overflow"
  | "divide"
  | "modulus"
  | "conversion"
  | "unsupported"
  | "body"
  | "limit"
  | "other";

export type CelOutcome =
  | { readonly kind: "value"; readonly value: CelValueOut }
  | { readonly kind: "error"; readonly cls: ErrorClass; readonly message: string };

/** Error kinds of the engine (E_* in assembly/engine/cel/value.ts) and their classes. */
export const ENGINE_ERROR_CLASSES: Record<number, ErrorClass> = {
  16: "access",
  17: "attribute",
  18: "overload",
  19: "overflow",
  20: "divide",
  21: "modulus",
  22: "conversion",
  24: "unsupported",
  25: "body",
  26: "limit",
};

/** Classifies an error message of @bufbuild/cel 0.6.1 (its messages are listed in its dist sources). */
export function referenceErrorClass(message: string): ErrorClass {
  if (/field not found|out of bounds|no such key/.test(message)) return "access";
  if (/unresolved attribute|undeclared reference/.test(message)) return "attribute";
  if (/overflow|range/.test(message)) return "overflow";
  if (/divide by zero/.test(message)) return "divide";
  if (/modulus by zero/.test(message)) return "modulus";
  if (/no matching overload|no such overload|type mismatch|unsupported key type|unbound function/.test(message)) return "overload";
  if (/Cannot convert|Unable to convert|SyntaxError|invalid/i.test(message)) return "conversion";
  return "other";
}

export function showValue(v: CelValueOut): string {
  switch (v.t) {
    case "null": return "null";
    case "bool": return String(v.v);
    case "int": return `${v.v}`;
    case "uint": return `${v.v}u`;
    case "double": return Object.is(v.v, -0) ? "-0.0" : Number.isInteger(v.v) ? `${v.v}.0` : String(v.v);
    case "string": return JSON.stringify(v.v);
    case "list": return `[${v.v.map(showValue).join(", ")}]`;
    case "array": return `array(size ${v.size})`;
    case "map": return `map(size ${v.size})`;
  }
}

export function showOutcome(o: CelOutcome): string {
  return o.kind === "value" ? showValue(o.value) : `error(${o.cls}: ${o.message})`;
}

/** Equal values: doubles bit-identical or both NaN; containers we only know by size compare by size. */
export function sameValue(a: CelValueOut, b: CelValueOut): boolean {
  if (a.t === "double" && b.t === "double") return Object.is(a.v, b.v) || (Number.isNaN(a.v) && Number.isNaN(b.v));
  if ((a.t === "array" || a.t === "list") && (b.t === "array" || b.t === "list")) {
    if (a.t === "list" && b.t === "list") return a.v.length === b.v.length && a.v.every((x, i) => sameValue(x, b.v[i]));
    const sa = a.t === "list" ? a.v.length : a.size;
    const sb = b.t === "list" ? b.v.length : b.size;
    return sa === sb;
  }
  if (a.t === "map" && b.t === "map") return a.size === b.size;
  if (a.t !== b.t) return false;
  return (a as { v: unknown }).v === (b as { v: unknown }).v;
}

/** Same value, or both errors of the same class. */
export function sameOutcome(a: CelOutcome, b: CelOutcome): boolean {
  if (a.kind === "value" && b.kind === "value") return sameValue(a.value, b.value);
  if (a.kind === "error" && b.kind === "error") return a.cls === b.cls;
  return false;
}
