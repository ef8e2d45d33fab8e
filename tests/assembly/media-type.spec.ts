// The content-type classifiers (assembly/engine/media-type.ts): which content-type and content-encoding values
// let the filter read a body as UTF-8 JSON (docs/cel.md "JSON bodies"), and which requests are gRPC.

import { Slice } from "../../assembly/engine/bytes";
import { isGrpcContentType, isGrpcRequest, isIdentityEncoding, jsonMediaType, JsonMediaType } from "../../assembly/engine/media-type";
import { TestRequest } from "./helpers";

function slice(s: string): Slice {
  const b = String.UTF8.encode(s);
  const out = new Slice();
  out.set(changetype<usize>(b), b.byteLength);
  // Keep the buffer alive for the test's duration (the runtime does not collect during a test).
  kept.push(b);
  return out;
}
const kept = new Array<ArrayBuffer>();

function cls(s: string): JsonMediaType {
  return jsonMediaType(slice(s));
}

describe("json media types", () => {
  it("reads application/json and application/<name>+json, any case, with charset=utf-8 or none", () => {
    const ok = [
      "application/json", "Application/JSON", "application/vnd.api+json", "application/merge-patch+json",
      "application/json; charset=utf-8", "application/json;charset=UTF-8", 'application/json; charset="utf-8"',
      "application/json ; charset=utf-8 ", "application/json; foo=bar; Charset=Utf-8", 'application/json; x="a,b;c"',
      "application/json; charset=utf-8; charset=UTF-8", "application/a+json",
    ];
    for (let i = 0; i < ok.length; i++) expect(cls(ok[i])).toBe(JsonMediaType.UTF8, ok[i]);
  });

  it("refuses another charset: every charset parameter must be utf-8", () => {
    const bad = [
      "application/json; charset=utf-7", 'application/json; charset="UTF-7"', "application/json; charset=utf-16le",
      "application/json; charset=utf8", "application/json; charset=latin1", "application/json; charset=utf-8; charset=utf-7",
      "application/json; charset=utf-7; charset=utf-8", "application/vnd.api+json; charset=utf-32",
    ];
    for (let i = 0; i < bad.length; i++) expect(cls(bad[i])).toBe(JsonMediaType.OTHER_CHARSET, bad[i]);
  });

  it("well-formed types that are not JSON", () => {
    const other = [
      "text/plain", "text/json", "application/x-json", "application/jsonp", "application/json5", "*/*",
      "application/+json", "application/x*+json", "application/-x+json", "multipart/form-data; boundary=x",
      "application/grpc", "application/" + "a".repeat(123) + "+json",
    ];
    for (let i = 0; i < other.length; i++) expect(cls(other[i])).toBe(JsonMediaType.NOT_JSON, other[i]);
    expect(cls("application/" + "a".repeat(122) + "+json")).toBe(JsonMediaType.UTF8, "127 characters");
  });

  it("values that are not exactly one media type are malformed", () => {
    const bad = [
      "", "json", "application/", "/json", "application/json;", "application/json;;charset=utf-8",
      "application/json; charset", "application/json; charset =utf-8", "application/json; charset= utf-8",
      'application/json; charset="utf-8', 'application/json; charset="utf\\-8"', "application/json\t;charset=utf-8",
      "application/json;\tcharset=utf-8", "application/json,application/json", "application/json; x=1,application/json; charset=utf-7",
      "application/json, text/plain", " application/json", "application/json x", 'application/json; x="\té"',
    ];
    for (let i = 0; i < bad.length; i++) expect(cls(bad[i])).toBe(JsonMediaType.MALFORMED, bad[i]);
  });
});

describe("content encodings", () => {
  it("only an absent, empty or identity coding leaves the body as sent", () => {
    expect(isIdentityEncoding(slice(""))).toBe(true);
    expect(isIdentityEncoding(slice("identity"))).toBe(true);
    expect(isIdentityEncoding(slice("IDENTITY"))).toBe(true);
    const bad = ["gzip", "deflate", "br", "zstd", "x-gzip", "identity,gzip", "gzip,identity", "identity, identity", "identit"];
    for (let i = 0; i < bad.length; i++) expect(isIdentityEncoding(slice(bad[i]))).toBe(false, bad[i]);
  });
});

describe("gRPC", () => {
  it("is application/grpc in any case, alone or followed by '+', ';', a space or a tab", () => {
    const yes = ["application/grpc", "Application/grpc", "APPLICATION/GRPC", "application/grpc+proto", "application/grpc;x=y",
      "application/grpc ", "application/grpc\t"];
    for (let i = 0; i < yes.length; i++) {
      expect(isGrpcContentType(slice(yes[i]))).toBe(true, yes[i]);
      expect(isGrpcRequest(TestRequest.of("POST", "/").withHeader("content-type", yes[i]))).toBe(true, yes[i]);
    }
    const no = ["application/grpcx", "application/grpc-web", "application/grpc-web+proto", "application/grp", "", "text/grpc",
      " application/grpc", "application/json"];
    for (let i = 0; i < no.length; i++) {
      expect(isGrpcContentType(slice(no[i]))).toBe(false, no[i]);
      expect(isGrpcRequest(TestRequest.of("POST", "/").withHeader("content-type", no[i]))).toBe(false, no[i]);
    }
    expect(isGrpcRequest(TestRequest.of("POST", "/"))).toBe(false);
  });
});
