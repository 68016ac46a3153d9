/**
 * Builds the graph of a base model with adapters attached: the one construction behind training,
 * `ffwd predict --adapter`, and the hot-swap inference engine.
 *
 * @module
 */

import { Graph, type Value } from "../engine/graph.ts";
import { dropout } from "../engine/ops/dropout.ts";
import { bceWithLogits, crossEntropy, mseLoss } from "../engine/ops/loss.ts";
import type { BaseModel } from "../models/model.ts";
import { type Tensor, toFloat32 } from "../tensor.ts";
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
  /** Float64 twin (for checks). */
  graph?: Graph;
  /** Source tensors (biases, `modules_to_save` weights) to declare as trainable graph inputs. */
  trainable?: ReadonlySet<string>;
}

/** A base model with adapter branches, as a graph. */
export interface AdaptedGraph {
  /** The graph built into (`opts.graph`, or a new one). */
  readonly graph: Graph;
  /** The model's data input. */
  readonly input: Value;
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
 * import { buildAdapted } from "./adapted.ts";
 * import { planAdapters } from "../../adapters/targets.ts";
 * import { openSafetensorsModel } from "../models/blocks/safetensors_model.ts";
 * const model = await openSafetensorsModel("fixtures/mnist/base.safetensors");
 * const adapters = planAdapters(model, { targetModules: ["fc1"], r: 4, loraAlpha: 8 });
 * const { adapterInputs, loss } = buildAdapted(model, adapters, { loss: "cross_entropy" });
 * [...adapterInputs.keys()]; // ["fc1"]; `loss` is a scalar of the `labels` input
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
  return { graph: g, input, output, adapterInputs, masks, loss, target };
}

/**
 * DoRA's initial magnitude: the L2 norm of each output row of the base weight (PEFT's
 * `get_weight_norm` at initialisation), in the Linear layout [out].
 */
export async function weightRowNorms(model: BaseModel, ad: LayerAdapter): Promise<Tensor<"F32">> {
  const w = toFloat32(await model.readTensor(ad.layer.weightKey)).data;
  const { inFeatures: n, outFeatures: m, orientation } = ad.layer;
  const norms = new Float64Array(m);
  // One pass over the weight at initialisation, not per step.
  if (orientation === "out_in") {
    for (let o = 0; o < m; o++) {
      for (let i = 0; i < n; i++) norms[o] = norms[o]! + w[o * n + i]! ** 2;
    }
  } else {
    for (let i = 0; i < n; i++) {
      for (let o = 0; o < m; o++) norms[o] = norms[o]! + w[i * m + o]! ** 2;
    }
  }
  return { dtype: "F32", shape: [m], data: Float32Array.from(norms, Math.sqrt) };
}
