/**
 * Evaluation of a fine-tuning run (imported only by `finetune.ts`, which re-exports
 * {@link countCorrect}): the loss over a dataset, forward only with dropout off, and for class
 * labels the accuracy and the confusion matrix.
 *
 * @module
 */

import type { Session } from "../src/engine/runtime.ts";
import { argmaxAt, type Tensor } from "../src/tensor.ts";
import { type Dataset, sliceBatch } from "../src/data/dataset.ts";
import { type InputSpec, modelFeeds } from "../src/data/feeds.ts";
import { batchFeeds, type EvalResult } from "../src/train/trainer.ts";
import type { AdaptedGraph } from "../src/lora/adapted.ts";

/** Loss and accuracy over a dataset, forward only, dropout off. */
export async function evaluate(
  session: Session,
  built: AdaptedGraph,
  inputs: readonly InputSpec[],
  data: Dataset,
  params: ReadonlyMap<string, Float32Array>,
  batchSize: number,
): Promise<EvalResult> {
  let lossSum = 0, correct = 0;
  const classes = built.output.shape.at(-1);
  const k = typeof classes === "number" ? classes : 0;
  const matrix = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  for (let start = 0; start < data.rows; start += batchSize) {
    const b = sliceBatch(data, null, start, batchSize);
    const feeds = modelFeeds(inputs, batchFeeds(b, built.masks), "Cannot evaluate");
    for (const v of built.graph.inputs) {
      const d = params.get(v.name);
      if (d) feeds[v.name] = { dtype: "F32", shape: v.shape as number[], data: d };
    }
    const out = await session.run(feeds);
    lossSum += Number(out[built.loss!.name]!.data[0]) * b.rows;
    if (built.target?.name === "labels") {
      correct += countCorrect(out[built.output.name]!, b.feeds.labels!, k ? matrix : undefined);
    }
  }
  const loss = lossSum / data.rows;
  return built.target?.name === "labels"
    ? { loss, accuracy: correct / data.rows, confusion: matrix }
    : { loss };
}

/**
 * Rows whose arg-max equals the label; also counts `confusion[label][argmax]` when given.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { countCorrect } from "./finetune.ts";
 * const logits = { dtype: "F32" as const, shape: [2, 2], data: new Float32Array([0, 1, 1, 0]) };
 * const labels = { dtype: "I64" as const, shape: [2], data: new BigInt64Array([1n, 1n]) };
 * strictEqual(countCorrect(logits, labels), 1);
 * ```
 */
export function countCorrect(logits: Tensor, labels: Tensor, confusion?: number[][]): number {
  const z = logits.data as Float32Array;
  const y = labels.data as BigInt64Array;
  const c = logits.shape[logits.shape.length - 1]!;
  let n = 0;
  for (let r = 0; r < y.length; r++) {
    const best = argmaxAt(z, r * c, c);
    if (BigInt(best) === y[r]) n++;
    const row = confusion?.[Number(y[r])];
    if (row && best < row.length) row[best] = row[best]! + 1;
  }
  return n;
}
