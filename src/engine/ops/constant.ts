/**
 * Constants and shape queries: scalars for the backward pass, ONNX `Constant` nodes,
 * `ConstantOfShape`, `Shape` and `Size`. None of these carries a gradient.
 *
 * @module
 */

import type { DType, Tensor } from "../../tensor.ts";
import { type Graph, type Shape, tensorAttr, type Value } from "../graph.ts";
import type { Vjp } from "../vjp.ts";

/** Float dtypes a scalar constant can take. */
type ScalarDType = "F32" | "F64" | "I64" | "I32";

function scalarTensor(value: number, dtype: DType, shape: readonly number[] = []): Tensor {
  switch (dtype) {
    case "F32":
      return { dtype, shape, data: new Float32Array([value]) };
    case "F64":
      return { dtype, shape, data: new Float64Array([value]) };
    case "I64":
      return { dtype, shape, data: new BigInt64Array([BigInt(value)]) };
    case "I32":
      return { dtype, shape, data: new Int32Array([value]) };
    default:
      throw new TypeError(`Cannot make a scalar constant of dtype ${dtype}`);
  }
}

/** A rank-0 constant of the given dtype. */
export function scalar(g: Graph, value: number, dtype: DType = "F32"): Value {
  return g.constant(scalarTensor(value, dtype as ScalarDType), "scalar");
}

/** A 1-D int64 constant, as ONNX wants for axes, shapes and slice bounds. */
export function int64s(g: Graph, values: readonly number[]): Value {
  const data = new BigInt64Array(values.map((v) => BigInt(v)));
  return g.constant({ dtype: "I64", shape: [values.length], data }, "i64");
}

/** An ONNX `Constant` node holding `t`. */
export function constantNode(g: Graph, t: Tensor): Value {
  return g.node("Constant", [], { value: tensorAttr(t) }, [{
    dtype: t.dtype,
    shape: [...t.shape],
  }])[0]!;
}

/** The runtime shape of `x` as a 1-D int64 value. */
export function shapeOf(x: Value): Value {
  return x.graph.node("Shape", [x], {}, [{ dtype: "I64", shape: [x.rank] }])[0]!;
}

/** The runtime element count of `x` as an int64 scalar. */
export function sizeOf(x: Value): Value {
  return x.graph.node("Size", [x], {}, [{ dtype: "I64", shape: [] }])[0]!;
}

/** A tensor of `shape` (a 1-D int64 value) filled with `value`. */
export function constantOfShape(
  shape: Value,
  value: number,
  dtype: DType,
  staticShape: Shape,
): Value {
  return shape.graph.node(
    "ConstantOfShape",
    [shape],
    { value: tensorAttr(scalarTensor(value, dtype, [1])) },
    [{ dtype, shape: staticShape }],
  )[0]!;
}

/** Zeros shaped like `x`. */
export function zerosLike(x: Value): Value {
  return constantOfShape(shapeOf(x), 0, x.dtype, x.shape);
}

/** Ones shaped like `x`. */
export function onesLike(x: Value): Value {
  return constantOfShape(shapeOf(x), 1, x.dtype, x.shape);
}

const none: Vjp = ({ node }) => node.inputs.map(() => null);

/** Gradient rules of this family: constants and shape queries carry none. */
export const VJPS: Record<string, Vjp> = {
  Constant: none,
  ConstantOfShape: none,
  Shape: none,
  Size: none,
};
