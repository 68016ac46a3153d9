/**
 * Forward templates of feedforward blocks: a resolved block (see `resolve.ts`) becomes graph nodes.
 *
 * Every linear layer is `y = x · Wᵀ + b` (`x · W + b` for `[in, out]` storage) and goes through the
 * build's linear hook, so adapters attach the same way whatever the layout. Weights come in their
 * storage dtype (an F32 tensor referenced in place in its file, or half-precision bits in memory)
 * and half precision is cast to float32 inside the graph: ORT folds that cast once, when the
 * session is created, and nothing is converted on disk.
 *
 * @module
 */

import type { BuildOptions, Built, LinearLayer } from "../model.ts";
import type { Tensor } from "../../tensor.ts";
import type { Graph, InitData, Value } from "../../engine/graph.ts";
import { gelu, relu, sigmoid, silu, softmax, tanh } from "../../engine/ops/activation.ts";
import { add, mul } from "../../engine/ops/elementwise.ts";
import { gemm, matmul } from "../../engine/ops/matmul.ts";
import { layerNorm, rmsNorm } from "../../engine/ops/normalization.ts";
import { cast, identity, transpose } from "../../engine/ops/shape.ts";
import type { ActivationFn } from "./spec.ts";
import type { ResolvedBlock } from "./resolve.ts";

/** The data of a source tensor by key: in memory, or a reference to bytes in a file. */
export type WeightData = (key: string) => InitData;

/** Options of {@link buildBlock}. */
export interface BuildBlockOptions extends BuildOptions {
  /** Name of the graph input (default `"x"`; a fresh name when taken). */
  input?: string;
  /** Name of the graph output (default `"y"`; a fresh name when taken). */
  output?: string;
}

/** The graph of each activation function. */
export const ACTIVATION_BUILDERS: Readonly<Record<ActivationFn, (x: Value) => Value>> = {
  relu,
  gelu: (x) => gelu(x),
  gelu_tanh: (x) => gelu(x, { approximate: "tanh" }),
  // CLIP's QuickGELU (Radford et al. 2021): x · σ(1.702 x)
  quick_gelu: (x) => mul(x, sigmoid(mul(x, 1.702))),
  silu,
  sigmoid,
  tanh,
  softmax: (x) => softmax(x),
  identity: (x) => x,
};

/**
 * Builds the forward graph of `block` into `g`: one float32 input `[batch, in]`, one output
 * `[batch, out]`.
 *
 * @example
 * ```ts
 * import { Graph } from "../../engine/graph.ts";
 * import { tensor } from "../../tensor.ts";
 * import { resolveBlock } from "./resolve.ts";
 * import { buildBlock } from "./templates.ts";
 * const w = tensor("F32", [4, 8]);
 * const block = resolveBlock(
 *   { form: "sequential", layers: [{ name: "fc", activation: "relu" }] },
 *   new Map([["fc.weight", { name: "fc.weight", ...w }]]),
 *   "memory",
 * );
 * const g = new Graph();
 * const { outputs } = buildBlock(g, block, () => w);
 * g.output(outputs[0]!);
 * ```
 */
export function buildBlock(
  g: Graph,
  block: ResolvedBlock,
  data: WeightData,
  opts: BuildBlockOptions = {},
): Built {
  const x = g.input(free(g, opts.input ?? "x"), "F32", ["batch", block.inFeatures]);
  const param = (key: string): Value => weightValue(g, key, data, opts);
  const lin = (h: Value, layer: LinearLayer): Value => linear(h, layer, param, opts);
  let h = x;
  const norm = block.norm;
  if (norm?.position === "pre") h = normalize(h, norm, param);
  let y: Value;
  if (block.form === "gated") {
    const [gate, up, down] = block.layers as [LinearLayer, LinearLayer, LinearLayer];
    const act = ACTIVATION_BUILDERS[block.activations[0]!];
    y = lin(mul(act(lin(h, gate)), lin(h, up)), down); // [batch, out]
  } else {
    y = h;
    block.layers.forEach((layer, i) => {
      y = lin(y, layer);
      const a = block.activations[i];
      if (a) y = ACTIVATION_BUILDERS[a](y);
    });
  }
  if (block.residual) y = add(y, x);
  if (norm?.position === "post") y = normalize(y, norm, param);
  const out = identity(y, free(g, opts.output ?? "y"));
  return { inputs: [x], outputs: [out] };
}

/** One linear layer through the hook: `x · Wᵀ + b`, or `x · W + b` for `[in, out]` storage. */
function linear(
  x: Value,
  layer: LinearLayer,
  param: (key: string) => Value,
  opts: BuildOptions,
): Value {
  const weight = param(layer.weightKey);
  const bias = layer.biasKey ? param(layer.biasKey) : null;
  const transB = layer.orientation === "out_in";
  let y: Value;
  if (x.rank === 2) y = gemm(x, weight, bias, { transB });
  else {
    y = matmul(x, transB ? transpose(weight) : weight);
    if (bias) y = add(y, bias);
  }
  return opts.hook ? opts.hook({ layer, x, y, weight, bias }) : y;
}

/** A source tensor as a float32 value: override, trainable input, or frozen initializer. */
function weightValue(g: Graph, key: string, data: WeightData, opts: BuildOptions): Value {
  const o = opts.overrides?.get(key);
  let v: Value;
  if (o !== undefined && isTensor(o)) v = g.initializer(free(g, key), o);
  else if (o !== undefined) v = o;
  else {
    const d = data(key);
    v = opts.trainable?.has(key)
      ? g.input(free(g, key), "F32", [...d.shape])
      : g.initializer(free(g, key), d);
  }
  return cast(v, "F32"); // half precision: cast inside the graph, folded by ORT at session creation
}

function normalize(
  x: Value,
  norm: NonNullable<ResolvedBlock["norm"]>,
  param: (key: string) => Value,
): Value {
  const scale = param(norm.weightKey);
  const bias = norm.biasKey ? param(norm.biasKey) : undefined;
  if (norm.kind === "rms_norm") {
    const y = rmsNorm(x, scale, { epsilon: norm.eps });
    return bias ? add(y, bias) : y;
  }
  return layerNorm(x, scale, bias ?? null, { epsilon: norm.eps });
}

function isTensor(o: Tensor | Value): o is Tensor {
  return "data" in o;
}

/** `name` when the graph does not use it yet, else a fresh name starting with it. */
function free(g: Graph, name: string): string {
  return g.has(name) ? g.freshName(name) : name;
}
