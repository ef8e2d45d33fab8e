import type { CliIO } from "./check.ts";
export async function runTest(_argv: string[], io: CliIO): Promise<number> {
  io.stderr.write("not implemented\n");
  return 1;
}
