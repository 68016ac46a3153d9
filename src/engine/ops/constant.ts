/**
 * Constants and shape queries: scalars for the backward pass, ONNX `Constant` nodes,
 * `ConstantOfShape`, `Shape` and `Size`. None of these carries a gradient.
 *
 * @module
 */

import { type DType, numberToBf16Bits, numberToF16Bits, type Tensor } from "../../tensor.ts";
import { type Graph, int, type Shape, tensorAttr, type Value } from "../graph.ts";
import { normAxis } from "../shapes.ts";
import type { Vjp } from "../vjp.ts";

function scalarTensor(value: number, dtype: DType, shape: readonly number[] = []): Tensor {
  switch (dtype) {
    case "F32":
      return { dtype, shape, data: new Float32Array([value]) };
    case "F64":
      return { dtype, shape, data: new Float64Array([value]) };
    case "F16":
      return { dtype, shape, data: new Uint16Array([numberToF16Bits(value)]) };
    case "BF16":
      return { dtype, shape, data: new Uint16Array([numberToBf16Bits(value)]) };
    case "I64":
      return { dtype, shape, data: new BigInt64Array([BigInt(value)]) };
    case "I32":
      return { dtype, shape, data: new Int32Array([value]) };
    case "BOOL":
      return { dtype, shape, data: new Uint8Array([value ? 1 : 0]) };
    default:
      throw new TypeError(`Cannot make a scalar constant of dtype ${dtype}`);
  }
}

/**
 * A rank-0 constant of the given dtype (F32, F64, F16, BF16, I64, I32 or BOOL).
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { scalar } from "./constant.ts";
 * const half = scalar(new Graph(), 0.5, "F32"); // shape []
 * ```
 */
export function scalar(g: Graph, value: number, dtype: DType = "F32"): Value {
  return g.constant(scalarTensor(value, dtype), "scalar");
}

/**
 * A 1-D int64 constant, as ONNX wants for axes, shapes and slice bounds.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { int64s } from "./constant.ts";
 * const axes = int64s(new Graph(), [0, 2]); // I64 [2]
 * ```
 */
export function int64s(g: Graph, values: readonly number[]): Value {
  const data = new BigInt64Array(values.map((v) => BigInt(v)));
  return g.constant({ dtype: "I64", shape: [values.length], data }, "i64");
}

/**
 * An ONNX `Constant` node holding `t` (the float64 twin widens an F32 `t` like any initializer).
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { constantNode } from "./constant.ts";
 * const c = constantNode(new Graph(), { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) });
 * ```
 */
export function constantNode(g: Graph, t: Tensor): Value {
  return g.node("Constant", [], { value: tensorAttr(t) }, [{
    dtype: t.dtype,
    shape: [...t.shape],
  }])[0]!;
}

/**
 * The integer contents of a value known at build time (an initializer, or the output of a
 * `Constant` node) of an integer or BOOL dtype, or `undefined` when it is computed at run time.
 * VJPs use it to read axes and slice bounds of imported nodes.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { constantInts, int64s } from "./constant.ts";
 * constantInts(int64s(new Graph(), [1, -1])); // [1, -1]
 * ```
 */
export function constantInts(v: Value): number[] | undefined {
  const t = constantTensor(v);
  if (!t) return undefined;
  const { dtype, data } = t;
  if (dtype === "I64" || dtype === "U64") return Array.from(data as BigInt64Array, Number);
  if (/^(I|U)(8|16|32)$/.test(dtype) || dtype === "BOOL") {
    return Array.from(data as Int32Array, Number);
  }
  return undefined;
}

/**
 * The tensor a constant value holds, an initializer's or a `Constant` node's, or `undefined` (an
 * external initializer, a computed value).
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { Graph } from "../graph.ts";
 * import { constantTensor, int64s } from "./constant.ts";
 * deepStrictEqual(constantTensor(int64s(new Graph(), [4]))?.dtype, "I64");
 * ```
 */
export function constantTensor(v: Value): Tensor | undefined {
  let t: unknown = v.graph.initializers.get(v);
  if (v.producer?.op === "Constant") t = v.producer.attrs["value"]?.value;
  if (!t || typeof t !== "object" || !("data" in t) || !("dtype" in t)) return undefined;
  return t as Tensor;
}

/**
 * The runtime shape of `x` as a 1-D int64 value.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { shapeOf } from "./constant.ts";
 * const s = shapeOf(new Graph().input("x", "F32", ["batch", 3])); // I64 [2]
 * ```
 */
export function shapeOf(x: Value): Value {
  return x.graph.node("Shape", [x], {}, [{ dtype: "I64", shape: [x.rank] }])[0]!;
}

/**
 * The size of axis `axis` of `x` as a 1-D int64 value of one element: a constant when the
 * dimension is static, an ONNX `Shape` node with `start`/`end` (opset 15+) when it is symbolic.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { dimOf } from "./constant.ts";
 * const n = dimOf(new Graph().input("x", "F32", ["batch", 3]), 0); // I64 [1], known at run time
 * ```
 */
export function dimOf(x: Value, axis: number): Value {
  const a = normAxis("Shape", axis, x.rank);
  const d = x.shape[a]!;
  if (typeof d === "number") return int64s(x.graph, [d]);
  return x.graph.node("Shape", [x], { start: int(a), end: int(a + 1) }, [{
    dtype: "I64",
    shape: [1],
  }])[0]!;
}

/**
 * The runtime element count of `x` as an int64 scalar.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { sizeOf } from "./constant.ts";
 * const n = sizeOf(new Graph().input("x", "F32", ["batch", 3])); // I64 []
 * ```
 */
export function sizeOf(x: Value): Value {
  return x.graph.node("Size", [x], {}, [{ dtype: "I64", shape: [] }])[0]!;
}

/**
 * A tensor of `shape` (a 1-D int64 value) filled with `value`; `staticShape` is its build-time
 * shape.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { constantOfShape, shapeOf } from "./constant.ts";
 * const x = new Graph().input("x", "F32", ["batch", 3]);
 * const twos = constantOfShape(shapeOf(x), 2, "F32", x.shape);
 * ```
 */
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

/**
 * Zeros shaped like `x` (at run time, so symbolic dimensions work).
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { zerosLike } from "./constant.ts";
 * const z = zerosLike(new Graph().input("x", "F32", ["batch", 3]));
 * ```
 */
export function zerosLike(x: Value): Value {
  return constantOfShape(shapeOf(x), 0, x.dtype, x.shape);
}

/**
 * Ones shaped like `x` (at run time, so symbolic dimensions work).
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { onesLike } from "./constant.ts";
 * const o = onesLike(new Graph().input("x", "F32", ["batch", 3]));
 * ```
 */
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
