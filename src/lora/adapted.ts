/**
 * Builds the graph of a base model with adapters attached and a loss: the training graph. It is
 * `loraHook` (`branch.ts`) plus dropout masks and the loss; the parity check and the
 * adapter-inputs export attach the same hook, and serving uses the stacked branch (`multi.ts`).
 *
 * @module
 */

import { Graph, type Value } from "../engine/graph.ts";
import { dropout } from "../engine/ops/dropout.ts";
import { bceWithLogits, crossEntropy, mseLoss } from "../engine/ops/loss.ts";
import type { BaseModel } from "../models/model.ts";
import type { MaskInput } from "../engine/ops/dropout.ts";
import { type AdapterInputs, type LayerAdapter, loraHook } from "./branch.ts";

/** Loss names the trainer accepts. */
export type LossName = "mse" | "cross_entropy" | "bce";

/** Options of {@link buildAdapted}. */
export interface BuildAdaptedOptions {
  /** LoRA dropout probability on the branch inputs (training only). */
  dropout?: number;
  /** Append a loss: declares `labels` (cross-entropy) or `targets` (mse, bce) as inputs. */
  loss?: LossName;
  /** The graph to build into (default: a new one). */
  graph?: Graph;
  /** Source tensors (biases, `modules_to_save` weights) to declare as trainable graph inputs. */
  trainable?: ReadonlySet<string>;
}

/** A base model with adapter branches, as a graph. */
export interface AdaptedGraph {
  /** The graph built into (`opts.graph`, or a new one). */
  readonly graph: Graph;
  /** The model's first data input. */
  readonly input: Value;
  /** Every data input of the model, in its order. */
  readonly inputs: readonly Value[];
  /** The model's first output (logits or block output). */
  readonly output: Value;
  /** Adapter inputs by layer name. */
  readonly adapterInputs: Map<string, AdapterInputs>;
  /** Dropout mask inputs, fed by the trainer. */
  readonly masks: MaskInput[];
  /** The scalar loss, when `opts.loss` asked for one. */
  readonly loss: Value | null;
  /** `labels` or `targets`, when a loss was added. */
  readonly target: Value | null;
}

/**
 * Builds `model` with `adapters` attached.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { buildAdapted } from "./adapted.ts";
 * import { planAdapters } from "../../adapters/targets.ts";
 * import { openSafetensorsModel } from "../models/blocks/safetensors_model.ts";
 * const model = await openSafetensorsModel("fixtures/mnist/base.safetensors");
 * const adapters = planAdapters(model, { targetModules: ["fc1"], r: 4, loraAlpha: 8 });
 * const { adapterInputs, loss, target } = buildAdapted(model, adapters, { loss: "cross_entropy" });
 * deepStrictEqual([...adapterInputs.keys()], ["fc1"]);
 * deepStrictEqual([loss!.shape, target!.name], [[], "labels"]); // a scalar of the `labels` input
 * model.close();
 * ```
 */
export function buildAdapted(
  model: BaseModel,
  adapters: readonly LayerAdapter[],
  opts: BuildAdaptedOptions = {},
): AdaptedGraph {
  const g = opts.graph ?? new Graph();
  const adapterInputs = new Map<string, AdapterInputs>();
  const masks: MaskInput[] = [];
  const p = opts.dropout ?? 0;
  const hook = loraHook(adapters, adapterInputs, {
    dropout: p > 0
      ? (x, ad) => {
        const mask = g.input(`lora_dropout_mask.${ad.layer.name}`, x.dtype, x.shape);
        masks.push({ value: mask, p });
        return dropout(x, p, mask);
      }
      : undefined,
  });
  const built = model.build(g, { hook, trainable: opts.trainable });
  const input = built.inputs[0];
  const output = built.outputs[0];
  if (!input || !output) throw new TypeError(`Model ${model.source} has no input or no output`);
  for (const ad of adapters) {
    if (!adapterInputs.has(ad.layer.name)) {
      throw new Error(
        `Adapter layer "${ad.layer.name}" was not reached while building ${model.source}`,
      );
    }
  }
  let loss: Value | null = null;
  let target: Value | null = null;
  if (opts.loss === "cross_entropy") {
    target = g.input("labels", "I64", output.shape.slice(0, -1));
    loss = crossEntropy(output, target);
  } else if (opts.loss === "mse" || opts.loss === "bce") {
    target = g.input("targets", output.dtype, output.shape);
    loss = opts.loss === "mse" ? mseLoss(output, target) : bceWithLogits(output, target);
  }
  return { graph: g, input, inputs: built.inputs, output, adapterInputs, masks, loss, target };
}
