/** Small statistics helpers for the benchmarks. */

/** The median of `values` (NaN for none); the mean of the two middle values for an even count. */
export function median(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/** The smallest and largest finite value. */
export function range(values: readonly number[]): [number, number] {
  const v = values.filter((x) => Number.isFinite(x));
  return v.length === 0 ? [NaN, NaN] : [Math.min(...v), Math.max(...v)];
}

/** Rounds to `digits` decimals (NaN and infinities are kept, for the JSON writer to turn into null). */
export function round(x: number, digits = 1): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** `x / y` formatted as a ratio such as `1.07x`, or `n/a`. */
export function ratio(x: number, y: number): string {
  if (!Number.isFinite(x) || !Number.isFinite(y) || y === 0) return "n/a";
  return `${(x / y).toFixed(2)}x`;
}
