/**
 * Datasets stored as safetensors (https://github.com/huggingface/safetensors): a float tensor `x`
 * `[rows, width]` (trailing dimensions are flattened: `[rows, 28, 28]` reads as `[rows, 784]`), or
 * one tensor per model input named as the input (`input_ids` I64 `[rows, seq]`, …), and
 * a tensor `y`: integer labels `[rows]` or float targets `[rows, k]`. The optional metadata entry
 * `classes` gives the number of classes.
 *
 * @module
 */

import { isFloat, isInteger, numel, type Tensor, toFloat32 } from "../tensor.ts";
import { openSafetensors, type SafetensorsFile, writeSafetensors } from "../io/safetensors.ts";
import type { AtomicWriteOptions } from "../fs/atomic.ts";
import type { Dataset } from "./dataset.ts";
import type { DataInputs } from "./_rows.ts";
import type { InputSpec } from "./feeds.ts";
import { namedTensors } from "./_named.ts";

const shape = (s: readonly number[]): string => `[${s.join(", ")}]`;

/** Reads `x` and, when `withY`, `y` from a safetensors dataset. */
export async function readSafetensorsData(
  path: string | URL,
  where: string,
  options: { width?: number; classes?: number; withY: boolean; inputs?: readonly InputSpec[] },
): Promise<Dataset | DataInputs> {
  using file = await openSafetensors(path);
  const inputs = await readNamed(file, where, options.inputs) ??
    await readX(file, where, options.width);
  if (!options.withY) return inputs;
  if (!file.has("y")) {
    throw new TypeError(
      `${where}: it has no tensor "y" (integer labels [rows] or float targets [rows, k])`,
    );
  }
  const e = file.entry("y");
  const rows = inputs.rows;
  if (isInteger(e.dtype)) {
    if (e.shape.length !== 1 || e.shape[0] !== rows) {
      throw new TypeError(
        `${where}: tensor "y" (labels) has shape ${shape(e.shape)}, expected [${rows}]`,
      );
    }
    const classes = options.classes ?? metadataClasses(file, where);
    const data = labels(await file.readTensor("y"), classes, where);
    let max = -1;
    for (const v of data) if (v > max) max = Number(v);
    return { ...inputs, y: { kind: "labels", data, classes: classes ?? max + 1 } };
  }
  if (isFloat(e.dtype) && e.shape.length === 2 && e.shape[0] === rows && e.shape[1]! > 0) {
    const y = toFloat32(await file.readTensor("y"));
    checkFinite(y, "y", where);
    return { ...inputs, y: { kind: "targets", data: y.data, width: e.shape[1]! } };
  }
  throw new TypeError(
    `${where}: tensor "y" has dtype ${e.dtype} and shape ${
      shape(e.shape)
    }, expected integer labels [${rows}] or float targets [${rows}, k]`,
  );
}

/** The tensors named after the model's inputs, when the file holds them instead of `x`. */
async function readNamed(
  file: SafetensorsFile,
  where: string,
  specs: readonly InputSpec[] | undefined,
): Promise<DataInputs | undefined> {
  if (!specs?.some((s) => file.has(s.name))) return undefined;
  const tensors = new Map<string, Tensor>();
  for (const s of specs) if (file.has(s.name)) tensors.set(s.name, await file.readTensor(s.name));
  const named = namedTensors(tensors, specs, where);
  return { rows: named.rows, width: 0, x: new Float32Array(0), inputs: named.inputs };
}

async function readX(
  file: SafetensorsFile,
  where: string,
  width: number | undefined,
): Promise<DataInputs> {
  if (!file.has("x")) throw new TypeError(`${where}: it has no tensor "x" (inputs [rows, width])`);
  const e = file.entry("x");
  if (!isFloat(e.dtype)) {
    throw new TypeError(
      `${where}: tensor "x" has dtype ${e.dtype}, expected a float dtype (F32, F16, BF16 or F64)`,
    );
  }
  const rows = e.shape[0] ?? 0;
  const w = numel(e.shape.slice(1));
  if (e.shape.length < 2 || (width !== undefined && w !== width)) {
    throw new TypeError(
      `${where}: tensor "x" has shape ${shape(e.shape)}, expected [rows, ${width ?? "width"}]`,
    );
  }
  if (rows === 0 || w === 0) {
    throw new RangeError(`${where}: tensor "x" has shape ${shape(e.shape)}: no data`);
  }
  const x = toFloat32(await file.readTensor("x"));
  checkFinite(x, "x", where);
  return { rows, width: w, x: x.data };
}

/** Fails on the first NaN or infinity, naming its index in the tensor's own shape. */
function checkFinite(t: Tensor<"F32">, name: string, where: string): void {
  const d = t.data;
  for (let i = 0; i < d.length; i++) {
    const v = d[i]!;
    if (v - v !== 0) {
      const index: number[] = [];
      let rest = i;
      for (let k = t.shape.length - 1; k >= 0; k--) {
        index.unshift(rest % t.shape[k]!);
        rest = Math.floor(rest / t.shape[k]!);
      }
      throw new RangeError(
        `${where}: ${name}[${index.join(", ")}] is ${v}, expected a finite number`,
      );
    }
  }
}

function metadataClasses(file: SafetensorsFile, where: string): number | undefined {
  const text = file.metadata.classes;
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) {
    throw new RangeError(
      `${where}: metadata "classes" is ${JSON.stringify(text)}, expected an integer >= 1`,
    );
  }
  return n;
}

function labels(t: Tensor, classes: number | undefined, where: string): BigInt64Array {
  const src = t.data as ArrayLike<number | bigint>;
  const out = t.data instanceof BigInt64Array ? t.data : new BigInt64Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const v = BigInt(src[i]!);
    if (v < 0n || (classes !== undefined && v >= BigInt(classes))) {
      const expected = v < 0n ? "a class >= 0" : `a class below ${classes}`;
      throw new RangeError(`${where}: y[${i}] is ${v}, expected ${expected}`);
    }
    out[i] = v;
  }
  return out;
}

/** Writes `x` as F32 and `y` as I64 labels or F32 targets, with `classes` in the metadata. */
export async function writeSafetensorsData(
  path: string | URL,
  data: Dataset,
  options: AtomicWriteOptions,
): Promise<void> {
  const y = data.y;
  const tensors: Record<string, Tensor> = {
    x: { dtype: "F32", shape: [data.rows, data.width], data: data.x },
    y: y.kind === "labels"
      ? { dtype: "I64", shape: [data.rows], data: y.data }
      : { dtype: "F32", shape: [data.rows, y.width], data: y.data },
  };
  const classes = y.kind === "labels" ? y.classes : undefined;
  await writeSafetensors(path, tensors, {
    ...options,
    metadata: classes === undefined ? undefined : { classes: String(classes) },
  });
}
