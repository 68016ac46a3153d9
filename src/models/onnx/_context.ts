/**
 * The contract between the importer and the op handlers of `op_map.ts`.
 *
 * @module
 */

import type { NodeProto } from "../../onnx/gen/onnx_pb.ts";
import type { Graph, Shape, Value } from "../../engine/graph.ts";
import type { DType, Tensor } from "../../tensor.ts";
import type { Folded } from "./_fold.ts";

/** A float constant known at import (a `Constant` node's tensor), materialized on first use. */
export interface ConstantResult {
  readonly constant: Tensor;
}

/**
 * What an op handler returns per output: a graph value, a folded integer tensor, a float constant,
 * or nothing (an optional output it does not produce).
 */
export type OpResult = Value | Folded | ConstantResult | null;

/** What an op handler sees of the node it imports. */
export interface OpContext {
  readonly g: Graph;
  readonly node: NodeProto;
  /** Version of the node's domain in the model's opset imports. */
  readonly opset: number;
  /** Number of inputs, counting omitted optional ones (empty names). */
  readonly inputCount: number;
  /** Whether input `i` is given. */
  has(i: number): boolean;
  /** Input `i` as a graph value (folded constants become initializers). */
  value(i: number): Value;
  /** Input `i` folded at import (integer constants and shape computations), if it is. */
  folded(i: number): Folded | undefined;
  /** Input `i` as a constant tensor in its storage dtype (initializers, Constant nodes). */
  constant(i: number): Tensor | undefined;
  /** Input `i` as constant integers, failing with the input's role when it is not constant. */
  ints(i: number, role: string): number[];
  /** Input `i` as a constant number (a scalar or one-element tensor), if it is constant. */
  scalar(i: number): number | undefined;
  /** Shape of input `i`, folded or not. */
  shape(i: number): Shape;
  /** Dtype of input `i`, folded or not. */
  dtype(i: number): DType;
  /** Records a note on the model (an approximation made while importing). */
  note(message: string): void;
  /** Throws a `TypeError` naming the file and node. */
  fail(why: string): never;
}

/** Imports one node; returns one result per node output. */
export type OpHandler = (ctx: OpContext) => OpResult[];

/** Compute dtype of a storage dtype: half precision computes in float32. */
export function computeDtype(d: DType): DType {
  return d === "F16" || d === "BF16" ? "F32" : d;
}
