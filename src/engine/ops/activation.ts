/**
 * Activations.
 *
 * @module
 */

import type { Value } from "../graph.ts";
import { assertFloat } from "../shapes.ts";
import { inputsOf, type Vjp } from "../vjp.ts";
import { mul } from "./elementwise.ts";
import { cast } from "./shape.ts";

function unary(op: string, x: Value): Value {
  assertFloat(op, x);
  return x.graph.node(op, [x], {}, [{ dtype: x.dtype, shape: x.shape }])[0]!;
}

/** `max(x, 0)`. */
export const relu = (x: Value): Value => unary("Relu", x);

/** `x > 0` as a float mask of x's dtype. */
function positive(x: Value): Value {
  const zero = x.graph.constant({ dtype: "F32", shape: [], data: new Float32Array([0]) }, "zero");
  const gt = x.graph.node("Greater", [x, cast(zero, x.dtype)], {}, [{
    dtype: "BOOL",
    shape: x.shape,
  }])[0]!;
  return cast(gt, x.dtype);
}

/** Gradient rules of this family. */
export const VJPS: Record<string, Vjp> = {
  // saved for backward: x (the mask x > 0)
  Relu: ({ node, dy: [dy] }) => [mul(dy!, positive(inputsOf(node)[0]!))],
  Greater: ({ node }) => node.inputs.map(() => null),
};
