/**
 * `ffwd train`'s loop on the engine's two benchmark shapes: samples/s, and the share of wall time
 * spent outside the compiled step (batch slicing, dropout masks, the optimizer's update, the loop's
 * bookkeeping; the gradients' sum of squares, which checks finiteness and gives the norm, comes out
 * of the step). Target: under 10% for batch ≥ 128.
 *
 *     deno run --allow-read --allow-write --allow-env --allow-ffi --allow-sys bench/finetune_bench.ts
 *
 * (also runs under `deno bench`, as one case per shape)
 */

import { buildLoraMlpStep } from "./train_step.ts";
import { Rng } from "../src/rng.ts";
import type { Dataset } from "../src/data/dataset.ts";
import { train } from "../src/train/trainer.ts";
import type { TrainStep } from "../src/train/step.ts";

const SHAPES = [
  { dims: [1024, 4096, 1024], batch: 256, rank: 16 },
  { dims: [784, 1024, 1024, 10], batch: 128, rank: 8 },
] as const;

function randomData(width: number, classes: number, rows: number): Dataset {
  const rng = new Rng(5);
  const x = rng.fillUniform(new Float32Array(rows * width), -1, 1) as Float32Array;
  const y = BigInt64Array.from({ length: rows }, () => BigInt(rng.int(classes)));
  return { rows, width, x, y: { kind: "labels", data: y, classes } };
}

/**
 * Trains `epochs` passes over `batches` batches (after a 30-step warm-up); returns samples/s and
 * the share of time outside `step.run`.
 */
export async function measure(
  dims: readonly number[],
  batch: number,
  rank: number,
  batches = 60,
  epochs = 4,
) {
  const { step, params } = await buildLoraMlpStep(dims, rank);
  const data = randomData(dims[0]!, dims.at(-1)!, batch * batches);
  let inStep = 0;
  const timed: Pick<TrainStep, "run"> = {
    run: async (b, p) => {
      const t0 = performance.now();
      const r = await step.run(b, p);
      inStep += performance.now() - t0;
      return r;
    },
  };
  await train(timed, data, { params, batchSize: batch, maxSteps: 30, lr: 1e-4 }); // warm-up: compile caches and the JIT
  inStep = 0;
  const t0 = performance.now();
  await train(timed, data, { params, batchSize: batch, epochs, lr: 1e-4, seed: 1 });
  const wall = performance.now() - t0;
  await step.release();
  return {
    samples_per_s: Math.round((epochs * data.rows) / (wall / 1000)),
    outside_step: (wall - inStep) / wall,
  };
}

if (import.meta.main) {
  for (const s of SHAPES) {
    const r = await measure(s.dims, s.batch, s.rank);
    console.log(
      `${s.dims.join(",")} batch ${s.batch} r${s.rank}: ${r.samples_per_s} samples/s, ${
        (100 * r.outside_step).toFixed(1)
      }% of wall time outside the compiled step`,
    );
  }
} else {
  for (const s of SHAPES) {
    Deno.bench(`ffwd train loop ${s.dims.join(",")} batch ${s.batch} r${s.rank} (240 steps)`, {
      n: 2,
      warmup: 0,
    }, async () => {
      await measure(s.dims, s.batch, s.rank);
    });
  }
}
