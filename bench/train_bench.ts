/**
 * The LoRA training step on the engine's two benchmark shapes, beside a plain 1024³ MatMul in
 * onnxruntime (the ratio of the two is the target: ≥ 70% for 1024,4096,1024 batch 256 r=16,
 * ≥ 55% for 784,1024,1024,10 batch 128 r=8). `deno task ffwd bench train --json` prints the same
 * figures for one shape.
 */

import { baseFlops, buildLoraMlpStep } from "./train_step.ts";
import { Graph } from "../src/engine/graph.ts";
import { matmul } from "../src/engine/ops/matmul.ts";
import { Session } from "../src/engine/runtime.ts";
import { Optimizer } from "../src/train/optim.ts";
import { Rng } from "../src/rng.ts";

const rng = new Rng(3);

async function stepBench(dims: number[], batch: number, rank: number) {
  const { step, params } = await buildLoraMlpStep(dims, rank);
  const x = rng.fillUniform(new Float32Array(batch * dims[0]!), -1, 1) as Float32Array;
  const labels = BigInt64Array.from({ length: batch }, () => BigInt(rng.int(dims.at(-1)!)));
  const feeds = {
    x: { dtype: "F32" as const, shape: [batch, dims[0]!], data: x },
    labels: { dtype: "I64" as const, shape: [batch], data: labels },
  };
  const opt = new Optimizer("adamw");
  const flops = baseFlops(dims, batch);
  return { step, params, feeds, opt, flops };
}

const big = await stepBench([1024, 4096, 1024], 256, 16);
const small = await stepBench([784, 1024, 1024, 10], 128, 8);

const g = new Graph();
g.output(matmul(g.input("a", "F32", [1024, 1024]), g.input("b", "F32", [1024, 1024])));
const mm = await Session.compile(g);
const m = rng.fillUniform(new Float32Array(1024 * 1024)) as Float32Array;
const mmFeeds = {
  a: { dtype: "F32" as const, shape: [1024, 1024], data: m },
  b: { dtype: "F32" as const, shape: [1024, 1024], data: m },
};

Deno.bench("MatMul 1024³ (2.15 GFLOP)", { group: "rate", baseline: true }, async () => {
  await mm.run(mmFeeds);
});

for (
  const [name, b] of [["1024,4096,1024 b256 r16", big], [
    "784,1024,1024,10 b128 r8",
    small,
  ]] as const
) {
  Deno.bench(
    `LoRA step ${name} (${(b.flops / 1e9).toFixed(2)} GFLOP base)`,
    { group: "rate" },
    async () => {
      const r = await b.step.run(b.feeds, b.params);
      b.opt.step(b.params, r.grads, 1e-4);
    },
  );
  Deno.bench(`AdamW update only ${name}`, { group: "optimizer" }, () => {
    b.opt.step(b.params, new Map([...b.params].map(([k, v]) => [k, v])), 1e-6);
  });
}

Deno.bench(
  "compile the 1024,4096,1024 r16 step",
  { group: "compile", n: 3, warmup: 1 },
  async () => {
    const { step } = await buildLoraMlpStep([1024, 4096, 1024], 16);
    await step.release();
  },
);
