/**
 * Training and prediction data on disk: JSON Lines, numeric CSV and safetensors files read into a
 * {@linkcode Dataset} (or inputs alone, for `ffwd predict`), a dataset saved as safetensors, and
 * predictions written as JSON Lines.
 *
 * - JSONL: one object per line, `{"x": [...], "y": 3}` (a class label) or `{"x": [...], "y":
 *   [...]}` (float targets); `x` flat or nested to the input's per-row shape; for models with
 *   several or integer inputs, `{"inputs": {"input_ids": [...], "attention_mask": [...]}, "y":
 *   1}` (see `_named.ts`); blank lines are skipped. `_jsonl.ts`.
 * - CSV: numbers, an optional header row, an integer label column named by `labelColumn`.
 *   `_csv.ts`.
 * - safetensors: `x` `[rows, width]` in any float dtype, or one tensor per model input named as
 *   the input; `y` integer `[rows]` or float `[rows, k]`. `_safetensors.ts`.
 *
 * Given the model the data is for (`{ model }`), the readers take the width and the named inputs
 * from its inputs.
 *
 * Rows are numbered as lines in an editor (blank lines and the header count), so an error such as
 * `Cannot load "train.jsonl": row 17 has 783 values, expected 784` points at line 17.
 *
 * @module
 */

import { type AtomicWriteOptions, writeFileAtomic } from "../fs/atomic.ts";
import type { Dataset } from "./dataset.ts";
import type { DataInputs } from "./_rows.ts";
import { readJsonl } from "./_jsonl.ts";
import { readCsv } from "./_csv.ts";
import { readSafetensorsData, writeSafetensorsData } from "./_safetensors.ts";
import { type InputSpec, rowWidth } from "./feeds.ts";

export type { DataInputs };

/** A data file's layout (see the module documentation); by default, from the file's extension. */
export type DataFormat = "jsonl" | "csv" | "safetensors";

/** Options of {@linkcode loadInputs}. */
export interface LoadInputsOptions {
  /** The file's format. Default: from its extension (`.jsonl`/`.ndjson`, `.csv`, `.safetensors`). */
  readonly format?: DataFormat;
  /**
   * Expected input width. Default: the values a row of `model`'s one input holds, else the width
   * of the first row.
   */
  readonly width?: number;
  /**
   * CSV: the label column, by header name or 0-based index (negative counts from the end). It is
   * left out of the inputs; without it every column is an input.
   */
  readonly labelColumn?: string | number;
  /** CSV: whether the first row is a header. Default: it is when one of its cells is not a number. */
  readonly header?: boolean;
  /**
   * The model's inputs (name, dtype, shape), for files that give inputs by name: JSONL rows
   * `{"inputs": {"input_ids": [...]}}` or safetensors tensors named after the inputs. Default:
   * `model`'s.
   */
  readonly inputs?: readonly InputSpec[];
  /**
   * The model the data is for (a `BaseModel` from `openModel`, or anything with its `inputs`): it
   * gives `inputs`, and `width` when it has one input whose row size is fixed (see
   * {@linkcode rowWidth}). `width` and `inputs` given here win over it.
   */
  readonly model?: { readonly inputs: readonly InputSpec[] };
}

/** Options of {@linkcode loadDataset}. */
export interface LoadDatasetOptions extends LoadInputsOptions {
  /** Number of classes of integer labels. Default: the largest label + 1. */
  readonly classes?: number;
}

/**
 * Reads a training dataset: inputs and integer labels or float targets.
 *
 * @example
 * ```ts
 * import { loadDataset } from "./files.ts";
 * import { strictEqual } from "node:assert/strict";
 * const path = (await Deno.makeTempDir()) + "/train.jsonl";
 * await Deno.writeTextFile(path, '{"x": [0.5, 1], "y": 1}\n{"x": [2, 0], "y": 0}\n');
 * const data = await loadDataset(path, { width: 2 });
 * strictEqual(data.rows, 2);
 * strictEqual(data.y.kind, "labels");
 * ```
 *
 * @example The model gives the width
 * ```ts
 * import { loadDataset } from "./files.ts";
 * import { rejects } from "node:assert/strict";
 * const model = { inputs: [{ name: "x", dtype: "F32" as const, shape: ["batch", 784] }] };
 * const path = (await Deno.makeTempDir()) + "/train.jsonl";
 * await Deno.writeTextFile(path, '{"x": [0.5, 1], "y": 1}\n');
 * await rejects(loadDataset(path, { model }), /row 1 has 2 values, expected 784/);
 * ```
 */
export async function loadDataset(
  path: string | URL,
  options: LoadDatasetOptions = {},
): Promise<Dataset> {
  const where = `Cannot load "${show(path)}"`;
  options = fromModel(options, where);
  const format = checkOptions(path, options, where);
  const { width, classes } = options;
  switch (format) {
    case "jsonl":
      return await readJsonl(path, where, { width, classes, inputs: options.inputs, withY: true });
    case "csv":
      if (options.labelColumn === undefined) {
        throw new TypeError(
          `${where}: name its label column (labelColumn: a header name or a 0-based index)`,
        );
      }
      return await readCsv(path, where, options) as Dataset;
    case "safetensors":
      return await readSafetensorsData(path, where, {
        width,
        classes,
        inputs: options.inputs,
        withY: true,
      }) as Dataset;
  }
}

/**
 * Reads inputs alone, for prediction: JSONL rows `{"x": [...]}` (a `y` is ignored), CSV columns
 * (all of them, or all but `labelColumn`), or the `x` tensor of a safetensors file.
 *
 * @example
 * ```ts
 * import { loadInputs } from "./files.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const path = (await Deno.makeTempDir()) + "/inputs.csv";
 * await Deno.writeTextFile(path, "a,b\n0.5,1\n2,0\n");
 * const { rows, width, x } = await loadInputs(path);
 * deepStrictEqual([rows, width], [2, 2]);
 * deepStrictEqual(x, new Float32Array([0.5, 1, 2, 0]));
 * ```
 */
export async function loadInputs(
  path: string | URL,
  options: LoadInputsOptions = {},
): Promise<DataInputs> {
  const where = `Cannot load "${show(path)}"`;
  options = fromModel(options, where);
  const format = checkOptions(path, options, where);
  const { width } = options;
  let data: DataInputs;
  switch (format) {
    case "jsonl":
      data = await readJsonl(path, where, { width, inputs: options.inputs, withY: false });
      break;
    case "csv":
      data = await readCsv(path, where, { ...options, classes: undefined });
      break;
    case "safetensors":
      data = await readSafetensorsData(path, where, {
        width,
        inputs: options.inputs,
        withY: false,
      });
  }
  const plain = { rows: data.rows, width: data.width, x: data.x };
  return data.inputs ? { ...plain, inputs: data.inputs } : plain;
}

/**
 * Saves a dataset as safetensors (atomically): `x` F32 `[rows, width]`, `y` I64 `[rows]` or F32
 * `[rows, k]`, and the number of classes as metadata `classes`. {@linkcode loadDataset} reads it
 * back unchanged.
 *
 * @example
 * ```ts
 * import { loadDataset, saveDatasetSafetensors } from "./files.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const path = (await Deno.makeTempDir()) + "/data.safetensors";
 * const x = new Float32Array([1, 2, 3, 4]);
 * const y = { kind: "labels" as const, data: new BigInt64Array([0n, 1n]), classes: 10 };
 * await saveDatasetSafetensors(path, { rows: 2, width: 2, x, y });
 * deepStrictEqual((await loadDataset(path)).y, y);
 * ```
 */
export async function saveDatasetSafetensors(
  path: string | URL,
  dataset: Dataset,
  options: AtomicWriteOptions = {},
): Promise<void> {
  await writeSafetensorsData(path, dataset, options);
}

/**
 * Writes one JSON value per line, atomically, streaming as `rows` yields. Typed arrays are written
 * as arrays (a `Float32Array` element as the shortest decimal that reads back to the same float32)
 * and bigints as numbers, so predictions can go out as they are.
 *
 * @example
 * ```ts
 * import { writeJsonl } from "./files.ts";
 * import { strictEqual } from "node:assert/strict";
 * const path = (await Deno.makeTempDir()) + "/predictions.jsonl";
 * const y = new Float32Array([0.1, 0.9, 0.7, 0.3]); // [rows, 2]
 * await writeJsonl(path, [0, 1].map((r) => ({ y: y.subarray(2 * r, 2 * r + 2) })));
 * strictEqual(await Deno.readTextFile(path), '{"y":[0.1,0.9]}\n{"y":[0.7,0.3]}\n');
 * ```
 */
export async function writeJsonl(
  path: string | URL,
  rows: Iterable<unknown> | AsyncIterable<unknown>,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const where = `Cannot write "${show(path)}"`;
  await writeFileAtomic(path, encodeLines(rows, where), options);
}

const CHUNK = 1 << 16;

async function* encodeLines(
  rows: Iterable<unknown> | AsyncIterable<unknown>,
  where: string,
): AsyncGenerator<Uint8Array> {
  const encoder = new TextEncoder();
  let text = "";
  let line = 0;
  for await (const row of rows) {
    line++;
    const json = JSON.stringify(row, plain);
    if (json === undefined) {
      throw new TypeError(`${where}: row ${line} is not JSON (${typeof row})`);
    }
    text += json + "\n";
    if (text.length >= CHUNK) {
      yield encoder.encode(text);
      text = "";
    }
  }
  if (text.length > 0) yield encoder.encode(text);
}

/** JSON.stringify replacer: typed arrays as arrays, bigints as numbers. */
function plain(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return Number(value);
  if (value instanceof Float32Array) return Array.from(value, shortestFloat32);
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    return Array.from(value as unknown as ArrayLike<number | bigint>, Number);
  }
  return value;
}

/**
 * The number with the fewest digits that rounds to the float32 `v` (0.1f prints as 0.1).
 *
 * @example
 * ```ts
 * import { shortestFloat32 } from "./files.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(shortestFloat32(Math.fround(0.1)), 0.1);
 * ```
 */
export function shortestFloat32(v: number): number {
  if (!Number.isFinite(v) || v === 0) return v;
  for (let digits = 1; digits < 9; digits++) {
    const c = Number(v.toPrecision(digits));
    if (Math.fround(c) === v) return c;
  }
  return v;
}

/** `options` with `width` and `inputs` taken from `model` where not given. */
function fromModel<T extends LoadInputsOptions>(options: T, where: string): T {
  const { model, ...rest } = options;
  if (model === undefined) return options;
  if (model === null || !Array.isArray(model.inputs)) {
    throw new TypeError(`${where}: model has no inputs; pass a model opened with openModel()`);
  }
  const one = model.inputs.length === 1 ? rowWidth(model.inputs[0]) : undefined;
  return { ...rest, width: rest.width ?? one, inputs: rest.inputs ?? model.inputs } as T;
}

function checkOptions(path: string | URL, options: LoadDatasetOptions, where: string): DataFormat {
  const { width, classes, labelColumn } = options;
  if (width !== undefined && (!Number.isInteger(width) || width < 1)) {
    throw new RangeError(`${where}: width is ${width}, expected an integer >= 1`);
  }
  if (classes !== undefined && (!Number.isInteger(classes) || classes < 1)) {
    throw new RangeError(`${where}: classes is ${classes}, expected an integer >= 1`);
  }
  if (
    labelColumn !== undefined && typeof labelColumn !== "string" && !Number.isInteger(labelColumn)
  ) {
    throw new TypeError(
      `${where}: labelColumn is ${String(labelColumn)}, expected a header name or an integer index`,
    );
  }
  if (options.format !== undefined) {
    if (!FORMATS.includes(options.format)) {
      throw new TypeError(
        `${where}: format is ${JSON.stringify(options.format)}, expected one of ${
          FORMATS.join(", ")
        }`,
      );
    }
    return options.format;
  }
  const name = show(path).toLowerCase();
  const ext = name.slice(name.lastIndexOf(".") + 1);
  const format = EXTENSIONS.get(ext);
  if (format === undefined || !name.includes(".")) {
    throw new TypeError(
      `${where}: cannot tell its format from its name: use .jsonl, .csv or .safetensors, or pass format`,
    );
  }
  return format;
}

const FORMATS: readonly DataFormat[] = ["jsonl", "csv", "safetensors"];

const EXTENSIONS: ReadonlyMap<string, DataFormat> = new Map([
  ["jsonl", "jsonl"],
  ["ndjson", "jsonl"],
  ["csv", "csv"],
  ["safetensors", "safetensors"],
]);

function show(path: string | URL): string {
  return path instanceof URL ? path.href : path;
}
