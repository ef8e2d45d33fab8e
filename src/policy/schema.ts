// Stage 2a, check against a schema: the Istio CRDs in schemas/istio/ and our own schema in schemas/spiffe-authz/.
//
// Three passes over one document, all reporting at the position of the offending YAML node:
// 1. ajv validates types, enums, required fields and limits (x-kubernetes-* keywords are accepted and ignored);
// 2. a walk reports unknown fields. CRD schemas do not say `additionalProperties: false` (the API server prunes
//    unknown fields silently), but a misspelt `principal` silently dropped from a DENY rule is a security hole, so
//    every field the schema does not declare is an error here;
// 3. the CEL rules of `x-kubernetes-validations` run through @bufbuild/cel, as the API server runs them. A rule that
//    uses a Kubernetes-only function (`isURL`, `url`) cannot run here and is skipped.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { run } from "@bufbuild/cel";
import { parse as parseYaml } from "yaml";
import { closest, type Diagnostics, didYouMean, q, type Pos } from "./diagnostics.ts";
import { describe, nodeAt, toJS, type YNode } from "./yaml.ts";
import { SCHEMAS_DIR } from "../paths.ts";

export { SCHEMAS_DIR };

export type JsonSchema = Record<string, unknown>;

const K8S_KEYWORDS = [
  "x-kubernetes-validations",
  "x-kubernetes-preserve-unknown-fields",
  "x-kubernetes-int-or-string",
  "x-kubernetes-list-map-keys",
  "x-kubernetes-list-type",
  "x-kubernetes-map-type",
  "x-kubernetes-embedded-resource",
];

let ajvInstance: Ajv | undefined;
function ajv(): Ajv {
  if (!ajvInstance) {
    ajvInstance = new Ajv({ allErrors: true, verbose: true, strict: true, strictTypes: false, strictRequired: false, validateFormats: false });
    for (const k of K8S_KEYWORDS) ajvInstance.addKeyword(k);
    // OpenAPI formats of the CRDs (int32, date-time, ...) are not checked: the types already are.
    for (const f of ["int32", "int64", "date-time", "byte", "uri"]) ajvInstance.addFormat(f, true);
  }
  return ajvInstance;
}

const crdCache = new Map<string, { kind: string; group: string; versions: Map<string, JsonSchema> }>();

/** Loads a CRD file of schemas/istio/ and returns its kind, group and the openAPIV3Schema of every version. */
export function loadCrd(fileName: string): { kind: string; group: string; versions: Map<string, JsonSchema> } {
  let crd = crdCache.get(fileName);
  if (!crd) {
    const doc = parseYaml(readFileSync(join(SCHEMAS_DIR, "istio", fileName), "utf8")) as {
      spec: { group: string; names: { kind: string }; versions: { name: string; schema: { openAPIV3Schema: JsonSchema } }[] };
    };
    const versions = new Map<string, JsonSchema>();
    for (const v of doc.spec.versions) versions.set(v.name, v.schema.openAPIV3Schema);
    crd = { kind: doc.spec.names.kind, group: doc.spec.group, versions };
    crdCache.set(fileName, crd);
  }
  return crd;
}

/** The openAPIV3Schema of `group/version` `kind` from its CRD file in schemas/istio/. */
export function crdSchema(fileName: string, version: string): JsonSchema {
  const s = loadCrd(fileName).versions.get(version);
  if (!s) throw new Error(`${fileName} has no version ${version}`);
  return s;
}

const validators = new WeakMap<JsonSchema, ValidateFunction>();
function validator(schema: JsonSchema): ValidateFunction {
  let v = validators.get(schema);
  if (!v) {
    v = ajv().compile(schema);
    validators.set(schema, v);
  }
  return v;
}

/** Loads a JSON schema of schemas/ (by path relative to it). */
export function loadJsonSchema(rel: string): JsonSchema {
  return JSON.parse(readFileSync(join(SCHEMAS_DIR, rel), "utf8")) as JsonSchema;
}

/** How a path is named in messages: `"principals"`, `entry 2 of "principals"`. */
function fieldName(path: (string | number)[]): string {
  if (path.length === 0) return "the document";
  const last = path[path.length - 1];
  if (typeof last === "number") {
    const parent = path[path.length - 2];
    return parent === undefined ? `entry ${last + 1}` : `each entry of ${q(parent)}`;
  }
  return q(last);
}

/** The thing a mapping at `path` is, for "unknown field ... in <context>" messages. */
export function contextName(path: (string | number)[], overrides: Record<string, string> = {}): string {
  const names: Record<string, string> = {
    source: "source",
    operation: "operation",
    when: "condition",
    rules: "rule",
    from: "from entry",
    to: "to entry",
    selector: "selector",
    metadata: "metadata",
    spec: "spec",
    grpc: "grpc",
    provider: "provider",
    targetRef: "targetRef",
    targetRefs: "targetRefs entry",
    trustDomains: "trust-domain schema",
    wasm: "wasm",
    vmConfig: "vmConfig",
    match: "match entry",
  };
  for (let i = path.length - 1; i >= 0; i--) {
    const seg = path[i];
    if (typeof seg === "number") continue;
    // `trustDomains: {td: {...}}` in our format: the mapping under a trust domain name.
    if (i === path.length - 1 && path[i - 1] === "trustDomains" && path[0] === "spec") return "trust-domain schema";
    return overrides[seg] ?? names[seg] ?? q(seg);
  }
  return "document";
}

function typeWord(t: unknown): string {
  const one = (x: string) =>
    ({ object: "a mapping", array: "a list", string: "a string", integer: "an integer", number: "a number", boolean: "a boolean", null: "null" })[x] ?? x;
  if (Array.isArray(t)) return t.map((x) => one(String(x))).join(" or ");
  return one(String(t));
}

function instancePath(e: ErrorObject): (string | number)[] {
  if (!e.instancePath) return [];
  return e.instancePath
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

/** Translates one ajv error into our message style, at the right node. Returns null for errors to skip. */
function translate(e: ErrorObject, root: YNode, contexts: Record<string, string>): { pos: Pos; message: string } | null {
  const path = instancePath(e);
  const found = nodeAt(root, path);
  const node = found.node;
  const pos = node.pos;
  switch (e.keyword) {
    case "type":
      return { pos, message: `${fieldName(path)} must be ${typeWord((e.params as { type: unknown }).type)}, not ${describe(node)}` };
    case "enum": {
      const allowed = (e.params as { allowedValues: unknown[] }).allowedValues.map(String);
      const got = node.kind === "scalar" ? node.text : describe(node);
      const hint = closest(got, allowed);
      return {
        pos,
        message: `invalid value ${q(got)} for ${fieldName(path)}; expected one of ${allowed.map(q).join(", ")}${hint ? ` (did you mean ${q(hint)}?)` : ""}`,
      };
    }
    case "const":
      return { pos, message: `${fieldName(path)} must be ${q((e.params as { allowedValue: unknown }).allowedValue)}` };
    case "required":
      return {
        pos,
        message: `missing required field ${q((e.params as { missingProperty: string }).missingProperty)} in ${contextName(path, contexts)}`,
      };
    case "maxItems":
      return { pos, message: `${fieldName(path)} has too many entries (at most ${(e.params as { limit: number }).limit})` };
    case "minItems":
      return { pos, message: `${fieldName(path)} needs at least ${(e.params as { limit: number }).limit} entries` };
    case "maxLength":
      return { pos, message: `${fieldName(path)} is too long (at most ${(e.params as { limit: number }).limit} characters)` };
    case "minLength":
      return { pos, message: `${fieldName(path)} must not be empty` };
    case "maxProperties":
      return { pos, message: `${fieldName(path)} has too many entries (at most ${(e.params as { limit: number }).limit})` };
    case "minProperties":
      return { pos, message: `${fieldName(path)} must not be empty` };
    case "pattern": {
      const got = node.kind === "scalar" ? node.text : describe(node);
      return { pos, message: `invalid value ${q(got)} for ${fieldName(path)}; it must match ${(e.params as { pattern: string }).pattern}` };
    }
    case "minimum":
    case "maximum":
    case "exclusiveMinimum":
    case "exclusiveMaximum":
      return { pos, message: `${fieldName(path)} ${e.message}` };
    case "additionalProperties":
    case "oneOf":
    case "anyOf":
    case "not":
    case "if":
      // Unknown fields are reported by the walk (with suggestions); the oneOf/anyOf of the CRDs only express
      // "provider goes with CUSTOM", which the semantic checks report in plainer words.
      return null;
    default:
      return { pos, message: `${fieldName(path)} ${e.message ?? "is invalid"}` };
  }
}

/** Resolves a local `$ref` (`#/definitions/x`) of our own schema. */
function deref(schema: JsonSchema, root: JsonSchema): JsonSchema {
  let s = schema;
  for (let i = 0; i < 16 && typeof s.$ref === "string"; i++) {
    const parts = (s.$ref as string).replace(/^#\//, "").split("/");
    let t: unknown = root;
    for (const p of parts) t = (t as Record<string, unknown>)[p];
    s = t as JsonSchema;
  }
  return s;
}

/** Reports every mapping key the schema does not declare, with a suggestion. */
function walkUnknown(
  node: YNode,
  schema: JsonSchema | undefined,
  root: JsonSchema,
  path: (string | number)[],
  diags: Diagnostics,
  extraKnown: (path: (string | number)[]) => string[] | undefined,
  contexts: Record<string, string>,
): void {
  if (!schema) return;
  schema = deref(schema, root);
  if (node.kind === "map") {
    const props = schema.properties as Record<string, JsonSchema> | undefined;
    const additional = schema.additionalProperties as JsonSchema | boolean | undefined;
    const preserve = schema["x-kubernetes-preserve-unknown-fields"] === true;
    const extra = extraKnown(path);
    for (const e of node.entries) {
      const sub = props?.[e.key];
      if (sub) {
        walkUnknown(e.value, sub, root, [...path, e.key], diags, extraKnown, contexts);
      } else if (typeof additional === "object") {
        walkUnknown(e.value, additional, root, [...path, e.key], diags, extraKnown, contexts);
      } else if (extra?.includes(e.key)) {
      } else if (props && !preserve && additional !== true) {
        const known = [...Object.keys(props), ...(extra ?? [])];
        diags.error(e.keyPos, `unknown field ${q(e.key)} in ${contextName(path, contexts)}${didYouMean(e.key, known)}`);
      }
    }
  } else if (node.kind === "seq") {
    const items = schema.items as JsonSchema | undefined;
    node.items.forEach((item, i) => walkUnknown(item, items, root, [...path, i], diags, extraKnown, contexts));
  }
}

/** Converts plain JS data into what @bufbuild/cel takes: objects become Maps, integers stay numbers. */
function toCel(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(toCel);
  if (v !== null && typeof v === "object") return new Map(Object.entries(v as object).map(([k, x]) => [k, toCel(x)]));
  return v;
}

/** Runs the `x-kubernetes-validations` CEL rules of the schema over the data, reporting failures at the node. */
function walkCel(node: YNode, data: unknown, schema: JsonSchema | undefined, path: (string | number)[], diags: Diagnostics): void {
  if (!schema || data === undefined) return;
  const rules = schema["x-kubernetes-validations"] as { rule: string; message?: string }[] | undefined;
  if (rules) {
    for (const r of rules) {
      let result: unknown;
      try {
        result = run(r.rule, { self: toCel(data) } as never);
      } catch {
        continue;
      }
      // Anything but a boolean is a rule this evaluator cannot run (a Kubernetes-only function): skip it.
      if (result === false) {
        const msg = (r.message ?? `failed rule ${r.rule}`).replace(/\.$/, "");
        diags.error(node.pos, `${fieldName(path)}: ${msg.charAt(0).toLowerCase() + msg.slice(1)}`);
      }
    }
  }
  if (node.kind === "map" && data !== null && typeof data === "object") {
    const props = schema.properties as Record<string, JsonSchema> | undefined;
    const additional = schema.additionalProperties as JsonSchema | undefined;
    for (const e of node.entries) {
      const sub = props?.[e.key] ?? (typeof additional === "object" ? additional : undefined);
      walkCel(e.value, (data as Record<string, unknown>)[e.key], sub, [...path, e.key], diags);
    }
  } else if (node.kind === "seq" && Array.isArray(data)) {
    const items = schema.items as JsonSchema | undefined;
    node.items.forEach((item, i) => walkCel(item, data[i], items, [...path, i], diags));
  }
}

/**
 * Validates one document's tree against a schema. Returns true when the document is free of errors (so later
 * passes may trust types). `extraKnown` names keys allowed beyond the schema at a path (e.g. `metadata` fields of a
 * CRD, whose root schema leaves them open). `contexts` renames what a mapping under a key is called in messages
 * (our `from` entries are sources).
 */
export function validateAgainstSchema(
  root: YNode,
  schema: JsonSchema,
  diags: Diagnostics,
  extraKnown: (path: (string | number)[]) => string[] | undefined = () => undefined,
  contexts: Record<string, string> = {},
): boolean {
  const before = diags.errors.length;
  const data = toJS(root);
  const validate = validator(schema);
  if (!validate(data)) {
    for (const e of validate.errors ?? []) {
      const t = translate(e, root, contexts);
      if (t) diags.error(t.pos, t.message);
    }
  }
  walkUnknown(root, schema, schema, [], diags, extraKnown, contexts);
  walkCel(root, data, schema, [], diags);
  return diags.errors.length === before;
}

/** Validates plain data (an emitted manifest) against a schema; returns ajv-style messages, empty when valid. */
export function validateData(data: unknown, schema: JsonSchema): string[] {
  const validate = validator(schema);
  const out: string[] = [];
  if (!validate(data)) for (const e of validate.errors ?? []) out.push(`${e.instancePath || "/"} ${e.message}`);
  return out;
}
