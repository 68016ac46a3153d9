// Keras configs TF.js cannot write or run, checked against tfjs on an equivalent model or against
// the Keras formula computed with tfjs ops: Keras 3's config format, Conv1D's causal padding,
// GRU's reset_after, BatchNormalization on a non-last axis (tfjs's cpu kernel broadcasts its
// statistics along the last axis whatever the axis), Subtract, keepdims, ReLU's negative_slope
// and threshold; and the refusals, which name the layer and its class.
import { deepStrictEqual, ok, rejects } from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { openTfjsModel } from "../tfjs.ts";
import { supportedLayers } from "./convert.ts";
import {
  compareWithTfjs,
  runFfwd,
  saveTfjs,
  seededFeeds,
  seedWeights,
} from "../../../tests/_tfjs.ts";
import { relError } from "../../../tests/_assert.ts";

const L = tf.layers;
type Sym = tf.SymbolicTensor;
/** The parts of a model.json the edits below touch. */
interface Json {
  modelTopology: {
    keras_version?: string;
    class_name: string;
    config: { layers: LayerJson[]; input_layers: unknown };
  };
  weightsManifest: { paths: string[]; weights: { name: string; shape: number[] }[] }[];
}
interface LayerJson {
  class_name: string;
  config: Record<string, unknown>;
  inbound_nodes: unknown[];
  module?: string;
  registered_name?: null;
}
const on = (layer: tf.layers.Layer, x: Sym | Sym[]) => layer.apply(x) as Sym;

await tf.setBackend("cpu");

/**
 * Saves `model` to a temporary folder, lets `edit` change its model.json (and `shard`, when
 * given, replace weights.bin), and opens it with ffwd.
 */
async function opened(model: tf.LayersModel, edit: (json: Json) => void, shard?: Float32Array) {
  const dir = await Deno.makeTempDir();
  try {
    await saveTfjs(model, dir);
    const json = JSON.parse(await Deno.readTextFile(`${dir}/model.json`));
    edit(json);
    await Deno.writeTextFile(`${dir}/model.json`, JSON.stringify(json));
    if (shard) await Deno.writeFile(`${dir}/weights.bin`, new Uint8Array(shard.buffer));
    return await openTfjsModel(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const layersOf = (json: Json): LayerJson[] => json.modelTopology.config.layers;
const layer = (json: Json, cls: string): LayerJson =>
  layersOf(json).find((l) => l.class_name === cls)!;

/** A Keras 2 / TF.js functional config rewritten the way Keras 3 writes it. */
function toKeras3(json: Json): void {
  const t = json.modelTopology;
  t.keras_version = "3.3.3";
  t.class_name = "Functional";
  const tensor = (r: unknown[]) => ({
    class_name: "__keras_tensor__",
    config: { shape: null, dtype: "float32", keras_history: r.slice(0, 3) },
  });
  for (const l of layersOf(json)) {
    l.module = "keras.layers";
    l.registered_name = null;
    l.config.dtype = { module: "keras", class_name: "DTypePolicy", config: { name: "float32" } };
    if (l.class_name === "InputLayer") {
      l.config.batch_shape = l.config.batch_input_shape;
      delete l.config.batch_input_shape;
    }
    if (l.class_name === "LeakyReLU") {
      l.config.negative_slope = l.config.alpha;
      delete l.config.alpha;
    }
    l.inbound_nodes = (l.inbound_nodes as unknown[][][]).map((call) => ({
      args: call.length === 1 ? [tensor(call[0]!)] : [call.map(tensor)],
      kwargs: {},
    }));
  }
  const inputs = t.config.input_layers as unknown[];
  t.config.input_layers = inputs.length === 1 ? inputs[0] : inputs;
  // Keras 3 scopes weights by the model's path.
  for (const w of json.weightsManifest[0]!.weights) w.name = `functional/${w.name}`;
}

Deno.test("openTfjsModel() reads Keras 3 configs (call args, batch_shape, DTypePolicy, scoped weights)", async () => {
  const x = tf.input({ shape: [6, 6, 2], name: "pixels" });
  const c = on(L.conv2d({ filters: 3, kernelSize: 3, padding: "same", name: "conv" }), x);
  const h = on(L.leakyReLU({ alpha: 0.2, name: "leaky" }), c);
  const s = on(L.reshape({ targetShape: [12, 9], name: "rows" }), h);
  const r = on(L.lstm({ units: 4, recurrentActivation: "sigmoid", name: "lstm" }), s);
  const y = on(L.concatenate({ name: "both" }), [r, on(L.flatten({ name: "flat" }), h)]);
  const reference = tf.model({ inputs: x, outputs: on(L.dense({ units: 3, name: "dense" }), y) });
  seedWeights(reference, 21);
  const model = await opened(reference, toKeras3);
  deepStrictEqual(model.layers.map((l) => l.name), ["dense"]);
  deepStrictEqual(model.inputs[0]!.name, "pixels");
  const err = await compareWithTfjs(model, reference, seededFeeds(model, 3, 1));
  ok(err <= 1e-5, `relative error ${err}`);
});

Deno.test("Conv1D with causal padding equals tfjs's valid Conv1D on the sequence padded at its start", async () => {
  const reference = tf.sequential();
  reference.add(L.conv1d({ filters: 3, kernelSize: 3, dilationRate: 2, inputShape: [null, 2] }));
  seedWeights(reference, 22);
  const model = await opened(reference, (json) => {
    layer(json, "Conv1D").config.padding = "causal";
  });
  const feeds = seededFeeds(model, 2, 2);
  const x = Object.values(feeds)[0]!;
  const padded = tf.pad(tf.tensor(x.data, [...x.shape]), [[0, 0], [4, 0], [0, 0]]);
  const theirs = (reference.predict(padded) as tf.Tensor).dataSync() as Float32Array;
  const [ours] = await runFfwd(model, feeds);
  deepStrictEqual(ours!.shape, [2, 7, 3]);
  ok(relError(ours!.data as Float32Array, theirs) <= 1e-5);
});

Deno.test("GRU with reset_after (Keras 2 and 3's default, a [2, 3·units] bias) follows Keras's equations", async () => {
  const [steps, inF, units] = [5, 3, 4];
  const reference = tf.sequential();
  reference.add(L.gru({ units, recurrentActivation: "sigmoid", inputShape: [steps, inF] }));
  seedWeights(reference, 23);
  const [kernel, recurrent] = reference.getWeights().map((w) => w.dataSync() as Float32Array);
  const bias = Float32Array.from({ length: 6 * units }, (_, i) => Math.sin(i) / 4); // [2, 3·units]
  const model = await opened(reference, (json) => {
    layer(json, "GRU").config.reset_after = true;
    json.weightsManifest[0]!.weights[2]!.shape = [2, 3 * units];
  }, new Float32Array([...kernel!, ...recurrent!, ...bias]));
  const feeds = seededFeeds(model, 2, 3);
  const x = Object.values(feeds)[0]!.data;
  const [ours] = await runFfwd(model, feeds);
  // z = σ(x·Wz + bz + h·Rz + rz), r likewise, ĥ = tanh(x·Wh + bh + r ⊙ (h·Rh + rh)), h = z⊙h + (1−z)⊙ĥ
  const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
  const want = new Float32Array(2 * units);
  for (let row = 0; row < 2; row++) {
    let h = new Float64Array(units);
    for (let t = 0; t < steps; t++) {
      const gate = (g: number, j: number) => {
        let xs = bias[g * units + j]!, hs = bias[3 * units + g * units + j]!;
        for (let i = 0; i < inF; i++) {
          xs += x[(row * steps + t) * inF + i]! * kernel![i * 3 * units + g * units + j]!;
        }
        for (let i = 0; i < units; i++) hs += h[i]! * recurrent![i * 3 * units + g * units + j]!;
        return [xs, hs] as const;
      };
      h = h.map((prev, j) => {
        const z = sigmoid(gate(0, j)[0] + gate(0, j)[1]);
        const r = sigmoid(gate(1, j)[0] + gate(1, j)[1]);
        const [xh, hh] = gate(2, j);
        return z * prev + (1 - z) * Math.tanh(xh + r * hh);
      });
    }
    want.set(h, row * units);
  }
  ok(
    relError(ours!.data as Float32Array, want) <= 1e-5,
    `relative error ${relError(ours!.data as Float32Array, want)}`,
  );
});

/** ffwd's output of `model` on seeded feeds of shape `shape`, and those feeds as a tfjs tensor. */
async function run(model: Awaited<ReturnType<typeof opened>>, shape: number[]) {
  const feeds = seededFeeds(model, shape[0]!, 4);
  const [ours] = await runFfwd(model, feeds);
  return {
    ours: ours!.data as Float32Array,
    shape: ours!.shape,
    x: tf.tensor(Object.values(feeds)[0]!.data, shape),
  };
}

Deno.test("BatchNormalization on a non-last axis broadcasts its statistics along that axis", async () => {
  const reference = tf.sequential();
  reference.add(L.batchNormalization({ axis: 1, epsilon: 0.01, inputShape: [4, 3, 2] }));
  seedWeights(reference, 24);
  const { ours, x } = await run(await opened(reference, () => {}), [2, 4, 3, 2]);
  const [gamma, beta, mean, variance] = reference.getWeights().map((w) => w.reshape([1, 4, 1, 1]));
  const want = x.sub(mean!).mul(gamma!).div(variance!.add(0.01).sqrt()).add(beta!);
  ok(relError(ours, want.dataSync() as Float32Array) <= 1e-5);
});

Deno.test("Subtract, ReLU's negative_slope and threshold, and keepdims follow Keras's formulas", async () => {
  const x = tf.input({ shape: [3, 6] });
  const h = on(L.dense({ units: 6, name: "h" }), x);
  const g = on(L.dense({ units: 6, name: "g" }), x);
  const merged = on(L.add({ name: "merge" }), [h, g]);
  const pooled = on(
    L.globalAveragePooling1d({ name: "pool" }),
    on(L.reLU({ name: "act" }), merged),
  );
  const reference = tf.model({ inputs: x, outputs: pooled });
  seedWeights(reference, 25);
  const model = await opened(reference, (json) => {
    layer(json, "Add").class_name = "Subtract";
    Object.assign(layer(json, "ReLU").config, {
      negative_slope: 0.1,
      threshold: 0.2,
      max_value: 0.6,
    });
    layer(json, "GlobalAveragePooling1D").config.keepdims = true;
  });
  const { ours, shape, x: xs } = await run(model, [3, 3, 6]);
  deepStrictEqual(shape, [3, 1, 6]);
  const [hv, gv] = tf.model({ inputs: x, outputs: [h, g] }).predict(xs) as tf.Tensor[];
  const d = hv!.sub(gv!);
  const relu = tf.where(d.greaterEqual(0.2), d, d.sub(0.2).mul(0.1)).minimum(0.6);
  ok(relError(ours, relu.mean(1).dataSync() as Float32Array) <= 1e-5);
});

Deno.test("openTfjsModel() names a layer it cannot convert, its class and the supported layers", async () => {
  const reference = tf.sequential();
  reference.add(L.dense({ units: 4, inputShape: [3], name: "first" }));
  reference.add(L.reshape({ targetShape: [2, 2, 1], name: "grid" }));
  reference.add(L.upSampling2d({ size: [2, 2], name: "up" }));
  await rejects(() => opened(reference, () => {}), (e: Error) => {
    ok(e instanceof TypeError);
    ok(
      e.message.includes(`layer "up" of class UpSampling2D is not supported (supported: `),
      e.message,
    );
    ok(supportedLayers().every((l) => e.message.includes(l)));
    return true;
  });
});

Deno.test("openTfjsModel() refuses masks and stateful recurrent layers, naming the layer", async () => {
  const reference = tf.sequential();
  reference.add(L.embedding({ inputDim: 5, outputDim: 2, inputLength: 3, name: "words" }));
  reference.add(L.gru({ units: 2, name: "gru" }));
  await rejects(
    () => opened(reference, (json) => (layer(json, "Embedding").config.mask_zero = true)),
    /layer "words" \(Embedding\): mask_zero is true/,
  );
  await rejects(
    () => opened(reference, (json) => (layer(json, "GRU").config.stateful = true)),
    /layer "gru" \(GRU\): stateful is true/,
  );
});

Deno.test("a Keras 3 Sequential starts with an InputLayer of batch_shape and nests another", async () => {
  const inner = tf.sequential({ name: "inner" });
  inner.add(L.dense({ units: 4, activation: "relu", inputShape: [5], name: "hidden" }));
  const reference = tf.sequential({ name: "outer" });
  reference.add(inner);
  reference.add(L.dense({ units: 2, name: "logits" }));
  seedWeights(reference, 26);
  const model = await opened(reference, (json) => {
    json.modelTopology.keras_version = "3.3.3";
    const nested = layersOf(json)[0]!.config as unknown as { layers: LayerJson[]; name: string };
    const first = nested.layers[0]!.config;
    nested.layers.unshift({
      class_name: "InputLayer",
      config: { batch_shape: first.batch_input_shape, dtype: "float32", name: "pixels" },
      inbound_nodes: [],
    });
    delete first.batch_input_shape;
  });
  deepStrictEqual(model.inputs.map((i) => i.name), ["pixels"]);
  deepStrictEqual(model.layers.map((l) => l.name), ["hidden", "logits"]);
  const err = await compareWithTfjs(model, reference, seededFeeds(model, 3, 5));
  ok(err <= 1e-5, `relative error ${err}`);
});

Deno.test("a functional model's outputs take their layers' names, and int32 inputs stay int32", async () => {
  const ids = tf.input({ shape: [4], dtype: "int32", name: "ids" });
  const e = on(
    L.flatten({ name: "flat" }),
    on(L.embedding({ inputDim: 9, outputDim: 3, name: "emb" }), ids),
  );
  const a = on(L.dense({ units: 2, name: "out_a" }), e);
  const b = on(L.dense({ units: 3, activation: "softmax", name: "out_b" }), e);
  const reference = tf.model({ inputs: ids, outputs: [a, b] });
  seedWeights(reference, 27);
  const model = await opened(reference, () => {});
  deepStrictEqual(model.inputs, [{ name: "ids", dtype: "I32", shape: ["batch", 4] }]);
  deepStrictEqual(model.outputs.map((o) => [o.name, o.shape]), [["out_a", ["batch", 2]], ["out_b", [
    "batch",
    3,
  ]]]);
  const data = Int32Array.from({ length: 12 }, (_, i) => (i * 5) % 9);
  const ours = await runFfwd(model, { ids: { dtype: "I32", shape: [3, 4], data } });
  const theirs = reference.predict(tf.tensor(data, [3, 4], "int32")) as tf.Tensor[];
  theirs.forEach((t, k) =>
    ok(relError(ours[k]!.data as Float32Array, t.dataSync() as Float32Array) <= 1e-5)
  );
});
