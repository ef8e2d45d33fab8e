// Compatibility shim: @solo-io/proxy-runtime 0.1.8 imports proc_exit from AssemblyScript 0.17's
// "bindings/wasi_unstable", which 0.27 no longer ships. Envoy provides the WASI preview1 proc_exit.

// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "proc_exit")
export declare function proc_exit(rval: u32): void;
