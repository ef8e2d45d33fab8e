// A small command-line parser shared by the subcommands.
//
// Accepted forms: `--flag value`, `--flag=value`, `-o value`, `-o=value`, boolean `--json`, repeatable flags
// (`--header a --header b`), positional arguments in any position, `--` to end flag parsing, and a lone `-`
// as a positional (stdin). Anything else that starts with `-` is an unknown flag: a usage error (exit 2).

/** How a flag takes its value. */
export type FlagKind =
  /** present or absent, never takes a value */
  | "boolean"
  /** takes exactly one value; giving the flag twice is a usage error */
  | "value"
  /** takes a value each time it is given; all values are kept in order */
  | "repeat";

export interface FlagSpec {
  /** long name without the dashes: `policy` for `--policy` */
  name: string;
  kind: FlagKind;
  /** one-letter alias without the dash: `o` for `-o` */
  short?: string;
  /** placeholder shown in help: `FILE` */
  metavar?: string;
  /** one line of help */
  help?: string;
}

/** A usage error: the command line is wrong. The CLI prints the message and exits 2. */
export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** The result of {@link parseArgs}. */
export class ParsedArgs {
  /** positional arguments, in order */
  readonly positionals: string[] = [];
  private readonly values = new Map<string, string[]>();
  private readonly booleans = new Set<string>();

  /** @internal */
  addValue(name: string, value: string): void {
    const list = this.values.get(name);
    if (list) list.push(value);
    else this.values.set(name, [value]);
  }

  /** @internal */
  setBoolean(name: string): void {
    this.booleans.add(name);
  }

  /** True when the boolean flag was given, or a value flag was given at least once. */
  has(name: string): boolean {
    return this.booleans.has(name) || this.values.has(name);
  }

  /** The value of a `value` flag, or undefined when absent. */
  value(name: string): string | undefined {
    const list = this.values.get(name);
    return list ? list[list.length - 1] : undefined;
  }

  /** All values of a `repeat` (or `value`) flag, in the order given; empty when absent. */
  all(name: string): string[] {
    return this.values.get(name)?.slice() ?? [];
  }

  /** True when the boolean flag was given. */
  flag(name: string): boolean {
    return this.booleans.has(name);
  }
}

function display(spec: FlagSpec): string {
  return `--${spec.name}`;
}

/**
 * Parses `argv` (without the program and subcommand names) against `specs`.
 * Throws {@link UsageError} for an unknown flag, a missing value, a value given to a boolean flag, or a
 * `value` flag given twice.
 */
export function parseArgs(argv: readonly string[], specs: readonly FlagSpec[]): ParsedArgs {
  const byLong = new Map<string, FlagSpec>();
  const byShort = new Map<string, FlagSpec>();
  for (const spec of specs) {
    byLong.set(spec.name, spec);
    if (spec.short) byShort.set(spec.short, spec);
  }
  const out = new ParsedArgs();
  let i = 0;
  while (i < argv.length) {
    const arg = argv[i++];
    if (arg === "--") {
      while (i < argv.length) out.positionals.push(argv[i++]);
      break;
    }
    if (arg === "-" || !arg.startsWith("-")) {
      out.positionals.push(arg);
      continue;
    }
    let key: string;
    let inline: string | undefined;
    let spec: FlagSpec | undefined;
    const eq = arg.indexOf("=");
    if (arg.startsWith("--")) {
      key = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
      inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
      spec = byLong.get(key);
    } else {
      key = eq >= 0 ? arg.slice(1, eq) : arg.slice(1);
      inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
      spec = key.length === 1 ? byShort.get(key) : undefined;
    }
    if (!spec) {
      const shown = eq >= 0 ? arg.slice(0, eq) : arg;
      throw new UsageError(`unknown flag "${shown}"`);
    }
    if (spec.kind === "boolean") {
      if (inline !== undefined) throw new UsageError(`flag ${display(spec)} takes no value (got "${inline}")`);
      out.setBoolean(spec.name);
      continue;
    }
    let value: string;
    if (inline !== undefined) {
      value = inline;
    } else {
      if (i >= argv.length) {
        throw new UsageError(`flag ${display(spec)} needs a value${spec.metavar ? ` (${spec.metavar})` : ""}`);
      }
      value = argv[i++];
    }
    if (spec.kind === "value" && out.has(spec.name)) {
      throw new UsageError(`flag ${display(spec)} given more than once`);
    }
    out.addValue(spec.name, value);
  }
  return out;
}

/** Formats the flags of a command as aligned help lines. */
export function formatFlags(specs: readonly FlagSpec[]): string {
  const heads = specs.map((s) => {
    const names = (s.short ? `-${s.short}, ` : "    ") + `--${s.name}`;
    const meta = s.kind === "boolean" ? "" : ` ${s.metavar ?? "VALUE"}`;
    const rep = s.kind === "repeat" ? " (repeatable)" : "";
    return { head: `  ${names}${meta}`, help: (s.help ?? "") + rep };
  });
  const width = Math.max(0, ...heads.map((h) => h.head.length)) + 2;
  return heads.map((h) => (h.help ? h.head.padEnd(width) + h.help : h.head)).join("\n");
}
