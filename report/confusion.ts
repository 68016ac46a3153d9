/**
 * `confusion.json`: the confusion matrix of a classification run's last evaluation, and its
 * rendering as a heatmap table.
 *
 * Format (written by the trainer beside `metrics.jsonl`; every key but `matrix` is optional):
 *
 * ```json
 * {
 *   "labels": ["cat", "dog", "bird"],
 *   "matrix": [[50, 2, 0], [3, 45, 1], [0, 4, 47]],
 *   "epoch": 10,
 *   "step": 300
 * }
 * ```
 *
 * - `matrix`: k rows of k counts (k ≥ 1). Row i is the TRUE class i, column j the PREDICTED
 *   class j, so `matrix[i][j]` counts the examples of class i predicted as j and the diagonal
 *   counts the correct ones. Counts are finite numbers ≥ 0 (integers in practice).
 * - `labels`: k class names, in the order of the rows; default `"0"` … `"k-1"`.
 * - `epoch`, `step`: which evaluation the counts are from.
 *
 * @module
 */

import { esc, formatInt, formatValue, percent } from "./_format.ts";

/** A parsed `confusion.json`. */
export interface Confusion {
  readonly labels: readonly string[];
  /** [k, k]: rows are true classes, columns predicted classes. */
  readonly matrix: readonly (readonly number[])[];
  readonly epoch?: number;
  readonly step?: number;
}

/**
 * Validates a parsed `confusion.json`; errors name `source` and what is wrong.
 *
 * @example
 * ```ts
 * import { parseConfusion } from "./confusion.ts";
 * import { strictEqual } from "node:assert/strict";
 * const c = parseConfusion({ labels: ["no", "yes"], matrix: [[8, 2], [1, 9]] });
 * strictEqual(c.matrix[1]![1], 9);
 * ```
 */
export function parseConfusion(json: unknown, source = "confusion.json"): Confusion {
  const where = `Cannot read "${source}"`;
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new TypeError(`${where}: expected a JSON object with a "matrix"`);
  }
  const { labels, matrix, epoch, step } = json as Record<string, unknown>;
  if (!Array.isArray(matrix) || matrix.length === 0) {
    throw new TypeError(`${where}: "matrix" must be a non-empty list of rows`);
  }
  const k = matrix.length;
  const rows = matrix.map((row, i) => {
    if (!Array.isArray(row) || row.length !== k) {
      const got = Array.isArray(row) ? `${row.length} values` : JSON.stringify(row) ?? "nothing";
      throw new TypeError(`${where}: row ${i} of "matrix" must have ${k} counts, got ${got}`);
    }
    return row.map((v, j) => {
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
        throw new RangeError(
          `${where}: "matrix"[${i}][${j}] must be a count >= 0, got ${JSON.stringify(v)}`,
        );
      }
      return v;
    });
  });
  let names: string[];
  if (labels === undefined || labels === null) {
    names = rows.map((_, i) => String(i));
  } else if (
    !Array.isArray(labels) || labels.length !== k || !labels.every((l) => typeof l === "string")
  ) {
    throw new TypeError(
      `${where}: "labels" must be ${k} strings (one per row of "matrix"), got ${
        JSON.stringify(labels)
      }`,
    );
  } else {
    names = labels;
  }
  const counter = (v: unknown) => typeof v === "number" && Number.isFinite(v) ? v : undefined;
  return {
    labels: names,
    matrix: rows,
    ...(counter(epoch) === undefined ? {} : { epoch: counter(epoch) }),
    ...(counter(step) === undefined ? {} : { step: counter(step) }),
  };
}

/**
 * ColorBrewer's sequential "Blues" for correct predictions (the diagonal) and "Oranges" for
 * mistakes: blue against orange stays distinct in every common form of colour blindness.
 */
const BLUES = ["#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#3182bd", "#08519c"];
const ORANGES = ["#fff5eb", "#fee6ce", "#fdd0a2", "#fdae6b", "#fd8d3c", "#e6550d", "#a63603"];

/**
 * The colour of a cell holding `share` of its row. The square root spreads the small shares
 * that mistakes usually have (3% of a row is a visible tint, not white).
 */
function shade(stops: readonly string[], share: number): string {
  const t = Math.sqrt(Math.min(1, Math.max(0, share))) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(t)), f = t - i;
  const rgb = (hex: string) => [1, 3, 5].map((k) => parseInt(hex.slice(k, k + 2), 16));
  const [a, b] = [rgb(stops[i]!), rgb(stops[i + 1]!)];
  return `#${
    a.map((c, k) => Math.round(c + (b[k]! - c) * f).toString(16).padStart(2, "0")).join("")
  }`;
}

/**
 * The confusion matrix as an HTML heatmap table: counts in the cells, shaded by their share of
 * the row (where that class goes) in blue on the diagonal and orange off it, recall per row,
 * precision per column and the accuracy in the corner.
 *
 * @example
 * ```ts
 * import { confusionTable } from "./confusion.ts";
 * import { ok } from "node:assert/strict";
 * const html = confusionTable({ labels: ["no", "yes"], matrix: [[8, 2], [1, 9]] });
 * ok(html.includes("<table"));
 * ```
 */
export function confusionTable(c: Confusion): string {
  const k = c.labels.length;
  const rowSum = c.matrix.map((row) => row.reduce((a, b) => a + b, 0));
  const colSum = c.labels.map((_, j) => c.matrix.reduce((a, row) => a + row[j]!, 0));
  const total = rowSum.reduce((a, b) => a + b, 0);
  const correct = c.matrix.reduce((a, row, i) => a + row[i]!, 0);
  const ratio = (n: number, d: number) => (d > 0 ? percent(n / d) : "\u2014");
  const rotate = k > 12 || c.labels.some((l) => l.length > 6) ? " rotate" : "";
  const head = c.labels.map((l) => `<th scope="col"><span>${esc(l)}</span></th>`).join("");
  const body = c.matrix.map((row, i) => {
    const cells = row.map((n, j) => {
      const share = rowSum[i]! > 0 ? n / rowSum[i]! : 0;
      const colour = n === 0 ? "#ffffff" : shade(i === j ? BLUES : ORANGES, share);
      const ink = Math.sqrt(share) > 0.7 ? "#ffffff" : n === 0 ? "#9ca3af" : "#111827";
      const title = `true ${c.labels[i]}, predicted ${c.labels[j]}: ${formatValue(n)} (${
        ratio(n, rowSum[i]!)
      } of ${c.labels[i]})`;
      return `<td class="cell${
        i === j ? " diag" : ""
      }" style="background:${colour};color:${ink}" title="${esc(title)}">${
        esc(formatValue(n))
      }</td>`;
    }).join("");
    return `<tr><th scope="row">${esc(c.labels[i]!)}</th>${cells}<td class="recall">${
      ratio(row[i]!, rowSum[i]!)
    }</td></tr>`;
  });
  const precision = colSum.map((s, j) => `<td>${ratio(c.matrix[j]![j]!, s)}</td>`).join("");
  return [
    `<div class="confusion-wrap"><table class="confusion${rotate}">`,
    `<thead><tr><th class="corner">true \u2193 predicted \u2192</th>${head}<th class="side">recall</th></tr></thead>`,
    `<tbody>`,
    ...body,
    `</tbody>`,
    `<tfoot><tr><th scope="row">precision</th>${precision}<td class="total" title="${
      esc(`${formatInt(correct)} of ${formatInt(total)} correct`)
    }">${ratio(correct, total)}</td></tr></tfoot>`,
    `</table></div>`,
  ].join("\n");
}
