/**
 * The reference evaluator: @bufbuild/cel's planner and evaluator, fed the same variables as our VM, with
 * results normalized to CelOutcome. For request.grpc.message it needs protobuf-es descriptors, built here from
 * the protobufjs types the compiler uses (the same .proto files).
 */
import { parse, plan, celEnv, isCelError, isCelList, isCelMap, isCelUint, type CelValue } from "@bufbuild/cel";
import { create, createFileRegistry, fromBinary, type Registry, type DescMessage } from "@bufbuild/protobuf";
import {
  FileDescriptorProtoSchema, FieldDescriptorProto_Label, FieldDescriptorProto_Type, type DescriptorProto,
  type EnumDescriptorProto, type FieldDescriptorProto,
} from "@bufbuild/protobuf/wkt";
import protobuf from "protobufjs";
import { referenceErrorClass, type CelOutcome, type CelValueOut } from "./outcome.ts";

const SCALAR_TYPES: Record<string, FieldDescriptorProto_Type> = {
  double: FieldDescriptorProto_Type.DOUBLE, float: FieldDescriptorProto_Type.FLOAT, int64: FieldDescriptorProto_Type.INT64,
  uint64: FieldDescriptorProto_Type.UINT64, int32: FieldDescriptorProto_Type.INT32, fixed64: FieldDescriptorProto_Type.FIXED64,
  fixed32: FieldDescriptorProto_Type.FIXED32, bool: FieldDescriptorProto_Type.BOOL, string: FieldDescriptorProto_Type.STRING,
  bytes: FieldDescriptorProto_Type.BYTES, uint32: FieldDescriptorProto_Type.UINT32, sfixed32: FieldDescriptorProto_Type.SFIXED32,
  sfixed64: FieldDescriptorProto_Type.SFIXED64, sint32: FieldDescriptorProto_Type.SINT32, sint64: FieldDescriptorProto_Type.SINT64,
};

/** A protobuf-es registry with every message and enum of `root` (proto3 files, one package each). */
export function registryFromProtobufjs(root: protobuf.Root): Registry {
  const byPackage = new Map<string, { messages: Partial<DescriptorProto>[]; enums: Partial<EnumDescriptorProto>[] }>();
  const fileOf = (pkg: string) => {
    let f = byPackage.get(pkg);
    if (!f) byPackage.set(pkg, (f = { messages: [], enums: [] }));
    return f;
  };
  const enumProto = (e: protobuf.Enum): Partial<EnumDescriptorProto> => ({
    name: e.name,
    value: Object.entries(e.values).map(([name, number]) => ({ name, number })) as EnumDescriptorProto["value"],
  });
  const messageProto = (t: protobuf.Type): Partial<DescriptorProto> => {
    const oneofs = t.oneofsArray;
    const fields: Partial<FieldDescriptorProto>[] = t.fieldsArray.map((f) => {
      f.resolve();
      const synthetic = f.options?.proto3_optional === true;
      const resolved = f.resolvedType;
      const type = resolved instanceof protobuf.Type
        ? FieldDescriptorProto_Type.MESSAGE
        : resolved instanceof protobuf.Enum ? FieldDescriptorProto_Type.ENUM : SCALAR_TYPES[f.type];
      return {
        name: f.name,
        number: f.id,
        label: f.repeated ? FieldDescriptorProto_Label.REPEATED : FieldDescriptorProto_Label.OPTIONAL,
        type,
        typeName: resolved ? resolved.fullName : undefined,
        oneofIndex: f.partOf ? oneofs.indexOf(f.partOf) : undefined,
        proto3Optional: synthetic || undefined,
        jsonName: f.name,
      };
    });
    return {
      name: t.name,
      field: fields as FieldDescriptorProto[],
      oneofDecl: oneofs.map((o) => ({ name: o.name })) as DescriptorProto["oneofDecl"],
      nestedType: t.nestedArray.filter((n): n is protobuf.Type => n instanceof protobuf.Type).map(messageProto) as DescriptorProto[],
      enumType: t.nestedArray.filter((n): n is protobuf.Enum => n instanceof protobuf.Enum).map(enumProto) as EnumDescriptorProto[],
    };
  };
  const visit = (ns: protobuf.NamespaceBase, pkg: string) => {
    for (const obj of ns.nestedArray) {
      if (obj instanceof protobuf.Type) fileOf(pkg).messages.push(messageProto(obj));
      else if (obj instanceof protobuf.Enum) fileOf(pkg).enums.push(enumProto(obj));
      else if (obj instanceof protobuf.Namespace && !(obj instanceof protobuf.Service)) visit(obj, pkg ? `${pkg}.${obj.name}` : obj.name);
    }
  };
  visit(root, "");
  const files = [...byPackage.entries()].map(([pkg, f]) =>
    create(FileDescriptorProtoSchema, {
      name: `${pkg || "root"}.proto`,
      package: pkg,
      syntax: "proto3",
      messageType: f.messages as DescriptorProto[],
      enumType: f.enums as EnumDescriptorProto[],
    }),
  );
  return createFileRegistry(...files.map((file) => createFileRegistry(file, () => undefined)));
}

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
