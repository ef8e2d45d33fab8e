// The VM's only window on a request. The filter (phase 2) implements it on top of the engine's RequestView and
// the body decoders in this folder; the tests implement it on fixed data. Every method writes its answer into
// the CelSlot it is given and must not allocate per call.

import { CelSlot } from "./value";

export abstract class CelActivation {
  /**
   * Scalar variable `id` (a VK_SCALAR variable: source.id, request.method, connection.mtls, ...): a string,
   * bool, int, uint or double, out.setAbsent() when the request does not carry it (the VM reports
   * E_NO_SUCH_ATTRIBUTE), or out.setError(...) with a reason of its own.
   */
  abstract variable(id: i32, out: CelSlot): void;

  /**
   * Entry `key` (UTF-8 bytes at keyPtr) of map variable `id` (source.attributes, request.headers,
   * request.query): a string, or out.setAbsent() when there is no such key. A map that does not exist for
   * this request (no peer identity) answers with out.setError(E_NO_SUCH_ATTRIBUTE, ...).
   */
  abstract mapEntry(id: i32, keyPtr: usize, keyLen: i32, out: CelSlot): void;

  /** Number of entries of map variable `id`, or -1 when the map does not exist for this request. */
  abstract mapSize(id: i32): i32;

  /**
   * The value at dyn path `path` (CelProgramSet.dyn): a scalar, or out.setContainer(T_OBJECT|T_ARRAY, path,
   * size); out.setMissing(i) when segment i could not be applied although its parent resolved;
   * out.setAbsent() when the document itself does not exist (no JWT); an E_BODY error when it cannot be read.
   * DynResults.read implements exactly this.
   */
  abstract dynPath(path: i32, out: CelSlot): void;

  /** Members collected for a dyn path flagged `members`: array elements, or object keys. -1 when not collected. */
  abstract dynMemberCount(path: i32): i32;
  abstract dynMember(path: i32, index: i32, out: CelSlot): void;

  /**
   * Proto field path `path` (CelProgramSet.proto) of the request's gRPC message: the field's value (its
   * default when absent) with out.present set as has() should answer, or an error (E_BODY for a message that
   * cannot be decoded, E_NO_SUCH_ATTRIBUTE when the request is not the path's gRPC method).
   * ProtoResults.read implements exactly this.
   */
  abstract protoField(path: i32, out: CelSlot): void;
}
