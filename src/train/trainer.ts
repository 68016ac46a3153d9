/**
 * The training loop, independent of what is trained: batches from a dataset, one compiled step
 * per batch, the schedule, the optimizer (its update runs in WebAssembly kernels, see optim.ts),
 * gradient accumulation and clipping, a non-finite check on every step (from the sum of squares
 * the step computes), evaluation with early stopping, and checkpoints that make a resumed run
 * reproduce the uninterrupted one exactly.
 *
 * With `saveBest`, the loop also keeps a copy of the parameters of the evaluation with the lowest
 * loss and ends with them (Keras's `restore_best_weights`, Transformers' `load_best_model_at_end`);
 * the state each checkpoint gets carries that copy, so a run resumed from it keeps the same best.
 *
 * Reproducibility: the epoch order comes from `Rng(seed + 1 + epoch)` (so a resumed run recomputes
 * it), and dropout masks come from one generator whose state is checkpointed. An aborted `signal`
 * ends the run after the current step with a final checkpoint, so an interrupted run resumes
 * exactly too.
 *
 * @module
 */

import { Rng, type RngState } from "../rng.ts";
import { numel, type Tensor } from "../tensor.ts";
import {
  Optimizer,
  type OptimizerName,
  type OptimizerOptions,
  type OptimizerState,
} from "./optim.ts";
import { learningRate, type ScheduleName } from "./schedule.ts";
import type { TrainStep } from "./step.ts";
import { type Batch, batchBuffers, type Dataset, sliceBatch } from "../data/dataset.ts";
import { dropoutMask, type MaskInput } from "../engine/ops/dropout.ts";

export type { MaskInput };

/**
 * The loop's defaults, for the options of {@link TrainerOptions} a run leaves unset; `ffwd train`
 * and `finetune()` start from these too.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { TRAINER_DEFAULTS } from "./trainer.ts";
 * strictEqual(TRAINER_DEFAULTS.batchSize, 32);
 * ```
 */
export const TRAINER_DEFAULTS = {
  epochs: 1,
  batchSize: 32,
  lr: 1e-3,
  optimizer: "adamw",
  seed: 0,
  shuffle: true,
  gradAccum: 1,
} as const satisfies TrainerOptions;

/** Loop settings. */
export interface TrainerOptions {
  /** Passes over the data (default 1). */
  epochs?: number;
  /** Stop after this many optimizer steps (default: epochs × batches). */
  maxSteps?: number;
  /** Rows per micro-batch (default 32). */
  batchSize?: number;
  /** Base learning rate (default 1e-3). */
  lr?: number;
  /** Learning-rate decay after warmup (default `"constant"`). */
  schedule?: ScheduleName;
  /** Steps of linear learning-rate warmup from 0 (default 0). */
  warmupSteps?: number;
  /** Update rule (default `"adamw"`). */
  optimizer?: OptimizerName;
  /** Hyper-parameters of the optimizer (PyTorch names and defaults). */
  optimizerOptions?: OptimizerOptions;
  /** Global-norm gradient clipping (off when undefined). */
  clipNorm?: number;
  /**
   * End this run after this optimizer step, with a final checkpoint, as an interrupted run would
   * (the schedule still spans `maxSteps`): `--resume` then continues exactly.
   */
  stopAfter?: number;
  /** Micro-batches per optimizer step. */
  gradAccum?: number;
  /** Seeds the epoch order (`seed + 1 + epoch`) and the dropout masks (default 0). */
  seed?: number;
  /** Visit rows in a new random order each epoch (default true). */
  shuffle?: boolean;
  /** Stop when the eval loss has not improved by `minDelta` for `patience` evaluations. */
  earlyStopping?: { patience: number; minDelta?: number };
  /**
   * End with the parameters of the evaluation with the lowest loss (the first of equal ones), not
   * those of the last step, whether the run ends, stops early or is interrupted. Without
   * evaluation it changes nothing.
   */
  saveBest?: boolean;
}

/** The evaluation with the lowest loss so far, with `saveBest`. */
export interface BestEval {
  /** Its eval loss. */
  readonly loss: number;
  /** Optimizer steps taken when it ran. */
  readonly step: number;
  /** Epochs completed when it ran. */
  readonly epoch: number;
}

/** Everything a checkpoint needs to resume exactly. */
export interface TrainerState {
  /** Optimizer steps taken. */
  readonly step: number;
  /** Epochs completed. */
  readonly epoch: number;
  /** Micro-batches consumed in the current epoch. */
  readonly position: number;
  /** State of the generator that draws dropout masks. */
  readonly rng: RngState;
  /** The optimizer's step count and buffers. */
  readonly optimizer: OptimizerState;
  /** Copies of the parameters, by name. */
  readonly params: ReadonlyMap<string, Float32Array>;
  /** Lowest eval loss seen with early stopping on (`null` before the first evaluation). */
  readonly bestEval: number | null;
  /** Evaluations in a row without improvement, counted against the patience. */
  readonly badEvals: number;
  /** With `saveBest`, the best evaluation so far and a copy of its parameters. */
  readonly best?: BestEval & { readonly params: ReadonlyMap<string, Float32Array> };
  /** Seconds spent in the loop up to this state, over every run that led to it. */
  readonly seconds?: number;
}

/**
 * What an evaluation measures: its loss, and for class labels the accuracy and the confusion
 * matrix (a type, not an interface, so a {@link MetricLine} is a `Record<string, unknown>`).
 */
export type EvalResult = {
  /** Mean loss over the evaluation rows. */
  loss: number;
  /** Share of rows whose arg-max is the label. */
  accuracy?: number;
  /** `confusion[label][predicted]`: counts of rows, one row and one column per class. */
  confusion?: number[][];
};

/**
 * One line of `metrics.jsonl`: a training step's, or (`eval: true`) an evaluation's after an
 * epoch, with the {@link EvalResult} fields.
 */
export type MetricLine =
  | { step: number; loss: number; lr: number; grad_norm?: number; samples_per_s?: number }
  | ({ eval: true; step: number; epoch: number } & EvalResult);

/** Callbacks of the loop. */
export interface TrainerHooks {
  /** Receives each metrics line: one per optimizer step, one per evaluation. */
  onMetric?(line: MetricLine): void | Promise<void>;
  /** Called at `checkpointEvery` steps and at the end. */
  checkpoint?(state: TrainerState, final: boolean): Promise<void>;
  /** Optimizer steps between checkpoints (only the final one when undefined). */
  checkpointEvery?: number;
  /** Runs evaluation after each epoch; returns its loss (and accuracy and confusion). */
  evaluate?(params: ReadonlyMap<string, Float32Array>): Promise<EvalResult>;
}

/** Raised when a step produces NaN or Inf; the last checkpoint is left intact. */
export class NonFiniteError extends Error {
  constructor(readonly step: number, what: string) {
    super(
      `Training stopped at step ${step}: ${what} is not finite (NaN or Inf); the last checkpoint is intact`,
    );
    this.name = "NonFiniteError";
  }
}

/** What {@link train} returns. */
export interface TrainResult {
  /** Optimizer steps taken, those before a resume included. */
  readonly steps: number;
  /** Mean loss of the last step's micro-batches (`NaN` when no step ran). */
  readonly lastLoss: number;
  /** Whether early stopping ended the run. */
  readonly stoppedEarly: boolean;
  /** Whether `signal` ended the run before its last step (the final checkpoint holds its state). */
  readonly interrupted: boolean;
  /** Wall time of this call. */
  readonly seconds: number;
  /** With `saveBest`, the evaluation whose parameters `params` holds at the end. */
  readonly best?: BestEval;
}

/** What {@link train} takes besides the step and the data. */
export interface TrainOptions extends TrainerOptions {
  /** The trained parameters, by name: updated in place. */
  readonly params: Map<string, Float32Array>;
  /** Metrics, checkpoints and evaluation. */
  readonly hooks?: TrainerHooks;
  /** Dropout inputs of the step, fed a fresh mask each micro-batch (see {@link batchFeeds}). */
  readonly masks?: readonly MaskInput[];
  /** Continue from this checkpoint: parameters, optimizer, generator and position. */
  readonly resume?: TrainerState;
  /**
   * Once aborted, the run ends after the step in progress (an evaluation due then is left to the
   * resumed run), with the final checkpoint, as `stopAfter` ends it.
   */
  readonly signal?: AbortSignal;
}

/**
 * Trains `options.params` in place: `step` computes the loss and gradients of a batch of `data`.
 *
 * @example
 * ```ts
 * import { ok } from "node:assert/strict";
 * import { train } from "./trainer.ts";
 * // A stand-in for a compiled step: loss (w - 3)², whatever the batch.
 * const step = {
 *   run: (_batch: unknown, p: ReadonlyMap<string, Float32Array>) => {
 *     const w = p.get("w")![0]!;
 *     const grads = new Map([["w", new Float32Array([2 * (w - 3)])]]);
 *     return Promise.resolve({ loss: (w - 3) ** 2, grads, extra: {} });
 *   },
 * };
 * const params = new Map([["w", new Float32Array([0])]]);
 * const data = {
 *   rows: 4,
 *   width: 1,
 *   x: new Float32Array(4),
 *   y: { kind: "targets" as const, data: new Float32Array(4), width: 1 },
 * };
 * const result = await train(step, data, {
 *   params,
 *   epochs: 50,
 *   batchSize: 4,
 *   lr: 0.1,
 *   optimizer: "sgd",
 * });
 * ok(result.steps === 50 && Math.abs(params.get("w")![0]! - 3) < 1e-3);
 * ```
 */
export async function train(
  step: Pick<TrainStep, "run">,
  data: Dataset,
  options: TrainOptions,
): Promise<TrainResult> {
  const { params, hooks = {}, masks = [], resume, signal, ...opts } = options;
  const D = TRAINER_DEFAULTS;
  const batchSize = opts.batchSize ?? D.batchSize;
  const accum = opts.gradAccum ?? D.gradAccum;
  const seed = opts.seed ?? D.seed;
  const shuffle = opts.shuffle ?? D.shuffle;
  const batchesPerEpoch = Math.ceil(data.rows / batchSize);
  const stepsPerEpoch = Math.ceil(batchesPerEpoch / accum);
  const epochs = opts.epochs ?? D.epochs;
  const totalSteps = opts.maxSteps ?? epochs * stepsPerEpoch;
  const opt = new Optimizer(opts.optimizer ?? D.optimizer, opts.optimizerOptions);
  let rng = new Rng(seed);
  let stepNo = 0, epoch = 0, position = 0, bestEval: number | null = null, badEvals = 0;
  let best: TrainerState["best"];
  if (resume) {
    ({ step: stepNo, epoch, position, bestEval, badEvals, best } = resume);
    rng = Rng.fromState(resume.rng);
    opt.load(resume.optimizer);
    for (const [k, v] of resume.params) params.get(k)?.set(v);
  }
  const t0 = performance.now();
  const state = (): TrainerState => ({
    step: stepNo,
    epoch,
    position,
    rng: rng.state(),
    optimizer: opt.state(),
    params: copyParams(params),
    bestEval,
    badEvals,
    ...(best ? { best } : {}),
    seconds: (resume?.seconds ?? 0) + (performance.now() - t0) / 1000,
  });
  let lastLoss = NaN, stoppedEarly = false, interrupted = false;
  const lastStep = Math.min(totalSteps, opts.stopAfter ?? Infinity);
  // A signal after the last step changes nothing: the run ends as planned, evaluation included.
  const stop = () => signal?.aborted === true && stepNo < lastStep;
  // Reused for every full batch: each step is done with its feeds before the next is sliced.
  // Disposing them when training ends closes the spill files of a frozen-prefix cache.
  using buffers = batchBuffers(data, batchSize);
  outer: while (
    stepNo < lastStep && epoch < Math.max(epochs, Math.ceil(totalSteps / stepsPerEpoch))
  ) {
    const order = shuffle ? new Rng(seed + 1 + epoch).permutation(data.rows) : null;
    while (position < batchesPerEpoch && stepNo < lastStep) {
      const tStep = performance.now();
      const sum = new Map<string, Float32Array>();
      let lossSum = 0, micro = 0, rows = 0, sumSq = 0;
      for (; micro < accum && position < batchesPerEpoch; micro++, position++) {
        const batch = sliceBatch(data, order, position * batchSize, batchSize, buffers);
        rows += batch.rows;
        const r = await step.run(batchFeeds(batch, masks, { rng }), params);
        if (!Number.isFinite(r.loss)) throw new NonFiniteError(stepNo + 1, "the loss");
        // The step's sum of squares is finite exactly when every gradient is (NaN and ±Inf
        // propagate), unless it overflows: only then are the gradients scanned here.
        sumSq = r.gradSumSq ?? sumOfSquares(r.grads.values());
        if (!Number.isFinite(sumSq)) sumSq = checkedSumOfSquares(r.grads, stepNo + 1);
        lossSum += r.loss;
        for (const [k, g] of r.grads) {
          const acc = sum.get(k);
          if (!acc) sum.set(k, micro === 0 && accum === 1 ? g : g.slice());
          else for (let i = 0; i < g.length; i++) acc[i] = acc[i]! + g[i]!;
        }
      }
      // The optimizer reads the mean over micro-batches, clipped: both are one factor it
      // applies to each gradient element as it reads it.
      if (micro > 1) sumSq = checkedSumOfSquares(sum, stepNo + 1);
      const gradNorm = Math.sqrt(sumSq) / micro;
      let gradScale = 1 / micro;
      if (opts.clipNorm !== undefined) {
        const coef = opts.clipNorm / (gradNorm + 1e-6);
        if (coef < 1) gradScale *= coef;
      }
      const lr = learningRate(opts.lr ?? D.lr, stepNo, {
        schedule: opts.schedule,
        warmupSteps: opts.warmupSteps,
        totalSteps,
      });
      opt.step(params, sum, lr, gradScale);
      stepNo++;
      lastLoss = lossSum / micro;
      const sps = rows / ((performance.now() - tStep) / 1000);
      await hooks.onMetric?.({
        step: stepNo,
        loss: lastLoss,
        lr,
        grad_norm: gradNorm,
        samples_per_s: round(sps),
      });
      if (
        hooks.checkpoint && hooks.checkpointEvery && stepNo % hooks.checkpointEvery === 0 &&
        stepNo < lastStep
      ) {
        await hooks.checkpoint(state(), false);
      }
      // At an epoch's end the state says so (position = batches, epoch not yet counted): the
      // resumed run then evaluates first, where this one would have.
      if (stop()) {
        interrupted = true;
        break outer;
      }
    }
    if (position >= batchesPerEpoch) {
      epoch++;
      position = 0;
      if (hooks.evaluate) {
        const ev = await hooks.evaluate(params);
        await hooks.onMetric?.({ eval: true, step: stepNo, epoch, ...ev });
        if (opts.saveBest && Number.isFinite(ev.loss) && !(best && best.loss <= ev.loss)) {
          best = { loss: ev.loss, step: stepNo, epoch, params: copyParams(params) };
        }
        if (opts.earlyStopping) {
          const minDelta = opts.earlyStopping.minDelta ?? 0;
          if (bestEval === null || ev.loss < bestEval - minDelta) {
            bestEval = ev.loss;
            badEvals = 0;
          } else if (++badEvals >= opts.earlyStopping.patience) {
            stoppedEarly = true;
            break outer;
          }
        }
      }
    }
    if (stop()) {
      interrupted = true;
      break;
    }
  }
  // The checkpoint keeps where training is; `params` then return to the best evaluation's.
  if (hooks.checkpoint) await hooks.checkpoint(state(), true);
  const kept = opts.saveBest ? best : undefined;
  for (const [k, v] of kept?.params ?? []) params.get(k)?.set(v);
  const seconds = (performance.now() - t0) / 1000;
  const ended = { steps: stepNo, lastLoss, stoppedEarly, interrupted, seconds };
  return kept ? { ...ended, best: { loss: kept.loss, step: kept.step, epoch: kept.epoch } } : ended;
}

function copyParams(params: ReadonlyMap<string, Float32Array>): Map<string, Float32Array> {
  return new Map([...params].map(([k, v]) => [k, v.slice()]));
}

/** Σ g² over every gradient element, in float64. */
function sumOfSquares(grads: Iterable<Float32Array>): number {
  let sq = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) sq += g[i]! * g[i]!;
  return sq;
}

/**
 * Σ g² in float64, where squares of float32 values cannot overflow: it is finite exactly when
 * every element is. When it is not, training stops naming the first non-finite gradient.
 */
function checkedSumOfSquares(grads: ReadonlyMap<string, Float32Array>, step: number): number {
  const sq = sumOfSquares(grads.values());
  if (Number.isFinite(sq)) return sq;
  const [bad] = [...grads].find(([, g]) => g.some((v) => !Number.isFinite(v)))!;
  throw new NonFiniteError(step, `the gradient of "${bad}"`);
}

/** Options of {@link batchFeeds}. */
export interface BatchFeedsOptions {
  /** Draws the dropout masks (training); without it dropout is off (evaluation). */
  readonly rng?: Rng;
}

/**
 * The feeds of one batch: its tensors, plus one mask per dropout input (symbolic dimensions
 * take the batch's rows). With `rng` each mask is 0/1 drawn from it, as in training; without, it
 * is filled with 1 − p, which inverted dropout's 1 / (1 − p) turns back into the identity.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { Graph } from "../engine/graph.ts";
 * import { sliceBatch } from "../data/dataset.ts";
 * import { batchFeeds } from "./trainer.ts";
 * const mask = { value: new Graph().input("mask", "F32", ["batch", 2]), p: 0.5 };
 * const data = {
 *   rows: 1,
 *   width: 1,
 *   x: new Float32Array([7]),
 *   y: { kind: "labels" as const, data: new BigInt64Array([1n]) },
 * };
 * const feeds = batchFeeds(sliceBatch(data, null, 0, 1), [mask]);
 * deepStrictEqual(Object.keys(feeds), ["x", "labels", "mask"]);
 * deepStrictEqual([...feeds.mask!.data], [0.5, 0.5]);
 * ```
 */
export function batchFeeds(
  batch: Batch,
  masks: readonly MaskInput[],
  options: BatchFeedsOptions = {},
): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = { ...batch.feeds };
  for (const m of masks) {
    const shape = m.value.shape.map((d) => (typeof d === "number" ? d : batch.rows));
    feeds[m.value.name] = options.rng
      ? dropoutMask(options.rng, shape, m.p)
      : { dtype: "F32", shape, data: new Float32Array(numel(shape)).fill(1 - m.p) };
  }
  return feeds;
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}
