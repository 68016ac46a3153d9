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
 * A layer inside a sequence model sees `x [batch, …, in]` (`[batch, seq, hidden]`): the per-row
 * mask and ratio get size-1 middle axes (`[batch, 1, K·rmax]`, `[batch, 1, out]`) and broadcast
 * over every position of their row. The layer's first axis must be the model's batch: a layer
 * fed `[batch·seq, hidden]` has lost which row a position belongs to, and is refused.
 *
 * @module
 */

import type { Dim, Value } from "../engine/graph.ts";
import { add, mul, sub } from "../engine/ops/elementwise.ts";
import { gemm, matmul } from "../engine/ops/matmul.ts";
import { reduceSum } from "../engine/ops/reduce.ts";
import { transpose, unsqueeze } from "../engine/ops/shape.ts";
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

/** Options of {@linkcode multiLoraHook}. */
export interface MultiLoraOptions {
  /**
   * The model's batch dimension (`"batch"`, or the fixed size of the file): every adapted layer's
   * input must start with it. Default: the first adapted layer's first dimension.
   */
  readonly batch?: Dim;
}

/**
 * A hook that adds the stacked-adapter branch to every layer in `layers`, declaring the selector
 * inputs on first use. `declared` receives each layer's inputs. The selector and mask are fed by
 * the host (a few hundred floats per batch), which keeps the graph free of runtime shape logic.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { Graph } from "../engine/graph.ts";
 * import { multiLoraHook, ONEHOT, type StackInputs } from "./multi.ts";
 * import { openSafetensorsModel } from "../models/blocks/safetensors_model.ts";
 * const model = await openSafetensorsModel("fixtures/mnist/base.safetensors");
 * const g = new Graph();
 * const declared = new Map<string, StackInputs>();
 * model.build(g, { hook: multiLoraHook(model.layers, declared) });
 * deepStrictEqual([...declared.keys()], model.layers.map((l) => l.name));
 * deepStrictEqual(g.inputs.find((v) => v.name === ONEHOT)!.shape, ["batch", "adapters"]);
 * model.close();
 * ```
 */
export function multiLoraHook(
  layers: readonly LinearLayer[],
  declared: Map<string, StackInputs>,
  opts: MultiLoraOptions = {},
): LinearHook {
  const names = new Set(layers.map((l) => l.name));
  let onehot: Value | null = null;
  let mask: Value | null = null;
  return (site: LinearSite): Value => {
    if (!names.has(site.layer.name)) return site.y;
    const { x, y, bias, layer } = site;
    const g = x.graph;
    const batch = opts.batch ?? onehot?.shape[0] ?? x.shape[0];
    if (x.rank < 2 || batch === undefined || x.shape[0] !== batch) {
      throw new TypeError(
        `Cannot serve mixed adapters on "${layer.name}": its input ${x} does not start with the ` +
          `model's batch dimension ${batch}${x.rank < 2 ? "" : " (a row per batch row is needed)"}`,
      );
    }
    onehot ??= g.input(ONEHOT, x.dtype, [batch, "adapters"]);
    mask ??= g.input(MASK, x.dtype, [batch, "adapter_rank"]);
    const n = stackNames(layer.name);
    const inputs: StackInputs = {
      A: g.input(n.A, x.dtype, ["adapter_rank", layer.inFeatures]),
      B: g.input(n.B, x.dtype, [layer.outFeatures, "adapter_rank"]),
      R: g.input(n.R, x.dtype, ["adapters", layer.outFeatures]),
    };
    declared.set(layer.name, inputs);
    // [batch, n] → [batch, 1, …, 1, n]: one value per row, broadcast over the middle axes of x
    const middle = Array.from({ length: x.rank - 2 }, (_, i) => i + 1);
    const perRow = (v: Value) => (middle.length ? unsqueeze(v, middle) : v);
    let delta: Value; // [batch, …, out]
    if (x.rank === 2) {
      const h = mul(gemm(x, inputs.A, null, { transB: true }), mask); // [batch, K·rmax]
      delta = gemm(h, inputs.B, null, { transB: true });
    } else {
      const h = mul(matmul(x, transpose(inputs.A)), perRow(mask)); // [batch, …, K·rmax]
      delta = matmul(h, transpose(inputs.B));
    }
    const none = sub(1, reduceSum(onehot, [1], true)); // [batch, 1]: 1 for rows with no adapter
    const ratio = perRow(add(matmul(onehot, inputs.R), none)); // [batch, …, out]
    const base = bias ? sub(y, bias) : y; // x·Wᵀ
    return add(add(y, mul(sub(ratio, 1), base)), mul(ratio, delta));
  };
}
