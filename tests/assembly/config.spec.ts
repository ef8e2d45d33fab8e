import { ConfigResult, loadConfiguration } from "../../assembly/engine/config";
import { bytesOf, rule, TableB, ALLOW } from "./helpers";

function err(cfg: string): string {
  const b = bytesOf(cfg);
  return loadConfiguration(b.dataStart, b.length).error;
}

function load(cfg: string): ConfigResult {
  const b = bytesOf(cfg);
  return loadConfiguration(b.dataStart, b.length);
}

/** The headers mode of a configuration that loads ("" when it does not). */
function mode(cfg: string): string {
  const b = bytesOf(cfg);
  const r = loadConfiguration(b.dataStart, b.length);
  if (r.error.length != 0) return r.error;
  return r.continueHeaders ? "continue" : "hold";
}

/** base64 of the uncompressed envelope of a one-rule table. */
function validBase64(): string {
  const t = new TableB();
  t.add(rule("r", ALLOW, []));
  const env = t.envelope();
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  let s = "";
  for (let i = 0; i < env.length; i += 3) {
    const n = env.length - i;
    const v = (<u32>env[i] << 16) | (n > 1 ? <u32>env[i + 1] << 8 : 0) | (n > 2 ? <u32>env[i + 2] : 0);
    s += alphabet.charAt((v >> 18) & 63) + alphabet.charAt((v >> 12) & 63);
    s += n > 1 ? alphabet.charAt((v >> 6) & 63) : "=";
    s += n > 2 ? alphabet.charAt(v & 63) : "=";
  }
  return s;
}

describe("loadConfiguration", () => {
  it("accepts the wrapper with whitespace and escapes", () => {
    const b64 = validBase64();
    expect(err("{\"table\":\"" + b64 + "\"}")).toBe("");
    expect(err(" \n\t{ \"table\" :\r\n \"" + b64 + "\" }\n")).toBe("");
    // "\/" is a legal JSON escape of "/", which base64 uses.
    const escaped = b64.replaceAll("/", "\\/");
    expect(err("{\"table\":\"" + escaped + "\"}")).toBe("");
    expect(err("{\"\\u0074able\":\"" + b64 + "\"}")).toBe("");
  });
  it("reports JSON problems with line and column", () => {
    expect(err("")).toBe("configuration is empty");
    expect(err("  ")).toBe("configuration:1:3: expected \"{\", found end of input");
    expect(err("[]")).toBe("configuration:1:1: expected \"{\", found \"[\"");
    expect(err("{}")).toBe("configuration:1:2: missing field \"table\"");
    expect(err("{\"tabel\":\"x\"}")).toBe("configuration:1:2: unknown field \"tabel\"");
    expect(err("{\n  \"table\": \"AAAA\",\n  \"extra\": 1\n}")).toBe("configuration:3:3: unknown field \"extra\"");
    expect(err("{\"table\":\"AAAA\",\"table\":\"AAAA\"}")).toBe("configuration:1:17: duplicate field \"table\"");
    expect(err("{\"table\":42}")).toBe("configuration:1:10: field \"table\" must be a string");
    expect(err("{\"table\":\"AAAA\"")).toBe("configuration:1:16: expected \",\" or \"}\", found end of input");
    expect(err("{\"table\" \"AAAA\"}")).toBe("configuration:1:10: expected \":\", found \"\\\"\"");
    expect(err("{\"table\":\"AAAA")).toBe("configuration:1:10: unterminated string");
    expect(err("{\"table\":\"AA\nAA\"}")).toBe("configuration:1:13: control character in a string");
    expect(err("{\"table\":\"AAAA\"} {}")).toBe("configuration:1:18: unexpected \"{\" after the configuration object");
    expect(err("{\"table\":\"\\x\"}")).toBe("configuration:1:11: invalid escape in a string");
    expect(err("{\"\u00e9\u00e9\":1}")).toBe("configuration:1:2: unknown field \"\u00e9\u00e9\"");
    expect(err("{\"a\":1,\n\"\u00e9\":1}")).toBe("configuration:1:2: unknown field \"a\"");
    expect(err("{\"x\\\"y\":1}")).toBe("configuration:1:2: unknown field \"x\\\"y\"");
    expect(err("{\"table\":\"AAAA\",}")).toBe("configuration:1:17: expected a field name, found \"}\"");
  });
  it("counts columns in characters", () => {
    expect(err("{\"table\":\"AAAA\", \"\u00e9\":1}")).toBe("configuration:1:18: unknown field \"\u00e9\"");
    expect(err("\u00e9")).toBe("configuration:1:1: expected \"{\", found byte 0xc3");
  });
  it("reads the optional headers mode, in any key order, default hold", () => {
    const b64 = validBase64();
    expect(mode("{\"table\":\"" + b64 + "\"}")).toBe("hold");
    expect(mode("{\"table\":\"" + b64 + "\",\"headers\":\"hold\"}")).toBe("hold");
    expect(mode("{\"headers\":\"continue\",\"table\":\"" + b64 + "\"}")).toBe("continue");
    expect(mode("{ \"table\" : \"" + b64 + "\" ,\n \"headers\" : \"continue\" }")).toBe("continue");
    expect(mode("{\"h\u0065aders\":\"\u0063ontinue\",\"table\":\"" + b64 + "\"}")).toBe("continue");
  });
  it("rejects a bad headers mode with line and column", () => {
    const b64 = validBase64();
    expect(err("{\"headers\":\"continue\"}")).toBe("configuration:1:1: missing field \"table\"");
    expect(err("{\"table\":\"AAAA\",\n \"headers\": \"stop\"}")).toBe("configuration:2:13: field \"headers\" must be \"hold\" or \"continue\", not \"stop\"");
    expect(err("{\"headers\":true,\"table\":\"AAAA\"}")).toBe("configuration:1:12: field \"headers\" must be \"hold\" or \"continue\"");
    expect(err("{\"headers\":\"Continue\",\"table\":\"" + b64 + "\"}")).toBe("configuration:1:12: field \"headers\" must be \"hold\" or \"continue\", not \"Continue\"");
    expect(err("{\"headers\":\"hold\",\"table\":\"AAAA\",\"headers\":\"hold\"}")).toBe("configuration:1:34: duplicate field \"headers\"");
    expect(err("{\"table\":\"AAAA\",\"header\":\"continue\"}")).toBe("configuration:1:17: unknown field \"header\"");
  });
  it("reads the xfcc and ambiguousPaths settings, default require and deny", () => {
    const b64 = validBase64();
    const plain = load("{\"table\":\"" + b64 + "\"}");
    expect(plain.error).toBe("");
    expect(plain.xfccIgnore).toBe(false);
    expect(plain.allowAmbiguousPaths).toBe(false);
    const both = load("{\"ambiguousPaths\":\"allow\",\"table\":\"" + b64 + "\",\"xfcc\":\"ignore\"}");
    expect(both.error).toBe("");
    expect(both.xfccIgnore).toBe(true);
    expect(both.allowAmbiguousPaths).toBe(true);
    expect(both.continueHeaders).toBe(false);
    const explicit = load("{\"table\":\"" + b64 + "\",\"xfcc\":\"require\",\"ambiguousPaths\":\"deny\"}");
    expect(explicit.xfccIgnore).toBe(false);
    expect(explicit.allowAmbiguousPaths).toBe(false);
    expect(err("{\"table\":\"AAAA\",\"xfcc\":\"off\"}")).toBe("configuration:1:24: field \"xfcc\" must be \"require\" or \"ignore\", not \"off\"");
    expect(err("{\"table\":\"AAAA\",\"ambiguousPaths\":true}")).toBe("configuration:1:34: field \"ambiguousPaths\" must be \"deny\" or \"allow\"");
    expect(err("{\"xfcc\":\"ignore\",\"table\":\"AAAA\",\"xfcc\":\"ignore\"}")).toBe("configuration:1:33: duplicate field \"xfcc\"");
  });
  it("passes table errors through", () => {
    expect(err("{\"table\":\"\"}")).toBe("table: envelope is 0 bytes, shorter than its 24-byte header");
    expect(err("{\"table\":\"AAA\"}")).toBe("table: base64 length 3 is not a multiple of 4");
    expect(err("{\"table\":\"AA A\"}")).toBe("table: invalid base64 character at offset 2");
  });
});
