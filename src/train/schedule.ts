/**
 * Learning-rate schedules as HF transformers defines them (`get_*_schedule_with_warmup`):
 * linear warmup from 0, then constant, linear decay to 0, or cosine decay to 0.
 *
 * @module
 */

/** Schedule names. */
export type ScheduleName = "constant" | "linear" | "cosine";

/** Options of {@link learningRate}. */
export interface ScheduleOptions {
  /** Shape of the decay after warmup (default `"constant"`). */
  schedule?: ScheduleName;
  /** Steps of linear warmup from 0 to the base rate (default 0). */
  warmupSteps?: number;
  /** Total number of updates: linear and cosine decay reach 0 there. */
  totalSteps: number;
}

/**
 * The learning rate at `step` (0-based: the rate used for the first update is at step 0).
 *
 * @example
 * ```ts
 * import { learningRate } from "./schedule.ts";
 * learningRate(1e-3, 50, { schedule: "cosine", warmupSteps: 10, totalSteps: 100 });
 * ```
 */
export function learningRate(base: number, step: number, opts: ScheduleOptions): number {
  const { schedule = "constant", warmupSteps = 0, totalSteps } = opts;
  if (step < warmupSteps) return base * step / Math.max(1, warmupSteps);
  if (schedule === "constant") return base;
  const progress = (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
  if (schedule === "linear") return base * Math.max(0, 1 - progress);
  return base * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
}
