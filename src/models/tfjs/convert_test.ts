// Each layer kind the TF.js loader converts, against @tensorflow/tfjs's own predict: a small model
// built with tfjs, seeded weights, saved as files, opened by ffwd and run through onnxruntime on
// seeded inputs; the outputs agree within 1e-5 (max |ffwd − tfjs| / max |tfjs|).
import { ok } from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { openTfjsModel } from "../tfjs.ts";
import { compareWithTfjs, saveTfjs, seededFeeds, seedWeights } from "../../../tests/_tfjs.ts";

const L = tf.layers;
type Sym = tf.SymbolicTensor;
const on = (layer: tf.layers.Layer, x: Sym | Sym[]) => layer.apply(x) as Sym;

/** A Sequential model of `layers` on inputs of `shape` (batch excluded). */
function seq(shape: number[], ...layers: tf.layers.Layer[]): () => tf.LayersModel {
  return () => {
    const m = tf.sequential();
    m.add(L.inputLayer({ inputShape: shape, name: "x" }));
    for (const l of layers) m.add(l);
    return m;
  };
}

/** A functional model of two inputs of `shape` joined by `layer`, then a Dense. */
function joined(shape: number[], layer: () => tf.layers.Layer): () => tf.LayersModel {
  return () => {
    const a = tf.input({ shape, name: "a" });
    const b = tf.input({ shape, name: "b" });
    const y = on(layer(), [on(L.dense({ units: 4, name: "da" }), a), b]);
    return tf.model({ inputs: [a, b], outputs: on(L.dense({ units: 3, name: "out" }), y) });
  };
}

interface Case {
  readonly build: () => tf.LayersModel;
  /** Integer ids below this bound feed the first input (Embedding). */
  readonly vocab?: number;
}

const conv = (o: Record<string, unknown>) => L.conv2d({ filters: 5, kernelSize: 3, ...o });

const CASES: Record<string, Case> = {
  "Dense on [batch, features] and on [batch, steps, features]": {
    build: seq(
      [6, 5],
      L.dense({ units: 4, activation: "relu" }),
      L.flatten(),
      L.dense({ units: 3 }),
    ),
  },
  "Conv1D (valid, stride 2; same, dilation 2)": {
    build: seq(
      [11, 3],
      L.conv1d({ filters: 4, kernelSize: 3, strides: 2 }),
      L.conv1d({ filters: 2, kernelSize: 3, dilationRate: 2, padding: "same", activation: "relu" }),
    ),
  },
  "Conv2D (same with stride 2 and an even kernel; valid with dilation; channels_first)": {
    build: seq(
      [13, 14, 3],
      conv({ kernelSize: 4, strides: 2, padding: "same", activation: "elu" }),
      conv({ dilationRate: 2 }),
      L.permute({ dims: [3, 1, 2] }),
      conv({ kernelSize: [1, 2], dataFormat: "channelsFirst" }),
      L.flatten({ dataFormat: "channelsFirst" }),
    ),
  },
  "DepthwiseConv2D (multiplier 2, stride 2, same) and SeparableConv2D": {
    build: seq(
      [8, 7, 3],
      L.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, strides: 2, padding: "same" }),
      L.separableConv2d({ filters: 4, kernelSize: 2, depthMultiplier: 2, activation: "tanh" }),
    ),
  },
  "MaxPooling and AveragePooling 1D and 2D, valid and same": {
    build: () => {
      const x = tf.input({ shape: [9, 7, 3] });
      const a = on(L.maxPooling2d({ poolSize: 3, strides: 2, padding: "same" }), x);
      const b = on(L.averagePooling2d({ poolSize: 2, padding: "same" }), a);
      const c = on(L.maxPooling2d({ poolSize: [2, 3] }), x);
      const s = on(L.reshape({ targetShape: [21, 9] }), x);
      const d = on(L.averagePooling1d({ poolSize: 3, strides: 2 }), s);
      const e = on(L.maxPooling1d({ poolSize: 2, padding: "same" }), d);
      const flat = [b, c, e].map((t) => on(L.flatten(), t));
      return tf.model({ inputs: x, outputs: on(L.concatenate(), flat) });
    },
  },
  "GlobalAveragePooling and GlobalMaxPooling 1D and 2D": {
    build: () => {
      const x = tf.input({ shape: [5, 4, 3] });
      const s = on(L.reshape({ targetShape: [20, 3] }), x);
      const ys = [
        on(L.globalAveragePooling2d({}), x),
        on(L.globalMaxPooling2d({}), on(conv({ padding: "same" }), x)),
        on(L.globalAveragePooling1d(), s),
        on(L.globalMaxPooling1d(), s),
      ];
      return tf.model({ inputs: x, outputs: on(L.concatenate(), ys) });
    },
  },
  "BatchNormalization (between convolutions, without scale and center)": {
    build: seq(
      [6, 6, 2],
      conv({ padding: "same" }),
      L.batchNormalization({}),
      L.reLU({}),
      conv({ padding: "same" }),
      L.batchNormalization({ epsilon: 0.01, scale: false, center: false }),
    ),
  },
  "LayerNormalization and Rescaling": {
    build: seq([4, 6], L.rescaling({ scale: 0.5, offset: -1 }), L.layerNormalization({})),
  },
  "ZeroPadding2D, Reshape, Permute, Flatten, Dropout and the noise layers": {
    build: seq(
      [4, 5, 2],
      L.zeroPadding2d({ padding: [[1, 2], [0, 3]] }),
      L.dropout({ rate: 0.5 }),
      L.reshape({ targetShape: [-1, 4] }),
      L.spatialDropout1d({ rate: 0.5 }),
      L.permute({ dims: [2, 1] }),
      L.gaussianNoise({ stddev: 1 }),
      L.gaussianDropout({ rate: 0.2 }),
      L.alphaDropout({ rate: 0.2 }),
      L.reshape({ targetShape: [14, 8] }),
      L.flatten(),
    ),
  },
  "Add": { build: joined([4], () => L.add()) },
  "Multiply": { build: joined([4], () => L.multiply()) },
  "Average": { build: joined([4], () => L.average()) },
  "Maximum": { build: joined([4], () => L.maximum()) },
  "Minimum": { build: joined([4], () => L.minimum()) },
  "Concatenate": { build: joined([4], () => L.concatenate({ axis: 1 })) },
  "ReLU, ReLU(max_value), LeakyReLU, PReLU, ELU, ThresholdedReLU, Softmax": {
    build: seq(
      [3, 8],
      L.dense({ units: 8 }),
      L.reLU({ maxValue: 0.5 }),
      L.dense({ units: 8 }),
      L.leakyReLU({ alpha: 0.2 }),
      L.prelu({ alphaInitializer: "randomNormal" }),
      L.elu({}),
      L.dense({ units: 8 }),
      L.thresholdedReLU({ theta: 0.1 }),
      L.dense({ units: 8 }),
      L.reLU({}),
      L.flatten(),
      L.softmax({}),
    ),
  },
  "Activation layers of every TF.js activation": {
    build: () => {
      const names = [
        "elu",
        "hardSigmoid",
        "linear",
        "relu",
        "relu6",
        "selu",
        "sigmoid",
        "softmax",
        "softplus",
        "softsign",
        "tanh",
        "swish",
        "mish",
        "gelu",
        "gelu_new",
      ] as const;
      const x = tf.input({ shape: [3, 6] });
      const h = on(L.dense({ units: 6 }), x);
      const ys = names.map((a) => on(L.activation({ activation: a }), h));
      return tf.model({ inputs: x, outputs: on(L.concatenate(), ys) });
    },
  },
  "Embedding": {
    build: seq([7], L.embedding({ inputDim: 11, outputDim: 4 }), L.dense({ units: 2 })),
    vocab: 11,
  },
  "LSTM (sequences, backwards, relu activation, sigmoid gates)": {
    build: seq(
      [6, 3],
      L.lstm({ units: 4, returnSequences: true }),
      L.lstm({ units: 3, goBackwards: true, returnSequences: true }),
      L.lstm({ units: 2, activation: "relu", recurrentActivation: "sigmoid" }),
    ),
  },
  "LSTM and GRU with return_state": {
    build: () => {
      const x = tf.input({ shape: [5, 3] });
      const lstm = L.lstm({ units: 4, returnState: true }).apply(x) as Sym[];
      const gru = L.gru({ units: 3, returnState: true, returnSequences: true }).apply(x) as Sym[];
      const flat = on(L.flatten(), gru[0]!);
      return tf.model({ inputs: x, outputs: on(L.concatenate(), [...lstm, flat, gru[1]!]) });
    },
  },
  "GRU (TF.js's reset_after = false; backwards) and SimpleRNN": {
    build: seq(
      [6, 3],
      L.gru({ units: 4, returnSequences: true, goBackwards: true }),
      L.simpleRNN({ units: 3, returnSequences: true }),
      L.gru({ units: 2, recurrentActivation: "sigmoid" }),
    ),
  },
  "a layer shared by two calls, and a Sequential nested in a functional model": {
    build: () => {
      const a = tf.input({ shape: [4], name: "a" });
      const b = tf.input({ shape: [4], name: "b" });
      const shared = L.dense({ units: 4, activation: "tanh", name: "shared" });
      const inner = tf.sequential({ name: "inner" });
      inner.add(L.dense({ units: 3, inputShape: [4], name: "inner_dense" }));
      const y = on(L.concatenate(), [on(inner, on(shared, a)), on(inner, on(shared, b))]);
      return tf.model({ inputs: [a, b], outputs: y });
    },
  },
  "a functional model nested in a Sequential": {
    build: () => {
      const x = tf.input({ shape: [5], name: "fx" });
      const y = on(L.add(), [
        on(L.dense({ units: 3, name: "f1" }), x),
        on(L.dense({ units: 3, name: "f2" }), x),
      ]);
      const outer = tf.sequential({ name: "outer" });
      outer.add(tf.model({ inputs: x, outputs: y, name: "functional" }));
      outer.add(L.dense({ units: 2, name: "last" }));
      return outer;
    },
  },
};

await tf.setBackend("cpu");
let seed = 0;
for (const [name, c] of Object.entries(CASES)) {
  const s = ++seed;
  Deno.test(`openTfjsModel() of ${name} predicts what tfjs predicts within 1e-5`, async () => {
    const reference = c.build();
    seedWeights(reference, s);
    const dir = await Deno.makeTempDir();
    try {
      await saveTfjs(reference, dir);
      const model = await openTfjsModel(dir);
      const ids = c.vocab === undefined ? {} : { [model.inputs[0]!.name]: c.vocab };
      const err = await compareWithTfjs(model, reference, seededFeeds(model, 3, s, ids));
      ok(err <= 1e-5, `relative error ${err}`);
    } finally {
      reference.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  });
}
