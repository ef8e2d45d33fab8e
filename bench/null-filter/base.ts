// The exports every proxy-wasm module needs (the null filter's, and the probes' too): the per-stream hooks are
// the ones the real filter exports besides its HTTP hooks (proxy_on_context_create and proxy_on_delete; no
// proxy_on_done or proxy_on_log, which Envoy would call on every request).

export function proxy_abi_version_0_2_0(): void {}

export function proxy_on_memory_allocate(size: usize): usize {
  return heap.alloc(size);
}

export function proxy_on_vm_start(root_context_id: u32, vm_configuration_size: u32): u32 {
  return 1;
}

export function proxy_on_configure(root_context_id: u32, configuration_size: u32): u32 {
  return 1;
}

export function proxy_on_context_create(context_id: u32, root_context_id: u32): void {}

export function proxy_on_delete(context_id: u32): void {}
