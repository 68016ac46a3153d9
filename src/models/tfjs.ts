/**
 * TF.js LayersModels (`model.json` + weight shards, https://www.tensorflow.org/js/guide/save_load)
 * as ffwd base models. Sequential networks of Dense layers with their activations load (plus
 * Dropout, Flatten on flat inputs and Activation layers); any other layer, functional models and
 * TF.js *graph* models fail with a message naming the layer class or the format.
 *
 * Shards are read from the model's folder (never fetched) and decoded by `tf.io.decodeWeights`,
 * which also expands quantized weights. Keras Dense kernels are `[in, out]`: orientation `in_out`.
 *
 * @module
 */

// Types only: the library (about 0.2 s to load) is imported when weights are decoded, so commands
// that never open a TF.js model do not pay for it.
import type * as tf from "@tensorflow/tfjs";
import type { BaseModel, BuildOptions, Built, LinearLayer, ModelIO } from "./model.ts";
import type { Graph } from "../engine/graph.ts";
import type { Tensor } from "../tensor.ts";
import { resolveBlock, type ResolvedBlock, type TensorInfo } from "./blocks/resolve.ts";
import type { ActivationName, BlockSpec, SequentialLayerSpec } from "./blocks/spec.ts";
import { buildBlock } from "./blocks/templates.ts";

/** Keras activation names ffwd builds, by the spec name they map to (`linear`: none). */
const KERAS_ACTIVATIONS: Readonly<Record<string, ActivationName | null>> = {
  linear: null,
  relu: "relu",
  sigmoid: "sigmoid",
  tanh: "tanh",
  softmax: "softmax",
  gelu: "gelu",
  gelu_new: "gelu_new",
  swish: "swish",
  silu: "silu",
};

/** Layer classes that are the identity at inference on a `[batch, features]` input. */
const PASS_THROUGH = new Set(["Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise"]);

interface KerasLayer {
  class_name?: string;
  config?: Record<string, unknown>;
}

interface ManifestGroup {
  paths: string[];
  weights: tf.io.WeightsManifestEntry[];
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
export async function openTfjsModel(path: string): Promise<BaseModel> {
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
      `${where}: it is a TF.js graph model (format "graph-model"), not a LayersModel; only LayersModels of Dense layers load`,
    );
  }
  if (!topology) throw new SyntaxError(`${where}: no "modelTopology" in model.json`);
  const model = (topology.model_config ?? topology) as KerasLayer;
  if (model.class_name !== "Sequential") {
    throw new TypeError(
      `${where}: the model is a ${
        model.class_name ?? "model of unknown class"
      }, expected a Sequential model of Dense layers`,
    );
  }
  const cfg = model.config as { layers?: KerasLayer[]; name?: string } | KerasLayer[] | undefined;
  const keras = Array.isArray(cfg) ? cfg : cfg?.layers ?? [];
  const layers = sequentialLayers(keras, where);
  const manifest = (json.weightsManifest ?? []) as ManifestGroup[];
  const tensors = await readWeights(file, manifest, where);
  for (const l of layers) {
    l.weight = findWeight(tensors, `${l.name}/kernel`, where);
    if (l.bias !== null) l.bias = findWeight(tensors, `${l.name}/bias`, where);
  }
  const spec: BlockSpec = { form: "sequential", layers };
  const infos = new Map<string, TensorInfo>([...tensors].map(([k, t]) => [k, { name: k, ...t }]));
  const resolved = resolveBlock(spec, infos, file);
  const first = keras[0]?.config?.name;
  const input = typeof first === "string" ? `${first}_input` : "x";
  return new TfjsModel(file, resolved, tensors, input);
}

/** The Dense layers of a Sequential model as spec layers, with activations folded in. */
function sequentialLayers(keras: readonly KerasLayer[], where: string): SequentialLayerSpec[] {
  const out: SequentialLayerSpec[] = [];
  const activation = (name: unknown, layer: string): ActivationName | null => {
    const a = typeof name === "string" ? name : "linear";
    const mapped = KERAS_ACTIVATIONS[a];
    if (mapped === undefined) {
      throw new TypeError(
        `${where}: layer "${layer}" uses activation "${a}", which ffwd cannot build (supported: ${
          Object.keys(KERAS_ACTIVATIONS).join(", ")
        })`,
      );
    }
    return mapped;
  };
  let rank = 2;
  keras.forEach((k, i) => {
    const cls = k.class_name ?? "?";
    const c = k.config ?? {};
    const name = typeof c.name === "string" ? c.name : `layer ${i}`;
    const shape = c.batch_input_shape ?? c.batchInputShape;
    if (Array.isArray(shape)) rank = shape.length;
    if (cls === "Dense") {
      if (rank !== 2) {
        throw new TypeError(
          `${where}: Dense layer "${name}" gets a rank-${rank} input, expected [batch, features]`,
        );
      }
      const act = activation(c.activation, name);
      out.push({
        name,
        orientation: "in_out",
        ...(c.use_bias === false ? { bias: null } : {}),
        ...(act ? { activation: act } : {}),
      });
    } else if (cls === "Activation") {
      const prev = out.at(-1);
      const act = activation(c.activation, name);
      if (!prev || prev.activation) {
        throw new TypeError(
          `${where}: Activation layer "${name}" must directly follow a Dense layer without activation`,
        );
      }
      if (act) prev.activation = act;
    } else if (cls === "Flatten" && rank === 2) {
      // identity on [batch, features]
    } else if (!PASS_THROUGH.has(cls) && cls !== "InputLayer") {
      throw new TypeError(
        `${where}: layer "${name}" of class ${cls} is not supported (supported: Dense, Activation, Dropout, Flatten, InputLayer)`,
      );
    }
  });
  if (out.length === 0) throw new TypeError(`${where}: the model has no Dense layer`);
  return out;
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
    const tfjs = await import("@tensorflow/tfjs");
    try {
      decoded = tfjs.io.decodeWeights(shards, group.weights);
    } catch (e) {
      throw new TypeError(`${where}: cannot decode weights: ${(e as Error).message}`);
    }
    for (const [name, t] of Object.entries(decoded)) {
      const data = Float32Array.from(t.dataSync() as ArrayLike<number>);
      out.set(name, { dtype: "F32", shape: [...t.shape], data });
      t.dispose();
    }
  }
  return out;
}

/** `key` itself, or the one weight whose name ends with `/key` (converters add scopes). */
function findWeight(tensors: ReadonlyMap<string, unknown>, key: string, where: string): string {
  if (tensors.has(key)) return key;
  const hits = [...tensors.keys()].filter((k) => k.endsWith(`/${key}`));
  if (hits.length === 1) return hits[0]!;
  throw new TypeError(
    `${where}: weight "${key}" is missing from the weights manifest (it lists ${
      [...tensors.keys()].map((k) => `"${k}"`).join(", ") || "nothing"
    })`,
  );
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

class TfjsModel implements BaseModel {
  readonly format = "tfjs" as const;
  readonly inputs: readonly ModelIO[];
  readonly outputs: readonly ModelIO[];
  readonly layers: readonly LinearLayer[];

  constructor(
    readonly source: string,
    private readonly resolved: ResolvedBlock,
    private readonly tensors: ReadonlyMap<string, Tensor<"F32">>,
    private readonly input: string,
  ) {
    this.inputs = [{ name: input, dtype: "F32", shape: ["batch", resolved.inFeatures] }];
    this.outputs = [{ name: "y", dtype: "F32", shape: ["batch", resolved.outFeatures] }];
    this.layers = resolved.layers;
  }

  build(g: Graph, opts: BuildOptions = {}): Built {
    return buildBlock(g, this.resolved, (key) => this.tensors.get(key)!, {
      ...opts,
      input: this.input,
    });
  }

  readTensor(key: string): Promise<Tensor> {
    const t = this.tensors.get(key);
    if (!t) return Promise.reject(new RangeError(`No tensor "${key}" in "${this.source}"`));
    return Promise.resolve(t);
  }

  close(): void {}
}
