/**
 * DoRA's per-row output scale `m / ‖W + scale·B·A‖` for serving (Liu et al. 2024, "DoRA:
 * Weight-Decomposed Low-Rank Adaptation", eq. 5), computed in onnxruntime with the base weight as
 * an initializer: one small session per layer, compiled on first use and kept until
 * {@linkcode DoraRatios.release}.
 *
 * @module
 */

import { Graph } from "../engine/graph.ts";
import { add, div, mul, sqrt } from "../engine/ops/elementwise.ts";
import { matmul } from "../engine/ops/matmul.ts";
import { reduceSum } from "../engine/ops/reduce.ts";
import { transpose } from "../engine/ops/shape.ts";
import { Session } from "../engine/runtime.ts";
import type { BaseModel, LinearLayer } from "../models/model.ts";
import { toFloat32 } from "../tensor.ts";

/** One DoRA layer of an adapter, PEFT layout. */
export interface DoraLayer {
  readonly A: Float32Array; // [r, in]
  readonly B: Float32Array; // [out, r]
  readonly rank: number;
  readonly scale: number;
  readonly magnitude?: Float32Array; // [out]
}

/**
 * The DoRA ratio sessions of one base model.
 *
 * @example
 * ```ts ignore
 * const dora = new DoraRatios(model);
 * const ratio = await dora.compute(model.layers[0]!, { A, B, rank: 4, scale: 2, magnitude });
 * await dora.release();
 * ```
 */
export class DoraRatios {
  #sessions = new Map<string, Promise<Session>>();
  #released = false;

  constructor(readonly model: BaseModel) {}

  /** The ratio `[out]` of one layer of an adapter. */
  async compute(layer: LinearLayer, lw: DoraLayer): Promise<Float32Array> {
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
  const w = toFloat32(await model.readTensor(layer.weightKey));
  const W = g.initializer("W", w);
  const Wt = layer.orientation === "out_in" ? W : transpose(W); // [out, in]
  const A = g.input("A", "F32", ["r", layer.inFeatures]);
  const B = g.input("B", "F32", [layer.outFeatures, "r"]);
  const m = g.input("m", "F32", [layer.outFeatures]);
  const s = g.input("scale", "F32", []);
  const merged = add(Wt, mul(matmul(B, A), s)); // [out, in]
  g.output(div(m, sqrt(reduceSum(mul(merged, merged), [1])))); // [out]
  return await Session.compile(g, { threads: 1 });
}
