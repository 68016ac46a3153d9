/**
 * Helpers shared by the activation, normalization and loss families (imported only by them).
 *
 * Means are written as `ReduceSum · (1/n)` rather than with `reduceMean`: ReduceMean takes its
 * axes as an attribute only up to opset 17, so a graph that also holds an opset-20 Gelu or an
 * opset-23 RMSNormalization would be invalid. ReduceSum (axes as an input) is valid from 13 on.
 *
 * @module
 */

import { int, type Value } from "../graph.ts";
import { knownSize, normAxis } from "../shapes.ts";
import { sizeOf } from "./constant.ts";
import { div } from "./elementwise.ts";
import { reduceSum } from "./reduce.ts";
import { cast, onnxDtype } from "./cast.ts";

/** Axes `from`..rank-1 of `x` (the normalized axes of a LayerNormalization at `axis`). */
export function trailingAxes(x: Value, axis: number): number[] {
  const a = normAxis("normalization", axis, x.rank);
  return Array.from({ length: x.rank - a }, (_, i) => a + i);
}

/** Axes 0..axis-1 of `x` (the axes a per-feature scale is broadcast over). */
export function leadingAxes(x: Value, axis: number): number[] {
  return Array.from({ length: normAxis("normalization", axis, x.rank) }, (_, i) => i);
}

/** Mean of `x` over `axes` (all axes when omitted), in any opset; n may be symbolic. */
export function meanOver(x: Value, axes?: readonly number[], keepdims = true): Value {
  const ax = axes ?? x.shape.map((_, i) => i);
  const s = reduceSum(x, ax, keepdims);
  const n = knownSize(ax.map((a) => x.shape[normAxis("mean", a, x.rank)]!));
  // Div by n, not Mul by 1/n: n is exact as a float32 constant, 1/n (say 0.2) is not, and the
  // float64 twin would carry that rounding (~1e-8 relative) into every gradient.
  if (n !== undefined) return n === 1 ? s : div(s, n);
  return div(s, cast(div(sizeOf(x), sizeOf(s)), x.dtype));
}

/**
 * Casts `v` to `dtype` with an explicit Cast node even when the dtypes already agree. The float64
 * twin retargets every Cast to float32 into a Cast to float64, so a float32-only value (the
 * Mean/InvStdDev outputs of LayerNormalization) becomes float64 there instead of a type error.
 */
export function castAlways(v: Value, dtype: Value["dtype"]): Value {
  return v.graph.node("Cast", [v], { to: int(onnxDtype(dtype)) }, [{ dtype, shape: v.shape }])[0]!;
}
