/**
 * Whole TF.js LayersModels end to end: ml5's DoodleNet (Keras 2.2.4: Conv2D ×6, MaxPooling2D,
 * Dropout, Flatten, Dense 576→512→345) from `../shared/realdata`, and the Teachable-Machine-shaped
 * fixture (a Sequential feature extractor and a Dense head, nested in a Sequential). Each predicts
 * what tfjs predicts, trains a LoRA on its Dense layers under their Keras names (the convolutions
 * are the frozen prefix, computed once), and exports a merged ONNX and an adapter-inputs ONNX that
 * pass the parity report. The engine serves the two-input every-layer fixture with adapters
 * swapped per row.
 *
 * @module
 */

import { assert, assertEquals, relError } from "./_assert.ts";
import { REALDATA, realdataTest } from "./_realdata.ts";
import { randomAdapter } from "./_random_adapter.ts";
import { compareWithTfjs, loadTfjs, runFfwd, seededFeeds } from "./_tfjs.ts";
import { loadAdapter } from "../adapters/adapter.ts";
import { defaultPeftConfig } from "../adapters/config.ts";
import { engineWeights } from "../adapters/weights.ts";
import { exportAdapter } from "../workflows/export.ts";
import { finetune } from "../workflows/finetune.ts";
import { mergeAdapter } from "../workflows/merge.ts";
import { InferenceEngine } from "../src/infer/engine.ts";
import { loadMnist } from "../src/data/mnist.ts";
import { type Dataset, takeRows } from "../src/data/dataset.ts";
import { openModel } from "../src/models/open.ts";
import { Rng } from "../src/rng.ts";
import type { Tensor } from "../src/tensor.ts";

const DOODLENET = `${REALDATA}ml5js__ml5-data-and-models/models/doodlenet`;
const NESTED = new URL("../fixtures/tfjs/nested", import.meta.url).pathname;
const EVERY_LAYER = new URL("../fixtures/tfjs/every_layer", import.meta.url).pathname;

const mean = (v: readonly number[]) => v.reduce((a, b) => a + b, 0) / v.length;

/**
 * Trains a LoRA (r 4, alpha 8) on every Dense layer of `path` ended at `logits`, checks the loss
 * falls and the saved adapter's layer names, and exports it both ways with parity.
 */
async function trainAndExport(
  path: string,
  logits: string,
  data: Dataset,
  layers: string[],
  opts: { epochs: number; lr: number },
) {
  const model = await openModel(path, { output: logits });
  const dir = await Deno.makeTempDir();
  try {
    const config = defaultPeftConfig({ r: 4, loraAlpha: 8, targetModules: layers });
    const { epochs } = opts;
    const result = await finetune(model, data, {
      config,
      loss: "cross_entropy",
      outDir: dir,
      seed: 3,
      batchSize: 32,
      ...opts,
    });
    assert(result.prefixCache !== undefined, "the convolutions should be the cached frozen prefix");
    const trace = (await Deno.readTextFile(`${dir}/metrics.jsonl`)).trim().split("\n")
      .map((l) => JSON.parse(l)).filter((l) => !l.eval).map((l) => l.loss as number);
    const perEpoch = trace.length / epochs;
    const [first, last] = [mean(trace.slice(0, perEpoch)), mean(trace.slice(-perEpoch))];
    assert(last < 0.7 * first, `mean loss of the last epoch ${last} vs the first ${first}`);
    const adapter = await loadAdapter(dir);
    assertEquals([...adapter.layers.keys()].sort(), [...layers].sort());
    // The whole model (its softmax output) merged, then with A and B as inputs.
    const whole = await openModel(path);
    try {
      for (const mode of ["merged", "adapter-inputs"] as const) {
        const out = `${dir}/${mode}.onnx`;
        const { report } = await exportAdapter(whole, adapter, { out, mode });
        assertEquals(report!.verdict, "pass", `${mode}: ${JSON.stringify(report)}`);
      }
    } finally {
      whole.close();
    }
  } finally {
    model.close();
    await Deno.remove(dir, { recursive: true });
  }
}

realdataTest(
  "ml5's DoodleNet loads with its Dense layers under Keras's names and predicts what tfjs predicts",
  async () => {
    const model = await openModel(DOODLENET);
    assertEquals(
      model.layers.map((l) => [l.name, l.inFeatures, l.outFeatures, l.orientation, l.weightKey]),
      [["dense", 576, 512, "in_out", "dense/kernel"], [
        "dense_1",
        512,
        345,
        "in_out",
        "dense_1/kernel",
      ]],
    );
    assertEquals(model.inputs, [{
      name: "conv2d_input",
      dtype: "F32",
      shape: ["batch", 28, 28, 1],
    }]);
    assertEquals(model.finalActivation, { op: "Softmax", input: "dense_1/BiasAdd" });
    const rows = seededFeeds(model, 4, 9);
    for (const v of Object.values(rows)) {
      v.data.forEach((x, i) => (v.data[i] = 1 / (1 + Math.exp(-x))));
    }
    const err = await compareWithTfjs(model, await loadTfjs(DOODLENET), rows);
    assert(err <= 1e-5, `relative error ${err}`);
    model.close();
  },
);

realdataTest(
  "a LoRA on DoodleNet's Dense layers learns MNIST digits as its first ten classes and exports with parity",
  async () => {
    const all = await loadMnist();
    const data = takeRows(all, new Rng(1).permutation(all.rows).subarray(0, 512));
    await trainAndExport(DOODLENET, "dense_1/BiasAdd", data, ["dense", "dense_1"], {
      epochs: 4,
      lr: 1e-2,
    });
  },
);

Deno.test("a Teachable-Machine-shaped nested Sequential predicts what tfjs predicts and trains its head", async () => {
  const model = await openModel(NESTED);
  assertEquals(model.layers.map((l) => l.name), ["dense_Dense1", "dense_Dense2"]);
  const err = await compareWithTfjs(model, await loadTfjs(NESTED), seededFeeds(model, 5, 2));
  assert(err <= 1e-5, `relative error ${err}`);
  model.close();
  // Three classes told apart by the mean of one colour channel.
  const rows = 192;
  const x = new Rng(5).fillNormal(new Float32Array(rows * 16 * 16 * 3)) as Float32Array;
  const labels = new BigInt64Array(rows);
  for (let r = 0; r < rows; r++) {
    let red = 0;
    for (let p = 0; p < 256; p++) red += x[(r * 256 + p) * 3]!;
    const c = red > 8 ? 2 : red < -8 ? 0 : 1;
    labels[r] = BigInt(c);
    for (let p = 0; p < 256; p++) x[(r * 256 + p) * 3]! += c - 1;
  }
  const data: Dataset = { rows, width: 768, x, y: { kind: "labels", data: labels, classes: 3 } };
  await trainAndExport(NESTED, "dense_Dense2/BiasAdd", data, ["dense_Dense1", "dense_Dense2"], {
    epochs: 8,
    lr: 5e-2,
  });
});

Deno.test("the engine serves a two-input TF.js model with adapters swapped per row, as merged weights compute", async () => {
  // fixtures/tfjs/every_layer: an image and token ids, LSTM and GRU in the frozen context.
  const model = await openModel(EVERY_LAYER);
  const adapter = randomAdapter(model, { r: 2, seed: 4, layers: ["dense", "dense_2"] });
  const engine = await InferenceEngine.create(model);
  try {
    await engine.register("a", engineWeights(adapter, model));
    const feeds = seededFeeds(model, 3, 6, { tokens: 30 });
    const served = await engine.run(feeds, ["a", null, "a"]);
    const merged = await mergeAdapter(model, adapter);
    const [adapted] = await runFfwd(model, feeds, { overrides: merged.tensors });
    const [base] = await runFfwd(model, feeds);
    const row = (t: Tensor, r: number) => (t.data as Float32Array).slice(r * 5, r * 5 + 5);
    for (const r of [0, 2]) {
      assert(relError(row(served, r), row(adapted!, r)) <= 1e-5, `row ${r} with the adapter`);
    }
    assert(relError(row(served, 1), row(base!, 1)) <= 1e-6, "row 1 without it");
    assert(relError(row(adapted!, 0), row(base!, 0)) > 1e-3, "the adapter changes the output");
  } finally {
    await engine.close();
    model.close();
  }
});

Deno.test("a LoRA on every Dense layer of a two-input model with LSTM and GRU trains and exports with parity", async () => {
  // The image and token branches (convolutions, LSTM, GRU) are the frozen prefix; the four Dense
  // layers, the Multiply and the nested head between them train.
  const probe = await openModel(EVERY_LAYER);
  const rows = 96;
  const feeds = seededFeeds(probe, rows, 12, { tokens: 30 });
  probe.close();
  const labels = new BigInt64Array(rows);
  const image = feeds.image!.data;
  for (let r = 0; r < rows; r++) labels[r] = image[r * 432]! + image[r * 432 + 1]! > 0 ? 1n : 3n;
  const inputs = new Map(
    Object.entries(feeds).map((
      [name, t],
    ) => [name, { dtype: t.dtype, shape: t.shape.slice(1), data: t.data }]),
  );
  const data: Dataset = {
    rows,
    width: 0,
    x: new Float32Array(0),
    inputs,
    y: { kind: "labels", data: labels, classes: 5 },
  };
  await trainAndExport(EVERY_LAYER, "dense_3/BiasAdd", data, [
    "dense",
    "dense_1",
    "dense_2",
    "dense_3",
  ], {
    epochs: 6,
    lr: 2e-2,
  });
});
