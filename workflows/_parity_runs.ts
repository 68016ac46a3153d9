/**
 * The runs of a parity check (imported through `parity.ts`): a model in ffwd's engine with build
 * options, the unmerged adapter, and an ONNX file in a plain onnxruntime session.
 *
 * @module
 */

import * as ort from "npm:onnxruntime-node@1.30.0";
import { Graph } from "../src/engine/graph.ts";
import { Session, toOrt } from "../src/engine/runtime.ts";
import type { BaseModel, BuildOptions } from "../src/models/model.ts";
import type { Tensor } from "../src/tensor.ts";
import { type AdapterInputs, loraHook, peftKeys } from "../src/lora/branch.ts";
import type { MergePlan } from "./merge.ts";
import type { Probe } from "./parity.ts";

/**
 * Runs `model` (with build options: merged-weight overrides, a hook) on a probe in ffwd's engine
 * and returns every output, in order.
 *
 * @example
 * ```ts ignore
 * const [y] = await runModel(model, probe, { build: { overrides: merged.tensors } });
 * ```
 */
export async function runModel(
  model: BaseModel,
  probe: Probe,
  opts: { build?: BuildOptions; feeds?: Record<string, Tensor> } = {},
): Promise<Tensor[]> {
  const g = new Graph();
  const built = model.build(g, opts.build);
  for (const o of built.outputs) g.output(o);
  const feeds: Record<string, Tensor> = { ...opts.feeds };
  model.inputs.forEach((io, i) => (feeds[built.inputs[i]!.name] = probe.feeds[io.name]!));
  // One run of a few probe rows: pre-packing the weights would cost more than it saves.
  const session = await Session.compile(g, { prepack: false });
  try {
    const out = await session.run(feeds);
    return built.outputs.map((o) => out[o.name]!);
  } finally {
    await session.release();
  }
}

/**
 * The adapter's tensors as feeds of the unmerged graph, by PEFT key (float32).
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { adapterFeeds } from "./parity.ts";
 * import { planMerge } from "./merge.ts";
 * import { loadAdapter } from "../adapters/adapter.ts";
 * import { openSafetensorsModel } from "../src/models/blocks/safetensors_model.ts";
 * const model = await openSafetensorsModel("fixtures/peft/mlp_lora/base.safetensors");
 * const feeds = adapterFeeds(planMerge(model, await loadAdapter("fixtures/peft/mlp_lora")));
 * deepStrictEqual(Object.entries(feeds).map(([key, t]) => [key, t.shape]), [
 *   ["base_model.model.fc1.lora_A.weight", [4, 6]],
 *   ["base_model.model.fc1.lora_B.weight", [8, 4]],
 *   ["base_model.model.fc2.lora_A.weight", [2, 8]], // rank_pattern gives fc2 rank 2
 *   ["base_model.model.fc2.lora_B.weight", [8, 2]],
 * ]);
 * model.close();
 * ```
 */
export function adapterFeeds(plan: MergePlan): Record<string, Tensor<"F32">> {
  const feeds: Record<string, Tensor<"F32">> = {};
  for (const d of plan.deltas.values()) {
    const k = peftKeys(d.layer.name);
    const { inFeatures: n, outFeatures: m } = d.layer;
    feeds[k.A] = { dtype: "F32", shape: [d.rank, n], data: d.A };
    feeds[k.B] = { dtype: "F32", shape: [m, d.rank], data: d.B };
    if (d.magnitude) feeds[k.magnitude] = { dtype: "F32", shape: [m], data: d.magnitude };
  }
  return feeds;
}

/**
 * Run (a): the adapter unmerged (LoRA branches with A and B fed by PEFT key; replaced biases and
 * `modules_to_save` tensors as overrides).
 *
 * @example
 * ```ts ignore
 * const outputs = await runUnmerged(model, planMerge(model, adapter), probe);
 * ```
 */
export function runUnmerged(model: BaseModel, plan: MergePlan, probe: Probe): Promise<Tensor[]> {
  const declared = new Map<string, AdapterInputs>();
  return runModel(model, probe, {
    build: { hook: loraHook(plan.layers, declared), overrides: plan.replaced },
    feeds: adapterFeeds(plan),
  });
}

/**
 * Run (c) for ONNX: the written file in a plain onnxruntime-node session created from its path,
 * as a consumer would load it; returns the outputs in the file's order.
 *
 * @example
 * ```ts ignore
 * const outputs = await runOnnxFile("merged.onnx", probe);
 * ```
 */
export async function runOnnxFile(
  path: string,
  probe: Probe,
  feeds: Readonly<Record<string, Tensor<"F32">>> = {},
): Promise<Tensor[]> {
  const session = await ort.InferenceSession.create(path);
  try {
    const all = { ...probe.feeds, ...feeds };
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [k, t] of Object.entries(all)) ortFeeds[k] = toOrt(t);
    const out = await session.run(ortFeeds);
    return session.outputNames.map((n) => {
      const t = out[n]!;
      if (t.type !== "float32") {
        throw new TypeError(
          `Cannot compare output "${n}" of "${path}": it is ${t.type}, not float32`,
        );
      }
      return { dtype: "F32", shape: [...t.dims], data: t.data as Float32Array } as Tensor;
    });
  } finally {
    await session.release();
  }
}
