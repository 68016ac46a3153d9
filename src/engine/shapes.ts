/**
 * Shape rules shared by the ops: numpy broadcasting over symbolic dimensions, axis normalisation,
 * the shape of a reduction, and the axes of the reduction that brings a broadcast gradient back to
 * its input's shape. Pure rules: nothing here builds a node.
 *
 * @module
 */

import { type Dim, formatShape, type Shape, type Value } from "./graph.ts";

/** Whether two dimensions are known to be equal. */
export function sameDim(a: Dim, b: Dim): boolean {
  return a === b;
}

/** Whether two shapes are known to be equal. */
export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * The numpy broadcast of two shapes. A symbolic dimension broadcasts with 1 and with itself; a
 * symbolic and a fixed size other than 1 cannot be proven compatible and fail.
 */
export function broadcastShapes(op: string, a: Shape, b: Shape): Dim[] {
  const n = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da === db || db === 1) out.push(da);
    else if (da === 1) out.push(db);
    else {
      throw new TypeError(
        `Cannot broadcast in ${op}: a is ${formatShape(a)}, b is ${formatShape(b)}`,
      );
    }
  }
  return out;
}

/** Normalises a possibly negative axis against a rank, naming the op when out of range. */
export function normAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) {
    throw new RangeError(`Invalid axis ${axis} in ${op} for a value of rank ${rank}`);
  }
  return a;
}

/**
 * The shape of a reduction of `x` over `axes` (possibly negative): without them, or with size 1
 * there when `keepdims`. Repeated axes fail, naming the op.
 */
export function reducedShape(
  op: string,
  x: Value,
  axes: readonly number[],
  keepdims: boolean,
): Dim[] {
  const set = new Set(axes.map((a) => normAxis(op, a, x.rank)));
  if (set.size !== axes.length) {
    throw new TypeError(`Invalid axes [${axes.join(", ")}] in ${op} of ${x}: axes repeat`);
  }
  const out: Dim[] = [];
  x.shape.forEach((d, i) => {
    if (!set.has(i)) out.push(d);
    else if (keepdims) out.push(1);
  });
  return out;
}

/**
 * Axes along which a value of shape `from` was broadcast to `to`: the leading axes it lacked
 * (`lead`) and the axes where it had size 1 and the result did not (`ones`, indices into `to`).
 */
export function broadcastAxes(from: Shape, to: Shape): { lead: number[]; ones: number[] } {
  const k = to.length - from.length;
  const lead = Array.from({ length: k }, (_, i) => i);
  const ones: number[] = [];
  from.forEach((d, i) => {
    if (d === 1 && to[k + i] !== 1) ones.push(k + i);
  });
  return { lead, ones };
}

/** Product of known dimensions, or undefined when a dimension is symbolic. */
export function knownSize(shape: Shape): number | undefined {
  let n = 1;
  for (const d of shape) {
    if (typeof d !== "number") return undefined;
    n *= d;
  }
  return n;
}

/** Asserts `v` is a floating-point value, naming the op. */
export function assertFloat(op: string, v: Value): void {
  if (v.dtype !== "F32" && v.dtype !== "F64" && v.dtype !== "F16" && v.dtype !== "BF16") {
    throw new TypeError(`Cannot apply ${op} to "${v.name}" of dtype ${v.dtype}: expected a float`);
  }
}

/** Asserts that two values share a dtype, naming the op. */
export function assertSameDtype(op: string, a: Value, b: Value): void {
  if (a.dtype !== b.dtype) {
    throw new TypeError(
      `Cannot apply ${op}: dtypes differ, a is ${a.dtype} ${a}, b is ${b.dtype} ${b}`,
    );
  }
}
