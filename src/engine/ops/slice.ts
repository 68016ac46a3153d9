/**
 * Slice (opset 10+: starts, ends, axes and steps as inputs) and Range. Slice's gradient is a Pad
 * of the gradient (constant unit steps over static dimensions) or a scatter into zeros (other
 * steps, slices along symbolic dimensions, and bounds computed at run time, such as
 * `position_ids[:, :seq_len]`: the clamping is then only known at run time).
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
  formatShape,
  type Graph,
  int,
  type Node,
  type Shape,
  type Value,
} from "../graph.ts";
import { assertFloat, normAxis } from "../shapes.ts";
import type { Vjp } from "../vjp.ts";
import { cast } from "./cast.ts";
import {
  constantInts,
  constantOfShape,
  constantTensor,
  dimOf,
  int64s,
  scalar,
  shapeOf,
} from "./constant.ts";
import { concat } from "./concat.ts";
import { mul } from "./elementwise.ts";
import { reduceSum } from "./reduce.ts";
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

/**
 * The size of dimension `d` after a slice with constant bounds: exact when `d` is static, `d` for
 * a cut that keeps the whole axis, else a new symbolic dimension of `g`.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { Graph } from "../graph.ts";
 * import { slicedDim } from "./slice.ts";
 * const g = new Graph();
 * deepStrictEqual(slicedDim(g, 10, { start: 2, end: Infinity, step: 3 }), 3);
 * deepStrictEqual(slicedDim(g, "seq", { start: 0, end: Infinity, step: 1 }), "seq");
 * ```
 */
export function slicedDim(
  g: Graph,
  d: Dim,
  cut: { readonly start: number; readonly end: number; readonly step: number },
): Dim {
  const { start, end, step } = cut;
  if (typeof d === "number") return sliceRange(d, start, end, step).length;
  const fromStart = start === 0 || start <= -EDGE;
  const whole = step === 1
    ? fromStart && end >= EDGE
    : step === -1 && (start === -1 || start >= EDGE) && end <= -EDGE;
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
    const cut = { start: starts[i]!, end: ends[i]!, step: st[i]! };
    shape = withDim(shape, a, slicedDim(g, x.shape[a]!, cut));
  });
  const bound = (v: readonly number[]) => int64s(g, v.map(edge));
  const inputs = [x, bound(starts), bound(ends), int64s(g, ax), int64s(g, st)];
  return node1(g, "Slice", inputs, {}, x.dtype, shape);
}

/** The bounds of {@link sliceDynamic}: 1-D I64 or I32 values, one entry per axis. */
export interface RuntimeBounds {
  /** First index taken along each axis. */
  readonly starts: Value;
  /** Index where each axis stops (excluded). */
  readonly ends: Value;
  /** The sliced axes, known at build time. */
  readonly axes: readonly number[];
  /** Step along each axis (default 1). */
  readonly steps?: Value;
}

/**
 * `x[starts:ends:steps]` along the constant `axes` with bounds computed at run time, as ONNX
 * Slice: `position_ids[:, :seq_len]` where `seq_len` is read from the input. `shape` is the
 * result's build-time shape, which only the caller can know (that `seq_len` is the input's `seq`
 * dimension, say).
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { Graph } from "../graph.ts";
 * import { dimOf, int64s } from "./constant.ts";
 * import { sliceDynamic } from "./slice.ts";
 * const g = new Graph();
 * const ids = g.input("ids", "I64", ["batch", "seq"]);
 * const table = g.input("positions", "F32", [512, 8]);
 * const bounds = { starts: int64s(g, [0]), ends: dimOf(ids, 1), axes: [0] };
 * const used = sliceDynamic(table, bounds, ["seq", 8]);
 * deepStrictEqual(used.shape, ["seq", 8]);
 * ```
 */
export function sliceDynamic(x: Value, bounds: RuntimeBounds, shape: Shape): Value {
  const { starts, ends, axes, steps } = bounds;
  const ax = axes.map((a) => normAxis("Slice", a, x.rank));
  const given = steps ? [starts, ends, steps] : [starts, ends];
  const bad = given.find((b) => b.rank !== 1 || (b.dtype !== "I64" && b.dtype !== "I32"));
  if (bad || shape.length !== x.rank || new Set(ax).size !== ax.length) {
    throw new TypeError(
      `Invalid Slice of ${x}: bounds must be 1-D I64 or I32 values, one entry per distinct axis ` +
        `[${ax}], and the result of rank ${x.rank}, got ${
          given.map((b) => `${b.dtype} ${b}`).join(", ")
        } and ${formatShape(shape)}`,
    );
  }
  const inputs = [x, starts, ends, int64s(x.graph, ax), ...(steps ? [steps] : [])];
  return node1(x.graph, "Slice", inputs, {}, x.dtype, shape);
}

// saved for backward: the slice bounds and x's shape
const sliceVjp: Vjp = ({ node, dy: [dy] }) => {
  const x = node.inputs[0]!;
  const cuts = constantCuts(node, x);
  const padded = cuts?.every((c) => c.step === 1 && typeof x.shape[c.axis] === "number");
  const dx = padded
    ? padBack(dy!, x, cuts!)
    : scatterBack(dy!, x, cuts ? cuts.map(boundsOf(x.graph)) : runtimeCuts(node, x));
  return [dx, null, null, null, null];
};

/** The axes of a Slice node: its constant `axes` input, or the first ones. */
function axesOf(node: Node, x: Value): number[] {
  const v = node.inputs[3];
  const n = node.inputs[1]!.shape[0];
  const axes = v
    ? constantInts(v)
    : typeof n === "number"
    ? Array.from({ length: n }, (_, i) => i)
    : undefined;
  if (!axes) {
    throw new TypeError(
      `Cannot differentiate Slice (node ${node.name}) with axes known only at run time`,
    );
  }
  return axes.map((a) => normAxis("Slice", a, x.rank));
}

/** The cuts of a Slice node whose bounds are constants, or `undefined`. */
function constantCuts(node: Node, x: Value): Cut[] | undefined {
  const read = (i: number) => (node.inputs[i] ? constantInts(node.inputs[i]!) : undefined);
  const [starts, ends] = [read(1), read(2)];
  const steps = node.inputs[4] ? read(4) : starts?.map(() => 1);
  if (!starts || !ends || !steps) return undefined;
  return axesOf(node, x).map((axis, i) => ({
    axis,
    start: starts[i]!,
    end: ends[i]!,
    step: steps[i]!,
  }));
}

/** A cut whose bounds are 1-element integer values (known at run time). */
interface RuntimeCut {
  readonly axis: number;
  readonly start: Value;
  readonly end: Value;
  readonly step: Value;
}

/** A constant cut as 1-element int64 bounds. */
const boundsOf = (g: Graph) => (c: Cut): RuntimeCut => {
  const b = (v: number) => int64s(g, [edge(v)]);
  return { axis: c.axis, start: b(c.start), end: b(c.end), step: b(c.step) };
};

/** The cuts of a Slice node whose bounds are computed at run time: entry i of each bound. */
function runtimeCuts(node: Node, x: Value): RuntimeCut[] {
  const g = x.graph;
  const [, starts, ends, , steps] = node.inputs;
  const axes = axesOf(node, x);
  const entry = (v: Value, i: number) =>
    axes.length === 1
      ? v
      : node1(g, "Slice", [v, int64s(g, [i]), int64s(g, [i + 1])], {}, v.dtype, [1]);
  return axes.map((axis, i) => ({
    axis,
    start: entry(starts!, i),
    end: entry(ends!, i),
    step: steps ? entry(steps, i) : int64s(g, [1]),
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
function scatterBack(dy: Value, x: Value, cuts: readonly RuntimeCut[]): Value {
  const g = x.graph;
  let cur = dy;
  for (const c of cuts) {
    const a = c.axis;
    const d = dimOf(x, a); // [1]
    const zero = scalar(g, 0, "I64");
    const all = range(zero, squeeze(d, [0]), scalar(g, 1, "I64"), x.shape[a]!);
    const bounds = [c.start, c.end, int64s(g, [0]), c.step];
    const picked = node1(g, "Slice", [all, ...bounds], {}, "I64", [cur.shape[a]!]);
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

/**
 * `start, start + delta, …` up to `limit` excluded (ONNX Range; scalars of one dtype). The length
 * is computed when the three are constants; otherwise it is `length` when the caller knows it
 * (`Range(0, seq_len, 1)` has the input's `seq` dimension) and a new symbolic dimension if not.
 * The gradient of a float range flows to `start` (`Σ dy`) and `delta` (`Σ dy·i`); the limit only
 * decides the length.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { Graph } from "../graph.ts";
 * import { dimOf, scalar } from "./constant.ts";
 * import { squeeze } from "./shape.ts";
 * import { range } from "./slice.ts";
 * const g = new Graph();
 * const seq = squeeze(dimOf(g.input("ids", "I64", ["batch", "seq"]), 1), [0]);
 * const positions = range(scalar(g, 0, "I64"), seq, scalar(g, 1, "I64"), "seq");
 * const odd = range(scalar(g, 1, "I64"), scalar(g, 8, "I64"), scalar(g, 2, "I64"));
 * deepStrictEqual([positions.shape, odd.shape], [["seq"], [4]]);
 * ```
 */
export function range(start: Value, limit: Value, delta: Value, length?: Dim): Value {
  const parts = [start, limit, delta];
  if (parts.some((v) => v.rank !== 0 || v.dtype !== start.dtype)) {
    throw new TypeError(
      `Cannot apply Range: start, limit and delta must be scalars of one dtype, got ${
        parts.map((v) => `${v.dtype} ${v}`).join(", ")
      }`,
    );
  }
  const known = parts.map((v) => constantInts(v)?.[0] ?? constantFloat(v));
  const n = known.every((k) => k !== undefined)
    ? Math.max(0, Math.ceil((known[1]! - known[0]!) / known[2]!))
    : length ?? start.graph.freshName("dim");
  return node1(start.graph, "Range", parts, {}, start.dtype, [n]);
}

/** The value of a float scalar constant (an initializer or a `Constant` node), or `undefined`. */
function constantFloat(v: Value): number | undefined {
  const t = constantTensor(v);
  return t && (t.dtype === "F32" || t.dtype === "F64") ? Number(t.data[0]) : undefined;
}

// saved for backward: y's length; y[i] = start + i·delta, so dStart = Σ dy, dDelta = Σ i·dy
const rangeVjp: Vjp = ({ node, dy: [dy], needs }) => {
  const y = node.outputs[0]!;
  if (!needs[0] && !needs[2]) return [null, null, null];
  assertFloat("Range", y);
  const g = y.graph;
  const i = cast(
    range(scalar(g, 0, "I64"), squeeze(dimOf(y, 0), [0]), scalar(g, 1, "I64"), y.shape[0]),
    y.dtype,
  );
  return [needs[0] ? reduceSum(dy!) : null, null, needs[2] ? reduceSum(mul(dy!, i)) : null];
};

/** Gradient rules of this family. */
export const VJPS: Record<string, Vjp> = {
  Slice: sliceVjp,
  Range: rangeVjp,
};
