/**
 * Fine-tuning end to end: a frozen base, adapters planned from a PEFT config, the compiled
 * training step, the loop, checkpoints that resume exactly, and the PEFT files at the end. With
 * `full` there is no adapter: every linear layer trains whole as a module to save, which trains a
 * model from scratch (`init_model.ts` makes one).
 *
 * Options, data and targets are checked before anything is compiled or written (see
 * `_finetune_checks.ts`). Without an output folder the run is in memory: nothing is written, and
 * the result carries the adapter, the metric lines and the summary. Output folder:
 * - `adapter_config.json`, `adapter_model.safetensors` (PEFT), `ffwd_training.json` (ours);
 * - `metrics.jsonl`: one line per step `{"step", "loss", "lr"}`, plus eval lines;
 * - `checkpoint/`: the adapter (with `saveBest`, the best so far: see `_finetune_best.ts`),
 *   `trainer_state.safetensors` (optimizer buffers, generator state, position) and
 *   `train_config.json` (the run's options), replaced atomically every `checkpointEvery` steps,
 *   at the end, and when `signal` interrupts the run;
 * - `summary.json`, `confusion.json` (classification) and `report.html`.
 *
 * @module
 */

import { Session } from "../src/engine/runtime.ts";
import type { BaseModel } from "../src/models/model.ts";
import { ITEMSIZE, numel, type Tensor, toFloat32 } from "../src/tensor.ts";
import { type Dataset, sliceBatch } from "../src/data/dataset.ts";
import { modelFeeds } from "../src/data/feeds.ts";
import { cacheDataset, planPrefix, stepInputs } from "../src/train/prefix_cache.ts";
import { TrainStep } from "../src/train/step.ts";
import { type BestEval, type EvalResult, type MetricLine, train } from "../src/train/trainer.ts";
import type { Adapter } from "../adapters/adapter.ts";
import { buildAdapted } from "../src/lora/adapted.ts";
import { readCheckpoint, writeCheckpoint } from "./checkpoint.ts";
import {
  checkFull,
  checkInMemory,
  checkNumbers,
  checkOutDir,
  checkRanks,
  checkResume,
  checkSaveBest,
  checkSplit,
  checkTrainsSomething,
  fitData,
  refuseProbabilities,
} from "./_finetune_checks.ts";
import {
  fullConfig,
  initialParams,
  runAdapters,
  toAdapter,
  trainedTensors,
} from "./_finetune_params.ts";
import { bestRecord, readBest } from "./_finetune_best.ts";
import { countCorrect, evaluate } from "./_finetune_eval.ts";
import {
  type FinetuneSummary,
  type PrefixCacheStats,
  summarize,
  writeRun,
} from "./_finetune_output.ts";
import { parseTrainConfig, readTrainConfig, type TrainConfig } from "./train_config.ts";
import {
  evalSets,
  type FinetuneOptions,
  type ResolvedTrainOptions,
  resolveTrainOptions,
  toTrainConfig,
} from "./train_options.ts";

export { countCorrect, readCheckpoint };
export type { FinetuneOptions, FinetuneSummary, PrefixCacheStats };

/** What {@link finetune} returns. */
export interface FinetuneResult {
  /**
   * The trained adapter, as saved in `outDir` (named after the folder; `adapter` in memory):
   * with `saveBest`, that of the best evaluation.
   */
  readonly adapter: Adapter;
  /** Optimizer steps taken, those before a resume included. */
  readonly steps: number;
  /** Mean loss of the last step's micro-batches. */
  readonly lastLoss: number;
  /** The last evaluation, when the run had evaluation data. */
  readonly eval?: { loss: number; accuracy?: number };
  /** With `saveBest`, the evaluation whose adapter was kept (none before the first one). */
  readonly best?: BestEval;
  /** Wall time of the training loop, that of the runs before a resume included. */
  readonly seconds: number;
  /** Values trained: A, B, DoRA magnitudes, trained biases and `modules_to_save` tensors. */
  readonly trainableParams: number;
  /** Weights and biases of the base's linear layers. */
  readonly baseParams: number;
  /** Whether early stopping ended the run. */
  readonly stoppedEarly: boolean;
  /**
   * Whether `signal` ended the run early: `resume` from `outDir` continues it exactly (an
   * in-memory run leaves no checkpoint to resume).
   */
  readonly interrupted: boolean;
  /**
   * The frozen-prefix cache, when the run had one: the values cached, their bytes (training and
   * evaluation data) and the seconds it took to compute them.
   */
  readonly prefixCache?: PrefixCacheStats;
  /** The lines of this call's `metrics.jsonl` (written or not), in order. */
  readonly metrics: readonly MetricLine[];
  /** What `summary.json` holds (written or not). */
  readonly summary: FinetuneSummary;
}

/**
 * Trains adapters on `model` with `data` and writes them to `options.outDir`, or keeps them in
 * memory without one. Options left unset come from `options.trainConfig` when given, then from
 * the defaults, as for `ffwd train` (see {@link resolveTrainOptions}).
 *
 * @example
 * ```ts
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * import { finetune } from "./finetune.ts";
 * import { defaultPeftConfig } from "../adapters/config.ts";
 * import { openSafetensorsModel } from "../src/models/blocks/safetensors_model.ts";
 * const model = await openSafetensorsModel("fixtures/mnist/base.safetensors"); // 784 → 10
 * const data = {
 *   rows: 8,
 *   width: 784,
 *   x: new Float32Array(8 * 784).fill(0.5),
 *   y: { kind: "labels" as const, data: new BigInt64Array(8).fill(3n) },
 * };
 * // No outDir: nothing is written.
 * const result = await finetune(model, data, {
 *   config: defaultPeftConfig({ r: 4, loraAlpha: 8, targetModules: ["fc1", "fc2"] }),
 *   loss: "cross_entropy",
 *   batchSize: 4,
 * });
 * strictEqual(result.steps, 2);
 * deepStrictEqual([...result.adapter.layers.keys()], ["fc1", "fc2"]);
 * deepStrictEqual(result.metrics.map((line) => line.step), [1, 2]);
 * model.close();
 * ```
 */
export async function finetune(
  model: BaseModel,
  data: Dataset,
  options: FinetuneOptions,
): Promise<FinetuneResult> {
  const resolved = resolveTrainOptions(await trainConfigOf(options.trainConfig), options);
  // Everything that can be wrong is checked before anything is compiled or written.
  checkFull(resolved);
  const opts = resolved.full
    ? { ...resolved, config: fullConfig(resolved.config, model) }
    : resolved;
  const outDir = opts.outDir;
  checkNumbers(opts);
  checkInMemory(opts);
  refuseProbabilities(model, opts.loss);
  if (outDir !== undefined) await checkOutDir(outDir);
  const resume = opts.resume ? await readCheckpoint(opts.resume) : undefined;
  const advice: string[] = [];
  const names = model.layers.map((l) => l.name);
  const adapters = runAdapters(model, opts.config, (message) => advice.push(message));
  checkRanks(adapters, advice, opts.onWarning);
  const extraKeys = trainedTensors(model, adapters, opts.config);
  checkTrainsSomething(adapters, extraKeys, names);
  const built = buildAdapted(model, adapters, {
    loss: opts.loss,
    dropout: opts.config.loraDropout,
    trainable: new Set(extraKeys.keys()),
  });
  const source = opts.data ? `"${opts.data}"` : "the training data";
  const fitted = fitData(data, opts.loss, built.output.shape, source);
  const sets = await evalSets(fitted, opts, model.inputs);
  checkSplit(opts, fitted.rows, sets, source);
  const trainData = sets.data;
  const evalData = sets.evalData &&
    fitData(sets.evalData, opts.loss, built.output.shape, evalSource(opts));
  const where = `Cannot fine-tune "${model.source}"`;
  modelFeeds(built.inputs, sliceBatch(trainData, null, 0, 1).feeds, where);
  fixedBatch(built.inputs, opts.batchSize, [trainData, evalData], where);
  const params = await initialParams(model, adapters, opts);
  for (const key of extraKeys.keys()) {
    params.set(key, toFloat32(await model.readTensor(key)).data.slice());
  }
  if (resume) checkResume(resume, params, opts.resume!);
  // A resumed run keeps saveBest, and the best so far, from its checkpoint's adapter.
  const kept = opts.resume && opts.saveBest !== false
    ? await readBest(opts.resume, adapters, extraKeys, params)
    : undefined;
  const saveBest = opts.saveBest ?? kept?.saveBest ?? false;
  checkSaveBest(saveBest, evalData);
  const whole = new Set(
    [...extraKeys.values()].filter((t) => t.kind === "extra").map((t) => t.module),
  );
  opts.onStart?.({
    adapters,
    whole: [...whole],
    frozen: names.filter((n) => !whole.has(n) && !adapters.some((a) => a.layer.name === n)),
    trainRows: trainData.rows,
    evalRows: evalData?.rows ?? 0,
  });
  const values = [
    ...[...built.adapterInputs.values()].flatMap((
      i,
    ) => [i.A, i.B, ...(i.magnitude ? [i.magnitude] : [])]),
    ...built.graph.inputs.filter((v) => extraKeys.has(v.name)),
  ];
  const forward = [built.loss!, built.output];
  const plan = opts.cache === false ? undefined : planPrefix(built.graph, forward, built.inputs);
  const fed = plan?.cached;
  const stepSpecs = plan ? stepInputs(plan) : built.inputs;
  const cacheStart = performance.now();
  // A cache over its budget spills beside the run folder, never inside a half-made one; an
  // in-memory run has nowhere to spill it.
  const spillDir = outDir && `${outDir.replace(/\/+$/, "")}.prefix_cache.${crypto.randomUUID()}`;
  const cacheOpts = {
    threads: opts.threads,
    budget: opts.cacheBudget ?? defaultBudget(),
    spillDir,
  };
  const cacheOf = (d: Dataset) =>
    cacheDataset(built.graph, plan!, built.inputs, d, cacheOpts).catch((e) => {
      throw spillDir || !(e instanceof RangeError) ? e : new RangeError(
        `${e.message}; an in-memory run cannot spill it to files: pass outDir, a larger ` +
          "cacheBudget, or cache: false",
      );
    });
  const [trainRows, evalRows] = plan
    ? [await cacheOf(trainData), evalData && await cacheOf(evalData)]
    : [trainData, evalData];
  const cachedInputs = [...trainRows.inputs?.values() ?? [], ...evalRows?.inputs?.values() ?? []];
  const cache = plan && {
    values: plan.cached.length,
    bytes: [trainRows, evalRows].reduce((n, d) => n + (d ? datasetBytes(d) : 0), 0),
    spilled: cachedInputs.some((t) => t.spill !== undefined),
    seconds: (performance.now() - cacheStart) / 1000,
  };
  const step = await TrainStep.compile(
    { graph: built.graph, loss: built.loss!, params: values },
    { threads: opts.threads, fed },
  );
  const evalSession = evalRows
    ? await Session.compile(built.graph, { threads: opts.threads, outputs: forward, fed })
    : null;
  let metrics: Deno.FsFile | undefined;
  let lastEval: EvalResult | undefined;
  const lines: MetricLine[] = [];
  try {
    // Interrupted before training starts: nothing is written.
    opts.signal?.throwIfAborted();
    if (outDir !== undefined) {
      const metricsPath = `${outDir}/metrics.jsonl`;
      await Deno.mkdir(outDir, { recursive: true });
      if (!resume) await Deno.writeTextFile(metricsPath, "");
      metrics = await Deno.open(metricsPath, { append: true, create: true });
    }
    const log = metrics;
    const runConfig = toTrainConfig(opts);
    const renamed = {
      run: (batch: Record<string, Tensor>, p: ReadonlyMap<string, Float32Array>) =>
        step.run(modelFeeds(stepSpecs, batch, where), p),
    };
    const result = await train(renamed, trainRows, {
      ...opts,
      saveBest,
      params,
      masks: built.masks,
      resume: resume && kept?.best ? { ...resume, best: kept.best } : resume,
      hooks: {
        onMetric: async (line) => {
          lines.push(line);
          opts.onMetric?.(line);
          await log?.write(new TextEncoder().encode(JSON.stringify(line) + "\n"));
        },
        checkpointEvery: opts.checkpointEvery,
        checkpoint: outDir === undefined ? undefined : (state) =>
          writeCheckpoint(
            `${outDir}/checkpoint`,
            toAdapter(
              opts,
              adapters,
              state.best?.params ?? state.params,
              extraKeys,
              saveBest ? bestRecord(state.best) : undefined,
            ),
            state,
            runConfig,
          ),
        evaluate: evalSession && evalRows
          ? async (p) => {
            lastEval = await evaluate(evalSession, built, stepSpecs, evalRows, p, opts.batchSize);
            return lastEval;
          }
          : undefined,
      },
    });
    const adapter = toAdapter(opts, adapters, params, extraKeys, {
      steps: result.steps,
      targets: [runConfig.targets ?? []].flat().join(","),
      loss: opts.loss,
      optimizer: opts.optimizer,
      lr: opts.lr,
      epochs: opts.epochs,
      batch_size: opts.batchSize,
      seed: opts.seed,
      ...(result.best ? { best_eval_loss: result.best.loss, best_step: result.best.step } : {}),
    });
    const trainableParams = [...params.values()].reduce((n, p) => n + p.length, 0);
    const baseParams = countBaseParams(model);
    const seconds = (resume?.seconds ?? 0) + result.seconds;
    const summary = summarize(result, lastEval, {
      seconds,
      trainable_params: trainableParams,
      base_params: baseParams,
      adapted_layers: adapters.map((a) => a.layer.name),
      prefix_cache: cache ?? null,
    });
    if (outDir !== undefined) await writeRun(outDir, adapter, summary, lastEval, opts.report);
    const evalOut = lastEval ? { loss: lastEval.loss, accuracy: lastEval.accuracy } : undefined;
    return {
      adapter,
      ...result,
      seconds,
      eval: evalOut,
      trainableParams,
      baseParams,
      prefixCache: cache,
      metrics: lines,
      summary,
    };
  } finally {
    metrics?.close();
    await step.release();
    await evalSession?.release();
    if (spillDir) await Deno.remove(spillDir, { recursive: true }).catch(() => {});
  }
}

/** Bytes of a dataset's named inputs, spilled ones included. */
function datasetBytes(d: Dataset): number {
  let n = 0;
  for (const t of d.inputs?.values() ?? []) n += d.rows * numel(t.shape) * ITEMSIZE[t.dtype];
  return n;
}

/** How messages name the evaluation data. */
function evalSource(o: ResolvedTrainOptions): string {
  if (!o.evalData && o.evalFile) return `"${o.evalFile}"`;
  return o.data && !o.evalData ? `the rows held out of "${o.data}"` : "the evaluation data";
}

/** A training config given as an object (validated) or a path (read), or none. */
async function trainConfigOf(given: TrainConfig | string | undefined): Promise<TrainConfig> {
  if (given === undefined) return {};
  return typeof given === "string"
    ? await readTrainConfig(given)
    : parseTrainConfig(given, "trainConfig");
}

/** A quarter of the machine's memory: the default budget of the frozen-prefix cache. */
function defaultBudget(): number {
  return Deno.systemMemoryInfo().total / 4;
}

function countBaseParams(model: BaseModel): number {
  let n = 0;
  for (const l of model.layers) n += l.inFeatures * l.outFeatures + (l.biasKey ? l.outFeatures : 0);
  return n;
}

/**
 * A batch size the file fixes and the import could not free (a node combines rows) limits
 * training to batches of exactly that size: every batch, the last included.
 */
function fixedBatch(
  inputs: readonly { name: string; shape: readonly (number | string)[] }[],
  batchSize: number,
  sets: readonly (Dataset | undefined)[],
  where: string,
): void {
  const input = inputs.find((i) => typeof i.shape[0] === "number");
  if (!input) return;
  const b = input.shape[0] as number;
  const rows = sets.filter((d) => d !== undefined).map((d) => d!.rows);
  if (batchSize !== b || rows.some((r) => r % b !== 0)) {
    throw new RangeError(
      `${where}: the model's input "${input.name}" takes exactly ${b} rows (a batch size fixed ` +
        `in the file that the import could not free), so training is limited to --batch-size ${b} ` +
        `and data of a multiple of ${b} rows (got --batch-size ${batchSize}, ${
          rows.join(" and ")
        } rows)`,
    );
  }
}
