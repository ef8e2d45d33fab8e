// RequestView over the proxy-wasm host. Each value is fetched at most once per request and only when a rule
// asks for it; the bytes the host copies in come from our malloc (heap.alloc) and are freed when the request
// context is released. Nothing here allocates GC objects per request.

import { bytesEqualFold, Slice } from "../engine/bytes";
import { BodyState, RequestView } from "../engine/request";
import {
  HEADER_MAP_REQUEST, inMemory, proxy_get_header_map_pairs, proxy_get_header_map_value, proxy_get_property, RET,
  staticBytes, WasmResult,
} from "./abi";

const NAME_METHOD = staticBytes(":method");
const NAME_PATH = staticBytes(":path");
const NAME_AUTHORITY = staticBytes(":authority");
const NAME_CONTENT_TYPE = staticBytes("content-type");
// Property paths are NUL-separated segments.
const PROP_PORT = staticBytes("destination\0port");
const PROP_SNI = staticBytes("connection\0requested_server_name");
const PROP_MTLS = staticBytes("connection\0mtls");
// The whole dynamic metadata as an envoy.config.core.v3.Metadata message: the one form in which Envoy 1.40
// serialises a jwt_authn payload holding lists (see assembly/engine/jwt.ts).
const PROP_METADATA = staticBytes("metadata");

// Cached single values.
const SLOT_METHOD = 0;
const SLOT_PATH = 1;
const SLOT_AUTHORITY = 2;
const SLOT_PORT = 3;
const SLOT_SNI = 4;
const SLOT_CONTENT_TYPE = 5;
const SLOT_MTLS = 6;
const SLOT_METADATA = 7;
const SLOTS = 8;

const UNFETCHED: u8 = 0;
const ABSENT: u8 = 1;
const PRESENT: u8 = 2;

/** Header lookups remembered per request; more distinct names than this are re-read from the pairs. */
const HEADER_CACHE = 8;

export class HostRequestView extends RequestView {
  private state: StaticArray<u8> = new StaticArray<u8>(SLOTS);
  private ptrs: StaticArray<usize> = new StaticArray<usize>(SLOTS);
  private lens: StaticArray<i32> = new StaticArray<i32>(SLOTS);
  /** The port as decimal text (the host gives an 8-byte little-endian integer). Owned for the view's life. */
  private portText: usize = heap.alloc(24);
  /** All request headers as the host serializes them (proxy_get_header_map_pairs), fetched on first need. */
  private pairsState: u8 = UNFETCHED;
  private pairsPtr: usize = 0;
  private pairsLen: i32 = 0;
  private cacheCount: i32 = 0;
  private cacheName: StaticArray<usize> = new StaticArray<usize>(HEADER_CACHE);
  private cacheNameLen: StaticArray<i32> = new StaticArray<i32>(HEADER_CACHE);
  private cachePresent: StaticArray<bool> = new StaticArray<bool>(HEADER_CACHE);
  private cachePtr: StaticArray<usize> = new StaticArray<usize>(HEADER_CACHE);
  private cacheLen: StaticArray<i32> = new StaticArray<i32>(HEADER_CACHE);
  /** Host-filled or joined buffers to free at release. Grows only when a request needs more than ever before. */
  private owned: StaticArray<usize> = new StaticArray<usize>(16);
  private ownedCount: i32 = 0;
  /** The request body as the filter last set it (see setBody). */
  private bodyState: BodyState = BodyState.ABSENT;
  private bodyPtr: usize = 0;
  private bodyLen: i32 = 0;

  /** Frees what this request owned and forgets every cached value. */
  release(): void {
    for (let i = 0; i < this.ownedCount; i++) heap.free(unchecked(this.owned[i]));
    this.ownedCount = 0;
    this.bodyState = BodyState.ABSENT;
    this.bodyPtr = 0;
    this.bodyLen = 0;
    for (let i = 0; i < SLOTS; i++) unchecked((this.state[i] = UNFETCHED));
    this.pairsState = UNFETCHED;
    this.pairsPtr = 0;
    this.pairsLen = 0;
    this.cacheCount = 0;
  }

  /** What body() answers from now on. `ptr` (host-filled memory) is freed at release. */
  setBody(state: BodyState, ptr: usize, len: i32): void {
    this.bodyState = state;
    this.bodyPtr = ptr;
    this.bodyLen = len;
  }

  /** Takes ownership of host-filled memory (freed at release). */
  adopt(p: usize): void {
    this.own(p);
  }

  body(out: Slice): BodyState {
    if (this.bodyState == BodyState.PRESENT) out.set(this.bodyPtr, this.bodyLen);
    else out.clear();
    return this.bodyState;
  }

  /** `connection.mtls` (a 1-byte bool property). */
  mtls(): i32 {
    const s = unchecked(this.state[SLOT_MTLS]);
    if (s == UNFETCHED) {
      const rc = proxy_get_property(changetype<usize>(PROP_MTLS), <usize>PROP_MTLS.byteLength, RET, RET + 4);
      const tmp = this.scratch;
      if (!this.fetch(rc == WasmResult.OK, SLOT_MTLS, tmp) || tmp.len != 1) {
        unchecked((this.state[SLOT_MTLS] = ABSENT));
        return -1;
      }
    } else if (s == ABSENT) {
      return -1;
    }
    return load<u8>(unchecked(this.ptrs[SLOT_MTLS])) != 0 ? 1 : 0;
  }

  /** The `metadata` property (the serialised Metadata message), read once; false when absent or empty. */
  dynamicMetadata(out: Slice): bool {
    const s = this.cached(SLOT_METADATA, out);
    if (s != UNFETCHED) return s == PRESENT && out.len > 0;
    const rc = proxy_get_property(changetype<usize>(PROP_METADATA), <usize>PROP_METADATA.byteLength, RET, RET + 4);
    return this.fetch(rc == WasmResult.OK, SLOT_METADATA, out) && out.len > 0;
  }

  private scratch: Slice = new Slice();

  private own(p: usize): void {
    if (p == 0) return;
    if (this.ownedCount == this.owned.length) {
      const bigger = new StaticArray<usize>(this.owned.length << 1);
      for (let i = 0; i < this.ownedCount; i++) unchecked((bigger[i] = this.owned[i]));
      this.owned = bigger;
    }
    unchecked((this.owned[this.ownedCount++] = p));
  }

  /** Reads a host value into `out`: true when the call succeeded (the value may be empty). */
  private fetch(ok: bool, slot: i32, out: Slice): bool {
    if (!ok) {
      unchecked((this.state[slot] = ABSENT));
      return false;
    }
    const p = <usize>load<u32>(RET);
    const n = <i32>load<u32>(RET, 4);
    // The host copies values into memory from our malloc (none for an empty value); free it at release.
    if (p != 0 && inMemory(p, 1)) this.own(p);
    if (n > 0 && !inMemory(p, <usize>n)) {
      unchecked((this.state[slot] = ABSENT));
      return false;
    }
    unchecked((this.state[slot] = PRESENT));
    unchecked((this.ptrs[slot] = n > 0 ? p : 0));
    unchecked((this.lens[slot] = n > 0 ? n : 0));
    out.set(unchecked(this.ptrs[slot]), unchecked(this.lens[slot]));
    return true;
  }

  // @ts-ignore: decorator
  @inline private cached(slot: i32, out: Slice): i32 {
    const s = unchecked(this.state[slot]);
    if (s == PRESENT) out.set(unchecked(this.ptrs[slot]), unchecked(this.lens[slot]));
    return <i32>s;
  }

  private headerSlot(slot: i32, name: ArrayBuffer, out: Slice): bool {
    const s = this.cached(slot, out);
    if (s != UNFETCHED) return s == PRESENT;
    const rc = proxy_get_header_map_value(HEADER_MAP_REQUEST, changetype<usize>(name), <usize>name.byteLength, RET, RET + 4);
    return this.fetch(rc == WasmResult.OK, slot, out);
  }

  private propertySlot(slot: i32, path: ArrayBuffer, out: Slice): bool {
    const s = this.cached(slot, out);
    if (s != UNFETCHED) return s == PRESENT;
    const rc = proxy_get_property(changetype<usize>(path), <usize>path.byteLength, RET, RET + 4);
    return this.fetch(rc == WasmResult.OK, slot, out);
  }

  // The pseudo-headers come from the one pair list (proxy_get_header_map_pairs) rather than one
  // proxy_get_header_map_value each: in Envoy 1.40 every host call that returns bytes also calls back into the VM
  // (proxy_on_memory_allocate), and a table that reads :method and :path paid two round trips per request
  // (bench/ --diagnose: about 5 µs of Envoy CPU for the two reads). Envoy serializes the pseudo-headers first, so
  // the scan is short. Each value is still looked up once per request (the slot caches it).
  private pairsSlot(slot: i32, name: ArrayBuffer, out: Slice): bool {
    const s = this.cached(slot, out);
    if (s != UNFETCHED) return s == PRESENT;
    const present = this.findHeader(changetype<usize>(name), name.byteLength, out);
    unchecked((this.state[slot] = present ? PRESENT : ABSENT));
    unchecked((this.ptrs[slot] = out.ptr));
    unchecked((this.lens[slot] = out.len));
    return present;
  }

  method(out: Slice): bool {
    return this.pairsSlot(SLOT_METHOD, NAME_METHOD, out);
  }

  path(out: Slice): bool {
    return this.pairsSlot(SLOT_PATH, NAME_PATH, out);
  }

  host(out: Slice): bool {
    return this.pairsSlot(SLOT_AUTHORITY, NAME_AUTHORITY, out);
  }

  /** `content-type` (first value): read on the deny path only, to choose a gRPC reply. */
  contentType(out: Slice): bool {
    return this.headerSlot(SLOT_CONTENT_TYPE, NAME_CONTENT_TYPE, out);
  }

  sni(out: Slice): bool {
    return this.propertySlot(SLOT_SNI, PROP_SNI, out);
  }

  port(out: Slice): bool {
    const s = this.cached(SLOT_PORT, out);
    if (s != UNFETCHED) return s == PRESENT;
    const rc = proxy_get_property(changetype<usize>(PROP_PORT), <usize>PROP_PORT.byteLength, RET, RET + 4);
    if (rc != WasmResult.OK) {
      unchecked((this.state[SLOT_PORT] = ABSENT));
      return false;
    }
    const p = <usize>load<u32>(RET);
    const n = <i32>load<u32>(RET, 4);
    if (p != 0 && inMemory(p, 1)) this.own(p);
    // Envoy serializes integer properties as 8 bytes, little-endian.
    if (n != 8 || !inMemory(p, 8)) {
      unchecked((this.state[SLOT_PORT] = ABSENT));
      return false;
    }
    let v = load<u64>(p);
    const buf = this.portText;
    let digits = 0;
    let t = v;
    do {
      digits++;
      t /= 10;
    } while (t != 0);
    for (let i = digits - 1; i >= 0; i--) {
      store<u8>(buf + <usize>i, <u8>(48 + <u32>(v % 10)));
      v /= 10;
    }
    unchecked((this.state[SLOT_PORT] = PRESENT));
    unchecked((this.ptrs[SLOT_PORT] = buf));
    unchecked((this.lens[SLOT_PORT] = digits));
    out.set(buf, digits);
    return true;
  }

  /**
   * A request header by lower-case name. proxy_get_header_map_value returns only the first of repeated headers
   * (Envoy context.cc leaves a TODO on exactly that), so headers are read from the full pair list and repeated
   * values joined with "," as Envoy's own matchers see them.
   */
  header(namePtr: usize, nameLen: i32, out: Slice): bool {
    // The cache is keyed by the name's address: table strings, which live as long as the table.
    for (let i = 0; i < this.cacheCount; i++) {
      if (unchecked(this.cacheName[i]) == namePtr && unchecked(this.cacheNameLen[i]) == nameLen) {
        if (!unchecked(this.cachePresent[i])) return false;
        out.set(unchecked(this.cachePtr[i]), unchecked(this.cacheLen[i]));
        return true;
      }
    }
    const present = this.findHeader(namePtr, nameLen, out);
    if (this.cacheCount < HEADER_CACHE) {
      const i = this.cacheCount++;
      unchecked((this.cacheName[i] = namePtr));
      unchecked((this.cacheNameLen[i] = nameLen));
      unchecked((this.cachePresent[i] = present));
      unchecked((this.cachePtr[i] = out.ptr));
      unchecked((this.cacheLen[i] = out.len));
    }
    return present;
  }

  /** A header by a name the VM computed (its memory is reused): read from the pairs, never cached by address. */
  headerByValue(namePtr: usize, nameLen: i32, out: Slice): bool {
    return this.findHeader(namePtr, nameLen, out);
  }

  /** Distinct header names, pseudo-headers included (CEL `size(request.headers)`). */
  headerCount(): i32 {
    const tmp = this.scratch;
    this.findHeader(0, 0, tmp); // fetches the pairs
    if (this.pairsState != PRESENT) return 0;
    const base = this.pairsPtr;
    const count = load<u32>(base);
    if (<u64>4 + <u64>count * 8 > <u64>this.pairsLen) return 0;
    // Names are lower-case already (Envoy's header map); repeated names are counted once.
    let distinct = 0;
    let d: u64 = <u64>4 + <u64>count * 8;
    for (let i: u32 = 0; i < count; i++) {
      const kl = load<u32>(base + 4 + <usize>(i * 8));
      const vl = load<u32>(base + 8 + <usize>(i * 8));
      if (d + <u64>kl + <u64>vl + 2 > <u64>this.pairsLen) return distinct;
      const kp = base + <usize>d;
      let seen = false;
      let e: u64 = <u64>4 + <u64>count * 8;
      for (let j: u32 = 0; j < i && !seen; j++) {
        const jl = load<u32>(base + 4 + <usize>(j * 8));
        const jv = load<u32>(base + 8 + <usize>(j * 8));
        if (bytesEqualFold(base + <usize>e, <i32>jl, kp, <i32>kl)) seen = true;
        e += <u64>jl + <u64>jv + 2;
      }
      if (!seen) distinct++;
      d += <u64>kl + <u64>vl + 2;
    }
    return distinct;
  }

  private findHeader(namePtr: usize, nameLen: i32, out: Slice): bool {
    if (this.pairsState == UNFETCHED) {
      this.pairsState = ABSENT;
      const rc = proxy_get_header_map_pairs(HEADER_MAP_REQUEST, RET, RET + 4);
      if (rc == WasmResult.OK) {
        const p = <usize>load<u32>(RET);
        const n = <i32>load<u32>(RET, 4);
        if (p != 0 && inMemory(p, 1)) this.own(p);
        if (n >= 4 && inMemory(p, <usize>n)) {
          this.pairsPtr = p;
          this.pairsLen = n;
          this.pairsState = PRESENT;
        }
      }
    }
    out.clear();
    if (this.pairsState != PRESENT) return false;
    // Serialized pairs: u32 count, count x (u32 keyLen, u32 valueLen), then each key and value NUL-terminated.
    const base = this.pairsPtr;
    const size = <u64>this.pairsLen;
    const count = load<u32>(base);
    if (<u64>4 + <u64>count * 8 > size) return false;
    let matches = 0;
    let total = 0;
    let firstPtr: usize = 0;
    let firstLen = 0;
    let d = <u64>4 + <u64>count * 8;
    for (let i: u32 = 0; i < count; i++) {
      const kl = load<u32>(base + 4 + <usize>(i * 8));
      const vl = load<u32>(base + 8 + <usize>(i * 8));
      if (d + <u64>kl + <u64>vl + 2 > size) return false;
      const kp = base + <usize>d;
      const vp = kp + <usize>kl + 1;
      if (bytesEqualFold(kp, <i32>kl, namePtr, nameLen)) {
        if (matches == 0) {
          firstPtr = vp;
          firstLen = <i32>vl;
        }
        matches++;
        total += <i32>vl;
      }
      d += <u64>kl + <u64>vl + 2;
    }
    if (matches == 0) return false;
    if (matches == 1) {
      out.set(firstPtr, firstLen);
      return true;
    }
    // Repeated header: join the values with "," into a buffer freed at release.
    const joined = heap.alloc(<usize>(total + matches - 1));
    this.own(joined);
    let o: usize = 0;
    d = <u64>4 + <u64>count * 8;
    let seen = 0;
    for (let i: u32 = 0; i < count; i++) {
      const kl = load<u32>(base + 4 + <usize>(i * 8));
      const vl = load<u32>(base + 8 + <usize>(i * 8));
      const kp = base + <usize>d;
      if (bytesEqualFold(kp, <i32>kl, namePtr, nameLen)) {
        if (seen > 0) store<u8>(joined + o++, 44);
        memory.copy(joined + o, kp + <usize>kl + 1, <usize>vl);
        o += <usize>vl;
        seen++;
      }
      d += <u64>kl + <u64>vl + 2;
    }
    out.set(joined, <i32>o);
    return true;
  }
}
