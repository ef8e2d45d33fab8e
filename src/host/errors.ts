// Errors raised by the host. Any of them thrown while the module runs ends the VM (see ProxyWasmHost.failure).

/** Base class of every error the host raises on purpose. */
export class WasmHostError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WasmHostError";
  }
}

/**
 * The module called an import this host does not implement. Envoy would not even link such a module; the host
 * links it (so tests can exercise the rest) and fails loudly on the first call instead.
 */
export class UnimplementedImportError extends WasmHostError {
  constructor(readonly importName: string) {
    super(`module called "${importName}", which this host does not implement`);
    this.name = "UnimplementedImportError";
  }
}

/** The module called WASI `proc_exit`: the VM is dead (AssemblyScript's abort ends up here). */
export class ProcExitError extends WasmHostError {
  constructor(readonly exitCode: number) {
    super(`module called proc_exit(${exitCode}): the vm is dead`);
    this.name = "ProcExitError";
  }
}

/** A property the module asked for is one Envoy has but this host does not model. */
export class UnmodelledPropertyError extends WasmHostError {
  constructor(readonly path: string) {
    super(`property "${path}" exists in envoy but is not modelled by this host`);
    this.name = "UnmodelledPropertyError";
  }
}

/** A call into a VM that has already failed (trapped, exited or hit a host error). */
export class VmFailedError extends WasmHostError {
  constructor(readonly reason: string) {
    super(`the wasm vm has failed: ${reason}`);
    this.name = "VmFailedError";
  }
}

/** The module cannot be loaded the way Envoy loads it (missing ABI version export, missing allocator...). */
export class ModuleLoadError extends WasmHostError {
  constructor(message: string) {
    super(message);
    this.name = "ModuleLoadError";
  }
}
