/**
 * Test helper of the gradient oracles: a small MLP with frozen base weights (initializers) and a
 * LoRA branch on every layer attached through `loraHook`, plus the one call that compiles
 * forward + backward (`grad` + `Session.compile`) and returns the loss and the adapter gradients.
 *
 * Imported only by `oracle_tfjs_test.ts` and `golden_torch_test.ts`.
 *
 * @module
 */

import { grad } from "../src/engine/autograd.ts";
import { Graph, type Shape, type Value } from "../src/engine/graph.ts";
import { Session } from "../src/engine/runtime.ts";
import { gemm, matmul } from "../src/engine/ops/matmul.ts";
import { add } from "../src/engine/ops/elementwise.ts";
import { cast, transpose } from "../src/engine/ops/shape.ts";
import { crossEntropy, mseLoss } from "../src/engine/ops/loss.ts";
import type { LinearLayer, LinearSite, Orientation } from "../src/models/model.ts";
import type { Tensor } from "../src/tensor.ts";
import {
  type AdapterInputs,
  type LayerAdapter,
  loraHook,
  loraScale,
  peftKeys,
} from "../src/lora/branch.ts";

/** One frozen linear layer of the MLP, as stored (any float dtype; cast to F32 in the graph). */
export interface MlpLayerSpec {
  readonly name: string;
  /** `[out, in]` (`out_in`, nn.Linear) or `[in, out]` (`in_out`, GPT-2 Conv1D). */
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly orientation: Orientation;
}

/** What {@link buildLoraMlp} builds. */
export interface MlpSpec {
  readonly layers: readonly MlpLayerSpec[];
  /** Applied between layers (not after the last). */
  readonly activation: (x: Value) => Value;
  /** Input shape, symbolic batch first: `["batch", 12]` or `["batch", "seq", 8]`. */
  readonly input: Shape;
  /** `"cross_entropy"` (int64 labels, input `labels`) or `"mse"` (float target, input `target`). */
  readonly loss: "cross_entropy" | "mse";
  readonly rank: number;
  readonly alpha: number;
  readonly rslora?: boolean;
}

/** The built MLP. */
export interface Mlp {
  readonly graph: Graph;
  readonly loss: Value;
  /** A and B of every layer, in layer order (`[A0, B0, A1, B1, ...]`). */
  readonly params: readonly Value[];
  readonly adapters: readonly LayerAdapter[];
}

/** Builds the MLP with its loss: inputs `x` and `labels` / `target`, adapters under PEFT keys. */
export function buildLoraMlp(spec: MlpSpec): Mlp {
  const g = new Graph();
  const adapters = spec.layers.map((l): LayerAdapter => ({
    layer: linearLayer(l),
    rank: spec.rank,
    alpha: spec.alpha,
    scale: loraScale(spec.alpha, spec.rank, spec.rslora ?? false),
    dora: false,
  }));
  const declared = new Map<string, AdapterInputs>();
  const hook = loraHook(adapters, declared);
  const x = g.input("x", "F32", spec.input);
  let h = x;
  spec.layers.forEach((l, i) => {
    h = hook(linearSite(g, h, l, adapters[i]!.layer));
    if (i < spec.layers.length - 1) h = spec.activation(h);
  });
  const out = spec.input.slice(0, -1).concat([h.shape[h.rank - 1]!]);
  const loss = spec.loss === "mse"
    ? mseLoss(h, g.input("target", "F32", out))
    : crossEntropy(h, g.input("labels", "I64", out.slice(0, -1)));
  const params = spec.layers.flatMap((l) => {
    const d = declared.get(l.name)!;
    return [d.A, d.B];
  });
  return { graph: g, loss, params, adapters };
}

function linearLayer(l: MlpLayerSpec): LinearLayer {
  const [a, b] = l.weight.shape as [number, number];
  const [outFeatures, inFeatures] = l.orientation === "out_in" ? [a, b] : [b, a];
  return {
    name: l.name,
    inFeatures,
    outFeatures,
    orientation: l.orientation,
    weightKey: `${l.name}.weight`,
    biasKey: l.bias ? `${l.name}.bias` : undefined,
    dtype: l.weight.dtype,
  };
}

/** `x·Wᵀ + b` (or `x·W + b` for `[in, out]`), as the block templates build a linear layer. */
function linearSite(g: Graph, x: Value, l: MlpLayerSpec, layer: LinearLayer): LinearSite {
  // Stored dtype in the initializer, cast in the graph: the float64 twin then keeps every digit.
  const weight = cast(g.initializer(layer.weightKey, l.weight), "F32");
  const bias = l.bias ? cast(g.initializer(layer.biasKey!, l.bias), "F32") : null;
  const transB = l.orientation === "out_in";
  let y: Value;
  if (x.rank === 2) y = gemm(x, weight, bias, { transB });
  else {
    y = matmul(x, transB ? transpose(weight) : weight);
    if (bias) y = add(y, bias);
  }
  return { layer, x, y, weight, bias };
}

/** Loss and adapter gradients of one run. */
export interface LossAndGrads {
  readonly loss: number;
  /** By PEFT key (`base_model.model.<layer>.lora_A.weight`). */
  readonly grads: Map<string, Float32Array | Float64Array>;
}

/**
 * Appends the backward pass for the adapters, compiles (float32, or the float64 twin) and runs
 * once. `feeds` holds `x` and `labels` / `target`; `adapter` holds A and B by PEFT key. Float
 * feeds are converted to the session's float dtype.
 */
export async function lossAndGrads(
  mlp: Mlp,
  feeds: Readonly<Record<string, Tensor>>,
  adapter: ReadonlyMap<string, Tensor>,
  opts: { float64?: boolean } = {},
): Promise<LossAndGrads> {
  const dParams = grad(mlp.loss, mlp.params);
  const session = await Session.compile(mlp.graph, {
    outputs: [mlp.loss, ...dParams],
    float64: opts.float64 ?? false,
  });
  const float = (t: Tensor): Tensor => {
    if (t.dtype !== "F32" && t.dtype !== "F64") return t;
    const src = t.data as Float32Array | Float64Array;
    const data = opts.float64 ? Float64Array.from(src) : Float32Array.from(src);
    return { dtype: opts.float64 ? "F64" : "F32", shape: t.shape, data } as Tensor;
  };
  try {
    const all: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(feeds)) all[k] = float(t);
    for (const p of mlp.params) {
      const t = adapter.get(p.name);
      if (!t) throw new TypeError(`Missing adapter tensor "${p.name}"`);
      all[p.name] = float(t);
    }
    const out = await session.run(all);
    const grads = new Map<string, Float32Array | Float64Array>();
    mlp.params.forEach((p, i) => {
      grads.set(p.name, out[dParams[i]!.name]!.data as Float32Array | Float64Array);
    });
    return { loss: Number(out[mlp.loss.name]!.data[0]), grads };
  } finally {
    await session.release();
  }
}

/** PEFT keys of the A and B of each layer, in layer order. */
export function adapterKeys(mlp: Mlp): string[] {
  return mlp.adapters.flatMap((a) => {
    const k = peftKeys(a.layer.name);
    return [k.A, k.B];
  });
}
