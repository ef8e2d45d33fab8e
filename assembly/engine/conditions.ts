// CEL conditions of a policy table: the programs of the EXPR section, the per-table evaluation state
// built once at load, and the activation that answers the VM's variables from the request (RequestView), the
// principal (SpiffeId), the request body and the verified JWT payload. See docs/cel.md "Integration".
//
// Per request nothing is allocated by the GC: the arena, the JSON and protobuf extractors, the VM stack and the
// memo of program results are allocated at load and reset by begin(). A decision runs within one hook call, so
// one state per table serves every request of the VM (proxy-wasm calls never nest).

import { Slice, hasUpperAscii } from "./bytes";
import {
  CelArena, CelActivation, CelProgramSet, CelSlot, CelVm, DynResults, GrpcFrame, ProtoResults, StaticText,
  E_BODY, E_LIMIT, E_NO_SUCH_ATTRIBUTE, E_UNSUPPORTED, GRPC_COMPRESSED, GRPC_EMPTY, GRPC_MULTIPLE, GRPC_OK, GRPC_TRUNCATED,
  JSON_FAIL_AMBIGUOUS, JSON_FAIL_LIMIT, JSON_FAIL_UTF8,
  T_ARRAY, T_BOOL, T_NULL, T_ERROR, parseGrpcFrame, grpcFrameReason,
  VAR_CONNECTION_MTLS, VAR_CONNECTION_SNI, VAR_JWT_CLAIMS, VAR_REQUEST_GRPC_MESSAGE, VAR_REQUEST_GRPC_METHOD,
  VAR_REQUEST_GRPC_SERVICE, VAR_REQUEST_HEADERS, VAR_REQUEST_HOST, VAR_REQUEST_JSON, VAR_REQUEST_METHOD,
  VAR_REQUEST_PATH, VAR_REQUEST_QUERY, VAR_SOURCE_ATTRIBUTES, VAR_SOURCE_ID, VAR_SOURCE_TRUST_DOMAIN,
} from "./cel/index";
import { findJwtPayload, structToJson } from "./jwt";
import { isGrpcContentType, isIdentityEncoding, jsonMediaType, JsonMediaType } from "./media-type";
import { QUERY_AMBIGUOUS, queryCount, queryLookup, queryOf } from "./query";
import { BodyState, RequestView } from "./request";
import { SpiffeId } from "./spiffe";
import { ByteWriter } from "./writer";

/** Outcome of one condition. */
export const COND_FALSE: i32 = 0;
export const COND_TRUE: i32 = 1;
/** Evaluation error, or a value that is not a bool (see condKind/condPtr/condLen). */
export const COND_ERROR: i32 = 2;
/** The condition reads a body that has not arrived: the decision must wait for it. */
export const COND_PENDING: i32 = 3;

/** Error kind of a condition whose value is not a bool (not a VM kind: the VM's value was fine). */
export const E_NOT_BOOL: u8 = 40;

/** Request-level body problems (what makes every body-reading condition fail), for the response details. */
export const enum BodyProblem {
  NONE = 0,
  TOO_LARGE = 1,
  INVALID_JSON = 2,
  GRPC_COMPRESSED = 3,
  GRPC_MULTIPLE = 4,
  GRPC_TRUNCATED = 5,
  /** An invalid frame flag, a per-request limit: no code of its own. */
  OTHER = 6,
  /** A body for `request.json` whose content-type is missing, malformed or not JSON. */
  JSON_MEDIA_TYPE = 7,
  /** A JSON body that is not plain UTF-8: a charset parameter other than utf-8, a byte-order mark, invalid UTF-8. */
  JSON_NOT_UTF8 = 8,
  /** A JSON body with a content-encoding other than identity. */
  JSON_CONTENT_ENCODING = 9,
  /** JSON that readers read differently: a repeated key, a lone surrogate, an integer beyond 2^53-1, 1e400. */
  JSON_AMBIGUOUS = 10,
  /** A protobuf message the filter does not read: malformed, or encoded so that decoders could differ. */
  PROTOBUF = 11,
}


/** Scratch bytes for strings the VM and the JSON extractor create per request. */
const ARENA_BYTES: i32 = 64 << 10;

const NOT_BOOL: StaticArray<StaticText> = [
  new StaticText("condition value is null, not bool"),
  new StaticText("condition value is bool"), // not reached: a bool is an answer
  new StaticText("condition value is int, not bool"),
  new StaticText("condition value is uint, not bool"),
  new StaticText("condition value is double, not bool"),
  new StaticText("condition value is string, not bool"),
  new StaticText("condition value is list, not bool"),
  new StaticText("condition value is map, not bool"),
  new StaticText("condition value is list, not bool"),
];
const JWT_BAD = new StaticText("jwt payload in dynamic metadata cannot be read");
const REPEATED_HEADER = new StaticText("request header sent on several lines");
const AMBIGUOUS_QUERY = new StaticText("query parameter repeated, in bracket form, with '+' or not UTF-8");
const CT_ABSENT = new StaticText("request body without a content-type");
const CT_MALFORMED = new StaticText("content-type is not one well-formed media type");
const CT_NOT_JSON = new StaticText("content-type is not application/json or application/*+json");
const CT_CHARSET = new StaticText("json body charset is not utf-8");
const CE_NOT_IDENTITY = new StaticText("json body has a content-encoding other than identity");
const NAME_CONTENT_TYPE = new StaticText("content-type");
const NAME_CONTENT_ENCODING = new StaticText("content-encoding");

/** The conditions of one table: built at load from a validated EXPR section. */
export class TableConditions {
  readonly set: CelProgramSet;
  readonly arena: CelArena;
  readonly vm: CelVm;
  readonly json: DynResults;
  readonly claims: DynResults;
  readonly proto: ProtoResults;
  readonly frame: GrpcFrame;
  /** META.maxBodyBytes (0 when no program reads a body). */
  readonly maxBodyBytes: u32;
  readonly grpcFirst: bool;
  /** Some program reads request.json / request.grpc.message / jwt.claims. */
  readonly readsJson: bool;
  readonly readsGrpc: bool;
  readonly readsClaims: bool;
  /** "request body over N bytes", built at load. */
  readonly tooLarge: StaticText;
  // Memo of program results for the decision in progress: the index and the linear reference reach one program
  // through several rules and rows, and a program's value depends on the request alone.
  private memoGen: StaticArray<u32>;
  private memoTag: StaticArray<u8>;
  private memoA: StaticArray<i64>;
  private memoB: StaticArray<i32>;
  private gen: u32 = 0;

  constructor(set: CelProgramSet, maxBodyBytes: u32, grpcFirst: bool) {
    const arena = new CelArena(ARENA_BYTES);
    this.arena = arena;
    this.set = set;
    this.vm = new CelVm(set, arena);
    this.json = new DynResults(set, VAR_REQUEST_JSON, arena);
    this.claims = new DynResults(set, VAR_JWT_CLAIMS, arena);
    this.proto = new ProtoResults(set, VAR_REQUEST_GRPC_MESSAGE);
    this.frame = new GrpcFrame();
    this.maxBodyBytes = maxBodyBytes;
    this.grpcFirst = grpcFirst;
    this.readsJson = set.readsVariable(VAR_REQUEST_JSON);
    this.readsGrpc = set.readsVariable(VAR_REQUEST_GRPC_MESSAGE);
    this.readsClaims = set.readsVariable(VAR_JWT_CLAIMS);
    this.tooLarge = new StaticText("request body over " + maxBodyBytes.toString() + " bytes");
    const n = set.count;
    this.memoGen = new StaticArray<u32>(n);
    this.memoTag = new StaticArray<u8>(n);
    this.memoA = new StaticArray<i64>(n);
    this.memoB = new StaticArray<i32>(n);
  }

  /** Starts a decision: forgets the previous request's values. */
  begin(peer: SpiffeId, req: RequestView): void {
    this.arena.reset();
    this.json.reset();
    this.claims.reset();
    this.proto.reset();
    this.gen++;
    if (this.gen == 0) {
      // 2^32 decisions later: clear rather than let a stale stamp match.
      for (let i = 0; i < this.memoGen.length; i++) unchecked((this.memoGen[i] = 0));
      this.gen = 1;
    }
    activation.start(this, peer, req);
  }

  /**
   * Evaluates program `index` for the request of begin(): COND_TRUE, COND_FALSE, COND_PENDING, or COND_ERROR
   * with the error in activation.errKind/errPtr/errLen (valid until the decision ends).
   */
  evaluate(index: u32): i32 {
    const i = <i32>index;
    let tag: u8;
    let a: i64;
    let b: i32;
    if (unchecked(this.memoGen[i]) == this.gen) {
      tag = unchecked(this.memoTag[i]);
      a = unchecked(this.memoA[i]);
      b = unchecked(this.memoB[i]);
    } else {
      const p = this.set.program(i);
      if (activation.bodyPending(p.readsVariable(VAR_REQUEST_JSON), p.readsVariable(VAR_REQUEST_GRPC_MESSAGE))) {
        tag = TAG_PENDING;
        a = 0;
        b = 0;
      } else {
        tag = this.vm.eval(i, activation);
        a = this.vm.resultA;
        b = this.vm.resultB;
      }
      unchecked((this.memoGen[i] = this.gen));
      unchecked((this.memoTag[i] = tag));
      unchecked((this.memoA[i] = a));
      unchecked((this.memoB[i] = b));
    }
    if (tag == T_BOOL) return a != 0 ? COND_TRUE : COND_FALSE;
    if (tag == TAG_PENDING) return COND_PENDING;
    if (tag >= T_ERROR) {
      activation.errKind = tag;
      activation.errPtr = <usize>a;
      activation.errLen = b;
    } else {
      const why = unchecked(NOT_BOOL[tag <= T_ARRAY ? tag : T_NULL]);
      activation.errKind = E_NOT_BOOL;
      activation.errPtr = why.ptr;
      activation.errLen = why.len;
    }
    return COND_ERROR;
  }
}

/** Memo tag of a program that could not run yet (not a VM tag). */
const TAG_PENDING: u8 = 255;

const NAME_ATTRIBUTES = new StaticText("source.attributes");

/**
 * The request environment of docs/cel.md for one decision. Values are fetched on first use, at most once per
 * decision (the RequestView caches host reads per request).
 */
export class RequestActivation extends CelActivation {
  private cond: TableConditions | null = null;
  private peer: SpiffeId = new SpiffeId();
  private req: RequestView | null = null;
  private s: Slice = new Slice();
  private s2: Slice = new Slice();
  private body: Slice = new Slice();
  private bodyState: BodyState = BodyState.ABSENT;
  private bodyRead: bool = false;
  private ctRead: bool = false;
  /** What keeps a body with this request's headers from being read as JSON (NONE: nothing). */
  private jsonRefusal: BodyProblem = BodyProblem.NONE;
  private jsonRefusalText: StaticText = CT_ABSENT;
  private ctGrpc: bool = false;
  private pathRead: bool = false;
  private hasPath: bool = false;
  private path: Slice = new Slice();
  private jsonDone: bool = false;
  private claimsDone: bool = false;
  private protoDone: bool = false;
  /** Owned: the JWT payload as JSON text (grown once, reused). */
  private claimsText: ByteWriter = new ByteWriter(1024);
  private payload: Slice = new Slice();
  private meta: Slice = new Slice();
  /** The body problem of this request, once a condition read the body. */
  problem: BodyProblem = BodyProblem.NONE;
  /** The last COND_ERROR of TableConditions.evaluate. */
  errKind: u8 = 0;
  errPtr: usize = 0;
  errLen: i32 = 0;

  start(cond: TableConditions, peer: SpiffeId, req: RequestView): void {
    // References are stored only when they change (see Decision.start: no write barrier per request).
    if (this.cond !== cond) this.cond = cond;
    if (this.peer !== peer) this.peer = peer;
    if (this.req !== req) this.req = req;
    this.bodyRead = false;
    this.ctRead = false;
    this.pathRead = false;
    this.jsonDone = false;
    this.claimsDone = false;
    this.protoDone = false;
    this.problem = BodyProblem.NONE;
    this.errKind = 0;
  }

  private readContentType(): void {
    if (this.ctRead) return;
    this.ctRead = true;
    const s = this.s;
    const req = this.req!;
    const present = req.contentType(s);
    this.ctGrpc = present && isGrpcContentType(s);
    // Envoy 1.40 merges repeated content-type lines into one value joined with "," (malformed below); a second
    // line seen here is refused the same way, whichever host merged what.
    const t2 = this.s2;
    const json = !present || req.headerValue(NAME_CONTENT_TYPE.ptr, NAME_CONTENT_TYPE.len, 1, t2)
      ? JsonMediaType.MALFORMED : jsonMediaType(s);
    this.jsonRefusal = BodyProblem.NONE;
    if (json == JsonMediaType.MALFORMED || json == JsonMediaType.NOT_JSON) {
      this.refuseJson(BodyProblem.JSON_MEDIA_TYPE,
        !present ? CT_ABSENT : json == JsonMediaType.MALFORMED ? CT_MALFORMED : CT_NOT_JSON);
    } else if (json == JsonMediaType.OTHER_CHARSET) {
      this.refuseJson(BodyProblem.JSON_NOT_UTF8, CT_CHARSET);
    } else if (req.headerValue(NAME_CONTENT_ENCODING.ptr, NAME_CONTENT_ENCODING.len, 0, t2) &&
      (!isIdentityEncoding(t2) || req.headerValue(NAME_CONTENT_ENCODING.ptr, NAME_CONTENT_ENCODING.len, 1, t2))) {
      this.refuseJson(BodyProblem.JSON_CONTENT_ENCODING, CE_NOT_IDENTITY);
    }
  }

  private refuseJson(problem: BodyProblem, why: StaticText): void {
    this.jsonRefusal = problem;
    if (this.jsonRefusalText !== why) this.jsonRefusalText = why;
  }

  private readPath(): bool {
    if (!this.pathRead) {
      this.pathRead = true;
      this.hasPath = this.req!.path(this.path);
    }
    return this.hasPath;
  }

  private readBody(): BodyState {
    if (!this.bodyRead) {
      this.bodyRead = true;
      this.bodyState = this.req!.body(this.body);
    }
    return this.bodyState;
  }

  /** Whether a program reading request.json (`json`) or request.grpc.message (`grpc`) must wait for the body. */
  bodyPending(json: bool, grpc: bool): bool {
    if (!json && !grpc) return false;
    this.readContentType();
    // A body the headers already refuse (not JSON, another charset, a content-encoding) is never parsed: the
    // decision needs no more than the headers.
    if (json && this.jsonRefusal != BodyProblem.NONE) return false;
    if (grpc && (!this.ctGrpc || !this.readPath() || !this.cond!.proto.wantsMethod(this.path.ptr, grpcPathLen(this.path)))) return false;
    return this.readBody() == BodyState.PENDING;
  }

  // --- variables ---

  variable(id: i32, out: CelSlot): void {
    const peer = this.peer;
    const s = this.s;
    switch (id) {
      case VAR_SOURCE_ID:
        if (peer.identityOk()) out.setString(peer.ptr, peer.len);
        else out.setAbsent();
        return;
      case VAR_SOURCE_TRUST_DOMAIN:
        if (peer.identityOk()) out.setString(peer.tdPtr(), peer.tdLen);
        else out.setAbsent();
        return;
      case VAR_REQUEST_METHOD:
        if (this.req!.method(s)) out.setString(s.ptr, s.len);
        else out.setAbsent();
        return;
      case VAR_REQUEST_PATH:
        if (this.readPath()) out.setString(this.path.ptr, this.path.len);
        else out.setAbsent();
        return;
      case VAR_REQUEST_HOST:
        if (this.req!.host(s)) out.setString(s.ptr, s.len);
        else out.setAbsent();
        return;
      case VAR_CONNECTION_MTLS: {
        const m = this.req!.mtls();
        if (m < 0) out.setAbsent();
        else out.setBool(m != 0);
        return;
      }
      case VAR_CONNECTION_SNI:
        // Envoy reports "" when the client sent no SNI: no SNI is absent, not an empty name.
        if (this.req!.sni(s) && s.len > 0) out.setString(s.ptr, s.len);
        else out.setAbsent();
        return;
      case VAR_REQUEST_GRPC_SERVICE:
      case VAR_REQUEST_GRPC_METHOD: {
        this.readContentType();
        if (!this.ctGrpc || !this.readPath()) {
          out.setAbsent();
          return;
        }
        // `/package.Service/Method`: exactly two non-empty segments, no query.
        const p = this.path.ptr;
        const n = grpcPathLen(this.path);
        let slash = -1;
        for (let i = 1; i < n; i++) {
          if (load<u8>(p + <usize>i) == 47) {
            if (slash >= 0) {
              out.setAbsent();
              return;
            }
            slash = i;
          }
        }
        if (n < 4 || load<u8>(p) != 47 || slash <= 1 || slash >= n - 1 || n != this.path.len) {
          out.setAbsent();
          return;
        }
        if (id == VAR_REQUEST_GRPC_SERVICE) out.setString(p + 1, slash - 1);
        else out.setString(p + <usize>(slash + 1), n - slash - 1);
        return;
      }
    }
    out.setAbsent();
  }

  mapEntry(id: i32, keyPtr: usize, keyLen: i32, out: CelSlot): void {
    const s = this.s;
    switch (id) {
      case VAR_SOURCE_ATTRIBUTES:
        if (!this.peer.identityOk()) {
          out.setError(E_NO_SUCH_ATTRIBUTE, NAME_ATTRIBUTES.ptr, NAME_ATTRIBUTES.len);
        } else if (this.peer.attribute(keyPtr, keyLen, s)) {
          out.setString(s.ptr, s.len);
        } else {
          out.setAbsent();
        }
        return;
      case VAR_REQUEST_HEADERS: {
        // The map's keys are lower-case: a key with a capital is simply not in it.
        const req = this.req!;
        if (hasUpperAscii(keyPtr, keyLen) || !req.headerValue(keyPtr, keyLen, 0, s)) {
          out.setAbsent();
        } else if (req.headerValue(keyPtr, keyLen, 1, this.s2)) {
          // A header sent on several lines has no one value: upstreams read the first, the last or all of them
          // joined, so a condition never decides on it (a DENY rule matches, an ALLOW rule does not).
          out.setError(E_UNSUPPORTED, REPEATED_HEADER.ptr, REPEATED_HEADER.len);
        } else {
          // headerValue(…, 1) may reuse the view's scratch; read the first value again.
          req.headerValue(keyPtr, keyLen, 0, s);
          out.setString(s.ptr, s.len);
        }
        return;
      }
      case VAR_REQUEST_QUERY: {
        if (!this.readPath() || !queryOf(this.path.ptr, this.path.len, s)) {
          out.setAbsent();
          return;
        }
        const r = queryLookup(s.ptr, s.len, keyPtr, keyLen, this.cond!.arena, s);
        if (r > 0) out.setString(s.ptr, s.len);
        else if (r == 0) out.setAbsent();
        else if (r == QUERY_AMBIGUOUS) out.setError(E_UNSUPPORTED, AMBIGUOUS_QUERY.ptr, AMBIGUOUS_QUERY.len);
        else out.setError(E_LIMIT, ARENA_FULL.ptr, ARENA_FULL.len);
        return;
      }
    }
    out.setAbsent();
  }

  mapSize(id: i32): i32 {
    switch (id) {
      case VAR_SOURCE_ATTRIBUTES:
        return this.peer.identityOk() ? this.peer.attrCount : -1;
      case VAR_REQUEST_HEADERS:
        return this.req!.headerCount();
      case VAR_REQUEST_QUERY: {
        const s = this.s;
        if (!this.readPath() || !queryOf(this.path.ptr, this.path.len, s)) return 0;
        return queryCount(s.ptr, s.len);
      }
    }
    return -1;
  }

  // --- documents ---

  private prepareJson(): void {
    if (this.jsonDone) return;
    this.jsonDone = true;
    const c = this.cond!;
    this.readContentType();
    const st = this.readBody();
    if (st == BodyState.ABSENT) {
      c.json.setAbsent();
      return;
    }
    // A body that is there but cannot be read as UTF-8 JSON as sent: every path fails with the reason.
    if (this.jsonRefusal != BodyProblem.NONE) {
      const why = this.jsonRefusalText;
      c.json.setError(E_BODY, why.ptr, why.len);
      this.note(this.jsonRefusal);
      return;
    }
    if (st == BodyState.PRESENT) {
      if (!c.json.extract(this.body.ptr, this.body.len)) {
        // extract() recorded the reason, which every path now answers; a limit of ours (members, arena, keys) is
        // not the client's malformed JSON.
        const f = c.json.failure;
        this.note(f == JSON_FAIL_LIMIT ? BodyProblem.OTHER : f == JSON_FAIL_UTF8 ? BodyProblem.JSON_NOT_UTF8
          : f == JSON_FAIL_AMBIGUOUS ? BodyProblem.JSON_AMBIGUOUS : BodyProblem.INVALID_JSON);
      }
    } else if (st == BodyState.TOO_LARGE) {
      c.json.setError(E_BODY, c.tooLarge.ptr, c.tooLarge.len);
      this.note(BodyProblem.TOO_LARGE);
    } else {
      c.json.setAbsent();
    }
  }

  private note(p: BodyProblem): void {
    if (this.problem == BodyProblem.NONE) this.problem = p;
  }

  private prepareClaims(): void {
    if (this.claimsDone) return;
    this.claimsDone = true;
    const c = this.cond!;
    const m = this.meta;
    if (!this.req!.dynamicMetadata(m) || !findJwtPayload(m.ptr, m.len, this.payload)) {
      c.claims.setAbsent();
      return;
    }
    const w = this.claimsText;
    w.reset();
    if (!structToJson(this.payload.ptr, this.payload.len, w)) {
      c.claims.setError(E_BODY, JWT_BAD.ptr, JWT_BAD.len);
      return;
    }
    c.claims.extract(w.ptr, w.len);
  }

  private prepareProto(): void {
    if (this.protoDone) return;
    this.protoDone = true;
    const c = this.cond!;
    this.readContentType();
    if (!this.ctGrpc || !this.readPath()) return; // reset() left every path absent
    const mp = this.path.ptr;
    const ml = grpcPathLen(this.path);
    if (!c.proto.wantsMethod(mp, ml)) return;
    const st = this.readBody();
    if (st == BodyState.TOO_LARGE) {
      c.proto.setError(mp, ml, c.tooLarge.ptr, c.tooLarge.len);
      this.note(BodyProblem.TOO_LARGE);
      return;
    }
    if (st != BodyState.PRESENT) return;
    const f = c.frame;
    let len = this.body.len;
    if (c.grpcFirst && len >= 5) {
      // Decide on the first message: look only at the first frame (the rest of the stream is not read).
      const n: u64 = (<u64>load<u8>(this.body.ptr + 1) << 24) | (<u64>load<u8>(this.body.ptr + 2) << 16) |
        (<u64>load<u8>(this.body.ptr + 3) << 8) | <u64>load<u8>(this.body.ptr + 4);
      if (n + 5 < <u64>len) len = <i32>(n + 5);
    }
    const status = parseGrpcFrame(this.body.ptr, len, f);
    if (status != GRPC_OK) {
      const why = grpcFrameReason(status);
      c.proto.setError(mp, ml, why.ptr, why.len);
      this.note(status == GRPC_COMPRESSED ? BodyProblem.GRPC_COMPRESSED
        : status == GRPC_MULTIPLE ? BodyProblem.GRPC_MULTIPLE
        : status == GRPC_TRUNCATED || status == GRPC_EMPTY ? BodyProblem.GRPC_TRUNCATED
        : BodyProblem.OTHER);
      return;
    }
    if (!c.proto.decode(mp, ml, this.body.ptr + <usize>f.offset, f.length)) this.note(BodyProblem.PROTOBUF);
  }

  dynPath(path: i32, out: CelSlot): void {
    const c = this.cond!;
    if (<i32>unchecked(c.set.dyn.root[path]) == VAR_REQUEST_JSON) {
      this.prepareJson();
      c.json.read(path, out);
    } else {
      this.prepareClaims();
      c.claims.read(path, out);
    }
  }

  dynMemberCount(path: i32): i32 {
    const c = this.cond!;
    if (<i32>unchecked(c.set.dyn.root[path]) == VAR_REQUEST_JSON) {
      this.prepareJson();
      return c.json.memberCount(path);
    }
    this.prepareClaims();
    return c.claims.memberCount(path);
  }

  dynMember(path: i32, index: i32, out: CelSlot): void {
    const c = this.cond!;
    if (<i32>unchecked(c.set.dyn.root[path]) == VAR_REQUEST_JSON) c.json.member(path, index, out);
    else c.claims.member(path, index, out);
  }

  protoField(path: i32, out: CelSlot): void {
    this.prepareProto();
    this.cond!.proto.read(path, out);
  }
}

const ARENA_FULL = new StaticText("scratch arena exhausted");

/** `:path` up to the query: the gRPC method a request names. */
function grpcPathLen(path: Slice): i32 {
  for (let i = 0; i < path.len; i++) {
    const c = load<u8>(path.ptr + <usize>i);
    if (c == 63 || c == 35) return i;
  }
  return path.len;
}

/** The one activation (decisions do not nest). */
export const activation = new RequestActivation();
