/**
 * `detach(x)`: the value of `x` with no gradient flowing back through it (PyTorch's `.detach()`).
 * ONNX has no such op: it is emitted as `Identity` whose output is marked `detached`, and the
 * autograd stops at values so marked.
 *
 * @module
 */

import type { Value } from "../graph.ts";

/**
 * A copy of `x` that the autograd treats as a constant.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { Graph } from "../graph.ts";
 * import { detach } from "./detach.ts";
 * const g = new Graph();
 * const n = detach(g.input("x", "F32", [3]));
 * strictEqual(n.detached, true);
 * ```
 */
export function detach(x: Value): Value {
  return x.graph.node("Identity", [x], {}, [{
    dtype: x.dtype,
    shape: x.shape,
    detached: true,
  }])[0]!;
}
