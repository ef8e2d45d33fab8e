// RequestView over the proxy-wasm host. Each value is fetched at most once per request and only when a rule
// asks for it; the bytes the host copies in come from our malloc (heap.alloc) and are freed when the request
// context is released. Nothing here allocates GC objects per request.

import { bytesEqualFold, Slice } from "../engine/bytes";
import { BodyState, RequestView } from "../engine/request";
import { BUFFER_HTTP_REQUEST_BODY, staticBytes } from "./abi";
import { getBufferBytes, getProperty, getRequestHeader, getRequestHeaderPairs, hostOwned } from "./hostcalls";

const NAME_METHOD = staticBytes(":method");
const NAME_PATH = staticBytes(":path");
const NAME_AUTHORITY = staticBytes(":authority");
const NAME_CONTENT_TYPE = staticBytes("content-type");
// Property paths are NUL-separated segments.
const PROP_PORT = staticBytes("destination\0port");
const PROP_SNI = staticBytes("connection\0requested_server_name");
const PROP_MTLS = staticBytes("connection\0mtls");
const PROP_URI_SAN = staticBytes("connection\0uri_san_peer_certificate");
// The whole dynamic metadata as an envoy.config.core.v3.Metadata message: the one form in which Envoy 1.40
// serialises a jwt_authn payload holding lists (see assembly/engine/jwt.ts).
const PROP_METADATA = staticBytes("metadata");
// What Envoy RBAC's `authenticated.principal_name` compares (first URI SAN, first DNS SAN, subject): Envoy 1.40's
// CEL attributes expose only the first SAN of each kind (filters/common/expr/context.cc SslExtractorsValues).
const PROP_DNS_SAN = staticBytes("connection\0dns_san_peer_certificate");
const PROP_SUBJECT = staticBytes("connection\0subject_peer_certificate");
// `source.address` is the downstream remote address after x-forwarded-for handling (what RBAC's remote_ip sees);
// `destination.address` the local address (RBAC's destination_ip). Envoy 1.40 has no attribute for the direct peer
// address (RBAC's direct_remote_ip).
const PROP_SOURCE_ADDRESS = staticBytes("source\0address");
const PROP_DESTINATION_ADDRESS = staticBytes("destination\0address");

// Cached single values.
const SLOT_METHOD = 0;
const SLOT_PATH = 1;
const SLOT_AUTHORITY = 2;
const SLOT_PORT = 3;
const SLOT_SNI = 4;
const SLOT_CONTENT_TYPE = 5;
const SLOT_MTLS = 6;
const SLOT_METADATA = 7;
const SLOT_URI_SAN = 8;
const SLOT_DNS_SAN = 9;
const SLOT_SUBJECT = 10;
const SLOT_SOURCE_ADDRESS = 11;
const SLOT_DESTINATION_ADDRESS = 12;
const SLOTS = 13;

const UNFETCHED: u8 = 0;
const ABSENT: u8 = 1;
const PRESENT: u8 = 2;

export class HostRequestView extends RequestView {
  private state: StaticArray<u8> = new StaticArray<u8>(SLOTS);
  private ptrs: StaticArray<usize> = new StaticArray<usize>(SLOTS);
  private lens: StaticArray<i32> = new StaticArray<i32>(SLOTS);
  /** The port as decimal text (the host gives an 8-byte little-endian integer). Owned for the view's life. */
  private portText: usize = heap.alloc(24);
  /** All request headers as the host serializes them (proxy_get_header_map_pairs), fetched on first need. */
  private pairsState: u8 = UNFETCHED;
  private pairs: Slice = new Slice();
  /** Host-filled buffers to free at release. Grows only when a request needs more than ever before. */
  private owned: StaticArray<usize> = new StaticArray<usize>(16);
  private ownedCount: i32 = 0;
  private scratch: Slice = new Slice();

  /** Frees what this request owned and forgets every cached value. */
  release(): void {
    for (let i = 0; i < this.ownedCount; i++) heap.free(unchecked(this.owned[i]));
    this.ownedCount = 0;
    this.setBody(BodyState.ABSENT, 0, 0);
    for (let i = 0; i < SLOTS; i++) unchecked((this.state[i] = UNFETCHED));
    this.pairsState = UNFETCHED;
    this.pairs.clear();
  }

  /** The buffered request body, copied into memory this request owns (freed at release). */
  readBufferedBody(max: u32, out: Slice): bool {
    const ok = getBufferBytes(BUFFER_HTTP_REQUEST_BODY, 0, max, out);
    this.adoptHostMemory();
    if (!ok) out.clear();
    return ok;
  }

  /** Takes ownership of the memory the last host call filled, if any (freed at release). */
  adoptHostMemory(): void {
    const p = hostOwned;
    if (p == 0) return;
    if (this.ownedCount == this.owned.length) {
      const bigger = new StaticArray<usize>(this.owned.length << 1);
      for (let i = 0; i < this.ownedCount; i++) unchecked((bigger[i] = this.owned[i]));
      this.owned = bigger;
    }
    unchecked((this.owned[this.ownedCount++] = p));
  }

  /** Caches the outcome of a host read in `slot` (adopting its memory) and mirrors it into `out`. */
  private keep(ok: bool, slot: i32, out: Slice): bool {
    this.adoptHostMemory();
    unchecked((this.state[slot] = ok ? PRESENT : ABSENT));
    unchecked((this.ptrs[slot] = out.ptr));
    unchecked((this.lens[slot] = out.len));
    if (!ok) out.clear();
    return ok;
  }

  // @ts-ignore: decorator
  @inline private cached(slot: i32, out: Slice): i32 {
    const s = unchecked(this.state[slot]);
    if (s == PRESENT) out.set(unchecked(this.ptrs[slot]), unchecked(this.lens[slot]));
    else out.clear();
    return <i32>s;
  }

  private propertySlot(slot: i32, path: ArrayBuffer, out: Slice): bool {
    const s = this.cached(slot, out);
    if (s != UNFETCHED) return s == PRESENT;
    return this.keep(getProperty(path, out), slot, out);
  }

  /** `connection.mtls` (a 1-byte bool property). */
  mtls(): i32 {
    const tmp = this.scratch;
    if (!this.propertySlot(SLOT_MTLS, PROP_MTLS, tmp) || tmp.len != 1) return -1;
    return load<u8>(tmp.ptr) != 0 ? 1 : 0;
  }

  /** `connection.uri_san_peer_certificate`: Envoy 1.40 gives the certificate's first URI SAN only. */
  uriSan(out: Slice): bool {
    return this.propertySlot(SLOT_URI_SAN, PROP_URI_SAN, out) && out.len > 0;
  }

  /** The `metadata` property (the serialised Metadata message), read once; false when absent or empty. */
  dynamicMetadata(out: Slice): bool {
    return this.propertySlot(SLOT_METADATA, PROP_METADATA, out) && out.len > 0;
  }

  // The pseudo-headers come from the one pair list (proxy_get_header_map_pairs) rather than one
  // proxy_get_header_map_value each: in Envoy 1.40 every host call that returns bytes also calls back into the VM
  // (proxy_on_memory_allocate), and a table that reads :method and :path paid two round trips per request
  // (bench/ --diagnose: about 5 µs of Envoy CPU for the two reads). Envoy serializes the pseudo-headers first, so
  // the scan is short. Each value is still looked up once per request (the slot caches it).
  private pairsSlot(slot: i32, name: ArrayBuffer, out: Slice): bool {
    const s = this.cached(slot, out);
    if (s != UNFETCHED) return s == PRESENT;
    const present = this.findHeader(changetype<usize>(name), name.byteLength, 0, out) > 0;
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

  /** `content-type` (first value). */
  contentType(out: Slice): bool {
    const s = this.cached(SLOT_CONTENT_TYPE, out);
    if (s != UNFETCHED) return s == PRESENT;
    return this.keep(getRequestHeader(NAME_CONTENT_TYPE, out), SLOT_CONTENT_TYPE, out);
  }

  sni(out: Slice): bool {
    return this.propertySlot(SLOT_SNI, PROP_SNI, out);
  }

  peerName(which: i32, out: Slice): bool {
    if (which == 0) return this.propertySlot(SLOT_URI_SAN, PROP_URI_SAN, out);
    if (which == 1) return this.propertySlot(SLOT_DNS_SAN, PROP_DNS_SAN, out);
    if (which == 2) return this.propertySlot(SLOT_SUBJECT, PROP_SUBJECT, out);
    out.clear();
    return false;
  }

  remoteAddress(out: Slice): bool {
    return this.propertySlot(SLOT_SOURCE_ADDRESS, PROP_SOURCE_ADDRESS, out);
  }

  localAddress(out: Slice): bool {
    return this.propertySlot(SLOT_DESTINATION_ADDRESS, PROP_DESTINATION_ADDRESS, out);
  }

  port(out: Slice): bool {
    const s = this.cached(SLOT_PORT, out);
    if (s != UNFETCHED) return s == PRESENT;
    const raw = this.scratch;
    // Envoy serializes integer properties as 8 bytes, little-endian.
    if (!this.keep(getProperty(PROP_PORT, raw), SLOT_PORT, raw) || raw.len != 8) {
      unchecked((this.state[SLOT_PORT] = ABSENT));
      out.clear();
      return false;
    }
    let v = load<u64>(raw.ptr);
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
    unchecked((this.ptrs[SLOT_PORT] = buf));
    unchecked((this.lens[SLOT_PORT] = digits));
    out.set(buf, digits);
    return true;
  }

  /**
   * Value `index` of a request header (lower-case name), read from the full pair list: proxy_get_header_map_value
   * returns only the first of repeated headers (Envoy 1.40 context.cc leaves a TODO on exactly that). The pairs
   * are fetched once per request; each lookup scans them (Envoy keeps the list short), so nothing is cached by
   * the name's address, which CEL reuses for the names it computes.
   */
  headerValue(namePtr: usize, nameLen: i32, index: i32, out: Slice): bool {
    return this.findHeader(namePtr, nameLen, index, out) > index;
  }

  /** Distinct header names, pseudo-headers included (CEL `size(request.headers)`). */
  headerCount(): i32 {
    const tmp = this.scratch;
    this.findHeader(0, 0, 0, tmp); // fetches the pairs
    if (this.pairsState != PRESENT) return 0;
    const base = this.pairs.ptr;
    const size = <u64>this.pairs.len;
    const count = load<u32>(base);
    if (<u64>4 + <u64>count * 8 > size) return 0;
    // Names are lower-case already (Envoy's header map); repeated names are counted once.
    let distinct = 0;
    let d: u64 = <u64>4 + <u64>count * 8;
    for (let i: u32 = 0; i < count; i++) {
      const kl = load<u32>(base + 4 + <usize>(i * 8));
      const vl = load<u32>(base + 8 + <usize>(i * 8));
      if (d + <u64>kl + <u64>vl + 2 > size) return distinct;
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

  /**
   * Scans the pairs for `name`: sets `out` to value number `index` when there is one, and returns how many values
   * the name has.
   */
  private findHeader(namePtr: usize, nameLen: i32, index: i32, out: Slice): i32 {
    if (this.pairsState == UNFETCHED) {
      const ok = getRequestHeaderPairs(this.pairs);
      this.adoptHostMemory();
      this.pairsState = ok && this.pairs.len >= 4 ? PRESENT : ABSENT;
    }
    out.clear();
    if (this.pairsState != PRESENT) return 0;
    // Serialized pairs: u32 count, count x (u32 keyLen, u32 valueLen), then each key and value NUL-terminated.
    const base = this.pairs.ptr;
    const size = <u64>this.pairs.len;
    const count = load<u32>(base);
    if (<u64>4 + <u64>count * 8 > size) return 0;
    let matches = 0;
    let d = <u64>4 + <u64>count * 8;
    for (let i: u32 = 0; i < count; i++) {
      const kl = load<u32>(base + 4 + <usize>(i * 8));
      const vl = load<u32>(base + 8 + <usize>(i * 8));
      if (d + <u64>kl + <u64>vl + 2 > size) break;
      const kp = base + <usize>d;
      if (bytesEqualFold(kp, <i32>kl, namePtr, nameLen)) {
        if (matches == index) out.set(kp + <usize>kl + 1, <i32>vl);
        matches++;
      }
      d += <u64>kl + <u64>vl + 2;
    }
    return matches;
  }
}
