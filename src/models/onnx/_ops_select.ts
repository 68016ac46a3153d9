/**
 * Op handlers: Where, Clip, comparisons and logical ops (see `op_map.ts`).
 *
 * @module
 */

import type { Value } from "../../engine/graph.ts";
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
import { attrFloat } from "./_attrs.ts";
import type { OpContext, OpHandler } from "./_context.ts";

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

/** Handlers of this family, by op type. */
export const SELECT_OPS: Record<string, OpHandler> = {
  Where: (ctx) => [where(ctx.value(0), ctx.value(1), ctx.value(2))],
  Clip: clipOp,
  Equal: binary(equal),
  Greater: binary(greater),
  Less: binary(less),
  GreaterOrEqual: binary(greaterOrEqual),
  LessOrEqual: binary(lessOrEqual),
  Not: (ctx) => [logicalNot(ctx.value(0))],
  And: binary(logicalAnd),
  Or: binary(logicalOr),
};
