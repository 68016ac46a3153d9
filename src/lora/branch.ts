/**
 * LoRA, rsLoRA and DoRA branches with PEFT's semantics, attached to a base model through its
 * linear hook.
 *
 * - LoRA (Hu et al., 2021, arXiv:2106.09685): `y' = y + scale · B·A·x`, A [r, in], B [out, r],
 *   `scale = lora_alpha / r`; rsLoRA (Kalajdzievski, 2023, arXiv:2312.03732): `lora_alpha / √r`.
 * - DoRA (Liu et al., 2024, arXiv:2402.09353), as PEFT computes it: with `n = ‖W + scale·B·A‖`
 *   per output row, detached from the backward, `y' = b + (m / n) · (x·Wᵀ + scale·B·A·x)`.
 * - Weights stored [in, out] (GPT-2 Conv1D, ONNX MatMul initializers) keep A and B in the Linear
 *   layout: only the delta is transposed (PEFT's `fan_in_fan_out`).
 *
 * A and B (and DoRA's magnitude) are graph inputs named by their PEFT keys, so one compiled graph
 * serves every adapter of the same shapes: training feeds the current values each step, and
 * inference swaps adapters by feeding other tensors.
 *
 * @module
 */

import type { Graph, Value } from "../engine/graph.ts";
import { add, div, mul, sub } from "../engine/ops/elementwise.ts";
import { gemm, matmul } from "../engine/ops/matmul.ts";
import { reduceSum } from "../engine/ops/reduce.ts";
import { detach } from "../engine/ops/detach.ts";
import { transpose } from "../engine/ops/shape.ts";
import { sqrt } from "../engine/ops/elementwise.ts";
import type { LinearHook, LinearLayer, LinearSite } from "../models/model.ts";
import { Rng } from "../rng.ts";
import type { Tensor } from "../tensor.ts";

/** The adapter of one linear layer. */
export interface LayerAdapter {
  /** The base layer adapted. */
  readonly layer: LinearLayer;
  /** The rank r of this layer's branch. */
  readonly rank: number;
  /** `lora_alpha` of this layer (after `alpha_pattern`). */
  readonly alpha: number;
  /** `alpha / rank`, or `alpha / √rank` for rsLoRA. */
  readonly scale: number;
  /** Whether the layer is DoRA (it then has a magnitude input). */
  readonly dora: boolean;
}

/** PEFT's key prefix of a module's adapter tensors. */
export function peftPrefix(module: string): string {
  return `base_model.model.${module}`;
}

/**
 * PEFT keys of one layer's adapter tensors.
 *
 * @example
 * ```ts
 * import { peftKeys } from "./branch.ts";
 * peftKeys("fc1").A; // "base_model.model.fc1.lora_A.weight"
 * ```
 */
export function peftKeys(module: string): { A: string; B: string; magnitude: string } {
  const p = peftPrefix(module);
  return {
    A: `${p}.lora_A.weight`,
    B: `${p}.lora_B.weight`,
    magnitude: `${p}.lora_magnitude_vector`,
  };
}

/**
 * Scale of a LoRA branch: `alpha / r`, or `alpha / √r` with rsLoRA.
 *
 * @example
 * ```ts
 * import { loraScale } from "./branch.ts";
 * loraScale(16, 8, false); // 2
 * loraScale(16, 4, true); // 8
 * ```
 */
export function loraScale(alpha: number, rank: number, rslora: boolean): number {
  return rslora ? alpha / Math.sqrt(rank) : alpha / rank;
}

/** Graph inputs of one layer's adapter. */
export interface AdapterInputs {
  /** LoRA A, `[r, in]`, named `base_model.model.<layer>.lora_A.weight`. */
  readonly A: Value;
  /** LoRA B, `[out, r]`, named `base_model.model.<layer>.lora_B.weight`. */
  readonly B: Value;
  /** DoRA magnitude `[out]`, or `null` for a LoRA layer. */
  readonly magnitude: Value | null;
}

/** Options of {@link loraHook}. */
export interface LoraHookOptions {
  /** Dropout on the branch input: a function that applies it (it owns the mask inputs). */
  dropout?: (x: Value, adapter: LayerAdapter) => Value;
}

/**
 * A linear hook that adds each adapter's branch, declaring A, B (and the DoRA magnitude) as
 * graph inputs named by their PEFT keys. `declared` receives the inputs it created.
 */
export function loraHook(
  adapters: readonly LayerAdapter[],
  declared: Map<string, AdapterInputs>,
  opts: LoraHookOptions = {},
): LinearHook {
  const byName = new Map(adapters.map((a) => [a.layer.name, a]));
  return (site: LinearSite): Value => {
    const ad = byName.get(site.layer.name);
    if (!ad) return site.y;
    const g = site.x.graph;
    const inputs = declareInputs(g, ad, site.x.dtype);
    declared.set(ad.layer.name, inputs);
    const xin = opts.dropout ? opts.dropout(site.x, ad) : site.x;
    const delta = branch(xin, inputs.A, inputs.B, ad.scale); // [..., out]
    if (!ad.dora) return add(site.y, delta);
    return doraOutput(site, inputs, delta, ad.scale);
  };
}

function declareInputs(g: Graph, ad: LayerAdapter, dtype: Value["dtype"]): AdapterInputs {
  const k = peftKeys(ad.layer.name);
  const { inFeatures: n, outFeatures: m } = ad.layer;
  return {
    A: g.input(k.A, dtype, [ad.rank, n]),
    B: g.input(k.B, dtype, [m, ad.rank]),
    magnitude: ad.dora ? g.input(k.magnitude, dtype, [m]) : null,
  };
}

/** `scale · (x·Aᵀ)·Bᵀ`: two thin GEMMs, never the full [out, in] delta. */
function branch(x: Value, A: Value, B: Value, scale: number): Value {
  if (x.rank === 2) {
    const xa = gemm(x, A, null, { transB: true }); // [batch, r]
    return gemm(xa, B, null, { transB: true, alpha: scale }); // [batch, out]
  }
  const xa = matmul(x, transpose(A)); // [..., r]
  return mul(matmul(xa, transpose(B)), scale);
}

/** DoRA: `b + (m / n) · (x·Wᵀ + delta)` with `n = ‖W + scale·B·A‖` per row, detached. */
function doraOutput(site: LinearSite, inputs: AdapterInputs, delta: Value, scale: number): Value {
  const { weight, bias, y, layer } = site;
  const ba = mul(matmul(inputs.B, inputs.A), scale); // [out, in]
  const w = layer.orientation === "out_in" ? weight : transpose(weight); // [out, in]
  const norm = detach(sqrt(reduceSum(mul(add(w, ba), add(w, ba)), [1]))); // [out]
  const ratio = div(inputs.magnitude!, norm); // [out]
  const base = bias ? sub(y, bias) : y; // x·Wᵀ
  const out = mul(ratio, add(base, delta));
  return bias ? add(out, bias) : out;
}

/** Initial adapter values. */
export interface AdapterInit {
  /** `"kaiming"` (PEFT's default: A ~ U(±1/√in), B = 0), `"gaussian"` (A ~ N(0, 1/r)). */
  readonly method?: "kaiming" | "gaussian";
}

/**
 * Initial A, B (and magnitude, which needs the base weight's row norms) of one layer, drawn from
 * `rng` in a fixed order (A's elements row by row), so a seed fixes the adapter.
 */
export function initAdapter(
  ad: LayerAdapter,
  rng: Rng,
  opts: AdapterInit = {},
): { A: Tensor<"F32">; B: Tensor<"F32"> } {
  const { inFeatures: n, outFeatures: m } = ad.layer;
  const A = new Float32Array(ad.rank * n);
  if ((opts.method ?? "kaiming") === "kaiming") {
    // kaiming_uniform_(a=√5): gain √(2/(1+5)), bound = gain·√3/√fan_in = 1/√in
    const bound = 1 / Math.sqrt(n);
    rng.fillUniform(A, -bound, bound);
  } else {
    rng.fillNormal(A, 0, 1 / ad.rank);
  }
  return {
    A: { dtype: "F32", shape: [ad.rank, n], data: A },
    B: { dtype: "F32", shape: [m, ad.rank], data: new Float32Array(m * ad.rank) },
  };
}

export { Rng };
