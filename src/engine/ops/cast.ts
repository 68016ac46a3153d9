/**
 * Cast between dtypes, and the ONNX `TensorProto.DataType` codes of ffwd's dtypes. The gradient
 * of a cast is the gradient cast back to the input's dtype (none for non-float inputs). The
 * float64 twin retargets casts to F32 into casts to F64 (see `emit.ts`).
 *
 * @module
 */

import type { DType } from "../../tensor.ts";
import { int, type Value } from "../graph.ts";
import type { Vjp } from "../vjp.ts";

const ONNX_DTYPE: Partial<Record<DType, number>> = {
  F32: 1,
  U8: 2,
  I8: 3,
  U16: 4,
  I16: 5,
  I32: 6,
  I64: 7,
  BOOL: 9,
  F16: 10,
  F64: 11,
  U32: 12,
  U64: 13,
  BF16: 16,
};

/**
 * ONNX `TensorProto.DataType` code of a dtype.
 *
 * @example
 * ```ts
 * import { onnxDtype } from "./cast.ts";
 * onnxDtype("F16"); // 10
 * ```
 */
export function onnxDtype(dtype: DType): number {
  const code = ONNX_DTYPE[dtype];
  if (code === undefined) throw new TypeError(`Cannot represent dtype ${dtype} in ONNX`);
  return code;
}

/**
 * The dtype of an ONNX `TensorProto.DataType` code.
 *
 * @example
 * ```ts
 * import { dtypeOfOnnx } from "./cast.ts";
 * dtypeOfOnnx(1); // "F32"
 * ```
 */
export function dtypeOfOnnx(code: number): DType {
  for (const [k, v] of Object.entries(ONNX_DTYPE)) if (v === code) return k as DType;
  if (code === 17) return "F8_E4M3";
  if (code === 19) return "F8_E5M2";
  throw new TypeError(`Unsupported ONNX data type ${code}`);
}

/**
 * Converts `x` to `dtype` (no node when it already has it). The gradient is cast back to the
 * input's dtype; non-float inputs get none.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { cast } from "./cast.ts";
 * const w = cast(new Graph().input("w", "F32", [4, 4]), "F16");
 * ```
 */
export function cast(x: Value, dtype: DType): Value {
  if (x.dtype === dtype) return x;
  return x.graph.node("Cast", [x], { to: int(onnxDtype(dtype)) }, [{ dtype, shape: x.shape }])[0]!;
}

const isFloatDtype = (d: DType) => d === "F32" || d === "F64" || d === "F16" || d === "BF16";

const castVjp: Vjp = ({ node, dy: [dy] }) => {
  const x = node.inputs[0]!;
  return [isFloatDtype(x.dtype) ? cast(dy!, x.dtype) : null];
};

/** Gradient rules of this family. */
export const VJPS: Record<string, Vjp> = {
  Cast: castVjp,
};
