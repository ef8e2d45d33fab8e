// Entry point of the filter (build/release.wasm, build/debug.wasm): the proxy-wasm exports.
export * from "./filter/exports";
