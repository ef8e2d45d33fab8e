// The request flow: when a request is decided and on which part of its body. The filter calls onHeaders, onBody
// and onTrailers from the proxy-wasm hooks of the same names and turns the Step they return into the hook's
// status; on DECIDED it acts on the decision (audit lines, the decision record, counters, the local reply of a
// deny). Everything here is host-free, so as-pect drives it with a TestRequest (tests/assembly/flow.spec.ts).
//
// The body: a request whose headers do not end the stream and whose decision depends on a condition that reads
// the body (decision NEEDS_BODY) waits for it. Envoy appends each chunk to its buffer while the body hook answers
// StopIterationAndBuffer and reports the total size; the flow reads the buffer once, when the body is complete
// (or, in grpcMessages "first" mode, when the first frame is). Over META.maxBodyBytes the decision is taken at
// once with a body error: a request is never let through because it is large.

import { Slice } from "./bytes";
import { decide, Decision, DecisionKind } from "./decision";
import { writeShadowLine } from "./explain";
import { Refusal, resolveIdentity, XfccMode } from "./identity";
import { isGrpcRequest } from "./media-type";
import { BodyState, RequestView } from "./request";
import { SpiffeId } from "./spiffe";
import { PolicyTable } from "./table/policy-table";
import { ByteWriter } from "./writer";

/** What a plugin configuration sets for its requests; the filter swaps all of it in with the table. */
export class PluginSettings {
  table: PolicyTable | null = null;
  /** The configuration's `"headers": "continue"` (docs/table-format.md §1). */
  continueHeaders: bool = false;
  /** The configuration's `"xfcc"` setting (engine/identity.ts). */
  xfccMode: XfccMode = XfccMode.REQUIRE;
  /** The configuration's `"ambiguousPaths": "allow"` (engine/path.ts). */
  allowAmbiguousPaths: bool = false;
}

/** What a hook answers. The filter maps each to the proxy-wasm status of the hook it is in. */
export const enum Step {
  /** Let the request go on: nothing waits for this hook, or the request was allowed earlier. */
  CONTINUE = 0,
  /** Keep the request stopped: denied earlier, or its headers wait for the body ("headers": "hold"). */
  STOP = 1,
  /** onBody: keep buffering the body (StopIterationAndBuffer); the decision waits for more of it. */
  BUFFER = 2,
  /** The request was decided in this hook: act on `decision`; it goes on when the decision allows. */
  DECIDED = 3,
}

/** The length of a gRPC frame's prefix (1 flag byte, 4 bytes of big-endian message length). */
const FRAME_PREFIX: u32 = 5;
/** readBufferedBody's "whatever is buffered": proxy_get_buffer_status is not imported. */
const ALL: u32 = 0xffffffff;

/** One request as it goes through the hooks. Pooled by the filter: reset() makes it new. */
export class RequestFlow {
  peer: SpiffeId = new SpiffeId();
  /** Why the request is refused whatever the rules say (engine/identity.ts), read with the identity. */
  refusal: Refusal = Refusal.NONE;
  decision: Decision = new Decision();
  decided: bool = false;
  /** onHeaders could not decide: a condition waits for the body (the stream is held; in continue mode its body). */
  waitingBody: bool = false;
  /**
   * While waiting for the body, onHeaders answered CONTINUE (`"headers": "continue"`): the headers have gone
   * upstream, only the body is held. Kept per request so a configuration update cannot change a request's answer.
   */
  headersContinued: bool = false;
  /** grpcMessages "first": bytes of the first frame (prefix + message) once its prefix arrived, else -1. */
  firstFrameBytes: i64 = -1;
  private buf: Slice = new Slice();

  reset(): void {
    this.refusal = Refusal.NONE;
    this.peer.setAbsent();
    this.decision.reset(); // drops the table reference so a replaced table can be collected
    this.decided = false;
    this.waitingBody = false;
    this.headersContinued = false;
    this.firstFrameBytes = -1;
  }

  /**
   * The request headers: reads the identity and decides, unless a condition waits for the body. A repeated call
   * (hooks out of order) answers as the first did.
   */
  onHeaders(plugin: PluginSettings | null, view: RequestView, endOfStream: bool): Step {
    if (this.decided) return this.decision.allow ? Step.CONTINUE : Step.STOP;
    if (this.waitingBody) return this.headersContinued ? Step.CONTINUE : Step.STOP;
    this.refusal = resolveIdentity(view, plugin !== null ? plugin.xfccMode : XfccMode.REQUIRE, this.peer);
    // Without end_of_stream a body follows; a condition that reads it makes the decision wait.
    view.setBody(endOfStream ? BodyState.ABSENT : BodyState.PENDING, 0, 0);
    this.decideNow(plugin, view);
    if (this.decision.kind != DecisionKind.NEEDS_BODY) return this.concluded();
    this.waitingBody = true;
    // "hold" (default): the filter answers StopIteration. With Envoy's allow_on_headers_stop_iteration (our
    // configs) the headers stay in Envoy and the body still reaches onRequestBody, so the upstream sees nothing
    // before the decision. Without it (an Istio WasmPlugin cannot set it) Envoy 1.40 turns StopIteration into
    // StopAllIterationAndWatermark and never calls onRequestBody: the request stalls.
    // "continue": the headers go upstream now and onBody holds the body (StopIterationAndBuffer) until the
    // decision; a deny then sends the local reply and Envoy resets the upstream stream, which got no body.
    this.headersContinued = plugin !== null && plugin.continueHeaders;
    return this.headersContinued ? Step.CONTINUE : Step.STOP;
  }

  /** A body chunk arrived; `buffered` bytes are buffered in all. Only a request waiting for its body reads it. */
  onBody(plugin: PluginSettings | null, view: RequestView, buffered: u32, endOfStream: bool): Step {
    if (!this.waitingBody) return Step.CONTINUE;
    const t = plugin !== null ? plugin.table : null;
    const c = t !== null ? t.cond : null;
    // A configuration update replaced the table meanwhile and the new one reads no body: decide without it.
    if (c === null) return this.decideWithBody(plugin, view, BodyState.ABSENT, 0, 0);
    if (c.grpcFirst && isGrpcRequest(view)) {
      // grpcMessages "first": decide as soon as the first message is complete, whatever follows it (a client
      // stream may go on for long); the limit applies to that message, so chunking never changes the decision.
      if (this.firstFrameBytes < 0 && buffered >= FRAME_PREFIX) {
        const b = this.buf;
        if (!view.readBufferedBody(FRAME_PREFIX, b) || <u32>b.len != FRAME_PREFIX) {
          return this.decideWithBody(plugin, view, BodyState.ABSENT, 0, 0);
        }
        const p = b.ptr;
        this.firstFrameBytes = <i64>FRAME_PREFIX + ((<i64>load<u8>(p + 1) << 24) | (<i64>load<u8>(p + 2) << 16) |
          (<i64>load<u8>(p + 3) << 8) | <i64>load<u8>(p + 4));
      }
      if (this.firstFrameBytes > <i64>c.maxBodyBytes) {
        return this.decideWithBody(plugin, view, BodyState.TOO_LARGE, 0, 0);
      }
      if (this.firstFrameBytes >= 0 && <i64>buffered >= this.firstFrameBytes) {
        return this.decideBuffered(plugin, view, <u32>this.firstFrameBytes);
      }
      if (!endOfStream) return Step.BUFFER;
      return this.decideBuffered(plugin, view, buffered); // ends inside the first frame: truncated
    }
    if (buffered > c.maxBodyBytes) return this.decideWithBody(plugin, view, BodyState.TOO_LARGE, 0, 0);
    if (!endOfStream) return Step.BUFFER;
    return this.decideBuffered(plugin, view, buffered);
  }

  /** Trailers end the request: a decision still waiting for the body takes what was buffered. */
  onTrailers(plugin: PluginSettings | null, view: RequestView): Step {
    if (!this.waitingBody) return Step.CONTINUE;
    const b = this.buf;
    // An empty buffer reads as 0 bytes (Envoy 1.40 answers Ok with 0/0; hostcalls clears the slots either way).
    const n = view.readBufferedBody(ALL, b) ? <u32>b.len : 0;
    const t = plugin !== null ? plugin.table : null;
    const c = t !== null ? t.cond : null;
    if (c !== null && n > c.maxBodyBytes) return this.decideWithBody(plugin, view, BodyState.TOO_LARGE, 0, 0);
    return this.decideWithBody(plugin, view, BodyState.PRESENT, n > 0 ? b.ptr : 0, <i32>n);
  }

  /** Decides on the first `take` bytes of the buffered body. */
  private decideBuffered(plugin: PluginSettings | null, view: RequestView, take: u32): Step {
    // An empty body that ended the stream is a body of 0 bytes (for gRPC: no message, a truncated frame).
    if (take == 0) return this.decideWithBody(plugin, view, BodyState.PRESENT, 0, 0);
    const b = this.buf;
    // An unreadable buffer is treated as no body: conditions that read it fail (absent), never allow by accident.
    if (!view.readBufferedBody(take, b) || <u32>b.len != take) {
      return this.decideWithBody(plugin, view, BodyState.ABSENT, 0, 0);
    }
    return this.decideWithBody(plugin, view, BodyState.PRESENT, b.ptr, <i32>take);
  }

  /** Decides a waiting request with the body in the given state: it is complete (or over the limit) now. */
  private decideWithBody(
    plugin: PluginSettings | null, view: RequestView, state: BodyState, ptr: usize, len: i32,
  ): Step {
    view.setBody(state, ptr, len);
    this.decideNow(plugin, view);
    return this.concluded();
  }

  private decideNow(plugin: PluginSettings | null, view: RequestView): void {
    decide(plugin !== null ? plugin.table : null, this.peer, view, this.decision, this.refusal,
      plugin !== null && plugin.allowAmbiguousPaths);
  }

  private concluded(): Step {
    this.decided = true;
    this.waitingBody = false;
    return Step.DECIDED;
  }
}

/**
 * The log lines of the AUDIT and dry-run rules a decision matched, one per rule (explain.ts writeShadowLine).
 * The path is logged up to its query or fragment: query strings often carry secrets.
 */
export class ShadowLines {
  private d: Decision | null = null;
  private peer: SpiffeId | null = null;
  private method: Slice = new Slice();
  private path: Slice = new Slice();
  private hasMethod: bool = false;
  private hasPath: bool = false;
  private range: i32 = 0;
  private rule: u32 = 0;
  private end: u32 = 0;

  /** Starts on the lines of `d`; `peer` and `view` are the request's. */
  begin(d: Decision, peer: SpiffeId, view: RequestView): void {
    this.d = d;
    this.peer = peer;
    this.range = 0;
    this.rule = 0;
    this.end = 0;
    this.hasMethod = d.shadowCount > 0 && view.method(this.method);
    this.hasPath = d.shadowCount > 0 && view.path(this.path);
    if (this.hasPath) {
      const p = this.path;
      for (let i = 0; i < p.len; i++) {
        const c = load<u8>(p.ptr + <usize>i);
        if (c == 63 || c == 35) { // '?', '#'
          p.len = i;
          break;
        }
      }
    }
  }

  /** Writes the next line into `w` (reset first); false when there is none left. */
  next(w: ByteWriter): bool {
    const d = this.d;
    if (d === null || d.shadowCount <= 0) return false;
    const t = d.table!;
    const ranges = t.shadowScratch;
    while (this.rule >= this.end) {
      if (this.range >= d.shadowRanges) {
        this.d = null;
        return false;
      }
      this.rule = unchecked(ranges[2 * this.range]);
      this.end = this.rule + unchecked(ranges[2 * this.range + 1]);
      this.range++;
    }
    w.reset();
    writeShadowLine(w, t, this.rule, d, this.peer!, this.method, this.hasMethod, this.path, this.hasPath);
    this.rule++;
    return true;
  }
}
