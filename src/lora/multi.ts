/**
 * The serving form of adapters: one graph, compiled once, that runs any set of adapters of any
 * ranks in one batch, each row with its own adapter (or none), doing each row's LoRA work once.
 *
 * The host groups the batch's rows by adapter into K chunks of m slots (m = the largest group,
 * at least 2; a smaller group repeats a row in its spare slots; rows without an adapter form a
 * chunk of their own, whose adapter is all zeros), and stacks the K adapters of each adapted
 * layer, ranks zero-padded to the largest (`rmax`), DoRA's ratio folded into B:
 *
 *     A [K, rmax, in]   B [K, out, rmax]   D [K, out] = ratio − 1 (0 for LoRA and for none)
 *     rows [K, m]: the batch row of each slot      back [batch]: each row's slot, k·m + j
 *     xg = x[rows]                                 [K, m, …, in]   (a gather)
 *     d  = (xg · Aₖᵀ) · Bₖᵀ                         [K, m, …, out]  (K batched products)
 *     y' = y + d[back] + D[adapter] ⊙ (y − b)
 *
 * so each row sees exactly its adapter's `ratio ⊙ (scale·B·A·x)` plus DoRA's `(ratio − 1) ⊙ x·Wᵀ`,
 * and the LoRA products cost K·m rows (the batch's rows when its groups are equal) rather than
 * every row times every adapter. K, m and rmax are symbolic: changing adapters, ranks or their mix
 * never recompiles. `Aₖᵀ` and `Bₖᵀ` are transposes onnxruntime folds into the products.
 *
 * DoRA's term is optional (`dora: false`): it is four passes over every adapted layer's output
 * (a gather of D, `y − b`, a product and a sum) that add exact zeros for LoRA adapters. Without
 * it, 64 rows with one LoRA adapter run at 1.02–1.11× the throughput on a `1024 → 4096 → 1024`
 * GELU FFN and 1.18–1.22× on `256 → 1024 → 256` (`bench/serve_bench.ts`, 2 cores). The engine
 * compiles without it and compiles once more, with it, when the first DoRA adapter is registered.
 * Both graphs give a LoRA row the same bits: the term adds `0 ⊙ (y − b)`, an exact zero (unless
 * `y − b` is not finite, when the row is not finite either way).
 *
 * Cost of a mixed batch: the same work as a single-adapter batch of its size but for the K
 * batched products, whose extra time follows the adapters' bytes, not the rows (onnxruntime packs
 * each adapter's A and B for its m rows; the stacks themselves are built once per set of adapters
 * and kept). 64 rows over 8 r = 16 adapters read 5 MB of stacks at `1024 → 4096 → 1024` against
 * 0.6 MB for one adapter, and ran at 0.91–0.97× its throughput (0.90–0.94× at `256 → 1024 → 256`).
 *
 * Exactness: a row's slot computes the same GEMMs whatever else is in the batch (a product of m
 * ≥ 2 rows sums each row in the same order, zero-padded ranks add exact zeros, gathers copy), so
 * a row's output does not depend on its batch. A row without an adapter adds exact zeros computed
 * from its own values, so it keeps `y` (a row whose activations are not finite stays not finite).
 * One exception, measured with onnxruntime 1.30: MLAS sums `xg · Aₖᵀ` over `in` in blocks whose
 * size follows `rmax` (2048 inputs up to rank 16, 1024 up to 32, 512 up to 64), so on a layer
 * wider than the smaller block a row's output moves by about 1e-7 when another adapter in its
 * batch raises `rmax` across a step (rank-16 rows of `4096 → 1024` batched with rank 32 or 64).
 *
 * A layer inside a sequence model sees `x [batch, …, in]` (`[batch, seq, hidden]`): a slot then
 * holds a whole row `[seq, hidden]`, the adapters broadcast over the middle axes, and the per-row
 * selectors get size-1 middle axes. The layer's first axis must be the model's batch: a layer fed
 * `[batch·seq, hidden]` has lost which row a position belongs to, and is refused.
 *
 * @module
 */

import type { Dim, Value } from "../engine/graph.ts";
import { shapeOf } from "../engine/ops/constant.ts";
import { add, mul, sub } from "../engine/ops/elementwise.ts";
import { gather } from "../engine/ops/gather.ts";
import { matmul } from "../engine/ops/matmul.ts";
import { flatten, reshapeTo, transposeLast2, unsqueeze } from "../engine/ops/shape.ts";
import type { LinearHook, LinearLayer, LinearSite } from "../models/model.ts";

/** Name of the slot → batch row input, I32 `[adapters, adapter_slots]`. */
export const ROWS = "adapter_rows";
/** Name of the batch row → slot input (`k·m + j`), I32 `[batch]`. */
export const BACK = "adapter_back";
/** Name of the batch row → adapter (chunk) index input, I32 `[batch]`. */
export const ADAPTER = "adapter_index";

/** Input names of one layer's stacked adapter tensors. */
export function stackNames(layer: string): { A: string; B: string; D: string } {
  return { A: `${layer}.lora_A_stack`, B: `${layer}.lora_B_stack`, D: `${layer}.dora_ratio_m1` };
}

/** Inputs a multi-adapter graph declares for one layer. */
export interface StackInputs {
  readonly A: Value; // [K, rmax, in]
  readonly B: Value; // [K, out, rmax]
  /** `[K, out]`, or `null` in a graph without DoRA's term. */
  readonly D: Value | null;
}

/** Options of {@linkcode multiLoraHook}. */
export interface MultiLoraOptions {
  /**
   * The model's batch dimension (`"batch"`, or the fixed size of the file): every adapted layer's
   * input must start with it. Default: the first adapted layer's first dimension.
   */
  readonly batch?: Dim;
  /**
   * Add DoRA's `(ratio − 1) ⊙ (y − b)` term and declare the `D` inputs (default true). Without it
   * the graph serves LoRA adapters only (and rows without one), with four fewer passes over
   * every adapted layer's output.
   */
  readonly dora?: boolean;
}

/** The selectors every adapted layer reads. */
interface Selectors {
  readonly rows: Value; // [K, m]
  readonly back: Value; // [batch]
  readonly adapter: Value | null; // [batch], for DoRA's term
}

/**
 * A hook that adds the grouped-adapter branch to every layer in `layers`, declaring the selector
 * inputs on first use ({@linkcode ADAPTER} only with DoRA's term). `declared` receives each
 * layer's inputs. The selectors are fed by the host (a few integers per row), which keeps the
 * graph free of runtime shape logic.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { Graph } from "../engine/graph.ts";
 * import { multiLoraHook, ROWS, type StackInputs } from "./multi.ts";
 * import { openSafetensorsModel } from "../models/blocks/safetensors_model.ts";
 * const model = await openSafetensorsModel("fixtures/mnist/base.safetensors");
 * const g = new Graph();
 * const declared = new Map<string, StackInputs>();
 * model.build(g, { hook: multiLoraHook(model.layers, declared) });
 * deepStrictEqual([...declared.keys()], model.layers.map((l) => l.name));
 * deepStrictEqual(g.inputs.find((v) => v.name === ROWS)!.shape, ["adapters", "adapter_slots"]);
 * model.close();
 * ```
 */
export function multiLoraHook(
  layers: readonly LinearLayer[],
  declared: Map<string, StackInputs>,
  opts: MultiLoraOptions = {},
): LinearHook {
  const names = new Set(layers.map((l) => l.name));
  let sel: Selectors | null = null;
  return (site: LinearSite): Value => {
    if (!names.has(site.layer.name)) return site.y;
    const { x, y, bias, layer } = site;
    const g = x.graph;
    const batch = opts.batch ?? sel?.back.shape[0] ?? x.shape[0];
    if (x.rank < 2 || batch === undefined || x.shape[0] !== batch) {
      throw new TypeError(
        `Cannot serve mixed adapters on "${layer.name}": its input ${x} does not start with the ` +
          `model's batch dimension ${batch}${x.rank < 2 ? "" : " (a row per batch row is needed)"}`,
      );
    }
    sel ??= {
      rows: g.input(ROWS, "I32", ["adapters", "adapter_slots"]),
      back: g.input(BACK, "I32", [batch]),
      adapter: opts.dora === false ? null : g.input(ADAPTER, "I32", [batch]),
    };
    const n = stackNames(layer.name);
    const inputs: StackInputs = {
      A: g.input(n.A, x.dtype, ["adapters", "adapter_rank", layer.inFeatures]),
      B: g.input(n.B, x.dtype, ["adapters", layer.outFeatures, "adapter_rank"]),
      D: opts.dora === false ? null : g.input(n.D, x.dtype, ["adapters", layer.outFeatures]),
    };
    declared.set(layer.name, inputs);
    // [K or batch, …, n] → [K or batch, 1, …, 1, …, n]: broadcast over the middle axes of x (and
    // the slots of a chunk)
    const middle = Array.from({ length: x.rank - 2 }, (_, i) => i + 1);
    const spread = (v: Value) => (middle.length ? unsqueeze(v, middle) : v);
    const xg = gather(x, sel.rows); // [K, m, …, in]
    const h = matmul(xg, transposeLast2(spread(inputs.A))); // [K, m, …, rmax]
    const d = matmul(h, transposeLast2(spread(inputs.B))); // [K, m, …, out]
    let delta = gather(flatten(d, 2), sel.back); // [batch, … · out]
    if (x.rank > 2) delta = reshapeTo(delta, shapeOf(y), y.shape); // [batch, …, out]
    if (!inputs.D || !sel.adapter) return add(y, delta);
    const dora = spread(gather(inputs.D, sel.adapter)); // [batch, …, out]
    const base = bias ? sub(y, bias) : y; // x·Wᵀ
    return add(add(y, delta), mul(dora, base));
  };
}
