/**
 * A request corpus for `spiffe-authz diff`: what traffic to replay, read line by line from any mix of
 *
 * - JSONL requests in `check --batch`'s shape (`{"peer": ..., "method": ..., "path": ..., "headers": ...}`);
 * - Envoy access log lines in the text format the shipped configs write (`accessLogFormat` in src/envoy/render.ts);
 * - Envoy access log records as JSON (a `json_format` access log), taking the usual fields: `method` (or
 *   `:method`, `request_method`), `path` (`:path`), `authority` (`:authority`, `host`) and the peer's URI SAN as
 *   `peer` (or `downstream_peer_uri_san`, `%DOWNSTREAM_PEER_URI_SAN%`); `-` or null means absent. Other fields (the
 *   recorded status, response details, the filter's decision) are kept as what was recorded and not replayed.
 *
 * Blank lines and lines starting with `#` are skipped. A line that is none of these is an error naming
 * `file:line`. An access log has no request bodies or headers: a rule that reads them sees none on replay.
 */
import { parseBatchLine } from "../check/batch.ts";
import type { CheckRequest } from "../check/checker.ts";
import { parseAccessLogLine } from "../envoy/render.ts";

export interface CorpusEntry {
  /** 1-based line in the corpus file */
  line: number;
  request: CheckRequest;
  /** where the line came from */
  kind: "request" | "access-log" | "access-log-json";
  /** what the log recorded for it (status, details, decision...), when it is a log line */
  recorded: Record<string, unknown> | null;
}

const BATCH_FIELDS = new Set(["peer", "method", "path", "authority", "headers", "body", "bodyBase64", "port", "sni", "jwt"]);
const METHOD_KEYS = ["method", ":method", "request_method"];
const PATH_KEYS = ["path", ":path", "request_path"];
const AUTHORITY_KEYS = ["authority", ":authority", "host"];
const PEER_KEYS = ["peer", "downstream_peer_uri_san", "%DOWNSTREAM_PEER_URI_SAN%", "peer_uri_san"];

export class CorpusError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CorpusError";
  }
}

function first(o: Record<string, unknown>, keys: string[]): string | null {
  for (const k of keys) {
    const v = o[k];
    if (typeof v === "string" && v !== "" && v !== "-") return v;
  }
  return null;
}

/** One access-log JSON record as a request; null when it lacks a method or a path. */
function fromLogRecord(o: Record<string, unknown>): { request: CheckRequest; recorded: Record<string, unknown> } | null {
  const method = first(o, METHOD_KEYS);
  const path = first(o, PATH_KEYS);
  if (method === null || path === null) return null;
  const request: CheckRequest = { method, path };
  const authority = first(o, AUTHORITY_KEYS);
  if (authority !== null) request.authority = authority;
  const peer = first(o, PEER_KEYS);
  if (peer !== null) request.peer = peer;
  const used = new Set([...METHOD_KEYS, ...PATH_KEYS, ...AUTHORITY_KEYS, ...PEER_KEYS]);
  const recorded = Object.fromEntries(Object.entries(o).filter(([k]) => !used.has(k)));
  return { request, recorded };
}

/** Reads a corpus. `file` names it in messages. */
export function readCorpus(text: string, file: string): CorpusEntry[] {
  const out: CorpusEntry[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i].replace(/\r$/, "");
    const line = i + 1;
    if (raw.trim() === "" || raw.trimStart().startsWith("#")) continue;
    const where = `${file}:${line}: `;
    if (raw.trimStart().startsWith("{")) {
      let o: unknown;
      try {
        o = JSON.parse(raw);
      } catch (err) {
        throw new CorpusError(`${where}not valid JSON: ${(err as Error).message}`);
      }
      if (typeof o !== "object" || o === null || Array.isArray(o)) throw new CorpusError(`${where}a line must be a JSON object`);
      const rec = o as Record<string, unknown>;
      if (Object.keys(rec).every((k) => BATCH_FIELDS.has(k))) {
        try {
          out.push({ line, request: parseBatchLine(raw, where), kind: "request", recorded: null });
        } catch (err) {
          throw new CorpusError((err as Error).message);
        }
        continue;
      }
      const fromLog = fromLogRecord(rec);
      if (fromLog === null) {
        throw new CorpusError(`${where}neither a request (fields ${[...BATCH_FIELDS].join(", ")}) nor an access log record with a method and a path`);
      }
      out.push({ line, request: fromLog.request, kind: "access-log-json", recorded: fromLog.recorded });
      continue;
    }
    const entry = parseAccessLogLine(raw);
    if (entry === null) {
      throw new CorpusError(`${where}not a JSON request, a JSON access log record, or an access log line of the shipped format`);
    }
    const request: CheckRequest = { method: entry.method, path: entry.path };
    if (entry.peer !== null) request.peer = entry.peer;
    out.push({
      line,
      request,
      kind: "access-log",
      recorded: { start: entry.start, status: entry.status, details: entry.details, protocol: entry.protocol },
    });
  }
  return out;
}
