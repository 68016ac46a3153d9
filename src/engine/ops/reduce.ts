/**
 * Reductions: ReduceSum (axes as an input, opset 13+) and ReduceMean (axes as an attribute, opset
 * 13–17), plus `meanOver`, a mean valid in any opset. `unbroadcast`, which sums a broadcast
 * gradient back to an operand's shape, lives in `shape.ts` (its comment says why).
 *
 * @module
 */

import { int, ints, type Node, type Shape, type Value } from "../graph.ts";
import { knownSize, normAxis, reducedShape } from "../shapes.ts";
import { inputsOf, type Vjp } from "../vjp.ts";
import { constantInts, int64s, shapeOf, sizeOf } from "./constant.ts";
import { cast } from "./cast.ts";
import { expand, unsqueeze } from "./shape.ts";
import { div } from "./elementwise.ts";
import { attr } from "./_helpers.ts";

function allAxes(x: Value): number[] {
  return Array.from({ length: x.rank }, (_, i) => i);
}

/**
 * Sum over `axes` (all axes when omitted; an explicit `[]` returns `x` unchanged).
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { reduceSum } from "./reduce.ts";
 * const g = new Graph();
 * const s = reduceSum(g.input("x", "F32", ["batch", 3]), [1]); // [batch]
 * ```
 */
export function reduceSum(x: Value, axes?: readonly number[], keepdims = false): Value {
  const ax = (axes ?? allAxes(x)).map((a) => normAxis("ReduceSum", a, x.rank));
  const shape = reducedShape("ReduceSum", x, ax, keepdims);
  if (ax.length === 0) return x;
  return x.graph.node(
    "ReduceSum",
    [x, int64s(x.graph, ax)],
    { keepdims: int(keepdims ? 1 : 0) },
    [{ dtype: x.dtype, shape }],
  )[0]!;
}

// dX = dY spread back over the reduced axes
const reduceSumVjp: Vjp = ({ node, dy: [dy] }) => {
  const x = inputsOf(node)[0]!;
  return [spread(dy!, x, axesOf(node, x), attr(node, "keepdims", 1) !== 0), null];
};

/**
 * Mean over `axes` (all axes when omitted). Axes are an attribute, as in opset 13–17; the VJP
 * also reads the axes input of opset 18+ graphs.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { reduceMean } from "./reduce.ts";
 * const g = new Graph();
 * const m = reduceMean(g.input("x", "F32", ["batch", 3]), [0], true); // [1, 3]
 * ```
 */
export function reduceMean(x: Value, axes?: readonly number[], keepdims = false): Value {
  const ax = (axes ?? allAxes(x)).map((a) => normAxis("ReduceMean", a, x.rank));
  const shape = reducedShape("ReduceMean", x, ax, keepdims);
  return x.graph.node(
    "ReduceMean",
    [x],
    { axes: ints(ax), keepdims: int(keepdims ? 1 : 0) },
    [{ dtype: x.dtype, shape }],
  )[0]!;
}

// dX = dY / n spread back, n the number of elements averaged (runtime for symbolic axes)
const reduceMeanVjp: Vjp = ({ node, dy: [dy] }) => {
  const x = node.inputs[0]!;
  const axes = axesOf(node, x);
  const n = count(x, node.outputs[0]!, axes);
  // Divide rather than multiply by 1/n: a float32 constant 1/n is inexact in the float64 twin.
  const scaled = n === 1 ? dy! : div(dy!, n);
  return [spread(scaled, x, axes, attr(node, "keepdims", 1) !== 0), null];
};

/**
 * Mean of `x` over `axes` (all axes when omitted), in any opset; n may be symbolic. Used by the
 * normalization and loss families.
 *
 * Means are written as `ReduceSum · (1/n)` rather than with `reduceMean`: ReduceMean takes its
 * axes as an attribute only up to opset 17, so a graph that also holds an opset-20 Gelu or an
 * opset-23 RMSNormalization would be invalid. ReduceSum (axes as an input) is valid from 13 on.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { meanOver } from "./reduce.ts";
 * const m = meanOver(new Graph().input("x", "F32", ["batch", 4]), [1]); // [batch, 1]
 * ```
 */
export function meanOver(x: Value, axes?: readonly number[], keepdims = true): Value {
  const ax = axes ?? x.shape.map((_, i) => i);
  const s = reduceSum(x, ax, keepdims);
  const n = knownSize(ax.map((a) => x.shape[normAxis("mean", a, x.rank)]!));
  // Div by n, not Mul by 1/n: n is exact as a float32 constant, 1/n (say 0.2) is not, and the
  // float64 twin would carry that rounding (~1e-8 relative) into every gradient.
  if (n !== undefined) return n === 1 ? s : div(s, n);
  return div(s, cast(div(sizeOf(x), sizeOf(s)), x.dtype));
}

/** Brings a reduced gradient back to the input's shape (inverse of a keepdims=0 reduce). */
function spread(dy: Value, x: Value, axes: readonly number[], keepdims: boolean): Value {
  const kept = keepdims || axes.length === 0 ? dy : unsqueeze(dy, axes);
  return expand(kept, shapeOf(x), x.shape);
}

/**
 * The reduced axes of a reduce node: the `axes` attribute (opset < 18 ReduceMean) or input
 * (ReduceSum 13+, every reduce 18+), all axes when absent or empty, none when empty and
 * `noop_with_empty_axes` is set.
 */
function axesOf(node: Node, x: Value): number[] {
  const a = node.inputs[1];
  let axes = (node.attrs["axes"] as { value: readonly number[] } | undefined)?.value;
  if (a) {
    axes = constantInts(a);
    if (!axes) {
      throw new TypeError(`Cannot differentiate ${node.op} with non-constant axes "${a.name}"`);
    }
  }
  if (!axes || axes.length === 0) return attr(node, "noop_with_empty_axes", 0) ? [] : allAxes(x);
  return axes.map((v) => normAxis(node.op, v, x.rank));
}

/** Number of elements reduced over, as a scalar of x's dtype (runtime when dims are symbolic). */
function count(x: Value, y: Value, axes: readonly number[]): Value | number {
  const reduced: Shape = axes.map((a) => x.shape[a]!);
  const n = knownSize(reduced);
  if (n !== undefined) return n;
  return cast(div(sizeOf(x), sizeOf(y)), x.dtype);
}

/** Gradient rules of this family. */
export const VJPS: Record<string, Vjp> = {
  ReduceSum: reduceSumVjp,
  ReduceMean: reduceMeanVjp,
};
