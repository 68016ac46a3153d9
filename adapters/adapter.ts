/**
 * The in-memory adapter: a PEFT config plus, per adapted module, A [r, in], B [out, r] and (DoRA)
 * the magnitude [out], in PEFT's layout whatever file it came from. Also trained biases and
 * `modules_to_save` tensors. {@linkcode matchAdapter} checks an adapter against a base model's
 * linear layers before anything is attached; {@linkcode loadAdapter} reads a PEFT or MLX-LM
 * adapter folder, telling them apart by their files.
 *
 * @module
 */

import type { TensorInput } from "../src/io/safetensors.ts";
import type { BaseModel, LinearLayer } from "../src/models/model.ts";
import type { Tensor } from "../src/tensor.ts";
import { type JsonValue, layerHyper, type PeftConfig } from "./config.ts";
import {
  type LayerAdapter,
  parsePeftKey,
  PEFT_PREFIX,
  peftKeys,
  peftPrefix,
} from "../src/lora/branch.ts";
import { loadMlxAdapter, type LoadMlxOptions, MLX_WEIGHTS_FILE } from "./mlx.ts";
import { loadPeftAdapter, PEFT_BIN_FILE, PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE } from "./peft.ts";
import { listFolder } from "./folder.ts";
import { formatShape, sameShape } from "../src/tensor.ts";

export { checkAdapter } from "./folder.ts";

/** One adapted module's tensors, PEFT layout. */
export interface AdapterLayer<T extends TensorInput = Tensor> {
  /** `[r, in]` */
  readonly A: T;
  /** `[out, r]` */
  readonly B: T;
  /** `[out]`, DoRA only. */
  readonly magnitude?: T;
}

/**
 * A LoRA / rsLoRA / DoRA adapter. `T` is `TensorInput` when tensors may be lazy (saving).
 *
 * @example
 * ```ts
 * import type { Adapter } from "./adapter.ts";
 * import { defaultPeftConfig } from "./config.ts";
 * import { tensor } from "../src/tensor.ts";
 * const adapter: Adapter = {
 *   name: "rot45",
 *   config: defaultPeftConfig({ r: 8, loraAlpha: 16, targetModules: ["fc1"] }),
 *   layers: new Map([["fc1", { A: tensor("F32", [8, 784]), B: tensor("F32", [512, 8]) }]]),
 *   biases: new Map(),
 *   extra: new Map(),
 * };
 * ```
 */
export interface Adapter<T extends TensorInput = Tensor> {
  /** Used in messages (`Cannot load adapter "rot45": ...`); the folder name when loaded. */
  readonly name: string;
  /** The adapter's `adapter_config.json`, PEFT's defaults filled in. */
  readonly config: PeftConfig;
  /** By module path (`fc1`, `model.layers.0.mlp.up_proj`). */
  readonly layers: ReadonlyMap<string, AdapterLayer<T>>;
  /** Trained biases (`bias: "all" | "lora_only"`), `[out]`, by module path. */
  readonly biases: ReadonlyMap<string, T>;
  /**
   * `modules_to_save` and other whole tensors, by model key (`classifier.weight`), in the PyTorch
   * module's layout: `[out, in]` for `nn.Linear`, `[in, out]` for GPT-2's `Conv1D` (see
   * {@link extraWeightLayouts}).
   */
  readonly extra: ReadonlyMap<string, T>;
  /** ffwd's own record of training (config, metrics), kept out of PEFT's files. */
  readonly training?: Readonly<Record<string, JsonValue>>;
}

/** A tensor whose shape differs from what the model needs. */
export interface ShapeMismatch {
  /** PEFT key of the tensor (`base_model.model.fc1.lora_A.weight`). */
  readonly key: string;
  /** The shape the model's layer needs. */
  readonly expected: readonly number[];
  /** `null` when the tensor is missing. */
  readonly actual: readonly number[] | null;
}

/** What {@linkcode matchAdapter} found. */
export interface AdapterMatch {
  /** Adapters of the layers whose every tensor fits, ready for `loraHook`. */
  readonly layers: LayerAdapter[];
  /** PEFT keys of the tensors that fit a layer. */
  readonly matched: string[];
  /** PEFT keys of tensors that name no linear layer of the model. */
  readonly unmatched: string[];
  /** Tensors of a known layer whose shape does not fit it, or that are missing. */
  readonly mismatched: ShapeMismatch[];
}

/** Options of {@linkcode matchAdapter}. */
export interface MatchOptions {
  /** Report mismatches instead of throwing; only fitting layers are returned. */
  readonly allowMismatch?: boolean;
  /** Starts the error message. Default: `Cannot load adapter "<name>"`. */
  readonly where?: string;
}

/**
 * Matches an adapter's tensors with a base model's linear layers by name and checks every shape:
 * A `[r, in]`, B `[out, r]`, magnitude and biases `[out]`, a `modules_to_save` weight of a linear
 * layer `[out, in]`. Any unmatched or mismatched tensor is an error unless `allowMismatch`:
 * `Cannot load adapter "rot45": tensor "base_model.model.fc1.lora_A.weight" has shape [8, 512],
 * expected [8, 784]`.
 *
 * @example
 * ```ts
 * import { matchAdapter } from "./adapter.ts";
 * import { defaultPeftConfig } from "./config.ts";
 * import { tensor } from "../src/tensor.ts";
 * import { strictEqual } from "node:assert/strict";
 * const fc1 = { name: "fc1", inFeatures: 4, outFeatures: 3, orientation: "out_in" as const, weightKey: "fc1.weight", dtype: "F32" as const };
 * const layers = new Map([["fc1", { A: tensor("F32", [8, 4]), B: tensor("F32", [3, 8]) }]]);
 * const adapter = { name: "a", config: defaultPeftConfig(), layers, biases: new Map(), extra: new Map() };
 * strictEqual(matchAdapter(adapter, { layers: [fc1] }).layers[0]!.scale, 1);
 * ```
 */
export function matchAdapter(
  adapter: Adapter<TensorInput>,
  model: Pick<BaseModel, "layers"> & Partial<Pick<BaseModel, "format">>,
  options: MatchOptions = {},
): AdapterMatch {
  const byName = new Map(model.layers.map((l) => [l.name, l]));
  const result: AdapterMatch = { layers: [], matched: [], unmatched: [], mismatched: [] };
  const check = (
    key: string,
    actual: readonly number[] | null,
    expected: readonly number[],
  ): boolean => {
    if (actual && sameShape(actual, expected)) return result.matched.push(key) > 0;
    result.mismatched.push({ key, expected, actual });
    return false;
  };
  for (const [module, t] of adapter.layers) {
    const k = peftKeys(module);
    const layer = byName.get(module);
    if (!layer) {
      result.unmatched.push(k.A, k.B, ...(t.magnitude ? [k.magnitude] : []));
      continue;
    }
    const { rank, alpha, scale } = layerHyper(adapter.config, module);
    const { inFeatures: n, outFeatures: m } = layer;
    let ok = check(k.A, t.A.shape, [rank, n]);
    ok = check(k.B, t.B.shape, [m, rank]) && ok;
    if (adapter.config.useDora) ok = check(k.magnitude, t.magnitude?.shape ?? null, [m]) && ok;
    if (ok) result.layers.push({ layer, rank, alpha, scale, dora: adapter.config.useDora });
  }
  for (const [module, bias] of adapter.biases) {
    const layer = byName.get(module);
    const key = `${peftPrefix(module)}.${adapter.layers.has(module) ? "base_layer." : ""}bias`;
    if (layer) check(key, bias.shape, [layer.outFeatures]);
    else result.unmatched.push(key);
  }
  for (const [name, t] of adapter.extra) {
    const cut = name.lastIndexOf(".");
    const layer = byName.get(name.slice(0, cut));
    const param = name.slice(cut + 1);
    const key = peftPrefix(name);
    if (layer && param === "weight") {
      const layouts = extraWeightLayouts(layer, adapter.config, model.format);
      const fits = layouts.find((l) => sameShape(t.shape, l.shape));
      check(key, t.shape, (fits ?? layouts[0]!).shape);
    } else if (layer && param === "bias") check(key, t.shape, [layer.outFeatures]);
    else result.unmatched.push(key);
  }
  if (!options.allowMismatch && (result.unmatched.length || result.mismatched.length)) {
    const where = options.where ?? `Cannot load adapter "${adapter.name}"`;
    throw matchError(where, adapter.layers.size, result, model);
  }
  return result;
}

/**
 * The layouts a whole saved weight (`modules_to_save`) of `layer` may come in, each with whether
 * it must be transposed into the base's storage. PEFT saves a copy of the PyTorch module, in the
 * module's own layout: `[out, in]` for `nn.Linear`, `[in, out]` for GPT-2's `Conv1D`.
 *
 * - A layer stored `[out, in]`, or any layer of a safetensors base (HF checkpoints store each
 *   module's own layout): the stored shape.
 * - A layer stored `[in, out]` in an exported graph (ONNX MatMul, Keras) came from an `nn.Linear`
 *   (copy `[out, in]`, transposed to store) or a `Conv1D` (copy `[in, out]`): both are accepted
 *   when they differ; for a square weight the adapter's `fan_in_fan_out` (set for `Conv1D`)
 *   decides.
 */
export function extraWeightLayouts(
  layer: Pick<LinearLayer, "inFeatures" | "outFeatures" | "orientation">,
  config: Pick<PeftConfig, "fanInFanOut">,
  format?: BaseModel["format"],
): { readonly shape: readonly [number, number]; readonly transpose: boolean }[] {
  const { inFeatures: n, outFeatures: m } = layer;
  if (layer.orientation === "out_in") return [{ shape: [m, n], transpose: false }];
  const conv = { shape: [n, m] as const, transpose: false };
  if (format === "safetensors") return [conv];
  const linear = { shape: [m, n] as const, transpose: true };
  if (n !== m) return [linear, conv];
  return [config.fanInFanOut ? conv : linear];
}

/**
 * One line for everything that does not fit. Problems in one layer are listed tensor by tensor;
 * problems in several layers (an adapter made for another model) are summarised: how many of its
 * layers do not fit, then the first problem of each of the first three.
 */
function matchError(
  where: string,
  adapterLayers: number,
  r: AdapterMatch,
  model: Pick<BaseModel, "layers">,
): Error {
  const problems = [
    ...r.mismatched.map((m) => ({
      key: m.key,
      text: m.actual
        ? `has shape ${formatShape(m.actual)}, expected ${formatShape(m.expected)}`
        : `is missing`,
    })),
    ...r.unmatched.map((key) => ({ key, text: "matches no linear layer of the model" })),
  ];
  const byLayer = new Map<string, string[]>();
  for (const p of problems) {
    const layer = moduleOf(p.key);
    byLayer.set(layer, [...byLayer.get(layer) ?? [], `tensor "${p.key}" ${p.text}`]);
  }
  const layers = r.unmatched.length
    ? ` (its layers: ${model.layers.map((l) => l.name).join(", ")})`
    : "";
  const Err = r.mismatched.length ? TypeError : RangeError;
  if (byLayer.size <= 1) {
    const shown = problems.slice(0, 6).map((p) => `tensor "${p.key}" ${p.text}`).join("; ") +
      (problems.length > 6 ? `; and ${problems.length - 6} more` : "");
    return new Err(`${where}: ${shown}${layers}`);
  }
  const firsts = [...byLayer.values()].map((texts) => texts[0]!);
  const of = Math.max(adapterLayers, byLayer.size);
  const made = byLayer.size >= adapterLayers ? ", so it was made for another model" : "";
  const shown = firsts.slice(0, 3).join("; ") +
    (firsts.length > 3 ? `; and ${firsts.length - 3} more layers` : "");
  return new Err(
    `${where}: ${byLayer.size} of its ${of} layers do not fit${made}: ${shown}${layers}`,
  );
}

/** The module a PEFT key belongs to (`base_model.model.fc1.lora_A.weight` → `fc1`). */
function moduleOf(key: string): string {
  const lora = parsePeftKey(key);
  if (lora) return lora.module;
  // A bias or a `modules_to_save` tensor.
  const k = key.startsWith(PEFT_PREFIX) ? key.slice(PEFT_PREFIX.length) : key;
  return k.replace(/\.(base_layer\.bias|bias|weight)$/, "");
}

/** The adapter formats ffwd reads. */
export type AdapterKind = "peft" | "mlx";

/**
 * Tells a PEFT folder (`adapter_model.safetensors`) from an MLX-LM one (`adapters.safetensors`).
 * A folder with neither is an error saying what it holds (a pickled `adapter_model.bin` included).
 *
 * @example
 * ```ts
 * import { detectAdapterKind } from "./adapter.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(await detectAdapterKind("fixtures/peft/mlp_lora"), "peft");
 * ```
 */
export async function detectAdapterKind(dir: string): Promise<AdapterKind> {
  const where = `Cannot load adapter "${dir}"`;
  const files = await listFolder(dir, where);
  if (files.has(PEFT_WEIGHTS_FILE)) return "peft";
  if (files.has(MLX_WEIGHTS_FILE)) return "mlx";
  if (files.has(PEFT_BIN_FILE)) return "peft"; // its loader explains how to convert the pickle
  if (files.has("adapters.npz")) {
    throw new TypeError(
      `${where}: "adapters.npz" is the old MLX format; re-save it as adapters.safetensors with mlx-lm`,
    );
  }
  const list = [...files].sort().join(", ") || "nothing";
  throw new TypeError(
    `${where}: no ${PEFT_WEIGHTS_FILE} (PEFT) or ${MLX_WEIGHTS_FILE} (MLX-LM) next to ${PEFT_CONFIG_FILE}; the folder holds ${list}`,
  );
}

/**
 * Loads a PEFT or MLX-LM adapter folder into PEFT's layout, detecting the format.
 *
 * @example
 * ```ts
 * import { loadAdapter } from "./adapter.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const adapter = await loadAdapter("fixtures/peft/mlp_lora");
 * deepStrictEqual(adapter.layers.get("fc1")!.A.shape, [4, 6]); // [rank, in]
 * ```
 */
export async function loadAdapter(dir: string, options: LoadMlxOptions = {}): Promise<Adapter> {
  return (await detectAdapterKind(dir)) === "peft"
    ? loadPeftAdapter(dir, options)
    : loadMlxAdapter(dir, options);
}
