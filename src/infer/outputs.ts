/**
 * Reading a model's output rows as a classifier's or a regressor's: the class of each row (arg-max
 * over the last axis; for a one-wide output, logit > 0), probabilities (softmax over the last axis;
 * for a one-wide output, the sigmoid), and a score against the data's `y` (accuracy for integer
 * labels, mean squared error for float targets). `ffwd predict --argmax`, `--probs` and its score
 * line use these; the CLI does no math.
 *
 * @module
 */

import type { Dataset } from "../data/dataset.ts";
import { argmaxAt } from "../tensor.ts";

/** An output `[rows, …shape]`, row-major, as `ffwd predict` collects it. */
export interface OutputRows {
  readonly rows: number;
  /** The shape of one row (`[k]` for a `[rows, k]` output). */
  readonly shape: readonly number[];
  readonly y: Float32Array;
}

/** The size of the last axis of a row (1 for a scalar row). */
function lastAxis(shape: readonly number[]): number {
  return shape.length ? shape[shape.length - 1]! : 1;
}

/**
 * The class of every vector along the last axis: its arg-max (the first on ties), or for a
 * one-wide axis `1` when the logit is positive, else `0`. The result's rows drop the last axis:
 * `[rows, k]` gives `[rows]`.
 *
 * @example
 * ```ts
 * import { argmaxRows } from "./outputs.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const out = argmaxRows({ rows: 2, shape: [3], y: new Float32Array([0, 5, 1, 2, 2, -1]) });
 * deepStrictEqual([...out.y], [1, 0]);
 * deepStrictEqual(out.shape, []);
 * ```
 */
export function argmaxRows(out: OutputRows): OutputRows {
  const k = lastAxis(out.shape);
  const n = k ? out.y.length / k : 0;
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const at = i * k;
    if (k === 1) {
      y[i] = out.y[at]! > 0 ? 1 : 0;
      continue;
    }
    y[i] = argmaxAt(out.y, at, k);
  }
  return { rows: out.rows, shape: out.shape.slice(0, -1), y };
}

/**
 * Softmax over the last axis (max-subtracted, so large logits do not overflow); a one-wide axis
 * gets the sigmoid instead, since a softmax over one value is always 1.
 *
 * @example
 * ```ts
 * import { probabilities } from "./outputs.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const p = probabilities({ rows: 1, shape: [2], y: new Float32Array([0, 0]) });
 * deepStrictEqual([...p.y], [0.5, 0.5]);
 * ```
 */
export function probabilities(out: OutputRows): OutputRows {
  const k = lastAxis(out.shape);
  const y = new Float32Array(out.y.length);
  if (k === 1) {
    for (let i = 0; i < y.length; i++) y[i] = 1 / (1 + Math.exp(-out.y[i]!));
    return { ...out, y };
  }
  for (let at = 0; at < y.length; at += k) {
    let max = -Infinity;
    for (let j = 0; j < k; j++) max = Math.max(max, out.y[at + j]!);
    let sum = 0;
    for (let j = 0; j < k; j++) sum += Math.exp(out.y[at + j]! - max);
    for (let j = 0; j < k; j++) y[at + j] = Math.exp(out.y[at + j]! - max) / sum;
  }
  return { ...out, y };
}

/** What {@linkcode scoreRows} measured. */
export type Score =
  | { readonly accuracy: number; readonly correct: number; readonly rows: number }
  | { readonly mse: number; readonly rows: number };

/**
 * Scores the output against the data's `y`: integer labels by accuracy (the class
 * {@linkcode argmaxRows} gives, one per row), float targets by the mean squared error over every
 * value (of `out` as given: pass the probabilities to score them). A `RangeError` says why when
 * they cannot be compared (several classes per row, or targets of another width).
 *
 * @example
 * ```ts
 * import { scoreRows } from "./outputs.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const out = { rows: 2, shape: [2], y: new Float32Array([0, 1, 1, 0]) };
 * const y = { kind: "labels" as const, data: new BigInt64Array([1n, 1n]) };
 * deepStrictEqual(scoreRows(out, y), { accuracy: 0.5, correct: 1, rows: 2 });
 * ```
 */
export function scoreRows(out: OutputRows, y: Dataset["y"]): Score {
  const rows = out.rows;
  if (y.kind === "labels") {
    const classes = argmaxRows(out);
    if (classes.y.length !== rows) {
      throw new RangeError(
        `Cannot score accuracy: the output's rows are [${out.shape.join(", ")}], which give ` +
          `${classes.y.length / Math.max(rows, 1)} classes per row, not one per label`,
      );
    }
    let correct = 0;
    for (let r = 0; r < rows; r++) if (BigInt(classes.y[r]!) === y.data[r]) correct++;
    return { accuracy: rows ? correct / rows : 0, correct, rows };
  }
  if (y.data.length !== out.y.length) {
    throw new RangeError(
      `Cannot score the mean squared error: the targets have ${y.width} values per row, the ` +
        `output ${out.y.length / Math.max(rows, 1)}`,
    );
  }
  let sum = 0;
  for (let i = 0; i < out.y.length; i++) sum += (out.y[i]! - y.data[i]!) ** 2;
  return { mse: out.y.length ? sum / out.y.length : 0, rows };
}
