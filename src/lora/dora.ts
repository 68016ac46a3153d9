/**
 * DoRA's norms in onnxruntime (Liu et al. 2024, "DoRA: Weight-Decomposed Low-Rank Adaptation",
 * eq. 5), both from {@linkcode doraNorm}, the formula training and merging use:
 *
 * - {@linkcode DoraRatios}: the per-output serving scale `m / ‖W + scale·B·A‖`, with the base
 *   weight as an initializer: one small session per layer, compiled on first use and kept until
 *   {@linkcode DoraRatios.release}.
 * - {@linkcode weightRowNorms}: the initial magnitude `‖W‖` (PEFT's `get_weight_norm` at
 *   initialisation), the same formula as the norm that training and serving divide it by.
 *
 * @module
 */

import { Graph } from "../engine/graph.ts";
import { div } from "../engine/ops/elementwise.ts";
import { Session } from "../engine/runtime.ts";
import type { BaseModel, LinearLayer } from "../models/model.ts";
import { type Tensor, toFloat32 } from "../tensor.ts";
import type { LayerAdapter } from "./branch.ts";
import { doraNorm } from "./delta.ts";

/** One layer of an adapter, float32 in PEFT's Linear layout (the serving engine's form). */
export interface LayerWeights {
  /** LoRA A, `[r, in]`. */
  readonly A: Float32Array;
  /** LoRA B, `[out, r]`. */
  readonly B: Float32Array;
  /** The layer's rank r. */
  readonly rank: number;
  /** The branch's scale (`loraScale`: `alpha / r`, or `alpha / √r` with rsLoRA). */
  readonly scale: number;
  /** DoRA magnitude `[out]`, when the adapter is DoRA. */
  readonly magnitude?: Float32Array;
}

/**
 * The DoRA ratio sessions of one base model.
 *
 * @example
 * ```ts
 * import { ok, strictEqual } from "node:assert/strict";
 * import { DoraRatios } from "./dora.ts";
 * import { openSafetensorsModel } from "../models/blocks/safetensors_model.ts";
 * const model = await openSafetensorsModel("fixtures/peft/mlp_dora/base.safetensors");
 * const layer = model.layers[0]!; // stored [out, in]
 * const { inFeatures: n, outFeatures: m } = layer;
 * const dora = new DoraRatios(model);
 * const ratio = await dora.compute(layer, {
 *   A: new Float32Array(2 * n), B: new Float32Array(m * 2), rank: 2, scale: 2,
 *   magnitude: new Float32Array(m).fill(1),
 * });
 * strictEqual(ratio.length, m);
 * // B = 0 and a magnitude of 1: the ratio is 1 / ‖W‖ of each output row
 * const W = (await model.readTensor(layer.weightKey)).data as Float32Array;
 * const norm = (i: number) => Math.hypot(...W.subarray(i * n, (i + 1) * n));
 * ok(ratio.every((r, i) => Math.abs(r * norm(i) - 1) < 1e-6));
 * await dora.release();
 * model.close();
 * ```
 */
export class DoraRatios {
  #sessions = new Map<string, Promise<Session>>();
  #released = false;

  /**
   * Makes an empty cache: sessions are compiled on first use.
   *
   * @param model The base model whose weights the ratios are taken over.
   */
  constructor(readonly model: BaseModel) {}

  /** `m / ‖W + scale·B·A‖` of one layer, `[out]`; compiles the layer's session on first use. */
  async compute(layer: LinearLayer, lw: LayerWeights): Promise<Float32Array> {
    if (this.#released) throw new Error("Cannot compute DoRA ratios: the engine was closed");
    let p = this.#sessions.get(layer.name);
    if (!p) {
      p = compile(this.model, layer);
      this.#sessions.set(layer.name, p);
      p.catch(() => this.#sessions.delete(layer.name));
    }
    const session = await p;
    const out = await session.run({
      A: { dtype: "F32", shape: [lw.rank, layer.inFeatures], data: lw.A },
      B: { dtype: "F32", shape: [layer.outFeatures, lw.rank], data: lw.B },
      m: { dtype: "F32", shape: [layer.outFeatures], data: lw.magnitude! },
      scale: { dtype: "F32", shape: [], data: new Float32Array([lw.scale]) },
    });
    return Object.values(out)[0]!.data as Float32Array;
  }

  /** Number of compiled sessions (one per DoRA layer seen). */
  get size(): number {
    return this.#sessions.size;
  }

  /** Frees every session; later calls of {@linkcode DoraRatios.compute} fail. */
  async release(): Promise<void> {
    this.#released = true;
    const all = [...this.#sessions.values()];
    this.#sessions.clear();
    for (const p of all) await p.then((s) => s.release(), () => {});
  }
}

async function compile(model: BaseModel, layer: LinearLayer): Promise<Session> {
  const g = new Graph();
  const W = g.initializer("W", toFloat32(await model.readTensor(layer.weightKey))); // stored layout
  const A = g.input("A", "F32", ["r", layer.inFeatures]);
  const B = g.input("B", "F32", [layer.outFeatures, "r"]);
  const m = g.input("m", "F32", [layer.outFeatures]);
  const s = g.input("scale", "F32", []);
  g.output(div(m, doraNorm(W, layer.orientation, { A, B, coef: s }))); // [out]
  return await Session.compile(g, { threads: 1 });
}

/**
 * DoRA's initial magnitude: the L2 norm of each output of the base weight (PEFT's
 * `get_weight_norm` at initialisation, {@linkcode doraNorm} without a delta), `[out]`.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { weightRowNorms } from "./dora.ts";
 * import { planAdapters } from "../../adapters/targets.ts";
 * import { openSafetensorsModel } from "../models/blocks/safetensors_model.ts";
 * const model = await openSafetensorsModel("fixtures/mnist/base.safetensors");
 * const [ad] = planAdapters(model, { targetModules: ["fc1"], r: 4, loraAlpha: 8, useDora: true });
 * const m = await weightRowNorms(model, ad!);
 * deepStrictEqual(m.shape, [ad!.layer.outFeatures]);
 * model.close();
 * ```
 */
export async function weightRowNorms(
  model: BaseModel,
  ad: Pick<LayerAdapter, "layer">,
): Promise<Tensor<"F32">> {
  const w = toFloat32(await model.readTensor(ad.layer.weightKey));
  const g = new Graph();
  const norm = doraNorm(g.input("W", "F32", w.shape), ad.layer.orientation); // [out]
  g.output(norm);
  // One run per layer at initialisation, not per step.
  const session = await Session.compile(g, { threads: 1 });
  try {
    return toFloat32((await session.run({ W: w }))[norm.name]!);
  } finally {
    await session.release();
  }
}
