/**
 * Op handlers: Where, Clip, Gather, comparisons and logical ops (see `op_map.ts`). Equal and Where
 * on integer shape computations fold at import (PyTorch's `expand(-1)` writes
 * `Where(Equal(size, -1), 1, size)`), and so does Gather of a shape's entries; on data, Gather is
 * an embedding lookup or `hidden[:, 0]`, differentiable in its data.
 *
 * @module
 */

import type { Value } from "../../engine/graph.ts";
import { gather } from "../../engine/ops/gather.ts";
import {
  clip,
  equal,
  greater,
  greaterOrEqual,
  less,
  lessOrEqual,
  logicalAnd,
  logicalNot,
  logicalOr,
  where,
} from "../../engine/ops/select.ts";
import { attrFloat, attrInt } from "./_attrs.ts";
import type { OpContext, OpHandler } from "./_context.ts";
import * as fold from "./_fold.ts";

const binary = (f: (a: Value, b: Value) => Value): OpHandler => (ctx) => [
  f(ctx.value(0), ctx.value(1)),
];

/** A Clip bound: a constant becomes a number, an omitted one is undefined. */
function bound(ctx: OpContext, i: number): Value | number | undefined {
  if (!ctx.has(i)) return undefined;
  return ctx.scalar(i) ?? ctx.value(i);
}

/** Clip: bounds are attributes before opset 11 (absent = unbounded), optional inputs after. */
const clipOp: OpHandler = (ctx) => {
  const x = ctx.value(0);
  if (ctx.opset < 11) {
    return [clip(x, attrFloat(ctx.node, "min"), attrFloat(ctx.node, "max"))];
  }
  return [clip(x, bound(ctx, 1), bound(ctx, 2))];
};

/** Where, folded when the condition and both branches are known integers. */
const whereOp: OpHandler = (ctx) => {
  const [c, a, b] = [0, 1, 2].map((i) => ctx.folded(i));
  const r = c && a && b ? fold.where(c, a, b) : undefined;
  return [r ?? where(ctx.value(0), ctx.value(1), ctx.value(2))];
};

/** Equal, folded when both sides are known integers and every pair is decided. */
const equalOp: OpHandler = (ctx) => {
  const [a, b] = [ctx.folded(0), ctx.folded(1)];
  const r = a && b ? fold.equal(a, b) : undefined;
  return [r ?? equal(ctx.value(0), ctx.value(1))];
};

/** Gather: folded on shape computations (1-D known data, known indices), built on data. */
const gatherOp: OpHandler = (ctx) => {
  const axis = attrInt(ctx.node, "axis", 0);
  const [data, indices] = [ctx.folded(0), ctx.folded(1)];
  const r = data && indices ? fold.gather(data, indices, axis) : undefined;
  return [r ?? gather(ctx.value(0), ctx.value(1), axis)];
};

/** Handlers of this family, by op type. */
export const SELECT_OPS: Record<string, OpHandler> = {
  Where: whereOp,
  Clip: clipOp,
  Gather: gatherOp,
  Equal: equalOp,
  Greater: binary(greater),
  Less: binary(less),
  GreaterOrEqual: binary(greaterOrEqual),
  LessOrEqual: binary(lessOrEqual),
  Not: (ctx) => [logicalNot(ctx.value(0))],
  And: binary(logicalAnd),
  Or: binary(logicalOr),
};
