/**
 * Op handlers: element-wise arithmetic, activations and matrix products (see `op_map.ts`).
 *
 * @module
 */

import type { Value } from "../../engine/graph.ts";
import { erf, gelu, leakyRelu, relu, sigmoid, tanh } from "../../engine/ops/activation.ts";
import { scalar } from "../../engine/ops/constant.ts";
import {
  abs,
  add,
  div,
  exp,
  log,
  mul,
  neg,
  pow,
  reciprocal,
  sqrt,
  sub,
} from "../../engine/ops/elementwise.ts";
import { gemm, matmul } from "../../engine/ops/matmul.ts";
import { clip } from "../../engine/ops/select.ts";
import { cast, reshape } from "../../engine/ops/shape.ts";
import { attrFloat, attrInt, attrString } from "./_attrs.ts";
import type { OpContext, OpHandler, OpResult } from "./_context.ts";
import { arith } from "./_fold.ts";

const unary = (f: (x: Value) => Value): OpHandler => (ctx) => [f(ctx.value(0))];

/**
 * A binary element-wise op. Integer operands known at import are folded (shape arithmetic).
 * Before opset 7, `broadcast = 1` with an `axis` aligned b's dimensions at `axis` of a rather
 * than at the end: b is reshaped with trailing 1s to get numpy broadcasting.
 */
function binary(op: string, f: (a: Value, b: Value) => Value): OpHandler {
  return (ctx) => {
    const fa = ctx.folded(0);
    const fb = ctx.folded(1);
    if (fa && fb) {
      const r = arith(op, fa, fb);
      if (r) return [r];
    }
    const a = ctx.value(0);
    let b = ctx.value(1);
    const axis = attrInt(ctx.node, "axis");
    if (ctx.opset < 7 && attrInt(ctx.node, "broadcast", 0) === 1 && axis !== undefined) {
      const first = axis < 0 ? axis + a.rank : axis;
      const trailing = a.rank - first - b.rank;
      if (trailing > 0) b = reshape(b, [...b.shape, ...new Array<number>(trailing).fill(1)]);
    }
    return [f(a, b)];
  };
}

/** Pow: an exponent of another dtype (allowed from opset 12) is converted to the base's. */
const powOp: OpHandler = (ctx) => {
  const x = ctx.value(0);
  const e = ctx.scalar(1);
  if (e !== undefined && ctx.shape(1).length === 0) return [pow(x, scalar(ctx.g, e, x.dtype))];
  return [pow(x, cast(ctx.value(1), x.dtype))];
};

/** Softplus, stable for large |x|: `relu(x) + log(1 + exp(-|x|))`. */
function softplus(x: Value): Value {
  return add(relu(x), log(add(exp(neg(abs(x))), 1)));
}

/** HardSigmoid `max(0, min(1, alpha·x + beta))`. */
const hardSigmoid: OpHandler = (ctx) => {
  const x = ctx.value(0);
  const v = add(mul(x, attrFloat(ctx.node, "alpha", 0.2)), attrFloat(ctx.node, "beta", 0.5));
  return [clip(v, 0, 1)];
};

const geluOp: OpHandler = (ctx) => {
  const approximate = attrString(ctx.node, "approximate", "none");
  if (approximate !== "none" && approximate !== "tanh") {
    return ctx.fail(`approximate is "${approximate}", expected "none" or "tanh"`);
  }
  return [gelu(ctx.value(0), { approximate: approximate as "none" | "tanh" })];
};

/** com.microsoft FastGelu(x, bias?): the tanh approximation of GELU of `x + bias`. */
const fastGelu: OpHandler = (ctx) => {
  const x = ctx.has(1) ? add(ctx.value(0), ctx.value(1)) : ctx.value(0);
  return [gelu(x, { approximate: "tanh" })];
};

/** com.microsoft BiasGelu(x, bias): exact GELU of `x + bias`. */
const biasGelu: OpHandler = (ctx) => [gelu(add(ctx.value(0), ctx.value(1)))];

const gemmOp: OpHandler = (ctx) => {
  const n = ctx.node;
  return [
    gemm(ctx.value(0), ctx.value(1), ctx.has(2) ? ctx.value(2) : null, {
      alpha: attrFloat(n, "alpha", 1),
      beta: attrFloat(n, "beta", 1),
      transA: attrInt(n, "transA", 0) === 1,
      transB: attrInt(n, "transB", 0) === 1,
    }),
  ];
};

const sum: OpHandler = (ctx) => {
  let acc = ctx.value(0);
  for (let i = 1; i < ctx.inputCount; i++) acc = add(acc, ctx.value(i));
  return [acc];
};

/** Handlers of this family, by op type. */
export const MATH_OPS: Record<string, OpHandler> = {
  Add: binary("Add", add),
  Sub: binary("Sub", sub),
  Mul: binary("Mul", mul),
  Div: binary("Div", div),
  Pow: powOp,
  Neg: unary(neg),
  Exp: unary(exp),
  Log: unary(log),
  Sqrt: unary(sqrt),
  Reciprocal: unary(reciprocal),
  Abs: unary(abs),
  Sum: sum,
  Relu: unary(relu),
  LeakyRelu: (ctx) => [leakyRelu(ctx.value(0), attrFloat(ctx.node, "alpha", 0.01))],
  Sigmoid: unary(sigmoid),
  Tanh: unary(tanh),
  Erf: unary(erf),
  Gelu: geluOp,
  Softplus: unary(softplus),
  HardSigmoid: hardSigmoid,
  MatMul: (ctx) => [matmul(ctx.value(0), ctx.value(1))],
  Gemm: gemmOp,
  "com.microsoft.Gelu": (ctx: OpContext): OpResult[] => [gelu(ctx.value(0))],
  "com.microsoft.FastGelu": fastGelu,
  "com.microsoft.BiasGelu": biasGelu,
};
