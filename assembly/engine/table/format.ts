// The binary policy table's format (docs/table-format.md): section tags, record sizes, envelope constants,
// limits, field, action and pattern codes, and flags. tests/unit/table-format-agreement.test.ts holds these to
// the compiler's (src/compiler/table.ts, ir.ts) and the as-pect tests' encoder.

export const TAG_STRS: u32 = 1;
export const TAG_META: u32 = 2;
export const TAG_FAMS: u32 = 3;
export const TAG_SRCC: u32 = 4;
export const TAG_OPCL: u32 = 5;
export const TAG_PRED: u32 = 6;
export const TAG_PATS: u32 = 7;
export const TAG_SCHM: u32 = 8;
export const TAG_SKEY: u32 = 9;
export const TAG_IDS: u32 = 10;
export const TAG_IDSX: u32 = 11;
export const TAG_VALS: u32 = 12;
export const TAG_VALX: u32 = 13;
export const TAG_ROWS: u32 = 14;
/** CEL condition programs (docs/cel.md "EXPR section"); present only in tables with conditions. */
export const TAG_EXPR: u32 = 15;
/** Deny replies and their headers; present (together) only when some rule has its own reply. */
export const TAG_RESP: u32 = 16;
export const TAG_RHDR: u32 = 17;
export const TAG_COUNT = 17;
export const RESP_SIZE: u32 = 20;
export const RHDR_SIZE: u32 = 16;
/** RESP.grpcStatus when not given: the reply of a gRPC request carries 7 (PERMISSION_DENIED). */
export const RESP_GRPC_DEFAULT: u8 = 0xff;
export const RESP_FLAG_REQUEST_ID: u8 = 1;
export const RESP_FLAG_DEFAULT: u8 = 2;

export const META_SIZE: u32 = 32;
export const FAM_SIZE: u32 = 48;
export const CLAUSE_SIZE: u32 = 8;
export const PRED_SIZE: u32 = 24;
export const PAT_SIZE: u32 = 12;
export const SCHM_SIZE: u32 = 16;
export const SKEY_SIZE: u32 = 8;

export const RECORD_SIZE: StaticArray<u32> = [0, 1, 32, 48, 8, 8, 24, 12, 16, 8, 1, 4, 1, 4, 1, 1, 20, 16];
export const SECTION_NAME: StaticArray<string> = [
  "", "STRS", "META", "FAMS", "SRCC", "OPCL", "PRED", "PATS", "SCHM", "SKEY", "IDS", "IDSX", "VALS", "VALX", "ROWS",
  "EXPR", "RESP", "RHDR",
];

export const ENVELOPE_SIZE: i32 = 24;
/** The version the compiler writes. Version 2 tables (no fields above SNI, no GLOB or CIDR) are read too. */
export const VERSION: u32 = 3;
export const OLDEST_VERSION: u32 = 2;
export const FLAG_DEFLATE: u32 = 1;
/** Records stored byte-planar (docs/table-format.md §2). */
export const FLAG_PLANAR: u32 = 2;
export const MAX_BODY_BYTES: u32 = 64 << 20;
/** The largest META.maxBodyBytes: what one request may make the filter buffer. */
export const MAX_REQUEST_BODY_BYTES: u32 = 64 << 20;
export const MAX_RULES: u32 = 1 << 24;
export const MAX_RULE_ID_BYTES: u32 = 200;
/** The longest hole value: an identity longer than the 64 KiB the engine parses never matches anyway. */
export const MAX_VALUE_BYTES: u32 = 65536;
/** Memory a load may ask for beyond the body (index, scratch); more is refused rather than risk a trap. */
export const MAX_LOAD_BYTES: u64 = 512 << 20;
/** Shadow ranges one decision may record (the scratch is allocated at load). */
export const MAX_SHADOW_RANGES: u64 = 1 << 24;
/** "no expression" in FAMS.expr. */
export const NO_EXPR: u32 = 0xffffffff;
/** "no hole" in FAMS.holeClause / holePred. */
export const NO_HOLE: u32 = 0xffffffff;

export const enum Field {
  PRINCIPAL = 1,
  TRUST_DOMAIN = 2,
  ATTRIBUTE = 3,
  METHOD = 4,
  PATH = 5,
  HOST = 6,
  PORT = 7,
  HEADER = 8,
  SNI = 9,
  PEER_NAME = 10,
  REQUEST_PRINCIPAL = 11,
  JWT_CLAIM = 12,
  REMOTE_IP = 13,
  DESTINATION_IP = 14,
}

/** The highest field code (docs/table-format.md §3, PRED). */
export const MAX_FIELD: u8 = 14;

export const enum Action {
  ALLOW = 0,
  DENY = 1,
  AUDIT = 2,
}

export const enum PatternKind {
  EXACT = 0,
  PREFIX = 1,
  SUFFIX = 2,
  PRESENT = 3,
  TEMPLATE = 4,
  GLOB = 5,
  CIDR = 6,
}

export const FAM_FLAG_DRY_RUN: u8 = 1;
/** Record every request the family's rules allow, whatever META's sampling says. */
export const FAM_FLAG_RECORD_ALLOWS: u8 = 2;
/** Count the family's rules' decisions in metrics of their own. */
export const FAM_FLAG_METRICS: u8 = 4;
export const PRED_FLAG_IGNORE_CASE: u8 = 1;
/** The predicate is its family's hole: its one EXACT pattern is each row's value (VALS). */
export const PRED_FLAG_HOLE: u8 = 2;
/** HOST only: the subject is the authority's host name (userinfo, port and one trailing dot removed). */
export const PRED_FLAG_HOST_NAME: u8 = 4;

/** META.flags bit 0: grpcMessages "first" (decide on the first message of a stream). */
export const META_FLAG_GRPC_FIRST: u32 = 1;
/** META.flags bit 1: allowed requests are sampled for the decision record (threshold at META offset 28). */
export const META_FLAG_SAMPLE_ALLOWS: u32 = 2;
