/**
 * Import-time folding of integer shape computations. Exporters compute reshape targets at run
 * time (PyTorch writes `x.view(x.size(0), -1)` as Shape → Gather → Unsqueeze → Concat → Reshape);
 * ffwd folds those chains while importing, so builders receive static targets and infer shapes.
 * Elements are dimensions: numbers, or the names of symbolic dimensions (`"batch"`), which pass
 * through Gather/Concat/Slice/Unsqueeze untouched.
 *
 * @module
 */

import type { Dim, Value } from "../../engine/graph.ts";
import { normAxis } from "../../engine/shapes.ts";
import { constantInts } from "../../engine/ops/constant.ts";
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

/** Gather along `axis` of a folded value (rank-1 data, known indices). */
export function gather(data: Folded, indices: Folded, axis: number): Folded | undefined {
  if (data.shape.length !== 1 || normAxis("Gather", axis, 1) !== 0) return undefined;
  const n = data.shape[0]!;
  if (!isNumeric(indices)) return undefined; // an index known only at run time
  const out = (indices.data as number[]).map((i) => {
    if (i < -n || i >= n) {
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

/**
 * Rank ≤ 1 operands broadcast together as numpy does: the common length, the result's shape and
 * the i-th element of an operand; `undefined` when they do not broadcast.
 */
function zipped(
  parts: readonly Folded[],
): { n: number; shape: number[]; at: (f: Folded, i: number) => Dim } | undefined {
  if (parts.some((f) => f.shape.length > 1)) return undefined;
  const n = Math.max(...parts.map((f) => f.data.length));
  if (parts.some((f) => f.data.length !== n && f.data.length !== 1)) return undefined;
  const shape = parts.some((f) => f.shape.length === 1) ? [n] : [];
  return { n, shape, at: (f, i) => f.data[f.data.length === 1 ? 0 : i]! };
}

/**
 * Element-wise integer arithmetic with numpy broadcasting of rank ≤ 1 operands. A symbolic
 * dimension passes through the identities (`seq + 0`, `seq · 1`, `seq / 1`); any other arithmetic
 * on one is computed at run time (`undefined`).
 */
export function arith(op: string, a: Folded, b: Folded): Folded | undefined {
  const z = zipped([a, b]);
  const f = ARITH[op];
  if (!z || !f) return undefined;
  const data: Dim[] = [];
  for (let i = 0; i < z.n; i++) {
    const [x, y] = [z.at(a, i), z.at(b, i)];
    if (typeof x === "number" && typeof y === "number") data.push(f(x, y));
    else if (typeof x === "string" && y === IDENTITY[op]) data.push(x);
    else if (typeof y === "string" && ((op === "Mul" && x === 1) || (op === "Add" && x === 0))) {
      data.push(y);
    } else return undefined;
  }
  return { dtype: a.dtype, shape: z.shape, data };
}

const ARITH: Record<string, (x: number, y: number) => number> = {
  Add: (x, y) => x + y,
  Sub: (x, y) => x - y,
  Mul: (x, y) => x * y,
  Div: (x, y) => Math.trunc(x / y),
};

/** The right operand that leaves a symbolic dimension unchanged. */
const IDENTITY: Record<string, number> = { Add: 0, Sub: 0, Mul: 1, Div: 1 };

/**
 * Element-wise `a == b` of rank ≤ 1 operands, as BOOL (0/1), when every pair is decided: two
 * numbers, one symbolic dimension twice, or a symbolic dimension (never negative) and a negative
 * number, as in PyTorch's `expand(-1)` export (`Where(Equal(size, -1), 1, size)`).
 */
export function equal(a: Folded, b: Folded): Folded | undefined {
  const z = zipped([a, b]);
  if (!z) return undefined;
  const data: number[] = [];
  for (let i = 0; i < z.n; i++) {
    const [x, y] = [z.at(a, i), z.at(b, i)];
    if (x === y) data.push(1);
    else if (typeof x === "number" && typeof y === "number") data.push(0);
    else if ((typeof x === "number" && x < 0) || (typeof y === "number" && y < 0)) data.push(0);
    else return undefined;
  }
  return { dtype: "BOOL", shape: z.shape, data };
}

/** Element-wise `cond ? a : b` of rank ≤ 1 operands with a numeric `cond`. */
export function where(cond: Folded, a: Folded, b: Folded): Folded | undefined {
  const z = isNumeric(cond) ? zipped([cond, a, b]) : undefined;
  if (!z) return undefined;
  const data = Array.from({ length: z.n }, (_, i) => (z.at(cond, i) ? z.at(a, i) : z.at(b, i)));
  return { dtype: a.dtype, shape: z.shape, data };
}

/**
 * What the import knows of a 1-D integer value computed at run time, a shape the folding could not
 * finish (`[batch · seq, 768]`): each element's size or symbolic dimension where the nodes that
 * built it tell (constants, Shape with its `start` and `end`, Concat, Cast, Identity, Squeeze,
 * Unsqueeze, Reshape, Gather of known entries), `undefined` where only the run time knows.
 */
export function knownDims(v: Value): (Dim | undefined)[] {
  const n = v.rank === 0 ? 1 : v.shape[0];
  if (v.rank > 1 || typeof n !== "number") return [];
  const fromConstant = constantInts(v);
  if (fromConstant) return fromConstant;
  const unknown = new Array<Dim | undefined>(n).fill(undefined);
  const p = v.producer;
  const x = p?.inputs[0];
  if (!p || !x || p.domain !== "") return unknown;
  const same = (dims: (Dim | undefined)[]) => (dims.length === n ? dims : unknown);
  const attr = (name: string) => (p.attrs[name] as { value: number } | undefined)?.value;
  switch (p.op) {
    case "Shape": {
      const at = (a: number) => Math.max(0, Math.min(x.rank, a < 0 ? a + x.rank : a));
      return same(x.shape.slice(at(attr("start") ?? 0), at(attr("end") ?? x.rank)));
    }
    case "Concat":
      return same(p.inputs.flatMap((i) => (i ? knownDims(i) : [])));
    case "Cast":
    case "Identity":
    case "Squeeze":
    case "Unsqueeze":
    case "Reshape":
      return same(knownDims(x));
    case "Gather": {
      const at = p.inputs[1] ? constantInts(p.inputs[1]) : undefined;
      const dims = x.rank === 1 ? knownDims(x) : [];
      return at && dims.length ? same(at.map((i) => dims[i < 0 ? i + dims.length : i])) : unknown;
    }
  }
  return unknown;
}
