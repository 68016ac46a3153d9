/**
 * Shape and layout ops whose gradients are data movement: Reshape, Transpose, Identity, Expand,
 * Tile, Unsqueeze, Squeeze and Flatten, and `unbroadcast`, the gradient of broadcasting (of Expand,
 * and of every op that broadcasts its operands). Cast lives in `cast.ts` (re-exported here), joining
 * in `concat.ts`, cutting in `slice.ts`.
 *
 * @module
 */

import { type Dim, formatShape, int, ints, type Shape, type Value } from "../graph.ts";
import { broadcastAxes, broadcastShapes, normAxis, reducedShape } from "../shapes.ts";
import { inputsOf, type Vjp } from "../vjp.ts";
import { concat } from "./concat.ts";
import { constantInts, dimOf, int64s, shapeOf } from "./constant.ts";

export { cast, dtypeOfOnnx, onnxDtype } from "./cast.ts";

/**
 * Reshapes `x` to `shape`. A symbolic dimension at the same position as in `x` is copied (ONNX
 * `0`); one dimension may be `-1` (or a new symbolic name) and is inferred. The inferred size is
 * computed at build time when the sizes allow it: symbolic dimensions shared by both shapes
 * cancel, so `["batch", 2, 3]` to `[-1, 3]` is `[dim, 3]` but `["batch", 6]` to `[-1, 6]` is
 * `["batch", 6]`. A literal `0` would mean "copy" to ONNX and is rejected.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { reshape } from "./shape.ts";
 * const g = new Graph();
 * const y = reshape(g.input("x", "F32", ["batch", 2, 3]), ["batch", 6]);
 * ```
 */
export function reshape(x: Value, shape: readonly Dim[]): Value {
  const fail = (why: string): never => {
    throw new TypeError(`Cannot reshape ${x} to ${formatShape(shape)} in Reshape: ${why}`);
  };
  const spec: number[] = [];
  const out: Dim[] = [];
  let inferred = -1;
  shape.forEach((d, i) => {
    if (d === 0) fail("a dimension of size 0 is not supported");
    if (typeof d === "number" && d > 0) {
      if (!Number.isInteger(d)) fail(`dimension ${d} is not an integer`);
      spec.push(d);
      out.push(d);
    } else if (typeof d === "string" && x.shape[i] === d) {
      spec.push(0);
      out.push(d);
    } else {
      if (typeof d === "number" && d !== -1) fail(`dimension ${d} is negative`);
      if (inferred >= 0) fail("more than one unknown dimension");
      inferred = i;
      spec.push(-1);
      out.push(d);
    }
  });
  const num = factor(x.shape);
  const den = factor(out.filter((_, i) => i !== inferred));
  const left = [...num.syms];
  const cancels = den.syms.every((s) => {
    const k = left.indexOf(s);
    if (k >= 0) left.splice(k, 1);
    return k >= 0;
  });
  if (inferred < 0) {
    if (cancels && left.length === 0 && num.n !== den.n) fail("sizes differ");
  } else if (cancels && left.length === 0) {
    if (den.n === 0 || num.n % den.n !== 0) fail(`${num.n} elements do not divide by ${den.n}`);
    out[inferred] = num.n / den.n;
  } else if (cancels && left.length === 1 && num.n === den.n) {
    out[inferred] = left[0]!;
  } else if (out[inferred] === -1) {
    out[inferred] = x.graph.freshName("dim");
  }
  return x.graph.node("Reshape", [x, int64s(x.graph, spec)], {}, [{
    dtype: x.dtype,
    shape: out,
  }])[0]!;
}

/** dY reshaped back to x's runtime shape: the gradient of every op that only reshapes. */
const back = (dy: Value, x: Value) => reshapeTo(dy, shapeOf(x), x.shape);

const reshapeVjp: Vjp = ({ node, dy: [dy] }) => [back(dy!, inputsOf(node)[0]!), null];

/** Known sizes multiplied together, and the symbolic dimensions left over. */
function factor(shape: Shape): { n: number; syms: string[] } {
  let n = 1;
  const syms: string[] = [];
  for (const d of shape) typeof d === "number" ? (n *= d) : syms.push(d);
  return { n, syms };
}

/**
 * Reshapes `x` to a runtime shape (a 1-D int64 value) whose static form is `staticShape`.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { shapeOf } from "./constant.ts";
 * import { reshape, reshapeTo } from "./shape.ts";
 * const g = new Graph();
 * const x = g.input("x", "F32", ["batch", 2, 3]);
 * const back = reshapeTo(reshape(x, ["batch", 6]), shapeOf(x), x.shape);
 * ```
 */
export function reshapeTo(x: Value, shape: Value, staticShape: Shape): Value {
  return x.graph.node("Reshape", [x, shape], {}, [{ dtype: x.dtype, shape: staticShape }])[0]!;
}

/**
 * Permutes axes (reverses them when `perm` is omitted); negative axes count from the end.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { transpose } from "./shape.ts";
 * const y = transpose(new Graph().input("x", "F32", ["batch", 2, 3]), [0, 2, 1]); // [batch, 3, 2]
 * ```
 */
export function transpose(x: Value, perm?: readonly number[]): Value {
  const given = perm ?? x.shape.map((_, i) => x.rank - 1 - i);
  const p = given.map((a) => (a < 0 ? a + x.rank : a));
  if (p.length !== x.rank || p.some((a) => !(a >= 0 && a < x.rank)) || new Set(p).size !== x.rank) {
    throw new TypeError(`Invalid perm [${given.join(", ")}] in Transpose of ${x}`);
  }
  const shape = p.map((a) => x.shape[a]!);
  return x.graph.node("Transpose", [x], { perm: ints(p) }, [{ dtype: x.dtype, shape }])[0]!;
}

const transposeVjp: Vjp = ({ node, dy: [dy] }) => {
  const perm = (node.attrs["perm"] as { value: number[] } | undefined)?.value ??
    node.inputs[0]!.shape.map((_, i, s) => s.length - 1 - i);
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => (inv[p] = i));
  return [transpose(dy!, inv)];
};

/**
 * Swaps the last two axes.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { transposeLast2 } from "./shape.ts";
 * const wT = transposeLast2(new Graph().input("w", "F32", [4, 3])); // [3, 4]
 * ```
 */
export function transposeLast2(x: Value): Value {
  const p = x.shape.map((_, i) => i);
  [p[x.rank - 2], p[x.rank - 1]] = [x.rank - 1, x.rank - 2];
  return transpose(x, p);
}

/**
 * A copy of `x` (ONNX Identity), useful to give an output its own name.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { identity } from "./shape.ts";
 * const y = identity(new Graph().input("x", "F32", [2]), "logits");
 * ```
 */
export function identity(x: Value, name?: string): Value {
  return x.graph.node("Identity", [x], {}, [{ dtype: x.dtype, shape: x.shape, name }])[0]!;
}

const identityVjp: Vjp = ({ dy: [dy] }) => [dy!];

/**
 * Broadcasts `x` to a runtime shape (a 1-D int64 value) whose static form is `staticShape`.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { shapeOf } from "./constant.ts";
 * import { expand } from "./shape.ts";
 * const g = new Graph();
 * const x = g.input("x", "F32", ["batch", 4]);
 * const b = expand(g.input("b", "F32", [4]), shapeOf(x), x.shape); // [batch, 4]
 * ```
 */
export function expand(x: Value, shape: Value, staticShape: Shape): Value {
  const out = broadcastShapes("Expand", x.shape, staticShape);
  return x.graph.node("Expand", [x, shape], {}, [{ dtype: x.dtype, shape: out }])[0]!;
}

const expandVjp: Vjp = ({ node, dy: [dy] }) => [unbroadcast(dy!, inputsOf(node)[0]!), null];

/**
 * Repeats `x` `repeats[i]` times along each axis `i` (ONNX Tile). Repeats are numbers, or a 1-D
 * int64 value computed at run time (`cls_token` tiled to the batch); then `staticShape` gives the
 * result's build-time shape when the caller knows it (new symbolic dimensions otherwise).
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { Graph } from "../graph.ts";
 * import { tile } from "./shape.ts";
 * const y = tile(new Graph().input("x", "F32", [1, 2, 3]), [4, 1, 2]);
 * deepStrictEqual(y.shape, [4, 2, 6]);
 * ```
 */
export function tile(x: Value, repeats: Value | readonly number[], staticShape?: Shape): Value {
  const g = x.graph;
  const reps = Array.isArray(repeats) ? repeats : constantInts(repeats as Value);
  const n = reps?.length ?? (repeats as Value).shape[0];
  if (n !== x.rank || reps?.some((k) => !Number.isInteger(k) || k < 0)) {
    const given = reps ? `[${reps.join(", ")}]` : `${repeats}`;
    throw new TypeError(
      `Invalid repeats ${given} in Tile of ${x}: expected ${x.rank} integers >= 0`,
    );
  }
  const times = (d: Dim, k: number) =>
    k === 1 ? d : typeof d === "number" ? d * k : g.freshName("dim");
  const shape = reps
    ? x.shape.map((d, i) => times(d, reps[i]!))
    : staticShape ?? x.shape.map(() => g.freshName("dim"));
  const r = Array.isArray(repeats) ? int64s(g, repeats) : repeats as Value;
  return g.node("Tile", [x, r], {}, [{ dtype: x.dtype, shape }])[0]!;
}

// dX = dY viewed as [r0, d0, r1, d1, …] (copy k of axis i at r_i = k), summed over the r axes
const tileVjp: Vjp = ({ node, dy: [dy] }) => {
  const [x, repeats] = inputsOf(node) as [Value, Value];
  const g = x.graph;
  const reps = constantInts(repeats);
  if (x.rank === 0 || reps?.every((k) => k === 1)) return [dy!, null];
  const entry = (i: number) =>
    g.node("Slice", [repeats, int64s(g, [i]), int64s(g, [i + 1])], {}, [{
      dtype: "I64",
      shape: [1],
    }])[0]!;
  const sizes = x.shape.flatMap((_, i) => [reps ? int64s(g, [reps[i]!]) : entry(i), dimOf(x, i)]);
  const split = x.shape.flatMap((d, i) => [reps?.[i] ?? g.freshName("dim"), d]);
  const viewed = reshapeTo(dy!, concat(sizes, 0), split);
  return [sumOver(viewed, x.shape.map((_, i) => 2 * i), false), null];
};

/**
 * Sums `dy` (shaped like a broadcast result) back to the shape of `x`: over the leading axes `x`
 * lacks and, keeping them, over the axes where `x` has size 1.
 *
 * It lives here rather than in `reduce.ts` so that the op files import each other without a
 * cycle: the gradients of the element-wise ops, MatMul, Gemm, Where, Clip and Expand need it, and
 * `reduce.ts` imports `elementwise.ts` (ReduceMean's gradient divides) and this file (a reduced
 * gradient is spread back with Expand). The order is constant, cast → shape → elementwise →
 * reduce, so it emits its ReduceSum nodes itself (`sumOver`) instead of calling `reduceSum`.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { unbroadcast } from "./shape.ts";
 * const g = new Graph();
 * const db = unbroadcast(g.input("dy", "F32", ["batch", 4]), g.input("b", "F32", [1, 4])); // [1, 4]
 * ```
 */
export function unbroadcast(dy: Value, x: Value): Value {
  if (dy.rank < x.rank) {
    throw new TypeError(
      `Cannot reduce gradient ${formatShape(dy.shape)} to operand ${formatShape(x.shape)}`,
    );
  }
  const { lead, ones } = broadcastAxes(x.shape, dy.shape);
  let r = dy;
  if (ones.length) r = sumOver(r, ones, true);
  if (lead.length) r = sumOver(r, lead, false);
  return r;
}

/** The node `reduceSum(x, axes, keepdims)` builds, for non-empty `axes`. */
function sumOver(x: Value, axes: readonly number[], keepdims: boolean): Value {
  const shape = reducedShape("ReduceSum", x, axes, keepdims);
  return x.graph.node(
    "ReduceSum",
    [x, int64s(x.graph, axes)],
    { keepdims: int(keepdims ? 1 : 0) },
    [{ dtype: x.dtype, shape }],
  )[0]!;
}

/**
 * Inserts size-1 axes at `axes` (positions in the result).
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { unsqueeze } from "./shape.ts";
 * const y = unsqueeze(new Graph().input("x", "F32", ["batch", 3]), [1, -1]); // [batch, 1, 3, 1]
 * ```
 */
export function unsqueeze(x: Value, axes: readonly number[]): Value {
  const rank = x.rank + axes.length;
  const set = new Set(axes.map((a) => normAxis("Unsqueeze", a, rank)));
  if (set.size !== axes.length) {
    throw new TypeError(`Invalid axes [${axes.join(", ")}] in Unsqueeze of ${x}: axes repeat`);
  }
  const out: Dim[] = [];
  let j = 0;
  for (let i = 0; i < rank; i++) out.push(set.has(i) ? 1 : x.shape[j++]!);
  return x.graph.node("Unsqueeze", [x, int64s(x.graph, [...set])], {}, [{
    dtype: x.dtype,
    shape: out,
  }])[0]!;
}

const unsqueezeVjp: Vjp = ({ node, dy: [dy] }) => [back(dy!, inputsOf(node)[0]!), null];

/**
 * Removes size-1 axes at `axes`.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { squeeze } from "./shape.ts";
 * const y = squeeze(new Graph().input("x", "F32", ["batch", 1, 3]), [1]); // [batch, 3]
 * ```
 */
export function squeeze(x: Value, axes: readonly number[]): Value {
  const set = new Set(axes.map((a) => normAxis("Squeeze", a, x.rank)));
  for (const a of set) {
    if (x.shape[a] !== 1) {
      throw new TypeError(`Cannot squeeze axis ${a} of ${x} in Squeeze: its size is not 1`);
    }
  }
  const out = x.shape.filter((_, i) => !set.has(i));
  return x.graph.node("Squeeze", [x, int64s(x.graph, [...set])], {}, [{
    dtype: x.dtype,
    shape: out,
  }])[0]!;
}

const squeezeVjp: Vjp = ({ node, dy: [dy] }) => [back(dy!, node.inputs[0]!), null];

/**
 * Flattens to 2-D around `axis` (ONNX Flatten): `[d0 · … · d(axis-1), d(axis) · … · d(n-1)]`.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { flatten } from "./shape.ts";
 * const y = flatten(new Graph().input("x", "F32", ["batch", 2, 3])); // [batch, 6]
 * ```
 */
export function flatten(x: Value, axis = 1): Value {
  const a = axis < 0 ? axis + x.rank : axis;
  if (!Number.isInteger(a) || a < 0 || a > x.rank) {
    throw new RangeError(`Invalid axis ${axis} in Flatten for a value of rank ${x.rank}`);
  }
  const side = (dims: Shape): Dim => {
    const f = factor(dims);
    if (f.syms.length === 0) return f.n;
    return f.syms.length === 1 && f.n === 1 ? f.syms[0]! : x.graph.freshName("dim");
  };
  const shape: Dim[] = [side(x.shape.slice(0, a)), side(x.shape.slice(a))];
  return x.graph.node("Flatten", [x], { axis: int(axis) }, [{ dtype: x.dtype, shape }])[0]!;
}

const flattenVjp: Vjp = ({ node, dy: [dy] }) => [back(dy!, inputsOf(node)[0]!)];

/** Gradient rules of this family. */
export const VJPS: Record<string, Vjp> = {
  Reshape: reshapeVjp,
  Flatten: flattenVjp,
  Unsqueeze: unsqueezeVjp,
  Squeeze: squeezeVjp,
  Identity: identityVjp,
  Transpose: transposeVjp,
  Expand: expandVjp,
  Tile: tileVjp,
};
