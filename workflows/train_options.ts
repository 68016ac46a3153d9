/**
 * The options of a training run in one place: what each one is, its default, and how a training
 * config file (`ffwd train --config train.json`, see `train_config.ts`) combines with options
 * given explicitly. Explicit options win over the file and the file over the defaults, for
 * `ffwd train`'s flags and for `finetune()`'s options alike: both go through
 * {@link resolveTrainOptions}.
 *
 * @module
 */

import { defaultPeftConfig, type PeftConfig } from "../adapters/config.ts";
import type { LayerAdapter } from "../src/lora/branch.ts";
import { type Dataset, splitDataset } from "../src/data/dataset.ts";
import { loadDataset } from "../src/data/files.ts";
import type { InputSpec } from "../src/data/feeds.ts";
import type { LossName } from "../src/lora/adapted.ts";
import { Rng } from "../src/rng.ts";
import type { OptimizerName } from "../src/train/optim.ts";
import { type MetricLine, TRAINER_DEFAULTS, type TrainerOptions } from "../src/train/trainer.ts";
import type { TrainConfig } from "./train_config.ts";

/**
 * The defaults of a run's options: the loop's (`TRAINER_DEFAULTS`), LoRA of rank 8 and alpha
 * 2 × rank on every linear layer but a whole model's output layer (`all-linear`, as PEFT), no
 * dropout, no trained bias, and cross-entropy.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { TRAIN_DEFAULTS } from "./train_options.ts";
 * strictEqual(TRAIN_DEFAULTS.alphaPerRank * TRAIN_DEFAULTS.rank, 16);
 * ```
 */
export const TRAIN_DEFAULTS = {
  ...TRAINER_DEFAULTS,
  rank: 8,
  /** The default alpha is this multiple of the rank. */
  alphaPerRank: 2,
  targets: "all-linear",
  dropout: 0,
  dora: false,
  rslora: false,
  bias: "none",
  loss: "cross_entropy",
} as const;

/**
 * The options of a training run: `ffwd train`'s flags (camelCase; a training config file holds
 * the same in snake_case), the loop's settings, and callbacks. Every one is optional; see
 * {@link TRAIN_DEFAULTS} for what an unset one means.
 */
export interface FinetuneOptions extends TrainerOptions {
  /**
   * A training config, or the path of its JSON file (`ffwd train --config`): it fills the
   * options not given here.
   */
  readonly trainConfig?: TrainConfig | string;
  /** The base model's file, recorded in the adapter's config (`ffwd train` opens it). */
  readonly model?: string;
  /** The block to adapt, in a model file with several (`ffwd train` opens it). */
  readonly block?: string;
  /** ONNX: the value the model ends at instead of its first output (`ffwd train` opens it). */
  readonly output?: string;
  /** The training data's file (`ffwd train` reads it). */
  readonly data?: string;
  /**
   * Folder for the adapter, metrics, checkpoints, summary and report. Without it (and without
   * the file's `out`) the run is in memory: nothing is written, and `finetune()`'s result carries
   * the adapter, the metric lines and the summary.
   */
  readonly outDir?: string;
  /**
   * Write `report.html` in `outDir` (default: when there is an `outDir`). Asked for without
   * one, like `checkpointEvery`, it is an error.
   */
  readonly report?: boolean;
  /**
   * Save the adapter of the evaluation with the lowest eval loss instead of the last step's
   * (early stopping then restores it too); it needs evaluation data. With `outDir`, the
   * checkpoint's adapter is that best one and says so in its `ffwd_training.json`, and a resumed
   * run keeps it unless `saveBest` is `false` (a training config file has no field for it).
   */
  readonly saveBest?: boolean;
  /** Data evaluated after each epoch (loss, and accuracy for cross-entropy), dropout off. */
  readonly evalData?: Dataset;
  /** A file of evaluation data, read when `evalData` is not given. */
  readonly evalFile?: string;
  /** Without `evalData` or `evalFile`: hold out this fraction of the data for evaluation. */
  readonly evalSplit?: number;
  /** The label column of CSV data files (a header name or a 0-based index). */
  readonly labelColumn?: string | number;
  /**
   * The adapter to train, whole (PEFT config). When given, the adapter options below and the
   * file's adapter fields are not used.
   */
  readonly config?: PeftConfig;
  /** LoRA rank. */
  readonly rank?: number;
  /** LoRA alpha (default: 2 × rank). */
  readonly alpha?: number;
  /** `"all-linear"`, module names, `"/regex/"`, or a comma-separated list of names. */
  readonly targets?: string | readonly string[];
  /** Train DoRA adapters. */
  readonly dora?: boolean;
  /** Scale by alpha / √rank (rsLoRA). */
  readonly rslora?: boolean;
  /** Which biases train with the adapter (PEFT's `bias`). */
  readonly bias?: PeftConfig["bias"];
  /** Layers trained whole and saved in the adapter (names, or a comma-separated list). */
  readonly modulesToSave?: string | readonly string[];
  /**
   * Train every weight and bias of every linear layer, with no adapter: `targets` `"none"` and
   * every linear layer a module to save (PEFT's `modules_to_save`), so the saved folder is a PEFT
   * adapter that holds the whole trained layers, and merge and export turn it into a model. A
   * checkpoint records what it resolved to (`targets: "none"` and the layers' names), so resuming
   * needs no `full`.
   */
  readonly full?: boolean;
  /** LoRA dropout probability. */
  readonly dropout?: number;
  /** The loss appended to the model's first output; it decides the labels or targets fed. */
  readonly loss?: LossName;
  /** Optimizer steps between checkpoints in `<outDir>/checkpoint` (default: only at the end). */
  readonly checkpointEvery?: number;
  /**
   * Continue from `<dir>/checkpoint` (or `<dir>` itself when it holds a checkpoint), with the
   * options of the run that wrote it (`ffwd train --resume` reads them from the checkpoint's
   * `train_config.json`; `finetune()` takes them as given).
   */
  readonly resume?: string;
  /** Warm start from an adapter folder (ours, PEFT's or MLX's). */
  readonly initAdapter?: string;
  /** Intra-op threads of the sessions (default: the number of cores). */
  readonly threads?: number;
  /**
   * Compute the frozen prefix (everything before the earliest adapter: convolutions, recurrent
   * layers, embeddings) once per dataset and train on its outputs (default true). Exact: the
   * numbers do not change.
   */
  readonly cache?: boolean;
  /** Bytes the prefix cache may hold (default a quarter of the machine's memory). */
  readonly cacheBudget?: number;
  /** Receives each line written to `metrics.jsonl`, as it is written. */
  readonly onMetric?: (line: MetricLine) => void;
  /** Receives advice that does not stop training (e.g. a rank above a layer's min(in, out)). */
  readonly onWarning?: (message: string) => void;
  /**
   * Called once the options, the data and the targets are checked, before compiling: the layers
   * that get adapters, those trained whole, the other linear layers, and the rows that train and
   * evaluate.
   */
  readonly onStart?: (plan: {
    readonly adapters: readonly LayerAdapter[];
    /** Layers trained whole (modules to save). */
    readonly whole: readonly string[];
    readonly frozen: readonly string[];
    readonly trainRows: number;
    readonly evalRows: number;
  }) => void;
  /**
   * Once aborted, training ends after the step in progress and the run is saved as at its end
   * (checkpoint, adapter, summary, report), with `interrupted` set in the result: resuming it
   * gives what the uninterrupted run gives. Aborted before training starts, nothing is written
   * and `finetune()` rejects with the signal's reason.
   */
  readonly signal?: AbortSignal;
}

/**
 * Options with the file and the defaults applied: the adapter options folded into `config`,
 * and the values a run records (loss, epochs, batch size, learning rate, optimizer, seed) set.
 */
export interface ResolvedTrainOptions extends
  Omit<
    FinetuneOptions,
    | "trainConfig"
    | "config"
    | "rank"
    | "alpha"
    | "targets"
    | "dora"
    | "rslora"
    | "bias"
    | "modulesToSave"
    | "dropout"
    | "loss"
  > {
  /** The adapter to train: the given config, or one built from the adapter options. */
  readonly config: PeftConfig;
  /** The loss appended to the model's first output. */
  readonly loss: LossName;
  /** Passes over the data. */
  readonly epochs: number;
  /** Rows per micro-batch. */
  readonly batchSize: number;
  /** Base learning rate. */
  readonly lr: number;
  /** Update rule. */
  readonly optimizer: OptimizerName;
  /** Seeds initialisation, the epoch order, dropout and the evaluation split. */
  readonly seed: number;
  /** Visit rows in a new random order each epoch. */
  readonly shuffle: boolean;
}

/**
 * Applies a training config file and the defaults to `options`: an option given in `options`
 * wins over the file's field, which wins over the default. The result leaves out what is unset
 * everywhere.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { resolveTrainOptions } from "./train_options.ts";
 * const file = { rank: 4, lr: 0.01, targets: "fc1,fc2", early_stopping: 3 };
 * const o = resolveTrainOptions(file, { lr: 0.1, outDir: "runs/a" });
 * deepStrictEqual(
 *   [o.config.r, o.config.loraAlpha, o.config.targetModules, o.lr, o.earlyStopping],
 *   [4, 8, ["fc1", "fc2"], 0.1, { patience: 3 }],
 * );
 * deepStrictEqual(
 *   [o.outDir, o.batchSize, o.optimizer, o.loss],
 *   ["runs/a", 32, "adamw", "cross_entropy"],
 * );
 * ```
 */
export function resolveTrainOptions(
  file: TrainConfig,
  options: FinetuneOptions = {},
): ResolvedTrainOptions {
  const D = TRAIN_DEFAULTS;
  const {
    trainConfig: _given, // read by the caller: it is `file`
    rank: givenRank,
    alpha,
    targets,
    dora,
    rslora,
    bias,
    modulesToSave,
    dropout,
    ...o
  } = options;
  const model = o.model ?? file.model;
  const rank = givenRank ?? file.rank ?? D.rank;
  const config = o.config ?? defaultPeftConfig({
    r: rank,
    loraAlpha: alpha ?? file.alpha ?? D.alphaPerRank * rank,
    targetModules: parseTargets(targets ?? file.targets ?? (o.full ? "none" : D.targets)),
    useDora: dora ?? file.dora ?? D.dora,
    useRslora: rslora ?? file.rslora ?? D.rslora,
    bias: bias ?? file.bias ?? D.bias,
    modulesToSave: parseList(modulesToSave ?? file.modules_to_save) ?? null,
    loraDropout: dropout ?? file.dropout ?? D.dropout,
    layersToTransform: file.layers_to_transform ?? null,
    rankPattern: file.rank_pattern ?? {},
    alphaPattern: file.alpha_pattern ?? {},
    initLoraWeights: file.init === "gaussian" ? "gaussian" : true,
    baseModelNameOrPath: model ?? null,
  });
  const optimizerOptions = defined({
    weightDecay: file.weight_decay,
    momentum: file.momentum,
    nesterov: file.nesterov,
    ...defined(o.optimizerOptions ?? {}),
  });
  return defined({
    ...o,
    model,
    block: o.block ?? file.block,
    data: o.data ?? file.data,
    outDir: o.outDir ?? file.out,
    evalFile: o.evalFile ?? file.eval,
    evalSplit: o.evalSplit ?? file.eval_split,
    labelColumn: o.labelColumn ?? file.label_column,
    config,
    loss: o.loss ?? file.loss ?? D.loss,
    epochs: o.epochs ?? file.epochs ?? D.epochs,
    maxSteps: o.maxSteps ?? file.max_steps,
    batchSize: o.batchSize ?? file.batch_size ?? D.batchSize,
    gradAccum: o.gradAccum ?? file.grad_accum,
    lr: o.lr ?? file.lr ?? D.lr,
    schedule: o.schedule ?? file.schedule,
    warmupSteps: o.warmupSteps ?? file.warmup_steps,
    optimizer: o.optimizer ?? file.optimizer ?? D.optimizer,
    optimizerOptions: Object.keys(optimizerOptions).length ? optimizerOptions : undefined,
    clipNorm: o.clipNorm ?? file.clip_norm,
    seed: o.seed ?? file.seed ?? D.seed,
    shuffle: o.shuffle ?? file.shuffle ?? D.shuffle,
    earlyStopping: o.earlyStopping ??
      (file.early_stopping ? { patience: file.early_stopping } : undefined),
    checkpointEvery: o.checkpointEvery ?? file.checkpoint_every,
    initAdapter: o.initAdapter ?? file.init_adapter,
    resume: o.resume ?? file.resume,
    threads: o.threads ?? file.threads,
    cache: o.cache ?? file.cache,
    cacheBudget: o.cacheBudget ??
      (file.cache_budget_mb === undefined ? undefined : file.cache_budget_mb * 2 ** 20),
    output: o.output ?? file.output,
  });
}

/**
 * The training and evaluation sets of a run: `evalData` when given, else the rows of `evalFile`
 * (read with the training data's width and `labelColumn`), else the last `evalSplit` of the
 * data in the seed's permutation held out, else no evaluation.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { evalSets, resolveTrainOptions } from "./train_options.ts";
 * const data = {
 *   rows: 10,
 *   width: 1,
 *   x: new Float32Array(10),
 *   y: { kind: "labels" as const, data: new BigInt64Array(10) },
 * };
 * const sets = await evalSets(data, resolveTrainOptions({ eval_split: 0.2 }));
 * deepStrictEqual([sets.data.rows, sets.evalData?.rows], [8, 2]);
 * ```
 */
export async function evalSets(
  data: Dataset,
  options: ResolvedTrainOptions,
  inputs?: readonly InputSpec[],
): Promise<{ data: Dataset; evalData?: Dataset }> {
  const { evalData, evalFile, evalSplit, labelColumn, seed } = options;
  if (evalData) return { data, evalData };
  if (evalFile) {
    const width = data.width || undefined;
    return { data, evalData: await loadDataset(evalFile, { width, labelColumn, inputs }) };
  }
  if (!evalSplit) return { data };
  const [train, held] = splitDataset(data, evalSplit, new Rng(seed).permutation(data.rows));
  return { data: train, evalData: held };
}

/**
 * The training config file that resolves to `options` (see {@link resolveTrainOptions}): a run
 * saves it with its checkpoint, so `ffwd train --resume DIR` continues it with nothing else.
 * Left out: the output folder, `resume` and `initAdapter` (a resumed run takes the folder it
 * resumes, and its checkpoint holds every trained value), and what a file cannot hold (data in
 * memory, callbacks, `report`, `saveBest` (the checkpoint's adapter records it), optimizer options
 * other than weight decay, momentum and Nesterov).
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { resolveTrainOptions, toTrainConfig } from "./train_options.ts";
 * const o = resolveTrainOptions({}, { targets: "/fc[12]/", rank: 4, lr: 0.01, outDir: "runs/a" });
 * const file = toTrainConfig(o);
 * deepStrictEqual([file.targets, file.rank, file.alpha, file.lr], ["/fc[12]/", 4, 8, 0.01]);
 * deepStrictEqual(resolveTrainOptions(file, { outDir: "runs/a" }), o);
 * ```
 */
export function toTrainConfig(options: ResolvedTrainOptions): TrainConfig {
  const o = options, c = o.config, t = c.targetModules;
  const nonEmpty = <T>(
    r: Readonly<Record<string, T>>,
  ) => (Object.keys(r).length ? { ...r } : undefined);
  return defined({
    model: o.model,
    block: o.block,
    output: o.output,
    data: o.data,
    eval: o.evalFile,
    eval_split: o.evalSplit,
    label_column: o.labelColumn,
    rank: c.r,
    alpha: c.loraAlpha,
    // null: every linear layer (finetune() passes them all as the modules), which /.*/ matches
    targets: t === null
      ? "/.*/"
      : t.length === 0
      ? typeof t === "string" ? undefined : "none"
      : typeof t !== "string"
      ? [t[0]!, ...t.slice(1)]
      : t === "all-linear"
      ? t
      : `/${t}/`,
    layers_to_transform: c.layersToTransform ? [...c.layersToTransform] : undefined,
    rank_pattern: nonEmpty(c.rankPattern),
    alpha_pattern: nonEmpty(c.alphaPattern),
    dora: c.useDora,
    rslora: c.useRslora,
    bias: c.bias,
    modules_to_save: c.modulesToSave ? [...c.modulesToSave] : undefined,
    init: c.initLoraWeights === "gaussian" ? "gaussian" : undefined,
    dropout: c.loraDropout,
    loss: o.loss,
    epochs: o.epochs,
    max_steps: o.maxSteps,
    batch_size: o.batchSize,
    grad_accum: o.gradAccum,
    lr: o.lr,
    schedule: o.schedule,
    warmup_steps: o.warmupSteps,
    optimizer: o.optimizer,
    weight_decay: o.optimizerOptions?.weightDecay,
    momentum: o.optimizerOptions?.momentum,
    nesterov: o.optimizerOptions?.nesterov,
    clip_norm: o.clipNorm,
    seed: o.seed,
    shuffle: o.shuffle,
    checkpoint_every: o.checkpointEvery,
    early_stopping: o.earlyStopping?.patience,
    threads: o.threads,
    cache: o.cache,
    cache_budget_mb: o.cacheBudget === undefined ? undefined : o.cacheBudget / 2 ** 20,
  });
}

/**
 * `all-linear`, `none` (no layer: an empty list), `/regex/` (the regular expression), or a
 * comma-separated list of names.
 */
function parseTargets(raw: string | readonly string[]): string | string[] {
  if (typeof raw !== "string") return [...raw];
  const s = raw.trim();
  if (s === "all-linear") return "all-linear";
  if (s === "none") return [];
  if (s.length > 1 && s.startsWith("/") && s.endsWith("/")) return s.slice(1, -1);
  return parseList(s)!;
}

function parseList(raw: string | readonly string[] | undefined): string[] | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== "string") return [...raw];
  return raw.split(",").map((t) => t.trim()).filter(Boolean);
}

/** `o` without its undefined fields. */
function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
