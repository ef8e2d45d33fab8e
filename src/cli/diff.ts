import type { CliIO } from "./check.ts";
export async function runDiff(_argv: string[], io: CliIO): Promise<number> {
  io.stderr.write("not implemented\n");
  return 1;
}
