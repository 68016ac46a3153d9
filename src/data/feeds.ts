/**
 * A batch's tensors under a model's input names. A dataset with one float input calls it `x`,
 * `width` values a row; the model may name it otherwise (ONNX `input.1`) and take each row in a
 * shape of its own (`[1, 28, 28]` for an image). Datasets with named inputs (token ids, masks,
 * several inputs) give them by the model's names. Everything else in the batch (labels, targets,
 * dropout masks, cached activations) passes through.
 *
 * @module
 */

import type { Shape } from "../engine/graph.ts";
import { allocData, formatShape, isInteger, numel, type Tensor } from "../tensor.ts";

/** What a feed is checked against: a model input's name, dtype and (symbolic) shape. */
export interface InputSpec {
  /** The graph input's name (`input.1`, `input_ids`). */
  readonly name: string;
  /** The element type the input takes. */
  readonly dtype: Tensor["dtype"];
  /** The input's shape; the first dimension is the batch. */
  readonly shape: Shape;
}

/**
 * `feeds` with `x` renamed and reshaped for `inputs`, every model input checked for its dtype
 * and shape. `where` starts each message (`Cannot train on "data.jsonl"`).
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { modelFeeds } from "./feeds.ts";
 * const x = { dtype: "F32" as const, shape: [2, 4], data: new Float32Array(8) };
 * const input = { name: "image", dtype: "F32" as const, shape: ["batch", 1, 2, 2] };
 * deepStrictEqual(modelFeeds([input], { x }, "Cannot train").image!.shape, [2, 1, 2, 2]);
 * ```
 */
export function modelFeeds(
  inputs: readonly InputSpec[],
  feeds: Readonly<Record<string, Tensor>>,
  where: string,
): Record<string, Tensor> {
  // `x` is the dataset's one input, unless the model has several and one of them is named so.
  const { x, ...rest } = feeds;
  const out: Record<string, Tensor> = rest;
  if (x) {
    if (inputs.length === 1) out[inputs[0]!.name] = shaped(inputs[0]!, x, where);
    else if (inputs.some((i) => i.name === "x")) out.x = x;
    else {
      throw new TypeError(
        `${where}: the model has ${inputs.length} inputs (${names(inputs)}); give each row's ` +
          `inputs by name: {"inputs": {${inputs.map((i) => `"${i.name}": [...]`).join(", ")}}}`,
      );
    }
  }
  for (const input of inputs) {
    const t = out[input.name];
    if (!t) {
      throw new TypeError(
        `${where}: no data for the model's input "${input.name}" (${input.dtype} ${
          formatShape(input.shape)
        }); the rows give ${Object.keys(feeds).map((k) => `"${k}"`).join(", ") || "nothing"}`,
      );
    }
    check(input, t, where);
  }
  return out;
}

/** `x` ([rows, width]) in the input's per-row shape. */
function shaped(input: InputSpec, x: Tensor, where: string): Tensor {
  if (input.dtype !== x.dtype) {
    if (x.dtype === "F32" && takesIntegers(input.dtype)) x = integers(input, x, where);
    else {
      throw new TypeError(
        `${where}: the model's input "${input.name}" is ${input.dtype}, the rows are ${x.dtype}: ` +
          `give them as {"inputs": {"${input.name}": [...]}}`,
      );
    }
  }
  const rows = x.shape[0]!;
  const width = x.shape.length === 1 ? 1 : numel(x.shape.slice(1));
  const row = input.shape.slice(1);
  if (row.length === 1 && typeof row[0] === "string") return { ...x, shape: [rows, width] };
  if (row.some((d) => typeof d !== "number") || numel(row as number[]) !== width) {
    throw new TypeError(
      `${where}: rows of ${width} values do not fit the model's input "${input.name}" ` +
        `${formatShape(input.shape)}${
          row.every((d) => typeof d === "number") ? ` (${numel(row as number[])} a row)` : ""
        }`,
    );
  }
  return { ...x, shape: [rows, ...(row as number[])] };
}

function check(input: InputSpec, t: Tensor, where: string): void {
  const fits = t.shape.length === input.shape.length &&
    input.shape.every((d, i) => typeof d === "string" || d === t.shape[i]);
  if (t.dtype !== input.dtype || !fits) {
    throw new TypeError(
      `${where}: the model's input "${input.name}" takes ${input.dtype} ${
        formatShape(input.shape)
      }, the data gives ${t.dtype} ${formatShape(t.shape)}`,
    );
  }
}

/**
 * Whether a model input takes whole numbers (token ids, masks, flags): an integer dtype (see
 * {@link isInteger}) or `BOOL`. Rows of `x` convert to it, and a parity probe fills it with 0 and 1.
 *
 * @example
 * ```ts
 * import { ok } from "node:assert/strict";
 * import { takesIntegers } from "./feeds.ts";
 * ok(takesIntegers("I64") && !takesIntegers("F32"));
 * ```
 */
export function takesIntegers(dtype: Tensor["dtype"]): boolean {
  return dtype === "BOOL" || isInteger(dtype);
}

/** Rows of whole numbers (token ids read as `x`) in the integer dtype the input takes. */
function integers(input: InputSpec, x: Tensor, where: string): Tensor {
  const src = x.data as Float32Array;
  const data = allocData(input.dtype, src.length);
  for (let i = 0; i < src.length; i++) {
    const v = src[i]!;
    if (!Number.isInteger(v)) {
      throw new TypeError(
        `${where}: the model's input "${input.name}" is ${input.dtype}, but value ${i} of the ` +
          `rows is ${v}, not a whole number`,
      );
    }
    if (data instanceof BigInt64Array || data instanceof BigUint64Array) data[i] = BigInt(v);
    else (data as Int32Array)[i] = v;
    if (Number(data[i]) !== v) {
      throw new RangeError(
        `${where}: the model's input "${input.name}" is ${input.dtype}, but value ${i} of the ` +
          `rows is ${v}, out of its range`,
      );
    }
  }
  return { dtype: input.dtype, shape: x.shape, data } as Tensor;
}

/**
 * Values a row of `x` holds for a model input: the product of its per-row dimensions when they
 * are all fixed (784 for an MLP's `[batch, 784]` and a CNN's `[batch, 1, 28, 28]`), else
 * `undefined`.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { rowWidth } from "./feeds.ts";
 * strictEqual(rowWidth({ name: "x", dtype: "F32", shape: ["batch", 1, 28, 28] }), 784);
 * strictEqual(rowWidth({ name: "ids", dtype: "I64", shape: ["batch", "seq"] }), undefined);
 * ```
 */
export function rowWidth(input: InputSpec | undefined): number | undefined {
  const row = input?.shape.slice(1) ?? [];
  return row.length > 0 && row.every((d) => typeof d === "number")
    ? numel(row as number[])
    : undefined;
}

const names = (inputs: readonly InputSpec[]) => inputs.map((i) => `"${i.name}"`).join(", ");

/**
 * Dimensions of a nested array, read along its first elements (`[]` for a scalar): the shape a
 * JSON row gives its values in.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { nestedShape } from "./feeds.ts";
 * deepStrictEqual(nestedShape([[1, 2, 3], [4, 5, 6]]), [2, 3]);
 * deepStrictEqual(nestedShape(7), []);
 * ```
 */
export function nestedShape(v: unknown): number[] {
  const shape: number[] = [];
  while (Array.isArray(v)) {
    shape.push(v.length);
    v = v[0];
  }
  return shape;
}
