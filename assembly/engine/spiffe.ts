// SPIFFE ID parsing and the attributes read from its path. The validity rules and the wording of the reasons
// follow go-spiffe's spiffeid package (v2, id.go / path.go / errors.go), the reference implementation of the
// SPIFFE-ID spec. Parsing records offsets into preallocated arrays: no allocation per request.

import { Slice, bytesEqual } from "./bytes";

/** IDs longer than this are rejected (the spec requires accepting 2048 bytes; 64 KiB leaves ample room). */
export const SPIFFE_MAX_ID_BYTES: i32 = 65536;
/** Trust domains are limited to 255 bytes (a DNS name). */
export const TRUST_DOMAIN_MAX_BYTES: i32 = 255;
/**
 * Attribute pairs kept per ID. Pairs past this many are ignored; when the trust domain has a schema they make
 * the ID fail it (`more than 64 attributes`), so a schema never passes on a partially read path.
 */
export const MAX_ATTRIBUTES: i32 = 64;

export const enum PeerStatus {
  /** No URI SAN (no client certificate, or the property is missing or empty). */
  ABSENT = 0,
  /** A URI SAN that is not a valid SPIFFE ID; `why` says why. */
  INVALID = 1,
  VALID = 2,
}

export const enum SchemaStatus {
  /** The trust domain has no schema (or the ID is not valid). */
  NONE = 0,
  OK = 1,
  FAILED = 2,
}

export const enum SchemaWhy {
  NONE = 0,
  /** `missing attribute "<k>"`: k from the schema. */
  MISSING = 1,
  /** `attribute "<k>" repeated`: k from the ID. */
  REPEATED = 2,
  ODD = 3,
  TOO_MANY = 4,
}

// go-spiffe's reasons, verbatim.
export const WHY_EMPTY = "cannot be empty";
export const WHY_SCHEME = "scheme is missing or invalid";
export const WHY_TD_MISSING = "trust domain is missing";
export const WHY_TD_CHAR =
  "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores";
export const WHY_PATH_CHAR =
  "path segment characters are limited to letters, numbers, dots, dashes, and underscores";
export const WHY_DOT = "path cannot contain dot segments";
export const WHY_EMPTY_SEGMENT = "path cannot contain empty segments";
export const WHY_TRAILING = "path cannot have a trailing slash";
// Ours: limits go-spiffe does not state.
export const WHY_TD_LONG = "trust domain exceeds 255 bytes";
export const WHY_TOO_LONG = "id exceeds 65536 bytes";

// Character classes: bit 0 = trust domain character [a-z0-9._-], bit 1 = path segment character [a-zA-Z0-9._-].
const CLASS = new StaticArray<u8>(256);
function initClasses(): void {
  for (let c = 0; c < 256; c++) {
    let v: u8 = 0;
    const lower = c >= 97 && c <= 122;
    const upper = c >= 65 && c <= 90;
    const digit = c >= 48 && c <= 57;
    const punct = c == 46 || c == 45 || c == 95;
    if (lower || digit || punct) v |= 1;
    if (lower || upper || digit || punct) v |= 2;
    unchecked((CLASS[c] = v));
  }
}
initClasses();

// @ts-ignore: decorator
@inline function hasScheme(p: usize, len: i32): bool {
  // "spiffe://" is 9 bytes: one u64 ("spiffe:/") and the final '/'.
  return len >= 9 && load<u64>(p) == 0x2f3a656666697073 && load<u8>(p, 8) == 47;
}

/** Segment positions kept per ID: enough to read MAX_ATTRIBUTES pairs and see that there are more. */
const MAX_SEGMENTS: i32 = MAX_ATTRIBUTES * 2 + 2;

/** The peer's identity for one request: the presented URI SAN, its validity, and its attributes. */
export class SpiffeId {
  status: PeerStatus = PeerStatus.ABSENT;
  /** Why an INVALID ID is invalid (a static string; meaningless for other statuses). */
  why: string = "";
  /** The presented bytes (not owned). */
  ptr: usize = 0;
  len: i32 = 0;
  /** Trust domain and path, as offsets from `ptr` (valid IDs only). */
  tdOff: i32 = 0;
  tdLen: i32 = 0;
  pathOff: i32 = 0;
  pathLen: i32 = 0;
  /** Number of path segments (valid IDs only). */
  segmentCount: i32 = 0;
  /** Distinct attribute keys kept, in path order: [keyOff, keyLen, valOff, valLen] per attribute. */
  attrCount: i32 = 0;
  attrs: StaticArray<i32> = new StaticArray<i32>(MAX_ATTRIBUTES * 4);
  /** Offsets of the '/' opening each of the first MAX_SEGMENTS path segments. */
  private segs: StaticArray<i32> = new StaticArray<i32>(MAX_SEGMENTS);
  /** More than MAX_ATTRIBUTES pairs in the path. */
  overflow: bool = false;
  /** The first key that appeared twice, or -1. */
  repeatedOff: i32 = -1;
  repeatedLen: i32 = 0;
  /** Schema outcome for this ID in the table that decided (set by `decide`). */
  schema: SchemaStatus = SchemaStatus.NONE;
  schemaWhy: SchemaWhy = SchemaWhy.NONE;
  schemaKeyPtr: usize = 0;
  schemaKeyLen: i32 = 0;
  /**
   * The ID is the `sub` of a verified JWT (a caller without a client certificate), not a certificate's URI SAN.
   * Set by the filter after parse(); parse() and setAbsent() clear it.
   */
  fromJwt: bool = false;
  /**
   * The client presented a certificate (set by resolveIdentity). With status ABSENT: a certificate without a URI
   * SAN, which identifies nobody (a JWT never stands in for it).
   */
  certificate: bool = false;

  /** No identity presented. */
  setAbsent(): void {
    this.fromJwt = false;
    this.certificate = false;
    this.status = PeerStatus.ABSENT;
    this.ptr = 0;
    this.len = 0;
    this.clearParts();
  }

  private clearParts(): void {
    this.tdOff = 0;
    this.tdLen = 0;
    this.pathOff = 0;
    this.pathLen = 0;
    this.segmentCount = 0;
    this.attrCount = 0;
    this.overflow = false;
    this.repeatedOff = -1;
    this.repeatedLen = 0;
    this.clearSchema();
  }

  clearSchema(): void {
    this.schema = SchemaStatus.NONE;
    this.schemaWhy = SchemaWhy.NONE;
    this.schemaKeyPtr = 0;
    this.schemaKeyLen = 0;
  }

  private invalid(why: string): bool {
    this.status = PeerStatus.INVALID;
    this.why = why;
    return false;
  }

  /**
   * Parses `len` bytes at `ptr` (kept by reference: the caller keeps them alive). Returns whether the ID is
   * valid; `status` and `why` say the same. The checks run in go-spiffe's order so the first problem found is
   * the one reported.
   */
  parse(ptr: usize, len: i32): bool {
    this.fromJwt = false;
    this.certificate = false;
    this.ptr = ptr;
    this.len = len;
    this.clearParts();
    if (len <= 0) return this.invalid(WHY_EMPTY);
    if (len > SPIFFE_MAX_ID_BYTES) return this.invalid(WHY_TOO_LONG);
    if (!hasScheme(ptr, len)) return this.invalid(WHY_SCHEME);
    const cls = changetype<usize>(CLASS);
    let i = 9;
    while (i < len) {
      const c = <usize>load<u8>(ptr + <usize>i);
      if (c == 47) break;
      if ((load<u8>(cls + c) & 1) == 0) return this.invalid(WHY_TD_CHAR);
      i++;
    }
    if (i == 9) return this.invalid(WHY_TD_MISSING);
    if (i - 9 > TRUST_DOMAIN_MAX_BYTES) return this.invalid(WHY_TD_LONG);
    this.tdOff = 9;
    this.tdLen = i - 9;
    this.pathOff = i;
    this.pathLen = len - i;
    // Path: empty, or "/seg(/seg)*". segStart is the index of the '/' opening the current segment.
    let segments = 0;
    if (i < len) {
      const segs = this.segs;
      let segStart = i;
      unchecked((segs[0] = i));
      segments = 1;
      for (let j = i + 1; j < len; j++) {
        const c = <usize>load<u8>(ptr + <usize>j);
        if (c == 47) {
          const r = segmentProblem(ptr, segStart, j);
          if (r == 1) return this.invalid(WHY_EMPTY_SEGMENT);
          if (r == 2) return this.invalid(WHY_DOT);
          segStart = j;
          if (segments < MAX_SEGMENTS) unchecked((segs[segments] = j));
          segments++;
          continue;
        }
        if ((load<u8>(cls + c) & 2) == 0) return this.invalid(WHY_PATH_CHAR);
      }
      const r = segmentProblem(ptr, segStart, len);
      if (r == 1) return this.invalid(WHY_TRAILING);
      if (r == 2) return this.invalid(WHY_DOT);
    }
    this.segmentCount = segments;
    this.status = PeerStatus.VALID;
    if (segments >= 2) this.readAttributes();
    return true;
  }

  /** Reads the path's segments pairwise: key, value. A repeated key keeps its first value. */
  private readAttributes(): void {
    const ptr = this.ptr;
    const segs = this.segs;
    const attrs = this.attrs;
    const segments = this.segmentCount;
    let pairs = segments >> 1; // an odd last segment has no value and is not an attribute
    if (pairs > MAX_ATTRIBUTES) {
      this.overflow = true;
      pairs = MAX_ATTRIBUTES;
    }
    for (let p = 0; p < pairs; p++) {
      const keyOff = unchecked(segs[p << 1]) + 1;
      const valSlash = unchecked(segs[(p << 1) + 1]);
      const keyLen = valSlash - keyOff;
      const next = (p << 1) + 2;
      const valEnd = next < segments ? unchecked(segs[next]) : this.len;
      let dup = false;
      for (let a = 0; a < this.attrCount; a++) {
        const o = a << 2;
        if (bytesEqual(ptr + <usize>unchecked(attrs[o]), unchecked(attrs[o + 1]), ptr + <usize>keyOff, keyLen)) {
          dup = true;
          break;
        }
      }
      if (dup) {
        if (this.repeatedOff < 0) {
          this.repeatedOff = keyOff;
          this.repeatedLen = keyLen;
        }
        continue;
      }
      const o = this.attrCount << 2;
      unchecked((attrs[o] = keyOff));
      unchecked((attrs[o + 1] = keyLen));
      unchecked((attrs[o + 2] = valSlash + 1));
      unchecked((attrs[o + 3] = valEnd - valSlash - 1));
      this.attrCount++;
    }
  }

  /** Whether identity fields have a subject: a valid ID that satisfies its trust domain's schema, if any. */
  @inline identityOk(): bool {
    return this.status == PeerStatus.VALID && this.schema != SchemaStatus.FAILED;
  }

  /** Finds attribute `key`; fills `out` with its value. */
  attribute(keyPtr: usize, keyLen: i32, out: Slice): bool {
    const attrs = this.attrs;
    const base = this.ptr;
    for (let a = 0; a < this.attrCount; a++) {
      const o = a << 2;
      if (bytesEqual(base + <usize>unchecked(attrs[o]), unchecked(attrs[o + 1]), keyPtr, keyLen)) {
        out.set(base + <usize>unchecked(attrs[o + 2]), unchecked(attrs[o + 3]));
        return true;
      }
    }
    return false;
  }

  @inline tdPtr(): usize {
    return this.ptr + <usize>this.tdOff;
  }

  @inline pathPtr(): usize {
    return this.ptr + <usize>this.pathOff;
  }

  @inline attrKeyPtr(a: i32): usize {
    return this.ptr + <usize>unchecked(this.attrs[a << 2]);
  }
  @inline attrKeyLen(a: i32): i32 {
    return unchecked(this.attrs[(a << 2) + 1]);
  }
  @inline attrValPtr(a: i32): usize {
    return this.ptr + <usize>unchecked(this.attrs[(a << 2) + 2]);
  }
  @inline attrValLen(a: i32): i32 {
    return unchecked(this.attrs[(a << 2) + 3]);
  }
}

/** 0 = fine, 1 = empty segment, 2 = dot segment, for the segment between the '/' at `start` and `end`. */
function segmentProblem(ptr: usize, start: i32, end: i32): i32 {
  const n = end - start - 1;
  if (n == 0) return 1;
  if (n == 1 && load<u8>(ptr + <usize>(start + 1)) == 46) return 2;
  if (n == 2 && load<u8>(ptr + <usize>(start + 1)) == 46 && load<u8>(ptr + <usize>(start + 2)) == 46) return 2;
  return 0;
}
