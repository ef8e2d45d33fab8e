// PolicyTable: a decoded, validated table with its principal index, as the loader (load.ts) builds it. Immutable
// once built.

import { PrincipalIndex } from "../principal-index";
import { TableRecords } from "./records";

export class PolicyTable extends TableRecords {
  /** The principal index (principal-index.ts), built at load. */
  index: PrincipalIndex | null = null;

  constructor(body: ArrayBuffer) {
    super(body);
  }
}

/** The outcome of a load: a table, or what is wrong. */
export class TableResult {
  table: PolicyTable | null = null;
  error: string = "";
}

export function fail(r: TableResult, msg: string): TableResult {
  r.error = msg;
  return r;
}
