/**
 * protobuf-es (@bufbuild/protobuf) descriptors for .proto files loaded with protobufjs: what the compiler reads,
 * turned into the FileDescriptorProtos protoc would write, so protobuf-es can decode and encode the same messages
 * by reflection (createFileRegistry, fromBinary, toBinary). Covers what the tests' .proto files use: proto2 and
 * proto3 files, nested messages and enums, oneofs (proto3 `optional` as synthetic oneofs), maps (entry messages
 * with `map_entry`), `required`, `packed`. Groups and extensions are not translated.
 */
import { create, createFileRegistry, type FileRegistry } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label, FieldDescriptorProto_Type, FileDescriptorProtoSchema, FileDescriptorSetSchema,
  type DescriptorProto, type EnumDescriptorProto, type FieldDescriptorProto, type FileDescriptorProto,
} from "@bufbuild/protobuf/wkt";
import protobuf from "protobufjs";

const SCALAR_TYPES: Record<string, FieldDescriptorProto_Type> = {
  double: FieldDescriptorProto_Type.DOUBLE, float: FieldDescriptorProto_Type.FLOAT, int64: FieldDescriptorProto_Type.INT64,
  uint64: FieldDescriptorProto_Type.UINT64, int32: FieldDescriptorProto_Type.INT32, fixed64: FieldDescriptorProto_Type.FIXED64,
  fixed32: FieldDescriptorProto_Type.FIXED32, bool: FieldDescriptorProto_Type.BOOL, string: FieldDescriptorProto_Type.STRING,
  bytes: FieldDescriptorProto_Type.BYTES, uint32: FieldDescriptorProto_Type.UINT32, sfixed32: FieldDescriptorProto_Type.SFIXED32,
  sfixed64: FieldDescriptorProto_Type.SFIXED64, sint32: FieldDescriptorProto_Type.SINT32, sint64: FieldDescriptorProto_Type.SINT64,
};

type Edition = "proto2" | "proto3";

function editionOf(obj: protobuf.ReflectionObject): Edition {
  for (let o: protobuf.ReflectionObject | null = obj; o; o = o.parent) {
    const e = (o as unknown as { _edition?: string | null })._edition;
    if (e) return e === "proto2" ? "proto2" : "proto3";
  }
  return "proto3";
}

const fullName = (o: protobuf.ReflectionObject) => o.fullName.replace(/^\./, "");

/** The package of a top-level type: the namespaces above it. */
function packageOf(o: protobuf.ReflectionObject): string {
  const parts: string[] = [];
  for (let p = o.parent; p && !(p instanceof protobuf.Root); p = p.parent) parts.unshift(p.name);
  return parts.join(".");
}

/** `map_field` -> `MapFieldEntry`, as protoc names map entry messages. */
function entryName(field: string): string {
  return field.split("_").map((s) => (s.length > 0 ? s[0].toUpperCase() + s.slice(1) : s)).join("") + "Entry";
}

/** A protobuf-es registry of every message and enum of `root` (one file per .proto file). */
export function registryFromProtobufjs(root: protobuf.Root): FileRegistry {
  root.resolveAll();
  const files = new Map<string, { name: string; pkg: string; edition: Edition; messages: DescriptorProto[]; enums: EnumDescriptorProto[]; deps: Set<string> }>();
  const fileKey = (o: protobuf.ReflectionObject) => o.filename ?? `${packageOf(o) || "root"}.proto`;
  const fileOf = (o: protobuf.ReflectionObject) => {
    const key = fileKey(o);
    let f = files.get(key);
    if (!f) files.set(key, (f = { name: key, pkg: packageOf(o), edition: editionOf(o), messages: [], enums: [], deps: new Set() }));
    return f;
  };
  const enumProto = (e: protobuf.Enum): EnumDescriptorProto =>
    ({ name: e.name, value: Object.entries(e.values).map(([name, number]) => ({ name, number })) }) as unknown as EnumDescriptorProto;
  const messageProto = (t: protobuf.Type, file: ReturnType<typeof fileOf>): DescriptorProto => {
    // protoc lists real oneofs first, then the synthetic oneofs of proto3 `optional` fields.
    const synthetic = (o: protobuf.OneOf) => o.fieldsArray.every((f) => f.options?.proto3_optional === true);
    const oneofs = [...t.oneofsArray.filter((o) => !synthetic(o)), ...t.oneofsArray.filter(synthetic)];
    const nested: DescriptorProto[] = [];
    const fields: FieldDescriptorProto[] = t.fieldsArray.map((f) => {
      f.resolve();
      const resolved = f.resolvedType;
      if (resolved && fileKey(resolved) !== fileKey(t)) file.deps.add(fileKey(resolved));
      const typeOf = (): { type: FieldDescriptorProto_Type; typeName?: string } =>
        resolved instanceof protobuf.Type
          ? { type: FieldDescriptorProto_Type.MESSAGE, typeName: `.${fullName(resolved)}` }
          : resolved instanceof protobuf.Enum
            ? { type: FieldDescriptorProto_Type.ENUM, typeName: `.${fullName(resolved)}` }
            : { type: SCALAR_TYPES[f.type] };
      if (f.map) {
        const name = entryName(f.name);
        nested.push({
          name,
          field: [
            { name: "key", number: 1, label: FieldDescriptorProto_Label.OPTIONAL, type: SCALAR_TYPES[(f as unknown as protobuf.MapField).keyType], jsonName: "key" },
            { name: "value", number: 2, label: FieldDescriptorProto_Label.OPTIONAL, ...typeOf(), jsonName: "value" },
          ],
          options: { mapEntry: true },
        } as unknown as DescriptorProto);
        return {
          name: f.name, number: f.id, label: FieldDescriptorProto_Label.REPEATED, type: FieldDescriptorProto_Type.MESSAGE,
          typeName: `.${fullName(t)}.${name}`, jsonName: f.name,
        } as unknown as FieldDescriptorProto;
      }
      const packed = f.options?.packed;
      return {
        name: f.name,
        number: f.id,
        label: f.repeated ? FieldDescriptorProto_Label.REPEATED : f.required ? FieldDescriptorProto_Label.REQUIRED : FieldDescriptorProto_Label.OPTIONAL,
        ...typeOf(),
        oneofIndex: f.partOf ? oneofs.indexOf(f.partOf) : undefined,
        proto3Optional: f.options?.proto3_optional === true || undefined,
        jsonName: f.name,
        ...(packed === undefined ? {} : { options: { packed } }),
      } as unknown as FieldDescriptorProto;
    });
    return {
      name: t.name,
      field: fields,
      oneofDecl: oneofs.map((o) => ({ name: o.name })),
      nestedType: [...nested, ...t.nestedArray.filter((n): n is protobuf.Type => n instanceof protobuf.Type).map((n) => messageProto(n, file))],
      enumType: t.nestedArray.filter((n): n is protobuf.Enum => n instanceof protobuf.Enum).map(enumProto),
    } as unknown as DescriptorProto;
  };
  const visit = (ns: protobuf.NamespaceBase) => {
    for (const obj of ns.nestedArray) {
      if (obj instanceof protobuf.Type) fileOf(obj).messages.push(messageProto(obj, fileOf(obj)));
      else if (obj instanceof protobuf.Enum) fileOf(obj).enums.push(enumProto(obj));
      else if (obj instanceof protobuf.Namespace && !(obj instanceof protobuf.Service)) visit(obj);
    }
  };
  visit(root);
  const protos: FileDescriptorProto[] = [...files.values()].map((f) =>
    create(FileDescriptorProtoSchema, {
      name: f.name,
      package: f.pkg,
      syntax: f.edition,
      dependency: [...f.deps],
      messageType: f.messages,
      enumType: f.enums,
    }),
  );
  return createFileRegistry(create(FileDescriptorSetSchema, { file: protos }));
}
