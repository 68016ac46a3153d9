/**
 * The contract between an op and reverse-mode autograd. A vector-Jacobian product does not compute
 * numbers: it emits the ONNX nodes of the backward pass, one gradient contribution per input it is
 * asked for (`needs[i]`), and `null` for the rest, so gradients nobody needs are never built.
 *
 * @module
 */

import type { Node, Value } from "./graph.ts";

/** What a VJP receives. */
export interface VjpContext {
  /** The forward node; its inputs and outputs are the values saved for backward. */
  readonly node: Node;
  /** Gradient of the loss with respect to each output of `node`; `null` where nothing flows. */
  readonly dy: readonly (Value | null)[];
  /** Which inputs need a gradient. */
  readonly needs: readonly boolean[];
}

/** Emits the backward nodes of one op application. */
export type Vjp = (ctx: VjpContext) => (Value | null)[];

/** Inputs of a node, asserting that they are present (ops with no optional inputs). */
export function inputsOf(node: Node): Value[] {
  return node.inputs.map((v, i) => {
    if (!v) throw new TypeError(`Node ${node.name} (${node.op}) has no input ${i}`);
    return v;
  });
}

/** The first output of a node. */
export function outputOf(node: Node): Value {
  return node.outputs[0]!;
}
