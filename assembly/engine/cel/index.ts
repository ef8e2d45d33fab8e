// The CEL condition engine: program decoding/validation, the VM, the activation interface, and the body
// decoders the activation is built from. See docs/cel.md.

export * from "./value";
export * from "./arena";
export * from "./opcodes";
export * from "./program";
export * from "./schema";
export * from "./activation";
export * from "./vm";
export * from "./json";
export * from "./proto";
export * from "./grpc";
export * from "./errors";
export { parseDouble, parseInt64, parseUint64, formatInteger, parsedDouble, parsedInt, PARSE_OK, PARSE_SYNTAX, PARSE_RANGE } from "./number";
export { validUtf8, codePointCount } from "./utf8";
