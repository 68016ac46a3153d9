/**
 * Slice (opset 10+: starts, ends, axes and steps as inputs). Its gradient is a Pad of the
 * gradient (steps of 1 over static dimensions) or a scatter into zeros (other steps, and slices
 * along symbolic dimensions, whose clamping is only known at run time).
 *
 * Slice bounds follow the ONNX Slice spec: negative starts and ends count from the end, then clamp
 * to [0, d] ([0, d - 1] for starts and [-1, d - 1] for ends when the step is negative); ±Infinity
 * means "to the edge".
 *
 * @module
 */

import type { DType } from "../../tensor.ts";
import {
  type Attr,
  type Dim,
  type Graph,
  int,
  type Node,
  type Shape,
  type Value,
} from "../graph.ts";
import { normAxis } from "../shapes.ts";
import type { Vjp } from "../vjp.ts";
import { constantInts, constantOfShape, dimOf, int64s, scalar, shapeOf } from "./constant.ts";
import { concat } from "./concat.ts";
import { squeeze, unsqueeze } from "./shape.ts";

/** The slice bound ONNX is given for ±Infinity ("past the edge"). */
const EDGE = Number.MAX_SAFE_INTEGER;
const edge = (v: number) => Math.max(-EDGE, Math.min(EDGE, v));

function node1(
  g: Graph,
  op: string,
  inputs: readonly Value[],
  attrs: Record<string, Attr>,
  dtype: DType,
  shape: Shape,
): Value {
  return g.node(op, inputs, attrs, [{ dtype, shape }])[0]!;
}

const withDim = (shape: Shape, a: number, d: Dim): Dim[] => shape.map((v, i) => (i === a ? d : v));

/** A slice along one axis, as given (before clamping). */
interface Cut {
  readonly axis: number;
  readonly start: number;
  readonly end: number;
  readonly step: number;
}

/**
 * The elements a slice takes from a dimension of static size `d`, by the ONNX Slice rules: the
 * clamped `start` and `end` and the number of elements, `length`.
 *
 * @example
 * ```ts
 * import { sliceRange } from "./slice.ts";
 * sliceRange(5, -2, Infinity, 1); // { start: 3, end: 5, length: 2 }
 * sliceRange(5, -1, -Infinity, -2); // { start: 4, end: -1, length: 3 }
 * ```
 */
export function sliceRange(
  d: number,
  start: number,
  end: number,
  step: number,
): { start: number; end: number; length: number } {
  const clamp = (v: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, v));
  const s = start < 0 ? start + d : start;
  const e = end < 0 ? end + d : end;
  const [s1, e1] = step > 0 ? [clamp(s, 0, d), clamp(e, 0, d)] : [
    clamp(s, 0, d - 1),
    clamp(e, -1, d - 1),
  ];
  return { start: s1, end: e1, length: Math.max(0, Math.ceil((e1 - s1) / step)) };
}

/** The size of a sliced dimension: exact when static, kept for a whole-axis cut, else new. */
function slicedDim(g: Graph, d: Dim, c: Cut): Dim {
  if (typeof d === "number") return sliceRange(d, c.start, c.end, c.step).length;
  const fromStart = c.start === 0 || c.start <= -EDGE;
  const whole = c.step === 1
    ? fromStart && c.end >= EDGE
    : c.step === -1 && (c.start === -1 || c.start >= EDGE) && c.end <= -EDGE;
  return whole ? d : g.freshName("dim");
}

/**
 * `x[starts:ends:steps]` along `axes` (default: the first `starts.length` axes; steps default
 * to 1), as ONNX Slice. Bounds are integers or ±Infinity; negative ones count from the end, and
 * everything clamps as in numpy, so static output sizes are exact at build time. Any non-zero
 * step works, forward and backward.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { slice } from "./slice.ts";
 * const x = new Graph().input("x", "F32", ["batch", 10]);
 * const last3 = slice(x, [-3], [Infinity], [1]); // [batch, 3]
 * const evens = slice(x, [0], [Infinity], [1], [2]); // [batch, 5]
 * ```
 */
export function slice(
  x: Value,
  starts: readonly number[],
  ends: readonly number[],
  axes?: readonly number[],
  steps?: readonly number[],
): Value {
  const ax = (axes ?? starts.map((_, i) => i)).map((a) => normAxis("Slice", a, x.rank));
  const st = steps ?? starts.map(() => 1);
  const n = starts.length;
  if (ends.length !== n || ax.length !== n || st.length !== n || new Set(ax).size !== n) {
    throw new TypeError(
      `Invalid Slice of ${x}: starts [${starts}], ends [${ends}], axes [${ax}] and steps [${st}] ` +
        "need one entry per distinct axis",
    );
  }
  const bad = [...starts, ...ends].find((v) => !Number.isInteger(v) && Math.abs(v) !== Infinity);
  if (bad !== undefined || st.some((s) => s === 0 || !Number.isInteger(s))) {
    throw new RangeError(
      `Invalid Slice of ${x}: bounds must be integers or ±Infinity and steps non-zero integers, ` +
        `got starts [${starts}], ends [${ends}], steps [${st}]`,
    );
  }
  const g = x.graph;
  let shape: Dim[] = [...x.shape];
  ax.forEach((a, i) => {
    const c = { axis: a, start: starts[i]!, end: ends[i]!, step: st[i]! };
    shape = withDim(shape, a, slicedDim(g, x.shape[a]!, c));
  });
  const bound = (v: readonly number[]) => int64s(g, v.map(edge));
  const inputs = [x, bound(starts), bound(ends), int64s(g, ax), int64s(g, st)];
  return node1(g, "Slice", inputs, {}, x.dtype, shape);
}

// saved for backward: the slice bounds (constants) and x's shape
const sliceVjp: Vjp = ({ node, dy: [dy] }) => {
  const x = node.inputs[0]!;
  const cuts = cutsOf(node, x);
  const padded = cuts.every((c) => c.step === 1 && typeof x.shape[c.axis] === "number");
  return [padded ? padBack(dy!, x, cuts) : scatterBack(dy!, x, cuts), null, null, null, null];
};

/** The cuts of a Slice node, read from its constant inputs. */
function cutsOf(node: Node, x: Value): Cut[] {
  const read = (i: number, what: string): number[] | undefined => {
    const v = node.inputs[i];
    if (!v) return undefined;
    const r = constantInts(v);
    if (!r) throw new TypeError(`Cannot differentiate Slice with non-constant ${what} "${v.name}"`);
    return r;
  };
  const starts = read(1, "starts") ?? [];
  const ends = read(2, "ends") ?? [];
  const axes = read(3, "axes") ?? starts.map((_, i) => i);
  const steps = read(4, "steps") ?? starts.map(() => 1);
  return axes.map((a, i) => ({
    axis: normAxis("Slice", a, x.rank),
    start: starts[i]!,
    end: ends[i]!,
    step: steps[i]!,
  }));
}

/** dX of a unit-step slice over static dimensions: the gradient padded with zeros. */
function padBack(dy: Value, x: Value, cuts: readonly Cut[]): Value {
  const pads = new Array<number>(2 * x.rank).fill(0); // [begin of each axis, end of each axis]
  for (const c of cuts) {
    const d = x.shape[c.axis] as number;
    const r = sliceRange(d, c.start, c.end, 1);
    pads[c.axis] = r.start;
    pads[x.rank + c.axis] = d - r.start - r.length;
  }
  return node1(x.graph, "Pad", [dy, int64s(x.graph, pads)], {}, dy.dtype, x.shape);
}

/**
 * dX of any slice: axis by axis (slices of distinct axes commute), the gradient is scattered
 * into zeros at the positions the forward took. Those positions are found at run time by slicing
 * the index range [0, d) with the same bounds, so ONNX's own clamping applies to symbolic `d`.
 */
function scatterBack(dy: Value, x: Value, cuts: readonly Cut[]): Value {
  const g = x.graph;
  let cur = dy;
  for (const c of cuts) {
    const a = c.axis;
    const d = dimOf(x, a); // [1]
    const zero = scalar(g, 0, "I64");
    const range = node1(g, "Range", [zero, squeeze(d, [0]), scalar(g, 1, "I64")], {}, "I64", [
      x.shape[a]!,
    ]);
    const bounds = [[c.start], [c.end], [0], [c.step]].map((b) => int64s(g, b.map(edge)));
    const picked = node1(g, "Slice", [range, ...bounds], {}, "I64", [cur.shape[a]!]);
    const others = cur.shape.map((_, i) => i).filter((i) => i !== a);
    const lifted = others.length ? unsqueeze(picked, others) : picked; // 1 except along a
    const index = node1(g, "Expand", [lifted, shapeOf(cur)], {}, "I64", cur.shape);
    const shape = withDim(cur.shape, a, x.shape[a]!);
    const zeros = constantOfShape(shapeWith(cur, a, d), 0, dy.dtype, shape);
    cur = node1(g, "ScatterElements", [zeros, index, cur], { axis: int(a) }, dy.dtype, shape);
  }
  return cur;
}

/** The runtime shape of `v` with axis `a` replaced by `d` (1-D int64 of one element). */
function shapeWith(v: Value, a: number, d: Value): Value {
  const g = v.graph;
  const parts: Value[] = [];
  if (a > 0) parts.push(node1(g, "Shape", [v], { end: int(a) }, "I64", [a]));
  parts.push(d);
  if (a < v.rank - 1) {
    parts.push(node1(g, "Shape", [v], { start: int(a + 1) }, "I64", [v.rank - a - 1]));
  }
  return parts.length === 1 ? d : concat(parts, 0);
}

/** Gradient rules of this family. */
export const VJPS: Record<string, Vjp> = {
  Slice: sliceVjp,
};
