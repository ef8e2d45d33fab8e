/**
 * The reference evaluator: @bufbuild/cel's planner and evaluator, fed the same variables as our VM, with
 * results normalized to CelOutcome. For request.grpc.message it needs protobuf-es descriptors, built here from
 * the protobufjs types the compiler uses (the same .proto files).
 */
import { parse, plan, celEnv, isCelError, isCelList, isCelMap, isCelUint, type CelValue } from "@bufbuild/cel";
import { fromBinary, type Registry, type DescMessage } from "@bufbuild/protobuf";
import { referenceErrorClass, type CelOutcome, type CelValueOut } from "./outcome.ts";

export { registryFromProtobufjs } from "../support/protobuf-es.ts";

/** Normalizes a value the reference produced. */
export function normalizeReference(v: CelValue): CelValueOut | undefined {
  if (v === null) return { t: "null" };
  switch (typeof v) {
    case "boolean": return { t: "bool", v };
    case "bigint": return { t: "int", v };
    case "number": return { t: "double", v };
    case "string": return { t: "string", v };
  }
  if (isCelUint(v)) return { t: "uint", v: v.value };
  if (isCelList(v)) {
    const items: CelValueOut[] = [];
    for (const x of v) {
      const n = normalizeReference(x as CelValue);
      if (!n) return undefined;
      items.push(n);
    }
    return { t: "list", v: items };
  }
  if (isCelMap(v)) return { t: "map", size: v.size };
  return undefined;
}

export class Reference {
  private readonly env: ReturnType<typeof celEnv>;

  constructor(registry?: Registry) {
    this.env = registry ? celEnv({ registry }) : celEnv();
  }

  message(desc: DescMessage, bytes: Uint8Array): unknown {
    return fromBinary(desc, bytes);
  }

  eval(expr: string, bindings: Record<string, unknown>): CelOutcome {
    let result: unknown;
    try {
      result = plan(this.env, parse(expr))(bindings as never);
    } catch (e) {
      return { kind: "error", cls: referenceErrorClass(String((e as Error).message)), message: String((e as Error).message) };
    }
    if (isCelError(result)) return { kind: "error", cls: referenceErrorClass(result.message), message: result.message };
    const v = normalizeReference(result as CelValue);
    if (!v) return { kind: "error", cls: "other", message: `unrepresentable reference result ${String(result)}` };
    return { kind: "value", value: v };
  }
}
