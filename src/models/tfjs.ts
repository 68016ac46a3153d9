/**
 * TF.js LayersModels (`model.json` + weight shards, https://www.tensorflow.org/js/guide/save_load)
 * as ffwd base models: Sequential, functional and nested Keras models of the layers listed by
 * `supportedLayers()` (convolutions, pooling, normalization, merges, Embedding, LSTM, GRU, Dense…),
 * in the configs Keras 2, Keras 3 and TF.js write. TF.js *graph* models are refused, naming the
 * format; a layer ffwd cannot convert fails naming the layer, its class and the supported list.
 *
 * The Keras model is converted to an ONNX graph (`tfjs/convert.ts`) that opens through the same
 * importer as an ONNX file, so training (with the frozen-prefix cache), predict, serve, merge and
 * export treat it as they treat an ONNX base. Its linear layers are the Dense layers, named as
 * Keras names them (`dense`, `dense_1`), with `[in, out]` kernels (orientation `in_out`); the
 * graph stays in memory (onnxruntime probes it from bytes).
 *
 * Shards are read from the model's folder (never fetched) and decoded by `tf.io.decodeWeights`,
 * which also expands quantized weights.
 *
 * @module
 */

// Types only: the library (about 0.2 s to load) is imported when weights are decoded, so commands
// that never open a TF.js model do not pay for it.
import type * as tf from "npm:@tensorflow/tfjs@4.22.0";
import type { BaseModel, BuildOptions, Built, LinearLayer, ModelIO } from "./model.ts";
import type { Graph } from "../engine/graph.ts";
import type { Tensor } from "../tensor.ts";
import { openOnnxFile } from "./onnx/import.ts";
import { convertKeras, type KerasLayerInfo } from "./tfjs/convert.ts";

interface ManifestGroup {
  paths: string[];
  weights: tf.io.WeightsManifestEntry[];
}

/** A TF.js LayersModel opened as a base model. */
export interface TfjsModel extends BaseModel {
  /** Always `"tfjs"`. */
  readonly format: "tfjs";
  /** The Keras layers converted, in order, through nested models (shared layers once). */
  readonly kerasLayers: readonly KerasLayerInfo[];
  /** What the import changed (the frozen context, …), one sentence each. */
  readonly notes: readonly string[];
}

/** Options of {@link openTfjsModel}. */
export interface OpenTfjsOptions {
  /**
   * End the model at this value instead of its output: a converted node's output such as
   * `dense_1/BiasAdd`, the logits a final softmax reads.
   */
  readonly output?: string;
}

/**
 * Loads a TF.js LayersModel (the path of its `model.json`, or its folder) as a base model.
 *
 * @example
 * ```ts
 * import { openTfjsModel } from "./tfjs.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const model = await openTfjsModel("fixtures/tfjs/dense/model.json");
 * deepStrictEqual(model.layers.map((l) => l.name), ["fc1", "fc2", "fc3"]);
 * ```
 */
export async function openTfjsModel(
  path: string,
  options: OpenTfjsOptions = {},
): Promise<TfjsModel> {
  const file = (await isDir(path)) ? `${path.replace(/\/+$/, "")}/model.json` : path;
  const where = `Cannot load TF.js model "${file}"`;
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await Deno.readTextFile(file));
  } catch (e) {
    if (e instanceof SyntaxError) throw new SyntaxError(`${where}: not JSON: ${e.message}`);
    throw e;
  }
  const topology = json.modelTopology as Record<string, unknown> | undefined;
  if (json.format === "graph-model" || (topology && "node" in topology)) {
    throw new TypeError(
      `${where}: it is a TF.js graph model (format "graph-model"), not a LayersModel; only LayersModels load`,
    );
  }
  if (!topology) throw new SyntaxError(`${where}: no "modelTopology" in model.json`);
  const manifest = (json.weightsManifest ?? []) as ManifestGroup[];
  const weights = await readWeights(file, manifest, where);
  const keras = convertKeras(topology, weights, where);
  // The converted graph opens in memory, named after the model.json (messages name the file the
  // user knows); its weights are inside it, so no external data is read.
  const folder = file.slice(0, file.lastIndexOf("/") + 1) || ".";
  const label = `TF.js model "${file}"`;
  const inner = await openOnnxFile({ path: file, dir: folder, proto: keras.proto, label }, {
    output: options.output,
  });
  return new Model(file, inner, keras.layers);
}

/** Reads every shard of the manifest (relative to model.json) and decodes the weights. */
async function readWeights(
  file: string,
  manifest: readonly ManifestGroup[],
  where: string,
): Promise<Map<string, Tensor<"F32">>> {
  const dir = file.slice(0, file.lastIndexOf("/") + 1);
  const out = new Map<string, Tensor<"F32">>();
  for (const group of manifest) {
    const shards: ArrayBuffer[] = [];
    for (const p of group.paths) {
      if (p.startsWith("/") || p.split("/").includes("..") || /^[a-z]+:/i.test(p)) {
        throw new TypeError(`${where}: weight path "${p}" is not inside the model's folder`);
      }
      const bytes = await Deno.readFile(`${dir}${p}`);
      shards.push(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    }
    let decoded: tf.NamedTensorMap;
    const tfjs = await import("npm:@tensorflow/tfjs@4.22.0");
    // TF.js prints a "use tfjs-node" banner on stdout when it first stores a tensor, which would
    // corrupt `ffwd predict --json`; prod mode silences it.
    tfjs.enableProdMode();
    try {
      decoded = tfjs.io.decodeWeights(shards, group.weights);
    } catch (e) {
      throw new TypeError(`${where}: cannot decode weights: ${(e as Error).message}`);
    }
    for (const [name, t] of Object.entries(decoded)) {
      const data = Float32Array.from(t.dataSync() as ArrayLike<number>);
      // Keras 2 converters may keep TensorFlow's output index (`dense/kernel:0`).
      out.set(name.replace(/:\d+$/, ""), { dtype: "F32", shape: [...t.shape], data });
      t.dispose();
    }
  }
  return out;
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

/** The converted graph as imported, under the model.json's name and format. */
class Model implements TfjsModel {
  readonly format = "tfjs" as const;
  readonly inputs: readonly ModelIO[];
  readonly outputs: readonly ModelIO[];
  readonly layers: readonly LinearLayer[];
  readonly notes: readonly string[];
  readonly finalActivation?: { readonly op: string; readonly input: string };

  constructor(
    readonly source: string,
    private readonly inner: BaseModel & { readonly notes: readonly string[] },
    readonly kerasLayers: readonly KerasLayerInfo[],
  ) {
    this.inputs = inner.inputs;
    this.outputs = inner.outputs;
    this.layers = inner.layers;
    this.notes = inner.notes;
    if (inner.finalActivation) this.finalActivation = inner.finalActivation;
  }

  build(g: Graph, opts: BuildOptions = {}): Built {
    return this.inner.build(g, opts);
  }

  readTensor(key: string): Promise<Tensor> {
    return this.inner.readTensor(key);
  }

  close(): void {
    this.inner.close();
  }
}
