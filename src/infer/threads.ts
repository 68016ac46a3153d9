/**
 * How many onnxruntime threads a served model gets by default.
 *
 * A server runs one batch at a time on the thread that also reads requests, parses JSON and writes
 * answers. A second intra-op thread only pays when a run has enough work to split: for a small
 * model it adds a hand-off per op and a pool thread that spins after each run, taking the core the
 * HTTP work needs. So a model whose linear layers do few multiply-adds a row, and which has no other
 * op whose cost they would miss, is served on one thread; a larger one gets every core.
 *
 * @module
 */

import { Graph, type Value } from "../engine/graph.ts";
import { defaultThreads } from "../engine/runtime.ts";
import type { BaseModel } from "../models/model.ts";

/** Multiply-adds a row of the linear layers under which a model is served on one thread. */
const SMALL_ROW_MACS = 2_000_000;

/** Ops whose cost the linear layers' multiply-adds do not count. */
const UNCOUNTED = new Set(["Conv", "ConvTranspose", "LSTM", "GRU", "RNN", "Loop", "Scan", "If"]);

/**
 * Threads for serving `model`: one when it is small (its linear layers do under 2M
 * multiply-adds a row, as the MNIST MLP's 0.23M, and it has no convolution, recurrence, control
 * flow or product of two activations whose cost they would not count), else `cores`.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { servingThreads } from "./threads.ts";
 * import { openSafetensorsModel } from "../models/blocks/safetensors_model.ts";
 * const model = await openSafetensorsModel("fixtures/mnist/base.safetensors"); // 784→256→128→10
 * strictEqual(servingThreads(model, 2), 1);
 * model.close();
 * ```
 */
export function servingThreads(model: BaseModel, cores: number = defaultThreads()): number {
  let macs = 0;
  for (const l of model.layers) macs += l.inFeatures * l.outFeatures;
  if (cores <= 1 || macs >= SMALL_ROW_MACS) return Math.max(1, cores);
  const g = new Graph();
  model.build(g);
  const constant = new Set<Value>(); // values computed from initializers alone
  for (const n of g.nodes) {
    const ins = n.inputs.filter((v): v is Value => v !== null);
    const fixed = (v: Value) => v.kind === "initializer" || constant.has(v);
    if (ins.every(fixed)) n.outputs.forEach((v) => constant.add(v));
    else if (UNCOUNTED.has(n.op)) return cores;
    else if ((n.op === "MatMul" || n.op === "Gemm") && !ins.slice(0, 2).some(fixed)) return cores;
  }
  return 1;
}
