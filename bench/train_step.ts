/**
 * The LoRA training-step benchmark behind `deno bench` and `ffwd bench train`: an MLP with ReLU
 * between layers, frozen random weights, LoRA on every linear layer, cross-entropy on the last
 * layer's outputs, AdamW in TypeScript. It reports ms/step, the base-GEMM rate, and in the same
 * run the rate of a plain 1024³ MatMul in onnxruntime on this machine.
 *
 * Base-GEMM FLOPs count `2·batch·in·out` per layer forward, twice that for the layers that also
 * need the input gradient (every layer but the first): the work a frozen base must do.
 *
 * @module
 */

import { Graph, type Value } from "../src/engine/graph.ts";
import { crossEntropy } from "../src/engine/ops/loss.ts";
import { relu } from "../src/engine/ops/activation.ts";
import { gemm, matmul } from "../src/engine/ops/matmul.ts";
import { defaultThreads, Session } from "../src/engine/runtime.ts";
import type { LinearLayer } from "../src/models/model.ts";
import { Rng } from "../src/rng.ts";
import { Optimizer } from "../src/train/optim.ts";
import { TrainStep } from "../src/train/step.ts";
import {
  type AdapterInputs,
  initAdapter,
  type LayerAdapter,
  loraHook,
} from "../src/lora/branch.ts";

/** Options of {@link benchTrain}. */
export interface BenchTrainOptions {
  /** Layer widths, input first: `[784, 1024, 10]` is two linear layers. */
  dims: readonly number[];
  /** Rows per step. */
  batch: number;
  /** LoRA rank on every layer. */
  rank: number;
  /** Timed steps (default 30). */
  steps?: number;
  /** Untimed steps before timing (default 5). */
  warmup?: number;
  /** Intra-op threads (default: the number of cores). */
  threads?: number;
}

/** What {@link benchTrain} measures (the `--json` form of `ffwd bench train`). */
export interface BenchTrainResult {
  /** Mean wall time of a timed step (session run and optimizer update), in ms. */
  ms_per_step: number;
  /** Base-GEMM rate of the step, in GFLOP/s (see the module notes). */
  gflops: number;
  /** Rate of a plain 1024³ MatMul in onnxruntime on this machine, in GFLOP/s. */
  matmul_gflops: number;
  /** `gflops / matmul_gflops`. */
  ratio: number;
  /** `opts.dims`, echoed so that a saved `--json` result says what ran. */
  dims: number[];
  /** `opts.batch`, echoed like `dims`. */
  batch: number;
  /** `opts.rank`, echoed like `dims`. */
  rank: number;
  /** Mean time of the optimizer update per step, in ms. */
  optimizer_ms: number;
  /** `optimizer_ms / ms_per_step`. */
  optimizer_fraction: number;
  /** Time to compile the step, in ms. */
  compile_ms: number;
  /** Resident set size before the step is built, in MiB. */
  rss_start_mb: number;
  /** Resident set size after the timed steps, in MiB. */
  rss_end_mb: number;
}

/** Builds the benchmark's LoRA step and returns it with its parameters. */
export async function buildLoraMlpStep(
  dims: readonly number[],
  rank: number,
  opts: { threads?: number; seed?: number } = {},
): Promise<{ step: TrainStep; params: Map<string, Float32Array>; compileMs: number }> {
  const rng = new Rng(opts.seed ?? 0);
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", dims[0]!]);
  const labels = g.input("labels", "I64", ["batch"]);
  const adapters: LayerAdapter[] = [];
  const layers: LinearLayer[] = [];
  for (let i = 0; i + 1 < dims.length; i++) {
    const layer: LinearLayer = {
      name: `layers.${i}`,
      inFeatures: dims[i]!,
      outFeatures: dims[i + 1]!,
      orientation: "out_in",
      weightKey: `layers.${i}.weight`,
      biasKey: `layers.${i}.bias`,
      dtype: "F32",
    };
    layers.push(layer);
    adapters.push({ layer, rank, alpha: 2 * rank, scale: 2, dora: false });
  }
  const declared = new Map<string, AdapterInputs>();
  const hook = loraHook(adapters, declared);
  let h: Value = x;
  layers.forEach((layer, i) => {
    const bound = 1 / Math.sqrt(layer.inFeatures);
    const w = new Float32Array(layer.outFeatures * layer.inFeatures);
    rng.fillUniform(w, -bound, bound);
    const weight = g.initializer(layer.weightKey, {
      dtype: "F32",
      shape: [layer.outFeatures, layer.inFeatures],
      data: w,
    });
    const b = rng.fillUniform(new Float32Array(layer.outFeatures), -bound, bound) as Float32Array;
    const bias = g.initializer(layer.biasKey!, {
      dtype: "F32",
      shape: [layer.outFeatures],
      data: b,
    });
    const y = gemm(h, weight, bias, { transB: true });
    h = hook({ layer, x: h, y, weight, bias });
    if (i + 2 < dims.length) h = relu(h);
  });
  const loss = crossEntropy(h, labels);
  const params = new Map<string, Float32Array>();
  const values: Value[] = [];
  for (const ad of adapters) {
    const init = initAdapter(ad, rng);
    const inp = declared.get(ad.layer.name)!;
    // Non-zero B so the benchmark's gradients are not trivially sparse.
    rng.fillUniform(init.B.data, -0.01, 0.01);
    params.set(inp.A.name, init.A.data);
    params.set(inp.B.name, init.B.data);
    values.push(inp.A, inp.B);
  }
  const t0 = performance.now();
  const step = await TrainStep.compile({ graph: g, loss, params: values }, {
    threads: opts.threads,
  });
  return { step, params, compileMs: performance.now() - t0 };
}

/** Rate of a plain n³ MatMul in onnxruntime, in GFLOP/s. */
export async function matmulRate(n = 1024, reps = 10, threads?: number): Promise<number> {
  const g = new Graph();
  const a = g.input("a", "F32", [n, n]);
  const b = g.input("b", "F32", [n, n]);
  g.output(matmul(a, b));
  const s = await Session.compile(g, { threads });
  const rng = new Rng(1);
  const feeds = {
    a: {
      dtype: "F32" as const,
      shape: [n, n],
      data: rng.fillUniform(new Float32Array(n * n)) as Float32Array,
    },
    b: {
      dtype: "F32" as const,
      shape: [n, n],
      data: rng.fillUniform(new Float32Array(n * n)) as Float32Array,
    },
  };
  for (let i = 0; i < 3; i++) await s.run(feeds);
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await s.run(feeds);
  const ms = (performance.now() - t0) / reps;
  await s.release();
  return 2 * n ** 3 / ms / 1e6;
}

/** Base-GEMM FLOPs of one step (see the module notes). */
export function baseFlops(dims: readonly number[], batch: number): number {
  let f = 0;
  for (let i = 0; i + 1 < dims.length; i++) {
    f += 2 * batch * dims[i]! * dims[i + 1]! * (i === 0 ? 1 : 2);
  }
  return f;
}

/**
 * Builds the step, runs `warmup` untimed steps, measures {@linkcode matmulRate} on this machine,
 * then times `steps` steps.
 *
 * @example
 * ```ts
 * import { benchTrain } from "./train_step.ts";
 * import { deepStrictEqual, ok } from "node:assert/strict";
 * // Realistic sizes are [784, 1024, 1024, 10] with batch 128; this one is quick.
 * const r = await benchTrain({ dims: [16, 8, 4], batch: 8, rank: 2, steps: 2, warmup: 1 });
 * deepStrictEqual([r.dims, r.batch, r.rank], [[16, 8, 4], 8, 2]);
 * ok(r.ms_per_step > 0);
 * ok(r.optimizer_fraction > 0 && r.optimizer_fraction < 1); // the rest is the session run
 * ```
 */
export async function benchTrain(opts: BenchTrainOptions): Promise<BenchTrainResult> {
  const { dims, batch, rank, steps = 30, warmup = 5 } = opts;
  const threads = opts.threads ?? defaultThreads();
  const rssStart = Deno.memoryUsage().rss;
  const { step, params, compileMs } = await buildLoraMlpStep(dims, rank, { threads });
  const rng = new Rng(3);
  const x = rng.fillUniform(new Float32Array(batch * dims[0]!), -1, 1) as Float32Array;
  const classes = dims[dims.length - 1]!;
  const labels = BigInt64Array.from({ length: batch }, () => BigInt(rng.int(classes)));
  const batchFeeds = {
    x: { dtype: "F32" as const, shape: [batch, dims[0]!], data: x },
    labels: { dtype: "I64" as const, shape: [batch], data: labels },
  };
  const opt = new Optimizer("adamw");
  let optMs = 0;
  const t = async () => {
    const r = await step.run(batchFeeds, params);
    const t1 = performance.now();
    opt.step(params, r.grads, 1e-4);
    optMs += performance.now() - t1;
  };
  for (let i = 0; i < warmup; i++) await t();
  optMs = 0;
  const matmul = await matmulRate(1024, 10, threads);
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) await t();
  const ms = (performance.now() - t0) / steps;
  await step.release();
  const gflops = baseFlops(dims, batch) / ms / 1e6;
  return {
    ms_per_step: round(ms),
    gflops: round(gflops),
    matmul_gflops: round(matmul),
    ratio: round(gflops / matmul, 3),
    dims: [...dims],
    batch,
    rank,
    optimizer_ms: round(optMs / steps, 3),
    optimizer_fraction: round(optMs / steps / ms, 4),
    compile_ms: round(compileMs),
    rss_start_mb: round(rssStart / 2 ** 20, 1),
    rss_end_mb: round(Deno.memoryUsage().rss / 2 ** 20, 1),
  };
}

function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
