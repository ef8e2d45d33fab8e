/**
 * Variable bindings as our engine receives them (by variable id, as the filter's activation will answer),
 * shared by the generator, the conformance runner and whatever evaluator runs the VM.
 */

/** One variable binding, addressed by variable id. */
export type VarInput =
  | { readonly id: number; readonly kind: "absent" }
  | { readonly id: number; readonly kind: "string"; readonly value: string }
  | { readonly id: number; readonly kind: "bool"; readonly value: boolean }
  | { readonly id: number; readonly kind: "int"; readonly value: bigint }
  | { readonly id: number; readonly kind: "uint"; readonly value: bigint }
  | { readonly id: number; readonly kind: "double"; readonly value: number }
  | { readonly id: number; readonly kind: "null" }
  | { readonly id: number; readonly kind: "map"; readonly entries: readonly (readonly [string, string])[] }
  /** A JSON document (request.json, jwt.claims): the engine's extractor parses these bytes. */
  | { readonly id: number; readonly kind: "json"; readonly text: string | Uint8Array }
  /** A protobuf message for `method`, framed (gRPC body) or not. */
  | { readonly id: number; readonly kind: "proto"; readonly method: string; readonly framed: boolean; readonly bytes: Uint8Array }
  /** The activation itself reports an error (e.g. a body over the limit). */
  | { readonly id: number; readonly kind: "error"; readonly errorKind: number; readonly detail: string };
