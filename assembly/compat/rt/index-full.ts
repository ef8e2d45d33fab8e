// Compatibility shim: @solo-io/proxy-runtime 0.1.8 targets AssemblyScript 0.17, whose reference-counting
// runtime exported __retain/__release from "rt/index-full". AssemblyScript 0.27 has a tracing GC where
// pinning an object keeps it alive, so retain maps to __pin and release to __unpin.

/** Keeps a managed object alive while the host holds its pointer (0.17's __retain). */
export function __retain(ptr: usize): usize {
  return ptr == 0 ? 0 : __pin(ptr);
}

/** Lets the GC reclaim an object pinned by __retain (0.17's __release). */
export function __release(ptr: usize): void {
  if (ptr != 0) __unpin(ptr);
}
