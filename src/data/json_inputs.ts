/**
 * Model inputs given as JSON values, one row at a time, read into tensors `[rows, …]`: what the
 * named inputs of a data file (`{"inputs": {"input_ids": [...]}}`, `_named.ts`) and the rows of
 * `POST /v1/predict` (`src/infer/_request.ts`) share. Each input takes the model input's dtype
 * (token ids stay integers) and row shape: fixed dimensions as the model declares them, symbolic
 * ones (a sequence length) from the first row, which every later row must match. A value is
 * nested to the row's shape or flat (a number for a row shape `[]`).
 *
 * Errors name the value as the caller calls it (`inputs[3].input_ids`, `row 2, inputs.ids`), the
 * input and both shapes: `inputs[3].input_ids has 5 values, expected 7 as in inputs[0].input_ids
 * (input "input_ids": I64 [batch, seq])`. A wrong type or shape is a TypeError; a number the input
 * cannot hold (`1e999` parses to Infinity, 300 for U8) is a RangeError.
 *
 * @module
 */

import type { Dim } from "../engine/graph.ts";
import { allocData, formatShape, isFloat, numel, type Tensor, type TensorData } from "../tensor.ts";
import { type InputSpec, nestedShape } from "./feeds.ts";

/** `input "ids": I64 [batch, seq]`, as messages name an input. */
function describeInput(s: InputSpec): string {
  return `input "${s.name}": ${s.dtype} ${formatShape(s.shape)}`;
}

/** Options of {@linkcode InputColumn}. */
export interface InputColumnOptions {
  /** Rows to make room for at the first row (more are made as they come). Default 1. */
  readonly rows?: number;
  /** Makes the array of `n` elements of `dtype` that rows are written into (default `allocData`). */
  readonly alloc?: (dtype: Tensor["dtype"], n: number) => TensorData;
}

/**
 * One model input's values over rows given as JSON, written straight into a typed array of the
 * input's dtype (grown as rows come when `rows` is short).
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { InputColumn } from "./json_inputs.ts";
 * const ids = new InputColumn({ name: "ids", dtype: "I64", shape: ["batch", "seq"] }, { rows: 2 });
 * ids.add(0, "inputs[0].ids", [5, 6, 7]); // the first row fixes seq = 3
 * ids.add(1, "inputs[1].ids", [8, 9, 10]);
 * deepStrictEqual(ids.tensor(2), {
 *   dtype: "I64",
 *   shape: [2, 3],
 *   data: new BigInt64Array([5n, 6n, 7n, 8n, 9n, 10n]),
 * });
 * ```
 */
export class InputColumn {
  /** The row shape, fixed by the first row. */
  shape: number[] | undefined;
  /** What the first row's value was called (`inputs[0].ids`), for messages. */
  first = "";
  #data: TensorData | undefined;
  #per = 0;
  #capacity: number;
  readonly #alloc: (dtype: Tensor["dtype"], n: number) => TensorData;

  /** Reads values of the model input `spec`. */
  constructor(readonly spec: InputSpec, opts: InputColumnOptions = {}) {
    if (spec.dtype === "F16" || spec.dtype === "BF16") {
      throw new TypeError(
        `Cannot read ${describeInput(spec)} from JSON: half-precision graph inputs take no JSON ` +
          `values (cast inside the graph)`,
      );
    }
    this.#capacity = Math.max(1, opts.rows ?? 1);
    this.#alloc = opts.alloc ?? allocData;
  }

  /** Writes row `row` from `value`, called `at` in messages (`inputs[3].input_ids`). */
  add(row: number, at: string, value: unknown): void {
    const got = nestedShape(value);
    if (!this.shape) {
      this.shape = this.#rowShape(at, got, value);
      this.first = at;
      this.#per = numel(this.shape);
      this.#data = this.#alloc(this.spec.dtype, this.#capacity * this.#per);
    } else if (!fits(got, this.shape)) {
      throw this.#mismatch(at, got, this.shape);
    }
    if (row >= this.#capacity) this.#grow(row + 1);
    const start = row * this.#per;
    if (Array.isArray(value) && got.length > 1) {
      return this.#walk(value, got, 0, start, at, []);
    }
    this.#leaves(Array.isArray(value) ? value : [value], start, at, []); // flat, or a number
  }

  /** The first `rows` rows, `[rows, …shape]` (the column's own array when it holds just them). */
  tensor(rows: number): Tensor {
    const n = rows * this.#per;
    const data = this.#data ?? allocData(this.spec.dtype, 0);
    return {
      dtype: this.spec.dtype,
      shape: [rows, ...(this.shape ?? [])],
      data: data.length === n ? data : data.slice(0, n),
    } as Tensor;
  }

  #grow(rows: number): void {
    this.#capacity = Math.max(rows, 2 * this.#capacity);
    const data = this.#alloc(this.spec.dtype, this.#capacity * this.#per);
    (data as Float32Array).set(this.#data as Float32Array); // same dtype on both sides
    this.#data = data;
  }

  /** The first row's shape: fixed dimensions from the model, symbolic ones from the value. */
  #rowShape(at: string, got: number[], value: unknown): number[] {
    const want = this.spec.shape.slice(1);
    const fixed = want.filter((d): d is number => typeof d === "number");
    if (got.length === want.length && want.every((d, i) => typeof d !== "number" || d === got[i])) {
      return got;
    }
    const n = Array.isArray(value) && got.length === 1 ? got[0]! : -1;
    const free = want.length - fixed.length;
    if (n >= 0 && free === 0 && numel(fixed) === n) return fixed;
    if (n >= 0 && free === 1 && n % numel(fixed) === 0) {
      return want.map((d) => (typeof d === "number" ? d : n / numel(fixed)));
    }
    throw this.#mismatch(at, got, want);
  }

  #mismatch(at: string, got: readonly number[], want: readonly Dim[]): TypeError {
    const symbolic = this.spec.shape.slice(1).some((d) => typeof d === "string");
    const like = symbolic && this.first ? ` as in ${this.first}` : "";
    const fixed = want.every((d) => typeof d === "number");
    const expected = fixed ? numel(want as number[]) : formatShape(want);
    return new TypeError(
      got.length === 1 && (fixed || want.length > 1)
        ? `${at} has ${got[0]} values, expected ${expected}${like} (${describeInput(this.spec)})`
        : `${at} has shape ${formatShape(got)}, expected ${formatShape(want)}${like} (${
          describeInput(this.spec)
        })`,
    );
  }

  /** Writes a regular nested array (ragged ones fail naming the sub-array). */
  #walk(v: unknown[], dims: number[], depth: number, at: number, path: string, idx: number[]) {
    if (v.length !== dims[depth]) {
      throw new TypeError(
        `${path}${index(idx)} has ${v.length} values, expected ${dims[depth]} (the rows are ` +
          `ragged; ${describeInput(this.spec)})`,
      );
    }
    const inner = numel(dims.slice(depth + 1));
    for (let i = 0; i < v.length; i++) {
      const e = v[i];
      if (depth + 1 < dims.length) {
        if (!Array.isArray(e)) throw new TypeError(`${path}${index([...idx, i])} is not an array`);
        if (depth + 2 < dims.length || e.length !== dims[depth + 1]) { // (#walk names the row)
          this.#walk(e, dims, depth + 1, at + i * inner, path, [...idx, i]);
        } else this.#leaves(e, at + i * inner, path, [...idx, i]);
      } else this.#put(at + i, e, path, [...idx, i]);
    }
  }

  /** Writes the numbers `values` from element `at` on (a float column takes them as they are). */
  #leaves(values: readonly unknown[], at: number, path: string, idx: number[]): void {
    const data = this.#data!;
    if (data instanceof Float32Array || data instanceof Float64Array) {
      for (let i = 0; i < values.length; i++) {
        const v = values[i];
        if (typeof v !== "number" || !Number.isFinite(v)) {
          return this.#put(at + i, v, path, [...idx, i]); // throws
        }
        data[at + i] = v;
      }
      return;
    }
    for (let i = 0; i < values.length; i++) this.#put(at + i, values[i], path, [...idx, i]);
  }

  #put(k: number, v: unknown, path: string, idx: number[]): void {
    const { dtype } = this.spec;
    const where = () => `${path}${index(idx)}`;
    if (dtype === "BOOL" && typeof v === "boolean") v = v ? 1 : 0;
    if (typeof v !== "number") {
      throw new TypeError(
        `${where()} is ${JSON.stringify(v)}, not a number (${describeInput(this.spec)})`,
      );
    }
    if (!Number.isFinite(v)) {
      throw new RangeError(`${where()} is ${v}, expected a finite number`);
    }
    if (!isFloat(dtype) && !Number.isInteger(v)) {
      throw new TypeError(`${where()} is ${v}, expected an integer (${describeInput(this.spec)})`);
    }
    const data = this.#data!;
    if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
      data[k] = BigInt(v); // throws a RangeError only for non-integers, ruled out above
      if (data[k] !== BigInt(v)) throw outOfRange(where(), v, this.spec);
      return;
    }
    const typed = data as Float32Array;
    typed[k] = v;
    if (!isFloat(dtype) && (typed[k] !== v || (dtype === "BOOL" && v > 1))) {
      throw outOfRange(where(), v, this.spec);
    }
  }
}

const index = (idx: readonly number[]) => idx.map((i) => `[${i}]`).join("");

function outOfRange(where: string, v: number, s: InputSpec): RangeError {
  return new RangeError(`${where} is ${v}, out of range for ${describeInput(s)}`);
}

/** Whether a value of nested shape `got` holds one row of `shape` (nested to it, or flat). */
function fits(got: readonly number[], shape: readonly number[]): boolean {
  if (got.length === shape.length && got.every((d, i) => d === shape[i])) return true;
  return got.length === 1 && got[0] === numel(shape);
}

/**
 * Checks that symbolic dimensions shared by several inputs (`seq` of `input_ids` and
 * `attention_mask`) agree in the first row; a TypeError names both.
 *
 * @example
 * ```ts
 * import { throws } from "node:assert/strict";
 * import { InputColumn, sameSymbols } from "./json_inputs.ts";
 * const spec = (name: string) => ({ name, dtype: "I64" as const, shape: ["batch", "seq"] });
 * const ids = new InputColumn(spec("ids")), mask = new InputColumn(spec("mask"));
 * ids.add(0, "inputs[0].ids", [1, 2, 3]);
 * mask.add(0, "inputs[0].mask", [1, 1]);
 * throws(() => sameSymbols([ids, mask]), /inputs\[0\]\.mask has seq = 2/);
 * ```
 */
export function sameSymbols(columns: readonly InputColumn[]): void {
  const seen = new Map<string, { column: InputColumn; size: number }>();
  for (const c of columns) {
    c.spec.shape.slice(1).forEach((d, i) => {
      if (typeof d !== "string" || !c.shape) return;
      const size = c.shape[i]!;
      const other = seen.get(d);
      if (!other) return void seen.set(d, { column: c, size });
      if (other.size !== size) {
        throw new TypeError(
          `${c.first} has ${d} = ${size} (shape ${formatShape(c.shape)}), but ` +
            `${other.column.first} has ${d} = ${other.size}`,
        );
      }
    });
  }
}
