/**
 * ffwd's adapter gradients against an independent oracle: `@tensorflow/tfjs` (cpu backend,
 * float32) differentiating its own forward of the same LoRA MLP with `tf.grads`.
 *
 * The model: 12→16→16→5, batch 7, ReLU between layers, LoRA r=4, alpha=8 (scale 2) on every layer,
 * with non-zero random A and B so that every gradient is non-trivial. The tfjs side is written
 * from the formula (`y = x·Wᵀ + b + scale·(x·Aᵀ)·Bᵀ`), sharing no code with ffwd.
 *
 * Error measure: per tensor, `max|ffwd − tfjs| / max|tfjs|` (see `relError` in `_assert.ts`).
 *
 * tfjs is also the oracle of the TF.js loader's forward: a fixture model that uses every layer
 * kind it converts predicts what tfjs predicts (each kind alone: `src/models/tfjs/*_test.ts`).
 */

import { ok as assert } from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { relu } from "../src/engine/ops/activation.ts";
import { Rng } from "../src/rng.ts";
import type { Tensor } from "../src/tensor.ts";
import { adapterKeys, buildLoraMlp, lossAndGrads, type MlpLayerSpec } from "./_mlp.ts";
import { relError } from "./_assert.ts";
import { compareWithTfjs, loadTfjs, seededFeeds } from "./_tfjs.ts";
import { openTfjsModel } from "../src/models/tfjs.ts";

const SIZES = [12, 16, 16, 5];
const BATCH = 7;
const RANK = 4;
const ALPHA = 8;
const SCALE = ALPHA / RANK;
const RTOL = 1e-5;

interface Case {
  readonly layers: MlpLayerSpec[];
  readonly adapter: Map<string, Tensor>;
  readonly x: Tensor<"F32">;
  readonly labels: Tensor<"I64">;
  readonly target: Tensor<"F32">;
}

function f32(rng: Rng, shape: number[], std: number): Tensor<"F32"> {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  return { dtype: "F32", shape, data: rng.fillNormal(data, 0, std) as Float32Array };
}

/** Seeded weights, adapters and data (A and B both non-zero). */
function makeCase(seed: number): Case {
  const rng = new Rng(seed);
  const layers: MlpLayerSpec[] = [];
  const adapter = new Map<string, Tensor>();
  for (let i = 0; i + 1 < SIZES.length; i++) {
    const [n, m] = [SIZES[i]!, SIZES[i + 1]!];
    const name = `fc${i + 1}`;
    layers.push({
      name,
      weight: f32(rng, [m, n], 1 / Math.sqrt(n)),
      bias: f32(rng, [m], 0.1),
      orientation: "out_in",
    });
    adapter.set(`base_model.model.${name}.lora_A.weight`, f32(rng, [RANK, n], 1 / Math.sqrt(n)));
    adapter.set(`base_model.model.${name}.lora_B.weight`, f32(rng, [m, RANK], 0.2));
  }
  const c = SIZES[SIZES.length - 1]!;
  const labels = new BigInt64Array(BATCH);
  for (let i = 0; i < BATCH; i++) labels[i] = BigInt(rng.int(c));
  return {
    layers,
    adapter,
    x: f32(rng, [BATCH, SIZES[0]!], 1),
    labels: { dtype: "I64", shape: [BATCH], data: labels },
    target: f32(rng, [BATCH, c], 1),
  };
}

const toTf = (t: Tensor): tf.Tensor =>
  tf.tensor(Float32Array.from(t.data as Float32Array), [
    ...t.shape,
  ]);

/** Loss and adapter gradients from tfjs: its own forward, differentiated by `tf.grads`. */
function oracle(c: Case, loss: "cross_entropy" | "mse"): { loss: number; grads: Float32Array[] } {
  return tf.tidy(() => {
    const x = toTf(c.x);
    const ws = c.layers.map((l) => toTf(l.weight));
    const bs = c.layers.map((l) => toTf(l.bias!));
    const numClasses = SIZES[SIZES.length - 1]!;
    const onehot = tf.oneHot(tf.tensor1d(Array.from(c.labels.data, Number), "int32"), numClasses);
    const target = toTf(c.target);
    // f(A1, B1, A2, B2, ...) = loss
    const f = (...ab: tf.Tensor[]): tf.Scalar => {
      let h = x;
      ws.forEach((w, i) => {
        const a = ab[2 * i]!;
        const b = ab[2 * i + 1]!;
        const base = tf.add(tf.matMul(h, w, false, true), bs[i]!);
        const lora = tf.mul(tf.matMul(tf.matMul(h, a, false, true), b, false, true), SCALE);
        h = tf.add(base, lora);
        if (i < ws.length - 1) h = tf.relu(h);
      });
      return (loss === "mse"
        ? tf.losses.meanSquaredError(target, h)
        : tf.losses.softmaxCrossEntropy(onehot, h)) as tf.Scalar;
    };
    const params = c.layers.flatMap((l) =>
      ["A", "B"].map((w) => toTf(c.adapter.get(`base_model.model.${l.name}.lora_${w}.weight`)!))
    );
    const grads = tf.grads(f)(params);
    return {
      loss: f(...params).dataSync()[0]!,
      grads: grads.map((g) => g.dataSync() as Float32Array),
    };
  });
}

for (const loss of ["cross_entropy", "mse"] as const) {
  Deno.test(`LoRA adapter gradients of a ReLU MLP with ${loss} equal tfjs's tf.grads within 1e-5`, async () => {
    await tf.setBackend("cpu");
    const c = makeCase(loss === "mse" ? 2 : 1);
    const mlp = buildLoraMlp({
      layers: c.layers,
      activation: relu,
      input: ["batch", SIZES[0]!],
      loss,
      rank: RANK,
      alpha: ALPHA,
    });
    const feeds: Record<string, Tensor> = loss === "mse"
      ? { x: c.x, target: c.target }
      : { x: c.x, labels: c.labels };
    const ours = await lossAndGrads(mlp, feeds, c.adapter);
    const want = oracle(c, loss);

    const lossErr = Math.abs(ours.loss - want.loss) / Math.abs(want.loss);
    assert(lossErr <= RTOL, `loss ${ours.loss} vs tfjs ${want.loss}: relative error ${lossErr}`);
    adapterKeys(mlp).forEach((key, i) => {
      const got = ours.grads.get(key)!;
      const expected = want.grads[i]!;
      let norm = 0;
      for (const v of expected) norm = Math.max(norm, Math.abs(v));
      assert(norm > 1e-3, `tfjs's gradient of ${key} is trivial (max |d| = ${norm})`);
      const err = relError(got, expected);
      assert(err <= RTOL, `d${key}: relative error ${err} exceeds ${RTOL}`);
    });
  });
}

const EVERY_LAYER = new URL("../fixtures/tfjs/every_layer", import.meta.url).pathname;

Deno.test("a TF.js model of every converted layer kind predicts what tfjs predicts within 1e-5", async () => {
  // fixtures/tfjs/every_layer (made by tfjs itself, see make_fixture.ts): an image branch of
  // convolutions, normalization and pooling and a token branch of Embedding, Conv1D, LSTM and GRU,
  // joined by Dense layers and merges, then a nested Sequential head ending in a softmax. Checked
  // at the output and, before the softmax and the head squash differences, at the Multiply.
  const reference = await loadTfjs(EVERY_LAYER);
  const inner = tf.model({
    inputs: reference.inputs,
    outputs: reference.getLayer("multiply").output,
  });
  for (const [output, oracle] of [[undefined, reference], ["multiply/Mul", inner]] as const) {
    const model = await openTfjsModel(EVERY_LAYER, { output });
    const feeds = seededFeeds(model, 4, 8, { tokens: 30 });
    const err = await compareWithTfjs(model, oracle, feeds);
    assert(err <= RTOL, `${output ?? "output"}: relative error ${err} exceeds ${RTOL}`);
    model.close();
  }
});
