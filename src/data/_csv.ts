/**
 * Numeric CSV data files (RFC 4180, https://www.rfc-editor.org/rfc/rfc4180): comma-separated
 * numbers, an optional header row, and an optional integer label column.
 *
 * No CSV library: numeric data has one row per line and no quoting, so a line is split on commas
 * (native `String.split`) and each cell goes through `Number`. On 60,000 × 785 cells (256 MB) that
 * takes 2.4 s where csv-parse 7.0.3 takes 12.5 s, building the same strings one record at a time.
 * Lines holding a `"` (quoted header names, say) go through a small RFC 4180 cell splitter; a
 * quoted cell cannot span lines, as no number needs a line break.
 *
 * @module
 */

import type { Dataset } from "./dataset.ts";
import { type DataInputs, openLines, quote, RowsBuilder } from "./_rows.ts";

/** Options of {@linkcode readCsv}. */
export interface CsvOptions {
  readonly width?: number;
  readonly classes?: number;
  /** A header name, or a 0-based index (negative counts from the end). */
  readonly labelColumn?: string | number;
  /** Whether row 1 is a header; default: it is when one of its cells is not a number. */
  readonly header?: boolean;
}

/** Reads a CSV file: a dataset when a label column is named, else inputs only. */
export async function readCsv(
  path: string | URL,
  where: string,
  options: CsvOptions,
): Promise<Dataset | DataInputs> {
  let b: RowsBuilder | undefined;
  let names: string[] | undefined;
  let label = -1; // index of the label column, or -1
  const { bytes, lines } = await openLines(path, where);
  let line = 0;
  for await (const text of lines) {
    line++;
    if (text.trim() === "") continue;
    const cells = text.includes('"') ? splitQuoted(text, line, where) : text.split(",");
    if (b === undefined) {
      const header = options.header ?? cells.some((c) => !looksNumeric(c));
      if (header) names = cells.map((c) => c.trim());
      const why = options.header === false ? "header is false" : `row ${line} is all numbers`;
      label = labelIndex(options.labelColumn, cells.length, names, where, why);
      const extra = label >= 0 ? 1 : 0;
      if (header && options.width !== undefined && cells.length !== options.width + extra) {
        throw new TypeError(
          `${where}: row ${line} (the header) has ${cells.length} columns, expected ${
            options.width + extra
          }${extra ? ` (${options.width} inputs and the label)` : ""}`,
        );
      }
      b = new RowsBuilder(
        where,
        bytes,
        options.width ?? (header ? cells.length - extra : undefined),
        options.classes,
      );
      if (header) continue;
    }
    const what = label >= 0 ? "values besides the label" : "values";
    const n = label >= 0 ? cells.length - 1 : cells.length;
    const at = b.addRow(line, n, text.length + 1, what);
    const x = b.x;
    let j = at;
    for (let i = 0; i < cells.length; i++) {
      const cell = cells[i]!;
      const v = Number(cell);
      // Number("") and Number("  ") are 0: only a 0 needs the blank check.
      if (!Number.isFinite(v) || (v === 0 && cell.trim() === "")) {
        throw new TypeError(`${where}: row ${line}, ${column(i, names)}: ${describe(cell)}`);
      }
      if (i === label) b.label(line, v);
      else x[j++] = v;
    }
  }
  if (b === undefined) throw new SyntaxError(`${where}: the file has no rows`);
  return label >= 0 ? b.dataset() : b.inputs();
}

/** Number-like for header detection: NaN and infinities count, so such a row fails as data. */
function looksNumeric(cell: string): boolean {
  const t = cell.trim();
  return (t !== "" && !Number.isNaN(Number(t))) || /^[-+]?(nan|inf(inity)?)$/i.test(t);
}

function labelIndex(
  column: string | number | undefined,
  count: number,
  names: string[] | undefined,
  where: string,
  noHeader: string,
): number {
  if (column === undefined) return -1;
  if (typeof column === "number") {
    const i = column < 0 ? count + column : column;
    if (i < 0 || i >= count) {
      throw new RangeError(
        `${where}: labelColumn ${column} is out of range: the file has ${count} columns`,
      );
    }
    return i;
  }
  if (names === undefined) {
    throw new TypeError(
      `${where}: labelColumn ${
        quote(column)
      } names a column, but the file has no header row (${noHeader})`,
    );
  }
  const i = names.indexOf(column);
  if (i < 0) {
    const shown = names.slice(0, 5).map((n) => quote(n)).join(", ");
    throw new RangeError(
      `${where}: no column is named ${quote(column)}; the header has ${shown}${
        names.length > 5 ? ", …" : ""
      } (${names.length} columns)`,
    );
  }
  return i;
}

/** `column 7 ("pixel5")`, 1-based as in a spreadsheet. */
function column(i: number, names: string[] | undefined): string {
  const name = names?.[i];
  return name === undefined || name === "" ? `column ${i + 1}` : `column ${i + 1} (${quote(name)})`;
}

function describe(cell: string): string {
  return cell.trim() === ""
    ? "the cell is empty, expected a number"
    : `${quote(cell)} is not a number`;
}

/** Splits one line into cells, unquoting `"..."` cells (`""` inside is a quote). */
function splitQuoted(text: string, line: number, where: string): string[] {
  const cells: string[] = [];
  let i = 0;
  while (true) {
    let cell: string;
    if (text[i] === '"') {
      cell = "";
      i++;
      while (true) {
        const q = text.indexOf('"', i);
        if (q < 0) {
          throw new SyntaxError(
            `${where}: row ${line} has an unterminated quote (a quoted cell cannot span lines)`,
          );
        }
        cell += text.slice(i, q);
        i = q + 1;
        if (text[i] !== '"') break;
        cell += '"';
        i++;
      }
      const comma = text.indexOf(",", i);
      const rest = text.slice(i, comma < 0 ? undefined : comma);
      if (rest.trim() !== "") {
        throw new SyntaxError(
          `${where}: row ${line} has text after a closing quote: ${quote(rest)}`,
        );
      }
      i = comma < 0 ? text.length : comma;
    } else {
      const comma = text.indexOf(",", i);
      cell = text.slice(i, comma < 0 ? undefined : comma);
      i = comma < 0 ? text.length : comma;
    }
    cells.push(cell);
    if (i >= text.length) return cells;
    i++; // past the comma
  }
}
