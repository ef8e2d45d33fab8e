// Emitter `table`: the plugin configuration string (docs/table-format.md section 1) and a newline.

import type { CompileResult } from "../index.ts";

export function emitTable(result: CompileResult): string {
  return result.config + "\n";
}
