/**
 * Every op builder of the engine, for `import { ops } from "ffwd"`: each builds one node (or a
 * few) with shape inference, and each has a vector-Jacobian product the autograd uses.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { gemm, relu } from "./mod.ts";
 * const g = new Graph();
 * const x = g.input("x", "F32", ["batch", 4]);
 * const w = g.input("w", "F32", [3, 4]);
 * const y = relu(gemm(x, w, null, { transB: true })); // [batch, 3]
 * ```
 *
 * @module
 */

export {
  erf,
  gelu,
  type GeluOptions,
  leakyRelu,
  logSoftmax,
  relu,
  sigmoid,
  silu,
  softmax,
  tanh,
} from "./activation.ts";
export { cast } from "./cast.ts";
export { concat, split } from "./concat.ts";
export { constantNode, onesLike, scalar, shapeOf, zerosLike } from "./constant.ts";
export {
  type AutoPad,
  averagePool,
  conv,
  type ConvOptions,
  globalAveragePool,
  globalMaxPool,
  maximum,
  maxPool,
  maxPoolWithIndices,
  minimum,
  type PoolOptions,
  type WindowOptions,
} from "./conv.ts";
export { detach } from "./detach.ts";
export { dropout, dropoutInference, dropoutMask } from "./dropout.ts";
export { abs, add, div, exp, log, mul, neg, pow, reciprocal, sqrt, sub } from "./elementwise.ts";
export { bceWithLogits, crossEntropy, mseLoss } from "./loss.ts";
export { gemm, type GemmOptions, matmul } from "./matmul.ts";
export { layerNorm, rmsNorm, rmsNormOp } from "./normalization.ts";
export { reduceMean, reduceSum } from "./reduce.ts";
export { clip, equal, greater, less, where } from "./select.ts";
export {
  expand,
  flatten,
  identity,
  reshape,
  squeeze,
  tile,
  transpose,
  unsqueeze,
} from "./shape.ts";
export { range, slice, sliceDynamic } from "./slice.ts";
export { gather } from "./gather.ts";
