// Diagnostics: every problem the compiler reports names a file, a 1-based line and column, and what to change.

/** One problem found in a policy file. `line` and `col` are 1-based. */
export interface Diagnostic {
  file: string;
  line: number;
  col: number;
  message: string;
}

/** A position inside a source file (1-based line and column). */
export interface Pos {
  file: string;
  line: number;
  col: number;
}

/** The longest message a diagnostic prints: past it, quoted input (a huge scalar, a binary blob) is cut. */
export const MAX_MESSAGE_CHARS = 300;

/** Formats a diagnostic as `file:line:col: message`, on one line of bounded length. */
export function formatDiagnostic(d: Diagnostic): string {
  let m = d.message.replace(/[\r\n]+/g, " ");
  if (m.length > MAX_MESSAGE_CHARS) m = `${m.slice(0, MAX_MESSAGE_CHARS)}... (${m.length - MAX_MESSAGE_CHARS} more characters)`;
  return `${d.file}:${d.line}:${d.col}: ${m}`;
}

/** Thrown when policies cannot be compiled. `message` holds the diagnostics, one `file:line:col: message` per line. */
export class PolicyError extends Error {
  readonly diagnostics: Diagnostic[];
  constructor(diagnostics: Diagnostic[]) {
    super(diagnostics.map(formatDiagnostic).join("\n"));
    this.name = "PolicyError";
    this.diagnostics = diagnostics;
  }
}

/** The most errors one run reports; later ones add nothing a user can act on before fixing the first. */
export const MAX_ERRORS = 20;

/** Thrown internally when {@link MAX_ERRORS} is reached, to stop work early. */
export class TooManyErrors extends Error {}

/**
 * Collects errors and warnings while the stages run. Stages keep going after an error where they can, so one run
 * reports several problems; once {@link MAX_ERRORS} errors are collected, {@link error} throws {@link TooManyErrors}.
 */
export class Diagnostics {
  readonly errors: Diagnostic[] = [];
  readonly warnings: Diagnostic[] = [];
  private readonly seen = new Set<string>();

  error(pos: Pos, message: string): void {
    const d = { file: pos.file, line: pos.line, col: pos.col, message };
    const key = formatDiagnostic(d);
    // The same node can be reached twice (an anchor used in two places): report it once.
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.errors.push(d);
    if (this.errors.length >= MAX_ERRORS) throw new TooManyErrors();
  }

  warn(pos: Pos, message: string): void {
    const d = { file: pos.file, line: pos.line, col: pos.col, message };
    const key = "w:" + formatDiagnostic(d);
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.warnings.push(d);
  }

  get failed(): boolean {
    return this.errors.length > 0;
  }

  /** Throws {@link PolicyError} when any error was collected. */
  throwIfFailed(): void {
    if (this.errors.length > 0) throw new PolicyError(sortDiagnostics(this.errors));
  }
}

/** Orders diagnostics by file (first appearance kept), then line and column, so output is stable. */
export function sortDiagnostics(list: Diagnostic[]): Diagnostic[] {
  const fileOrder = new Map<string, number>();
  for (const d of list) if (!fileOrder.has(d.file)) fileOrder.set(d.file, fileOrder.size);
  return list
    .map((d, i) => ({ d, i }))
    .sort(
      (a, b) =>
        fileOrder.get(a.d.file)! - fileOrder.get(b.d.file)! ||
        a.d.line - b.d.line ||
        a.d.col - b.d.col ||
        a.i - b.i,
    )
    .map((x) => x.d);
}

/** Quotes user input for a message: JSON string syntax, so control characters and quotes stay visible. */
export function q(value: unknown): string {
  return JSON.stringify(String(value));
}

/** Levenshtein distance, for "did you mean" suggestions. */
export function editDistance(a: string, b: string): number {
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length];
}

/** The closest candidate to `word`, if it is close enough to be a likely typo. */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestScore = Infinity;
  const lw = word.toLowerCase();
  for (const c of candidates) {
    const lc = c.toLowerCase();
    let score = editDistance(lw, lc);
    // A singular/plural slip or a missing "not" prefix is the commonest mistake: make it win ties.
    if (lc.startsWith(lw) || lw.startsWith(lc)) score -= 0.5;
    if (score < bestScore) {
      bestScore = score;
      best = c;
    }
  }
  if (best === undefined) return undefined;
  const limit = Math.max(2, Math.floor(Math.max(word.length, best.length) / 3));
  return bestScore <= limit ? best : undefined;
}

/** `; did you mean "x"?` or the empty string. */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  const c = closest(word, candidates);
  return c === undefined ? "" : `; did you mean ${q(c)}?`;
}
