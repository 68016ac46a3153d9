/**
 * What the text readers of `files.ts` share: a line reader that streams a file and numbers
 * its lines as an editor does, and a builder that fills preallocated typed arrays with rows,
 * checking widths and labels as they arrive.
 *
 * @module
 */

import type { Dataset, RowTensor } from "./dataset.ts";
import { fileError } from "../fs/file_errors.ts";

/** Inputs only: what `ffwd predict` reads. */
export interface DataInputs {
  /** The first dimension of `x`. */
  readonly rows: number;
  /** Values per row of `x`: the model's input features. */
  readonly width: number;
  /** `[rows, width]`, row-major. */
  readonly x: Float32Array;
  /** Inputs by the model's names, when the rows give them so (`x` is then empty). */
  readonly inputs?: ReadonlyMap<string, RowTensor>;
}

/** Quotes text for an error message, cut to `max` characters. */
export function quote(text: string, max = 40): string {
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text);
}

/** An open text file: its size, and its lines. */
export interface Lines {
  /** Size of the file in bytes (to estimate its number of rows). */
  readonly bytes: number;
  /**
   * Every line, without its line break (`\n` or `\r\n`), blank ones included, so that the n-th
   * line yielded is line n in an editor. Iterate it once: that closes the file.
   */
  readonly lines: AsyncGenerator<string>;
}

/**
 * Opens a text file to read it line by line. It is read in chunks: files larger than the longest
 * JavaScript string load fine.
 */
export async function openLines(path: string | URL, where: string): Promise<Lines> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    throw rewrap(error, where);
  }
  try {
    const info = await file.stat();
    if (info.isDirectory) throw new TypeError(`${where}: it is a folder, not a file`);
    if (info.size === 0) throw new SyntaxError(`${where}: the file is empty`);
    return { bytes: info.size, lines: linesOf(file, where) };
  } catch (error) {
    file.close();
    throw error;
  }
}

async function* linesOf(file: Deno.FsFile, where: string): AsyncGenerator<string> {
  try {
    // A line split over several chunks is joined once it ends, not re-concatenated per chunk.
    let pending: string[] = [];
    const text = file.readable.pipeThrough(new TextDecoderStream("utf-8", { fatal: true }));
    try {
      for await (const chunk of text) {
        let start = 0;
        let nl: number;
        while ((nl = chunk.indexOf("\n", start)) >= 0) {
          let line = chunk.slice(start, nl);
          if (pending.length > 0) {
            line = pending.join("") + line;
            pending = [];
          }
          yield line.endsWith("\r") ? line.slice(0, -1) : line;
          start = nl + 1;
        }
        if (start < chunk.length) pending.push(chunk.slice(start));
      }
    } catch (error) {
      if (error instanceof TypeError && /encoded data|decode|utf-?8/i.test(error.message)) {
        throw new SyntaxError(`${where}: the file is not UTF-8 text`, { cause: error });
      }
      throw error;
    }
    if (pending.length > 0) yield pending.join("");
  } finally {
    try {
      file.close();
    } catch { /* the readable stream already closed it */ }
  }
}

/** Keeps the error's class (callers may test for `Deno.errors.NotFound`) with a clearer message. */
export const rewrap: (error: unknown, where: string) => Error = fileError;

/** `rows × width` elements in a typed array with room for more rows. */
class RowStore<A extends Float32Array | Float64Array> {
  data: A;
  constructor(private readonly make: (n: number) => A, readonly width: number, rows: number) {
    this.data = make(rows * width);
  }
  /** Moves the rows into a buffer for `capacity` rows. */
  resize(capacity: number, rows: number): void {
    const grown = this.make(capacity * this.width);
    grown.set(this.data.subarray(0, rows * this.width));
    this.data = grown;
  }
  /**
   * The first `rows` rows: a view when at most 1/8 of the buffer is spare (a copy would briefly
   * need both buffers to save that little), else a trimmed copy.
   */
  take(rows: number): A {
    const used = rows * this.width;
    const spare = this.data.length - used;
    return (spare <= used / 8 ? this.data.subarray(0, used) : this.data.slice(0, used)) as A;
  }
}

const ROWS_AT_FIRST = 1024;

/**
 * Collects rows of inputs and labels or targets; every error names the file and the row. Its
 * buffers first hold 1024 rows; when they are full they are regrown for the number of rows the
 * file will have at the rate so far (its size over the bytes read per row, plus 5%), and at least
 * 1.25 times: a file of rows of similar length is read with one regrowth and no final copy.
 */
export class RowsBuilder {
  rows = 0;
  #capacity = 0;
  #bytesRead = 0;
  #x: RowStore<Float32Array> | undefined;
  #width: number | undefined;
  #labels: RowStore<Float64Array> | undefined;
  #targets: RowStore<Float32Array> | undefined;
  #maxLabel = -1;
  #firstYRow = 0;

  /**
   * `where` is `Cannot load "<path>"`, `bytes` the file's size, `width` the expected input width
   * when it is known.
   */
  constructor(
    readonly where: string,
    private readonly bytes: number,
    width: number | undefined,
    private readonly classes: number | undefined,
  ) {
    this.#width = width;
  }

  /** The input buffer: read it again after each {@linkcode addRow}, which may replace it. */
  get x(): Float32Array {
    return this.#x!.data;
  }

  /**
   * Starts row `line`, a line of `chars` characters, with `n` input values; returns the offset to
   * write them at in `x`. `what` names the values in the width error.
   */
  addRow(line: number, n: number, chars: number, what = "values"): number {
    if (this.#width === undefined) {
      if (n === 0) throw new RangeError(`${this.where}: row ${line} has no input values`);
      this.#width = n;
    }
    if (n !== this.#width) {
      const shown = n === 1 ? what.replace("values", "value") : what;
      throw new TypeError(`${this.where}: row ${line} has ${n} ${shown}, expected ${this.#width}`);
    }
    if (this.rows === this.#capacity) this.#grow();
    this.#bytesRead += chars;
    return this.rows++ * n;
  }

  #grow(): void {
    const rows = this.rows;
    const expected = rows === 0 ? 0 : Math.ceil(rows * (this.bytes / this.#bytesRead) * 1.05);
    const capacity = Math.max(ROWS_AT_FIRST, Math.ceil(rows * 1.25), expected);
    if (this.#x) {
      for (const store of [this.#x, this.#labels, this.#targets]) store?.resize(capacity, rows);
    } else {
      this.#x = new RowStore((k) => new Float32Array(k), this.#width!, capacity);
    }
    this.#capacity = capacity;
  }

  /** Records the integer class label of the row just started, row `line`. */
  label(line: number, value: number): void {
    if (this.#targets) this.#mixed(line, "an integer label", "float targets");
    if (!Number.isInteger(value) || value < 0) {
      throw new RangeError(
        `${this.where}: row ${line} has label ${value}, expected an integer class >= 0`,
      );
    }
    if (this.classes !== undefined && value >= this.classes) {
      throw new RangeError(
        `${this.where}: row ${line} has label ${value}, expected a class below ${this.classes}`,
      );
    }
    if (!this.#labels) {
      this.#labels = new RowStore((k) => new Float64Array(k), 1, this.#capacity);
      this.#firstYRow = line;
    }
    this.#labels.data[this.rows - 1] = value;
    if (value > this.#maxLabel) this.#maxLabel = value;
  }

  /**
   * Starts the `n` float targets of the row just started, row `line`; returns the buffer and the
   * offset to write them at.
   */
  addTargets(line: number, n: number): { data: Float32Array; at: number } {
    if (this.#labels) this.#mixed(line, "float targets", "an integer label");
    if (!this.#targets) {
      if (n === 0) throw new RangeError(`${this.where}: row ${line} has an empty "y"`);
      this.#targets = new RowStore((k) => new Float32Array(k), n, this.#capacity);
      this.#firstYRow = line;
    }
    if (n !== this.#targets.width) {
      throw new TypeError(
        `${this.where}: row ${line} has ${n} targets, expected ${this.#targets.width}`,
      );
    }
    return { data: this.#targets.data, at: (this.rows - 1) * n };
  }

  #mixed(line: number, has: string, other: string): never {
    throw new TypeError(
      `${this.where}: row ${line} has ${has} in "y", but row ${this.#firstYRow} has ${other}`,
    );
  }

  /** The inputs read; fails when there were no rows. */
  inputs(): DataInputs {
    if (this.rows === 0) throw new SyntaxError(`${this.where}: the file has no rows`);
    return { rows: this.rows, width: this.#width!, x: this.#x!.take(this.rows) };
  }

  /** The dataset read, every row of which has a label or targets; fails when there were no rows. */
  dataset(): Dataset {
    const { rows, width, x } = this.inputs();
    if (this.#targets) {
      const data = this.#targets.take(rows);
      return { rows, width, x, y: { kind: "targets", data, width: this.#targets.width } };
    }
    const labels = this.#labels!.data;
    const data = new BigInt64Array(rows);
    for (let i = 0; i < rows; i++) data[i] = BigInt(labels[i]!);
    const classes = this.classes ?? this.#maxLabel + 1;
    return { rows, width, x, y: { kind: "labels", data, classes } };
  }
}
