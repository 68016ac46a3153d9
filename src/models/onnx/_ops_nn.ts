/**
 * Op handlers: softmax, normalization, reductions and dropout (see `op_map.ts`).
 *
 * @module
 */

import type { Value } from "../../engine/graph.ts";
import { normAxis } from "../../engine/shapes.ts";
import { logSoftmax, softmax } from "../../engine/ops/activation.ts";
import { shapeOf } from "../../engine/ops/constant.ts";
import { dropoutInference } from "../../engine/ops/dropout.ts";
import { add, div, mul, sqrt, sub } from "../../engine/ops/elementwise.ts";
import { layerNorm, rmsNorm } from "../../engine/ops/normalization.ts";
import { reduceMean, reduceSum } from "../../engine/ops/reduce.ts";
import { flatten, reshape, reshapeTo } from "../../engine/ops/shape.ts";
import { attrFloat, attrInt, attrInts } from "./_attrs.ts";
import type { OpContext, OpHandler } from "./_context.ts";

/**
 * Softmax and LogSoftmax. Before opset 13 the input was flattened to 2-D at `axis` (default 1)
 * and normalized over everything after it; from 13 on it is one axis (default -1).
 */
function softmaxLike(f: (x: Value, axis: number) => Value): OpHandler {
  return (ctx) => {
    const x = ctx.value(0);
    if (ctx.opset >= 13) return [f(x, attrInt(ctx.node, "axis", -1))];
    const axis = normAxis(ctx.node.opType, attrInt(ctx.node, "axis", 1), x.rank);
    if (axis === x.rank - 1) return [f(x, -1)];
    const y = f(flatten(x, axis), 1);
    return [reshapeTo(y, shapeOf(x), x.shape)];
  };
}

const layerNormOp: OpHandler = (ctx) => {
  const y = layerNorm(ctx.value(0), ctx.value(1), ctx.has(2) ? ctx.value(2) : null, {
    axis: attrInt(ctx.node, "axis", -1),
    epsilon: attrFloat(ctx.node, "epsilon", 1e-5),
  });
  // The builder emits one LayerNormalization node; its Mean and InvStdDev outputs are the
  // node's second and third outputs.
  const outs = y.producer?.op === "LayerNormalization" ? y.producer.outputs : [y];
  return [y, outs[1] ?? null, outs[2] ?? null];
};

const rmsNormOp: OpHandler = (ctx) => [
  rmsNorm(ctx.value(0), ctx.value(1), {
    axis: attrInt(ctx.node, "axis", -1),
    epsilon: attrFloat(ctx.node, "epsilon", 1e-5),
  }),
];

/** BatchNormalization in inference mode: `(x − mean) / sqrt(var + ε) · scale + B`, channel axis 1. */
const batchNormOp: OpHandler = (ctx) => {
  if (attrInt(ctx.node, "training_mode", 0) === 1) {
    return ctx.fail("training_mode = 1 is not supported");
  }
  if (ctx.opset < 9 && attrInt(ctx.node, "spatial", 1) === 0) {
    return ctx.fail("spatial = 0 is not supported");
  }
  const x = ctx.value(0);
  const perChannel = (i: number) => {
    const v = ctx.value(i);
    return x.rank > 2 ? reshape(v, [...v.shape, ...new Array<number>(x.rank - 2).fill(1)]) : v;
  };
  const [scale, bias, mean, variance] = [1, 2, 3, 4].map(perChannel) as [
    Value,
    Value,
    Value,
    Value,
  ];
  const rstd = sqrt(add(variance, attrFloat(ctx.node, "epsilon", 1e-5)));
  return [add(mul(div(sub(x, mean), rstd), scale), bias)];
};

/**
 * A reduction whose `axes` moved from an attribute to an input at opset `since` (13 for
 * ReduceSum, 18 for ReduceMean). `noop_with_empty_axes` returns the input when no axes are given.
 */
function reduction(
  f: (x: Value, axes: number[] | undefined, keep: boolean) => Value,
  since: number,
): OpHandler {
  return (ctx: OpContext) => {
    const x = ctx.value(0);
    const axes = ctx.opset < since
      ? attrInts(ctx.node, "axes")
      : ctx.has(1)
      ? ctx.ints(1, "axes")
      : undefined;
    const keep = attrInt(ctx.node, "keepdims", 1) === 1;
    if ((!axes || axes.length === 0) && attrInt(ctx.node, "noop_with_empty_axes", 0) === 1) {
      return [x];
    }
    return [f(x, axes && axes.length ? axes : undefined, keep)];
  };
}

/**
 * Dropout imports as inference-mode dropout, the identity; its mask output is not produced. A
 * constant `training_mode = true` (opset 12+) is noted: ffwd applies its own dropout in training.
 */
const dropoutOp: OpHandler = (ctx) => {
  if (ctx.opset >= 12 && ctx.has(2) && ctx.scalar(2)) {
    ctx.note(`Dropout node "${ctx.node.name}" had training_mode = true: imported as the identity`);
  }
  return [dropoutInference(ctx.value(0)), null];
};

/** Handlers of this family, by op type. */
export const NN_OPS: Record<string, OpHandler> = {
  Softmax: softmaxLike(softmax),
  LogSoftmax: softmaxLike(logSoftmax),
  LayerNormalization: layerNormOp,
  RMSNormalization: rmsNormOp,
  BatchNormalization: batchNormOp,
  ReduceMean: reduction(reduceMean, 18),
  ReduceSum: reduction(reduceSum, 13),
  Dropout: dropoutOp,
};
