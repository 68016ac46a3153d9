/**
 * What a fine-tuning run reports at its end (imported only by `finetune.ts`, which re-exports the
 * types): the summary, and the files of a run with an output folder (the adapter,
 * `summary.json`, `confusion.json`, `report.html`).
 *
 * @module
 */

import { writeFileAtomic } from "../src/fs/atomic.ts";
import type { BestEval, EvalResult, TrainResult } from "../src/train/trainer.ts";
import type { Adapter } from "../adapters/adapter.ts";
import { savePeftAdapter } from "../adapters/peft.ts";
import { writeReport } from "../report/html.ts";
import { trackWrite } from "./checkpoint.ts";

const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v, null, 2) + "\n");

/** The frozen-prefix cache of a run (see `FinetuneOptions.cache`). */
export interface PrefixCacheStats {
  /** Graph values cached: the outputs of the frozen prefix the step reads. */
  readonly values: number;
  /** Their size over the training and evaluation rows. */
  readonly bytes: number;
  /** Whether they passed the cache budget and went to files beside the run folder. */
  readonly spilled: boolean;
  /** Time spent computing them. */
  readonly seconds: number;
}

/**
 * A run's `summary.json`, snake_case as written; `FinetuneResult` has the same in camelCase.
 */
export interface FinetuneSummary {
  /** Optimizer steps taken, those before a resume included. */
  readonly steps: number;
  /** Mean loss of the last step's micro-batches. */
  readonly last_loss: number;
  /** The last evaluation (accuracy for class labels). */
  readonly eval: { loss: number; accuracy: number | null } | null;
  /** With `saveBest`, the evaluation whose adapter was kept. */
  readonly best: BestEval | null;
  /** Wall time of the training loop, that of the runs before a resume included. */
  readonly seconds: number;
  /** Values trained: A, B, DoRA magnitudes, trained biases and `modules_to_save` tensors. */
  readonly trainable_params: number;
  /** Weights and biases of the base's linear layers. */
  readonly base_params: number;
  /** Whether early stopping ended the run. */
  readonly stopped_early: boolean;
  /** Whether `signal` ended the run before its last step. */
  readonly interrupted: boolean;
  /** Module paths of the layers with adapters. */
  readonly adapted_layers: readonly string[];
  /** The frozen-prefix cache, when the run had one. */
  readonly prefix_cache: PrefixCacheStats | null;
}

/** The summary of a run, from its loop's result, its last evaluation and its counts. */
export function summarize(
  result: TrainResult,
  lastEval: EvalResult | undefined,
  counts: Pick<
    FinetuneSummary,
    "seconds" | "trainable_params" | "base_params" | "adapted_layers" | "prefix_cache"
  >,
): FinetuneSummary {
  return {
    steps: result.steps,
    last_loss: result.lastLoss,
    eval: lastEval ? { loss: lastEval.loss, accuracy: lastEval.accuracy ?? null } : null,
    best: result.best ?? null,
    seconds: counts.seconds,
    trainable_params: counts.trainable_params,
    base_params: counts.base_params,
    stopped_early: result.stoppedEarly,
    interrupted: result.interrupted,
    adapted_layers: counts.adapted_layers,
    prefix_cache: counts.prefix_cache,
  };
}

/**
 * The run's files at its end: the adapter, `summary.json`, `confusion.json` and the report.
 * Tracked: a process ending at once lets them finish (the first swaps the whole folder).
 */
export async function writeRun(
  outDir: string,
  adapter: Adapter,
  summary: FinetuneSummary,
  lastEval: EvalResult | undefined,
  report = true,
): Promise<void> {
  await trackWrite(() => savePeftAdapter(outDir, adapter));
  await trackWrite(() => writeFileAtomic(`${outDir}/summary.json`, json(summary)));
  if (lastEval?.confusion) {
    const confusion = { matrix: lastEval.confusion, step: summary.steps };
    await trackWrite(() => writeFileAtomic(`${outDir}/confusion.json`, json(confusion)));
  }
  if (report) await trackWrite(() => writeReport(outDir));
}
