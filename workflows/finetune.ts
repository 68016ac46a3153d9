/**
 * Fine-tuning end to end: a frozen base, adapters planned from a PEFT config, the compiled
 * training step, the loop, checkpoints that resume exactly, and the PEFT files at the end.
 *
 * Options, data and targets are checked before anything is compiled or written (see
 * `_finetune_checks.ts`). Output folder:
 * - `adapter_config.json`, `adapter_model.safetensors` (PEFT), `ffwd_training.json` (ours);
 * - `metrics.jsonl`: one line per step `{"step", "loss", "lr"}`, plus eval lines;
 * - `checkpoint/`: the adapter, `trainer_state.safetensors` (optimizer buffers, generator state,
 *   position) and `train_config.json` (the run's options), replaced atomically every
 *   `checkpointEvery` steps, at the end, and when `signal` interrupts the run;
 * - `summary.json` and `report.html`.
 *
 * @module
 */

import { Session } from "../src/engine/runtime.ts";
import { writeFileAtomic } from "../src/fs/atomic.ts";
import type { BaseModel } from "../src/models/model.ts";
import { ITEMSIZE, numel, type Tensor, toFloat32 } from "../src/tensor.ts";
import { type Dataset, sliceBatch } from "../src/data/dataset.ts";
import { type InputSpec, modelFeeds } from "../src/data/feeds.ts";
import { cacheDataset, planPrefix, stepInputs } from "../src/train/prefix_cache.ts";
import { TrainStep } from "../src/train/step.ts";
import { batchFeeds, train } from "../src/train/trainer.ts";
import type { Adapter } from "../adapters/adapter.ts";
import { toTargetOptions } from "../adapters/config.ts";
import { buildAdapted } from "../src/lora/adapted.ts";
import { savePeftAdapter } from "../adapters/peft.ts";
import { planAdapters } from "../adapters/targets.ts";
import { writeReport } from "../report/html.ts";
import { readCheckpoint, trackWrite, writeCheckpoint } from "./checkpoint.ts";
import {
  checkNumbers,
  checkOutDir,
  checkRanks,
  checkResume,
  checkSplit,
  fitData,
  refuseProbabilities,
} from "./_finetune_checks.ts";
import { initialParams, toAdapter, trainedTensors } from "./_finetune_params.ts";
import { parseTrainConfig, readTrainConfig, type TrainConfig } from "./train_config.ts";
import {
  evalSets,
  type FinetuneOptions,
  type ResolvedTrainOptions,
  resolveTrainOptions,
  toTrainConfig,
} from "./train_options.ts";

export { readCheckpoint };
export type { FinetuneOptions };

const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v, null, 2) + "\n");

/** Resolved options with the output folder known. */
type RunOptions = ResolvedTrainOptions & { readonly outDir: string };

/** What {@link finetune} returns. */
export interface FinetuneResult {
  /** The trained adapter, as saved in `outDir` (named after the folder). */
  readonly adapter: Adapter;
  /** Optimizer steps taken, those before a resume included. */
  readonly steps: number;
  /** Mean loss of the last step's micro-batches. */
  readonly lastLoss: number;
  /** The last evaluation, when the run had evaluation data. */
  readonly eval?: { loss: number; accuracy?: number };
  /** Wall time of the training loop, that of the runs before a resume included. */
  readonly seconds: number;
  /** Number of trained values: A, B and DoRA magnitudes. */
  readonly trainableParams: number;
  /** Weights and biases of the base's linear layers. */
  readonly baseParams: number;
  /** Whether early stopping ended the run. */
  readonly stoppedEarly: boolean;
  /** Whether `signal` ended the run early: `resume` from `outDir` continues it exactly. */
  readonly interrupted: boolean;
  /**
   * The frozen-prefix cache, when the run had one: the values cached, their bytes (training and
   * evaluation data) and the seconds it took to compute them.
   */
  readonly prefixCache?: { values: number; bytes: number; spilled: boolean; seconds: number };
}

/**
 * Trains adapters on `model` with `data` and writes them to `options.outDir`. Options left unset
 * come from `options.trainConfig` when given, then from the defaults, as for `ffwd train` (see
 * {@link resolveTrainOptions}).
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
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
 * const result = await finetune(model, data, {
 *   config: defaultPeftConfig({ r: 4, loraAlpha: 8, targetModules: ["fc1", "fc2"] }),
 *   loss: "cross_entropy",
 *   outDir: await Deno.makeTempDir(),
 *   batchSize: 4,
 * });
 * strictEqual(result.steps, 2);
 * model.close();
 * ```
 */
export async function finetune(
  model: BaseModel,
  data: Dataset,
  options: FinetuneOptions,
): Promise<FinetuneResult> {
  const resolved = resolveTrainOptions(await trainConfigOf(options.trainConfig), options);
  const outDir = resolved.outDir;
  if (!outDir) {
    throw new TypeError(
      'Cannot fine-tune without an output folder: pass outDir, or set "out" in the training config',
    );
  }
  const opts: RunOptions = { ...resolved, outDir };
  // Everything that can be wrong is checked before anything is compiled or written.
  checkNumbers(opts);
  refuseProbabilities(model, opts.loss);
  await checkOutDir(outDir);
  const resume = opts.resume ? await readCheckpoint(opts.resume) : undefined;
  const advice: string[] = [];
  const adapters = planAdapters(model, {
    ...toTargetOptions(opts.config, model.layers.map((l) => l.name)),
    onWarning: (message) => advice.push(message),
  });
  checkRanks(adapters, advice, opts.onWarning);
  const extraKeys = trainedTensors(model, adapters, opts.config);
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
  const params = await initialParams(model, adapters, opts);
  for (const key of extraKeys.keys()) {
    params.set(key, toFloat32(await model.readTensor(key)).data.slice());
  }
  if (resume) checkResume(resume, params, opts.resume!);
  opts.onStart?.({
    adapters,
    frozen: model.layers.filter((l) => !adapters.some((a) => a.layer === l)).map((l) => l.name),
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
  // A cache over its budget spills beside the run folder, never inside a half-made one.
  const spillDir = `${opts.outDir.replace(/\/+$/, "")}.prefix_cache.${crypto.randomUUID()}`;
  const cacheOpts = {
    threads: opts.threads,
    budget: opts.cacheBudget ?? defaultBudget(),
    spillDir,
  };
  const [trainRows, evalRows] = plan
    ? [
      await cacheDataset(built.graph, plan, built.inputs, trainData, cacheOpts),
      evalData && await cacheDataset(built.graph, plan, built.inputs, evalData, cacheOpts),
    ]
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
  const metricsPath = `${opts.outDir}/metrics.jsonl`;
  let metrics: Deno.FsFile | undefined;
  let lastEval: EvalResult | undefined;
  try {
    // Interrupted before training starts: nothing is written.
    opts.signal?.throwIfAborted();
    await Deno.mkdir(opts.outDir, { recursive: true });
    if (!resume) await Deno.writeTextFile(metricsPath, "");
    metrics = await Deno.open(metricsPath, { append: true, create: true });
    const log = metrics;
    const runConfig = toTrainConfig(opts);
    const renamed = {
      run: (batch: Record<string, Tensor>, p: ReadonlyMap<string, Float32Array>) =>
        step.run(modelFeeds(stepSpecs, batch, where), p),
    };
    const result = await train(renamed, trainRows, {
      ...opts,
      params,
      masks: built.masks,
      resume,
      hooks: {
        onMetric: async (line) => {
          opts.onMetric?.(line);
          await log.write(new TextEncoder().encode(JSON.stringify(line) + "\n"));
        },
        checkpointEvery: opts.checkpointEvery,
        checkpoint: (state) =>
          writeCheckpoint(
            `${opts.outDir}/checkpoint`,
            toAdapter(opts, adapters, state.params, extraKeys),
            state,
            runConfig,
          ),
        evaluate: evalSession && evalRows
          ? async (
            p,
          ) => (lastEval = await evaluate(
            evalSession,
            built,
            stepSpecs,
            evalRows,
            p,
            opts.batchSize,
          ))
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
    });
    // Tracked: a process ending at once lets them finish (the first swaps the whole folder).
    await trackWrite(() => savePeftAdapter(opts.outDir, adapter));
    const trainableParams = [...params.values()].reduce((n, p) => n + p.length, 0);
    const baseParams = countBaseParams(model);
    const seconds = (resume?.seconds ?? 0) + result.seconds;
    const summary = {
      steps: result.steps,
      last_loss: result.lastLoss,
      eval: lastEval ? { loss: lastEval.loss, accuracy: lastEval.accuracy ?? null } : null,
      seconds,
      trainable_params: trainableParams,
      base_params: baseParams,
      stopped_early: result.stoppedEarly,
      interrupted: result.interrupted,
      adapted_layers: adapters.map((a) => a.layer.name),
      prefix_cache: cache ?? null,
    };
    await trackWrite(() => writeFileAtomic(`${opts.outDir}/summary.json`, json(summary)));
    if (lastEval?.confusion) {
      const confusion = { matrix: lastEval.confusion, step: result.steps };
      await trackWrite(() => writeFileAtomic(`${opts.outDir}/confusion.json`, json(confusion)));
    }
    await trackWrite(() => writeReport(opts.outDir));
    const evalOut = lastEval ? { loss: lastEval.loss, accuracy: lastEval.accuracy } : undefined;
    return {
      adapter,
      ...result,
      seconds,
      eval: evalOut,
      trainableParams,
      baseParams,
      prefixCache: cache,
    };
  } finally {
    metrics?.close();
    await step.release();
    await evalSession?.release();
    await Deno.remove(spillDir, { recursive: true }).catch(() => {});
  }
}

/** Bytes of a dataset's named inputs, spilled ones included. */
function datasetBytes(d: Dataset): number {
  let n = 0;
  for (const t of d.inputs?.values() ?? []) n += d.rows * numel(t.shape) * ITEMSIZE[t.dtype];
  return n;
}

/** How messages name the evaluation data. */
function evalSource(o: RunOptions): string {
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

/** Loss and accuracy over a dataset, forward only, dropout off. */
async function evaluate(
  session: Session,
  built: ReturnType<typeof buildAdapted>,
  inputs: readonly InputSpec[],
  data: Dataset,
  params: ReadonlyMap<string, Float32Array>,
  batchSize: number,
): Promise<EvalResult> {
  let lossSum = 0, correct = 0;
  const classes = built.output.shape.at(-1);
  const k = typeof classes === "number" ? classes : 0;
  const matrix = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  for (let start = 0; start < data.rows; start += batchSize) {
    const b = sliceBatch(data, null, start, batchSize);
    const feeds = modelFeeds(inputs, batchFeeds(b, built.masks), "Cannot evaluate");
    for (const v of built.graph.inputs) {
      const d = params.get(v.name);
      if (d) feeds[v.name] = { dtype: "F32", shape: v.shape as number[], data: d };
    }
    const out = await session.run(feeds);
    lossSum += Number(out[built.loss!.name]!.data[0]) * b.rows;
    if (built.target?.name === "labels") {
      correct += countCorrect(out[built.output.name]!, b.feeds.labels!, k ? matrix : undefined);
    }
  }
  const loss = lossSum / data.rows;
  return built.target?.name === "labels"
    ? { loss, accuracy: correct / data.rows, confusion: matrix }
    : { loss };
}

/** Loss, accuracy and (classification) the confusion matrix of one evaluation. */
interface EvalResult {
  loss: number;
  accuracy?: number;
  /** `matrix[true][predicted]` counts. */
  confusion?: number[][];
}

/**
 * Rows whose arg-max equals the label; also counts `confusion[label][argmax]` when given.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { countCorrect } from "./finetune.ts";
 * const logits = { dtype: "F32" as const, shape: [2, 2], data: new Float32Array([0, 1, 1, 0]) };
 * const labels = { dtype: "I64" as const, shape: [2], data: new BigInt64Array([1n, 1n]) };
 * strictEqual(countCorrect(logits, labels), 1);
 * ```
 */
export function countCorrect(logits: Tensor, labels: Tensor, confusion?: number[][]): number {
  const z = logits.data as Float32Array;
  const y = labels.data as BigInt64Array;
  const c = logits.shape[logits.shape.length - 1]!;
  let n = 0;
  for (let r = 0; r < y.length; r++) {
    let best = 0;
    for (let j = 1; j < c; j++) if (z[r * c + j]! > z[r * c + best]!) best = j;
    if (BigInt(best) === y[r]) n++;
    const row = confusion?.[Number(y[r])];
    if (row && best < row.length) row[best] = row[best]! + 1;
  }
  return n;
}

function countBaseParams(model: BaseModel): number {
  let n = 0;
  for (const l of model.layers) n += l.inFeatures * l.outFeatures + (l.biasKey ? l.outFeatures : 0);
  return n;
}
