// The TypeScript proxy-wasm host: runs build/release.wasm the way Envoy 1.40 does (tests, `check`, benchmarks).
export { ProxyWasmHost, DEFAULT_WASM_PATH } from "./host.ts";
export type {
  Explain, ExplainPeer, LoadOptions, LocalReply, LogEntry, LogLevel, RequestResult, VmFailure,
} from "./host.ts";
export { prepareRequest } from "./request.ts";
export type { HttpRequest, HttpResponse, PreparedRequest } from "./request.ts";
export type { Pair } from "./pairs.ts";
export type { WasmModule } from "./wasm-api.ts";
export { Wasm } from "./wasm-api.ts";
export { encodePairs, decodePairs } from "./pairs.ts";
export {
  WasmHostError, UnimplementedImportError, ProcExitError, VmFailedError, ModuleLoadError, UnmodelledPropertyError,
} from "./errors.ts";
export * as abi from "./abi.ts";
