/**
 * `detach(x)`: the value of `x` with no gradient flowing back through it (PyTorch's `.detach()`).
 * ONNX has no such op: it is emitted as `Identity`, and the autograd stops at values marked here.
 *
 * @module
 */

import type { Value } from "../graph.ts";

const stopped = new WeakSet<Value>();

/** Whether the autograd must treat `v` as a constant. */
export function isDetached(v: Value): boolean {
  return stopped.has(v);
}

/**
 * A copy of `x` that the autograd treats as a constant.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { detach } from "./detach.ts";
 * const g = new Graph();
 * const n = detach(g.input("x", "F32", [3]));
 * ```
 */
export function detach(x: Value): Value {
  const y = x.graph.node("Identity", [x], {}, [{ dtype: x.dtype, shape: x.shape }])[0]!;
  stopped.add(y);
  return y;
}
