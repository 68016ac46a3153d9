/**
 * The table from ONNX op types to ffwd builders. Each entry reads the node the way its opset
 * wrote it (axes as attributes before opset 13 and as inputs after, Slice bounds as attributes
 * before 10, Clip bounds before 11, …) and calls the builders of `src/engine/ops/`, so shapes are
 * inferred and the autograd can differentiate the result.
 *
 * Compute dtype: FLOAT16 and BFLOAT16 values are computed in float32 (their initializers stay in
 * their storage dtype and are cast in the graph; onnxruntime folds the cast). A `Cast` to a half
 * type therefore becomes a cast to float32.
 *
 * The table is explicit: `math` (element-wise, activations, products, `com.microsoft` GELUs),
 * `shape` (layout and integer shape computations, folded at import when their inputs are known),
 * `nn` (normalization, reductions, softmax, dropout), `select` (Where, Clip, comparisons, Gather)
 * and `conv` (convolutions, pooling, Max/Min). Ops with no entry are carried as frozen context.
 *
 * @module
 */

import type { OpHandler } from "./_context.ts";
import { CONV_OPS } from "./_ops_conv.ts";
import { MATH_OPS } from "./_ops_math.ts";
import { NN_OPS } from "./_ops_nn.ts";
import { SELECT_OPS } from "./_ops_select.ts";
import { SHAPE_OPS } from "./_ops_shape.ts";

export { computeDtype } from "./_context.ts";
export type { OpContext, OpHandler, OpResult } from "./_context.ts";

/**
 * Every supported op, keyed `Op` (default domain) or `domain.Op`.
 *
 * @example
 * ```ts
 * import { OP_TABLE } from "./op_map.ts";
 * OP_TABLE.has("com.microsoft.FastGelu"); // true
 * ```
 */
export const OP_TABLE: ReadonlyMap<string, OpHandler> = new Map([
  ...Object.entries(MATH_OPS),
  ...Object.entries(SHAPE_OPS),
  ...Object.entries(NN_OPS),
  ...Object.entries(SELECT_OPS),
  ...Object.entries(CONV_OPS),
]);

/**
 * The supported ops, sorted, as `Op` or `domain.Op`.
 *
 * @example
 * ```ts
 * import { supportedOps } from "./op_map.ts";
 * supportedOps().includes("Gemm"); // true
 * ```
 */
export function supportedOps(): string[] {
  return [...OP_TABLE.keys()].sort();
}

/**
 * The handler of a node (`domain` is `""` for the default domain), or undefined.
 *
 * @example
 * ```ts
 * import { handlerOf } from "./op_map.ts";
 * handlerOf("", "Gemm") !== undefined; // true
 * handlerOf("ai.onnx.ml", "ZipMap"); // undefined: cut off before import
 * ```
 */
export function handlerOf(domain: string, op: string): OpHandler | undefined {
  return OP_TABLE.get(domain ? `${domain}.${op}` : op);
}
