/**
 * In-memory datasets: row-major inputs and either integer labels or float targets, and the
 * batch slicing the trainer feeds to a compiled step (inputs `x`, and `labels` or `targets`).
 *
 * A model with one float input reads `x`, `width` values a row (fed as the input's own per-row
 * shape: an image row of 784 values becomes `[rows, 1, 28, 28]`). A model with several inputs, or
 * with integer ones (token ids and masks), reads `inputs`: one tensor per graph input, each with
 * its own dtype and per-row shape, fed under its name. The frozen-prefix cache uses the same form.
 *
 * @module
 */

import { allocData, type DType, numel, type Tensor, type TensorData } from "../tensor.ts";

/** One named input of a dataset: `rows` rows of `shape` each, row-major. */
export interface RowTensor {
  /** The element type, as the model input takes it (`I64` token ids, `F32` pixels). */
  readonly dtype: DType;
  /** The shape of one row (`[1, 28, 28]`, `[seq]`, `[]` for a scalar a row). */
  readonly shape: readonly number[];
  /** `rows × numel(shape)` elements (empty when the rows are in `spill`). */
  readonly data: TensorData;
  /**
   * Rows kept in a file instead of `data` (a frozen-prefix cache over its memory budget): row
   * `r` is `numel(shape)` elements at `offset + r · rowBytes`, little-endian.
   */
  readonly spill?: { readonly path: string; readonly offset: number };
}

/** A dataset of `rows` examples. */
export interface Dataset {
  /** The first dimension of `x` and `y`. */
  readonly rows: number;
  /** Values per row of `x`: the model's input features. */
  readonly width: number;
  /** `[rows, width]`, row-major. */
  readonly x: Float32Array;
  /**
   * Inputs by graph input name, for models with several or non-float inputs; `x` is then empty
   * and `width` 0.
   */
  readonly inputs?: ReadonlyMap<string, RowTensor>;
  /** Integer class labels `[rows]`, or float targets `[rows, targetWidth]`. */
  readonly y:
    | { readonly kind: "labels"; readonly data: BigInt64Array; readonly classes?: number }
    | { readonly kind: "targets"; readonly data: Float32Array; readonly width: number };
}

/** One batch, ready to feed. */
export interface Batch {
  readonly rows: number;
  readonly feeds: Record<string, Tensor>;
}

/**
 * Rows `start … start+size` of the dataset, in `order` when given (a permutation of row indices).
 *
 * @example
 * ```ts
 * import { sliceBatch } from "./dataset.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const data = { rows: 2, width: 1, x: new Float32Array([1, 2]), y: { kind: "labels" as const, data: new BigInt64Array([0n, 1n]) } };
 * deepStrictEqual(sliceBatch(data, null, 0, 2).feeds.x!.shape, [2, 1]);
 * ```
 */
export function sliceBatch(
  data: Dataset,
  order: Uint32Array | null,
  start: number,
  size: number,
  reuse?: BatchBuffers,
): Batch {
  const rows = Math.max(0, Math.min(size, data.rows - start));
  const w = data.width;
  const y = data.y;
  const yw = y.kind === "labels" ? 1 : y.width;
  // Full batches fill the caller's buffers: fresh memory costs page faults on every step.
  const full = reuse !== undefined && rows * w === reuse.x.length && rows * yw === reuse.y.length;
  const x = full ? reuse.x : new Float32Array(rows * w);
  const yOut = full
    ? reuse.y
    : y.kind === "labels"
    ? new BigInt64Array(rows)
    : new Float32Array(rows * yw);
  for (let i = 0; i < rows; i++) {
    const r = order ? order[start + i]! : start + i;
    x.set(data.x.subarray(r * w, (r + 1) * w), i * w);
    if (y.kind === "labels") (yOut as BigInt64Array)[i] = y.data[r]!;
    else (yOut as Float32Array).set(y.data.subarray(r * yw, (r + 1) * yw), i * yw);
  }
  const feeds: Record<string, Tensor> = data.inputs
    ? sliceInputs(data.inputs, order, start, rows, full ? reuse.inputs : undefined, reuse?.files)
    : { x: { dtype: "F32", shape: [rows, w], data: x } };
  if (y.kind === "labels") {
    feeds.labels = { dtype: "I64", shape: [rows], data: yOut as BigInt64Array };
  } else feeds.targets = { dtype: "F32", shape: [rows, yw], data: yOut as Float32Array };
  return { rows, feeds };
}

function sliceInputs(
  inputs: ReadonlyMap<string, RowTensor>,
  order: Uint32Array | null,
  start: number,
  rows: number,
  reuse?: ReadonlyMap<string, TensorData>,
  files?: Map<string, Deno.FsFile>,
): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  for (const [name, t] of inputs) {
    const n = numel(t.shape);
    const kept = reuse?.get(name);
    const data = kept && kept.length === rows * n ? kept : allocData(t.dtype, rows * n);
    if (t.spill) {
      const rowOf = (i: number) => order ? order[start + i]! : start + i;
      if (files) readSpilled(spillFile(files, t.spill.path), t.spill, data, n, rows, rowOf);
      else {
        using file = Deno.openSync(t.spill.path, { read: true });
        readSpilled(file, t.spill, data, n, rows, rowOf);
      }
      feeds[name] = { dtype: t.dtype, shape: [rows, ...t.shape], data } as Tensor;
      continue;
    }
    // Element-type agnostic copies: every typed array has set and subarray.
    const out = data as unknown as { set(a: ArrayLike<unknown>, at: number): void };
    const src = t.data as unknown as { subarray(a: number, b: number): ArrayLike<unknown> };
    for (let i = 0; i < rows; i++) {
      const r = order ? order[start + i]! : start + i;
      out.set(src.subarray(r * n, (r + 1) * n), i * n);
    }
    feeds[name] = { dtype: t.dtype, shape: [rows, ...t.shape], data } as Tensor;
  }
  return feeds;
}

/** The open spill file at `path`, opened on first use. */
function spillFile(files: Map<string, Deno.FsFile>, path: string): Deno.FsFile {
  let file = files.get(path);
  if (!file) files.set(path, file = Deno.openSync(path, { read: true }));
  return file;
}

/** Reads rows `rowOf(0 … rows-1)` of a spilled input from `file` into `data`, `n` elements each. */
function readSpilled(
  file: Deno.FsFile,
  spill: { readonly path: string; readonly offset: number },
  data: TensorData,
  n: number,
  rows: number,
  rowOf: (i: number) => number,
): void {
  const rowBytes = n * data.BYTES_PER_ELEMENT;
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  for (let i = 0; i < rows; i++) {
    file.seekSync(spill.offset + rowOf(i) * rowBytes, Deno.SeekMode.Start);
    let got = 0;
    while (got < rowBytes) {
      const k = file.readSync(bytes.subarray(i * rowBytes + got, (i + 1) * rowBytes));
      if (k === null) {
        throw new RangeError(`Cannot read row ${rowOf(i)} of "${spill.path}": the file ends`);
      }
      got += k;
    }
  }
}

/**
 * Buffers a training loop reuses for its full batches, and the spill files its batches read, open
 * until it is disposed (see {@link batchBuffers}).
 */
export interface BatchBuffers extends Disposable {
  readonly x: Float32Array;
  readonly y: BigInt64Array | Float32Array;
  /** One buffer per named input (the frozen-prefix cache's values, token ids, …). */
  readonly inputs?: ReadonlyMap<string, TensorData>;
  /** Spill files by path, each opened by the first batch that reads it, not at every step. */
  readonly files: Map<string, Deno.FsFile>;
}

/** Buffers for batches of `size` rows of `data`; `using` them closes the spill files they opened. */
export function batchBuffers(data: Dataset, size: number): BatchBuffers {
  const y = data.y;
  const inputs = data.inputs &&
    new Map([...data.inputs].map(([k, t]) => [k, allocData(t.dtype, size * numel(t.shape))]));
  const files = new Map<string, Deno.FsFile>();
  return {
    x: new Float32Array(size * data.width),
    y: y.kind === "labels" ? new BigInt64Array(size) : new Float32Array(size * y.width),
    ...(inputs ? { inputs } : {}),
    files,
    [Symbol.dispose]() {
      for (const file of files.values()) file.close();
      files.clear();
    },
  };
}

/**
 * Splits off the last `fraction` of a seeded permutation as an evaluation set.
 *
 * @example
 * ```ts
 * import { splitDataset } from "./dataset.ts";
 * import { Rng } from "../rng.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const data = {
 *   rows: 4,
 *   width: 1,
 *   x: new Float32Array([1, 2, 3, 4]),
 *   y: { kind: "labels" as const, data: new BigInt64Array([0n, 1n, 0n, 1n]) },
 * };
 * const [train, evalSet] = splitDataset(data, 0.25, new Rng(0).permutation(4));
 * deepStrictEqual([train.rows, evalSet.rows], [3, 1]);
 * ```
 */
export function splitDataset(
  data: Dataset,
  fraction: number,
  order: Uint32Array,
): [Dataset, Dataset] {
  const nEval = Math.round(data.rows * fraction);
  return [
    takeRows(data, order.subarray(0, data.rows - nEval)),
    takeRows(data, order.subarray(data.rows - nEval)),
  ];
}

/**
 * The rows `idx` of a dataset, in that order, as a new dataset (labels or targets kept).
 *
 * @example
 * ```ts
 * import { takeRows } from "./dataset.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const data = { rows: 3, width: 1, x: new Float32Array([1, 2, 3]), y: { kind: "labels" as const, data: new BigInt64Array([0n, 1n, 2n]) } };
 * deepStrictEqual(takeRows(data, [2, 0]).x, new Float32Array([3, 1]));
 * ```
 */
export function takeRows(data: Dataset, idx: ArrayLike<number>): Dataset {
  const b = sliceBatch(data, Uint32Array.from(idx), 0, idx.length);
  const y: Dataset["y"] = data.y.kind === "labels"
    ? { kind: "labels", data: b.feeds.labels!.data as BigInt64Array, classes: data.y.classes }
    : { kind: "targets", data: b.feeds.targets!.data as Float32Array, width: data.y.width };
  if (data.inputs) {
    const inputs = new Map([...data.inputs].map(([name, t]) => [name, {
      dtype: t.dtype,
      shape: t.shape,
      data: b.feeds[name]!.data,
    }]));
    return { rows: idx.length, width: 0, x: new Float32Array(0), inputs, y };
  }
  return { rows: idx.length, width: data.width, x: b.feeds.x!.data as Float32Array, y };
}
