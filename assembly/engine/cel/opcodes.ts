// Bytecode instruction set (docs/cel.md, "Instructions"). src/cel/bytecode.ts holds the same numbers;
// tests/unit/cel-bytecode.test.ts fails if the two files disagree.

/** CONST u16 k: push constant k. */
export const OP_CONST: u8 = 0x01;
/** VAR u8 v: push scalar variable v. */
export const OP_VAR: u8 = 0x02;
/** MAP_GET u8 v: pop key, push entry of map variable v (no such key is an error). */
export const OP_MAP_GET: u8 = 0x03;
/** MAP_HAS u8 v: pop key, push whether map variable v has it. */
export const OP_MAP_HAS: u8 = 0x04;
/** MAP_SIZE u8 v: push the entry count of map variable v. */
export const OP_MAP_SIZE: u8 = 0x05;
/** DYN_GET u16 p: push the value at dyn path p. */
export const OP_DYN_GET: u8 = 0x06;
/** DYN_HAS u16 p: push has() of the last segment of dyn path p. */
export const OP_DYN_HAS: u8 = 0x07;
/** DYN_IN u16 p: pop x, push `x in <value at p>` (array elements or object keys). */
export const OP_DYN_IN: u8 = 0x08;
/** PROTO_GET u16 p: push the value of proto field path p (the default when absent). */
export const OP_PROTO_GET: u8 = 0x09;
/** PROTO_HAS u16 p: push has() of proto field path p. */
export const OP_PROTO_HAS: u8 = 0x0a;

export const OP_NOT: u8 = 0x10;
export const OP_NEG: u8 = 0x11;
export const OP_EQ: u8 = 0x12;
export const OP_NE: u8 = 0x13;
export const OP_LT: u8 = 0x14;
export const OP_LE: u8 = 0x15;
export const OP_GT: u8 = 0x16;
export const OP_GE: u8 = 0x17;
export const OP_ADD: u8 = 0x18;
export const OP_SUB: u8 = 0x19;
export const OP_MUL: u8 = 0x1a;
export const OP_DIV: u8 = 0x1b;
export const OP_MOD: u8 = 0x1c;
/** IN: pop list, pop x, push `x in list`. */
export const OP_IN: u8 = 0x1d;
/** INDEX: pop index, pop list, push the element. */
export const OP_INDEX: u8 = 0x1e;
export const OP_SIZE: u8 = 0x1f;
export const OP_STARTS_WITH: u8 = 0x20;
export const OP_ENDS_WITH: u8 = 0x21;
export const OP_CONTAINS: u8 = 0x22;
export const OP_TO_INT: u8 = 0x23;
export const OP_TO_UINT: u8 = 0x24;
export const OP_TO_DOUBLE: u8 = 0x25;
export const OP_TO_STRING: u8 = 0x26;
/** AND / OR: pop b, pop a, push CEL's commutative combination (false / true absorb errors). */
export const OP_AND: u8 = 0x27;
export const OP_OR: u8 = 0x28;

/** JUMP_IF_FALSE u16 t: if the top is exactly false, jump to t keeping it (the && short cut). */
export const OP_JUMP_IF_FALSE: u8 = 0x30;
/** JUMP_IF_TRUE u16 t: if the top is exactly true, jump to t keeping it (the || short cut). */
export const OP_JUMP_IF_TRUE: u8 = 0x31;
/** COND u16 else u16 end: pop c; true: fall through; false: jump to else; otherwise push an error, jump to end. */
export const OP_COND: u8 = 0x32;
/** JUMP u16 t. */
export const OP_JUMP: u8 = 0x33;
/** RETURN: the program's value is the only stack entry. */
export const OP_RETURN: u8 = 0x3f;

/** Byte length of an instruction including its opcode, or 0 for an unknown opcode. */
export function instructionLength(op: u8): i32 {
  switch (op) {
    case OP_CONST: return 3;
    case OP_VAR: case OP_MAP_GET: case OP_MAP_HAS: case OP_MAP_SIZE: return 2;
    case OP_DYN_GET: case OP_DYN_HAS: case OP_DYN_IN: case OP_PROTO_GET: case OP_PROTO_HAS: return 3;
    case OP_JUMP_IF_FALSE: case OP_JUMP_IF_TRUE: case OP_JUMP: return 3;
    case OP_COND: return 5;
    case OP_RETURN: return 1;
  }
  if (op >= OP_NOT && op <= OP_OR) return 1;
  return 0;
}

/** Values an instruction pops, for the load-time stack check. */
export function instructionPops(op: u8): i32 {
  switch (op) {
    case OP_MAP_GET: case OP_MAP_HAS: case OP_DYN_IN: return 1;
    case OP_NOT: case OP_NEG: case OP_SIZE: case OP_TO_INT: case OP_TO_UINT: case OP_TO_DOUBLE: case OP_TO_STRING:
      return 1;
    case OP_COND: return 1;
    case OP_RETURN: return 1;
    case OP_JUMP_IF_FALSE: case OP_JUMP_IF_TRUE: return 1;
  }
  if (op >= OP_EQ && op <= OP_OR) return 2;
  return 0;
}

/** Values an instruction pushes on its fall-through edge. */
export function instructionPushes(op: u8): i32 {
  switch (op) {
    case OP_COND: return 0;
    case OP_RETURN: return 0;
    case OP_JUMP: return 0;
  }
  return 1;
}
