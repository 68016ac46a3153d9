/**
 * Activations: ReLU, LeakyReLU, sigmoid, tanh, SiLU, softmax and log-softmax, plus GELU and erf
 * (written in `_gelu.ts`, re-exported here). Semantics are those of the ONNX operators
 * (https://onnx.ai/onnx/operators/); Softmax and LogSoftmax follow opset 13: one axis, default -1.
 *
 * @module
 */

import { float, int, type Value } from "../graph.ts";
import { assertFloat, normAxis } from "../shapes.ts";
import { inputsOf, outputOf, type Vjp } from "../vjp.ts";
import { add, exp, mul, sub } from "./elementwise.ts";
import { reduceSum } from "./reduce.ts";
import { cast } from "./cast.ts";
import { greater } from "./select.ts";
import { VJPS as GELU_VJPS } from "./_gelu.ts";
import { attr } from "./_helpers.ts";

export { erf, gelu, type GeluOptions } from "./_gelu.ts";

function unary(op: string, x: Value, attrs = {}): Value {
  assertFloat(op, x);
  return x.graph.node(op, [x], attrs, [{ dtype: x.dtype, shape: x.shape }])[0]!;
}

/** `x > 0` as a float mask of x's dtype. */
const positive = (x: Value): Value => cast(greater(x, 0), x.dtype);

/**
 * `max(x, 0)`.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { relu } from "./activation.ts";
 * const g = new Graph();
 * const y = relu(g.input("x", "F32", ["batch", 4]));
 * ```
 */
export const relu = (x: Value): Value => unary("Relu", x);

// saved for backward: x (the mask x > 0)
const reluVjp: Vjp = ({ node, dy: [dy] }) => [mul(dy!, positive(inputsOf(node)[0]!))];

/**
 * `x` where `x > 0`, else `alpha·x` (ONNX LeakyRelu).
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { leakyRelu } from "./activation.ts";
 * const g = new Graph();
 * const y = leakyRelu(g.input("x", "F32", ["batch", 4]), 0.2);
 * ```
 */
export function leakyRelu(x: Value, alpha = 0.01): Value {
  return unary("LeakyRelu", x, { alpha: float(alpha) });
}

// saved for backward: x; slope is alpha + (1 - alpha)·[x > 0]
const leakyReluVjp: Vjp = ({ node, dy: [dy] }) => {
  const alpha = attr(node, "alpha", 0.01);
  const slope = add(mul(positive(inputsOf(node)[0]!), 1 - alpha), alpha);
  return [mul(dy!, slope)];
};

/**
 * The logistic function `1 / (1 + e^-x)`.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { sigmoid } from "./activation.ts";
 * const g = new Graph();
 * const p = sigmoid(g.input("logits", "F32", ["batch", 1]));
 * ```
 */
export const sigmoid = (x: Value): Value => unary("Sigmoid", x);

// saved for backward: y = sigmoid(x); dX = dy·y·(1 − y)
const sigmoidVjp: Vjp = ({ node, dy: [dy] }) => {
  const y = outputOf(node);
  return [mul(dy!, mul(y, sub(1, y)))];
};

/**
 * Hyperbolic tangent.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { tanh } from "./activation.ts";
 * const g = new Graph();
 * const y = tanh(g.input("x", "F32", ["batch", 4]));
 * ```
 */
export const tanh = (x: Value): Value => unary("Tanh", x);

// saved for backward: y = tanh(x); dX = dy·(1 − y²)
const tanhVjp: Vjp = ({ node, dy: [dy] }) => {
  const y = outputOf(node);
  return [mul(dy!, sub(1, mul(y, y)))];
};

/**
 * SiLU (swish) `x·sigmoid(x)`, composed: the autograd differentiates Mul and Sigmoid.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { silu } from "./activation.ts";
 * const g = new Graph();
 * const y = silu(g.input("x", "F32", ["batch", 4]));
 * ```
 */
export const silu = (x: Value): Value => mul(x, sigmoid(x));

/**
 * Softmax along `axis` (ONNX Softmax, opset 13 semantics).
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { softmax } from "./activation.ts";
 * const g = new Graph();
 * const p = softmax(g.input("logits", "F32", ["batch", 10])); // rows sum to 1
 * ```
 */
export function softmax(x: Value, axis = -1): Value {
  normAxis("Softmax", axis, x.rank);
  return unary("Softmax", x, { axis: int(axis) });
}

// saved for backward: y = softmax(x); dX = y·(dy − Σ dy·y)
const softmaxVjp: Vjp = ({ node, dy: [dy] }) => {
  const y = outputOf(node);
  const axis = attr(node, "axis", -1);
  return [mul(y, sub(dy!, reduceSum(mul(dy!, y), [axis], true)))];
};

/**
 * `log(softmax(x))` along `axis`, computed stably by onnxruntime (ONNX LogSoftmax, opset 13).
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { logSoftmax } from "./activation.ts";
 * const g = new Graph();
 * const logp = logSoftmax(g.input("logits", "F32", ["batch", 10]));
 * ```
 */
export function logSoftmax(x: Value, axis = -1): Value {
  normAxis("LogSoftmax", axis, x.rank);
  return unary("LogSoftmax", x, { axis: int(axis) });
}

// saved for backward: y = log softmax(x); dX = dy − exp(y)·Σ dy
const logSoftmaxVjp: Vjp = ({ node, dy: [dy] }) => {
  const y = outputOf(node);
  const axis = attr(node, "axis", -1);
  return [sub(dy!, mul(exp(y), reduceSum(dy!, [axis], true)))];
};

/** Gradient rules of this family. */
export const VJPS: Record<string, Vjp> = {
  Relu: reluVjp,
  LeakyRelu: leakyReluVjp,
  Sigmoid: sigmoidVjp,
  Tanh: tanhVjp,
  Softmax: softmaxVjp,
  LogSoftmax: logSoftmaxVjp,
  ...GELU_VJPS,
};
