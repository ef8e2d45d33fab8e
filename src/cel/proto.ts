/**
 * .proto files for conditions that read `request.grpc.message`: loading (protobufjs), gRPC method lookup,
 * and the field facts the lowering needs (number, wire type, CEL type, presence).
 */
import protobuf from "protobufjs";
import { type CelType, BOOL, INT, UINT, DOUBLE, STRING } from "./types.ts";
import { PROTO_TYPE_BYTES, ProtoType, type ProtoEnumSchema, type ProtoMessageSchema, type ProtoSchemaField } from "./bytecode.ts";

/** A gRPC method, as a rule scoped to `/pkg.Service/Method` sees it. */
export interface GrpcMethodInfo {
  /** `/pkg.Service/Method` (the request's `:path`). */
  readonly path: string;
  readonly service: string;
  readonly method: string;
  readonly requestType: protobuf.Type;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
}

export interface ProtoRegistry {
  readonly root: protobuf.Root;
  /** Finds `/pkg.Service/Method` (leading slash optional); undefined when no loaded service has it. */
  findMethod(path: string): GrpcMethodInfo | undefined;
  /** Every method of every loaded service, for diagnostics ("did you mean"). */
  methods(): GrpcMethodInfo[];
}

/** A .proto file that cannot be loaded. */
export class ProtoLoadError extends Error {
  constructor(message: string, readonly file?: string) {
    super(message);
    this.name = "ProtoLoadError";
  }
}

/**
 * Loads .proto files (imports resolved relative to each file and to `includeDirs`). Field names keep their
 * .proto spelling (`resource_id`), as CEL selects them.
 */
export function loadProtos(files: readonly string[], options: { includeDirs?: readonly string[] } = {}): ProtoRegistry {
  const root = new protobuf.Root();
  const includeDirs = options.includeDirs ?? [];
  if (includeDirs.length > 0) {
    const original = root.resolvePath.bind(root);
    root.resolvePath = (origin: string, target: string) => {
      for (const dir of includeDirs) {
        const candidate = `${dir.replace(/\/$/, "")}/${target}`;
        try {
          // protobufjs fetches synchronously through fs; test existence the same way.
          (protobuf.util.fs as { statSync(p: string): unknown }).statSync(candidate);
          return candidate;
        } catch {
          // not in this directory
        }
      }
      return original(origin, target);
    };
  }
  for (const file of files) {
    try {
      root.loadSync(file, { keepCase: true });
    } catch (e) {
      throw new ProtoLoadError(`cannot load '${file}': ${(e as Error).message}`, file);
    }
  }
  try {
    root.resolveAll();
  } catch (e) {
    throw new ProtoLoadError(`cannot resolve the loaded .proto files: ${(e as Error).message}`);
  }
  const all: GrpcMethodInfo[] = [];
  const visit = (ns: protobuf.NamespaceBase) => {
    for (const obj of ns.nestedArray) {
      if (obj instanceof protobuf.Service) {
        const service = obj.fullName.replace(/^\./, "");
        for (const m of obj.methodsArray) {
          m.resolve();
          all.push({
            path: `/${service}/${m.name}`,
            service,
            method: m.name,
            requestType: m.resolvedRequestType!,
            requestStream: !!m.requestStream,
            responseStream: !!m.responseStream,
          });
        }
      }
      if (obj instanceof protobuf.Namespace || obj instanceof protobuf.Type) visit(obj);
    }
  };
  visit(root);
  const byPath = new Map(all.map((m) => [m.path, m]));
  return {
    root,
    findMethod: (path: string) => byPath.get(path.startsWith("/") ? path : `/${path}`),
    methods: () => [...all],
  };
}

/** What the lowering needs to know about one field of a message. */
export type FieldFacts =
  | { readonly kind: "message"; readonly number: number; readonly name: string; readonly type: protobuf.Type }
  | {
      readonly kind: "scalar";
      readonly number: number;
      readonly name: string;
      /** ProtoType number. */
      readonly protoType: number;
      readonly celType: CelType;
      readonly explicitPresence: boolean;
    }
  | { readonly kind: "unsupported"; readonly reason: string };

const SCALARS: Record<string, [number, CelType]> = {
  double: [ProtoType.DOUBLE, DOUBLE],
  float: [ProtoType.FLOAT, DOUBLE],
  int64: [ProtoType.INT64, INT],
  uint64: [ProtoType.UINT64, UINT],
  int32: [ProtoType.INT32, INT],
  fixed64: [ProtoType.FIXED64, UINT],
  fixed32: [ProtoType.FIXED32, UINT],
  bool: [ProtoType.BOOL, BOOL],
  string: [ProtoType.STRING, STRING],
  uint32: [ProtoType.UINT32, UINT],
  sfixed32: [ProtoType.SFIXED32, INT],
  sfixed64: [ProtoType.SFIXED64, INT],
  sint32: [ProtoType.SINT32, INT],
  sint64: [ProtoType.SINT64, INT],
};

/** Facts about field `name` of `type`, or undefined when the message has no such field. */
export function fieldFacts(type: protobuf.Type, name: string): FieldFacts | undefined {
  const field = type.fields[name];
  if (!field) return undefined;
  field.resolve();
  const where = `field '${name}' of '${type.fullName.replace(/^\./, "")}'`;
  if (field.map) return { kind: "unsupported", reason: `${where} is a map: map fields are not supported` };
  if (field.repeated) return { kind: "unsupported", reason: `${where} is repeated: repeated fields are not supported` };
  const synthetic = field.options?.proto3_optional === true;
  if (field.partOf && !synthetic) {
    return { kind: "unsupported", reason: `${where} is part of oneof '${field.partOf.name}': oneof fields are not supported` };
  }
  if (field.options && Object.hasOwn(field.options, "default")) {
    return { kind: "unsupported", reason: `${where} declares a default value: custom defaults are not supported` };
  }
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) {
    const full = resolved.fullName.replace(/^\./, "");
    if (full.startsWith("google.protobuf.")) {
      return { kind: "unsupported", reason: `${where} has well-known type '${full}': well-known types are not supported` };
    }
    return { kind: "message", number: field.id, name, type: resolved };
  }
  if (resolved instanceof protobuf.Enum) {
    if (closedEnum(resolved)) {
      // An absent closed enum field reads as the first value the enum declares (proto2), not 0; paths read 0.
      return { kind: "unsupported", reason: `${where} has closed enum type '${resolved.fullName.replace(/^\./, "")}' (proto2): closed enums are not supported` };
    }
    return { kind: "scalar", number: field.id, name, protoType: ProtoType.ENUM, celType: INT, explicitPresence: !!field.hasPresence };
  }
  if (field.type === "bytes") return { kind: "unsupported", reason: `${where} is bytes: bytes are not supported` };
  const s = SCALARS[field.type];
  if (!s) return { kind: "unsupported", reason: `${where} has unsupported type '${field.type}'` };
  // proto3 singular scalars have implicit presence; `optional` (and proto2/editions explicit) fields do not.
  return { kind: "scalar", number: field.id, name, protoType: s[0], celType: s[1], explicitPresence: !!field.hasPresence };
}

function closedEnum(e: protobuf.Enum): boolean {
  return (e as unknown as { _features?: { enum_type?: string } })._features?.enum_type === "CLOSED";
}

const SCALAR_CODES: Record<string, number> = { ...Object.fromEntries(Object.entries(SCALARS).map(([k, v]) => [k, v[0]])), bytes: PROTO_TYPE_BYTES };

/**
 * The message `root` and every message reachable from it (fields, map values), as the filter checks a request
 * message on the wire (docs/cel.md, "Which protobuf messages the filter reads"): every field with its type,
 * repeated or not, its oneof; map fields as repeated entry messages; the values of closed enums. `root` comes
 * first. A group (delimited encoding) anywhere is an error: its end is a tag, which decoders match differently.
 */
export function messageSchema(root: protobuf.Type): { messages: ProtoMessageSchema[]; enums: ProtoEnumSchema[] } | { error: string } {
  const messages: ProtoMessageSchema[] = [];
  const enums = new Map<string, ProtoEnumSchema>();
  /** A closed enum's name (its values recorded), or undefined for an open one. */
  const closed = (e: protobuf.Enum): string | undefined => {
    if (!closedEnum(e)) return undefined;
    const name = e.fullName.replace(/^\./, "");
    if (!enums.has(name)) enums.set(name, { name, values: [...new Set(Object.values(e.values))].sort((a, b) => a - b) });
    return name;
  };
  const seen = new Set<string>();
  const queue: protobuf.Type[] = [root];
  const nameOf = (t: protobuf.Type) => t.fullName.replace(/^\./, "");
  const enqueue = (t: protobuf.Type) => {
    if (!seen.has(nameOf(t))) {
      seen.add(nameOf(t));
      queue.push(t);
    }
  };
  seen.add(nameOf(root));
  const entries = new Map<string, ProtoMessageSchema>();
  for (let q = 0; q < queue.length; q++) {
    const t = queue[q];
    const realOneofs = t.oneofsArray.filter((o) => o.fieldsArray.some((f) => f.options?.proto3_optional !== true));
    const fields: ProtoSchemaField[] = [];
    for (const f of [...t.fieldsArray].sort((a, b) => a.id - b.id)) {
      f.resolve();
      const where = `field '${f.name}' of '${nameOf(t)}'`;
      if (f.delimited) return { error: `${where} is a group (delimited encoding): groups are not supported in a message a condition reads` };
      const resolved = f.resolvedType;
      const valueCode = (): number | { message: string } | undefined => {
        if (resolved instanceof protobuf.Type) {
          enqueue(resolved);
          return { message: nameOf(resolved) };
        }
        if (resolved instanceof protobuf.Enum) return ProtoType.ENUM;
        return SCALAR_CODES[f.type];
      };
      const value = valueCode();
      if (value === undefined) return { error: `${where} has unsupported type '${f.type}'` };
      if (f.map) {
        const keyName = (f as unknown as protobuf.MapField).keyType;
        const keyType = SCALAR_CODES[keyName];
        if (keyType === undefined) return { error: `${where} has unsupported map key type '${keyName}'` };
        const closedValue = resolved instanceof protobuf.Enum ? closed(resolved) : undefined;
        const valueName = typeof value === "number" ? (resolved instanceof protobuf.Enum ? (closedValue ?? "enum") : f.type) : value.message;
        const entryName = `map<${keyName},${valueName}>`;
        if (!entries.has(entryName)) {
          // Encoders write both the key and the value of every entry; decoders fill in a missing one differently
          // (protobuf-es: an empty message; protobufjs: null, which @grpc/proto-loader then fails on), so both are
          // required.
          const entry: ProtoMessageSchema = {
            name: entryName,
            oneofs: 0,
            fields: [
              { number: 1, type: keyType, repeated: false, explicitPresence: false, required: true, oneof: -1 },
              typeof value === "number"
                ? { number: 2, type: value, repeated: false, explicitPresence: false, required: true, oneof: -1, ...(closedValue ? { enum: closedValue } : {}) }
                : { number: 2, type: ProtoType.MESSAGE, repeated: false, explicitPresence: false, required: true, oneof: -1, message: value.message },
            ],
          };
          entries.set(entryName, entry);
        }
        fields.push({ number: f.id, type: ProtoType.MESSAGE, repeated: true, explicitPresence: false, required: false, oneof: -1, message: entryName });
        continue;
      }
      const oneof = f.partOf ? realOneofs.indexOf(f.partOf) : -1;
      const isMessage = typeof value !== "number";
      const closedName = resolved instanceof protobuf.Enum ? closed(resolved) : undefined;
      fields.push({
        number: f.id,
        type: isMessage ? ProtoType.MESSAGE : value,
        repeated: f.repeated,
        explicitPresence: !f.repeated && !isMessage && !!f.hasPresence,
        required: f.required,
        oneof,
        ...(isMessage ? { message: value.message } : {}),
        ...(closedName ? { enum: closedName } : {}),
      });
    }
    messages.push({ name: nameOf(t), fields, oneofs: realOneofs.length });
  }
  return { messages: [...messages, ...entries.values()], enums: [...enums.values()] };
}
