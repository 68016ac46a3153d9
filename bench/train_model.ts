/**
 * The training-step benchmark on a real model, behind `ffwd bench train --model FILE --data FILE`:
 * the step `ffwd train` compiles for the same model, data and adapters (LoRA on the target layers,
 * cross-entropy on integer labels or mse on float targets, the frozen prefix cached unless
 * `cache: false`), timed on full batches of the data in turn, AdamW in TypeScript. The synthetic
 * twin is `train_step.ts`; the fields of the result are its fields, plus the model's.
 *
 * The rate counts the FLOPs of every MatMul, Gemm and Conv the compiled step runs, forward and
 * backward, adapter branches included (`2·m·n·k` each; a Conv `2·out·k·k·cin/groups`): on a
 * frozen base that is the base's work, in the step's region only when the prefix is cached.
 *
 * @module
 */

import { type Dim, liveNodes, type Node, type Value } from "../src/engine/graph.ts";
import { defaultThreads } from "../src/engine/runtime.ts";
import { sliceBatch } from "../src/data/dataset.ts";
import { loadDataset } from "../src/data/files.ts";
import { modelFeeds, rowWidth } from "../src/data/feeds.ts";
import { buildAdapted } from "../src/lora/adapted.ts";
import { initAdapter, type LayerAdapter, peftKeys } from "../src/lora/branch.ts";
import { openModel } from "../src/models/open.ts";
import { Rng } from "../src/rng.ts";
import type { Tensor } from "../src/tensor.ts";
import { Optimizer } from "../src/train/optim.ts";
import { cacheDataset, planPrefix, stepInputs } from "../src/train/prefix_cache.ts";
import { TrainStep } from "../src/train/step.ts";
import { toTargetOptions } from "../adapters/config.ts";
import { planAdapters } from "../adapters/targets.ts";
import { resolveTrainOptions } from "../workflows/train_options.ts";
import { type BenchTrainResult, matmulRate } from "./train_step.ts";

/** Options of {@link benchTrainModel}. */
export interface BenchModelOptions {
  /** The base model's file (ONNX, safetensors, TF.js), opened as `ffwd train` opens it. */
  model: string;
  /** Training data (JSONL or safetensors), read with the model's inputs as `ffwd train` reads it. */
  data: string;
  /** `all-linear` (default), a comma list of module names, or `/regex/`, as `ffwd train --targets`. */
  targets?: string;
  /** LoRA rank on every target. */
  rank: number;
  /** Rows per step; the data must hold at least one full batch. */
  batch: number;
  /** Timed steps (default 30). */
  steps?: number;
  /** Untimed steps before timing (default 5). */
  warmup?: number;
  /** Intra-op threads (default: the number of cores). */
  threads?: number;
  /** ONNX: end the model at this value (`ffwd train --output`). */
  output?: string;
  /** Cache the frozen prefix, as `ffwd train` does by default (default true). */
  cache?: boolean;
}

/** What {@link benchTrainModel} measures: {@link BenchTrainResult}'s fields, and the model's. */
export interface BenchModelResult extends Omit<BenchTrainResult, "dims"> {
  /** `[in, out]` of each adapted layer, in model order. */
  dims: number[][];
  /** `opts.model`. */
  model: string;
  /** The adapted layers, in model order. */
  targets: string[];
  /** Whether the step starts from a cached frozen prefix. */
  cached_prefix: boolean;
  /** Time to compute the cache over the whole dataset, in ms (0 without one). */
  cache_ms: number;
  /** Bytes the cache holds, in MiB (0 without one). */
  cache_mb: number;
  /** MatMul, Gemm and Conv FLOPs of one step, in GFLOP (see the module notes). */
  gflop_per_step: number;
  /** Rows of the data file. */
  rows: number;
  /** The fastest timed step, in ms: on a shared machine, the least disturbed one. */
  best_ms: number;
  /** The median timed step, in ms. */
  median_ms: number;
}

/** A compiled step on a real model, with what it trains on (see {@link buildModelStep}). */
export interface ModelStep {
  /** The compiled step; `step.spec.graph` holds the whole training graph, prefix included. */
  readonly step: TrainStep;
  /** The adapters' A and B by PEFT key. */
  readonly params: Map<string, Float32Array>;
  /** The feeds of up to 16 full batches of the (cached) data, by step input name. */
  readonly batches: Record<string, Tensor>[];
  /** The adapters planned from `targets` and `rank`, in model order. */
  readonly adapters: LayerAdapter[];
  /** The values the step is fed from the cache; empty without one. */
  readonly fed: readonly Value[];
  /** Rows of the data file. */
  readonly rows: number;
  /** The cache's compute time in ms and the bytes it holds; null without a cache. */
  readonly cache: { ms: number; bytes: number } | null;
  /** Time to compile the step, in ms. */
  readonly compileMs: number;
  /** Frees the step and the model. */
  release(): Promise<void>;
}

/** At most this many distinct batches are prepared and cycled through. */
const MAX_BATCHES = 16;

/**
 * The step `ffwd train` compiles for `opts`, and the batches it trains on: the model opened, the
 * data read with its inputs, adapters planned from `targets` and `rank` (B drawn non-zero), the
 * frozen prefix cached unless `opts.cache` is false.
 *
 * @example
 * ```ts ignore
 * const s = await buildModelStep({ model: "model.onnx", data: "data.safetensors", rank: 8, batch: 32 });
 * const { loss } = await s.step.run(s.batches[0]!, s.params);
 * await s.release();
 * ```
 */
export async function buildModelStep(
  opts: Omit<BenchModelOptions, "steps" | "warmup">,
): Promise<ModelStep> {
  const { rank, batch } = opts;
  const threads = opts.threads ?? defaultThreads();
  const model = await openModel(opts.model, { output: opts.output });
  let step: TrainStep | undefined;
  try {
    const data = await loadDataset(opts.data, {
      width: model.inputs.length === 1 ? rowWidth(model.inputs[0]) : undefined,
      inputs: model.inputs,
    });
    if (data.rows < batch) {
      throw new RangeError(
        `Cannot time batches of ${batch} rows: "${opts.data}" has ${data.rows} rows`,
      );
    }
    const { config } = resolveTrainOptions({}, { rank, targets: opts.targets });
    const adapters = planAdapters(model, toTargetOptions(config, model.layers.map((l) => l.name)));
    const loss = data.y.kind === "labels" ? "cross_entropy" : "mse";
    const built = buildAdapted(model, adapters, { loss });
    const rng = new Rng(0);
    const params = new Map<string, Float32Array>();
    for (const ad of adapters) {
      const init = initAdapter(ad, rng);
      // Non-zero B so that the gradients are not trivially sparse, as in train_step.ts.
      rng.fillUniform(init.B.data, -0.01, 0.01);
      const k = peftKeys(ad.layer.name);
      params.set(k.A, init.A.data);
      params.set(k.B, init.B.data);
    }
    const plan = opts.cache === false
      ? undefined
      : planPrefix(built.graph, [built.loss!], built.inputs);
    const t0 = performance.now();
    const stepData = plan
      ? await cacheDataset(built.graph, plan, built.inputs, data, { threads })
      : data;
    const cacheMs = performance.now() - t0;
    const t1 = performance.now();
    step = await TrainStep.compile({
      graph: built.graph,
      loss: built.loss!,
      params: [...built.adapterInputs.values()].flatMap((i) => [i.A, i.B]),
    }, { threads, fed: plan?.cached });
    const compileMs = performance.now() - t1;
    const specs = plan ? stepInputs(plan) : built.inputs;
    const where = `Cannot benchmark "${opts.model}"`;
    const batches = Array.from(
      { length: Math.min(MAX_BATCHES, Math.floor(data.rows / batch)) },
      (_, i) => modelFeeds(specs, sliceBatch(stepData, null, i * batch, batch).feeds, where),
    );
    const bytes = [...stepData.inputs?.values() ?? []].reduce((n, v) => n + v.data.byteLength, 0);
    const compiled = step;
    return {
      step,
      params,
      batches,
      adapters,
      fed: plan?.cached ?? [],
      rows: data.rows,
      cache: plan ? { ms: cacheMs, bytes } : null,
      compileMs,
      release: async () => {
        await compiled.release();
        model.close();
      },
    };
  } catch (e) {
    await step?.release();
    model.close();
    throw e;
  }
}

/**
 * Builds the step ({@link buildModelStep}), runs `warmup` untimed steps, measures a plain 1024³
 * MatMul, then times `steps` steps (the session run and AdamW's update).
 *
 * @example
 * ```ts
 * import { benchTrainModel } from "./train_model.ts";
 * import { writeSafetensors } from "../src/io/safetensors.ts";
 * import { deepStrictEqual, ok } from "node:assert/strict";
 * const data = (await Deno.makeTempDir()) + "/data.safetensors";
 * await writeSafetensors(data, {
 *   x: { dtype: "F32", shape: [8, 1, 28, 28], data: new Float32Array(8 * 784).fill(0.5) },
 *   y: { dtype: "I64", shape: [8], data: new BigInt64Array(8).fill(3n) },
 * });
 * const r = await benchTrainModel({
 *   model: "fixtures/whole/cnn/model.onnx", // convolutions, then fc1 400→32, fc2 32→10
 *   data,
 *   targets: "fc1,fc2",
 *   rank: 2,
 *   batch: 4,
 *   steps: 2,
 *   warmup: 1,
 * });
 * deepStrictEqual([r.targets, r.dims, r.cached_prefix], [["fc1", "fc2"], [[400, 32], [32, 10]], true]);
 * ok(r.ms_per_step > 0 && r.gflop_per_step > 0);
 * ```
 */
export async function benchTrainModel(opts: BenchModelOptions): Promise<BenchModelResult> {
  const { steps = 30, warmup = 5 } = opts;
  const threads = opts.threads ?? defaultThreads();
  const rssStart = Deno.memoryUsage().rss;
  const s = await buildModelStep({ ...opts, threads });
  try {
    const { step, params, batches } = s;
    const flops = stepFlops(step, s.fed, batches[0]!);
    const opt = new Optimizer("adamw");
    let optMs = 0;
    let n = 0;
    const t = async () => {
      const t0 = performance.now();
      const r = await step.run(batches[n++ % batches.length]!, params);
      const t1 = performance.now();
      opt.step(params, r.grads, 1e-4);
      const t2 = performance.now();
      optMs += t2 - t1;
      return t2 - t0;
    };
    for (let i = 0; i < warmup; i++) await t();
    optMs = 0;
    const matmul = await matmulRate(1024, 10, threads);
    const times: number[] = [];
    for (let i = 0; i < steps; i++) times.push(await t());
    const ms = times.reduce((a, b) => a + b, 0) / steps;
    times.sort((a, b) => a - b);
    const gflops = flops / ms / 1e6;
    return {
      ms_per_step: round(ms),
      gflops: round(gflops),
      matmul_gflops: round(matmul),
      ratio: round(gflops / matmul, 3),
      dims: s.adapters.map((a) => [a.layer.inFeatures, a.layer.outFeatures]),
      batch: opts.batch,
      rank: opts.rank,
      optimizer_ms: round(optMs / steps, 3),
      optimizer_fraction: round(optMs / steps / ms, 4),
      compile_ms: round(s.compileMs),
      rss_start_mb: round(rssStart / 2 ** 20, 1),
      rss_end_mb: round(Deno.memoryUsage().rss / 2 ** 20, 1),
      model: opts.model,
      targets: s.adapters.map((a) => a.layer.name),
      cached_prefix: s.cache !== null,
      cache_ms: round(s.cache?.ms ?? 0),
      cache_mb: round((s.cache?.bytes ?? 0) / 2 ** 20, 1),
      gflop_per_step: round(flops / 1e9, 6),
      rows: s.rows,
      best_ms: round(times[0]!),
      median_ms: round((times[(steps - 1) >> 1]! + times[steps >> 1]!) / 2),
    };
  } finally {
    await s.release();
  }
}

/**
 * FLOPs of the MatMul, Gemm and Conv nodes the compiled step runs, their symbolic dimensions
 * bound from the feeds of one batch; a node with a dimension left unbound counts nothing.
 */
function stepFlops(step: TrainStep, fed: readonly Value[], feeds: Record<string, Tensor>): number {
  const sizes = new Map<string, number>();
  for (const v of [...step.session.inputs]) {
    const t = feeds[v.name];
    if (t) v.shape.forEach((d, i) => typeof d === "string" && sizes.set(d, t.shape[i]!));
  }
  const dims = (s: readonly Dim[]) => s.map((d) => (typeof d === "number" ? d : sizes.get(d)));
  const size = (v: Value | null) => {
    const s = v ? dims(v.shape) : [undefined];
    return s.some((d) => d === undefined) ? undefined : (s as number[]);
  };
  let flops = 0;
  for (const n of liveNodes(step.spec.graph, step.session.outputs, new Set(fed))) {
    const a = size(n.inputs[0]!), w = size(n.inputs[1] ?? null), y = size(n.outputs[0]!);
    if (a && w && y) flops += nodeFlops(n, a, w, y);
  }
  return flops;
}

/** `2 ×` the multiply-adds of a MatMul, Gemm, Conv or ConvTranspose (0 for other ops). */
function nodeFlops(n: Node, a: number[], w: number[], y: number[]): number {
  const numel = (s: number[]) => s.reduce((p, d) => p * d, 1);
  switch (n.op) {
    case "MatMul": // each output element sums over a's last dimension
      return 2 * numel(y) * a.at(-1)!;
    case "Gemm":
      return 2 * numel(y) * (n.attrs.transA?.value ? a[0]! : a[1]!);
    case "Conv": // w [cout, cin / groups, k…]: each output element reads cin / groups × k… inputs
      return 2 * numel(y) * numel(w.slice(1));
    case "ConvTranspose": // w [cin, cout / groups, k…]: each input element feeds cout / groups × k…
      return 2 * numel(a) * numel(w.slice(1));
    default:
      return 0;
  }
}

function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
