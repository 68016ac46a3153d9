/**
 * Opset resolution for the emitter: the emitted default-domain opset is the larger of the one
 * asked for and the graph's `minOpset`, and the nodes whose form changed between opset 17 and
 * that opset are rewritten.
 *
 * The one form change that matters to ffwd's ops: the ONNX reductions other than ReduceSum take
 * `axes` as an attribute up to opset 17 and as an optional int64 input from opset 18 on (ONNX
 * Changelog, ReduceMean-18 and its siblings). ReduceSum made that change at opset 13.
 *
 * @module
 */

import type { Tensor } from "../tensor.ts";
import { type Attr, type Graph, ints, type Node, type Value } from "./graph.ts";

/** The opset ffwd writes unless a node needs a newer one. */
export const DEFAULT_OPSET = 17;

/** Reductions whose `axes` moved from an attribute to an input at opset 18. */
const AXES_INPUT_AT_18 = new Set([
  "ReduceL1",
  "ReduceL2",
  "ReduceLogSum",
  "ReduceLogSumExp",
  "ReduceMax",
  "ReduceMean",
  "ReduceMin",
  "ReduceProd",
  "ReduceSumSquare",
]);

/** The default-domain opset to emit: `max(requested ?? 17, graph.minOpset)`. */
export function resolveOpset(g: Graph, requested: number | undefined): number {
  const opset = Math.max(requested ?? DEFAULT_OPSET, g.minOpset);
  if (!Number.isInteger(opset) || opset < 13) {
    throw new RangeError(`Cannot emit opset ${requested}: ffwd writes opset 13 or later`);
  }
  return opset;
}

/** The lowest ONNX IR version that may import `opset` (ONNX `helper.VERSION_TABLE`). */
export function irVersionFor(opset: number): number {
  if (opset <= 18) return 8;
  if (opset <= 20) return 9;
  if (opset <= 22) return 10;
  return 11;
}

/** A node as written to the model: input names and attributes after opset rewriting. */
export interface NodeForm {
  readonly inputs: readonly string[];
  readonly attrs: Readonly<Record<string, Attr>>;
}

/** A small initializer the rewriting added (the `axes` of a reduction at opset 18+). */
export interface AddedTensor {
  readonly name: string;
  readonly tensor: Tensor;
}

/**
 * The form of `node` at `opset`. Reductions get their `axes` attribute turned into an int64
 * initializer (`added`) from opset 18 on, and their constant `axes` input turned back into an
 * attribute below 18.
 */
export function nodeForm(node: Node, opset: number, added: AddedTensor[]): NodeForm {
  const names = node.inputs.map((i) => i?.name ?? "");
  if (!AXES_INPUT_AT_18.has(node.op) || node.domain !== "") {
    return { inputs: names, attrs: node.attrs };
  }
  const { axes, ...rest } = node.attrs;
  if (opset >= 18 && axes) {
    if (axes.type !== "ints") throw new TypeError(`Invalid axes attribute in node ${node.name}`);
    const name = freeName(node.inputs[0]!.graph, `${node.name}.axes`, added);
    const data = BigInt64Array.from(axes.value, (a) => BigInt(a));
    added.push({ name, tensor: { dtype: "I64", shape: [data.length], data } });
    return { inputs: [names[0]!, name], attrs: rest };
  }
  const input = node.inputs[1];
  if (opset < 18 && input) {
    return { inputs: [names[0]!], attrs: { ...node.attrs, axes: ints(constantAxes(node, input)) } };
  }
  return { inputs: names, attrs: node.attrs };
}

function constantAxes(node: Node, axes: Value): number[] {
  const data = axes.graph.initializers.get(axes);
  if (!data || "kind" in data || axes.dtype !== "I64") {
    throw new RangeError(
      `Cannot emit ${node.op} (node ${node.name}) below opset 18: its axes "${axes.name}" are ` +
        `not a constant, and opset 17 needs them as an attribute`,
    );
  }
  return Array.from(data.data as BigInt64Array, Number);
}

/** `base`, or `base_1`, `base_2`… when the graph or `added` already uses it. */
export function freeName(g: Graph, base: string, added: readonly AddedTensor[]): string {
  let name = base;
  for (let i = 1; g.has(name) || added.some((a) => a.name === name); i++) name = `${base}_${i}`;
  return name;
}
