/**
 * Reductions: ReduceSum (axes as an input, opset 13+) and ReduceMean (axes as an attribute, opset
 * 13–17), plus `unbroadcast`, which sums a broadcast gradient back to an operand's shape.
 *
 * @module
 */

import { type Dim, formatShape, int, ints, type Shape, type Value } from "../graph.ts";
import { broadcastAxes, knownSize, normAxis } from "../shapes.ts";
import { inputsOf, type Vjp } from "../vjp.ts";
import { int64s, shapeOf, sizeOf } from "./constant.ts";
import { cast, expand, unsqueeze } from "./shape.ts";
import { div, mul } from "./elementwise.ts";

function reducedShape(op: string, x: Value, axes: readonly number[], keepdims: boolean): Dim[] {
  const set = new Set(axes.map((a) => normAxis(op, a, x.rank)));
  const out: Dim[] = [];
  x.shape.forEach((d, i) => {
    if (!set.has(i)) out.push(d);
    else if (keepdims) out.push(1);
  });
  return out;
}

function allAxes(x: Value): number[] {
  return Array.from({ length: x.rank }, (_, i) => i);
}

/**
 * Sum over `axes` (all axes when omitted).
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

/** Mean over `axes` (all axes when omitted). */
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

/** Sums `dy` (shaped like a broadcast result) back to the shape of `x`. */
export function unbroadcast(dy: Value, x: Value): Value {
  if (dy.rank < x.rank) {
    throw new TypeError(
      `Cannot reduce gradient ${formatShape(dy.shape)} to operand ${formatShape(x.shape)}`,
    );
  }
  const { lead, ones } = broadcastAxes(x.shape, dy.shape);
  let r = dy;
  if (ones.length) r = reduceSum(r, ones, true);
  if (lead.length) r = reduceSum(r, lead, false);
  return r;
}

/** Brings a reduced gradient back to the input's shape (inverse of a keepdims=0 reduce). */
function spread(dy: Value, x: Value, axes: readonly number[], keepdims: boolean): Value {
  const kept = keepdims ? dy : unsqueeze(dy, axes);
  return expand(kept, shapeOf(x), x.shape);
}

function axesOf(
  node: { inputs: readonly (Value | null)[]; attrs: Record<string, unknown> },
  x: Value,
  fromInput: boolean,
): number[] {
  if (fromInput) {
    const a = node.inputs[1];
    if (!a) return allAxes(x);
    const init = a.graph.initializers.get(a);
    if (!init || !("data" in init)) {
      throw new TypeError(`Cannot differentiate ReduceSum with non-constant axes "${a.name}"`);
    }
    return Array.from(init.data as BigInt64Array, (v) => normAxis("ReduceSum", Number(v), x.rank));
  }
  const attr = node.attrs["axes"] as { value: number[] } | undefined;
  return attr ? attr.value.map((v) => normAxis("ReduceMean", v, x.rank)) : allAxes(x);
}

function keep(node: { attrs: Record<string, unknown> }): boolean {
  const k = node.attrs["keepdims"] as { value: number } | undefined;
  return k ? k.value !== 0 : true;
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
  ReduceSum: ({ node, dy: [dy] }) => {
    const x = inputsOf(node)[0]!;
    const axes = axesOf(node, x, true);
    return [spread(dy!, x, axes, keep(node)), null];
  },
  ReduceMean: ({ node, dy: [dy] }) => {
    const x = node.inputs[0]!;
    const axes = axesOf(node, x, false);
    const n = count(x, node.outputs[0]!, axes);
    const scaled = typeof n === "number" ? mul(dy!, 1 / n) : div(dy!, n);
    return [spread(scaled, x, axes, keep(node))];
  },
};
