/**
 * Joining along an axis: Concat and Split (opset 13+: sizes as an input). Each one's gradient is
 * the other: Concat's is a Split of the gradient at the parts' sizes (read at run time along a
 * symbolic axis), Split's a Concat of the outputs' gradients with zeros for outputs no gradient
 * reached.
 *
 * @module
 */

import { type Dim, int, type Node, type Shape, type Value } from "../graph.ts";
import { assertSameDtype, normAxis } from "../shapes.ts";
import type { Vjp } from "../vjp.ts";
import { dimOf, int64s, zerosLike } from "./constant.ts";
import { attr } from "./_helpers.ts";

const withDim = (shape: Shape, a: number, d: Dim): Dim[] => shape.map((v, i) => (i === a ? d : v));

/**
 * Joins `values` along `axis`; every other dimension must agree. The joined dimension is the
 * sum when all parts are static, a new symbolic dimension otherwise.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { concat } from "./concat.ts";
 * const g = new Graph();
 * const y = concat([g.input("a", "F32", ["batch", 3]), g.input("b", "F32", ["batch", 4])], 1);
 * // y is [batch, 7]
 * ```
 */
export function concat(values: readonly Value[], axis: number): Value {
  const first = values[0];
  if (!first) throw new TypeError("Cannot apply Concat to an empty list of values");
  const a = normAxis("Concat", axis, first.rank);
  let total: number | undefined = 0;
  for (const v of values) {
    assertSameDtype("Concat", first, v);
    if (v.rank !== first.rank || v.shape.some((d, i) => i !== a && d !== first.shape[i])) {
      throw new TypeError(
        `Cannot concatenate along axis ${axis} in Concat: a is ${first}, b is ${v}`,
      );
    }
    const d = v.shape[a]!;
    total = typeof d === "number" && total !== undefined ? total + d : undefined;
  }
  const d = total ?? (values.length === 1 ? first.shape[a]! : first.graph.freshName("dim"));
  return concatAs(values, a, withDim(first.shape, a, d));
}

/** Concat with a given static result shape (gradients keep their input's static shape). */
function concatAs(values: readonly Value[], a: number, shape: Shape): Value {
  const v = values[0]!;
  return v.graph.node("Concat", values, { axis: int(a) }, [{ dtype: v.dtype, shape }])[0]!;
}

function axisAttr(node: Node, rank: number): number {
  return normAxis(node.op, attr(node, "axis", 0), rank);
}

// dX_i = the i-th piece of dY, split at the parts' sizes (runtime sizes for symbolic ones)
const concatVjp: Vjp = ({ node, dy: [dy], needs }) => {
  const xs = node.inputs as readonly Value[];
  if (xs.length === 1) return [dy!];
  const a = axisAttr(node, xs[0]!.rank);
  const dims = xs.map((v) => v.shape[a]!);
  const sizes = dims.every((d) => typeof d === "number")
    ? int64s(node.outputs[0]!.graph, dims as number[])
    : concat(xs.map((v) => dimOf(v, a)), 0);
  const parts = splitAs(dy!, sizes, a, xs.map((v) => v.shape));
  return parts.map((p, i) => (needs[i] ? p : null));
};

/**
 * Splits `x` along `axis` into pieces of the given sizes (ONNX Split, sizes as an input). When
 * the dimension is static the sizes must add up to it; along a symbolic dimension they are
 * checked at run time.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { split } from "./concat.ts";
 * const [gate, up] = split(new Graph().input("h", "F32", ["batch", 8]), [4, 4], 1);
 * ```
 */
export function split(x: Value, sizes: readonly number[], axis = 0): Value[] {
  const a = normAxis("Split", axis, x.rank);
  if (sizes.length === 0 || sizes.some((n) => !Number.isInteger(n) || n < 0)) {
    throw new RangeError(
      `Invalid sizes [${sizes.join(", ")}] in Split of ${x}: expected integers >= 0`,
    );
  }
  const d = x.shape[a]!;
  const total = sizes.reduce((s, n) => s + n, 0);
  if (typeof d === "number" && total !== d) {
    throw new TypeError(
      `Cannot split ${x} along axis ${axis} in Split: sizes [${
        sizes.join(", ")
      }] add up to ${total}, not ${d}`,
    );
  }
  return splitAs(x, int64s(x.graph, sizes), a, sizes.map((n) => withDim(x.shape, a, n)));
}

/** Split at runtime `sizes` (1-D int64) into pieces of the given static shapes. */
function splitAs(x: Value, sizes: Value, a: number, shapes: readonly Shape[]): Value[] {
  const outs = shapes.map((shape) => ({ dtype: x.dtype, shape }));
  return x.graph.node("Split", [x, sizes], { axis: int(a) }, outs);
}

// dX = the outputs' gradients joined again, zeros where none flowed
const splitVjp: Vjp = ({ node, dy }) => {
  const x = node.inputs[0]!;
  const parts = node.outputs.map((o, i) => dy[i] ?? zerosLike(o));
  return [concatAs(parts, axisAttr(node, x.rank), x.shape), null];
};

/** Gradient rules of this family. */
export const VJPS: Record<string, Vjp> = {
  Concat: concatVjp,
  Split: splitVjp,
};
