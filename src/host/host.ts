// A strict proxy-wasm ABI 0.2.x host that runs a filter module the way Envoy 1.40 (proxy-wasm-cpp-host + the
// wasm HTTP filter in source/extensions/common/wasm/context.cc) does: same export lookups, call order, memory
// ownership, serialisations, NotFound/BadArgument answers, deferred local replies and fail-closed behaviour.
// It is strict: an import it does not implement fails loudly when called, and any trap, proc_exit or host
// error marks the VM as failed, after which requests are denied with 503 as Envoy's default fail-closed
// policy does.

import { readFileSync } from "node:fs";

import {
  BUFFER_TYPE_MAX, BufferType, FilterDataStatus, FilterHeadersStatus, FilterTrailersStatus,
  GRPC_STATUS_MAX_KNOWN, GrpcStatus, HEADER_MAP_TYPE_MAX, HeaderMapType, LOG_LEVELS, MetricType, StreamType,
  WasmResult,
} from "./abi.ts";
import type { LogLevel } from "./abi.ts";
import {
  ModuleLoadError, ProcExitError, UnimplementedImportError, VmFailedError, WasmHostError,
} from "./errors.ts";
import type { Pair } from "./pairs.ts";
import { decodePairs, encodePairs } from "./pairs.ts";
import { resolveProperty } from "./properties.ts";
import type { PropertyScope } from "./properties.ts";
import { prepareRequest } from "./request.ts";
import type { HttpRequest, PreparedRequest } from "./request.ts";
import { Wasm } from "./wasm-api.ts";
import { DEFAULT_WASM_PATH } from "../paths.ts";
import type { WasmInstance, WasmMemory, WasmModule } from "./wasm-api.ts";

export type { LogLevel } from "./abi.ts";

/** Where the shipped filter lives, relative to the repository root. */
export { DEFAULT_WASM_PATH };

export interface LoadOptions {
  /** the module to load; default build/release.wasm */
  wasmPath?: string;
  /** the module's bytes (instead of wasmPath) */
  wasmBytes?: Uint8Array;
  /** plugin root id (`plugin_root_id`); default "spiffe-authz" */
  rootId?: string;
  /** VM id (`plugin_vm_id`); default "" */
  vmId?: string;
  /** plugin name (`plugin_name`); default the root id */
  pluginName?: string;
  /** VM configuration (the VmConfiguration buffer, proxy_on_vm_start's size); default empty */
  vmConfig?: string | Uint8Array;
  /** the log level Envoy runs the wasm logger at: lower levels are dropped, proxy_get_log_level reports it; default "info" */
  logLevel?: LogLevel;
  /**
   * What to do with imports this host does not implement. "stub" (default) links a function that throws
   * UnimplementedImportError when called; "reject" refuses to load, as Envoy does.
   */
  unknownImports?: "stub" | "reject";
  /**
   * Envoy 1.40's `allow_on_headers_stop_iteration`: keep StopIteration from proxy_on_request_headers as is, so
   * the body still reaches the filter. Without it Envoy turns StopIteration into StopAllIterationAndWatermark
   * and the filter sees no body until it resumes the stream. Default false, Envoy's default and what an Istio
   * WasmPlugin gets (our filter then needs its `"headers": "continue"` configuration to read bodies); our Envoy
   * configs set it.
   */
  allowOnHeadersStopIteration?: boolean;
  /**
   * What proxy_get_buffer_bytes writes for an empty range: "zero" (default) writes 0/0 into the out-parameters
   * as Envoy 1.40 does (proxy-wasm-cpp-host since 2022); "untouched" answers Ok without writing them, as older
   * hosts did, so tests can prove the module never reads a pointer it was not given.
   */
  emptyBuffer?: "zero" | "untouched";
  /** clock for proxy_get_current_time_nanoseconds and WASI clock_time_get (nanoseconds since the epoch) */
  clock?: () => bigint;
  /** how many log entries to keep (oldest dropped first); default 10000 */
  maxLogEntries?: number;
  /** also print each captured log entry to stderr */
  echoLogs?: boolean;
}

export interface LogEntry {
  level: LogLevel;
  message: string;
  /** the context that was running (the root context id for configuration) */
  contextId: number;
  source: "proxy_log" | "stdout" | "stderr";
}

export interface LocalReply {
  /** the HTTP status the filter asked for (Envoy sends 200 + grpc-status for gRPC requests; see grpcStatus) */
  status: number;
  /** response code details, with whitespace replaced by "_" as Envoy does */
  details: string;
  body: Uint8Array;
  headers: Pair[];
  /** the gRPC status, or null when the filter passed a value outside 0..16 (Envoy then sends none) */
  grpcStatus: number | null;
}

export interface ExplainPeer {
  valid: boolean;
  id: string | null;
  trustDomain: string | null;
  path: string | null;
  attributes: Record<string, unknown>;
}

/** The filter's own account of a decision (export `spiffe_authz_explain`). */
export interface Explain {
  decision: "allow" | "deny" | "pending";
  rule: string | null;
  reason: string;
  tableHash: string | null;
  peer: ExplainPeer;
  [key: string]: unknown;
}

export interface VmFailure {
  /** what happened, e.g. `trap in proxy_on_request_headers: RuntimeError: unreachable` */
  reason: string;
  /** the export that was running */
  during: string;
  error: unknown;
}

export interface RequestResult {
  contextId: number;
  /** the local reply the filter (or the failed VM) sent, or null */
  localReply: LocalReply | null;
  /** the request went upstream: every hook continued (or the stream was resumed) and nothing replied */
  continued: boolean;
  /** the stream was reset by proxy_close_stream */
  reset: boolean;
  /** raw return value of proxy_on_request_headers (null when it was not called) */
  headersStatus: number | null;
  /** the request headers as they stood when the filter let them go (null if it never did) */
  forwardedHeaders: Pair[] | null;
  /**
   * the request body as it went upstream, all chunks the filter let go (or that Envoy sent on with the trailers or a
   * resume); null when no body byte did
   */
  forwardedBody: Uint8Array | null;
  /**
   * the headers went upstream but the request then ended in Envoy (a local reply or a reset before it was complete):
   * Envoy resets the upstream stream, so the upstream saw the headers (and `forwardedBody`, if any) and a reset
   */
  upstreamReset: boolean;
  /** explain output, or null (VM failed, or the module has no explain export) */
  explain: Explain | null;
  /** set when the VM failed before or during this request */
  vmFailure: VmFailure | null;
  /**
   * What the filter left in the stream's filter state with proxy_set_property, by property name (Envoy's key is
   * `wasm.<name>`): a property declared as google.protobuf.Struct (declare_property) decoded to an object of its
   * fields as Envoy's `%CEL(filter_state['wasm.<name>'].<field>)%` reads them, any other as its bytes.
   */
  filterState: Record<string, Record<string, unknown> | Uint8Array>;
}

interface MetricState {
  name: string;
  type: number;
  value: number;
  samples: number[];
}

/** Per-context state: the root context and each HTTP stream. */
interface ContextState {
  id: number;
  root: boolean;
  request: PreparedRequest | null;
  /** the header map; shared with `request` until the filter mutates it */
  headers: Pair[];
  headersOwned: boolean;
  headerPairsCache: Uint8Array | null;
  /** Envoy keeps request_headers_ only while the filter holds the headers (not after Continue) */
  headersAvailable: boolean;
  trailers: Pair[] | null;
  trailersAvailable: boolean;
  responseHeaders: Pair[] | null;
  responseHeadersAvailable: boolean;
  /** the current request body buffer (the chunk, or everything buffered so far) */
  body: Uint8Array | null;
  bodyBuffering: boolean;
  responseBody: Uint8Array | null;
  localReply: LocalReply | null;
  pendingLocalReply: LocalReply | null;
  resumeRequested: boolean;
  reset: boolean;
  inLog: boolean;
  filterState: Map<string, Uint8Array> | null;
  connectionId: number;
  /** the prepared request's cache of connection properties (per host) */
  propertyCache: Map<string, Uint8Array | null> | null;
  /** request.time: taken on first use (creating a BigInt per request would cost more than the hooks) */
  createdNs: bigint | null;
  /** Envoy's view of the headers status (after its rewrites) */
  headersStatus: number | null;
  /** what proxy_on_request_headers returned */
  headersRaw: number | null;
  forwardedHeaders: Pair[] | null;
  /** body chunks that went upstream */
  forwardedBody: Uint8Array[];
  created: boolean;
}

type Exports = Record<string, unknown> & { memory: WasmMemory };
type Fn = (...args: number[]) => number;

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: false });
const EMPTY = new Uint8Array(0);

const FAIL_STREAM_REPLY = (): LocalReply => ({
  // proxy-wasm CHECK_FAIL_HTTP -> Context::failStream: 503, empty body, details "wasm_fail_stream",
  // gRPC UNAVAILABLE.
  status: 503, details: "wasm_fail_stream", body: EMPTY, headers: [], grpcStatus: GrpcStatus.Unavailable,
});

function replaceWhitespace(s: string): string {
  // Envoy StringUtil::replaceAllEmptySpace: response code details may not contain whitespace.
  return s.replace(/[ \t\n\v\f\r]/g, "_");
}

function isPrepared(r: HttpRequest | PreparedRequest): r is PreparedRequest {
  return (r as PreparedRequest).headerPairs instanceof Uint8Array;
}

export class ProxyWasmHost {
  /** the root context id (Envoy gives the first context of a VM id 1) */
  readonly rootContextId = 1;
  /** captured logs (proxy_log and WASI stdout/stderr), oldest first, at most maxLogEntries */
  readonly logs: LogEntry[] = [];
  /** `module.name` of every import this host does not implement (they throw when called) */
  readonly unknownImports: readonly string[];
  /** the ABI version the module declares, e.g. "0_2_1" */
  readonly abiVersion: string;
  /** the tick period the module asked for, in ms (0 = none) */
  tickPeriodMs = 0;

  private readonly instance: WasmInstance;
  private readonly ex: Exports;
  private readonly memory: WasmMemory;
  private u8: Uint8Array;
  private dv: DataView;
  private readonly malloc: Fn;
  private readonly contexts = new Map<number, ContextState>();
  private nextContextId = 2;
  private nextConnectionId = 1;
  private current: ContextState | null = null;
  private effective: ContextState | null = null;
  private stopNextIteration = false;
  private pluginConfig: Uint8Array | null = null;
  private readonly vmConfig: Uint8Array;
  private failed: VmFailure | null = null;
  /** Properties the module declared with the declare_property foreign function, by name. */
  private readonly declaredProperties = new Map<string, DeclaredProperty>();
  private readonly metricsById = new Map<number, MetricState>();
  private readonly metricsByName = new Map<string, MetricState>();
  private readonly propertyCaches = new WeakMap<PreparedRequest, Map<string, Uint8Array | null>>();
  private nextMetricId = [0, 1, 2]; // Envoy: type in the low 2 bits, ids step by 4
  private readonly opts: Required<Pick<LoadOptions, "rootId" | "vmId" | "pluginName" | "logLevel" | "maxLogEntries" | "echoLogs" | "allowOnHeadersStopIteration" | "emptyBuffer">>;
  private readonly logLevelIndex: number;
  private readonly clock: () => bigint;
  private readonly fnOnRequestHeaders: Fn | null;
  private readonly fnOnRequestBody: Fn | null;
  private readonly fnOnRequestTrailers: Fn | null;
  private readonly fnOnResponseHeaders: Fn | null;
  private readonly fnOnResponseBody: Fn | null;
  private readonly fnOnContextCreate: Fn | null;
  private readonly fnOnDone: Fn | null;
  private readonly fnOnLog: Fn | null;
  private readonly fnOnDelete: Fn | null;
  private readonly fnExplain: Fn | null;

  /** Loads, instantiates and starts the module (WASI init, root context, proxy_on_vm_start). */
  static async load(opts: LoadOptions = {}): Promise<ProxyWasmHost> {
    const bytes = opts.wasmBytes ?? readFileSync(opts.wasmPath ?? DEFAULT_WASM_PATH);
    const module = await Wasm.compile(bytes);
    return new ProxyWasmHost(module, opts);
  }

  /** Same as load() for an already compiled module (lets benchmarks start fresh VMs cheaply). */
  static fromModule(module: WasmModule, opts: LoadOptions = {}): ProxyWasmHost {
    return new ProxyWasmHost(module, opts);
  }

  private constructor(module: WasmModule, opts: LoadOptions) {
    const rootId = opts.rootId ?? "spiffe-authz";
    this.opts = {
      rootId,
      vmId: opts.vmId ?? "",
      pluginName: opts.pluginName ?? rootId,
      logLevel: opts.logLevel ?? "info",
      maxLogEntries: opts.maxLogEntries ?? 10000,
      echoLogs: opts.echoLogs ?? false,
      allowOnHeadersStopIteration: opts.allowOnHeadersStopIteration ?? false,
      emptyBuffer: opts.emptyBuffer ?? "zero",
    };
    this.logLevelIndex = LOG_LEVELS.indexOf(this.opts.logLevel);
    this.clock = opts.clock ?? (() => BigInt(Date.now()) * 1_000_000n);
    this.vmConfig = typeof opts.vmConfig === "string" ? utf8Encoder.encode(opts.vmConfig) : opts.vmConfig ?? EMPTY;

    const exportNames = new Set(Wasm.Module.exports(module).map((e) => e.name));
    const abi = ["0_2_1", "0_2_0"].find((v) => exportNames.has(`proxy_abi_version_${v}`));
    if (!abi) {
      throw new ModuleLoadError(exportNames.has("proxy_abi_version_0_1_0")
        ? "module targets proxy-wasm abi 0.1.0; this host (like envoy 1.40 here) expects 0.2.x"
        : "module exports no proxy_abi_version_0_2_x function: envoy would refuse to load it");
    }
    this.abiVersion = abi;

    const { imports, unknown } = this.buildImports(module, abi);
    this.unknownImports = unknown;
    if (unknown.length > 0 && opts.unknownImports === "reject") {
      throw new ModuleLoadError(`module imports functions this host does not implement: ${unknown.join(", ")}`);
    }
    this.instance = new Wasm.Instance(module, imports);
    this.ex = this.instance.exports as Exports;
    if (!(this.ex.memory instanceof Wasm.Memory)) throw new ModuleLoadError("module does not export its memory");
    this.memory = this.ex.memory;
    this.u8 = new Uint8Array(this.memory.buffer);
    this.dv = new DataView(this.memory.buffer);
    // cpp-host WasmBase::getFunctions: `malloc` first, then `proxy_on_memory_allocate`.
    const alloc = (this.ex.malloc ?? this.ex.proxy_on_memory_allocate) as Fn | undefined;
    if (typeof alloc !== "function") throw new ModuleLoadError("module exports neither malloc nor proxy_on_memory_allocate");
    this.malloc = alloc;
    const fn = (name: string): Fn | null => (typeof this.ex[name] === "function" ? (this.ex[name] as Fn) : null);
    this.fnOnContextCreate = fn("proxy_on_context_create");
    this.fnOnRequestHeaders = fn("proxy_on_request_headers");
    this.fnOnRequestBody = fn("proxy_on_request_body");
    this.fnOnRequestTrailers = fn("proxy_on_request_trailers");
    this.fnOnResponseHeaders = fn("proxy_on_response_headers");
    this.fnOnResponseBody = fn("proxy_on_response_body");
    this.fnOnDone = fn("proxy_on_done");
    this.fnOnLog = fn("proxy_on_log");
    this.fnOnDelete = fn("proxy_on_delete");
    this.fnExplain = fn("spiffe_authz_explain");

    const root = this.newContext(this.rootContextId, null);
    this.contexts.set(root.id, root);
    if (this.unknownImports.length > 0) {
      this.log("warn", `host: module imports functions this host does not implement (they throw when called): ${this.unknownImports.join(", ")}`, root.id, "proxy_log");
    }
    this.start(root);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Public API

  /** The failure that killed the VM, or null while it is healthy. */
  get failure(): VmFailure | null {
    return this.failed;
  }

  /** Delivers a plugin configuration (proxy_on_configure) and returns the module's answer. */
  configure(config: string | Uint8Array): boolean {
    this.assertAlive();
    const fnConfigure = this.ex.proxy_on_configure as Fn | undefined;
    if (typeof fnConfigure !== "function") return true;
    const root = this.contexts.get(this.rootContextId)!;
    this.pluginConfig = typeof config === "string" ? utf8Encoder.encode(config) : config;
    try {
      const r = this.invoke(root, "proxy_on_configure", fnConfigure, root.id, this.pluginConfig.length);
      return r !== 0;
    } catch (err) {
      if (err instanceof VmFailedError) return false;
      throw err;
    } finally {
      // Envoy exposes the plugin configuration only while proxy_on_configure runs (temp_plugin_).
      this.pluginConfig = null;
    }
  }

  /** Runs the whole lifecycle of one request and reports what the filter did. */
  request(req: HttpRequest | PreparedRequest): RequestResult {
    const prepared = isPrepared(req) ? req : prepareRequest(req);
    if (this.failed) return this.failClosed(0, null);
    let id = 0;
    try {
      id = this.createContext(prepared);
      const ctx = this.contexts.get(id)!;
      const chunks = prepared.bodyChunks;
      const hasTrailers = prepared.trailers !== null;
      this.onRequestHeaders(id, chunks.length === 0 && !hasTrailers);
      // With StopAllIteration (Envoy's rewrite of StopIteration) the filter sees no data until it resumes.
      const dataFlows = () => !this.isEnded(ctx) && (ctx.headersStatus === FilterHeadersStatus.Continue
        || ctx.headersStatus === FilterHeadersStatus.StopIteration || ctx.resumeRequested);
      let passed = ctx.headersStatus === FilterHeadersStatus.Continue || ctx.resumeRequested;
      for (let i = 0; i < chunks.length && dataFlows(); i++) {
        const status = this.onRequestBody(id, chunks[i], i === chunks.length - 1 && !hasTrailers);
        passed = (status === FilterDataStatus.Continue || ctx.resumeRequested) && !this.isEnded(ctx);
      }
      if (hasTrailers && dataFlows()) {
        const status = this.onRequestTrailers(id);
        // Continue from the trailers resumes the stream, body buffered by StopIterationAndBuffer included (Envoy's
        // filter manager sends the buffered data on with the trailers).
        passed = (passed || ctx.bodyBuffering || chunks.length === 0) &&
          (status === FilterTrailersStatus.Continue || ctx.resumeRequested);
      }
      passed = passed && !this.isEnded(ctx);
      // Envoy sends data buffered by StopIterationAndBuffer on when the stream continues (trailers, resume).
      if (passed && ctx.bodyBuffering && ctx.body !== null && ctx.body.length > 0) ctx.forwardedBody.push(ctx.body);
      // Headers that went upstream before a local reply or a reset: the router resets its upstream stream.
      const upstreamReset = ctx.forwardedHeaders !== null && this.isEnded(ctx);
      if (passed && ctx.forwardedHeaders === null) ctx.forwardedHeaders = ctx.headers;
      if (passed && prepared.response) this.deliverResponse(ctx, prepared);
      const localReply = ctx.localReply;
      const reset = ctx.reset;
      const headersStatus = ctx.headersRaw;
      // A copy for the caller: the prepared request's array is shared with other contexts.
      const forwardedHeaders = ctx.forwardedHeaders ? ctx.forwardedHeaders.slice() : null;
      // Envoy: access log (proxy_on_log) runs before the filters are destroyed (proxy_on_done, proxy_on_delete).
      this.onLog(id);
      this.onDone(id);
      const explain = this.explain(id);
      this.onDelete(id);
      const forwardedBody = ctx.forwardedBody.length === 0 ? null : concat(...ctx.forwardedBody);
      return { contextId: id, localReply, continued: passed && !localReply && !reset, reset, headersStatus,
        forwardedHeaders, forwardedBody, upstreamReset, explain, vmFailure: null, filterState: this.readableFilterState(ctx) };
    } catch (err) {
      if (err instanceof VmFailedError) {
        if (id !== 0) this.contexts.delete(id);
        return this.failClosed(id, this.failed);
      }
      throw err;
    }
  }

  /** Value of a counter or gauge by name (without Envoy's `wasmcustom.` prefix), or undefined. */
  metric(name: string): number | undefined {
    const m = this.metricsByName.get(name);
    if (!m || m.type === MetricType.Histogram) return undefined;
    return m.value;
  }

  /** Every metric the module defined, by name. */
  metrics(): Map<string, { type: "counter" | "gauge" | "histogram"; value: number; samples: number[] }> {
    const out = new Map<string, { type: "counter" | "gauge" | "histogram"; value: number; samples: number[] }>();
    for (const m of this.metricsByName.values()) {
      out.set(m.name, { type: (["counter", "gauge", "histogram"] as const)[m.type], value: m.value, samples: m.samples.slice() });
    }
    return out;
  }

  /** Current size of the module's linear memory in bytes. */
  memoryBytes(): number {
    return this.memory.buffer.byteLength;
  }

  /** Drops the captured logs. */
  clearLogs(): void {
    this.logs.length = 0;
  }

  /** Number of live contexts, the root included (a leak check for tests). */
  contextCount(): number {
    return this.contexts.size;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Stepwise API (micro-benchmarks, fine-grained tests). Each call runs one export; a trap throws
  // VmFailedError and leaves the VM failed.

  /** Builds the Envoy view of a request once, for reuse across many contexts. */
  prepare(req: HttpRequest): PreparedRequest {
    return prepareRequest(req);
  }

  /** Creates a stream context (proxy_on_context_create(id, root)) and returns its id. */
  createContext(req: HttpRequest | PreparedRequest): number {
    this.assertAlive();
    const prepared = isPrepared(req) ? req : prepareRequest(req);
    const id = this.nextContextId++;
    const ctx = this.newContext(id, prepared);
    this.contexts.set(id, ctx);
    const f = this.fnOnContextCreate;
    if (f) this.invoke(ctx, "proxy_on_context_create", f, id, this.rootContextId);
    ctx.created = true;
    return id;
  }

  /** proxy_on_request_headers(id, headerCount, endOfStream); returns the raw status. */
  onRequestHeaders(id: number, endOfStream: boolean): number {
    const ctx = this.stream(id);
    ctx.headersAvailable = true;
    const f = this.fnOnRequestHeaders;
    const raw = f ? this.invoke(ctx, "proxy_on_request_headers", f, id, ctx.headers.length, endOfStream ? 1 : 0) : 0;
    // cpp-host convertVmCallResultToFilterHeadersStatus: after a local reply (stopNextIteration) or for an
    // out-of-range value the stream stops; StopIteration becomes StopAllIterationAndWatermark unless
    // allow_on_headers_stop_iteration is set.
    let status = raw;
    if (this.stopNextIteration || raw > FilterHeadersStatus.StopAllIterationAndWatermark) {
      status = FilterHeadersStatus.StopAllIterationAndWatermark;
    } else if (raw === FilterHeadersStatus.StopIteration && !this.opts.allowOnHeadersStopIteration) {
      status = FilterHeadersStatus.StopAllIterationAndWatermark;
    }
    ctx.headersStatus = status;
    ctx.headersRaw = raw;
    this.afterCall(ctx);
    if (status === FilterHeadersStatus.Continue && !this.isEnded(ctx)) {
      // No copy: once Envoy releases the map the filter cannot change it any more.
      ctx.forwardedHeaders = ctx.headers;
      ctx.headersAvailable = false; // Envoy drops request_headers_ once the filter continues
    }
    return raw;
  }

  /**
   * Delivers one body chunk (proxy_on_request_body(id, bufferedSize, endOfStream)). When the previous chunk
   * answered StopIterationAndBuffer, Envoy appends to the buffered data and reports the total size.
   */
  onRequestBody(id: number, chunk: Uint8Array, endOfStream: boolean): number {
    const ctx = this.stream(id);
    ctx.body = ctx.bodyBuffering && ctx.body ? concat(ctx.body, chunk) : chunk;
    const f = this.fnOnRequestBody;
    const raw = f ? this.invoke(ctx, "proxy_on_request_body", f, id, ctx.body.length, endOfStream ? 1 : 0) : 0;
    let status = raw;
    if (this.stopNextIteration || raw > FilterDataStatus.StopIterationNoBuffer) status = FilterDataStatus.StopIterationNoBuffer;
    this.afterCall(ctx);
    ctx.bodyBuffering = status === FilterDataStatus.StopIterationAndBuffer;
    if (status === FilterDataStatus.Continue) {
      // The chunk goes on, behind everything buffered before it.
      if (!this.isEnded(ctx) && ctx.body.length > 0) ctx.forwardedBody.push(ctx.body);
      ctx.body = null;
      if (ctx.forwardedHeaders === null && !this.isEnded(ctx)) ctx.forwardedHeaders = ctx.headers;
      ctx.headersAvailable = false;
    }
    return status;
  }

  /** proxy_on_request_trailers(id, trailerCount). */
  onRequestTrailers(id: number): number {
    const ctx = this.stream(id);
    ctx.trailers = ctx.request!.trailers ? ctx.request!.trailers.slice() : [];
    ctx.trailersAvailable = true;
    const f = this.fnOnRequestTrailers;
    const raw = f ? this.invoke(ctx, "proxy_on_request_trailers", f, id, ctx.trailers.length) : 0;
    let status = raw;
    if (this.stopNextIteration || raw > FilterTrailersStatus.StopIteration) status = FilterTrailersStatus.StopIteration;
    this.afterCall(ctx);
    if (status === FilterTrailersStatus.Continue) ctx.trailersAvailable = false;
    return status;
  }

  /** proxy_on_log(id): the access-log phase, where the request headers are readable again. */
  onLog(id: number): void {
    const ctx = this.stream(id);
    const f = this.fnOnLog;
    if (!f) return;
    ctx.inLog = true;
    try {
      this.invoke(ctx, "proxy_on_log", f, id);
    } finally {
      ctx.inLog = false;
    }
  }

  /** proxy_on_done(id); returns its raw answer. */
  onDone(id: number): number {
    const ctx = this.stream(id);
    const f = this.fnOnDone;
    return f ? this.invoke(ctx, "proxy_on_done", f, id) : 1;
  }

  /** proxy_on_delete(id); the context is forgotten afterwards. */
  onDelete(id: number): void {
    const ctx = this.stream(id);
    const f = this.fnOnDelete;
    try {
      if (f) this.invoke(ctx, "proxy_on_delete", f, id);
    } finally {
      this.contexts.delete(id);
    }
  }

  /** The local reply sent on this stream so far, or null. */
  localReply(id: number): LocalReply | null {
    return this.stream(id).localReply;
  }

  /** Calls `spiffe_authz_explain(id)` and parses its JSON; null when the module does not export it. */
  explain(id: number): Explain | null {
    const ctx = this.stream(id);
    const f = this.fnExplain;
    if (!f) return null;
    const ptr = this.invoke(ctx, "spiffe_authz_explain", f, id);
    const text = this.readLengthPrefixed(ptr, "spiffe_authz_explain");
    try {
      return JSON.parse(text) as Explain;
    } catch {
      throw new WasmHostError(`spiffe_authz_explain returned invalid json: "${text.slice(0, 200)}"`);
    }
  }

  /**
   * Calls export `name` with any arguments, as the root context, outside the request lifecycle the other methods
   * keep (fuzzing hook orders and context ids Envoy itself never produces). Host calls the module makes meanwhile
   * see the root context: no request headers or body. Returns the export's answer; a trap fails the VM and throws
   * VmFailedError, like every other call.
   */
  unsafeCallExport(name: string, ...args: number[]): number {
    this.assertAlive();
    const f = this.ex[name] as Fn | undefined;
    if (typeof f !== "function") throw new WasmHostError(`the module does not export ${name}`);
    const root = this.contexts.get(this.rootContextId)!;
    return this.invoke(root, name, f, args[0], args[1], args[2]);
  }

  /** Calls proxy_on_tick on the root context. */
  tick(): void {
    this.assertAlive();
    const f = this.ex.proxy_on_tick as Fn | undefined;
    if (typeof f !== "function") return;
    const root = this.contexts.get(this.rootContextId)!;
    this.invoke(root, "proxy_on_tick", f, root.id);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Lifecycle internals

  private start(root: ContextState): void {
    try {
      // cpp-host WasmBase::startVm: a WASI reactor's _initialize, else a command's _start.
      const init = (this.ex._initialize ?? this.ex._start) as Fn | undefined;
      if (typeof init === "function") this.invoke(root, typeof this.ex._initialize === "function" ? "_initialize" : "_start", init);
      // ContextBase::onStart: proxy_on_context_create(root, 0) comes before proxy_on_vm_start.
      const create = this.fnOnContextCreate;
      if (create) this.invoke(root, "proxy_on_context_create", create, root.id, 0);
      root.created = true;
      const vmStart = this.ex.proxy_on_vm_start as Fn | undefined;
      if (typeof vmStart === "function") {
        const ok = this.invoke(root, "proxy_on_vm_start", vmStart, root.id, this.vmConfig.length);
        if (ok === 0) throw new ModuleLoadError("proxy_on_vm_start returned false: envoy would not start this vm");
      }
    } catch (err) {
      if (err instanceof VmFailedError) throw new ModuleLoadError(`module failed while starting: ${err.reason}`);
      throw err;
    }
  }

  private newContext(id: number, request: PreparedRequest | null): ContextState {
    return {
      id, root: request === null, request,
      headers: request ? (request.headers as Pair[]) : [],
      headersOwned: false,
      headerPairsCache: request ? request.headerPairs : null,
      headersAvailable: false,
      trailers: null, trailersAvailable: false,
      responseHeaders: null, responseHeadersAvailable: false,
      body: null, bodyBuffering: false, responseBody: null,
      localReply: null, pendingLocalReply: null,
      resumeRequested: false, reset: false, inLog: false,
      filterState: null,
      connectionId: request ? this.nextConnectionId++ : 0,
      propertyCache: request ? this.propertyCache(request) : null,
      createdNs: null,
      headersStatus: null, headersRaw: null, forwardedHeaders: null, forwardedBody: [], created: false,
    };
  }

  private stream(id: number): ContextState {
    this.assertAlive();
    const ctx = this.contexts.get(id);
    if (!ctx || ctx.root) throw new WasmHostError(`no stream context with id ${id}`);
    return ctx;
  }

  private isEnded(ctx: ContextState): boolean {
    return ctx.localReply !== null || ctx.pendingLocalReply !== null || ctx.reset;
  }

  private assertAlive(): void {
    if (this.failed) throw new VmFailedError(this.failed.reason);
  }

  /**
   * Runs one export with `ctx` as the current context. Any exception (trap, proc_exit, host error) fails the
   * VM, as in Envoy, and surfaces as VmFailedError.
   */
  private invoke(ctx: ContextState, during: string, f: Fn, a?: number, b?: number, c?: number): number {
    const prevCurrent = this.current;
    this.current = ctx;
    this.effective = null;
    this.stopNextIteration = false;
    try {
      const r = f(a as number, b as number, c as number);
      return typeof r === "number" ? r >>> 0 : 0;
    } catch (err) {
      const what = err instanceof ProcExitError ? "proc_exit"
        : err instanceof Wasm.RuntimeError ? "trap"
        : err instanceof WasmHostError ? "host error" : "error";
      const msg = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      this.failed = { reason: `${what} in ${during}: ${msg}`, during, error: err };
      this.log("critical", `host: vm failed: ${this.failed.reason}`, ctx.id, "proxy_log");
      throw new VmFailedError(this.failed.reason);
    } finally {
      this.current = prevCurrent;
      this.effective = null;
    }
  }

  /** Envoy's DeferAfterCallActions: a local reply or a resume takes effect once the VM call has returned. */
  private afterCall(ctx: ContextState): void {
    if (ctx.pendingLocalReply) {
      if (!ctx.localReply) ctx.localReply = ctx.pendingLocalReply;
      ctx.pendingLocalReply = null;
      ctx.headersAvailable = false;
    }
    this.stopNextIteration = false;
  }

  private failClosed(id: number, failure: VmFailure | null): RequestResult {
    return { contextId: id, localReply: FAIL_STREAM_REPLY(), continued: false, reset: false, headersStatus: null,
      forwardedHeaders: null, forwardedBody: null, upstreamReset: false, explain: null, vmFailure: failure ?? this.failed,
      filterState: {} };
  }

  /** A stream's filter state as the access log reads it: declared Struct properties decoded, others as bytes. */
  private readableFilterState(ctx: ContextState): Record<string, Record<string, unknown> | Uint8Array> {
    const out: Record<string, Record<string, unknown> | Uint8Array> = {};
    for (const [k, v] of ctx.filterState ?? []) {
      const d = this.declaredProperties.get(k);
      out[k] = d?.type === WASM_TYPE_PROTOBUF ? decodeStruct(v) ?? v : v;
    }
    return out;
  }

  private deliverResponse(ctx: ContextState, prepared: PreparedRequest): void {
    const resp = prepared.response!;
    ctx.responseHeaders = resp.headers.slice();
    ctx.responseHeadersAvailable = true;
    const fh = this.fnOnResponseHeaders;
    if (fh) this.invoke(ctx, "proxy_on_response_headers", fh, ctx.id, ctx.responseHeaders.length, resp.body ? 0 : 1);
    this.afterCall(ctx);
    ctx.responseHeadersAvailable = false;
    const fb = this.fnOnResponseBody;
    if (resp.body && fb && !this.isEnded(ctx)) {
      ctx.responseBody = resp.body;
      this.invoke(ctx, "proxy_on_response_body", fb, ctx.id, resp.body.length, 1);
      this.afterCall(ctx);
      ctx.responseBody = null;
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Memory

  private mem(): Uint8Array {
    // memory.grow detaches the old (non-shared) ArrayBuffer, so a zero-length view means "refresh". Reading
    // memory.buffer on every host call would cost more than the call itself.
    if (this.u8.byteLength === 0) {
      this.u8 = new Uint8Array(this.memory.buffer);
      this.dv = new DataView(this.memory.buffer);
    }
    return this.u8;
  }

  private inBounds(ptr: number, len: number): boolean {
    return ptr + len <= this.mem().length;
  }

  private readBytes(ptr: number, len: number): Uint8Array | null {
    ptr >>>= 0;
    len >>>= 0;
    if (!this.inBounds(ptr, len)) return null;
    return this.u8.subarray(ptr, ptr + len);
  }

  private readString(ptr: number, len: number): string | null {
    ptr >>>= 0;
    len >>>= 0;
    if (!this.inBounds(ptr, len)) return null;
    const u8 = this.u8;
    // Short ASCII strings (property paths, header names) are decoded by hand: TextDecoder's fixed cost
    // dominates at these sizes.
    if (len <= 64) {
      let s = "";
      for (let i = ptr; i < ptr + len; i++) {
        const c = u8[i];
        if (c >= 0x80) return utf8Decoder.decode(u8.subarray(ptr, ptr + len));
        s += String.fromCharCode(c);
      }
      return s;
    }
    return utf8Decoder.decode(u8.subarray(ptr, ptr + len));
  }

  private setU32(ptr: number, v: number): boolean {
    ptr >>>= 0;
    if (!this.inBounds(ptr, 4)) return false;
    this.dv.setUint32(ptr, v >>> 0, true);
    return true;
  }

  private setU64(ptr: number, v: bigint): boolean {
    ptr >>>= 0;
    if (!this.inBounds(ptr, 8)) return false;
    this.dv.setBigUint64(ptr, BigInt.asUintN(64, v), true);
    return true;
  }

  /**
   * cpp-host copyToPointerSize: allocate with the module's malloc, copy, write pointer and size. An empty value
   * is reported as (0, 0) without calling malloc.
   */
  private copyOut(bytes: Uint8Array, ptrPtr: number, sizePtr: number): number {
    let p = 0;
    if (bytes.length > 0) {
      p = this.malloc(bytes.length) >>> 0;
      if (p === 0 || !this.inBounds(p, bytes.length)) return WasmResult.InvalidMemoryAccess;
      this.mem().set(bytes, p);
    }
    if (!this.setU32(ptrPtr, p) || !this.setU32(sizePtr, bytes.length)) return WasmResult.InvalidMemoryAccess;
    return WasmResult.Ok;
  }

  private readLengthPrefixed(ptr: number, what: string): string {
    ptr >>>= 0;
    if (!this.inBounds(ptr, 4)) throw new WasmHostError(`${what} returned an out-of-bounds pointer ${ptr}`);
    const len = this.dv.getUint32(ptr, true);
    const s = this.readString(ptr + 4, len);
    if (s === null) throw new WasmHostError(`${what} returned ${len} bytes at ${ptr}, past the end of memory`);
    return s;
  }

  private log(level: LogLevel, message: string, contextId: number, source: LogEntry["source"]): void {
    if (LOG_LEVELS.indexOf(level) < this.logLevelIndex) return;
    // Drop the oldest half at once so a chatty module costs O(1) per line.
    if (this.logs.length >= this.opts.maxLogEntries) this.logs.splice(0, Math.ceil(this.opts.maxLogEntries / 2));
    this.logs.push({ level, message, contextId, source });
    if (this.opts.echoLogs) process.stderr.write(`[wasm ${level}] ${message}\n`);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Imports

  private buildImports(module: WasmModule, abi: string): { imports: Record<string, Record<string, unknown>>; unknown: string[] } {
    const env = this.envFunctions();
    const wasi = this.wasiFunctions();
    const implemented: Record<string, Record<string, unknown>> = {
      env,
      // Envoy provides WASI preview1 under both names.
      wasi_snapshot_preview1: wasi,
      wasi_unstable: wasi,
    };
    const imports: Record<string, Record<string, unknown>> = {};
    const unknown: string[] = [];
    for (const imp of Wasm.Module.imports(module)) {
      const full = `${imp.module}.${imp.name}`;
      if (imp.kind !== "function") throw new ModuleLoadError(`module imports ${imp.kind} "${full}"; envoy provides only functions`);
      let f = implemented[imp.module]?.[imp.name] as ((...a: never[]) => unknown) | undefined;
      // proxy_get_log_level exists only for modules declaring abi 0.2.1 (cpp-host registers it per version).
      if (imp.name === "proxy_get_log_level" && abi !== "0_2_1") f = undefined;
      if (!f) {
        unknown.push(full);
        f = () => {
          throw new UnimplementedImportError(full);
        };
      }
      (imports[imp.module] ??= {})[imp.name] = f;
    }
    return { imports, unknown };
  }

  private ctx(): ContextState {
    // proxy_set_effective_context switches the context host calls act on until the export returns.
    const c = this.effective ?? this.current;
    if (!c) throw new WasmHostError("host function called outside of any proxy-wasm callback");
    return c;
  }

  private mutableMap(c: ContextState, type: number): Pair[] | null {
    if (c.root) return null;
    switch (type) {
      case HeaderMapType.RequestHeaders:
        return c.headersAvailable && !c.inLog ? c.headers : null;
      case HeaderMapType.RequestTrailers:
        return c.trailersAvailable ? c.trailers : null;
      case HeaderMapType.ResponseHeaders:
        return c.responseHeadersAvailable ? c.responseHeaders : null;
      default:
        return null;
    }
  }

  private constMap(c: ContextState, type: number): Pair[] | null {
    if (c.root) return null;
    if (type === HeaderMapType.RequestHeaders && c.inLog) return c.headers; // access_log_request_headers_
    return this.mutableMap(c, type);
  }

  private ownHeaders(c: ContextState, type: number): Pair[] | null {
    const map = this.mutableMap(c, type);
    if (map && type === HeaderMapType.RequestHeaders) {
      if (!c.headersOwned) {
        c.headers = c.headers.slice();
        c.headersOwned = true;
      }
      c.headerPairsCache = null;
      return c.headers;
    }
    return map;
  }

  private envFunctions(): Record<string, (...a: never[]) => unknown> {
    const R = WasmResult;
    return {
      proxy_log: (level: number, ptr: number, size: number): number => {
        const msg = this.readString(ptr, size);
        if (msg === null) return R.InvalidMemoryAccess;
        if (level < 0 || level >= LOG_LEVELS.length) return R.BadArgument;
        this.log(LOG_LEVELS[level], msg, this.ctx().id, "proxy_log");
        return R.Ok;
      },
      proxy_get_log_level: (ptr: number): number => (this.setU32(ptr, this.logLevelIndex) ? R.Ok : R.InvalidMemoryAccess),
      proxy_get_current_time_nanoseconds: (ptr: number): number => (this.setU64(ptr, this.clock()) ? R.Ok : R.InvalidMemoryAccess),
      proxy_set_tick_period_milliseconds: (ms: number): number => {
        this.tickPeriodMs = ms >>> 0;
        return R.Ok;
      },
      proxy_set_effective_context: (id: number): number => {
        const c = this.contexts.get(id >>> 0);
        if (!c) return R.BadArgument;
        this.effective = c;
        return R.Ok;
      },
      proxy_get_property: (pathPtr: number, pathSize: number, valuePtrPtr: number, valueSizePtr: number): number => {
        const p = this.readString(pathPtr, pathSize);
        if (p === null) return R.InvalidMemoryAccess;
        const c = this.ctx();
        // Connection facts cannot change during a request: cache them on the prepared request, so a reused
        // request (benchmarks) pays one map lookup.
        const cache = c.propertyCache;
        let value = cache ? cache.get(p) : undefined;
        if (value === undefined) {
          const parts = p.split("\0");
          if (parts.length > 1 && parts[parts.length - 1] === "") parts.pop(); // Envoy ignores a trailing NUL
          value = resolveProperty(parts, this.scope(c));
          if (cache && STATIC_PROPERTY_TOPS.has(parts[0]) && p !== "connection\0id") cache.set(p, value);
        }
        if (value === null) return R.NotFound;
        return this.copyOut(value, valuePtrPtr, valueSizePtr);
      },
      proxy_set_property: (pathPtr: number, pathSize: number, valuePtr: number, valueSize: number): number => {
        const p = this.readString(pathPtr, pathSize);
        const v = this.readBytes(valuePtr, valueSize);
        if (p === null || v === null) return R.InvalidMemoryAccess;
        const c = this.ctx();
        // Envoy stores the value in the stream's filter state; the root context has no stream info.
        if (c.root) return R.NotFound;
        const declared = this.declaredProperties.get(p);
        // Envoy 1.40 (WasmState::setValue) refuses a value its declared protobuf type cannot parse.
        if (declared?.type === WASM_TYPE_PROTOBUF && declared.schema === STRUCT_TYPE_URL && decodeStruct(v) === null) return R.BadArgument;
        if (declared?.readonly && c.filterState?.has(p)) return R.BadArgument;
        (c.filterState ??= new Map()).set(p, v.slice());
        return R.Ok;
      },
      proxy_call_foreign_function: (namePtr: number, nameSize: number, argPtr: number, argSize: number, resultPtrPtr: number, resultSizePtr: number): number => {
        const name = this.readString(namePtr, nameSize);
        const args = this.readBytes(argPtr, argSize);
        if (name === null || args === null) return R.InvalidMemoryAccess;
        // Envoy 1.40 registers a handful of foreign functions; this host models declare_property, the one the
        // filter calls (source/extensions/common/wasm/foreign.cc), and answers NotFound for any other name.
        if (name !== "declare_property") return R.NotFound;
        const decl = decodeDeclareProperty(args);
        if (decl === null) return R.BadArgument;
        if (decl.type === WASM_TYPE_PROTOBUF && decl.schema !== STRUCT_TYPE_URL) {
          throw new WasmHostError(`declare_property: protobuf type ${JSON.stringify(decl.schema)} is not modelled by this host`);
        }
        this.declaredProperties.set(decl.name, decl);
        if (!this.setU32(resultPtrPtr, 0) || !this.setU32(resultSizePtr, 0)) return R.InvalidMemoryAccess;
        return R.Ok;
      },
      proxy_get_header_map_value: (type: number, keyPtr: number, keySize: number, valuePtrPtr: number, valueSizePtr: number): number => {
        if (type > HEADER_MAP_TYPE_MAX) return R.BadArgument;
        const key = this.readString(keyPtr, keySize);
        if (key === null) return R.InvalidMemoryAccess;
        const c = this.ctx();
        const map = this.constMap(c, type);
        if (!map) return c.inLog ? R.NotFound : R.BadArgument;
        const k = key.toLowerCase();
        for (let i = 0; i < map.length; i++) {
          // Envoy returns the first value only (see the TODO in Context::getHeaderMapValue).
          if (map[i][0] === k) return this.copyOut(utf8Encoder.encode(map[i][1]), valuePtrPtr, valueSizePtr);
        }
        return R.NotFound;
      },
      proxy_get_header_map_pairs: (type: number, ptrPtr: number, sizePtr: number): number => {
        if (type > HEADER_MAP_TYPE_MAX) return R.BadArgument;
        const c = this.ctx();
        const map = this.constMap(c, type);
        if (!map || map.length === 0) return this.copyOut(EMPTY, ptrPtr, sizePtr);
        let bytes: Uint8Array;
        if (type === HeaderMapType.RequestHeaders) {
          bytes = c.headerPairsCache ??= encodePairs(map);
        } else {
          bytes = encodePairs(map);
        }
        return this.copyOut(bytes, ptrPtr, sizePtr);
      },
      proxy_set_header_map_pairs: (type: number, ptr: number, size: number): number => {
        if (type > HEADER_MAP_TYPE_MAX) return R.BadArgument;
        const bytes = this.readBytes(ptr, size);
        if (bytes === null) return R.InvalidMemoryAccess;
        const pairs = decodePairs(bytes);
        if (pairs === null) return R.InvalidMemoryAccess;
        const map = this.ownHeaders(this.ctx(), type);
        if (!map) return R.BadArgument;
        map.length = 0;
        for (const [k, v] of pairs) map.push([k.toLowerCase(), v]);
        return R.Ok;
      },
      proxy_add_header_map_value: (type: number, keyPtr: number, keySize: number, valuePtr: number, valueSize: number): number => {
        if (type > HEADER_MAP_TYPE_MAX) return R.BadArgument;
        const key = this.readString(keyPtr, keySize);
        const value = this.readString(valuePtr, valueSize);
        if (key === null || value === null) return R.InvalidMemoryAccess;
        const map = this.ownHeaders(this.ctx(), type);
        if (!map) return R.BadArgument;
        map.push([key.toLowerCase(), value]);
        return R.Ok;
      },
      proxy_replace_header_map_value: (type: number, keyPtr: number, keySize: number, valuePtr: number, valueSize: number): number => {
        if (type > HEADER_MAP_TYPE_MAX) return R.BadArgument;
        const key = this.readString(keyPtr, keySize);
        const value = this.readString(valuePtr, valueSize);
        if (key === null || value === null) return R.InvalidMemoryAccess;
        const map = this.ownHeaders(this.ctx(), type);
        if (!map) return R.BadArgument;
        // HeaderMap::setCopy: replace the first entry's value and drop the others, or append.
        const k = key.toLowerCase();
        const first = map.findIndex((p) => p[0] === k);
        if (first < 0) {
          map.push([k, value]);
        } else {
          map[first] = [k, value];
          for (let i = map.length - 1; i > first; i--) if (map[i][0] === k) map.splice(i, 1);
        }
        return R.Ok;
      },
      proxy_remove_header_map_value: (type: number, keyPtr: number, keySize: number): number => {
        if (type > HEADER_MAP_TYPE_MAX) return R.BadArgument;
        const key = this.readString(keyPtr, keySize);
        if (key === null) return R.InvalidMemoryAccess;
        const map = this.ownHeaders(this.ctx(), type);
        if (!map) return R.BadArgument;
        const k = key.toLowerCase();
        for (let i = map.length - 1; i >= 0; i--) if (map[i][0] === k) map.splice(i, 1);
        return R.Ok;
      },
      proxy_get_header_map_size: (type: number, sizePtr: number): number => {
        if (type > HEADER_MAP_TYPE_MAX) return R.BadArgument;
        const c = this.ctx();
        const map = this.mutableMap(c, type);
        if (!map) return R.BadArgument;
        // Envoy answers HeaderMap::byteSize() (bytes of names and values), not the number of entries.
        let n = 0;
        if (type === HeaderMapType.RequestHeaders && !c.headersOwned && c.request) n = c.request.headerBytes;
        else for (const [k, v] of map) n += utf8Encoder.encode(k).length + utf8Encoder.encode(v).length;
        return this.setU32(sizePtr, n) ? R.Ok : R.InvalidMemoryAccess;
      },
      proxy_get_buffer_status: (type: number, lengthPtr: number, flagsPtr: number): number => {
        if (type > BUFFER_TYPE_MAX) return R.BadArgument;
        const buf = this.buffer(type);
        if (buf === null) return R.NotFound;
        // cpp-host always reports flags 0 here.
        if (!this.setU32(lengthPtr, buf.length) || !this.setU32(flagsPtr, 0)) return R.InvalidMemoryAccess;
        return R.Ok;
      },
      proxy_get_buffer_bytes: (type: number, start: number, length: number, ptrPtr: number, sizePtr: number): number => {
        if (type > BUFFER_TYPE_MAX) return R.BadArgument;
        const buf = this.buffer(type);
        if (buf === null) return R.NotFound;
        start >>>= 0;
        length >>>= 0;
        if (start + length > 0xffffffff) return R.BadArgument; // cpp-host: start > start + length
        if (start > buf.length) return R.InvalidMemoryAccess;
        if (start + length > buf.length) length = buf.length - start;
        // Envoy 1.40 (proxy-wasm-cpp-host since 2022) writes 0/0 into the out-parameters when there is nothing
        // to copy; copyOut does the same for an empty slice. Older hosts answered Ok and wrote nothing.
        if (length === 0 && this.opts.emptyBuffer === "untouched") return R.Ok;
        return this.copyOut(buf.subarray(start, start + length), ptrPtr, sizePtr);
      },
      proxy_set_buffer_bytes: (type: number, start: number, length: number, dataPtr: number, dataSize: number): number => {
        if (type > BUFFER_TYPE_MAX) return R.BadArgument;
        const data = this.readBytes(dataPtr, dataSize);
        if (data === null) return R.InvalidMemoryAccess;
        const c = this.ctx();
        if (type !== BufferType.HttpRequestBody || c.root || c.body === null) {
          // Configuration buffers are immutable; other buffers are not modelled as writable.
          return this.buffer(type) === null ? R.NotFound : R.BadArgument;
        }
        // Envoy Buffer::copyFrom: prepend, replace all, or append; nothing else.
        start >>>= 0;
        length >>>= 0;
        const cur = c.body;
        if (start === 0 && length === 0) c.body = concat(data, cur);
        else if (start === 0 && length >= cur.length) c.body = data.slice();
        else if (start >= cur.length) c.body = concat(cur, data);
        else return R.BadArgument;
        return R.Ok;
      },
      proxy_send_local_response: (status: number, detailsPtr: number, detailsSize: number, bodyPtr: number, bodySize: number,
        headersPtr: number, headersSize: number, grpcStatus: number): number => {
        const details = this.readString(detailsPtr, detailsSize);
        const body = this.readBytes(bodyPtr, bodySize);
        const headerBytes = this.readBytes(headersPtr, headersSize);
        if (details === null || body === null || headerBytes === null) return R.InvalidMemoryAccess;
        const headers = decodePairs(headerBytes) ?? [];
        const c = this.ctx();
        if (!c.root) {
          const g = grpcStatus >>> 0;
          c.pendingLocalReply = {
            status: status >>> 0,
            details: replaceWhitespace(details),
            body: body.slice(),
            headers: headers.map(([k, v]) => [k.toLowerCase(), v]),
            grpcStatus: g <= GRPC_STATUS_MAX_KNOWN ? g : null,
          };
        }
        // cpp-host: the current callback's return value no longer matters, the stream stops.
        this.stopNextIteration = true;
        return R.Ok;
      },
      proxy_continue_stream: (type: number): number => {
        const c = this.ctx();
        switch (type) {
          case StreamType.Request:
          case StreamType.Response:
            if (!c.root) {
              c.resumeRequested = true;
              if (type === StreamType.Request) {
                if (c.forwardedHeaders === null && !this.isEnded(c)) c.forwardedHeaders = c.headers;
                c.headersAvailable = false;
              }
            }
            return R.Ok;
          case StreamType.Downstream:
            return R.Ok;
          case StreamType.Upstream:
            return R.Unimplemented;
          default:
            return R.BadArgument;
        }
      },
      proxy_close_stream: (type: number): number => {
        const c = this.ctx();
        if (type > StreamType.Upstream) return R.BadArgument;
        if (!c.root && (type === StreamType.Request || type === StreamType.Response)) c.reset = true;
        return R.Ok;
      },
      proxy_clear_route_cache: (): number => R.Ok,
      proxy_define_metric: (type: number, namePtr: number, nameSize: number, idPtr: number): number => {
        if (type > MetricType.Histogram) return R.BadArgument;
        const name = this.readString(namePtr, nameSize);
        if (name === null) return R.InvalidMemoryAccess;
        // Envoy hands out a new id per definition, all backed by the one stat of that name.
        const id = this.nextMetricId[type];
        this.nextMetricId[type] += 4;
        let m = this.metricsByName.get(name);
        if (!m) {
          m = { name, type, value: 0, samples: [] };
          this.metricsByName.set(name, m);
        }
        this.metricsById.set(id, m);
        return this.setU32(idPtr, id) ? R.Ok : R.InvalidMemoryAccess;
      },
      proxy_increment_metric: (id: number, offset: bigint): number => {
        const m = this.metricsById.get(id >>> 0);
        const type = (id >>> 0) & 3;
        if (type === MetricType.Counter) {
          if (!m) return R.NotFound;
          if (offset <= 0n) return R.BadArgument;
          m.value += Number(offset);
          return R.Ok;
        }
        if (type === MetricType.Gauge) {
          if (!m) return R.NotFound;
          m.value += Number(offset);
          return R.Ok;
        }
        return R.BadArgument;
      },
      proxy_record_metric: (id: number, value: bigint): number => {
        const m = this.metricsById.get(id >>> 0);
        if (!m) return R.NotFound;
        const v = Number(BigInt.asUintN(64, value));
        if (m.type === MetricType.Counter) m.value += v;
        else if (m.type === MetricType.Gauge) m.value = v;
        else {
          m.samples.push(v);
          if (m.samples.length > 10000) m.samples.shift();
        }
        return R.Ok;
      },
      proxy_get_metric: (id: number, resultPtr: number): number => {
        const type = (id >>> 0) & 3;
        if (type === MetricType.Histogram) return R.BadArgument;
        const m = this.metricsById.get(id >>> 0);
        if (!m) return R.NotFound;
        return this.setU64(resultPtr, BigInt(Math.max(0, Math.trunc(m.value)))) ? R.Ok : R.InvalidMemoryAccess;
      },
    };
  }

  private propertyCache(req: PreparedRequest): Map<string, Uint8Array | null> {
    let m = this.propertyCaches.get(req);
    if (!m) {
      m = new Map();
      this.propertyCaches.set(req, m);
    }
    return m;
  }

  /** getBuffer(type) as Envoy's Context answers it for the current context; null means NotFound. */
  private buffer(type: number): Uint8Array | null {
    const c = this.ctx();
    switch (type) {
      case BufferType.VmConfiguration:
        return this.vmConfig;
      case BufferType.PluginConfiguration:
        return this.pluginConfig; // only during proxy_on_configure
      case BufferType.HttpRequestBody:
        // Envoy wraps request_body_buffer_ even when there is none: an empty buffer, not NotFound.
        return c.root ? EMPTY : c.body ?? EMPTY;
      case BufferType.HttpResponseBody:
        return c.root ? EMPTY : c.responseBody ?? EMPTY;
      case BufferType.CallData:
      case BufferType.NetworkDownstreamData:
      case BufferType.NetworkUpstreamData:
      case BufferType.GrpcReceiveBuffer:
        // Envoy wraps a (null) buffer pointer for these: present and empty, not NotFound.
        return EMPTY;
      default:
        // HttpCallResponseBody without an HTTP call in flight.
        return null;
    }
  }

  private scope(c: ContextState): PropertyScope {
    return {
      request: c.request,
      headers: c.root ? null : this.constMap(c, HeaderMapType.RequestHeaders),
      rootId: this.opts.rootId,
      vmId: this.opts.vmId,
      pluginName: this.opts.pluginName,
      connectionId: c.connectionId,
      requestTimeNs: (c.createdNs ??= this.clock()),
      filterState: c.filterState,
    };
  }

  private wasiFunctions(): Record<string, (...a: never[]) => unknown> {
    const ERRNO_SUCCESS = 0;
    const ERRNO_BADF = 8;
    const ERRNO_FAULT = 21;
    const ERRNO_INVAL = 28;
    const ERRNO_SPIPE = 70;
    return {
      fd_write: (fd: number, iovs: number, iovsLen: number, nwrittenPtr: number): number => {
        // cpp-host accepts only stdout and stderr and turns each write into a log line.
        if (fd !== 1 && fd !== 2) return ERRNO_BADF;
        const parts: Uint8Array[] = [];
        let total = 0;
        for (let i = 0; i < iovsLen; i++) {
          const base = (iovs + i * 8) >>> 0;
          if (!this.inBounds(base, 8)) return ERRNO_FAULT;
          const p = this.dv.getUint32(base, true);
          const l = this.dv.getUint32(base + 4, true);
          const b = this.readBytes(p, l);
          if (b === null) return ERRNO_FAULT;
          parts.push(b.slice());
          total += l;
        }
        const text = utf8Decoder.decode(concat(...parts)).replace(/\n$/, "");
        const c = this.effective ?? this.current;
        this.log(fd === 1 ? "info" : "error", text, c ? c.id : 0, fd === 1 ? "stdout" : "stderr");
        return this.setU32(nwrittenPtr, total) ? ERRNO_SUCCESS : ERRNO_FAULT;
      },
      fd_read: (): number => ERRNO_BADF,
      fd_seek: (): number => ERRNO_SPIPE,
      fd_close: (): number => ERRNO_BADF,
      fd_prestat_get: (): number => ERRNO_BADF,
      fd_fdstat_get: (fd: number, statPtr: number): number => {
        if (fd !== 1 && fd !== 2) return ERRNO_BADF;
        if (!this.inBounds(statPtr >>> 0, 24)) return ERRNO_FAULT;
        this.mem().fill(0, statPtr >>> 0, (statPtr >>> 0) + 24);
        this.dv.setUint8(statPtr >>> 0, 2); // filetype: character device
        return ERRNO_SUCCESS;
      },
      environ_sizes_get: (countPtr: number, sizePtr: number): number =>
        this.setU32(countPtr, 0) && this.setU32(sizePtr, 0) ? ERRNO_SUCCESS : ERRNO_FAULT,
      environ_get: (): number => ERRNO_SUCCESS,
      args_sizes_get: (countPtr: number, sizePtr: number): number =>
        this.setU32(countPtr, 0) && this.setU32(sizePtr, 0) ? ERRNO_SUCCESS : ERRNO_FAULT,
      args_get: (): number => ERRNO_SUCCESS,
      clock_time_get: (clockId: number, _precision: bigint, timePtr: number): number => {
        if (clockId > 3) return ERRNO_INVAL;
        const t = clockId === 0 ? this.clock() : process.hrtime.bigint();
        return this.setU64(timePtr, t) ? ERRNO_SUCCESS : ERRNO_FAULT;
      },
      random_get: (ptr: number, len: number): number => {
        const b = this.readBytes(ptr, len);
        if (b === null) return ERRNO_FAULT;
        // getRandomValues fills at most 64 KiB per call.
        for (let off = 0; off < b.length; off += 65536) crypto.getRandomValues(b.subarray(off, off + 65536));
        return ERRNO_SUCCESS;
      },
      proc_exit: (code: number): never => {
        throw new ProcExitError(code >>> 0);
      },
      sched_yield: (): number => ERRNO_SUCCESS,
    };
  }
}

// `metadata` is fixed per prepared request here (jwt_authn, the only writer modelled, runs before the filter).
const STATIC_PROPERTY_TOPS = new Set(["connection", "source", "destination", "metadata", "plugin_root_id", "plugin_vm_id", "plugin_name"]);

function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// declare_property (Envoy's source/extensions/common/wasm/declare_property.proto) and google.protobuf.Struct

/** WasmType.Protobuf: the property's bytes are a serialized message of the type named by `schema`. */
const WASM_TYPE_PROTOBUF = 3;
const STRUCT_TYPE_URL = "type.googleapis.com/google.protobuf.Struct";

interface DeclaredProperty {
  name: string;
  readonly: boolean;
  /** WasmType: 0 Bytes, 1 String, 2 FlatBuffers, 3 Protobuf */
  type: number;
  schema: string;
  /** LifeSpan: 0 FilterChain, 1 DownstreamRequest, 2 DownstreamConnection */
  span: number;
}

/** A minimal, strict protobuf reader: fields as (number, wire type, value); null on any malformed input. */
function readFields(b: Uint8Array): { n: number; wt: number; v: number | Uint8Array }[] | null {
  const out: { n: number; wt: number; v: number | Uint8Array }[] = [];
  let p = 0;
  const varint = (): number | null => {
    let x = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (p >= b.length) return null;
      const c = b[p++];
      x += (c & 0x7f) * 2 ** shift;
      if (c < 0x80) return x;
    }
    return null;
  };
  while (p < b.length) {
    const tag = varint();
    if (tag === null || tag < 8) return null;
    const n = Math.floor(tag / 8);
    const wt = tag % 8;
    if (wt === 0) {
      const v = varint();
      if (v === null) return null;
      out.push({ n, wt, v });
    } else if (wt === 2) {
      const len = varint();
      if (len === null || p + len > b.length) return null;
      out.push({ n, wt, v: b.subarray(p, p + len) });
      p += len;
    } else if (wt === 1 || wt === 5) {
      const size = wt === 1 ? 8 : 4;
      if (p + size > b.length) return null;
      out.push({ n, wt, v: b.subarray(p, p + size) });
      p += size;
    } else {
      return null;
    }
  }
  return out;
}

const utf8Strict = new TextDecoder("utf-8", { fatal: true });
function text(v: number | Uint8Array): string | null {
  if (typeof v === "number") return null;
  try {
    return utf8Strict.decode(v);
  } catch {
    return null;
  }
}

function decodeDeclareProperty(b: Uint8Array): DeclaredProperty | null {
  const fields = readFields(b);
  if (fields === null) return null;
  const d: DeclaredProperty = { name: "", readonly: false, type: 0, schema: "", span: 0 };
  for (const f of fields) {
    if (f.n === 1 && f.wt === 2) d.name = text(f.v) ?? "";
    else if (f.n === 2 && f.wt === 0) d.readonly = f.v !== 0;
    else if (f.n === 3 && f.wt === 0) d.type = f.v as number;
    else if (f.n === 4 && f.wt === 2) d.schema = Buffer.from(f.v as Uint8Array).toString("latin1");
    else if (f.n === 5 && f.wt === 0) d.span = f.v as number;
  }
  return d.name === "" ? null : d;
}

/** A google.protobuf.Struct whose values are strings, numbers or bools (what the filter writes); null if not. */
export function decodeStruct(b: Uint8Array): Record<string, unknown> | null {
  const fields = readFields(b);
  if (fields === null) return null;
  const out: Record<string, unknown> = {};
  for (const f of fields) {
    if (f.n !== 1 || f.wt !== 2) return null;
    const entry = readFields(f.v as Uint8Array);
    if (entry === null) return null;
    let key: string | null = null;
    let value: unknown = null;
    for (const e of entry) {
      if (e.n === 1 && e.wt === 2) key = text(e.v);
      else if (e.n === 2 && e.wt === 2) {
        const val = readFields(e.v as Uint8Array);
        if (val === null || val.length !== 1) return null;
        const x = val[0];
        if (x.n === 3 && x.wt === 2) value = text(x.v);
        else if (x.n === 4 && x.wt === 0) value = x.v !== 0;
        else if (x.n === 2 && x.wt === 1) value = Buffer.from(x.v as Uint8Array).readDoubleLE(0);
        else return null;
        if (value === null) return null;
      } else return null;
    }
    if (key === null) return null;
    out[key] = value;
  }
  return out;
}
