/**
 * DoRA's per-row output scale `m / ‖W + scale·B·A‖` for serving, computed in onnxruntime with the
 * base weight as an initializer (one small session per layer, compiled on first use).
 *
 * @module
 */

import { Graph } from "../engine/graph.ts";
import { add, div, mul, sqrt } from "../engine/ops/elementwise.ts";
import { matmul } from "../engine/ops/matmul.ts";
import { reduceSum } from "../engine/ops/reduce.ts";
import { transpose } from "../engine/ops/shape.ts";
import { Session } from "../engine/runtime.ts";
import type { BaseModel, LinearLayer } from "../model.ts";
import { toFloat32 } from "../tensor.ts";

const sessions = new WeakMap<BaseModel, Map<string, Promise<Session>>>();

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

/** The DoRA ratio of one layer of an adapter. */
export async function doraRatios(
  model: BaseModel,
  layer: LinearLayer,
  lw: { A: Float32Array; B: Float32Array; rank: number; scale: number; magnitude?: Float32Array },
): Promise<Float32Array> {
  let byLayer = sessions.get(model);
  if (!byLayer) sessions.set(model, byLayer = new Map());
  let p = byLayer.get(layer.name);
  if (!p) byLayer.set(layer.name, p = compile(model, layer));
  const session = await p;
  const out = await session.run({
    A: { dtype: "F32", shape: [lw.rank, layer.inFeatures], data: lw.A },
    B: { dtype: "F32", shape: [layer.outFeatures, lw.rank], data: lw.B },
    m: { dtype: "F32", shape: [layer.outFeatures], data: lw.magnitude! },
    scale: { dtype: "F32", shape: [], data: new Float32Array([lw.scale]) },
  });
  return Object.values(out)[0]!.data as Float32Array;
}
