/**
 * Shape and layout ops whose gradients are data movement: Reshape, Transpose, Identity, Expand,
 * Unsqueeze, Squeeze, Flatten and Cast.
 *
 * @module
 */

import type { DType } from "../../tensor.ts";
import { type Dim, formatShape, int, ints, type Shape, type Value } from "../graph.ts";
import { broadcastShapes, knownSize, normAxis } from "../shapes.ts";
import { inputsOf, type Vjp } from "../vjp.ts";
import { int64s, shapeOf } from "./constant.ts";
import { unbroadcast } from "./reduce.ts";

/**
 * Reshapes `x` to `shape`. Symbolic dimensions are kept by position (ONNX `0`) or inferred
 * (`-1`); `-1` may also be given explicitly.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { reshape } from "./shape.ts";
 * const g = new Graph();
 * const y = reshape(g.input("x", "F32", ["batch", 2, 3]), ["batch", 6]);
 * ```
 */
export function reshape(x: Value, shape: readonly Dim[]): Value {
  const spec: number[] = [];
  const out: Dim[] = [];
  let inferred = -1;
  shape.forEach((d, i) => {
    if (typeof d === "number" && d >= 0) {
      spec.push(d);
      out.push(d);
    } else if (typeof d === "string" && x.shape[i] === d) {
      spec.push(0);
      out.push(d);
    } else {
      if (inferred >= 0) {
        throw new TypeError(
          `Cannot reshape ${formatShape(x.shape)} to ${
            formatShape(shape)
          }: more than one unknown dimension`,
        );
      }
      inferred = i;
      spec.push(-1);
      out.push(d === -1 ? "?" : d);
    }
  });
  const inSize = knownSize(x.shape);
  const known = knownSize(out.filter((_, i) => i !== inferred));
  if (inferred >= 0 && inSize !== undefined && known !== undefined) {
    if (known === 0 || inSize % known !== 0) {
      throw new TypeError(`Cannot reshape ${formatShape(x.shape)} to ${formatShape(shape)}`);
    }
    out[inferred] = inSize / known;
  } else if (inferred < 0 && inSize !== undefined && known !== undefined && inSize !== known) {
    throw new TypeError(
      `Cannot reshape ${formatShape(x.shape)} to ${formatShape(shape)}: sizes differ`,
    );
  } else if (inferred >= 0 && out[inferred] === "?") {
    out[inferred] = x.graph.freshName("dim");
  }
  return x.graph.node("Reshape", [x, int64s(x.graph, spec)], {}, [{
    dtype: x.dtype,
    shape: out,
  }])[0]!;
}

/** Reshapes `x` to a runtime shape (a 1-D int64 value) whose static form is `staticShape`. */
export function reshapeTo(x: Value, shape: Value, staticShape: Shape): Value {
  return x.graph.node("Reshape", [x, shape], {}, [{ dtype: x.dtype, shape: staticShape }])[0]!;
}

/** Permutes axes (reverses them when `perm` is omitted). */
export function transpose(x: Value, perm?: readonly number[]): Value {
  const p = perm ?? x.shape.map((_, i) => x.rank - 1 - i);
  if (
    p.length !== x.rank || new Set(p.map((a) => normAxis("Transpose", a, x.rank))).size !== x.rank
  ) {
    throw new TypeError(`Invalid perm [${p.join(", ")}] in Transpose of ${formatShape(x.shape)}`);
  }
  const shape = p.map((a) => x.shape[a]!);
  return x.graph.node("Transpose", [x], { perm: ints(p) }, [{ dtype: x.dtype, shape }])[0]!;
}

/** Swaps the last two axes. */
export function transposeLast2(x: Value): Value {
  const p = x.shape.map((_, i) => i);
  [p[x.rank - 2], p[x.rank - 1]] = [x.rank - 1, x.rank - 2];
  return transpose(x, p);
}

/** A copy of `x` (ONNX Identity), useful to give an output its own name. */
export function identity(x: Value, name?: string): Value {
  return x.graph.node("Identity", [x], {}, [{ dtype: x.dtype, shape: x.shape, name }])[0]!;
}

/** Broadcasts `x` to a runtime shape whose static form is `staticShape`. */
export function expand(x: Value, shape: Value, staticShape: Shape): Value {
  const out = broadcastShapes("Expand", x.shape, staticShape);
  return x.graph.node("Expand", [x, shape], {}, [{ dtype: x.dtype, shape: out }])[0]!;
}

/** Inserts size-1 axes at `axes` (positions in the result). */
export function unsqueeze(x: Value, axes: readonly number[]): Value {
  const rank = x.rank + axes.length;
  const set = new Set(axes.map((a) => normAxis("Unsqueeze", a, rank)));
  const out: Dim[] = [];
  let j = 0;
  for (let i = 0; i < rank; i++) out.push(set.has(i) ? 1 : x.shape[j++]!);
  return x.graph.node("Unsqueeze", [x, int64s(x.graph, [...set])], {}, [{
    dtype: x.dtype,
    shape: out,
  }])[0]!;
}

/** Removes size-1 axes at `axes`. */
export function squeeze(x: Value, axes: readonly number[]): Value {
  const set = new Set(axes.map((a) => normAxis("Squeeze", a, x.rank)));
  for (const a of set) {
    if (x.shape[a] !== 1) {
      throw new TypeError(`Cannot squeeze axis ${a} of ${formatShape(x.shape)}: its size is not 1`);
    }
  }
  const out = x.shape.filter((_, i) => !set.has(i));
  return x.graph.node("Squeeze", [x, int64s(x.graph, [...set])], {}, [{
    dtype: x.dtype,
    shape: out,
  }])[0]!;
}

/** Flattens to 2-D around `axis` (ONNX Flatten). */
export function flatten(x: Value, axis = 1): Value {
  const a = axis < 0 ? axis + x.rank : axis;
  const left = knownSize(x.shape.slice(0, a));
  const right = knownSize(x.shape.slice(a));
  const shape: Dim[] = [
    left ?? (a === 1 ? x.shape[0]! : x.graph.freshName("dim")),
    right ?? x.graph.freshName("dim"),
  ];
  return x.graph.node("Flatten", [x], { axis: int(axis) }, [{ dtype: x.dtype, shape }])[0]!;
}

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

/** ONNX `TensorProto.DataType` code of a dtype. */
export function onnxDtype(dtype: DType): number {
  const code = ONNX_DTYPE[dtype];
  if (code === undefined) throw new TypeError(`Cannot represent dtype ${dtype} in ONNX`);
  return code;
}

/** The dtype of an ONNX `TensorProto.DataType` code. */
export function dtypeOfOnnx(code: number): DType {
  for (const [k, v] of Object.entries(ONNX_DTYPE)) if (v === code) return k as DType;
  if (code === 17) return "F8_E4M3";
  if (code === 19) return "F8_E5M2";
  throw new TypeError(`Unsupported ONNX data type ${code}`);
}

/** Converts `x` to `dtype`. */
export function cast(x: Value, dtype: DType): Value {
  if (x.dtype === dtype) return x;
  return x.graph.node("Cast", [x], { to: int(onnxDtype(dtype)) }, [{ dtype, shape: x.shape }])[0]!;
}

const isFloatDtype = (d: DType) => d === "F32" || d === "F64" || d === "F16" || d === "BF16";
const back = (dy: Value, x: Value) => reshapeTo(dy, shapeOf(x), x.shape);

/** Gradient rules of this family. */
export const VJPS: Record<string, Vjp> = {
  Reshape: ({ node, dy: [dy] }) => [back(dy!, inputsOf(node)[0]!), null],
  Flatten: ({ node, dy: [dy] }) => [back(dy!, inputsOf(node)[0]!)],
  Unsqueeze: ({ node, dy: [dy] }) => [back(dy!, inputsOf(node)[0]!), null],
  Squeeze: ({ node, dy: [dy] }) => [back(dy!, node.inputs[0]!), null],
  Identity: ({ dy: [dy] }) => [dy!],
  Transpose: ({ node, dy: [dy] }) => {
    const perm = (node.attrs["perm"] as { value: number[] } | undefined)?.value ??
      node.inputs[0]!.shape.map((_, i, s) => s.length - 1 - i);
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    return [transpose(dy!, inv)];
  },
  Expand: ({ node, dy: [dy] }) => [unbroadcast(dy!, inputsOf(node)[0]!), null],
  Cast: ({ node, dy: [dy] }) => {
    const x = node.inputs[0]!;
    return [isFloatDtype(x.dtype) ? cast(dy!, x.dtype) : null];
  },
};
