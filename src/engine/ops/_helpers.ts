/**
 * Helpers shared by the op families (imported only by them). This file imports no op family, so
 * any family can use it without making a cycle.
 *
 * @module
 */

import type { Node, Value } from "../graph.ts";
import { normAxis } from "../shapes.ts";

/**
 * A numeric attribute of `node`, or `dflt` when the node omits it (as ONNX defaults do). VJPs
 * read their forward's attributes with it, whether ffwd built the node or an import did.
 */
export function attr(node: Node, name: string, dflt: number): number {
  return (node.attrs[name] as { value: number } | undefined)?.value ?? dflt;
}

/** Axes `from`..rank-1 of `x` (the normalized axes of a LayerNormalization at `axis`). */
export function trailingAxes(x: Value, axis: number): number[] {
  const a = normAxis("normalization", axis, x.rank);
  return Array.from({ length: x.rank - a }, (_, i) => a + i);
}

/** Axes 0..axis-1 of `x` (the axes a per-feature scale is broadcast over). */
export function leadingAxes(x: Value, axis: number): number[] {
  return Array.from({ length: normAxis("normalization", axis, x.rank) }, (_, i) => i);
}
