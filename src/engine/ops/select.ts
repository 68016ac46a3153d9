/**
 * Selection and masks: Where, Clip (opset 11+: min and max as optional inputs) and the
 * comparisons and logical ops that build boolean masks (Greater, Less, Equal, GreaterOrEqual,
 * LessOrEqual, Not, And, Or). Comparisons and logical ops carry no gradient.
 *
 * Clip's gradient follows PyTorch's `clamp`: it flows to `x` where `min <= x <= max` (boundaries
 * included), to `min` where `x < min` and to `max` where `x > max`.
 *
 * @module
 */

import type { Value } from "../graph.ts";
import { assertSameDtype, broadcastShapes } from "../shapes.ts";
import type { Vjp } from "../vjp.ts";
import { scalar } from "./constant.ts";
import { liftOperands, type Operand } from "./elementwise.ts";
import { unbroadcast } from "./shape.ts";

function compare(op: string, a: Operand, b: Operand): Value {
  const [va, vb] = liftOperands(a, b, op);
  assertSameDtype(op, va, vb);
  const shape = broadcastShapes(op, va.shape, vb.shape);
  return va.graph.node(op, [va, vb], {}, [{ dtype: "BOOL", shape }])[0]!;
}

/** Comparisons and logical ops carry no gradient. */
const none: Vjp = ({ node }) => node.inputs.map(() => null);

function assertBool(op: string, v: Value): void {
  if (v.dtype !== "BOOL") {
    throw new TypeError(`Cannot apply ${op} to "${v.name}" of dtype ${v.dtype}: expected BOOL`);
  }
}

/**
 * `a > b` with broadcasting, as a BOOL mask.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { greater } from "./select.ts";
 * const positive = greater(new Graph().input("x", "F32", [3]), 0);
 * ```
 */
export const greater = (a: Operand, b: Operand): Value => compare("Greater", a, b);

/**
 * `a < b` with broadcasting, as a BOOL mask.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { less } from "./select.ts";
 * const negative = less(new Graph().input("x", "F32", [3]), 0);
 * ```
 */
export const less = (a: Operand, b: Operand): Value => compare("Less", a, b);

/**
 * `a == b` with broadcasting, as a BOOL mask.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { equal } from "./select.ts";
 * const isPad = equal(new Graph().input("ids", "I64", ["batch", 8]), 0);
 * ```
 */
export const equal = (a: Operand, b: Operand): Value => compare("Equal", a, b);

/**
 * `a >= b` with broadcasting, as a BOOL mask.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { greaterOrEqual } from "./select.ts";
 * const m = greaterOrEqual(new Graph().input("x", "F32", [3]), -1);
 * ```
 */
export const greaterOrEqual = (a: Operand, b: Operand): Value => compare("GreaterOrEqual", a, b);

/**
 * `a <= b` with broadcasting, as a BOOL mask.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { lessOrEqual } from "./select.ts";
 * const m = lessOrEqual(new Graph().input("x", "F32", [3]), 1);
 * ```
 */
export const lessOrEqual = (a: Operand, b: Operand): Value => compare("LessOrEqual", a, b);

/**
 * Logical not of a BOOL mask.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { greater, logicalNot } from "./select.ts";
 * const notPositive = logicalNot(greater(new Graph().input("x", "F32", [3]), 0));
 * ```
 */
export function logicalNot(x: Value): Value {
  assertBool("Not", x);
  return x.graph.node("Not", [x], {}, [{ dtype: "BOOL", shape: x.shape }])[0]!;
}

function logical(op: string, a: Value, b: Value): Value {
  assertBool(op, a);
  assertBool(op, b);
  const shape = broadcastShapes(op, a.shape, b.shape);
  return a.graph.node(op, [a, b], {}, [{ dtype: "BOOL", shape }])[0]!;
}

/**
 * Logical and of two BOOL masks, with broadcasting.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { greater, less, logicalAnd } from "./select.ts";
 * const x = new Graph().input("x", "F32", [3]);
 * const inside = logicalAnd(greater(x, -1), less(x, 1));
 * ```
 */
export const logicalAnd = (a: Value, b: Value): Value => logical("And", a, b);

/**
 * Logical or of two BOOL masks, with broadcasting.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { greater, less, logicalOr } from "./select.ts";
 * const x = new Graph().input("x", "F32", [3]);
 * const outside = logicalOr(less(x, -1), greater(x, 1));
 * ```
 */
export const logicalOr = (a: Value, b: Value): Value => logical("Or", a, b);

/**
 * `cond ? a : b` element-wise, the three broadcast together (ONNX Where). A number operand
 * becomes a scalar of the other's dtype. The gradient goes to `a` where `cond` holds and to `b`
 * elsewhere, each summed back to its operand's shape.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { greater, where } from "./select.ts";
 * const x = new Graph().input("x", "F32", ["batch", 4]);
 * const relu = where(greater(x, 0), x, 0);
 * ```
 */
export function where(cond: Value, a: Operand, b: Operand): Value {
  assertBool("Where", cond);
  const [va, vb] = liftOperands(a, b, "Where");
  assertSameDtype("Where", va, vb);
  let shape;
  try {
    shape = broadcastShapes("Where", broadcastShapes("Where", cond.shape, va.shape), vb.shape);
  } catch {
    throw new TypeError(`Cannot broadcast in Where: cond is ${cond}, a is ${va}, b is ${vb}`);
  }
  return cond.graph.node("Where", [cond, va, vb], {}, [{ dtype: va.dtype, shape }])[0]!;
}

// dA = where(cond, dy, 0), dB = where(cond, 0, dy), each unbroadcast
const whereVjp: Vjp = ({ node, dy: [dy], needs }) => {
  const [cond, a, b] = node.inputs;
  return [
    null,
    needs[1] ? unbroadcast(where(cond!, dy!, 0), a!) : null,
    needs[2] ? unbroadcast(where(cond!, 0, dy!), b!) : null,
  ];
};

function clipBound(x: Value, v: Operand | undefined, which: string): Value | null {
  if (v === undefined) return null;
  if (typeof v === "number") return scalar(x.graph, v, x.dtype);
  if (v.rank !== 0 || v.dtype !== x.dtype) {
    throw new TypeError(
      `Cannot apply Clip: ${which} must be a scalar of dtype ${x.dtype}, x is ${x.dtype} ${x}, ${which} is ${v.dtype} ${v}`,
    );
  }
  return v;
}

/**
 * `min(max(x, min), max)` (ONNX Clip, bounds as optional scalar inputs; omit one for a one-sided
 * clip). Gradients follow PyTorch's `clamp`: `x` gets `dy` where `min <= x <= max`, boundaries
 * included, zero elsewhere; a value bound gets the sum of `dy` where `x` is beyond it.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { clip } from "./select.ts";
 * const x = new Graph().input("x", "F32", ["batch", 4]);
 * const relu6 = clip(x, 0, 6);
 * const capped = clip(x, undefined, 1);
 * ```
 */
export function clip(x: Value, min?: Operand, max?: Operand): Value {
  if (typeof min === "number" && typeof max === "number" && min > max) {
    throw new RangeError(`Invalid Clip bounds: min ${min} is greater than max ${max}`);
  }
  const lo = clipBound(x, min, "min");
  const hi = clipBound(x, max, "max");
  const inputs = hi ? [x, lo, hi] : lo ? [x, lo] : [x];
  return x.graph.node("Clip", inputs, {}, [{ dtype: x.dtype, shape: x.shape }])[0]!;
}

// saved for backward: x and the bounds (the masks min <= x <= max)
const clipVjp: Vjp = ({ node, dy: [dy], needs }) => {
  const [x, lo, hi] = node.inputs;
  let dx: Value | null = null;
  if (needs[0]) {
    const above = lo ? greaterOrEqual(x!, lo) : null;
    const below = hi ? lessOrEqual(x!, hi) : null;
    const inside = above && below ? logicalAnd(above, below) : above ?? below;
    dx = inside ? where(inside, dy!, 0) : dy!;
  }
  return [
    dx,
    needs[1] && lo ? unbroadcast(where(less(x!, lo), dy!, 0), lo) : null,
    needs[2] && hi ? unbroadcast(where(greater(x!, hi), dy!, 0), hi) : null,
  ];
};

/** Gradient rules of this family. */
export const VJPS: Record<string, Vjp> = {
  Where: whereVjp,
  Clip: clipVjp,
  Greater: none,
  Less: none,
  Equal: none,
  GreaterOrEqual: none,
  LessOrEqual: none,
  Not: none,
  And: none,
  Or: none,
};
