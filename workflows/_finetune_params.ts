/**
 * What a fine-tuning run trains and saves (imported only by `finetune.ts` and its `_finetune_*.ts`
 * siblings): the initial values of the adapters (seeded, or warm-started from another adapter),
 * the base tensors trained whole (PEFT's `bias` and `modules_to_save`), the adapter they make, and
 * the values an adapter of the run holds.
 *
 * @module
 */

import type { BaseModel } from "../src/models/model.ts";
import { Rng } from "../src/rng.ts";
import { type Tensor, toFloat32 } from "../src/tensor.ts";
import { type Adapter, loadAdapter, matchAdapter } from "../adapters/adapter.ts";
import type { JsonValue, PeftConfig } from "../adapters/config.ts";
import {
  escapeRegExp,
  isAllLinear,
  isNoTargets,
  namesLayer,
  planAdapters,
  selectLayers,
} from "../adapters/targets.ts";
import { toTargetOptions } from "../adapters/config.ts";
import { weightRowNorms } from "../src/lora/dora.ts";
import { initAdapter, type LayerAdapter, peftKeys } from "../src/lora/branch.ts";
import type { ResolvedTrainOptions } from "./train_options.ts";

/** The trained values at the start: A, B (and DoRA's magnitudes), by PEFT key. */
export async function initialParams(
  model: BaseModel,
  adapters: readonly LayerAdapter[],
  opts: ResolvedTrainOptions,
): Promise<Map<string, Float32Array>> {
  const params = new Map<string, Float32Array>();
  const rng = new Rng(opts.seed);
  const method = opts.config.initLoraWeights === "gaussian" ? "gaussian" : "kaiming";
  for (const ad of adapters) {
    const k = peftKeys(ad.layer.name);
    const init = initAdapter(ad, rng, { method });
    params.set(k.A, init.A.data);
    params.set(k.B, init.B.data);
    if (ad.dora) params.set(k.magnitude, (await weightRowNorms(model, ad)).data);
  }
  if (opts.initAdapter) {
    const warm = await loadAdapter(opts.initAdapter);
    matchAdapter(warm, model);
    // A BF16 / F16 adapter holds 16-bit patterns: widen them before copying.
    const layers = new Map([...warm.layers].map(([name, l]) => [name, {
      A: toFloat32(l.A),
      B: toFloat32(l.B),
      ...(l.magnitude ? { magnitude: toFloat32(l.magnitude) } : {}),
    }]));
    for (const [key, v] of adapterParams({ ...warm, layers }, adapters, new Map())) {
      const p = params.get(key);
      if (!p) continue; // a DoRA magnitude the run does not train
      if (v.length !== p.length) {
        throw new TypeError(
          `Cannot warm-start from "${opts.initAdapter}": tensor "${key}" has ${v.length} values, the adapter being trained needs ${p.length} (check --rank and --targets)`,
        );
      }
      p.set(v);
    }
  }
  return params;
}

/**
 * The adapter of the values `params`, as saved in `opts.outDir` (named after the folder; an
 * in-memory run's is named `adapter`).
 */
export function toAdapter(
  opts: ResolvedTrainOptions,
  adapters: readonly LayerAdapter[],
  params: ReadonlyMap<string, Float32Array>,
  trained: ReadonlyMap<string, TrainedTensor>,
  training?: Record<string, JsonValue>,
): Adapter {
  const layers = new Map(adapters.map((ad) => {
    const k = peftKeys(ad.layer.name);
    const { inFeatures: n, outFeatures: m } = ad.layer;
    const t = (data: Float32Array, shape: number[]): Tensor => ({
      dtype: "F32",
      shape,
      data: data.slice(),
    });
    return [ad.layer.name, {
      A: t(params.get(k.A)!, [ad.rank, n]),
      B: t(params.get(k.B)!, [m, ad.rank]),
      ...(ad.dora ? { magnitude: t(params.get(k.magnitude)!, [m]) } : {}),
    }];
  }));
  const name = opts.outDir?.replace(/\/+$/, "").split("/").pop() || "adapter";
  return {
    name,
    config: { ...opts.config, targetModules: savedTargets(opts.config, adapters) },
    layers,
    biases: new Map(
      [...trained].filter(([, t]) => t.kind === "bias").map(([key, t]) => [
        t.module,
        { dtype: "F32", shape: [...t.shape], data: params.get(key)!.slice() },
      ]),
    ),
    extra: new Map(
      [...trained].filter(([, t]) => t.kind === "extra").map(([key, t]) => [
        key,
        { dtype: "F32", shape: [...t.shape], data: params.get(key)!.slice() },
      ]),
    ),
    training,
  };
}

/**
 * The values of `adapter`, made by {@link toAdapter} for the same layers, by parameter name; a
 * value the adapter lacks is left out.
 */
export function adapterParams(
  adapter: Adapter,
  adapters: readonly LayerAdapter[],
  trained: ReadonlyMap<string, TrainedTensor>,
): Map<string, Float32Array> {
  const params = new Map<string, Float32Array>();
  const set = (key: string, t: Tensor | undefined) => {
    if (t?.dtype === "F32") params.set(key, t.data as Float32Array);
  };
  for (const ad of adapters) {
    const k = peftKeys(ad.layer.name);
    const l = adapter.layers.get(ad.layer.name);
    set(k.A, l?.A);
    set(k.B, l?.B);
    set(k.magnitude, l?.magnitude);
  }
  for (const [key, t] of trained) {
    set(key, t.kind === "bias" ? adapter.biases.get(t.module) : adapter.extra.get(key));
  }
  return params;
}

/**
 * The adapters a run puts on `model`: none for `targets` none (an empty list); `all-linear`
 * leaves out the layers trained whole, as PEFT gives `modules_to_save` precedence over it.
 */
export function runAdapters(
  model: BaseModel,
  config: PeftConfig,
  onWarning: (message: string) => void,
): LayerAdapter[] {
  const t = config.targetModules;
  if (isNoTargets(t)) return [];
  const names = model.layers.map((l) => l.name);
  const options = { ...toTargetOptions(config, names), onWarning };
  const saved = config.modulesToSave ?? [];
  if (!isAllLinear(t) || saved.length === 0) return planAdapters(model, options);
  const rest = selectLayers(model, "all-linear").filter((l) => !namesLayer(saved, l.name));
  if (rest.length === 0) return [];
  const exactly = rest.map((l) => escapeRegExp(l.name)).join("|");
  return planAdapters(model, { ...options, targetModules: exactly });
}

/**
 * The config of a `full` run: no adapter (`target_modules` empty) and every linear layer of
 * `model` a module to save, so every weight and bias trains and the adapter folder holds them.
 */
export function fullConfig(config: PeftConfig, model: Pick<BaseModel, "layers">): PeftConfig {
  return { ...config, targetModules: [], modulesToSave: model.layers.map((l) => l.name) };
}

/** A base tensor trained whole: a layer's bias (`bias` option) or a `modules_to_save` tensor. */
export interface TrainedTensor {
  readonly kind: "bias" | "extra";
  /** The layer's module path. */
  readonly module: string;
  readonly shape: readonly number[];
}

/**
 * The base tensors trained alongside the adapters, by source key: PEFT's `bias: "lora_only"`
 * (biases of adapted layers), `"all"` (every linear layer's bias), and `modules_to_save` (the
 * named layers' weights and biases, saved whole).
 */
export function trainedTensors(
  model: BaseModel,
  adapters: readonly LayerAdapter[],
  config: PeftConfig,
): Map<string, TrainedTensor> {
  const out = new Map<string, TrainedTensor>();
  const saved = config.modulesToSave ?? [];
  for (const layer of model.layers) {
    const whole = namesLayer(saved, layer.name);
    if (whole) {
      if (layer.orientation !== "out_in") {
        throw new TypeError(
          `Cannot train "${layer.name}" as a module to save: its weight is stored [in, out], and saving it whole is supported for [out, in] weights only`,
        );
      }
      if (adapters.some((a) => a.layer === layer)) {
        throw new TypeError(
          `Cannot train "${layer.name}" both with an adapter and as a module to save`,
        );
      }
      out.set(layer.weightKey, {
        kind: "extra",
        module: layer.name,
        shape: [layer.outFeatures, layer.inFeatures],
      });
      if (layer.biasKey) {
        out.set(layer.biasKey, { kind: "extra", module: layer.name, shape: [layer.outFeatures] });
      }
      continue;
    }
    const adapted = adapters.some((a) => a.layer === layer);
    if (layer.biasKey && (config.bias === "all" || (config.bias === "lora_only" && adapted))) {
      out.set(layer.biasKey, { kind: "bias", module: layer.name, shape: [layer.outFeatures] });
    }
  }
  for (const m of saved) {
    if (!model.layers.some((l) => namesLayer([m], l.name))) {
      throw new RangeError(
        `modules_to_save entry "${m}" matches no linear layer; available layers: ${
          model.layers.map((l) => l.name).join(", ")
        }`,
      );
    }
  }
  return out;
}

/**
 * `target_modules` as saved: the names of the layers adapted when the config said `all-linear`
 * (or nothing), as PEFT saves the modules `all-linear` resolved to rather than the word; names
 * and regular expressions as given, as PEFT keeps them.
 */
function savedTargets(
  config: PeftConfig,
  adapters: readonly LayerAdapter[],
): PeftConfig["targetModules"] {
  const t = config.targetModules;
  return t === null || isAllLinear(t) ? adapters.map((a) => a.layer.name) : t;
}
