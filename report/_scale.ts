/**
 * Axis scales and tick values of the report's charts (imported only by siblings).
 *
 * Linear ticks are "nice numbers" (1, 2, 2.5 or 5 × 10^k: Heckbert, "Nice numbers for graph
 * labels", Graphics Gems, 1990); log ticks are the powers of ten, with more multiples labelled
 * when the data spans few decades, so an axis never has fewer than two labels.
 *
 * @module
 */

import { clean } from "./_format.ts";

/** Which y scale a chart uses. */
export type ScaleKind = "linear" | "log";

/** What the caller asks for: a scale, or `auto` (log when positive values span a decade). */
export type ScaleMode = ScaleKind | "auto";

/** Positive values whose largest is at least this many times the smallest get a log axis. */
export const AUTO_LOG_RATIO = 10;

/** Ticks of one axis: labelled values, unlabelled minor gridlines and the domain they cover. */
export interface Ticks {
  readonly kind: ScaleKind;
  /** Increasing. */
  readonly major: readonly number[];
  readonly minor: readonly number[];
  readonly domain: readonly [number, number];
  /** The distance between linear ticks (0 for log ticks). */
  readonly step: number;
}

/** Options of {@linkcode niceTicks}. */
export interface NiceTicksOptions {
  /** About how many intervals. Default 5. */
  readonly count?: number;
  /** Integer ticks only (steps, epochs). */
  readonly integer?: boolean;
}

/**
 * Nice ticks covering [min, max]: the first tick is at or below `min`, the last at or above `max`.
 * Equal ends are widened so an axis never has zero length.
 */
export function niceTicks(min: number, max: number, options: NiceTicksOptions = {}): Ticks {
  if (!Number.isFinite(min) || !Number.isFinite(max) || min > max) {
    throw new RangeError(`Cannot make ticks for the range [${min}, ${max}]`);
  }
  if (min === max) {
    const pad = options.integer ? 1 : min === 0 ? 1 : Math.abs(min) * 0.1;
    [min, max] = [min - pad, max + pad];
  }
  let step = niceStep((max - min) / (options.count ?? 5));
  if (options.integer) step = step < 1 ? 1 : step === 2.5 ? 2 : step;
  const first = Math.floor(min / step + 1e-9);
  const last = Math.ceil(max / step - 1e-9);
  // rounded at a hundredth of the step: drops float noise (0.30000000000000004) without
  // merging ticks of a narrow range far from zero
  const digits = Math.max(0, Math.min(100, 2 - Math.floor(Math.log10(step))));
  const major: number[] = [];
  for (let i = first; i <= last; i++) major.push(Number((i * step).toFixed(digits)) || 0);
  return { kind: "linear", major, minor: [], domain: [major[0]!, major.at(-1)!], step };
}

/** 1, 2, 2.5, 5 or 10 × 10^k, the nice number closest above `raw`. */
function niceStep(raw: number): number {
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const f = raw / magnitude;
  const nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
  return clean(nice * magnitude);
}

/**
 * Log ticks for [min, max] (both > 0). The domain runs from the last m × 10^k (m = 1…9) at or
 * below `min` to the first at or above `max`; labels are the powers of ten, with 2× and 5× over
 * up to 2.5 decades and every m under one decade; the other multiples are minor gridlines.
 */
export function logTicks(min: number, max: number): Ticks {
  if (!(min > 0) || !(max >= min) || !Number.isFinite(max)) {
    throw new RangeError(`Cannot make log ticks for the range [${min}, ${max}]`);
  }
  const lo = Math.floor(Math.log10(min) + 1e-9) - 1, hi = Math.ceil(Math.log10(max) - 1e-9) + 1;
  const grid: number[] = []; // every m × 10^k, increasing
  for (let k = lo; k <= hi; k++) for (let m = 1; m <= 9; m++) grid.push(clean(m * 10 ** k));
  let first = grid.findLastIndex((v) => v <= min * (1 + 1e-9));
  let last = grid.findIndex((v) => v >= max * (1 - 1e-9));
  if (first === last) [first, last] = [first - 1, last + 1];
  const domain: [number, number] = [grid[first]!, grid[last]!];
  const decades = Math.log10(domain[1] / domain[0]);
  const labelled = decades <= 1 ? [1, 2, 3, 4, 5, 6, 7, 8, 9] : decades <= 2.5 ? [1, 2, 5] : [1];
  const major: number[] = [], minor: number[] = [];
  for (const v of grid.slice(first, last + 1)) {
    const m = Math.round(v / 10 ** Math.floor(Math.log10(v) + 1e-9));
    if (labelled.includes(m)) major.push(v);
    else if (decades <= 6) minor.push(v);
  }
  return { kind: "log", major, minor, domain, step: 0 };
}

/**
 * The y scale for `values`: `log` or `linear` as asked, or for `auto` log when all values are
 * positive and the largest is at least {@linkcode AUTO_LOG_RATIO} times the smallest. A log
 * request for values that are not all positive falls back to linear.
 */
export function chooseScale(values: readonly number[], mode: ScaleMode): ScaleKind {
  if (mode === "linear" || values.length === 0) return "linear";
  const [min, max] = extent(values);
  if (!(min > 0)) return "linear";
  return mode === "log" || max / min >= AUTO_LOG_RATIO ? "log" : "linear";
}

/** The smallest and largest of `values` (a loop: spreading a million steps overflows the stack). */
export function extent(values: Iterable<number>): [min: number, max: number] {
  let min = Infinity, max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return [min, max];
}

/** Maps a value in `domain` to a pixel in `range` (linearly, or linearly in log10). */
export function scale(
  kind: ScaleKind,
  domain: readonly [number, number],
  range: readonly [number, number],
): (v: number) => number {
  const f = kind === "log" ? Math.log10 : (v: number) => v;
  const [d0, d1] = [f(domain[0]), f(domain[1])];
  const k = d1 === d0 ? 0 : (range[1] - range[0]) / (d1 - d0);
  return (v) => range[0] + (f(v) - d0) * k;
}
