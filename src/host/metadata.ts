// Envoy's dynamic metadata as proxy_get_property("metadata") answers it: SerializeToString of the stream's
// envoy.config.core.v3.Metadata. jwt_authn (`payload_in_metadata: <key>`) puts a verified token's payload there as
// filter_metadata["envoy.filters.http.jwt_authn"] = Struct { <key>: Value { struct_value } }; our configs use the
// key `jwt_payload`; istiod's RequestAuthentication uses `payload` (1.21+) or, before 1.21, the token's issuer.
//
// Verified against Envoy 1.40 (a probe module reading the property next to jwt_authn, token minted with jose):
// without a token the property is present and empty (0 bytes); with one, a Metadata message whose payload Struct
// holds every claim, lists and nulls included (deeper paths such as ...\0jwt_payload fail with
// SerializationFailure as soon as the payload holds a list or a null, which is why the filter reads `metadata`).

export const JWT_AUTHN_NAMESPACE = "envoy.filters.http.jwt_authn";
export const JWT_PAYLOAD_KEY = "jwt_payload";

class PbWriter {
  private parts: number[] = [];
  tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }
  varint(v: number): void {
    let x = v;
    while (x >= 0x80) {
      this.parts.push((x & 0x7f) | 0x80);
      x = Math.floor(x / 128);
    }
    this.parts.push(x);
  }
  bytes(field: number, b: Uint8Array): void {
    this.tag(field, 2);
    this.varint(b.length);
    for (const x of b) this.parts.push(x);
  }
  double(field: number, v: number): void {
    this.tag(field, 1);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, true);
    for (const x of b) this.parts.push(x);
  }
  done(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

const utf8 = new TextEncoder();

/** google.protobuf.Value of a JSON value. */
function valueBytes(v: unknown, where: string): Uint8Array {
  const w = new PbWriter();
  if (v === null) {
    w.tag(1, 0);
    w.varint(0); // NULL_VALUE
  } else if (typeof v === "number") {
    w.double(2, v);
  } else if (typeof v === "string") {
    w.bytes(3, utf8.encode(v));
  } else if (typeof v === "boolean") {
    w.tag(4, 0);
    w.varint(v ? 1 : 0);
  } else if (Array.isArray(v)) {
    const list = new PbWriter();
    v.forEach((x, i) => list.bytes(1, valueBytes(x, `${where}[${i}]`)));
    w.bytes(6, list.done());
  } else if (typeof v === "object") {
    w.bytes(5, structBytes(v as Record<string, unknown>, where));
  } else {
    throw new TypeError(`${where}: ${typeof v} is not a JSON value`);
  }
  return w.done();
}

/** google.protobuf.Struct of a JSON object (map entries in insertion order). */
export function structBytes(o: Record<string, unknown>, where = "jwtPayload"): Uint8Array {
  const w = new PbWriter();
  for (const [k, v] of Object.entries(o)) {
    const entry = new PbWriter();
    entry.bytes(1, utf8.encode(k));
    entry.bytes(2, valueBytes(v, `${where}.${k}`));
    w.bytes(1, entry.done());
  }
  return w.done();
}

/**
 * The `metadata` property of a stream whose jwt_authn left `fields` in its namespace (a verified token's payload is
 * `{ <payload_in_metadata>: payload }`, e.g. `{ jwt_payload: {...} }`); empty bytes without any (what Envoy answers
 * when no filter wrote dynamic metadata).
 */
export function dynamicMetadataBytes(fields: Record<string, unknown> | undefined): Uint8Array {
  if (fields === undefined) return new Uint8Array(0);
  const entry = new PbWriter();
  entry.bytes(1, utf8.encode(JWT_AUTHN_NAMESPACE));
  entry.bytes(2, structBytes(fields, JWT_AUTHN_NAMESPACE));
  const meta = new PbWriter();
  meta.bytes(1, entry.done());
  return meta.done();
}
