/**
 * `@tensorflow/tfjs` LayersModels as files: saving one as `model.json` + `weights.bin`, loading
 * files with tfjs's own loader (no network), and seeded weights. Without onnxruntime, so the
 * fixture script runs with no `--allow-ffi`.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { Rng } from "../src/rng.ts";

/** tfjs's loader over `dir`'s `model.json` and shards (every group, in manifest order). */
export function fileHandler(dir: string): tf.io.IOHandler {
  return {
    load: async () => {
      const json = JSON.parse(await Deno.readTextFile(`${dir}/model.json`));
      const groups = json.weightsManifest as {
        paths: string[];
        weights: tf.io.WeightsManifestEntry[];
      }[];
      const parts: Uint8Array[] = [];
      for (const g of groups) {
        for (const p of g.paths) parts.push(await Deno.readFile(`${dir}/${p}`));
      }
      const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      parts.reduce((at, p) => (bytes.set(p, at), at + p.length), 0);
      return {
        modelTopology: json.modelTopology,
        weightSpecs: groups.flatMap((g) => g.weights),
        weightData: bytes.buffer,
      };
    },
  };
}

/** Loads a LayersModel from files with tfjs itself. */
export async function loadTfjs(dir: string): Promise<tf.LayersModel> {
  await tf.setBackend("cpu");
  return await tf.loadLayersModel(fileHandler(dir));
}

/** Writes `model` as `dir/model.json` + `dir/weights.bin`, as `tf.io` writes them. */
export async function saveTfjs(model: tf.LayersModel, dir: string): Promise<void> {
  await model.save(tf.io.withSaveHandler(async (artifacts) => {
    await Deno.mkdir(dir, { recursive: true });
    const data = tf.io.CompositeArrayBuffer.join(artifacts.weightData!);
    await Deno.writeFile(`${dir}/weights.bin`, new Uint8Array(data));
    const json = {
      modelTopology: artifacts.modelTopology,
      format: artifacts.format ?? "layers-model",
      generatedBy: artifacts.generatedBy,
      convertedBy: artifacts.convertedBy ?? null,
      weightsManifest: [{ paths: ["weights.bin"], weights: artifacts.weightSpecs }],
    };
    await Deno.writeTextFile(`${dir}/model.json`, JSON.stringify(json, null, 1) + "\n");
    return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
  }));
}

/**
 * Gives every weight of `model` seeded values: kernels N(0, 1/fan-in), biases and offsets
 * N(0, 0.1²), scales 1 + N(0, 0.1²), variances U(0.5, 1.5), embeddings N(0, 1).
 */
export function seedWeights(model: tf.LayersModel, seed: number): void {
  const rng = new Rng(seed);
  for (const w of model.weights) {
    const shape = w.shape as number[];
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const kind = w.originalName.split("/").pop()!;
    if (kind === "moving_variance") rng.fillUniform(data, 0.5, 1.5);
    else if (kind === "gamma") rng.fillNormal(data, 1, 0.1);
    else if (kind === "embeddings") rng.fillNormal(data, 0, 1);
    else if (shape.length <= 1 || kind === "moving_mean") rng.fillNormal(data, 0, 0.1);
    else rng.fillNormal(data, 0, 1 / Math.sqrt(shape.slice(0, -1).reduce((a, b) => a * b, 1)));
    w.write(tf.tensor(data, shape));
  }
}
