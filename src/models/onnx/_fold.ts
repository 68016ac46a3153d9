/**
 * Import-time folding of integer shape computations. Exporters compute reshape targets at run
 * time (PyTorch writes `x.view(x.size(0), -1)` as Shape → Gather → Unsqueeze → Concat → Reshape);
 * ffwd folds those chains while importing, so builders receive static targets and infer shapes.
 * Elements are dimensions: numbers, or the names of symbolic dimensions (`"batch"`), which pass
 * through Gather/Concat/Slice/Unsqueeze untouched.
 *
 * @module
 */

import type { Dim } from "../../engine/graph.ts";
import { normAxis } from "../../engine/shapes.ts";
import { sliceRange } from "../../engine/ops/slice.ts";
import { allocData, type DType, numel, type Tensor } from "../../tensor.ts";

/** An integer tensor known while importing; elements may be symbolic dimensions. */
export interface Folded {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: readonly Dim[];
}

const INT = new Set<DType>(["I64", "I32", "I16", "I8", "U8", "U16", "U32", "U64", "BOOL"]);

/** Whether a dtype is folded (integers and BOOL). */
export const isIntDtype = (d: DType): boolean => INT.has(d);

/** A folded tensor from host data of an integer dtype. */
export function foldedOf(t: Tensor): Folded {
  const data = Array.from(t.data as ArrayLike<number | bigint>, (v) => Number(v));
  return { dtype: t.dtype, shape: [...t.shape], data };
}

/** Whether every element is a number. */
export const isNumeric = (f: Folded): boolean => f.data.every((d) => typeof d === "number");

/** The host tensor of a numeric folded value. */
export function tensorOf(f: Folded): Tensor {
  const out = allocData(f.dtype, f.data.length);
  f.data.forEach((d, i) => {
    if (out instanceof BigInt64Array || out instanceof BigUint64Array) out[i] = BigInt(d as number);
    else out[i] = d as number;
  });
  return { dtype: f.dtype, shape: f.shape, data: out };
}

/** A rank-0 or rank-1 folded value of dtype I64. */
export const vector = (data: readonly Dim[], dtype: DType = "I64"): Folded => ({
  dtype,
  shape: [data.length],
  data,
});

/** Gather along `axis` of a folded value (rank ≤ 1 data, any indices). */
export function gather(data: Folded, indices: Folded, axis: number): Folded | undefined {
  if (data.shape.length !== 1 || normAxis("Gather", axis, 1) !== 0) return undefined;
  const n = data.shape[0]!;
  const out = indices.data.map((i) => {
    if (typeof i !== "number" || i < -n || i >= n) {
      throw new RangeError(`Invalid index ${i} in Gather of a ${n}-element shape`);
    }
    return data.data[i < 0 ? i + n : i]!;
  });
  return { dtype: data.dtype, shape: [...indices.shape], data: out };
}

/** Inserts size-1 axes (positions in the result). */
export function unsqueeze(x: Folded, axes: readonly number[]): Folded {
  const rank = x.shape.length + axes.length;
  const set = new Set(axes.map((a) => normAxis("Unsqueeze", a, rank)));
  const shape: number[] = [];
  for (let i = 0, j = 0; i < rank; i++) shape.push(set.has(i) ? 1 : x.shape[j++]!);
  return { ...x, shape };
}

/** Removes size-1 axes (all of them when `axes` is omitted). */
export function squeeze(x: Folded, axes?: readonly number[]): Folded {
  const set = new Set(
    axes?.map((a) => normAxis("Squeeze", a, x.shape.length)) ??
      x.shape.flatMap((d, i) => (d === 1 ? [i] : [])),
  );
  return { ...x, shape: x.shape.filter((_, i) => !set.has(i)) };
}

/** Concatenation of rank-1 folded values. */
export function concat(parts: readonly Folded[]): Folded | undefined {
  if (parts.some((p) => p.shape.length !== 1)) return undefined;
  const data = parts.flatMap((p) => p.data);
  return { dtype: parts[0]!.dtype, shape: [data.length], data };
}

/** Slice of a rank-1 folded value. */
export function slice1(x: Folded, start: number, end: number, step: number): Folded | undefined {
  if (x.shape.length !== 1 || step === 0) return undefined;
  const r = sliceRange(x.shape[0]!, start, end, step);
  const data: Dim[] = [];
  for (let k = 0, i = r.start; k < r.length; k++, i += step) data.push(x.data[i]!);
  return { dtype: x.dtype, shape: [data.length], data };
}

/** A reshaped folded value (ONNX Reshape rules for 0 and -1, numeric target). */
export function reshape(x: Folded, target: readonly number[]): Folded {
  const n = numel(x.shape);
  const shape = target.map((d, i) => (d === 0 ? x.shape[i]! : d));
  const known = shape.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const out = shape.map((d) => (d === -1 ? n / known : d));
  if (numel(out) !== n) {
    throw new TypeError(`Cannot reshape [${x.shape}] to [${target}]: sizes differ`);
  }
  return { ...x, shape: out };
}

/** Element-wise integer arithmetic with numpy broadcasting of rank ≤ 1 operands. */
export function arith(op: string, a: Folded, b: Folded): Folded | undefined {
  if (!isNumeric(a) || !isNumeric(b) || a.shape.length > 1 || b.shape.length > 1) {
    return undefined;
  }
  const n = Math.max(a.data.length, b.data.length);
  if (
    (a.data.length !== n && a.data.length !== 1) || (b.data.length !== n && b.data.length !== 1)
  ) {
    return undefined;
  }
  const f = ARITH[op];
  if (!f) return undefined;
  const data: number[] = [];
  for (let i = 0; i < n; i++) {
    data.push(
      f(
        a.data[a.data.length === 1 ? 0 : i] as number,
        b.data[b.data.length === 1 ? 0 : i] as number,
      ),
    );
  }
  const shape = a.shape.length >= b.shape.length ? a.shape : b.shape;
  return { dtype: a.dtype, shape: shape.length ? [n] : [], data };
}

const ARITH: Record<string, (x: number, y: number) => number> = {
  Add: (x, y) => x + y,
  Sub: (x, y) => x - y,
  Mul: (x, y) => x * y,
  Div: (x, y) => Math.trunc(x / y),
};
