/**
 * `@tensorflow/tfjs` (cpu backend) as the oracle of the TF.js loader: ffwd's run of the converted
 * graph compared with tfjs's `predict` (the files side is in `_tfjs_files.ts`).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { Graph } from "../src/engine/graph.ts";
import { Session } from "../src/engine/runtime.ts";
import type { BaseModel, BuildOptions } from "../src/models/model.ts";
import { Rng } from "../src/rng.ts";
import type { Tensor } from "../src/tensor.ts";
import { relError } from "./_assert.ts";

export { fileHandler, loadTfjs, saveTfjs, seedWeights } from "./_tfjs_files.ts";

/** ffwd's outputs of `model` on `feeds` (by input name), through onnxruntime. */
export async function runFfwd(
  model: BaseModel,
  feeds: Record<string, Tensor>,
  build: BuildOptions = {},
): Promise<Tensor[]> {
  const g = new Graph();
  const { outputs } = model.build(g, build);
  for (const o of outputs) g.output(o);
  const session = await Session.compile(g);
  try {
    const out = await session.run(feeds);
    return outputs.map((o) => out[o.name]!);
  } finally {
    await session.release();
  }
}

/** Seeded inputs for each model input: N(0, 1) floats, or integer ids below `vocab`. */
export function seededFeeds(
  model: BaseModel,
  rows: number,
  seed: number,
  vocab: Readonly<Record<string, number>> = {},
): Record<string, Tensor<"F32">> {
  const rng = new Rng(seed);
  return Object.fromEntries(model.inputs.map((i) => {
    const shape = i.shape.map((d, k) => (typeof d === "number" ? d : k === 0 ? rows : 7));
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const ids = vocab[i.name];
    if (ids === undefined) rng.fillNormal(data);
    else for (let k = 0; k < data.length; k++) data[k] = rng.int(ids);
    return [i.name, { dtype: "F32", shape, data }];
  }));
}

/**
 * The largest relative error (`max|ffwd − tfjs| / max|tfjs|` per output) between ffwd's run of
 * `model` and tfjs's `predict` of `reference` on the same feeds (in the reference's input order).
 */
export async function compareWithTfjs(
  model: BaseModel,
  reference: tf.LayersModel,
  feeds: Record<string, Tensor<"F32">>,
): Promise<number> {
  const ours = await runFfwd(model, feeds);
  const inputs = reference.inputs.map((i, k) => {
    const t = feeds[model.inputs[k]!.name]!;
    if (i.shape.length !== t.shape.length) throw new TypeError(`Input ${k} has a different rank`);
    return tf.tensor(t.data, [...t.shape]);
  });
  const predicted = reference.predict(inputs.length === 1 ? inputs[0]! : inputs);
  const theirs = Array.isArray(predicted) ? predicted : [predicted];
  const worst = Math.max(...theirs.map((t, k) => {
    const shape = ours[k]!.shape.join();
    if (t.shape.join() !== shape) {
      throw new TypeError(`Output ${k}: ffwd's shape [${shape}] differs from tfjs's [${t.shape}]`);
    }
    return relError(ours[k]!.data as Float32Array, t.dataSync() as Float32Array);
  }));
  tf.dispose([...inputs, ...theirs]);
  return worst;
}
