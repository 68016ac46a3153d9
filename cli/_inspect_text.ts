/**
 * Text helpers shared by the `ffwd inspect` printers: aligned tables, counts, shapes, and names
 * made printable. Imported only by `inspect.ts` and its `_inspect_*.ts` siblings.
 *
 * @module
 */

/** Left- or right-aligned columns separated by two spaces, head first. */
export function table(head: string[], rows: string[][], right: boolean[]): string[] {
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (cells: string[]) =>
    cells.map((cell, c) => right[c] ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))
      .join("  ").trimEnd();
  return [line(head), ...rows.map(line)];
}

/** Lines indented by two spaces, under a heading. */
export function indent(lines: string[]): string[] {
  return lines.map((l) => `  ${l}`);
}

/** `key  value` lines under a heading, keys padded to one width. */
export function keyValues(entries: readonly (readonly [string, string])[]): string[] {
  const width = Math.max(0, ...entries.map(([k]) => printable(k).length));
  return entries.map(([k, v]) => `  ${printable(k).padEnd(width)}  ${printable(v)}`);
}

/** Shows names with control characters escaped, so one tensor stays on one line. */
export function printable(s: string): string {
  // deno-lint-ignore no-control-regex
  return /[\x00-\x1f\x7f]/.test(s) ? JSON.stringify(s) : s;
}

/** `1,605,632` */
export function count(n: number): string {
  return n.toLocaleString("en-US");
}

/** `3 tensors`, `1 tensor` */
export function plural(n: number, word: string): string {
  return `${count(n)} ${word}${n === 1 ? "" : "s"}`;
}

/**
 * `2 ("logits", "15")`: how many, then each name quoted, so a name that is a number is not read
 * as a count.
 */
export function names(list: readonly string[]): string {
  return `${count(list.length)}${
    list.length ? ` (${list.map((n) => JSON.stringify(n)).join(", ")})` : ""
  }`;
}

/** `[512, 784]`, `[batch, 784]` */
export function dims(shape: readonly (number | string)[]): string {
  return `[${shape.join(", ")}]`;
}

/** A number with at most 6 significant digits (`5.65685` for 16 / √8). */
export function short(x: number): string {
  return String(Number(x.toPrecision(6)));
}

/** A tolerance as people write it: `1e-5` rather than `0.00001`; `0.015625` and `0` as they are. */
export function tolerance(x: number): string {
  return x !== 0 && x < 1e-3 ? x.toExponential().replace(/\.?0*e/, "e") : String(x);
}

/** A JSON number, string or null, as `JSON.stringify` writes them (no raw newlines inside). */
const SCALAR = String.raw`(?:-?[\d.e+-]+|"(?:[^"\\\n]|\\.)*"|null)`;
const SCALAR_ARRAY = new RegExp(String.raw`\[\n\s*(${SCALAR}(?:,\n\s*${SCALAR})*)\n\s*\]`, "g");

/**
 * Indented JSON with short arrays of numbers and strings (shapes, module lists) kept on one line.
 */
export function prettyJson(value: unknown): string {
  // Raw newlines only occur between JSON tokens, never inside strings, so this cannot touch names.
  return JSON.stringify(value, null, 2).replace(SCALAR_ARRAY, (whole, items: string) => {
    const line = `[${items.split(/,\n\s*/).join(", ")}]`;
    return line.length <= 80 || !items.includes('"') ? line : whole;
  });
}
