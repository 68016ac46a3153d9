/**
 * The rows of a `POST /v1/predict` body as tensors `[rows, …]` by model input. A row is an array
 * (the input of a one-input model: flat, or nested to the input's row shape) or an object of
 * inputs by graph input name (`{"input_ids": [...], "attention_mask": [...]}`; `"x"` stands for
 * the input of a one-input model). Each input takes the model's dtype (token ids stay integers)
 * and row shape: fixed dimensions as the model declares them, symbolic ones (a sequence length)
 * from the first row, which every other row of the request must match.
 *
 * Errors are 400s that name the row, the input and both shapes or dtypes: `inputs[3].input_ids
 * has 5 values, expected 7 as in inputs[0].input_ids (input "input_ids": I64 [batch, seq])`.
 *
 * Imported only by `server.ts`.
 *
 * @module
 */

import type { Dim } from "../engine/graph.ts";
import type { ModelIO } from "../models/model.ts";
import { allocData, formatShape, isFloat, numel, type Tensor, type TensorData } from "../tensor.ts";
import { HttpError } from "./_http.ts";
import { nestedShape } from "../data/feeds.ts";

/** Tensors `[rows, …]` by input name for the request's `rows`; throws 400 HttpErrors. */
export function requestFeeds(
  rows: readonly unknown[],
  inputs: readonly ModelIO[],
): Record<string, Tensor> {
  const columns = inputs.map((s) => new Column(s, rows.length));
  const one = inputs.length === 1;
  rows.forEach((row, i) => {
    const at = `inputs[${i}]`;
    if (Array.isArray(row) || typeof row === "number" || typeof row === "boolean") {
      if (!one) {
        throw bad(
          `${at} is an array, but the model has ${inputs.length} inputs: give each row as ` +
            `{${inputs.map((s) => `"${s.name}": [...]`).join(", ")}}`,
        );
      }
      return columns[0]!.add(i, at, row);
    }
    if (typeof row !== "object" || row === null) {
      throw bad(
        `${at} is ${JSON.stringify(row)}, expected an array or an object of inputs by name`,
      );
    }
    const named = row as Record<string, unknown>;
    for (const k of Object.keys(named)) {
      if (!inputs.some((s) => s.name === k) && !(one && k === "x")) {
        throw bad(`${at}.${k} is not an input of the model; its inputs: ${list(inputs)}`);
      }
    }
    columns.forEach((c) => {
      const name = c.spec.name;
      const value = name in named ? named[name] : one ? named["x"] : undefined;
      if (value === undefined) {
        throw bad(`${at} has no input "${name}"; the model's inputs: ${list(inputs)}`);
      }
      c.add(i, `${at}${one && !(name in named) ? ".x" : `.${name}`}`, value);
    });
    if (i === 0) sameSymbols(columns);
  });
  return Object.fromEntries(columns.map((c) => [c.spec.name, c.tensor()]));
}

const bad = (message: string) => new HttpError(400, message);

const describe = (s: ModelIO) => `input "${s.name}": ${s.dtype} ${formatShape(s.shape)}`;

const list = (inputs: readonly ModelIO[]) =>
  inputs.map((s) => `"${s.name}" ${s.dtype} ${formatShape(s.shape)}`).join(", ");

/** One input's values over the rows of a request. */
class Column {
  /** The row shape, fixed by the first row. */
  shape: number[] | undefined;
  #first = "";
  #data: TensorData | undefined;
  #per = 0;

  constructor(readonly spec: ModelIO, readonly rows: number) {
    if (spec.dtype === "F16" || spec.dtype === "BF16") {
      throw new HttpError(
        500,
        `Cannot take ${describe(spec)} from JSON: half-precision graph inputs are not served`,
      );
    }
  }

  add(row: number, at: string, value: unknown): void {
    const got = nestedShape(value);
    if (!this.shape) {
      this.shape = this.#rowShape(at, got, value);
      this.#first = at;
      this.#per = numel(this.shape);
      this.#data = allocData(this.spec.dtype, this.rows * this.#per);
    } else if (!fits(got, this.shape)) {
      throw this.#mismatch(at, got, this.shape);
    }
    const start = row * this.#per;
    if (Array.isArray(value) && got.length > 1) {
      return this.#walk(value, got, 0, start, at, []);
    }
    this.#leaves(Array.isArray(value) ? value : [value], start, at, []); // flat, or a scalar row
  }

  tensor(): Tensor {
    return {
      dtype: this.spec.dtype,
      shape: [this.rows, ...this.shape!],
      data: this.#data!,
    } as Tensor;
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

  #mismatch(at: string, got: readonly number[], want: readonly Dim[]): HttpError {
    const symbolic = this.spec.shape.slice(1).some((d) => typeof d === "string");
    const like = symbolic && this.#first ? ` as in ${this.#first}` : "";
    const fixed = want.every((d) => typeof d === "number");
    const expected = fixed ? numel(want as number[]) : formatShape(want);
    return bad(
      got.length === 1 && (fixed || want.length > 1)
        ? `${at} has ${got[0]} values, expected ${expected}${like} (${describe(this.spec)})`
        : `${at} has shape ${formatShape(got)}, expected ${formatShape(want)}${like} (${
          describe(this.spec)
        })`,
    );
  }

  /** Writes a regular nested array (ragged ones fail naming the sub-array). */
  #walk(v: unknown[], dims: number[], depth: number, at: number, path: string, idx: number[]) {
    if (v.length !== dims[depth]) {
      throw bad(
        `${path}${idx.map((i) => `[${i}]`).join("")} has ${v.length} values, expected ` +
          `${dims[depth]} (the rows are ragged; ${describe(this.spec)})`,
      );
    }
    const inner = numel(dims.slice(depth + 1));
    for (let i = 0; i < v.length; i++) {
      const e = v[i];
      if (depth + 1 < dims.length) {
        if (!Array.isArray(e)) {
          throw bad(`${path}${[...idx, i].map((j) => `[${j}]`).join("")} is not an array`);
        }
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
        if (typeof v !== "number") return this.#put(at + i, v, path, [...idx, i]); // throws
        data[at + i] = v;
      }
      return;
    }
    for (let i = 0; i < values.length; i++) this.#put(at + i, values[i], path, [...idx, i]);
  }

  #put(k: number, v: unknown, path: string, idx: number[]): void {
    const { dtype } = this.spec;
    const where = () => `${path}${idx.map((i) => `[${i}]`).join("")}`;
    if (dtype === "BOOL" && typeof v === "boolean") v = v ? 1 : 0;
    if (typeof v !== "number") {
      throw bad(`${where()} is ${JSON.stringify(v)}, not a number (${describe(this.spec)})`);
    }
    if (!isFloat(dtype) && !Number.isInteger(v)) {
      throw bad(`${where()} is ${v}, expected an integer (${describe(this.spec)})`);
    }
    const data = this.#data!;
    if (data instanceof BigInt64Array || data instanceof BigUint64Array) data[k] = BigInt(v);
    else (data as Float32Array)[k] = v;
  }
}

/** Whether a value of nested shape `got` holds one row of `shape` (nested to it, or flat). */
function fits(got: readonly number[], shape: readonly number[]): boolean {
  if (got.length === shape.length && got.every((d, i) => d === shape[i])) return true;
  return got.length === 1 && got[0] === numel(shape);
}

/** Symbolic dimensions shared by several inputs (`seq`) must agree in a row. */
function sameSymbols(columns: readonly Column[]): void {
  const seen = new Map<string, { input: string; size: number }>();
  for (const c of columns) {
    c.spec.shape.slice(1).forEach((d, i) => {
      if (typeof d !== "string") return;
      const size = c.shape![i]!;
      const other = seen.get(d);
      if (!other) return void seen.set(d, { input: c.spec.name, size });
      if (other.size !== size) {
        throw bad(
          `inputs[0].${c.spec.name} has ${d} = ${size} (shape ${formatShape(c.shape!)}), but ` +
            `inputs[0].${other.input} has ${d} = ${other.size}`,
        );
      }
    });
  }
}
