/**
 * Element-wise arithmetic with numpy broadcasting: Add, Sub, Mul, Div, Neg, Pow, Exp, Log, Sqrt,
 * Reciprocal, Abs. Each gradient of a broadcast operand is summed back to that operand's shape.
 *
 * @module
 */

import type { Value } from "../graph.ts";
import { assertFloat, assertSameDtype, broadcastShapes } from "../shapes.ts";
import { inputsOf, outputOf, type Vjp } from "../vjp.ts";
import { scalar } from "./constant.ts";
import { unbroadcast } from "./shape.ts";

/** A value, or a number that becomes a scalar constant of the other operand's dtype. */
export type Operand = Value | number;

/**
 * The two operands of a binary op as values of one graph: a number becomes a rank-0 constant of
 * the other operand's dtype. Two numbers fail, naming `op`.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { liftOperands } from "./elementwise.ts";
 * const x = new Graph().input("x", "F64", [3]);
 * const [a, b] = liftOperands(x, 2, "Mul"); // b is an F64 scalar constant
 * ```
 */
export function liftOperands(a: Operand, b: Operand, op: string): [Value, Value] {
  if (typeof a === "number" && typeof b === "number") {
    throw new TypeError(`Cannot apply ${op} to two numbers: one operand must be a graph value`);
  }
  const g = typeof a === "number" ? (b as Value).graph : a.graph;
  const va = typeof a === "number" ? scalar(g, a, (b as Value).dtype) : a;
  const vb = typeof b === "number" ? scalar(g, b, va.dtype) : b;
  return [va, vb];
}

function binary(op: string, a: Operand, b: Operand): Value {
  const [va, vb] = liftOperands(a, b, op);
  assertSameDtype(op, va, vb);
  const shape = broadcastShapes(op, va.shape, vb.shape);
  return va.graph.node(op, [va, vb], {}, [{ dtype: va.dtype, shape }])[0]!;
}

function unary(op: string, x: Value): Value {
  return x.graph.node(op, [x], {}, [{ dtype: x.dtype, shape: x.shape }])[0]!;
}

/**
 * `a + b` with broadcasting.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { add } from "./elementwise.ts";
 * const g = new Graph();
 * const y = add(g.input("x", "F32", ["batch", 4]), g.input("b", "F32", [4])); // [batch, 4]
 * ```
 */
export const add = (a: Operand, b: Operand): Value => binary("Add", a, b);

const addVjp: Vjp = ({ node, dy: [dy], needs }) => {
  const [a, b] = inputsOf(node);
  return [needs[0] ? unbroadcast(dy!, a!) : null, needs[1] ? unbroadcast(dy!, b!) : null];
};

/**
 * `a - b` with broadcasting.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { sub } from "./elementwise.ts";
 * const y = sub(1, new Graph().input("p", "F32", [3])); // 1 - p
 * ```
 */
export const sub = (a: Operand, b: Operand): Value => binary("Sub", a, b);

const subVjp: Vjp = ({ node, dy: [dy], needs }) => {
  const [a, b] = inputsOf(node);
  return [needs[0] ? unbroadcast(dy!, a!) : null, needs[1] ? unbroadcast(neg(dy!), b!) : null];
};

/**
 * `a * b` with broadcasting.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { mul } from "./elementwise.ts";
 * const y = mul(new Graph().input("x", "F32", [2, 3]), 0.5);
 * ```
 */
export const mul = (a: Operand, b: Operand): Value => binary("Mul", a, b);

const mulVjp: Vjp = ({ node, dy: [dy], needs }) => {
  const [a, b] = inputsOf(node);
  return [
    needs[0] ? unbroadcast(mul(dy!, b!), a!) : null,
    needs[1] ? unbroadcast(mul(dy!, a!), b!) : null,
  ];
};

/**
 * `a / b` with broadcasting.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { div } from "./elementwise.ts";
 * const g = new Graph();
 * const y = div(g.input("x", "F32", [2, 3]), g.input("s", "F32", [2, 1]));
 * ```
 */
export const div = (a: Operand, b: Operand): Value => binary("Div", a, b);

const divVjp: Vjp = ({ node, dy: [dy], needs }) => {
  // saved for backward: b and the output y = a / b, so dB = -dy · y / b
  const [a, b] = inputsOf(node);
  const y = outputOf(node);
  return [
    needs[0] ? unbroadcast(div(dy!, b!), a!) : null,
    needs[1] ? unbroadcast(neg(div(mul(dy!, y), b!)), b!) : null,
  ];
};

/**
 * `a ** b` with broadcasting. The gradient for `b` is `a^b · ln a`, defined for `a > 0`.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { pow } from "./elementwise.ts";
 * const sq = pow(new Graph().input("x", "F32", [3]), 2);
 * ```
 */
export function pow(a: Operand, b: Operand): Value {
  return binary("Pow", a, b);
}

const powVjp: Vjp = ({ node, dy: [dy], needs }) => {
  // saved for backward: a, b and y = a^b
  // dA = dy · b · a^(b-1); dB = dy · a^b · ln a (defined for a > 0)
  const [a, b] = inputsOf(node);
  const y = outputOf(node);
  return [
    needs[0] ? unbroadcast(mul(dy!, mul(b!, pow(a!, sub(b!, 1)))), a!) : null,
    needs[1] ? unbroadcast(mul(dy!, mul(y, log(a!))), b!) : null,
  ];
};

/**
 * `-x`.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { neg } from "./elementwise.ts";
 * const y = neg(new Graph().input("x", "F32", [3]));
 * ```
 */
export const neg = (x: Value): Value => unary("Neg", x);

const negVjp: Vjp = ({ dy: [dy] }) => [neg(dy!)];

/**
 * `e^x`.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { exp } from "./elementwise.ts";
 * const y = exp(new Graph().input("x", "F32", [3]));
 * ```
 */
export const exp = (x: Value): Value => (assertFloat("Exp", x), unary("Exp", x));

const expVjp: Vjp = ({ node, dy: [dy] }) => [mul(dy!, outputOf(node))];

/**
 * Natural logarithm.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { log } from "./elementwise.ts";
 * const y = log(new Graph().input("x", "F32", [3]));
 * ```
 */
export const log = (x: Value): Value => (assertFloat("Log", x), unary("Log", x));

const logVjp: Vjp = ({ node, dy: [dy] }) => [div(dy!, inputsOf(node)[0]!)];

/**
 * Square root.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { sqrt } from "./elementwise.ts";
 * const y = sqrt(new Graph().input("x", "F32", [3]));
 * ```
 */
export const sqrt = (x: Value): Value => (assertFloat("Sqrt", x), unary("Sqrt", x));

const sqrtVjp: Vjp = ({ node, dy: [dy] }) => [div(dy!, mul(outputOf(node), 2))];

/**
 * `1 / x`.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { reciprocal } from "./elementwise.ts";
 * const y = reciprocal(new Graph().input("x", "F32", [3]));
 * ```
 */
export const reciprocal = (x: Value): Value => unary("Reciprocal", x);

const reciprocalVjp: Vjp = ({ node, dy: [dy] }) => {
  const y = outputOf(node);
  return [neg(mul(dy!, mul(y, y)))];
};

/**
 * `|x|`; its gradient at 0 is 0 (`sign(0)`), as in PyTorch.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { abs } from "./elementwise.ts";
 * const y = abs(new Graph().input("x", "F32", [3]));
 * ```
 */
export const abs = (x: Value): Value => unary("Abs", x);

const absVjp: Vjp = ({ node, dy: [dy] }) => [mul(dy!, sign(inputsOf(node)[0]!))];

/**
 * Sign of x (-1, 0, 1); no gradient.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { sign } from "./elementwise.ts";
 * const s = sign(new Graph().input("x", "F32", [3]));
 * ```
 */
export const sign = (x: Value): Value => unary("Sign", x);

const signVjp: Vjp = () => [null];

/** Gradient rules of this family. */
export const VJPS: Record<string, Vjp> = {
  Add: addVjp,
  Sub: subVjp,
  Mul: mulVjp,
  Div: divVjp,
  Neg: negVjp,
  Pow: powVjp,
  Exp: expVjp,
  Log: logVjp,
  Sqrt: sqrtVjp,
  Reciprocal: reciprocalVjp,
  Abs: absVjp,
  Sign: signVjp,
};
