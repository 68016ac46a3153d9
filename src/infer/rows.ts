/**
 * Rows of tensors, the unit of serving: a batch is one tensor `[rows, …]` per model input, and the
 * output is `[rows, …]`. Rows are sliced (views, no copy), joined and padded along the first axis
 * whatever the dtype, and an output's rows become JSON values nested to the row's shape.
 *
 * @module
 */

import { allocData, formatShape, numel, type Tensor, type TensorData } from "../tensor.ts";

/** Element-type agnostic typed-array access (every typed array has these). */
interface Rowwise {
  readonly length: number;
  subarray(start: number, end: number): Rowwise & ArrayLike<number | bigint>;
  set(from: ArrayLike<unknown>, at: number): void;
}

const view = (data: TensorData) => data as unknown as Rowwise;

/**
 * Rows `start … start+count` of `t`, sharing its memory.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { sliceRows } from "./rows.ts";
 * const t = { dtype: "F32" as const, shape: [3, 2], data: new Float32Array([1, 2, 3, 4, 5, 6]) };
 * deepStrictEqual(sliceRows(t, 1, 2).data, new Float32Array([3, 4, 5, 6]));
 * ```
 */
export function sliceRows(t: Tensor, start: number, count: number): Tensor {
  const per = numel(t.shape.slice(1));
  const data = view(t.data).subarray(start * per, (start + count) * per) as unknown as TensorData;
  return { dtype: t.dtype, shape: [count, ...t.shape.slice(1)], data } as Tensor;
}

/** Options of {@linkcode concatRows}. */
export interface ConcatOptions {
  /**
   * An array to join the rows into, from its start, when it is the parts' kind of typed array and
   * has room for them (the result's data is then a view of it); otherwise a new array is made.
   */
  readonly into?: TensorData;
}

/**
 * Joins tensors along their first axis (one part is returned as it is). The parts must share
 * dtype and row shape.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { concatRows } from "./rows.ts";
 * const a = { dtype: "I64" as const, shape: [1, 2], data: new BigInt64Array([1n, 2n]) };
 * const b = { dtype: "I64" as const, shape: [2, 2], data: new BigInt64Array([3n, 4n, 5n, 6n]) };
 * deepStrictEqual(concatRows([a, b]).shape, [3, 2]);
 * const into = new BigInt64Array(8);
 * deepStrictEqual(concatRows([a, b], { into }).data.buffer, into.buffer); // no new array
 * ```
 */
export function concatRows(parts: readonly Tensor[], opts: ConcatOptions = {}): Tensor {
  if (parts.length === 1) return parts[0]!;
  const first = parts[0]!;
  const row = first.shape.slice(1);
  let rows = 0;
  for (const p of parts) {
    if (p.dtype !== first.dtype || !sameRow(p.shape, first.shape)) {
      throw new TypeError(
        `Cannot join rows of ${p.dtype} ${formatShape(p.shape)} to rows of ${first.dtype} ${
          formatShape(first.shape)
        }`,
      );
    }
    rows += p.shape[0]!;
  }
  const n = rows * numel(row);
  const { into } = opts;
  // The class decides, not a dtype: U8 and BOOL rows are both bytes
  const fits = into && into.length >= n && into.constructor === first.data.constructor;
  const data = fits
    ? view(into).subarray(0, n) as unknown as TensorData
    : allocData(first.dtype, n);
  let at = 0;
  for (const p of parts) {
    view(data).set(p.data as ArrayLike<unknown>, at);
    at += p.data.length;
  }
  return { dtype: first.dtype, shape: [rows, ...row], data } as Tensor;
}

/** Whether shapes `a` and `b` agree past their first dimension. */
function sameRow(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 1; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * `t` with its last row repeated until it has `rows` rows (`t` itself when it has them already).
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { padRows } from "./rows.ts";
 * const t = { dtype: "F32" as const, shape: [1, 2], data: new Float32Array([1, 2]) };
 * deepStrictEqual(padRows(t, 3).data, new Float32Array([1, 2, 1, 2, 1, 2]));
 * ```
 */
export function padRows(t: Tensor, rows: number): Tensor {
  const have = t.shape[0]!;
  if (have >= rows) return t;
  const per = numel(t.shape.slice(1));
  const data = allocData(t.dtype, rows * per);
  view(data).set(t.data as ArrayLike<unknown>, 0);
  const last = view(t.data).subarray((have - 1) * per, have * per);
  for (let r = have; r < rows; r++) view(data).set(last, r * per);
  return { dtype: t.dtype, shape: [rows, ...t.shape.slice(1)], data } as Tensor;
}

/**
 * Each row of `t` as a JSON value nested to the row's shape: a `[rows, k]` tensor gives rows of
 * `k` numbers, `[rows, 1, 32]` rows of one array of 32, `[rows]` a number a row. `leaf` turns
 * each element into a number (default `Number`: float32 widened exactly, int64 as a double).
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { rowValues } from "./rows.ts";
 * const t = { dtype: "F32" as const, shape: [2, 1, 2], data: new Float32Array([1, 2, 3, 4]) };
 * deepStrictEqual(rowValues(t), [[[1, 2]], [[3, 4]]]);
 * ```
 */
export function rowValues(
  t: Tensor,
  leaf: (v: number | bigint) => number = Number,
): unknown[] {
  const row = t.shape.slice(1);
  const per = numel(row);
  const data = view(t.data);
  const nest = (at: number, dims: readonly number[]): unknown => {
    if (dims.length <= 1) return Array.from(data.subarray(at, at + (dims[0] ?? 1)), leaf);
    const inner = numel(dims.slice(1));
    return Array.from({ length: dims[0]! }, (_, i) => nest(at + i * inner, dims.slice(1)));
  };
  return Array.from({ length: t.shape[0]! }, (_, r) => {
    const v = nest(r * per, row);
    return row.length === 0 ? (v as number[])[0] : v;
  });
}
