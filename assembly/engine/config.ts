// The plugin configuration: the JSON wrapper {"table":"<base64 envelope>"} with optional settings of the
// deployment ("headers", "xfcc", "ambiguousPaths"; docs/table-format.md §1), then the envelope. JSON problems are reported as `configuration:<line>:<col>: <what>` (1-based; columns count UTF-8
// characters), so a user can find them in the string Envoy or Istio was given.

import { base64Decode } from "./base64";
import { bytesEqual } from "./bytes";
import { decodeEnvelope } from "./table/load";
import { PolicyTable } from "./table/policy-table";

export class ConfigResult {
  table: PolicyTable | null = null;
  error: string = "";
  /**
   * `"headers": "continue"`: a request whose decision waits for its body lets its headers go on (onRequestHeaders
   * answers Continue) and only the body is held. For filters that run without Envoy's
   * allow_on_headers_stop_iteration (an Istio WasmPlugin cannot set it): there Envoy 1.40 turns StopIteration from
   * onRequestHeaders into StopAllIterationAndWatermark and never delivers the body. Default false ("hold").
   */
  continueHeaders: bool = false;
  /**
   * `"xfcc": "ignore"`: take the certificate's first URI SAN on trust instead of counting the URI SANs in the
   * listener's x-forwarded-client-cert (engine/identity.ts). Default false ("require").
   */
  xfccIgnore: bool = false;
  /**
   * `"ambiguousPaths": "allow"`: let path rules decide on paths with escaped slashes or dot segments
   * (engine/path.ts). Default false ("deny").
   */
  allowAmbiguousPaths: bool = false;
}

/** A setting of the wrapper: its key and its two values, the default first. */
class Setting {
  constructor(public key: ArrayBuffer, public name: string, public first: ArrayBuffer, public second: ArrayBuffer, public values: string) {}
}

function setting(name: string, first: string, second: string): Setting {
  return new Setting(String.UTF8.encode(name, false), name, String.UTF8.encode(first, false),
    String.UTF8.encode(second, false), "field \"" + name + "\" must be \"" + first + "\" or \"" + second + "\"");
}

const SETTINGS: Setting[] = [
  setting("headers", "hold", "continue"),
  setting("xfcc", "require", "ignore"),
  setting("ambiguousPaths", "deny", "allow"),
];

function applySetting(r: ConfigResult, i: i32, second: bool): void {
  if (i == 0) r.continueHeaders = second;
  else if (i == 1) r.xfccIgnore = second;
  else r.allowAmbiguousPaths = second;
}

/** Quotes user input for an error message (JSON-style escaping keeps it on one line). */
function quoted(p: usize, n: i32): string {
  let s = "\"";
  const text = String.UTF8.decodeUnsafe(p, <usize>n, false);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c == 34) s += "\\\"";
    else if (c == 92) s += "\\\\";
    else if (c < 32) s += "\\u00" + (c < 16 ? "0" : "") + c.toString(16);
    else s += String.fromCharCode(c);
  }
  return s + "\"";
}

function hexValue(c: u32): i32 {
  if (c - 48 < 10) return <i32>(c - 48);
  if ((c | 0x20) - 97 < 6) return <i32>((c | 0x20) - 87);
  return -1;
}

const TABLE_KEY = String.UTF8.encode("table", false);

/**
 * The parser of the JSON wrapper: where it is in the input and the string it decoded last. One per load
 * (configure time only).
 */
class WrapperParser {
  src: usize;
  end: usize;
  pos: usize;
  /** A decoded string: either a range of the input (no escapes) or a fresh buffer. */
  strPtr: usize = 0;
  strLen: i32 = 0;
  strBuf: ArrayBuffer | null = null;

  constructor(ptr: usize, len: i32) {
    this.src = ptr;
    this.end = ptr + <usize>len;
    this.pos = ptr;
  }

  where(at: usize): string {
    let line = 1;
    let col = 1;
    for (let p = this.src; p < at && p < this.end; p++) {
      const c = load<u8>(p);
      if (c == 10) {
        line++;
        col = 1;
      } else if ((c & 0xc0) != 0x80) {
        col++;
      }
    }
    return "configuration:" + line.toString() + ":" + col.toString() + ": ";
  }

  skipWs(): void {
    while (this.pos < this.end) {
      const c = load<u8>(this.pos);
      if (c != 32 && c != 9 && c != 10 && c != 13) break;
      this.pos++;
    }
  }

  /** Parses the JSON string at `pos` (which is at its opening quote). Returns "" or an error. */
  parseString(): string {
    const start = this.pos;
    this.pos++;
    let escapes = false;
    let p = this.pos;
    while (true) {
      if (p >= this.end) return this.where(start) + "unterminated string";
      const c = load<u8>(p);
      if (c == 34) break;
      if (c < 32) return this.where(p) + "control character in a string";
      if (c == 92) {
        escapes = true;
        p += 2;
        continue;
      }
      p++;
    }
    if (!escapes) {
      this.strPtr = this.pos;
      this.strLen = <i32>(p - this.pos);
      this.strBuf = null;
      this.pos = p + 1;
      return "";
    }
    // With escapes: decode into a buffer no longer than the raw text.
    const buf = new ArrayBuffer(<i32>(p - this.pos));
    const out = changetype<usize>(buf);
    let o: usize = 0;
    let q = this.pos;
    while (q < p) {
      const c = load<u8>(q);
      if (c != 92) {
        store<u8>(out + o++, c);
        q++;
        continue;
      }
      const e = q + 1 < p ? load<u8>(q + 1) : 0;
      let ch: i32 = -1;
      if (e == 34) ch = 34;
      else if (e == 92) ch = 92;
      else if (e == 47) ch = 47;
      else if (e == 98) ch = 8;
      else if (e == 102) ch = 12;
      else if (e == 110) ch = 10;
      else if (e == 114) ch = 13;
      else if (e == 116) ch = 9;
      if (ch >= 0) {
        store<u8>(out + o++, <u8>ch);
        q += 2;
        continue;
      }
      if (e != 117 || q + 6 > p) return this.where(q) + "invalid escape in a string";
      let cp: i32 = 0;
      for (let i: usize = 2; i < 6; i++) {
        const h = hexValue(load<u8>(q + i));
        if (h < 0) return this.where(q) + "invalid \\u escape in a string";
        cp = (cp << 4) | h;
      }
      q += 6;
      if (cp >= 0xd800 && cp < 0xdc00 && q + 6 <= p && load<u8>(q) == 92 && load<u8>(q + 1) == 117) {
        let lo: i32 = 0;
        let ok = true;
        for (let i: usize = 2; i < 6; i++) {
          const h = hexValue(load<u8>(q + i));
          if (h < 0) ok = false;
          lo = (lo << 4) | h;
        }
        if (ok && lo >= 0xdc00 && lo < 0xe000) {
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          q += 6;
        }
      }
      if (cp >= 0xd800 && cp < 0xe000) cp = 0xfffd; // a lone surrogate
      // UTF-8 of cp: never longer than the 6 (or 12) escape bytes it replaces.
      if (cp < 0x80) store<u8>(out + o++, <u8>cp);
      else if (cp < 0x800) {
        store<u8>(out + o++, <u8>(0xc0 | (cp >> 6)));
        store<u8>(out + o++, <u8>(0x80 | (cp & 63)));
      } else if (cp < 0x10000) {
        store<u8>(out + o++, <u8>(0xe0 | (cp >> 12)));
        store<u8>(out + o++, <u8>(0x80 | ((cp >> 6) & 63)));
        store<u8>(out + o++, <u8>(0x80 | (cp & 63)));
      } else {
        store<u8>(out + o++, <u8>(0xf0 | (cp >> 18)));
        store<u8>(out + o++, <u8>(0x80 | ((cp >> 12) & 63)));
        store<u8>(out + o++, <u8>(0x80 | ((cp >> 6) & 63)));
        store<u8>(out + o++, <u8>(0x80 | (cp & 63)));
      }
    }
    this.strBuf = buf;
    this.strPtr = out;
    this.strLen = <i32>o;
    this.pos = p + 1;
    return "";
  }

  /** Whether the string parseString() just decoded is `word`. */
  isKey(word: ArrayBuffer): bool {
    return bytesEqual(this.strPtr, this.strLen, changetype<usize>(word), word.byteLength);
  }

  describeAt(p: usize): string {
    if (p >= this.end) return "end of input";
    const c = load<u8>(p);
    if (c == 34 || c == 92) return "\"\\" + String.fromCharCode(c) + "\"";
    if (c >= 32 && c < 127) return "\"" + String.fromCharCode(c) + "\"";
    return "byte 0x" + (c < 16 ? "0" : "") + c.toString(16);
  }
}

/**
 * Parses the configuration string (`len` bytes at `ptr`), decodes and validates the table and builds its index.
 * On failure `error` says why; the caller keeps its previous table. With `scratchInput` the caller gives up the
 * input: the base64 text is decoded over itself, so the envelope needs no memory of its own (the filter passes
 * the host's copy of the configuration, which it frees afterwards).
 */
export function loadConfiguration(ptr: usize, len: i32, scratchInput: bool = false): ConfigResult {
  const r = new ConfigResult();
  const j = new WrapperParser(ptr, len);
  if (len <= 0) {
    r.error = "configuration is empty";
    return r;
  }
  j.skipWs();
  if (j.pos >= j.end || load<u8>(j.pos) != 123) {
    r.error = j.where(j.pos) + "expected \"{\", found " + j.describeAt(j.pos);
    return r;
  }
  const open = j.pos;
  j.pos++;
  let tablePtr: usize = 0;
  let tableLen: i32 = 0;
  let tableBuf: ArrayBuffer | null = null;
  let haveTable = false;
  let seen: u32 = 0; // settings given, by bit
  j.skipWs();
  if (j.pos < j.end && load<u8>(j.pos) == 125) {
    r.error = j.where(j.pos) + "missing field \"table\"";
    return r;
  }
  while (true) {
    j.skipWs();
    if (j.pos >= j.end || load<u8>(j.pos) != 34) {
      r.error = j.where(j.pos) + "expected a field name, found " + j.describeAt(j.pos);
      return r;
    }
    const keyAt = j.pos;
    let e = j.parseString();
    if (e.length != 0) {
      r.error = e;
      return r;
    }
    const isTable = j.isKey(TABLE_KEY);
    let which = -1;
    for (let i = 0; !isTable && i < SETTINGS.length; i++) if (j.isKey(SETTINGS[i].key)) which = i;
    if (!isTable && which < 0) {
      r.error = j.where(keyAt) + "unknown field " + quoted(j.strPtr, j.strLen);
      return r;
    }
    if (isTable ? haveTable : (seen & (1 << which)) != 0) {
      r.error = j.where(keyAt) + "duplicate field \"" + (isTable ? "table" : SETTINGS[which].name) + "\"";
      return r;
    }
    j.skipWs();
    if (j.pos >= j.end || load<u8>(j.pos) != 58) {
      r.error = j.where(j.pos) + "expected \":\", found " + j.describeAt(j.pos);
      return r;
    }
    j.pos++;
    j.skipWs();
    const valueAt = j.pos;
    if (j.pos >= j.end || load<u8>(j.pos) != 34) {
      r.error = j.where(j.pos) + (isTable ? "field \"table\" must be a string" : SETTINGS[which].values);
      return r;
    }
    e = j.parseString();
    if (e.length != 0) {
      r.error = e;
      return r;
    }
    if (isTable) {
      tablePtr = j.strPtr;
      tableLen = j.strLen;
      tableBuf = j.strBuf; // keeps an unescaped copy alive
      haveTable = true;
    } else {
      const st = SETTINGS[which];
      if (j.isKey(st.first)) applySetting(r, which, false);
      else if (j.isKey(st.second)) applySetting(r, which, true);
      else {
        r.error = j.where(valueAt) + st.values + ", not " + quoted(j.strPtr, j.strLen);
        return r;
      }
      seen |= 1 << which;
    }
    j.skipWs();
    if (j.pos < j.end && load<u8>(j.pos) == 44) {
      j.pos++;
      continue;
    }
    if (j.pos < j.end && load<u8>(j.pos) == 125) break;
    r.error = j.where(j.pos) + "expected \",\" or \"}\", found " + j.describeAt(j.pos);
    return r;
  }
  j.pos++;
  j.skipWs();
  if (j.pos < j.end) {
    r.error = j.where(j.pos) + "unexpected " + j.describeAt(j.pos) + " after the configuration object";
    return r;
  }
  if (!haveTable) {
    r.error = j.where(open) + "missing field \"table\"";
    return r;
  }
  // An unescaped copy (tableBuf) is ours to overwrite as well.
  const b = base64Decode(tablePtr, tableLen, scratchInput || tableBuf !== null);
  if (b.error.length != 0) {
    r.error = "table: " + b.error;
    return r;
  }
  const t = decodeEnvelope(b.ptr, b.len);
  if (tableBuf !== null) j.strBuf = null; // let the GC have the unescaped copy
  if (t.error.length != 0) {
    r.error = t.error;
    return r;
  }
  r.table = t.table;
  return r;
}
