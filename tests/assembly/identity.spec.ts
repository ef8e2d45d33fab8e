import { Refusal, resolveIdentity, XfccMode } from "../../assembly/engine/identity";
import { PeerStatus, SpiffeId } from "../../assembly/engine/spiffe";
import { TestRequest } from "./helpers";

const A = "spiffe://td/app/a";
const B = "spiffe://td/app/b";
const HASH = "Hash=339981e0fd5a400f5b180dd4573ac9c01111355cb10c934d4c631795bcaf679d";
const XFCC = "x-forwarded-client-cert";

function resolve(req: TestRequest, mode: XfccMode = XfccMode.REQUIRE): Refusal {
  const peer = new SpiffeId();
  return resolveIdentity(req, mode, peer);
}

function withCert(uri: string | null, xfcc: string | null): TestRequest {
  const r = TestRequest.of("GET", "/").withCertificate(uri);
  if (xfcc !== null) r.withHeader(XFCC, xfcc);
  return r;
}

describe("resolveIdentity", () => {
  it("takes the URI SAN that x-forwarded-client-cert confirms", () => {
    const peer = new SpiffeId();
    const req = withCert(A, "By=spiffe://td/envoy;" + HASH + ";Subject=\"CN=x,O=y\";URI=" + A);
    expect(resolveIdentity(req, XfccMode.REQUIRE, peer)).toBe(Refusal.NONE);
    expect(peer.status).toBe(PeerStatus.VALID);
    expect(peer.certificate).toBe(true);
    expect(peer.fromJwt).toBe(false);
  });
  it("refuses a certificate with several URI SANs", () => {
    expect(resolve(withCert(A, HASH + ";URI=" + A + ";URI=" + B))).toBe(Refusal.MULTIPLE_URI_SANS);
    expect(resolve(withCert(A, HASH + ";URI=" + A + ";URI=https://x.example/y"))).toBe(Refusal.MULTIPLE_URI_SANS);
    // Under "ignore" the first URI SAN is taken on trust.
    expect(resolve(withCert(A, HASH + ";URI=" + A + ";URI=" + B), XfccMode.IGNORE)).toBe(Refusal.NONE);
  });
  it("refuses a certificate when the listener sets no x-forwarded-client-cert", () => {
    expect(resolve(withCert(A, null))).toBe(Refusal.XFCC_MISSING);
    expect(resolve(withCert(A, null), XfccMode.IGNORE)).toBe(Refusal.NONE);
  });
  it("reads the element Envoy appended last (APPEND_FORWARD), whatever the client sent before it", () => {
    const client = "By=x;" + HASH + ";URI=" + B;
    expect(resolve(withCert(A, client + "," + HASH + ";URI=" + A))).toBe(Refusal.NONE);
    // A client element that claims one SAN does not hide the two Envoy lists.
    expect(resolve(withCert(A, HASH + ";URI=" + A + "," + HASH + ";URI=" + A + ";URI=" + B))).toBe(Refusal.MULTIPLE_URI_SANS);
    // Commas inside a quoted value do not split elements.
    expect(resolve(withCert(A, "Subject=\"a,b\";" + HASH + ";URI=" + B + "," + HASH + ";Subject=\"CN=a,O=b\";URI=" + A))).toBe(Refusal.NONE);
  });
  it("refuses an element it cannot read or that disagrees with the connection", () => {
    // A client's unbalanced quote would otherwise swallow Envoy's element.
    expect(resolve(withCert(A, "x=\"," + HASH + ";URI=" + A + ";URI=" + B))).toBe(Refusal.XFCC_MALFORMED);
    expect(resolve(withCert(A, HASH + ";URI=" + B))).toBe(Refusal.XFCC_MALFORMED);
    expect(resolve(withCert(A, HASH + ";URI="))).toBe(Refusal.XFCC_MALFORMED);
    expect(resolve(withCert(A, "URI=" + A))).toBe(Refusal.XFCC_MALFORMED); // no Hash: not Envoy's element
    expect(resolve(withCert(A, HASH + ";" + HASH + ";URI=" + A))).toBe(Refusal.XFCC_MALFORMED);
    expect(resolve(withCert(A, HASH + ";URI" + A))).toBe(Refusal.XFCC_MALFORMED);
    expect(resolve(withCert(A, HASH + ";URI=" + A + ","))).toBe(Refusal.XFCC_MALFORMED);
    // A second header line is not something Envoy writes.
    const twice = withCert(A, HASH + ";URI=" + A);
    twice.withHeader(XFCC, HASH + ";URI=" + A);
    expect(resolve(twice)).toBe(Refusal.XFCC_MALFORMED);
  });
  it("a certificate without a URI SAN identifies nobody", () => {
    const peer = new SpiffeId();
    expect(resolveIdentity(withCert(null, HASH + ";URI="), XfccMode.REQUIRE, peer)).toBe(Refusal.NONE);
    expect(peer.status).toBe(PeerStatus.ABSENT);
    expect(peer.certificate).toBe(true);
    // Nothing to count: it cannot satisfy an identity rule, whatever else it carries.
    expect(resolve(withCert(null, null))).toBe(Refusal.NONE);
  });
  it("an invalid first URI SAN is an invalid identity, whatever x-forwarded-client-cert says", () => {
    const peer = new SpiffeId();
    expect(resolveIdentity(withCert("spiffe://TD/x;y", null), XfccMode.REQUIRE, peer)).toBe(Refusal.NONE);
    expect(peer.status).toBe(PeerStatus.INVALID);
    expect(resolve(withCert("https://x.example/y", HASH + ";URI=https://x.example/y;URI=" + A))).toBe(Refusal.NONE);
  });
  it("without a certificate there is no identity and nothing to refuse", () => {
    const peer = new SpiffeId();
    // A client cannot claim an identity with the header: without a certificate it is not read.
    const req = TestRequest.of("GET", "/").withoutCertificate().withHeader(XFCC, HASH + ";URI=" + A);
    expect(resolveIdentity(req, XfccMode.REQUIRE, peer)).toBe(Refusal.NONE);
    expect(peer.status).toBe(PeerStatus.ABSENT);
    expect(peer.certificate).toBe(false);
  });
});
