/**
 * The schedules against HF transformers' `get_{constant,linear,cosine}_schedule_with_warmup`
 * lambdas, written out below with the values they give for base 1, 4 warmup steps and 12 total:
 * the lambda at optimizer step k (0-based) is the rate of the k-th update, as HF's scheduler
 * applies it (`scheduler.step()` after each `optimizer.step()`).
 *
 * @module
 */

import { assert } from "../../tests/_assert.ts";
import { learningRate, type ScheduleName } from "./schedule.ts";

const WARMUP = 4, TOTAL = 12;

/** HF's lambdas (num_cycles 0.5 for cosine), step by step. */
const EXPECTED: Record<ScheduleName, number[]> = {
  // k / 4 during warmup, then 1.
  constant: [0, 0.25, 0.5, 0.75, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
  // then (12 − k) / 8, never below 0.
  linear: [0, 0.25, 0.5, 0.75, 1, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0, 0],
  // then ½(1 + cos(π (k − 4) / 8)), never below 0.
  cosine: [
    0,
    0.25,
    0.5,
    0.75,
    1,
    0.9619397662556434,
    0.8535533905932737,
    0.6913417161825449,
    0.5,
    0.3086582838174551,
    0.14644660940672627,
    0.03806023374435663,
    0,
    // Past the total HF's cosine rises again (it clamps at 0 only): the trainer never goes there.
    0.03806023374435663,
  ],
};

for (const [schedule, values] of Object.entries(EXPECTED) as [ScheduleName, number[]][]) {
  Deno.test(`learningRate() "${schedule}" with warmup follows HF's lambda step by step`, () => {
    values.forEach((v, k) => {
      const lr = learningRate(2e-3, k, { schedule, warmupSteps: WARMUP, totalSteps: TOTAL });
      assert(Math.abs(lr - 2e-3 * v) < 1e-15, `step ${k}: ${lr}, expected ${2e-3 * v}`);
    });
  });
}

Deno.test("learningRate() without warmup starts at the base rate", () => {
  for (const schedule of ["constant", "linear", "cosine"] as const) {
    assert(learningRate(0.1, 0, { schedule, totalSteps: 10 }) === 0.1, schedule);
  }
  assert(Math.abs(learningRate(0.1, 5, { schedule: "linear", totalSteps: 10 }) - 0.05) < 1e-15);
  assert(Math.abs(learningRate(0.1, 5, { schedule: "cosine", totalSteps: 10 }) - 0.05) < 1e-15);
});
