/**
 * JSON Lines data files (https://jsonlines.org): one object per line, `{"x": [...], "y": ...}`,
 * where `y` is an integer class label or an array of float targets. Blank lines are skipped.
 *
 * Each line goes through `JSON.parse` and its numbers are copied straight into the builder's
 * preallocated buffers; the parsed line is garbage at once. The native parser reads about
 * 150 MB/s on one core; a hand-written scanner of the same lines into a `Float32Array`
 * (`charCodeAt` digit by digit) measured slower, so there is none.
 *
 * @module
 */

import type { Dataset } from "./dataset.ts";
import type { InputSpec } from "./feeds.ts";
import { NamedRows } from "./_named.ts";
import { type DataInputs, openLines, RowsBuilder } from "./_rows.ts";

/** Options of {@link readJsonl}. */
interface JsonlOptions {
  width?: number;
  classes?: number;
  /** The model's inputs, for rows that give them by name (`{"inputs": {...}}`). */
  inputs?: readonly InputSpec[];
}

/** Reads inputs and, when `withY`, labels or targets from a JSONL file. */
export async function readJsonl(
  path: string | URL,
  where: string,
  options: JsonlOptions & { withY: true },
): Promise<Dataset>;
export async function readJsonl(
  path: string | URL,
  where: string,
  options: JsonlOptions & { withY: false },
): Promise<DataInputs>;
export async function readJsonl(
  path: string | URL,
  where: string,
  options: JsonlOptions & { withY: boolean },
): Promise<Dataset | DataInputs> {
  const { bytes, lines } = await openLines(path, where);
  let b: RowsBuilder | undefined;
  let named: NamedRows | undefined;
  let line = 0;
  for await (const text of lines) {
    line++;
    if (text.trim() === "") continue;
    const row = parseRow(text, line, where);
    // The first row decides: inputs by name (x empty), or one "x" array a row.
    b ??= row.inputs !== undefined
      ? (named = new NamedRows(where, options.inputs ?? []),
        new RowsBuilder(where, bytes, 0, options.classes))
      : new RowsBuilder(where, bytes, options.width, options.classes);
    if (named) {
      if (row.inputs === undefined) {
        throw new TypeError(`${where}: row ${line} has no "inputs", as the first row has`);
      }
      named.add(line, row.inputs);
      b.addRow(line, 0, text.length + 1);
      if (options.withY) readY(b, row.y, line);
      continue;
    }
    const xs = Array.isArray(row.x) && Array.isArray(row.x[0]) ? row.x.flat(Infinity) : row.x;
    if (!Array.isArray(xs)) {
      throw new TypeError(`${where}: row ${line} has no "x" array (nor "inputs" by name)`);
    }
    const at = b.addRow(line, xs.length, text.length + 1);
    const x = b.x;
    for (let i = 0; i < xs.length; i++) {
      const v: unknown = xs[i];
      if (typeof v !== "number" || !Number.isFinite(v)) throw notNumber(where, line, `x[${i}]`, v);
      x[at + i] = v;
    }
    if (options.withY) readY(b, row.y, line);
  }
  if (!b) throw new SyntaxError(`${where}: the file has no rows`);
  const read = options.withY ? b.dataset() : b.inputs();
  return named ? { ...read, inputs: named.take() } : read;
}

function parseRow(text: string, line: number, where: string): Record<string, unknown> {
  let row: unknown;
  try {
    row = JSON.parse(text);
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    throw new SyntaxError(`${where}: row ${line} is not valid JSON: ${why}`, { cause: error });
  }
  if (typeof row !== "object" || row === null || Array.isArray(row)) {
    throw new TypeError(`${where}: row ${line} is not an object like {"x": [...], "y": ...}`);
  }
  return row as Record<string, unknown>;
}

function readY(b: RowsBuilder, y: unknown, line: number): void {
  if (typeof y === "number") {
    if (!Number.isInteger(y)) {
      throw new TypeError(
        `${b.where}: row ${line} has "y" ${y}, expected an integer class label or an array of targets`,
      );
    }
    b.label(line, y);
  } else if (Array.isArray(y)) {
    const { data, at } = b.addTargets(line, y.length);
    for (let i = 0; i < y.length; i++) {
      const v: unknown = y[i];
      if (typeof v !== "number" || !Number.isFinite(v)) {
        throw notNumber(b.where, line, `y[${i}]`, v);
      }
      data[at + i] = v;
    }
  } else if (y === undefined) {
    throw new TypeError(
      `${b.where}: row ${line} has no "y" (an integer label or an array of targets)`,
    );
  } else {
    throw new TypeError(
      `${b.where}: row ${line} has "y" ${
        cut(JSON.stringify(y))
      }, expected an integer class label or an array of targets`,
    );
  }
}

/** `1e999` parses to Infinity: it is named as such, not by its JSON (`null`). */
function notNumber(where: string, line: number, at: string, v: unknown): Error {
  if (typeof v === "number") {
    return new RangeError(`${where}: row ${line}, ${at} is ${v}, expected a finite number`);
  }
  return new TypeError(
    `${where}: row ${line}, ${at} is ${cut(JSON.stringify(v))}, expected a number`,
  );
}

/** JSON text cut to 40 characters for an error message. */
function cut(json: string): string {
  return json.length > 40 ? `${json.slice(0, 40)}…` : json;
}
