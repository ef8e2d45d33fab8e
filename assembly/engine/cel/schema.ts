// The message schemas of the EXPR section (docs/cel.md, "EXPR section"): what the protobuf decoder (proto.ts)
// checks a request message against, and what proto paths resolve through. Decoded and validated once, at load.

import { SectionReader } from "./reader";
import { bytesEqual } from "./utf8";

/** Protobuf field types (google.protobuf.FieldDescriptorProto.Type numbers). */
export const PT_DOUBLE: u8 = 1;
export const PT_FLOAT: u8 = 2;
export const PT_INT64: u8 = 3;
export const PT_UINT64: u8 = 4;
export const PT_INT32: u8 = 5;
export const PT_FIXED64: u8 = 6;
export const PT_FIXED32: u8 = 7;
export const PT_BOOL: u8 = 8;
export const PT_STRING: u8 = 9;
export const PT_MESSAGE: u8 = 11;
export const PT_UINT32: u8 = 13;
export const PT_ENUM: u8 = 14;
export const PT_SFIXED32: u8 = 15;
export const PT_SFIXED64: u8 = 16;
export const PT_SINT32: u8 = 17;
export const PT_SINT64: u8 = 18;

/** FieldDescriptorProto.Type BYTES: in message schemas only (conditions do not read bytes). */
export const PT_BYTES: u8 = 12;

/** Longest proto path (fields). */
export const MAX_PROTO_DEPTH: i32 = 32;

/** Schema field flags (docs/cel.md, "EXPR section"). */
export const FIELD_REPEATED: u8 = 1;
export const FIELD_EXPLICIT_PRESENCE: u8 = 2;
export const FIELD_REQUIRED: u8 = 4;
/** A u16 index meaning "none". */
const NONE16: i32 = 0xffff;

/** The wire type a field of protobuf type `t` arrives with (unpacked), or -1 for a type no schema declares. */
export function protoWireType(t: u8): i32 {
  switch (t) {
    case PT_INT64: case PT_UINT64: case PT_INT32: case PT_BOOL: case PT_UINT32: case PT_ENUM: case PT_SINT32:
    case PT_SINT64: return 0;
    case PT_DOUBLE: case PT_FIXED64: case PT_SFIXED64: return 1;
    case PT_STRING: case PT_MESSAGE: case PT_BYTES: return 2;
    case PT_FLOAT: case PT_FIXED32: case PT_SFIXED32: return 5;
  }
  return -1;
}

/** Whether a condition may read a field of type `t` (every schema type but bytes). */
export function protoReadable(t: u8): bool {
  return t != PT_BYTES && protoWireType(t) >= 0;
}

/**
 * The message schemas of the request messages conditions read, flattened: every field of every message reachable
 * from a method's request message, ascending by number within a message (the decoder looks fields up by binary
 * search), and the methods' request messages.
 */
export class ProtoSchema {
  messageCount: i32 = 0;
  msgFieldStart: StaticArray<i32> = new StaticArray<i32>(0);
  msgFieldCount: StaticArray<i32> = new StaticArray<i32>(0);
  msgOneofCount: StaticArray<i32> = new StaticArray<i32>(0);
  /** How many of the message's fields are proto2 `required`. */
  msgRequired: StaticArray<i32> = new StaticArray<i32>(0);
  fieldNumber: StaticArray<u32> = new StaticArray<u32>(0);
  fieldType: StaticArray<u8> = new StaticArray<u8>(0);
  fieldFlags: StaticArray<u8> = new StaticArray<u8>(0);
  /** Index of the field's oneof within its message, or -1. */
  fieldOneof: StaticArray<i32> = new StaticArray<i32>(0);
  /** Type MESSAGE: the field's message; else -1. */
  fieldMessage: StaticArray<i32> = new StaticArray<i32>(0);
  /** Type ENUM of a closed enum: the enum; else -1 (an open enum takes any int32). */
  fieldEnum: StaticArray<i32> = new StaticArray<i32>(0);
  /** Closed enums: their declared values, ascending, at enumStart[e] (enumCount[e] of them). */
  enumStart: StaticArray<i32> = new StaticArray<i32>(0);
  enumCount: StaticArray<i32> = new StaticArray<i32>(0);
  enumValues: StaticArray<i32> = new StaticArray<i32>(0);
  methodCount: i32 = 0;
  methodPtr: StaticArray<usize> = new StaticArray<usize>(0);
  methodLen: StaticArray<i32> = new StaticArray<i32>(0);
  methodMessage: StaticArray<i32> = new StaticArray<i32>(0);

  /** Whether closed enum `e` declares `v`. */
  enumDeclares(e: i32, v: i32): bool {
    let lo = unchecked(this.enumStart[e]);
    let hi = lo + unchecked(this.enumCount[e]) - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const x = unchecked(this.enumValues[mid]);
      if (x == v) return true;
      if (x < v) lo = mid + 1;
      else hi = mid - 1;
    }
    return false;
  }

  /** The index of field `num` of message `m` (an index into the field arrays), or -1. */
  findField(m: i32, num: u32): i32 {
    let lo = unchecked(this.msgFieldStart[m]);
    let hi = lo + unchecked(this.msgFieldCount[m]) - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const n = unchecked(this.fieldNumber[mid]);
      if (n == num) return mid;
      if (n < num) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }
}

/**
 * Reads the closed enums, the message schemas and the methods (docs/cel.md, "EXPR section") into `sc`. Returns ""
 * when valid, else why not: enum values ascend; field numbers ascend within a message and are legal, every type is
 * one a message can declare (no groups), flags are consistent (a repeated field is not required, in no oneof and
 * has no explicit presence), oneof, message and enum indexes exist, methods are distinct and name a message.
 */
export function decodeSchema(r: SectionReader, sc: ProtoSchema, len: i32): string {
  const enums = <i32>r.u32();
  if (r.failed || enums < 0 || enums >= NONE16 || enums > len) return "bad enum count";
  sc.enumStart = new StaticArray<i32>(enums);
  sc.enumCount = new StaticArray<i32>(enums);
  const values = new Array<i32>();
  for (let e = 0; e < enums; e++) {
    const n = <i32>r.u32();
    if (r.failed || n < 0 || n > len) return "expr section truncated in enum " + e.toString();
    sc.enumStart[e] = values.length;
    sc.enumCount[e] = n;
    for (let k = 0; k < n; k++) {
      const v = <i32>r.u32();
      if (r.failed) return "expr section truncated in enum " + e.toString();
      if (k > 0 && v <= values[values.length - 1]) return "enum " + e.toString() + " has values out of order";
      values.push(v);
    }
  }
  sc.enumValues = toStatic<i32>(values);

  const count = <i32>r.u32();
  if (r.failed || count < 0 || count >= NONE16 || count > len) return "bad message count";
  sc.messageCount = count;
  sc.msgFieldStart = new StaticArray<i32>(count);
  sc.msgFieldCount = new StaticArray<i32>(count);
  sc.msgOneofCount = new StaticArray<i32>(count);
  sc.msgRequired = new StaticArray<i32>(count);
  const number = new Array<u32>();
  const type = new Array<u8>();
  const flagsOf = new Array<u8>();
  const oneofOf = new Array<i32>();
  const messageOf = new Array<i32>();
  const enumOf = new Array<i32>();
  for (let i = 0; i < count; i++) {
    const n = r.u16();
    const oneofs = r.u16();
    if (r.failed) return "expr section truncated in message " + i.toString();
    if (oneofs == NONE16) return "message " + i.toString() + " has a bad oneof count";
    sc.msgFieldStart[i] = number.length;
    sc.msgFieldCount[i] = n;
    sc.msgOneofCount[i] = oneofs;
    let last: u32 = 0;
    let required = 0;
    for (let j = 0; j < n; j++) {
      const num = r.u32();
      const t = r.u8();
      const flags = r.u8();
      const oneof = r.u16();
      const msg = r.u16();
      if (r.failed) return "expr section truncated in message " + i.toString();
      if (num <= last || num > 536870911) return "message " + i.toString() + " has a bad field number";
      last = num;
      const at = "message " + i.toString() + " field " + num.toString();
      if (protoWireType(t) < 0) return at + " has an unsupported type";
      const repeated = (flags & FIELD_REPEATED) != 0;
      const req = (flags & FIELD_REQUIRED) != 0;
      if ((flags & ~7) != 0 || (repeated && (req || oneof != NONE16 || (flags & FIELD_EXPLICIT_PRESENCE) != 0))) return at + " has bad flags";
      if (oneof != NONE16 && (oneof >= oneofs || req)) return at + " has a bad oneof";
      if (t == PT_ENUM) {
        if (msg != NONE16 && msg >= enums) return at + " has a bad enum index";
      } else if (t == PT_MESSAGE ? msg >= count : msg != NONE16) {
        return at + " has a bad message index";
      }
      if (req) required++;
      number.push(num);
      type.push(t);
      flagsOf.push(flags);
      oneofOf.push(oneof == NONE16 ? -1 : oneof);
      messageOf.push(t == PT_MESSAGE ? msg : -1);
      enumOf.push(t == PT_ENUM && msg != NONE16 ? msg : -1);
    }
    sc.msgRequired[i] = required;
  }
  sc.fieldNumber = toStatic<u32>(number);
  sc.fieldType = toStatic<u8>(type);
  sc.fieldFlags = toStatic<u8>(flagsOf);
  sc.fieldOneof = toStatic<i32>(oneofOf);
  sc.fieldMessage = toStatic<i32>(messageOf);
  sc.fieldEnum = toStatic<i32>(enumOf);

  const methods = <i32>r.u32();
  if (r.failed || methods < 0 || methods >= NONE16 || methods > len) return "bad method count";
  sc.methodCount = methods;
  sc.methodPtr = new StaticArray<usize>(methods);
  sc.methodLen = new StaticArray<i32>(methods);
  sc.methodMessage = new StaticArray<i32>(methods);
  for (let i = 0; i < methods; i++) {
    const ml = <i32>r.u32();
    const mp = r.bytes(ml);
    const msg = r.u16();
    if (r.failed) return "expr section truncated in method " + i.toString();
    if (msg >= count) return "method " + i.toString() + " has a bad message index";
    for (let k = 0; k < i; k++) {
      if (bytesEqual(sc.methodPtr[k], sc.methodLen[k], mp, ml)) return "method " + i.toString() + " appears twice";
    }
    sc.methodPtr[i] = mp;
    sc.methodLen[i] = ml;
    sc.methodMessage[i] = msg;
  }
  return "";
}

function toStatic<T>(a: Array<T>): StaticArray<T> {
  const s = new StaticArray<T>(a.length);
  for (let i = 0; i < a.length; i++) s[i] = a[i];
  return s;
}
