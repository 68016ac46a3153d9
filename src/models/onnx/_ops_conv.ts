/**
 * Op handlers: convolution, pooling, and the element-wise Max and Min (see `op_map.ts`). Built
 * rather than carried as frozen context, so gradients cross a CNN's trunk.
 *
 * Attributes by opset: MaxPool takes `ceil_mode` and `dilations` from opset 10 on and
 * AveragePool `dilations` from 19 (absent before, so the defaults hold); `auto_pad` is read in
 * every version, an empty string meaning NOTSET as old exporters wrote it. Max and Min broadcast
 * from opset 8; earlier files give equal shapes, which broadcasting accepts as they are. Max and
 * Min of integers known at import (shape arithmetic) are folded.
 *
 * @module
 */

import type { Value } from "../../engine/graph.ts";
import {
  type AutoPad,
  averagePool,
  conv,
  globalAveragePool,
  globalMaxPool,
  maximum,
  maxPool,
  maxPoolWithIndices,
  minimum,
  type PoolOptions,
} from "../../engine/ops/conv.ts";
import type { NodeProto } from "../../onnx/gen/onnx_pb.ts";
import { attrInt, attrInts, attrString } from "./_attrs.ts";
import type { OpContext, OpHandler, OpResult } from "./_context.ts";
import { type Folded, isNumeric } from "./_fold.ts";

const AUTO_PADS = new Set(["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]);

/** The sliding-window attributes shared by Conv and the pools. */
function windowOf(ctx: OpContext): PoolOptions & { autoPad: AutoPad } {
  const n = ctx.node;
  const auto = attrString(n, "auto_pad", "NOTSET") || "NOTSET";
  if (!AUTO_PADS.has(auto)) ctx.fail(`auto_pad is "${auto}", expected one of ${[...AUTO_PADS]}`);
  return {
    strides: attrInts(n, "strides"),
    pads: attrInts(n, "pads"),
    dilations: attrInts(n, "dilations"),
    autoPad: auto as AutoPad,
    ceilMode: attrInt(n, "ceil_mode", 0) === 1,
  };
}

function kernelOf(ctx: OpContext): number[] {
  const k = attrInts(ctx.node, "kernel_shape");
  if (!k) return ctx.fail("kernel_shape is missing");
  return k;
}

const convOp: OpHandler = (ctx) => [
  conv(ctx.value(0), ctx.value(1), ctx.has(2) ? ctx.value(2) : null, {
    ...windowOf(ctx),
    group: attrInt(ctx.node, "group", 1),
    kernelShape: attrInts(ctx.node, "kernel_shape"),
  }),
];

/** MaxPool; its Indices output (storage_order 0 only) is built when the file reads it. */
const maxPoolOp: OpHandler = (ctx) => {
  const x = ctx.value(0);
  if (!wants(ctx.node, 1)) return [maxPool(x, kernelOf(ctx), windowOf(ctx)), null];
  if (attrInt(ctx.node, "storage_order", 0) !== 0) {
    return ctx.fail("its Indices output is read with storage_order = 1 (column-major)");
  }
  return maxPoolWithIndices(x, kernelOf(ctx), windowOf(ctx));
};

const wants = (node: NodeProto, i: number) => (node.output[i] ?? "") !== "";

const averagePoolOp: OpHandler = (ctx) => [
  averagePool(ctx.value(0), kernelOf(ctx), {
    ...windowOf(ctx),
    countIncludePad: attrInt(ctx.node, "count_include_pad", 0) === 1,
  }),
];

/** Max or Min over the inputs; integer inputs known at import (rank ≤ 1) fold. */
function extreme(
  f: (values: readonly Value[]) => Value,
  pick: (a: number, b: number) => number,
): OpHandler {
  return (ctx): OpResult[] => {
    const ids = Array.from({ length: ctx.inputCount }, (_, i) => i).filter((i) => ctx.has(i));
    const folded = ids.map((i) => ctx.folded(i));
    const n = Math.max(...folded.map((f) => f?.data.length ?? 0));
    const known = folded.every((f) =>
      f && isNumeric(f) && f.shape.length <= 1 && (f.data.length === 1 || f.data.length === n)
    );
    if (known && folded.length > 0) return [fold(folded as Folded[], n, pick)];
    return [f(ids.map((i) => ctx.value(i)))];
  };
}

/** Element-wise `pick` of rank ≤ 1 numeric folded values, broadcast together. */
function fold(parts: readonly Folded[], n: number, pick: (a: number, b: number) => number): Folded {
  const at = (p: Folded, i: number) => p.data[p.data.length === 1 ? 0 : i] as number;
  const data = Array.from(
    { length: n },
    (_, i) => parts.map((p) => at(p, i)).reduce((a, b) => pick(a, b)),
  );
  const vector = parts.some((p) => p.shape.length === 1);
  return { dtype: parts[0]!.dtype, shape: vector ? [n] : [], data };
}

/** Handlers of this family, by op type. */
export const CONV_OPS: Record<string, OpHandler> = {
  Conv: convOp,
  MaxPool: maxPoolOp,
  AveragePool: averagePoolOp,
  GlobalAveragePool: (ctx) => [globalAveragePool(ctx.value(0))],
  GlobalMaxPool: (ctx) => [globalMaxPool(ctx.value(0))],
  Max: extreme(maximum, Math.max),
  Min: extreme(minimum, Math.min),
};
