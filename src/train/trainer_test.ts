/**
 * The training loop's arithmetic, on a compiled step of a tiny linear model with MSE (so every
 * expected value is a closed form computed here in float64): gradient accumulation equals one
 * larger batch, clipping gives an update of norm `lr · maxNorm`, the reported gradient norm is
 * the gradients' norm, a non-finite gradient stops training naming the parameter, an
 * overflowing sum of squares of finite gradients does not, early stopping honours its patience,
 * the seeded order is reproducible, a run aborted after any step resumes to the same end, and
 * `saveBest` ends with the best evaluation's parameters, across a resume too.
 *
 * @module
 */

import { assert, assertEquals, assertRejects } from "../../tests/_assert.ts";
import { Graph } from "../engine/graph.ts";
import { mseLoss } from "../engine/ops/loss.ts";
import { matmul } from "../engine/ops/matmul.ts";
import type { Tensor } from "../tensor.ts";
import { Rng } from "../rng.ts";
import type { Dataset } from "../data/dataset.ts";
import { TrainStep } from "./step.ts";
import { type MetricLine, NonFiniteError, train, type TrainerState } from "./trainer.ts";

const IN = 3, OUT = 2;

/** y = x·w, MSE against `targets`, w [IN, OUT] trainable. */
function linearStep(): Promise<TrainStep> {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", IN]);
  const w = g.input("w", "F32", [IN, OUT]);
  const t = g.input("targets", "F32", ["batch", OUT]);
  return TrainStep.compile({ graph: g, loss: mseLoss(matmul(x, w), t), params: [w] }, {
    threads: 1,
  });
}

function data(rows: number, seed = 1): Dataset {
  const rng = new Rng(seed);
  return {
    rows,
    width: IN,
    x: rng.fillUniform(new Float32Array(rows * IN), -1, 1) as Float32Array,
    y: {
      kind: "targets",
      data: rng.fillUniform(new Float32Array(rows * OUT), -1, 1) as Float32Array,
      width: OUT,
    },
  };
}

/** ∂/∂w of mean((x·w − t)²) over rows `from … to`, in float64. */
function mseGrad(d: Dataset, w: Float32Array, from: number, to: number): Float64Array {
  const g = new Float64Array(IN * OUT);
  const n = (to - from) * OUT;
  const t = d.y.data as Float32Array;
  for (let r = from; r < to; r++) {
    for (let o = 0; o < OUT; o++) {
      let y = 0;
      for (let i = 0; i < IN; i++) y += d.x[r * IN + i]! * w[i * OUT + o]!;
      const e = (2 * (y - t[r * OUT + o]!)) / n;
      for (let i = 0; i < IN; i++) g[i * OUT + o] = g[i * OUT + o]! + e * d.x[r * IN + i]!;
    }
  }
  return g;
}

function norm(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
  return Math.sqrt(s);
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

const W0 = () => new Float32Array([0.5, -0.25, 0.125, 1, -0.75, 0.3]);

Deno.test("train() with 2 accumulated micro-batches of 4 equals one batch of 8", async () => {
  const step = await linearStep();
  try {
    const d = data(8);
    const opts = { optimizer: "sgd" as const, lr: 0.1, shuffle: false, maxSteps: 1 };
    const one = new Map([["w", W0()]]);
    await train(step, d, { ...opts, params: one, batchSize: 8 });
    const two = new Map([["w", W0()]]);
    await train(step, d, { ...opts, params: two, batchSize: 4, gradAccum: 2 });
    const expected = W0().map((w, i) => w - 0.1 * mseGrad(d, W0(), 0, 8)[i]!);
    assert(maxDiff(one.get("w")!, expected) < 1e-7, `batch 8 differs from the closed form`);
    assert(maxDiff(two.get("w")!, expected) < 1e-7, `accumulation differs from batch 8`);
    // The accumulated run really moved w (a loop that skipped the update would fail above).
    assert(maxDiff(two.get("w")!, W0()) > 1e-3);
  } finally {
    await step.release();
  }
});

Deno.test("train() clips the global gradient norm and reports the unclipped norm", async () => {
  const step = await linearStep();
  try {
    const d = data(8);
    const g = mseGrad(d, W0(), 0, 8);
    const gNorm = norm(g);
    const lines: MetricLine[] = [];
    const run = async (clipNorm?: number) => {
      const p = new Map([["w", W0()]]);
      await train(step, d, {
        params: p,
        optimizer: "sgd",
        lr: 0.1,
        shuffle: false,
        maxSteps: 1,
        batchSize: 8,
        clipNorm,
        hooks: { onMetric: (l) => void lines.push(l) },
      });
      return p.get("w")!;
    };
    // A bound above the norm changes nothing; a bound of a quarter of it scales the step.
    const free = await run();
    assertEquals([...(await run(4 * gNorm))], [...free]);
    const clipped = await run(gNorm / 4);
    const delta = W0().map((w, i) => w - clipped[i]!);
    const deltaNorm = norm(delta);
    assert(Math.abs(deltaNorm - 0.1 * gNorm / 4) < 1e-6, `update norm ${deltaNorm}`);
    // Same direction as the gradient.
    for (let i = 0; i < g.length; i++) {
      assert(Math.abs(delta[i]! - 0.1 * g[i]! / 4) < 1e-6, `element ${i}`);
    }
    for (const l of lines) {
      assert("grad_norm" in l && l.grad_norm !== undefined);
      assert(Math.abs(l.grad_norm - gNorm) / gNorm < 1e-6, `grad_norm ${l.grad_norm} vs ${gNorm}`);
    }
  } finally {
    await step.release();
  }
});

Deno.test("TrainStep returns the sum of the gradients' squares computed in the graph", async () => {
  const step = await linearStep();
  try {
    const d = data(5);
    const feeds: Record<string, Tensor> = {
      x: { dtype: "F32", shape: [5, IN], data: d.x },
      targets: { dtype: "F32", shape: [5, OUT], data: d.y.data as Float32Array },
    };
    const r = await step.run(feeds, new Map([["w", W0()]]));
    const expected = norm(mseGrad(d, W0(), 0, 5)) ** 2;
    assert(Math.abs(r.gradSumSq! - expected) / expected < 1e-6, `${r.gradSumSq} vs ${expected}`);
    assertEquals(norm(r.grads.get("w")!) ** 2 / expected > 0.999999, true);
  } finally {
    await step.release();
  }
});

/** A stand-in step returning the given gradient and sum of squares. */
function fixedStep(grad: Float32Array, gradSumSq: number) {
  return {
    run: () => Promise.resolve({ loss: 1, grads: new Map([["w", grad]]), gradSumSq, extra: {} }),
  };
}

Deno.test("a non-finite gradient stops training naming the parameter and the step", async () => {
  const p = new Map([["w", new Float32Array(3)]]);
  for (const bad of [NaN, Infinity, -Infinity]) {
    const err = await assertRejects(
      () =>
        train(fixedStep(new Float32Array([1, bad, 2]), bad), data(4), { params: p, batchSize: 4 }),
      NonFiniteError,
      'the gradient of "w"',
    );
    assert(String(err).includes("step 1"), String(err));
    assertEquals([...p.get("w")!], [0, 0, 0]);
  }
  // Accumulated micro-batches are checked too.
  await assertRejects(
    () =>
      train(fixedStep(new Float32Array([1, NaN, 2]), NaN), data(4), {
        params: p,
        batchSize: 2,
        gradAccum: 2,
      }),
    NonFiniteError,
    'the gradient of "w"',
  );
});

Deno.test("finite gradients whose float32 sum of squares overflows still train", async () => {
  const p = new Map([["w", new Float32Array(2)]]);
  const lines: MetricLine[] = [];
  await train(fixedStep(new Float32Array([3e20, 4e20]), Infinity), data(4), {
    params: p,
    batchSize: 4,
    optimizer: "sgd",
    lr: 1e-20,
    hooks: { onMetric: (l) => void lines.push(l) },
  });
  assert(maxDiff(p.get("w")!, [-3, -4]) < 1e-5, `${p.get("w")}`);
  const l = lines[0]!;
  // 3e20 and 4e20 are stored as the nearest float32 values: the norm is 5e20 to ~1e-7.
  assert("grad_norm" in l && Math.abs(l.grad_norm! - 5e20) / 5e20 < 1e-6, JSON.stringify(l));
});

Deno.test("early stopping ends the run after `patience` evaluations without improvement", async () => {
  const step = await linearStep();
  try {
    const evals = [1, 0.5, 0.6, 0.55, 0.4];
    let calls = 0;
    const r = await train(step, data(8), {
      params: new Map([["w", W0()]]),
      batchSize: 4,
      epochs: 5,
      earlyStopping: { patience: 2 },
      hooks: { evaluate: () => Promise.resolve({ loss: evals[calls++]! }) },
    });
    // Epoch 2 sets the best (0.5), epochs 3 and 4 do not beat it: stop after 4 of 5 epochs.
    assertEquals([calls, r.stoppedEarly, r.steps], [4, true, 8]);
    calls = 0;
    const patient = await train(step, data(8), {
      params: new Map([["w", W0()]]),
      batchSize: 4,
      epochs: 5,
      earlyStopping: { patience: 3 },
      hooks: { evaluate: () => Promise.resolve({ loss: evals[calls++]! }) },
    });
    assertEquals([calls, patient.stoppedEarly, patient.steps], [5, false, 10]);
  } finally {
    await step.release();
  }
});

Deno.test("the batch order is a function of the seed, and --no-shuffle keeps the file's order", async () => {
  const d = data(12);
  const firstRows = async (opts: { seed?: number; shuffle?: boolean }) => {
    const seen: number[] = [];
    const recorder = {
      run: (batch: Record<string, Tensor>) => {
        const x = batch.x!.data as Float32Array;
        for (let r = 0; r < x.length / IN; r++) {
          // Identify each row by its first value.
          seen.push(d.x.findIndex((v, i) => i % IN === 0 && v === x[r * IN]) / IN);
        }
        return Promise.resolve({
          loss: 0,
          grads: new Map([["w", new Float32Array(1)]]),
          gradSumSq: 0,
          extra: {},
        });
      },
    };
    await train(recorder, d, {
      params: new Map([["w", new Float32Array(1)]]),
      batchSize: 4,
      epochs: 2,
      ...opts,
    });
    return seen;
  };
  const a = await firstRows({ seed: 3 });
  assertEquals(a, await firstRows({ seed: 3 }));
  assert(JSON.stringify(a) !== JSON.stringify(await firstRows({ seed: 4 })), "seed ignored");
  // Each epoch visits every row once, in a new order.
  assertEquals([...a.slice(0, 12)].sort((x, y) => x - y), [...Array(12).keys()]);
  assert(JSON.stringify(a.slice(0, 12)) !== JSON.stringify(a.slice(12)), "epochs share an order");
  assertEquals(await firstRows({ shuffle: false }), [
    ...[...Array(12).keys()],
    ...Array(12).keys(),
  ]);
});

Deno.test("a run aborted after any step resumes from its final checkpoint to the uninterrupted result", async () => {
  const step = await linearStep();
  try {
    const d = data(12);
    type Run = { params: Float32Array; lines: MetricLine[]; state?: TrainerState };
    const run = async (abortAt?: number, resume?: TrainerState): Promise<Run> => {
      const w = W0();
      const lines: MetricLine[] = [];
      const controller = new AbortController();
      let state: TrainerState | undefined;
      const r = await train(step, d, {
        params: new Map([["w", w]]),
        batchSize: 4,
        epochs: 3, // 3 steps an epoch, 9 in all
        optimizer: "adam",
        lr: 0.05,
        schedule: "cosine",
        earlyStopping: { patience: 5 },
        resume,
        signal: controller.signal,
        hooks: {
          onMetric: ({ samples_per_s: _, ...line }: Record<string, unknown>) => {
            lines.push(line as MetricLine);
            if (!("eval" in line) && line.step === abortAt) controller.abort();
          },
          // Evaluation reads the parameters: a resumed run that evaluated elsewhere differs.
          evaluate: (p) => Promise.resolve({ loss: p.get("w")!.reduce((s, v) => s + v * v, 0) }),
          checkpoint: (s, final) => Promise.resolve(void (final && (state = s))),
        },
      });
      assertEquals(r.interrupted, abortAt !== undefined && abortAt < 9, `abort at ${abortAt}`);
      return { params: w, lines, state };
    };
    const full = await run();
    for (let k = 1; k <= 9; k++) {
      const cut = await run(k);
      assertEquals(cut.state!.step, k);
      const rest = await run(undefined, cut.state);
      assertEquals([...rest.params], [...full.params], `abort after step ${k}`);
      assertEquals([...cut.lines, ...rest.lines], full.lines, `abort after step ${k}`);
    }
  } finally {
    await step.release();
  }
});

Deno.test("saveBest ends with the parameters of the first lowest eval loss, also when early stopping ends the run", async () => {
  const step = await linearStep();
  try {
    const run = async (evals: number[], saveBest: boolean, patience?: number) => {
      const seen: Float32Array[] = [];
      const w = W0();
      const r = await train(step, data(8), {
        params: new Map([["w", w]]),
        batchSize: 4,
        epochs: evals.length,
        lr: 0.1,
        saveBest,
        earlyStopping: patience ? { patience } : undefined,
        hooks: {
          evaluate: (p) => {
            seen.push(p.get("w")!.slice());
            return Promise.resolve({ loss: evals[seen.length - 1]! });
          },
        },
      });
      return { r, w: [...w], seen: seen.map((s) => [...s]) };
    };
    // Early stopping after epoch 4 restores epoch 2's parameters.
    const stopped = await run([1, 0.5, 0.6, 0.55, 0.4], true, 2);
    assertEquals([stopped.r.stoppedEarly, stopped.r.best], [true, {
      loss: 0.5,
      step: 4,
      epoch: 2,
    }]);
    assertEquals(stopped.w, stopped.seen[1]);
    // Ties keep the first; NaN is never the best.
    const tied = await run([0.7, NaN, 0.3, 0.3, 0.9], true);
    assertEquals([tied.r.best?.epoch, tied.w], [3, tied.seen[2]]);
    // Without saveBest, the last step's parameters, not the best evaluation's.
    const last = await run([0.7, 0.3, 0.9], false);
    assertEquals([last.r.best, last.w], [undefined, last.seen[2]]);
    assert(last.w.some((v, i) => v !== last.seen[1]![i]), "epoch 3 did not move w");
  } finally {
    await step.release();
  }
});

Deno.test("with saveBest a run aborted after any step resumes to the uninterrupted best", async () => {
  const step = await linearStep();
  try {
    const d = data(12);
    // The eval loss is a function of the parameters, lowest at epoch 2 of 4.
    let target = 0;
    const evaluate = (p: ReadonlyMap<string, Float32Array>) =>
      Promise.resolve({ loss: (p.get("w")!.reduce((s, v) => s + v * v, 0) - target) ** 2 });
    const run = async (abortAt?: number, resume?: TrainerState, onEval?: typeof evaluate) => {
      const w = W0();
      const controller = new AbortController();
      let state: TrainerState | undefined;
      const r = await train(step, d, {
        params: new Map([["w", w]]),
        batchSize: 4,
        epochs: 4, // 3 steps an epoch
        optimizer: "adam",
        lr: 0.05,
        saveBest: true,
        resume,
        signal: controller.signal,
        hooks: {
          onMetric: (line) =>
            void (!("eval" in line) && line.step === abortAt && controller.abort()),
          evaluate: onEval ?? evaluate,
          checkpoint: (s, final) => Promise.resolve(void (final && (state = s))),
        },
      });
      return { w: [...w], r, state };
    };
    const norms: number[] = [];
    await run(undefined, undefined, (p) => {
      norms.push(p.get("w")!.reduce((s, v) => s + v * v, 0));
      return Promise.resolve({ loss: 0 });
    });
    target = norms[1]!;
    const full = await run();
    assertEquals(full.r.best, { loss: 0, step: 6, epoch: 2 });
    for (let k = 1; k < 12; k++) {
      const cut = await run(k);
      const rest = await run(undefined, cut.state);
      assertEquals([rest.w, rest.r.best], [full.w, full.r.best], `abort after step ${k}`);
    }
  } finally {
    await step.release();
  }
});
