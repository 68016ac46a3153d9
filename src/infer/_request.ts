/**
 * The rows of a `POST /v1/predict` body as tensors `[rows, …]` by model input. A row is an array
 * (the input of a one-input model: flat, or nested to the input's row shape) or an object of
 * inputs by graph input name (`{"input_ids": [...], "attention_mask": [...]}`; `"x"` stands for
 * the input of a one-input model). Each input is read as data files read their named inputs
 * (`src/data/json_inputs.ts`): the model's dtype (token ids stay integers) and row shape, fixed
 * dimensions as the model declares them, symbolic ones (a sequence length) from the first row,
 * which every other row of the request must match.
 *
 * Errors are 400s that name the row, the input and both shapes or dtypes: `inputs[3].input_ids
 * has 5 values, expected 7 as in inputs[0].input_ids (input "input_ids": I64 [batch, seq])`.
 *
 * Imported only by `server.ts`.
 *
 * @module
 */

import type { ModelIO } from "../models/model.ts";
import { allocData, formatShape, type Tensor, type TensorData } from "../tensor.ts";
import { InputColumn, sameSymbols } from "../data/json_inputs.ts";
import { HttpError } from "./_http.ts";

/**
 * Tensors `[rows, …]` by input name for the request's `rows`: the model's feeds as
 * `InferenceEngine.feeds` would return them (names, dtypes and row shapes are the model's, the
 * symbolic dimensions agree), so they go to the batcher unchecked. Throws 400 HttpErrors.
 */
export function requestFeeds(
  rows: readonly unknown[],
  inputs: readonly ModelIO[],
): Record<string, Tensor> {
  let columns: InputColumn[];
  try {
    columns = inputs.map((s) => new InputColumn(s, { rows: rows.length, alloc: slabbed }));
  } catch (e) {
    throw new HttpError(500, (e as Error).message, { cause: e }); // the model's, not the request's
  }
  try {
    for (let i = 0; i < rows.length; i++) readRow(rows[i], i, columns);
  } catch (e) {
    if (e instanceof TypeError || e instanceof RangeError) {
      throw new HttpError(400, e.message, { cause: e });
    }
    throw e;
  }
  const feeds: Record<string, Tensor> = {};
  for (const c of columns) feeds[c.spec.name] = c.tensor(rows.length);
  return feeds;
}

/** Reads row `i` into the columns; TypeErrors and RangeErrors name the row and the input. */
function readRow(row: unknown, i: number, columns: readonly InputColumn[]): void {
  const one = columns.length === 1;
  if (Array.isArray(row) || typeof row === "number" || typeof row === "boolean") {
    if (!one) {
      throw new TypeError(
        `inputs[${i}] is an array, but the model has ${columns.length} inputs: give each row as ` +
          `{${columns.map((c) => `"${c.spec.name}": [...]`).join(", ")}}`,
      );
    }
    columns[0]!.add(i, `inputs[${i}]`, row);
  } else readNamed(row, i, columns);
  if (i === 0) sameSymbols(columns);
}

/** Reads row `i` given as an object of inputs by name (`"x"` for a one-input model's). */
function readNamed(row: unknown, i: number, columns: readonly InputColumn[]): void {
  const one = columns.length === 1;
  const at = `inputs[${i}]`;
  if (typeof row !== "object" || row === null) {
    throw new TypeError(
      `${at} is ${JSON.stringify(row)}, expected an array or an object of inputs by name`,
    );
  }
  const named = row as Record<string, unknown>;
  for (const k of Object.keys(named)) {
    if (!columns.some((c) => c.spec.name === k) && !(one && k === "x")) {
      throw new TypeError(`${at}.${k} is not an input of the model; its inputs: ${list(columns)}`);
    }
  }
  for (const c of columns) {
    const name = c.spec.name;
    const alias = one && !(name in named);
    const value = alias ? named["x"] : named[name];
    if (value === undefined) {
      throw new TypeError(`${at} has no input "${name}"; the model's inputs: ${list(columns)}`);
    }
    c.add(i, `${at}.${alias ? "x" : name}`, value);
  }
}

/** Floats per slab: 256 KiB. */
const SLAB = 65536;
let slab = new Float32Array(0);
let used = 0;

/**
 * Float32 rows of requests are views of shared slabs: one allocation per 256 KiB rather than one
 * per request. A typed array of its own costs an off-heap allocation and garbage-collector work
 * that a view does not (the batcher's reused batch arrays save the same per batch). A slab is freed
 * once no request holds a view of it. Other dtypes, and requests over 64 KiB, get arrays of their
 * own.
 */
function slabbed(dtype: Tensor["dtype"], n: number): TensorData {
  if (dtype !== "F32" || 4 * n > SLAB) return allocData(dtype, n);
  if (used + n > slab.length) {
    slab = new Float32Array(SLAB);
    used = 0;
  }
  return slab.subarray(used, used += n);
}

const list = (columns: readonly InputColumn[]) =>
  columns.map(({ spec: s }) => `"${s.name}" ${s.dtype} ${formatShape(s.shape)}`).join(", ");
