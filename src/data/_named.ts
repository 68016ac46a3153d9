/**
 * Named inputs of a data file, one per model input: JSON Lines rows `{"inputs": {"input_ids":
 * [...], "attention_mask": [...]}, "y": 1}`, or safetensors files with one tensor `[rows, …]` per
 * input name. Each input takes the model input's dtype (token ids stay integers) and per-row shape:
 * fixed dimensions as the model declares them, symbolic ones (a sequence length) from the first
 * row. Values may be nested to the row's shape or flat. JSON values are read by `json_inputs.ts`,
 * which also reads the rows of the server's requests.
 *
 * @module
 */

import type { InputSpec } from "./feeds.ts";
import { InputColumn, sameSymbols } from "./json_inputs.ts";
import { formatShape, type Tensor } from "../tensor.ts";
import type { RowTensor } from "./dataset.ts";

/**
 * Collects the named inputs of rows as they are read (`json_inputs.ts` reads each value, as the
 * server reads request rows); every error names the file, the row and the input.
 */
export class NamedRows {
  readonly #columns: InputColumn[];
  #rows = 0;

  constructor(readonly where: string, private readonly specs: readonly InputSpec[]) {
    if (specs.length === 0) {
      throw new TypeError(`${where}: rows give "inputs" by name, but no model inputs are known`);
    }
    this.#columns = this.#named(() => specs.map((s) => new InputColumn(s, { rows: 256 })));
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
      if (row[s.name] === undefined) {
        throw new TypeError(
          `${this.where}: row ${line} has no input "${s.name}" (the model's inputs: ${
            this.specs.map((x) => `"${x.name}"`).join(", ")
          })`,
        );
      }
    }
    this.#named(() => {
      for (const c of this.#columns) {
        c.add(this.#rows, `row ${line}, inputs.${c.spec.name}`, row[c.spec.name]);
      }
      if (this.#rows === 0) sameSymbols(this.#columns);
    });
    this.#rows++;
  }

  /** The inputs of every row added. */
  take(): Map<string, RowTensor> {
    const out = new Map<string, RowTensor>();
    for (const c of this.#columns) {
      const { dtype, shape, data } = c.tensor(this.#rows);
      out.set(c.spec.name, { dtype, shape: shape.slice(1), data } as RowTensor);
    }
    return out;
  }

  /** Runs `read`, naming the file in its errors. */
  #named<T>(read: () => T): T {
    try {
      return read();
    } catch (e) {
      if (e instanceof RangeError) throw new RangeError(`${this.where}: ${e.message}`);
      if (e instanceof TypeError) throw new TypeError(`${this.where}: ${e.message}`);
      throw e;
    }
  }
}

/**
 * The named inputs of a safetensors data file that holds some (the caller checks): a tensor per
 * spec, `[rows, …row shape]`, in the spec's dtype.
 */
export function namedTensors(
  tensors: ReadonlyMap<string, Tensor>,
  specs: readonly InputSpec[],
  where: string,
): { rows: number; inputs: Map<string, RowTensor> } {
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
