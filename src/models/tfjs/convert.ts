/**
 * Keras models, as TF.js LayersModels store them (`modelTopology` of `model.json`), converted to an
 * ONNX graph: Sequential models, functional models (`Model` / `Functional` with `inbound_nodes`)
 * and models nested in either, in the configs Keras 2, Keras 3 and TF.js write.
 *
 * The graph computes what Keras computes at inference (dropout off, moving statistics on):
 * - each layer becomes nodes named `<layer>/<Op>` whose first output has the node's name (a Dense
 *   layer's logits are `<layer>/BiasAdd`), and weights become initializers `<layer>/<weight>`,
 *   so ffwd's ONNX importer names each Dense layer as Keras does (`dense`, `dense_1`);
 * - inputs keep Keras's names (an InputLayer's, or `<first layer>_input` in a Sequential model,
 *   as TF.js names it), with the batch and other unknown sizes symbolic;
 * - a model with one output calls it `y`; several outputs take their layers' names.
 *
 * Keras 2 writes a call's inputs as `[[layer, node, tensor, kwargs], …]`, Keras 3 as
 * `{args: [{class_name: "__keras_tensor__", config: {keras_history: [layer, node, tensor]}}]}`.
 * Node indices count the calls listed in the same config, which is how Keras renumbers them.
 *
 * @module
 */

import type { ModelProto } from "../../onnx/gen/onnx_pb.ts";
import type { Tensor } from "../../tensor.ts";
import { ACTIVATION_LAYERS } from "./_activations.ts";
import { type Dim, Emitter, type KTensor } from "./_emit.ts";
import { type Config, type Converter, inputDtype, type LayerCtx } from "./_keras.ts";
import { CONV_LAYERS } from "./_layers_conv.ts";
import { CORE_LAYERS } from "./_layers_core.ts";
import { RNN_LAYERS } from "./_layers_rnn.ts";

/** A layer entry of a Keras config. */
interface Entry {
  readonly class_name?: string;
  readonly name?: string;
  readonly config?: Config;
  readonly inbound_nodes?: readonly unknown[];
}

/** A reference to a layer's output: the layer, its call (node) and the output's position. */
interface Ref {
  readonly layer: string;
  readonly node: number;
  readonly tensor: number;
}

/** Every layer class ffwd converts, by class. */
const LAYERS: Readonly<Record<string, Converter>> = {
  ...CORE_LAYERS,
  ...ACTIVATION_LAYERS,
  ...CONV_LAYERS,
  ...RNN_LAYERS,
};

const MODELS = new Set(["Sequential", "Model", "Functional"]);

/**
 * The layer classes a TF.js model may contain, sorted: converted layers, `InputLayer`, and the
 * model classes that nest.
 *
 * @example
 * ```ts
 * import { supportedLayers } from "./convert.ts";
 * import { ok } from "node:assert/strict";
 * ok(supportedLayers().includes("Conv2D"));
 * ```
 */
export function supportedLayers(): string[] {
  return [...Object.keys(LAYERS), "InputLayer", ...MODELS].sort();
}

/** A Keras layer the conversion met, in the order it was converted. */
export interface KerasLayerInfo {
  /** The Keras layer name, which names its nodes and weights (`dense_1`). */
  readonly name: string;
  /** The Keras class (`Conv2D`). */
  readonly class: string;
  /** The names of the models it is nested in, outermost first (`[]` at the top level). */
  readonly path: readonly string[];
  /** Its Keras config as the file wrote it. */
  readonly config: Readonly<Record<string, unknown>>;
  /** Number of weight values it reads (moving statistics included, as Keras counts them). */
  readonly parameters: number;
}

/** The result of {@link convertKeras}. */
export interface ConvertedKeras {
  /** Opset 17, initializers inline. */
  readonly proto: ModelProto;
  /** The layers converted, in order, through nested models (shared layers once). */
  readonly layers: readonly KerasLayerInfo[];
}

/**
 * Converts a `modelTopology` with its decoded weights (by manifest name) to an ONNX model.
 * Throws a `TypeError` starting with `where` that names the layer and its class when a layer
 * cannot be converted.
 *
 * @example
 * ```ts
 * import { convertKeras } from "./convert.ts";
 * import type { Tensor } from "../../tensor.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const dense = { name: "fc", units: 2, batch_input_shape: [null, 3] };
 * const topology = { class_name: "Sequential", config: { layers: [{ class_name: "Dense", config: dense }] } };
 * const f32 = (shape: number[]): Tensor<"F32"> =>
 *   ({ dtype: "F32", shape, data: new Float32Array(shape.reduce((a, b) => a * b)) });
 * const weights = new Map([["fc/kernel", f32([3, 2])], ["fc/bias", f32([2])]]);
 * const { proto } = convertKeras(topology, weights, "Cannot load TF.js model");
 * deepStrictEqual(proto.graph!.node.map((n) => `${n.opType} ${n.output}`), [
 *   "MatMul fc/MatMul",
 *   "Add y",
 * ]);
 * ```
 */
export function convertKeras(
  topology: unknown,
  weights: ReadonlyMap<string, Tensor<"F32">>,
  where: string,
): ConvertedKeras {
  const t = (topology ?? {}) as Record<string, unknown>;
  const model = (t.model_config ?? t) as Entry;
  const version = String(t.keras_version ?? "");
  const text = JSON.stringify(model);
  const keras3 = /^3\./.test(version) || text.includes('"__keras_tensor__"') ||
    text.includes('"module":"keras.layers"');
  const c = new Conversion(weights, where, keras3);
  const cls = model.class_name ?? "?";
  if (!MODELS.has(cls)) {
    throw new TypeError(
      `${where}: the model is a ${cls}, expected Sequential, Model or Functional`,
    );
  }
  const outputs = c.apply(model, null, []);
  const names = outputs.length === 1
    ? [c.em.fresh("y")]
    : c.outputNames(model).map((n) => c.em.fresh(n));
  const proto = c.em.finish(outputs.map((o) => o.name), names, nameOf(model) ?? "keras");
  // Paths start inside the top-level model.
  const layers = c.layers.map((l) => ({ ...l, path: l.path.slice(1) }));
  return { proto, layers };
}

class Conversion {
  readonly em = new Emitter();
  readonly layers: { -readonly [K in keyof KerasLayerInfo]: KerasLayerInfo[K] }[] = [];
  private readonly counted = new Set<string>();

  constructor(
    private readonly weights: ReadonlyMap<string, Tensor<"F32">>,
    private readonly where: string,
    private readonly keras3: boolean,
  ) {}

  /** Applies a layer or a nested model to `inputs` (`null`: the model's own graph inputs). */
  apply(entry: Entry, inputs: readonly KTensor[] | null, path: readonly string[]): KTensor[] {
    const cls = entry.class_name ?? "?";
    const name = nameOf(entry) ?? cls;
    if (cls === "Sequential") return [this.sequential(entry, inputs, [...path, name])];
    if (MODELS.has(cls)) return this.functional(entry, inputs, [...path, name]);
    const convert = LAYERS[cls];
    if (!convert) {
      throw new TypeError(
        `${this.where}: layer "${name}" of class ${cls} is not supported (supported: ${
          supportedLayers().join(", ")
        })`,
      );
    }
    let info = this.layers.find((l) => l.name === name);
    if (!info) {
      info = { name, class: cls, path, config: entry.config ?? {}, parameters: 0 };
      this.layers.push(info);
    }
    const fail = (message: string): never => {
      throw new TypeError(`${this.where}: layer "${name}" (${cls}): ${message}`);
    };
    const ctx: LayerCtx = {
      em: this.em,
      name,
      cls,
      config: entry.config ?? {},
      keras3: this.keras3,
      weight: (w) => {
        const t = this.weight(name, w, fail);
        if (!this.counted.has(`${name}/${w}`)) {
          this.counted.add(`${name}/${w}`);
          info.parameters += t.data.length;
        }
        return t;
      },
      fail,
    };
    return convert(ctx, inputs!);
  }

  private sequential(entry: Entry, given: readonly KTensor[] | null, path: string[]): KTensor {
    const layers = layersOf(entry);
    if (given && given.length !== 1) {
      throw new TypeError(
        `${this.where}: Sequential model "${path.at(-1)}" gets ${given.length} inputs`,
      );
    }
    let x = given?.[0] ?? this.sequentialInput(entry);
    for (const l of layers) {
      if (l.class_name === "InputLayer") continue;
      const out = this.apply(l, [x], path);
      if (out.length !== 1) {
        throw new TypeError(
          `${this.where}: layer "${nameOf(l)}" returns ${out.length} tensors inside Sequential ` +
            `model "${path.at(-1)}", which passes one`,
        );
      }
      x = out[0]!;
    }
    return x;
  }

  /** The graph input of a top-level Sequential model, named and shaped as TF.js does. */
  private sequentialInput(entry: Entry): KTensor {
    let first = layersOf(entry)[0];
    while (first && first.class_name === "Sequential") first = layersOf(first)[0];
    if (first && MODELS.has(first.class_name ?? "")) {
      const ref = refList(first.config?.input_layers)[0];
      first = layersOf(first).find((l) => nameOf(l) === ref?.layer);
    }
    const c = first?.config ?? {};
    const shape = declaredShape(c) ?? declaredShape(entry.config ?? {}, "build_input_shape");
    if (!first || !shape) {
      throw new TypeError(
        `${this.where}: the Sequential model declares no input shape on its first layer`,
      );
    }
    const name = first.class_name === "InputLayer" ? nameOf(first)! : `${nameOf(first)}_input`;
    return this.em.input(name, shape, inputDtype(c));
  }

  private functional(entry: Entry, given: readonly KTensor[] | null, path: string[]): KTensor[] {
    const cfg = entry.config ?? {};
    const layers = layersOf(entry);
    const byName = new Map(layers.map((l) => [nameOf(l) ?? "", l]));
    const produced = new Map<string, KTensor[][]>();
    const inputs = refList(cfg.input_layers);
    const model = path.at(-1);
    if (given && given.length !== inputs.length) {
      throw new TypeError(
        `${this.where}: model "${model}" gets ${given.length} inputs, expected ${inputs.length}`,
      );
    }
    inputs.forEach((r, i) => {
      const l = byName.get(r.layer);
      const shape = declaredShape(l?.config ?? {});
      if (!given && !shape) {
        throw new TypeError(
          `${this.where}: input layer "${r.layer}" of model "${model}" declares no shape`,
        );
      }
      produced.set(r.layer, [[
        given?.[i] ?? this.em.input(r.layer, shape!, inputDtype(l?.config ?? {})),
      ]]);
    });
    // A nested model has a node of its own (its inputs to its outputs) before its calls, which
    // Keras and TF.js count in references to it.
    const offset = (l?: Entry) => l && MODELS.has(l.class_name ?? "") && this.ownNode(l) ? 1 : 0;
    const resolve = (r: Ref) =>
      produced.get(r.layer)?.[r.node - offset(byName.get(r.layer))]?.[r.tensor];
    let pending = layers.filter((l) => l.class_name !== "InputLayer").flatMap((l) =>
      (l.inbound_nodes ?? []).map((n, node) => ({ l, node, refs: callRefs(n) }))
    );
    // Keras lists layers in a topological order; passes repeat only for configs that do not.
    while (pending.length) {
      const before = pending.length;
      pending = pending.filter((p) => {
        if (!p.refs.every((r) => resolve(r) !== undefined)) return true;
        const outs = this.apply(p.l, p.refs.map((r) => resolve(r)!), path);
        const calls = produced.get(nameOf(p.l)!) ?? [];
        calls[p.node] = outs;
        produced.set(nameOf(p.l)!, calls);
        return false;
      });
      if (pending.length === before) {
        const p = pending[0]!;
        const missing = p.refs.find((r) => resolve(r) === undefined)!;
        throw new TypeError(
          `${this.where}: layer "${
            nameOf(p.l)
          }" of model "${model}" reads output ${missing.tensor} ` +
            `of call ${missing.node} of "${missing.layer}", which no layer computes`,
        );
      }
    }
    return refList(cfg.output_layers).map((r) => {
      const t = resolve(r);
      if (!t) {
        throw new TypeError(
          `${this.where}: output "${r.layer}" of model "${model}" is never computed`,
        );
      }
      return t;
    });
  }

  /** Whether a model has its own first node: Keras 2 leaves it out of unbuilt Sequential models. */
  private ownNode(model: Entry): boolean {
    if (model.class_name !== "Sequential") return true;
    const first = layersOf(model)[0];
    if (!first) return false;
    if (first.class_name === "InputLayer" || declaredShape(first.config ?? {})) return true;
    return first.class_name === "Sequential"
      ? this.ownNode(first)
      : MODELS.has(first.class_name ?? "");
  }

  /** Names of a top-level functional model's outputs: the layer, `_k` for its k-th output. */
  outputNames(model: Entry): string[] {
    return refList(model.config?.output_layers).map((r) =>
      r.tensor ? `${r.layer}_${r.tensor}` : r.layer
    );
  }

  /** The weight `w` of `layer`: `<layer>/<w>`, or the one key with `layer` in its scopes. */
  private weight(layer: string, w: string, fail: (m: string) => never): Tensor<"F32"> {
    const exact = this.weights.get(`${layer}/${w}`);
    if (exact) return exact;
    const hits = [...this.weights.keys()].filter((k) => {
      const parts = k.split("/");
      return parts.at(-1) === w && parts.slice(0, -1).includes(layer);
    });
    if (hits.length === 1) return this.weights.get(hits[0]!)!;
    const keys = [...this.weights.keys()];
    const listed = keys.slice(0, 8).map((k) => `"${k}"`).join(", ") +
      (keys.length > 8 ? ", …" : "");
    return fail(
      `weight "${layer}/${w}" is ${
        hits.length ? "ambiguous" : "missing from the weights manifest"
      } ` +
        `(it lists ${listed || "nothing"})`,
    );
  }
}

function nameOf(entry: Entry): string | undefined {
  const n = entry.config?.name ?? entry.name;
  return typeof n === "string" ? n : undefined;
}

/** The layers of a model config: Keras 2.1's bare list, or `config.layers`. */
function layersOf(entry: Entry): Entry[] {
  const cfg = entry.config as unknown;
  if (Array.isArray(cfg)) return cfg as Entry[];
  const layers = (cfg as { layers?: unknown } | undefined)?.layers;
  return Array.isArray(layers) ? layers as Entry[] : [];
}

/** The declared input shape: `batch_input_shape` (Keras 2, TF.js) or `batch_shape` (Keras 3). */
function declaredShape(c: Config, key?: string): Dim[] | undefined {
  const s = key ? c[key] : c.batch_input_shape ?? c.batch_shape ?? c.batchInputShape;
  if (!Array.isArray(s) || s.length < 1) return undefined;
  return s.map((d) => (typeof d === "number" ? d : null));
}

/** `[[layer, node, tensor], …]`, or Keras 3's single `[layer, node, tensor]`. */
function refList(v: unknown): Ref[] {
  if (!Array.isArray(v)) return [];
  const list = typeof v[0] === "string" ? [v] : v;
  return list.filter(Array.isArray).map((r) => ({
    layer: String(r[0]),
    node: Number(r[1] ?? 0),
    tensor: Number(r[2] ?? 0),
  }));
}

/** The inputs of one call: Keras 2's list of refs, or the Keras 3 tensors in `args`. */
function callRefs(node: unknown): Ref[] {
  if (Array.isArray(node)) return refList(node.filter(Array.isArray));
  const out: Ref[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === "object") {
      const o = v as { class_name?: unknown; config?: { keras_history?: unknown } };
      const h = o.config?.keras_history;
      if (o.class_name === "__keras_tensor__" && Array.isArray(h)) out.push(...refList([h]));
    }
  };
  walk((node as { args?: unknown } | null)?.args);
  return out;
}
