/**
 * The serving form of adapters: one graph, compiled once, that runs any set of adapters of any
 * ranks in one batch, each row with its own adapter (or none).
 *
 * For each adapted layer, the K adapters of a batch are stacked along the rank axis, ranks
 * zero-padded to the largest (`rmax`), with each adapter's scale folded into its B:
 *
 *     A_cat [K·rmax, in]   B_cat [out, K·rmax]   R [K, out]   onehot [batch, K]
 *     h  = (x · A_catᵀ) ⊙ mask          mask = onehot expanded to [batch, K·rmax]
 *     y' = y + (ratio − 1) ⊙ (y − b) + ratio ⊙ (h · B_catᵀ),   ratio = onehot·R + (1 − Σ onehot)
 *
 * Masked columns are zero, so each row sees exactly its adapter's `scale·B·A·x`. `R` holds DoRA's
 * `m / ‖W + scale·B·A‖` (ones for plain LoRA), and rows with no adapter get ratio 1 and no
 * delta. K and rmax are symbolic: changing adapters, ranks or their mix never recompiles.
 *
 * @module
 */

import type { Value } from "../engine/graph.ts";
import { add, mul, sub } from "../engine/ops/elementwise.ts";
import { gemm, matmul } from "../engine/ops/matmul.ts";
import { reduceSum } from "../engine/ops/reduce.ts";
import type { LinearHook, LinearLayer, LinearSite } from "../models/model.ts";

/** Name of the per-row adapter selector input, `[batch, K]`. */
export const ONEHOT = "adapter_onehot";
/** Name of the per-row rank mask input, `[batch, K·rmax]` (the one-hot repeated rmax times). */
export const MASK = "adapter_mask";

/** Input names of one layer's stacked adapter tensors. */
export function stackNames(layer: string): { A: string; B: string; R: string } {
  return { A: `${layer}.lora_A_cat`, B: `${layer}.lora_B_cat`, R: `${layer}.dora_ratio` };
}

/** Inputs a multi-adapter graph declares for one layer. */
export interface StackInputs {
  readonly A: Value; // [K·rmax, in]
  readonly B: Value; // [out, K·rmax]
  readonly R: Value; // [K, out]
}

/**
 * A hook that adds the stacked-adapter branch to every layer in `layers`, declaring the selector
 * inputs on first use. `declared` receives each layer's inputs. The selector and mask are fed by
 * the host (a few hundred floats per batch), which keeps the graph free of runtime shape logic.
 */
export function multiLoraHook(
  layers: readonly LinearLayer[],
  declared: Map<string, StackInputs>,
): LinearHook {
  const names = new Set(layers.map((l) => l.name));
  let onehot: Value | null = null;
  let mask: Value | null = null;
  return (site: LinearSite): Value => {
    if (!names.has(site.layer.name)) return site.y;
    const { x, y, bias, layer } = site;
    const g = x.graph;
    if (x.rank !== 2) {
      throw new TypeError(
        `Cannot serve mixed adapters on "${layer.name}": its input ${x} is not 2-D`,
      );
    }
    onehot ??= g.input(ONEHOT, x.dtype, [x.shape[0]!, "adapters"]);
    mask ??= g.input(MASK, x.dtype, [x.shape[0]!, "adapter_rank"]);
    const n = stackNames(layer.name);
    const inputs: StackInputs = {
      A: g.input(n.A, x.dtype, ["adapter_rank", layer.inFeatures]),
      B: g.input(n.B, x.dtype, [layer.outFeatures, "adapter_rank"]),
      R: g.input(n.R, x.dtype, ["adapters", layer.outFeatures]),
    };
    declared.set(layer.name, inputs);
    const h = mul(gemm(x, inputs.A, null, { transB: true }), mask); // [batch, K·rmax]
    const delta = gemm(h, inputs.B, null, { transB: true }); // [batch, out]
    const none = sub(1, reduceSum(onehot, [1], true)); // [batch, 1]: 1 for rows with no adapter
    const ratio = add(matmul(onehot, inputs.R), none); // [batch, out]
    const base = bias ? sub(y, bias) : y; // x·Wᵀ
    return add(add(y, mul(sub(ratio, 1), base)), mul(ratio, delta));
  };
}
