/**
 * The LoRA maths every path builds on, as graph nodes: the weight delta (PEFT's
 * `get_delta_weight`, `peft/tuners/lora/layer.py`) and DoRA's norm of the adapted weight (Liu et
 * al., 2024, arXiv:2402.09353, eq. 5; PEFT's `DoraLinearLayer.get_weight_norm`). Training and the
 * adapter-inputs export (`branch.ts`), serving (`dora.ts`) and merging (`merge_kernels.ts`) all
 * call these, so the formulas and their orientation rules live here once.
 *
 * Weights stored `[in, out]` (GPT-2 Conv1D, ONNX MatMul initializers) keep A and B in the Linear
 * layout: only the delta is transposed (PEFT's `fan_in_fan_out`), and the norm is taken down the
 * columns instead of along the rows, so the stored weight is never transposed.
 *
 * @module
 */

import type { Value } from "../engine/graph.ts";
import { mul, sqrt } from "../engine/ops/elementwise.ts";
import { gemm } from "../engine/ops/matmul.ts";
import { reduceSum } from "../engine/ops/reduce.ts";
import type { Orientation } from "../models/model.ts";

/**
 * PEFT's `get_delta_weight` as graph nodes: `base + coef · B·A` in the weight's storage layout
 * (`[out, in]`, or its transpose for `[in, out]` storage: only the delta is transposed, A and B
 * keep the Linear layout). `coef` is the LoRA scale (divided by a Gemm layer's `alpha`), negated
 * to unmerge; without `base` the value is the delta itself. The scale is folded into the thin
 * factor and `base` is Gemm's `C`, so the dense `[out, in]` delta is never materialised on its own.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { Graph } from "../engine/graph.ts";
 * import { deltaWeight } from "./delta.ts";
 * const g = new Graph();
 * const A = g.input("A", "F32", [2, 4]); // [r, in]
 * const B = g.input("B", "F32", [3, 2]); // [out, r]
 * deepStrictEqual(deltaWeight(A, B, 0.5, "in_out").shape, [4, 3]);
 * ```
 */
export function deltaWeight(
  A: Value,
  B: Value,
  coef: Value | number,
  orientation: Orientation,
  base: Value | null = null,
): Value {
  const sB = mul(B, coef); // [out, r]: the scale folded into the thin factor
  return orientation === "out_in"
    ? gemm(sB, A, base) // [out, in]
    : gemm(A, sB, base, { transA: true, transB: true }); // [in, out]
}

/**
 * `Σ w²` of each output of a weight in its storage layout, `[out]`: along the rows of an
 * `[out, in]` weight, down the columns of an `[in, out]` one. The squared half of
 * {@linkcode doraNorm}, on its own for the merge kernels, which sum it over blocks of rows.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { Graph } from "../engine/graph.ts";
 * import { outputSquares } from "./delta.ts";
 * const w = new Graph().input("W", "F32", [4, 3]); // [in, out]
 * deepStrictEqual(outputSquares(w, "in_out").shape, [3]);
 * ```
 */
export function outputSquares(w: Value, orientation: Orientation): Value {
  return reduceSum(mul(w, w), [orientation === "out_in" ? 1 : 0]);
}

/** A LoRA branch's factors as graph values, for {@linkcode doraNorm}. */
export interface LoraFactors {
  /** LoRA A, `[r, in]`. */
  readonly A: Value;
  /** LoRA B, `[out, r]`. */
  readonly B: Value;
  /** The LoRA scale (see `loraScale`). */
  readonly coef: Value | number;
}

/**
 * DoRA's weight norm `‖W + coef·B·A‖` of each output, `[out]`: the adapted weight from
 * {@linkcode deltaWeight} in `weight`'s storage layout, then the L2 norm over each output's
 * inputs. Without `lora` it is the base weight's own norm (DoRA's initial magnitude). Callers
 * that need it constant in the backward (training, as PEFT does) detach the result.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { Graph } from "../engine/graph.ts";
 * import { Session } from "../engine/runtime.ts";
 * import { doraNorm } from "./delta.ts";
 * const g = new Graph();
 * const W = g.input("W", "F32", [2, 2]); // [out, in]
 * const A = g.input("A", "F32", [1, 2]);
 * const B = g.input("B", "F32", [2, 1]);
 * const n = doraNorm(W, "out_in", { A, B, coef: 2 });
 * g.output(n);
 * const s = await Session.compile(g, { threads: 1 });
 * const f32 = (shape: number[], v: number[]) => ({
 *   dtype: "F32" as const,
 *   shape,
 *   data: new Float32Array(v),
 * });
 * const W0 = f32([2, 2], [3, 0, 0, 1]);
 * const out = await s.run({ W: W0, A: f32([1, 2], [0, 1]), B: f32([2, 1], [2, 0]) });
 * deepStrictEqual([...out[n.name]!.data], [5, 1]); // W + 2·B·A has rows [3, 4] and [0, 1]
 * await s.release();
 * ```
 */
export function doraNorm(weight: Value, orientation: Orientation, lora?: LoraFactors): Value {
  const v = lora ? deltaWeight(lora.A, lora.B, lora.coef, orientation, weight) : weight;
  return sqrt(outputSquares(v, orientation)); // [out]
}
