import { loadConfiguration } from "../../assembly/engine/config";
import { XfccMode } from "../../assembly/engine/identity";
import { PluginSettings, RequestFlow, ShadowLines, Step } from "../../assembly/engine/flow";
import { ByteWriter } from "../../assembly/engine/writer";
import {
  ALLOW, AUDIT, bytesOf, clause, DENY, detailsOf, F_PATH, outcome, pre, pred, programRecord, rule, TableB, TestRequest,
} from "./helpers";
import { GRPC_FIRST_CONFIG } from "./fixtures";

const CALLER = "spiffe://td/app/caller";
// request.json.k == 'v'
const JSON_K = programRecord(2, ["s:v"], [0x06, 0, 0, 0x01, 0, 0, 0x12, 0x3f]);

/** A table of rules without sources, each [action, program index or -1]; bodies up to 16 bytes. */
function table(rules: i32[][]): TableB {
  const t = new TableB();
  t.programs = [JSON_K];
  t.jsonKeys = ["k"];
  t.maxBodyBytes = 16;
  for (let i = 0; i < rules.length; i++) t.add(rule("r" + i.toString(), <u8>rules[i][0], []).withExpr(rules[i][1]));
  return t;
}

function plugin(t: TableB, continueHeaders: bool = false): PluginSettings {
  const p = new PluginSettings();
  p.table = t.load();
  p.continueHeaders = continueHeaders;
  p.xfccMode = XfccMode.IGNORE;
  return p;
}

function jsonPost(): TestRequest {
  return TestRequest.of("POST", "/").withHeader("content-type", "application/json").withCertificate(CALLER);
}

/** A flow whose headers arrived without end_of_stream and whose decision waits for the body. */
function waiting(p: PluginSettings, req: TestRequest): RequestFlow {
  const f = new RequestFlow();
  f.onHeaders(p, req, false);
  expect(f.waitingBody).toBe(true);
  expect(outcome(f.decision)).toBe("needs_body");
  return f;
}

describe("the headers", () => {
  it("decide at once when no condition waits for the body; a repeated call answers the same", () => {
    const allow = plugin(table([[ALLOW, -1]]));
    const f = new RequestFlow();
    const req = jsonPost();
    expect(f.onHeaders(allow, req, false)).toBe(Step.DECIDED);
    expect(outcome(f.decision)).toBe("allow:r0");
    expect(f.onHeaders(allow, req, false)).toBe(Step.CONTINUE);
    // Decided: the body and trailers are let through, never read.
    expect(f.onBody(allow, req, 4, true)).toBe(Step.CONTINUE);
    expect(f.onTrailers(allow, req)).toBe(Step.CONTINUE);
    expect(req.bufferReads).toBe(0);

    const deny = plugin(table([[DENY, -1]]));
    const g = new RequestFlow();
    expect(g.onHeaders(deny, req, true)).toBe(Step.DECIDED);
    expect(outcome(g.decision)).toBe("deny:r0");
    expect(g.onHeaders(deny, req, true)).toBe(Step.STOP);
  });

  it("read the identity: a certificate, or none (refused with the reason)", () => {
    const deny = plugin(table([[DENY, -1]]));
    const f = new RequestFlow();
    expect(f.onHeaders(deny, jsonPost(), true)).toBe(Step.DECIDED);
    expect(String.UTF8.decodeUnsafe(f.peer.ptr, <usize>f.peer.len)).toBe(CALLER);
    const anonymous = new RequestFlow();
    anonymous.onHeaders(plugin(table([[ALLOW, 0]])), TestRequest.of("POST", "/"), true);
    expect(detailsOf(anonymous.decision, anonymous.peer)).toBe("spiffe_authz_denied[default:no_client_certificate]");
  });

  it("without a plugin deny with no_table", () => {
    const f = new RequestFlow();
    expect(f.onHeaders(null, jsonPost(), true)).toBe(Step.DECIDED);
    expect(outcome(f.decision)).toBe("deny:no_table");
  });

  it("wait for a body a condition reads: held (hold) or let go (continue), decided by the request's first answer", () => {
    const hold = plugin(table([[ALLOW, 0]]));
    const req = jsonPost();
    const f = new RequestFlow();
    expect(f.onHeaders(hold, req, false)).toBe(Step.STOP);
    expect(f.onHeaders(hold, req, false)).toBe(Step.STOP);
    const cont = plugin(table([[ALLOW, 0]]), true);
    const g = new RequestFlow();
    expect(g.onHeaders(cont, req, false)).toBe(Step.CONTINUE);
    // A configuration update does not change the answer of a request already waiting.
    cont.continueHeaders = false;
    expect(g.onHeaders(cont, req, false)).toBe(Step.CONTINUE);
    // With end_of_stream there is no body to wait for: request.json is absent.
    const h = new RequestFlow();
    expect(h.onHeaders(hold, req, true)).toBe(Step.DECIDED);
    expect(outcome(h.decision)).toBe("deny:default");
  });
});

describe("the body", () => {
  it("is buffered until the stream ends, then read once, whole", () => {
    const p = plugin(table([[ALLOW, 0]]));
    const req = jsonPost();
    const f = waiting(p, req);
    req.bufferChunk(bytesOf("{\"k\":"));
    expect(f.onBody(p, req, 5, false)).toBe(Step.BUFFER);
    expect(req.bufferReads).toBe(0);
    req.bufferChunk(bytesOf("\"v\"}"));
    expect(f.onBody(p, req, 9, true)).toBe(Step.DECIDED);
    expect(outcome(f.decision)).toBe("allow:r0");
    expect(req.bufferReads).toBe(1);
    expect(req.lastReadMax).toBe(9);
    expect(f.onBody(p, req, 9, true)).toBe(Step.CONTINUE);
  });

  it("over the limit is decided at once with a body error, without reading it", () => {
    const p = plugin(table([[ALLOW, 0]]));
    const req = jsonPost();
    const f = waiting(p, req);
    req.bufferChunk(bytesOf("{\"k\":\"v\",\"pad\":\"xxxx\"}"));
    expect(f.onBody(p, req, 23, false)).toBe(Step.DECIDED);
    expect(detailsOf(f.decision, f.peer)).toBe("spiffe_authz_denied[default:body_too_large]");
    expect(req.bufferReads).toBe(0);
    // Exactly at the limit is not over it.
    const g = waiting(p, jsonPost());
    expect(g.onBody(p, jsonPost(), 16, false)).toBe(Step.BUFFER);
  });

  it("that is empty at the end of the stream is a body of 0 bytes; an unreadable or short buffer is no body", () => {
    const p = plugin(table([[ALLOW, 0]]));
    const empty = jsonPost();
    const f = waiting(p, empty);
    expect(f.onBody(p, empty, 0, true)).toBe(Step.DECIDED);
    expect(detailsOf(f.decision, f.peer)).toBe("spiffe_authz_denied[default:invalid_json]");
    expect(empty.bufferReads).toBe(0);

    const unreadable = jsonPost();
    const g = waiting(p, unreadable);
    unreadable.buffered = null;
    expect(g.onBody(p, unreadable, 9, true)).toBe(Step.DECIDED);
    expect(detailsOf(g.decision, g.peer)).toBe("spiffe_authz_denied[default]");

    // The host reports 9 bytes but gives 5: never decided on a part of the body.
    const short = jsonPost();
    const h = waiting(p, short);
    short.bufferChunk(bytesOf("{\"k\":"));
    expect(h.onBody(p, short, 9, true)).toBe(Step.DECIDED);
    expect(detailsOf(h.decision, h.peer)).toBe("spiffe_authz_denied[default]");
  });

  it("ends with the trailers: the decision takes whatever was buffered, within the limit", () => {
    const p = plugin(table([[ALLOW, 0]]));
    const req = jsonPost();
    const f = waiting(p, req);
    req.bufferChunk(bytesOf("{\"k\":\"v\"}"));
    expect(f.onBody(p, req, 9, false)).toBe(Step.BUFFER);
    expect(f.onTrailers(p, req)).toBe(Step.DECIDED);
    expect(outcome(f.decision)).toBe("allow:r0");
    expect(req.lastReadMax).toBe(0xffffffff);
    expect(f.onTrailers(p, req)).toBe(Step.CONTINUE);

    const big = jsonPost();
    const g = waiting(p, big);
    big.bufferChunk(bytesOf("{\"k\":\"v\",\"pad\":\"xxxx\"}"));
    expect(g.onTrailers(p, big)).toBe(Step.DECIDED);
    expect(detailsOf(g.decision, g.peer)).toBe("spiffe_authz_denied[default:body_too_large]");
  });

  it("is not read when a configuration update replaced the table with one that reads no body", () => {
    const p = plugin(table([[ALLOW, 0]]));
    const req = jsonPost();
    const f = waiting(p, req);
    p.table = new TableB().add(rule("deny-all", DENY, [])).load();
    req.bufferChunk(bytesOf("{\"k\":\"v\"}"));
    expect(f.onBody(p, req, 9, false)).toBe(Step.DECIDED);
    expect(outcome(f.decision)).toBe("deny:deny-all");
    expect(req.bufferReads).toBe(0);
  });
});

describe("shadow lines", () => {
  it("one line per AUDIT rule, the path cut before its query and fragment", () => {
    const t = new TableB();
    t.add(rule("audit-a", AUDIT, [], [clause([pred(F_PATH, [pre("/a")])])]));
    t.add(rule("audit-b", AUDIT, []));
    t.add(rule("allow", ALLOW, []));
    const p = plugin(t);
    const cases: string[][] = [
      ["/a/x?token=secret", "/a/x"],
      ["/a#frag?x", "/a"],
      ["/a", "/a"],
    ];
    const w = new ByteWriter(64);
    const lines = new ShadowLines();
    for (let i = 0; i < cases.length; i++) {
      const req = TestRequest.of("GET", cases[i][0]).withCertificate(CALLER);
      const f = new RequestFlow();
      expect(f.onHeaders(p, req, true)).toBe(Step.DECIDED);
      lines.begin(f.decision, f.peer, req);
      expect(lines.next(w)).toBe(true);
      expect(w.toString()).toBe("spiffe-authz audit: rule=audit-a peer=" + CALLER + " method=GET path=" + cases[i][1] + " decision=allow");
      expect(lines.next(w)).toBe(true);
      expect(w.toString()).toBe("spiffe-authz audit: rule=audit-b peer=" + CALLER + " method=GET path=" + cases[i][1] + " decision=allow");
      expect(lines.next(w)).toBe(false);
      expect(lines.next(w)).toBe(false);
    }
    // A decision without shadow matches has no lines.
    const f = new RequestFlow();
    f.onHeaders(plugin(table([[ALLOW, -1]])), jsonPost(), true);
    lines.begin(f.decision, f.peer, jsonPost());
    expect(lines.next(w)).toBe(false);
  });
});

const UPLOAD = "/demo.upload.v1.Uploads/Upload";
const BILLING = "spiffe://td/app/billing";

function grpcPlugin(): PluginSettings {
  const cfg = bytesOf(GRPC_FIRST_CONFIG);
  const r = loadConfiguration(cfg.dataStart, cfg.length);
  expect(r.error).toBe("");
  const p = new PluginSettings();
  p.table = r.table;
  p.xfccMode = XfccMode.IGNORE;
  return p;
}

/** A gRPC frame of a Chunk whose owner (field 1) is `owner`. */
function frame(owner: string): Uint8Array {
  const o = bytesOf(owner);
  const f = new Uint8Array(7 + o.length);
  f[4] = <u8>(2 + o.length);
  f[5] = 0x0a;
  f[6] = <u8>o.length;
  f.set(o, 7);
  return f;
}

function upload(contentType: string): TestRequest {
  return TestRequest.of("POST", UPLOAD).withHeader("content-type", contentType).withCertificate(BILLING);
}

describe("gRPC, first message (grpcMessages \"first\", maxBytes 512)", () => {
  it("decides as soon as the first frame is complete, reading only that frame, whatever follows", () => {
    const p = grpcPlugin();
    // The content type is gRPC in any case (media-type.ts isGrpcContentType), here as on the deny path.
    const req = upload("Application/grpc");
    const f = waiting(p, req);
    const first = frame("billing");
    req.bufferChunk(first.subarray(0, 3));
    expect(f.onBody(p, req, 3, false)).toBe(Step.BUFFER);
    expect(req.bufferReads).toBe(0);
    req.bufferChunk(first.subarray(3, 8));
    expect(f.onBody(p, req, 8, false)).toBe(Step.BUFFER);
    expect(req.bufferReads).toBe(1); // the prefix: 5 bytes
    expect(req.lastReadMax).toBe(5);
    req.bufferChunk(first.subarray(8)).bufferChunk(frame("orders"));
    const total = <u32>(first.length * 2 - 1);
    expect(f.onBody(p, req, total, false)).toBe(Step.DECIDED);
    expect(outcome(f.decision)).toBe("allow:own-uploads");
    expect(req.lastReadMax).toBe(<u32>first.length);
  });

  it("denies at once when the first frame's prefix declares more than the limit", () => {
    const p = grpcPlugin();
    const req = upload("application/grpc+proto");
    const f = waiting(p, req);
    const big = new Uint8Array(5);
    big[3] = 2; // 512 bytes of message, 517 with the prefix
    req.bufferChunk(big);
    expect(f.onBody(p, req, 5, false)).toBe(Step.DECIDED);
    expect(detailsOf(f.decision, f.peer)).toBe("spiffe_authz_denied[default:body_too_large]");
  });

  it("a stream that ends inside the first frame is truncated", () => {
    const p = grpcPlugin();
    const req = upload("application/grpc");
    const f = waiting(p, req);
    const first = frame("billing");
    req.bufferChunk(first.subarray(0, 9));
    expect(f.onBody(p, req, 9, true)).toBe(Step.DECIDED);
    expect(detailsOf(f.decision, f.peer)).toBe("spiffe_authz_denied[default:grpc_truncated]");
  });

  it("a content type that is not gRPC is never waited for: the condition has no message to read", () => {
    const p = grpcPlugin();
    const req = upload("application/grpcx");
    const f = new RequestFlow();
    expect(f.onHeaders(p, req, false)).toBe(Step.DECIDED);
    expect(outcome(f.decision)).toBe("deny:default");
    expect(req.bufferReads).toBe(0);
  });
});
