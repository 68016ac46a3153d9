/**
 * Merging an adapter into its base's weights, and taking it out again, with PEFT's semantics
 * (`peft/tuners/lora/layer.py`, `Linear.merge` / `unmerge` / `get_delta_weight`):
 *
 * - LoRA (Hu et al., 2021): `W' = W + scale · B·A`; for weights stored `[in, out]` (GPT-2 Conv1D,
 *   ONNX MatMul, Keras kernels) the delta is transposed, A and B keep the Linear layout.
 * - DoRA (Liu et al., 2024, arXiv:2402.09353): `W' = (m / ‖W + ΔW‖) · (W + ΔW)`, the norm taken per
 *   output over its inputs. Unmerging divides back with the norm recorded at merge time: it cannot
 *   be recovered from `W'`, whose rows have norm `m` whatever `W` was (PEFT caches it too).
 * - An ONNX Gemm with `alpha ≠ 1` computes `alpha · x·Wᵀ`, so its stored weight gets
 *   `W + ΔW / alpha`; a trained bias is written `b / beta`.
 * - Trained biases (`bias: "all" | "lora_only"`) and `modules_to_save` tensors are the module's
 *   full parameters in PEFT's files, assigned on load: they replace the base's tensors.
 *
 * The arithmetic runs in onnxruntime (`src/lora/merge_kernels.ts`: `deltaWeight` as one fused Gemm
 * per layer, DoRA's norm as `doraNorm` computes it, both from `src/lora/delta.ts`); TypeScript
 * only converts dtypes and scans for non-finite values, O(out·in) each. A merged weight keeps its
 * storage dtype: F16 and BF16 are rounded to nearest even.
 *
 * @module
 */

import type { BaseModel, LinearLayer } from "../src/models/model.ts";
import { castFloat, type DType, isFloat, numel, type Tensor, toFloat32 } from "../src/tensor.ts";
import { type Adapter, extraWeightLayouts, matchAdapter } from "../adapters/adapter.ts";
import type { LayerAdapter } from "../src/lora/branch.ts";
import { type KernelKind, MergeKernels } from "../src/lora/merge_kernels.ts";
import { sameShape, transpose2d } from "../src/tensor.ts";

export { deltaWeight } from "../src/lora/delta.ts";
export { type KernelArgs, type KernelKind, MergeKernels } from "../src/lora/merge_kernels.ts";

/** One adapted layer's factors, float32 in PEFT's layout. */
export interface LayerDelta {
  /** The base layer the factors adapt. */
  readonly layer: LinearLayer;
  /** The adapter's rank r for the layer. */
  readonly rank: number;
  /** The layer's LoRA scale (`loraScale`: `alpha / r`, or `alpha / √r` with rsLoRA). */
  readonly scale: number;
  /** The factor the stored weight gets: `scale`, divided by a Gemm layer's `alpha`. */
  readonly coef: number;
  /** LoRA A, `[r, in]`. */
  readonly A: Float32Array;
  /** LoRA B, `[out, r]`. */
  readonly B: Float32Array;
  /** DoRA magnitude `[out]`. */
  readonly magnitude?: Float32Array;
}

/** What merging one adapter into one base changes, checked before any weight is read. */
export interface MergePlan {
  /** The adapter's name, for messages. */
  readonly adapter: string;
  /** Adapted layers by weight key. */
  readonly deltas: ReadonlyMap<string, LayerDelta>;
  /** Biases and `modules_to_save` tensors by key, float32 in the stored layout. */
  readonly replaced: ReadonlyMap<string, Tensor<"F32">>;
  /** The adapted layers, as the unmerged graph (`loraHook`) takes them. */
  readonly layers: readonly LayerAdapter[];
}

/** Weights with an adapter merged in (only the tensors that changed). */
export interface MergedWeights {
  /** The plan the merge carried out. */
  readonly plan: MergePlan;
  /** New tensors by key, in their stored dtype and layout: model-build `overrides`. */
  readonly tensors: Map<string, Tensor>;
  /** DoRA's norms `‖W + ΔW‖` by weight key, needed to unmerge. */
  readonly norms: Map<string, Float32Array>;
}

/** Options of {@linkcode mergeAdapter} and {@linkcode unmergeAdapter}. */
export interface MergeOptions {
  /** Kernel sessions to use (and keep); default: new ones, released at the end. */
  readonly kernels?: MergeKernels;
}

/** Options of {@linkcode mergeTensor}. */
export interface MergeTensorOptions {
  readonly kernels: MergeKernels;
  /**
   * A float32 buffer of at least the tensor's size for the result, reused from call to call by
   * a streaming writer (a float32 result then is a view of it, valid until the next call).
   */
  readonly into?: Float32Array;
  /**
   * Finds the first NaN or infinity of a merged tensor, or -1 (default {@linkcode firstNonFinite},
   * a scan in TypeScript). A merge of many large tensors can ask onnxruntime first.
   */
  readonly findNonFinite?: (t: Tensor) => number | Promise<number>;
}

/** A Gemm's alpha and beta (1 and 1 for every other layer). */
function gemmFactors(layer: LinearLayer): { alpha: number; beta: number } {
  const l = layer as LinearLayer & { alpha?: number; beta?: number };
  return { alpha: l.alpha ?? 1, beta: l.beta ?? 1 };
}

/**
 * Matches `adapter` with `model`'s layers and lists what a merge changes. Throws on any tensor
 * that fits no layer, a DoRA layer inside a Gemm with `alpha ≠ 1`, a bias for a layer without one,
 * and a weight shared by several layers.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { planMerge } from "./merge.ts";
 * import { loadAdapter } from "../adapters/adapter.ts";
 * import { openSafetensorsModel } from "../src/models/blocks/safetensors_model.ts";
 * const model = await openSafetensorsModel("fixtures/peft/mlp_lora/base.safetensors");
 * const plan = planMerge(model, await loadAdapter("fixtures/peft/mlp_lora"));
 * deepStrictEqual([...plan.deltas.keys()], ["fc1.weight", "fc2.weight"]);
 * model.close();
 * ```
 */
export function planMerge(
  model: Pick<BaseModel, "layers"> & Partial<Pick<BaseModel, "format">>,
  adapter: Adapter,
): MergePlan {
  const where = `Cannot merge adapter "${adapter.name}"`;
  const match = matchAdapter(adapter, model);
  const byName = new Map(model.layers.map((l) => [l.name, l]));
  const deltas = new Map<string, LayerDelta>();
  for (const ad of match.layers) {
    const t = adapter.layers.get(ad.layer.name)!;
    const { alpha } = gemmFactors(ad.layer);
    if (ad.dora && alpha !== 1) {
      throw new RangeError(
        `${where}: layer "${ad.layer.name}" is a Gemm with alpha ${alpha}, and DoRA's norm is not defined for a scaled weight`,
      );
    }
    deltas.set(ad.layer.weightKey, {
      layer: ad.layer,
      rank: ad.rank,
      scale: ad.scale,
      coef: ad.scale / alpha,
      A: toFloat32(t.A).data,
      B: toFloat32(t.B).data,
      ...(t.magnitude ? { magnitude: toFloat32(t.magnitude).data } : {}),
    });
  }
  const replaced = new Map<string, Tensor<"F32">>();
  for (const [module, bias] of adapter.biases) {
    const layer = byName.get(module)!;
    if (!layer.biasKey) {
      throw new TypeError(
        `${where}: layer "${module}" has no bias in the base, but the adapter holds a trained bias`,
      );
    }
    replaced.set(layer.biasKey, scaled(toFloat32(bias), 1 / gemmFactors(layer).beta));
  }
  for (const [name, t] of adapter.extra) {
    const layer = byName.get(name.slice(0, name.lastIndexOf(".")))!;
    const { alpha, beta } = gemmFactors(layer);
    if (name.endsWith(".bias")) replaced.set(layer.biasKey!, scaled(toFloat32(t), 1 / beta));
    else {
      // Saved in the PyTorch module's layout (see extraWeightLayouts); the base stores its own.
      const layout = extraWeightLayouts(layer, adapter.config, model.format)
        .find((l) => sameShape(t.shape, l.shape))!;
      const w = layout.transpose ? transpose2d(toFloat32(t)) : toFloat32(t);
      replaced.set(layer.weightKey, scaled(w as Tensor<"F32">, 1 / alpha));
    }
  }
  for (const key of replaced.keys()) {
    if (deltas.has(key)) {
      throw new RangeError(`${where}: tensor "${key}" is both adapted and replaced whole`);
    }
  }
  for (const key of [...deltas.keys(), ...replaced.keys()]) {
    const users = model.layers.filter((l) => l.weightKey === key || l.biasKey === key);
    if (users.length > 1) {
      throw new RangeError(
        `${where}: tensor "${key}" is shared by layers ${
          users.map((l) => `"${l.name}"`).join(", ")
        }; merging into it would change all of them`,
      );
    }
  }
  return { adapter: adapter.name, deltas, replaced, layers: match.layers };
}

function scaled(t: Tensor<"F32">, f: number): Tensor<"F32"> {
  if (f === 1) return t;
  return { dtype: "F32", shape: t.shape, data: t.data.map((v) => v * f) };
}

/**
 * The merged value of one tensor of the plan, from its base value: the adapted weight, the
 * replacement, or `base` itself for a key the plan does not change. The result has the base's
 * dtype and shape; a non-finite value is an error naming the adapter and the layer.
 *
 * @example
 * ```ts ignore
 * const kernels = new MergeKernels();
 * const { tensor } = await mergeTensor(plan, "fc1.weight", await model.readTensor("fc1.weight"), { kernels });
 * await kernels.release();
 * ```
 */
export async function mergeTensor(
  plan: MergePlan,
  key: string,
  base: Tensor,
  opts: MergeTensorOptions,
): Promise<{ tensor: Tensor; norm?: Float32Array }> {
  const d = plan.deltas.get(key);
  const r = plan.replaced.get(key);
  if (!d && !r) return { tensor: base };
  const what = d ? `layer "${d.layer.name}"` : `tensor "${key}"`;
  if (!isFloat(base.dtype) || numel(base.shape) !== numel(r?.shape ?? base.shape)) {
    throw new TypeError(
      `Cannot merge adapter "${plan.adapter}" into ${what}: base tensor "${key}" is ${base.dtype} [${
        base.shape.join(", ")
      }]`,
    );
  }
  let data: Float32Array, norm: Float32Array | undefined;
  if (d) {
    ({ weight: data, norm } = await opts.kernels.run(d.magnitude ? "dora" : "lora", {
      ...args(d),
      weight: toFloat32(base).data,
      into: opts.into,
    }));
  } else data = r!.data;
  const tensor = stored(data, base.dtype, base.shape);
  const bad = await (opts.findNonFinite ?? firstNonFinite)(tensor);
  if (bad >= 0) {
    throw new RangeError(
      `Cannot merge adapter "${plan.adapter}" into ${what}: the merged ${tensor.dtype} weight has a non-finite value at element ${bad} (${
        data[bad]
      }); the adapter seems broken`,
    );
  }
  return norm ? { tensor, norm } : { tensor };
}

function args(d: LayerDelta) {
  const { layer, rank, coef, A, B, magnitude } = d;
  return {
    orientation: layer.orientation,
    outFeatures: layer.outFeatures,
    inFeatures: layer.inFeatures,
    rank,
    coef,
    A,
    B,
    magnitude,
  };
}

/** Float32 values in a floating storage dtype (F16/BF16 rounded to nearest even). */
function stored(data: Float32Array, dtype: DType, shape: readonly number[]): Tensor {
  const t: Tensor<"F32"> = { dtype: "F32", shape: [...shape], data };
  return dtype === "F32" ? t : castFloat(t, dtype as "F64" | "F16" | "BF16");
}

/**
 * Index of the first NaN or infinity of a floating-point tensor, or -1.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { firstNonFinite } from "./merge.ts";
 * import { tensor } from "../src/tensor.ts";
 * strictEqual(firstNonFinite(tensor("F32", [3], new Float32Array([1, NaN, 2]))), 1);
 * strictEqual(firstNonFinite(tensor("BF16", [1], new Uint16Array([0x3f80]))), -1);
 * ```
 */
export function firstNonFinite(t: Tensor): number {
  if (t.dtype === "F16" || t.dtype === "BF16") {
    const exp = t.dtype === "F16" ? 0x7c00 : 0x7f80; // all-ones exponent: Inf or NaN
    const d = t.data as Uint16Array;
    for (let i = 0; i < d.length; i++) if ((d[i]! & exp) === exp) return i;
    return -1;
  }
  const d = t.data as Float32Array | Float64Array;
  for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i]!)) return i;
  return -1;
}

/**
 * Merges `adapter` into `model`'s weights in memory and returns the changed tensors (weights of
 * adapted layers, replaced biases and `modules_to_save` tensors) in their stored dtypes.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { mergeAdapter } from "./merge.ts";
 * import { loadAdapter } from "../adapters/adapter.ts";
 * import { openSafetensorsModel } from "../src/models/blocks/safetensors_model.ts";
 * const model = await openSafetensorsModel("fixtures/peft/mlp_lora/base.safetensors");
 * const merged = await mergeAdapter(model, await loadAdapter("fixtures/peft/mlp_lora"));
 * deepStrictEqual(merged.tensors.get("fc1.weight")!.shape, [8, 6]);
 * model.close();
 * ```
 */
export async function mergeAdapter(
  model: BaseModel,
  adapter: Adapter,
  opts: MergeOptions = {},
): Promise<MergedWeights> {
  const plan = planMerge(model, adapter);
  const kernels = opts.kernels ?? new MergeKernels();
  const tensors = new Map<string, Tensor>();
  const norms = new Map<string, Float32Array>();
  try {
    for (const key of [...plan.deltas.keys(), ...plan.replaced.keys()]) {
      const r = await mergeTensor(plan, key, await model.readTensor(key), { kernels });
      tensors.set(key, r.tensor);
      if (r.norm) norms.set(key, r.norm);
    }
  } finally {
    if (!opts.kernels) await kernels.release();
  }
  return { plan, tensors, norms };
}

/**
 * Takes a merged adapter out again: subtracts each delta (for DoRA, first divides by `m / n` with
 * the recorded norm). Returns the restored weights of the adapted layers; replaced biases and
 * `modules_to_save` tensors cannot be restored from the merge and are not returned.
 *
 * @example
 * ```ts
 * import { ok } from "node:assert/strict";
 * import { mergeAdapter, unmergeAdapter } from "./merge.ts";
 * import { loadAdapter } from "../adapters/adapter.ts";
 * import { openSafetensorsModel } from "../src/models/blocks/safetensors_model.ts";
 * const model = await openSafetensorsModel("fixtures/peft/mlp_lora/base.safetensors");
 * const merged = await mergeAdapter(model, await loadAdapter("fixtures/peft/mlp_lora"));
 * const restored = await unmergeAdapter(merged);
 * const base = (await model.readTensor("fc1.weight")).data as Float32Array;
 * const back = restored.get("fc1.weight")!.data as Float32Array;
 * ok(back.every((v, i) => Math.abs(v - base[i]!) < 1e-6)); // the base weights, up to rounding
 * model.close();
 * ```
 */
export async function unmergeAdapter(
  merged: MergedWeights,
  opts: MergeOptions = {},
): Promise<Map<string, Tensor>> {
  const kernels = opts.kernels ?? new MergeKernels();
  const out = new Map<string, Tensor>();
  try {
    // Reverse order of the merge, as PEFT unmerges its adapters.
    for (const [key, d] of [...merged.plan.deltas].reverse()) {
      const w = merged.tensors.get(key)!;
      const kind: KernelKind = d.magnitude ? "dora_unmerge" : "lora";
      const { weight } = await kernels.run(kind, {
        ...args(d),
        coef: -d.coef,
        weight: toFloat32(w).data,
        norm: merged.norms.get(key),
      });
      out.set(key, stored(weight, w.dtype, w.shape));
    }
  } finally {
    if (!opts.kernels) await kernels.release();
  }
  return out;
}
