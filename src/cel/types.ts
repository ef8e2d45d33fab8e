/**
 * Static CEL types of the condition subset, as the lowering's checker uses them.
 *
 * @bufbuild/cel 0.6.1 exports no type checker (its internal `Checker` handles constants and identifiers
 * only), so the lowering checks the subset itself, following the overloads of cel-spec's standard definitions
 * (langdef.md) and the variable declarations of env.ts.
 */
export type CelType =
  | { readonly kind: "bool" }
  | { readonly kind: "int" }
  | { readonly kind: "uint" }
  | { readonly kind: "double" }
  | { readonly kind: "string" }
  | { readonly kind: "null" }
  | { readonly kind: "dyn" }
  | { readonly kind: "list"; readonly elem: CelType }
  | { readonly kind: "map"; readonly key: CelType; readonly value: CelType };

export const BOOL: CelType = { kind: "bool" };
export const INT: CelType = { kind: "int" };
export const UINT: CelType = { kind: "uint" };
export const DOUBLE: CelType = { kind: "double" };
export const STRING: CelType = { kind: "string" };
export const NULL: CelType = { kind: "null" };
export const DYN: CelType = { kind: "dyn" };

export function listOf(elem: CelType): CelType {
  return { kind: "list", elem };
}

export function mapOf(key: CelType, value: CelType): CelType {
  return { kind: "map", key, value };
}

/** CEL's spelling of a type, for messages: `int`, `list(string)`, `map(string, dyn)`. */
export function typeName(t: CelType): string {
  switch (t.kind) {
    case "list":
      return `list(${typeName(t.elem)})`;
    case "map":
      return `map(${typeName(t.key)}, ${typeName(t.value)})`;
    case "null":
      return "null_type";
    default:
      return t.kind;
  }
}

export function isDyn(t: CelType): boolean {
  return t.kind === "dyn";
}

export function isNumeric(t: CelType): boolean {
  return t.kind === "int" || t.kind === "uint" || t.kind === "double";
}

/** Whether values of the two types may meet in `==`, `?:` or a list: equal up to dyn. */
export function compatible(a: CelType, b: CelType): boolean {
  if (a.kind === "dyn" || b.kind === "dyn") return true;
  if (a.kind !== b.kind) return false;
  if (a.kind === "list" && b.kind === "list") return compatible(a.elem, b.elem);
  if (a.kind === "map" && b.kind === "map") return compatible(a.key, b.key) && compatible(a.value, b.value);
  return true;
}

/** The common type of two compatible types (dyn absorbs). */
export function join(a: CelType, b: CelType): CelType {
  if (a.kind === "dyn" || b.kind === "dyn") return DYN;
  if (a.kind === "list" && b.kind === "list") return listOf(join(a.elem, b.elem));
  return a;
}
