/**
 * Gather (ONNX Gather: slices of `data` along `axis`, picked by integer `indices`): embedding
 * lookups, and `hidden[:, 0]`, the [CLS] token a classifier head reads.
 *
 * The gradient of `data` is a scatter-add of the output gradient into zeros shaped like `data`
 * (ONNX ScatterND with `reduction = "add"`, opset 16): an index that appears twice receives both
 * contributions, as PyTorch's `embedding` and `index_select` backward do. Negative indices, which
 * Gather allows, are brought into range first. Indices get no gradient.
 *
 * @module
 */

import { int, str, type Value } from "../graph.ts";
import { normAxis } from "../shapes.ts";
import type { Vjp } from "../vjp.ts";
import { cast } from "./cast.ts";
import { constantInts, constantOfShape, dimOf, int64s, shapeOf } from "./constant.ts";
import { add } from "./elementwise.ts";
import { less, where } from "./select.ts";
import { squeeze, transpose, unsqueeze } from "./shape.ts";
import { attr } from "./_helpers.ts";

/**
 * `data` indexed along `axis` by `indices` (ONNX Gather): the result's shape is
 * `data.shape[:axis] + indices.shape + data.shape[axis + 1:]`, so a rank-0 index drops the axis.
 * Indices are I64 or I32, negative ones counting from the end.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { Graph } from "../graph.ts";
 * import { gather } from "./gather.ts";
 * import { scalar } from "./constant.ts";
 * const g = new Graph();
 * const table = g.input("embeddings", "F32", [100, 8]);
 * const x = gather(table, g.input("ids", "I64", ["batch", "seq"]));
 * const cls = gather(x, scalar(g, 0, "I64"), 1);
 * deepStrictEqual([x.shape, cls.shape], [["batch", "seq", 8], ["batch", 8]]);
 * ```
 */
export function gather(data: Value, indices: Value, axis = 0): Value {
  if (indices.dtype !== "I64" && indices.dtype !== "I32") {
    throw new TypeError(
      `Cannot apply Gather with indices "${indices.name}" of dtype ${indices.dtype}: expected I64 or I32`,
    );
  }
  if (data.rank === 0) throw new TypeError(`Cannot apply Gather to a scalar: data is ${data}`);
  const a = normAxis("Gather", axis, data.rank);
  const shape = [...data.shape.slice(0, a), ...indices.shape, ...data.shape.slice(a + 1)];
  return data.graph.node("Gather", [data, indices], { axis: int(a) }, [{
    dtype: data.dtype,
    shape,
  }])[0]!;
}

// saved for backward: indices and the shape of data (not its values)
const gatherVjp: Vjp = ({ node, dy: [dy], needs }) => {
  const [data, indices] = node.inputs as Value[];
  const axis = normAxis("Gather", attr(node, "axis", 0), data!.rank);
  return [needs[0] ? scatterAdd(dy!, data!, indices!, axis) : null, null];
};

const iota = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

/**
 * dData: zeros shaped like `data` with each slice of `dy` added at its index. ScatterND addresses
 * leading axes, so the gathered axis moves to the front (of the zeros, and of `dy`, whose index
 * axes come first) and back after the scatter.
 */
function scatterAdd(dy: Value, data: Value, indices: Value, a: number): Value {
  const g = data.graph;
  const q = indices.rank;
  const front = [a, ...iota(0, data.rank).filter((i) => i !== a)]; // data's axes, `a` first
  const frontShape = front.map((i) => data.shape[i]!);
  const moved = [...iota(a, a + q), ...iota(0, a), ...iota(a + q, dy.rank)];
  const still = moved.every((p, i) => p === i); // a rank-0 index, or axis 0
  const updates = still ? dy : transpose(dy, moved); // [...indices.shape, ...other axes of data]
  const sizes = frontShape.every((d) => typeof d === "number")
    ? int64s(g, frontShape as number[])
    : a === 0
    ? shapeOf(data)
    : gather(shapeOf(data), int64s(g, front));
  const zeros = constantOfShape(sizes, 0, dy.dtype, frontShape);
  const at = unsqueeze(inRange(indices, data, a), [q]); // [...indices.shape, 1]
  g.requireOpset(16); // ScatterND's reduction attribute
  const [summed] = g.node("ScatterND", [zeros, at, updates], { reduction: str("add") }, [{
    dtype: dy.dtype,
    shape: frontShape,
  }]);
  if (a === 0) return summed!;
  const back = new Array<number>(front.length);
  front.forEach((p, i) => (back[p] = i));
  return transpose(summed!, back);
}

/** The indices as I64 in [0, d): negative ones (allowed by Gather) get `d` added. */
function inRange(indices: Value, data: Value, a: number): Value {
  const idx = cast(indices, "I64");
  const known = constantInts(indices);
  if (known && known.every((i) => i >= 0)) return idx;
  const d = squeeze(dimOf(data, a), [0]); // I64 []
  return where(less(idx, 0), add(idx, d), idx);
}

/** Gradient rules of this family. */
export const VJPS: Record<string, Vjp> = {
  Gather: gatherVjp,
};
