/**
 * Named inputs of a data file, one per model input: JSON Lines rows `{"inputs": {"input_ids":
 * [...], "attention_mask": [...]}, "y": 1}`, or safetensors files with one tensor `[rows, …]` per
 * input name. Each input takes the model input's dtype (token ids stay integers) and per-row shape:
 * fixed dimensions as the model declares them, symbolic ones (a sequence length) from the first
 * row. Values may be nested to the row's shape or flat.
 *
 * @module
 */

import { type InputSpec, nestedShape } from "./feeds.ts";
import { allocData, type DType, formatShape, isFloat, numel, type Tensor } from "../tensor.ts";
import type { RowTensor } from "./dataset.ts";

/** A model input the rows are read for. */
export type NamedSpec = InputSpec;

/** Collects the named inputs of rows as they are read; every error names the file and the row. */
export class NamedRows {
  readonly #values = new Map<string, number[]>();
  readonly #shapes = new Map<string, number[]>();

  constructor(readonly where: string, private readonly specs: readonly NamedSpec[]) {
    if (specs.length === 0) {
      throw new TypeError(`${where}: rows give "inputs" by name, but no model inputs are known`);
    }
    for (const s of specs) this.#values.set(s.name, []);
  }

  /** Adds row `line`'s `inputs` object. */
  add(line: number, inputs: unknown): void {
    if (typeof inputs !== "object" || inputs === null || Array.isArray(inputs)) {
      throw new TypeError(
        `${this.where}: row ${line} has "inputs" that is not an object of arrays`,
      );
    }
    const row = inputs as Record<string, unknown>;
    for (const s of this.specs) {
      const v = row[s.name];
      if (v === undefined) {
        throw new TypeError(
          `${this.where}: row ${line} has no input "${s.name}" (the model's inputs: ${
            this.specs.map((x) => `"${x.name}"`).join(", ")
          })`,
        );
      }
      const shape = nestedShape(v);
      const flat = (Array.isArray(v) ? v.flat(Infinity) : [v]) as unknown[];
      const want = this.#rowShape(s, shape, flat.length, line);
      if (numel(want) !== flat.length) {
        throw new TypeError(
          `${this.where}: row ${line}, input "${s.name}" has ${flat.length} values, expected ${
            formatShape(want)
          } (${numel(want)})`,
        );
      }
      const out = this.#values.get(s.name)!;
      for (let i = 0; i < flat.length; i++) out.push(this.#number(s, flat[i], line, i));
    }
  }

  /** The inputs read, for `rows` rows. */
  take(rows: number): Map<string, RowTensor> {
    const out = new Map<string, RowTensor>();
    for (const s of this.specs) {
      const shape = this.#shapes.get(s.name) ?? [];
      out.set(s.name, { dtype: s.dtype, shape, data: typed(s.dtype, this.#values.get(s.name)!) });
      if (this.#values.get(s.name)!.length !== rows * numel(shape)) {
        throw new Error(`${this.where}: input "${s.name}" lost rows`);
      }
    }
    return out;
  }

  /** The row shape of `s`: fixed dimensions from the model, symbolic ones from the first row. */
  #rowShape(s: NamedSpec, nested: number[], n: number, line: number): number[] {
    const known = this.#shapes.get(s.name);
    if (known) return known;
    const row = s.shape.slice(1);
    let shape: number[];
    if (row.every((d) => typeof d === "number")) shape = row as number[];
    else if (nested.length === row.length) {
      shape = row.map((d, i) => (typeof d === "number" ? d : nested[i]!));
    } else if (row.filter((d) => typeof d === "string").length === 1) {
      const fixed = numel(row.filter((d) => typeof d === "number") as number[]);
      shape = row.map((d) => (typeof d === "number" ? d : Math.floor(n / fixed)));
    } else {
      throw new TypeError(
        `${this.where}: row ${line}, input "${s.name}" must be nested to the shape ${
          formatShape(row)
        } (the model's symbolic dimensions are read from it)`,
      );
    }
    this.#shapes.set(s.name, shape);
    return shape;
  }

  #number(s: NamedSpec, v: unknown, line: number, i: number): number {
    const bad = (why: string) =>
      new TypeError(`${this.where}: row ${line}, input "${s.name}"[${i}] is ${why}`);
    if (s.dtype === "BOOL" && typeof v === "boolean") return v ? 1 : 0;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw bad(`${JSON.stringify(v)}, not a number`);
    }
    if (!isFloat(s.dtype) && !Number.isInteger(v)) {
      throw bad(`${v}, expected an integer (${s.dtype})`);
    }
    return v;
  }
}

function typed(dtype: DType, values: readonly number[]): Tensor["data"] {
  const data = allocData(dtype, values.length);
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    for (let i = 0; i < values.length; i++) data[i] = BigInt(values[i]!);
  } else if (dtype === "F16" || dtype === "BF16") {
    throw new TypeError(`Cannot hold ${dtype} data rows: give them as F32`);
  } else (data as Float32Array).set(values);
  return data;
}

/**
 * The named inputs of a safetensors data file: a tensor per spec, `[rows, …row shape]`, in the
 * spec's dtype. Returns `undefined` when the file has none of them (it holds `x`).
 */
export function namedTensors(
  tensors: ReadonlyMap<string, Tensor>,
  specs: readonly NamedSpec[],
  where: string,
): { rows: number; inputs: Map<string, RowTensor> } | undefined {
  if (!specs.some((s) => tensors.has(s.name))) return undefined;
  const inputs = new Map<string, RowTensor>();
  let rows: number | undefined;
  for (const s of specs) {
    const t = tensors.get(s.name);
    if (!t) throw new TypeError(`${where}: it has no tensor "${s.name}" for the model's input`);
    if (t.dtype !== s.dtype) {
      throw new TypeError(
        `${where}: tensor "${s.name}" is ${t.dtype}, the model's input takes ${s.dtype}`,
      );
    }
    rows ??= t.shape[0];
    if (t.shape[0] !== rows || t.shape.length !== s.shape.length) {
      throw new TypeError(
        `${where}: tensor "${s.name}" has shape ${formatShape(t.shape)}, expected [${rows}, ${
          formatShape(s.shape.slice(1)).slice(1)
        }`,
      );
    }
    inputs.set(s.name, { dtype: t.dtype, shape: t.shape.slice(1), data: t.data });
  }
  return { rows: rows!, inputs };
}
