/**
 * Fine-tuning end to end: a frozen base, adapters planned from a PEFT config, the compiled
 * training step, the loop, checkpoints that resume exactly, and the PEFT files at the end.
 *
 * Output folder:
 * - `adapter_config.json`, `adapter_model.safetensors` (PEFT), `ffwd_training.json` (ours);
 * - `metrics.jsonl`: one line per step `{"step", "loss", "lr"}`, plus eval lines;
 * - `checkpoint/`: the adapter plus `trainer_state.safetensors` (optimizer buffers, generator
 *   state, position), replaced atomically every `checkpointEvery` steps and at the end;
 * - `summary.json`.
 *
 * @module
 */

import { Session } from "../src/engine/runtime.ts";
import { writeFileAtomic } from "../src/fs/atomic.ts";
import type { BaseModel } from "../src/models/model.ts";
import { Rng } from "../src/rng.ts";
import { type Tensor, toFloat32 } from "../src/tensor.ts";
import { type Dataset, sliceBatch } from "../src/data/dataset.ts";
import { type InputSpec, modelFeeds } from "../src/data/feeds.ts";
import { cacheDataset, planPrefix, stepInputs } from "../src/train/prefix_cache.ts";
import { TrainStep } from "../src/train/step.ts";
import { batchFeeds, train } from "../src/train/trainer.ts";
import { type Adapter, loadAdapter, matchAdapter } from "../adapters/adapter.ts";
import { type PeftConfig, toTargetOptions } from "../adapters/config.ts";
import { buildAdapted } from "../src/lora/adapted.ts";
import { weightRowNorms } from "../src/lora/dora.ts";
import { initAdapter, type LayerAdapter, peftKeys } from "../src/lora/branch.ts";
import { savePeftAdapter } from "../adapters/peft.ts";
import { planAdapters } from "../adapters/targets.ts";
import { writeReport } from "../report/html.ts";
import { readCheckpoint, writeCheckpoint } from "./checkpoint.ts";
import { parseTrainConfig, readTrainConfig, type TrainConfig } from "./train_config.ts";
import {
  evalSets,
  type FinetuneOptions,
  type ResolvedTrainOptions,
  resolveTrainOptions,
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
  /** Wall time of the training loop. */
  readonly seconds: number;
  /** Number of trained values: A, B and DoRA magnitudes. */
  readonly trainableParams: number;
  /** Weights and biases of the base's linear layers. */
  readonly baseParams: number;
  /** Whether early stopping ended the run. */
  readonly stoppedEarly: boolean;
  /**
   * The frozen-prefix cache, when the run had one: the values cached, their bytes (training and
   * evaluation data) and the seconds it took to compute them.
   */
  readonly prefixCache?: { values: number; bytes: number; seconds: number };
}

/**
 * Trains adapters on `model` with `data` and writes them to `options.outDir`. Options left unset
 * come from `options.trainConfig` when given, then from the defaults, as for `ffwd train` (see
 * {@link resolveTrainOptions}).
 *
 * @example
 * ```ts
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
 * result.steps; // 2
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
  refuseProbabilities(model, opts.loss);
  const { data: trainData, evalData } = await evalSets(data, opts, model.inputs);
  const adapters = planAdapters(model, {
    ...toTargetOptions(opts.config, model.layers.map((l) => l.name)),
    onWarning: opts.onWarning,
  });
  const extraKeys = trainedTensors(model, adapters, opts.config);
  const built = buildAdapted(model, adapters, {
    loss: opts.loss,
    dropout: opts.config.loraDropout,
    trainable: new Set(extraKeys.keys()),
  });
  // The data must fit the model's inputs before anything is compiled or written.
  const where = `Cannot fine-tune "${model.source}"`;
  modelFeeds(built.inputs, sliceBatch(trainData, null, 0, 1).feeds, where);
  const params = await initialParams(model, adapters, opts);
  for (const key of extraKeys.keys()) {
    params.set(key, toFloat32(await model.readTensor(key)).data.slice());
  }
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
  const cacheOpts = { threads: opts.threads, budget: opts.cacheBudget ?? defaultBudget() };
  const [trainRows, evalRows] = plan
    ? [
      await cacheDataset(built.graph, plan, built.inputs, trainData, cacheOpts),
      evalData && await cacheDataset(built.graph, plan, built.inputs, evalData, cacheOpts),
    ]
    : [trainData, evalData];
  const cache = plan && {
    values: plan.cached.length,
    bytes: [...trainRows.inputs?.values() ?? [], ...evalRows?.inputs?.values() ?? []]
      .reduce((n, t) => n + t.data.byteLength, 0),
    seconds: (performance.now() - cacheStart) / 1000,
  };
  const step = await TrainStep.compile(
    { graph: built.graph, loss: built.loss!, params: values },
    { threads: opts.threads, fed },
  );
  const evalSession = evalRows
    ? await Session.compile(built.graph, { threads: opts.threads, outputs: forward, fed })
    : null;
  await Deno.mkdir(opts.outDir, { recursive: true });
  const metricsPath = `${opts.outDir}/metrics.jsonl`;
  const resume = opts.resume ? await readCheckpoint(opts.resume) : undefined;
  if (!resume) await Deno.writeTextFile(metricsPath, "");
  const metrics = await Deno.open(metricsPath, { append: true, create: true });
  let lastEval: EvalResult | undefined;
  try {
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
          await metrics.write(new TextEncoder().encode(JSON.stringify(line) + "\n"));
        },
        checkpointEvery: opts.checkpointEvery,
        checkpoint: (state) =>
          writeCheckpoint(
            `${opts.outDir}/checkpoint`,
            toAdapter(opts, adapters, state.params, extraKeys),
            state,
          ),
        evaluate: evalSession && evalRows
          ? async (p) =>
            (lastEval = await evaluate(evalSession, built, stepSpecs, evalRows, p, opts.batchSize))
          : undefined,
      },
    });
    const adapter = toAdapter(opts, adapters, params, extraKeys, {
      steps: result.steps,
      loss: opts.loss,
      optimizer: opts.optimizer,
      lr: opts.lr,
      epochs: opts.epochs,
      batch_size: opts.batchSize,
      seed: opts.seed,
    });
    await savePeftAdapter(opts.outDir, adapter);
    const trainableParams = [...params.values()].reduce((n, p) => n + p.length, 0);
    const baseParams = countBaseParams(model);
    const summary = {
      steps: result.steps,
      last_loss: result.lastLoss,
      eval: lastEval ? { loss: lastEval.loss, accuracy: lastEval.accuracy ?? null } : null,
      seconds: result.seconds,
      trainable_params: trainableParams,
      base_params: baseParams,
      stopped_early: result.stoppedEarly,
      prefix_cache: cache ?? null,
    };
    await writeFileAtomic(`${opts.outDir}/summary.json`, json(summary));
    if (lastEval?.confusion) {
      const confusion = { matrix: lastEval.confusion, step: result.steps };
      await writeFileAtomic(`${opts.outDir}/confusion.json`, json(confusion));
    }
    await writeReport(opts.outDir);
    const evalOut = lastEval ? { loss: lastEval.loss, accuracy: lastEval.accuracy } : undefined;
    return { adapter, ...result, eval: evalOut, trainableParams, baseParams, prefixCache: cache };
  } finally {
    metrics.close();
    await step.release();
    await evalSession?.release();
  }
}

/** A training config given as an object (validated) or a path (read), or none. */
async function trainConfigOf(given: TrainConfig | string | undefined): Promise<TrainConfig> {
  if (given === undefined) return {};
  return typeof given === "string"
    ? await readTrainConfig(given)
    : parseTrainConfig(given, "trainConfig");
}

async function initialParams(
  model: BaseModel,
  adapters: readonly LayerAdapter[],
  opts: ResolvedTrainOptions,
) {
  const params = new Map<string, Float32Array>();
  const rng = new Rng(opts.seed);
  const method = opts.config.initLoraWeights === "gaussian" ? "gaussian" : "kaiming";
  for (const ad of adapters) {
    const k = peftKeys(ad.layer.name);
    const init = initAdapter(ad, rng, { method });
    params.set(k.A, init.A.data);
    params.set(k.B, init.B.data);
    if (ad.dora) params.set(k.magnitude, (await weightRowNorms(model, ad)).data);
  }
  if (opts.initAdapter) {
    const warm = await loadAdapter(opts.initAdapter);
    const match = matchAdapter(warm, model);
    for (const ad of match.layers) {
      const l = warm.layers.get(ad.layer.name)!;
      const k = peftKeys(ad.layer.name);
      const set = (key: string, t: Tensor | undefined) => {
        const p = params.get(key);
        if (!p || !t) return;
        if (t.data.length !== p.length) {
          throw new TypeError(
            `Cannot warm-start from "${opts.initAdapter}": tensor "${key}" has ${t.data.length} values, the adapter being trained needs ${p.length} (check --rank and --targets)`,
          );
        }
        p.set(t.data as Float32Array);
      };
      set(k.A, l.A);
      set(k.B, l.B);
      set(k.magnitude, l.magnitude);
    }
  }
  return params;
}

function toAdapter(
  opts: RunOptions,
  adapters: readonly LayerAdapter[],
  params: ReadonlyMap<string, Float32Array>,
  trained: ReadonlyMap<string, TrainedTensor>,
  training?: Record<string, string | number>,
): Adapter {
  const layers = new Map(adapters.map((ad) => {
    const k = peftKeys(ad.layer.name);
    const { inFeatures: n, outFeatures: m } = ad.layer;
    const t = (data: Float32Array, shape: number[]): Tensor => ({
      dtype: "F32",
      shape,
      data: data.slice(),
    });
    return [ad.layer.name, {
      A: t(params.get(k.A)!, [ad.rank, n]),
      B: t(params.get(k.B)!, [m, ad.rank]),
      ...(ad.dora ? { magnitude: t(params.get(k.magnitude)!, [m]) } : {}),
    }];
  }));
  const name = opts.outDir.replace(/\/+$/, "").split("/").pop() || "adapter";
  return {
    name,
    config: {
      ...opts.config,
      targetModules: opts.config.targetModules ?? adapters.map((a) => a.layer.name),
    },
    layers,
    biases: new Map(
      [...trained].filter(([, t]) => t.kind === "bias").map(([key, t]) => [
        t.module,
        { dtype: "F32", shape: [...t.shape], data: params.get(key)!.slice() },
      ]),
    ),
    extra: new Map(
      [...trained].filter(([, t]) => t.kind === "extra").map(([key, t]) => [
        key,
        { dtype: "F32", shape: [...t.shape], data: params.get(key)!.slice() },
      ]),
    ),
    training,
  };
}

/** A base tensor trained whole: a layer's bias (`bias` option) or a `modules_to_save` tensor. */
interface TrainedTensor {
  readonly kind: "bias" | "extra";
  /** The layer's module path. */
  readonly module: string;
  readonly shape: readonly number[];
}

/**
 * The base tensors trained alongside the adapters, by source key: PEFT's `bias: "lora_only"`
 * (biases of adapted layers), `"all"` (every linear layer's bias), and `modules_to_save` (the
 * named layers' weights and biases, saved whole).
 */
function trainedTensors(
  model: BaseModel,
  adapters: readonly LayerAdapter[],
  config: PeftConfig,
): Map<string, TrainedTensor> {
  const out = new Map<string, TrainedTensor>();
  const saved = config.modulesToSave ?? [];
  for (const layer of model.layers) {
    const whole = saved.some((m) => layer.name === m || layer.name.endsWith(`.${m}`));
    if (whole) {
      if (layer.orientation !== "out_in") {
        throw new TypeError(
          `Cannot train "${layer.name}" as a module to save: its weight is stored [in, out], and saving it whole is supported for [out, in] weights only`,
        );
      }
      if (adapters.some((a) => a.layer === layer)) {
        throw new TypeError(
          `Cannot train "${layer.name}" both with an adapter and as a module to save`,
        );
      }
      out.set(layer.weightKey, {
        kind: "extra",
        module: layer.name,
        shape: [layer.outFeatures, layer.inFeatures],
      });
      if (layer.biasKey) {
        out.set(layer.biasKey, { kind: "extra", module: layer.name, shape: [layer.outFeatures] });
      }
      continue;
    }
    const adapted = adapters.some((a) => a.layer === layer);
    if (layer.biasKey && (config.bias === "all" || (config.bias === "lora_only" && adapted))) {
      out.set(layer.biasKey, { kind: "bias", module: layer.name, shape: [layer.outFeatures] });
    }
  }
  for (const m of saved) {
    if (!model.layers.some((l) => l.name === m || l.name.endsWith(`.${m}`))) {
      throw new RangeError(
        `modules_to_save entry "${m}" matches no linear layer; available layers: ${
          model.layers.map((l) => l.name).join(", ")
        }`,
      );
    }
  }
  return out;
}

/**
 * Cross-entropy and binary cross-entropy expect logits: on an output that is already a Softmax or
 * a Sigmoid they train silently wrong (the gradient vanishes as probabilities saturate). A
 * LogSoftmax output is fine for cross-entropy (log-softmax is idempotent).
 */
function refuseProbabilities(model: BaseModel, loss: string): void {
  const act = model.finalActivation;
  if (!act || (loss !== "cross_entropy" && loss !== "bce")) return;
  if (act.op === "LogSoftmax" && loss === "cross_entropy") return;
  throw new TypeError(
    `Cannot fine-tune "${model.source}" with ${loss}: its output "${model.outputs[0]?.name}" is ` +
      `already a ${act.op} of "${act.input}", and ${loss} expects logits; train on the logits ` +
      `with --output ${act.input} (library: openModel(path, { output: "${act.input}" }))`,
  );
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
 * import { countCorrect } from "./finetune.ts";
 * const logits = { dtype: "F32" as const, shape: [2, 2], data: new Float32Array([0, 1, 1, 0]) };
 * countCorrect(logits, { dtype: "I64", shape: [2], data: new BigInt64Array([1n, 1n]) }); // 1
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
