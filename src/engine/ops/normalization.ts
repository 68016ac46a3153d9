/**
 * Normalization layers: LayerNorm (Ba et al., arXiv:1607.06450) as the ONNX LayerNormalization op
 * (opset 17) with a fused VJP, and RMSNorm (Zhang & Sennrich, arXiv:1910.07467) composed from
 * primitives as LLaMA and T5 write it, or as the ONNX RMSNormalization op (opset 23).
 *
 * Both normalize over the axes `axis`..rank-1; `scale` (and `bias`) have those trailing dimensions.
 *
 * @module
 */

import { type Dim, float, formatShape, int, type Value } from "../graph.ts";
import { assertFloat, assertSameDtype, sameShape } from "../shapes.ts";
import type { Vjp } from "../vjp.ts";
import { add, mul, reciprocal, sqrt, sub } from "./elementwise.ts";
import { meanOver, reduceSum } from "./reduce.ts";
import { attr, leadingAxes, trailingAxes } from "./_helpers.ts";

/** Options of {@link layerNorm}. */
export interface LayerNormOptions {
  /** First normalized axis (default -1: the last one). */
  axis?: number;
  /** Added to the variance (default 1e-5, PyTorch's `nn.LayerNorm`). */
  epsilon?: number;
}

/** Options of {@link rmsNorm} and {@link rmsNormOp}. */
export interface RmsNormOptions {
  /** First normalized axis (default -1: the last one). */
  axis?: number;
  /** Added to the mean square (default 1e-6, LLaMA's `rms_norm_eps`). */
  epsilon?: number;
}

function checkParam(op: string, x: Value, p: Value, axis: number, what: string): void {
  assertSameDtype(op, x, p);
  const normalized = x.shape.slice(trailingAxes(x, axis)[0]);
  if (!sameShape(p.shape, normalized)) {
    throw new TypeError(
      `Cannot apply ${op}: ${what} has shape ${formatShape(p.shape)}, expected ${
        formatShape(normalized)
      } (the normalized dimensions of x ${formatShape(x.shape)})`,
    );
  }
}

/**
 * `(x − mean) / sqrt(var + epsilon) · scale + bias` over the axes from `axis` on (ONNX
 * LayerNormalization, opset 17). Mean and variance are those of each normalized slice; the
 * variance is biased (divides by n), as in PyTorch.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { layerNorm } from "./normalization.ts";
 * const g = new Graph();
 * const x = g.input("x", "F32", ["batch", 768]);
 * const y = layerNorm(x, g.input("ln.weight", "F32", [768]), g.input("ln.bias", "F32", [768]));
 * ```
 */
export function layerNorm(
  x: Value,
  scale: Value,
  bias: Value | null,
  opts: LayerNormOptions = {},
): Value {
  const { axis = -1, epsilon = 1e-5 } = opts;
  assertFloat("LayerNormalization", x);
  checkParam("LayerNormalization", x, scale, axis, "scale");
  if (bias) checkParam("LayerNormalization", x, bias, axis, "bias");
  const first = trailingAxes(x, axis)[0]!;
  const stats: Dim[] = x.shape.map((d, i) => (i < first ? d : 1));
  // Outputs 1 and 2 (Mean, InvStdDev) are saved for backward. Their type is the op's stash type,
  // float32 for every input dtype (ONNX allows no float64 stash and onnxruntime has no kernel for
  // one), so the backward casts them to x's dtype.
  const [y] = x.graph.node(
    "LayerNormalization",
    bias ? [x, scale, bias] : [x, scale],
    { axis: int(axis), epsilon: float(epsilon) },
    [
      { dtype: x.dtype, shape: x.shape },
      { dtype: "F32", shape: stats },
      { dtype: "F32", shape: stats },
    ],
  );
  return y!;
}

// Fused rather than composed: composing LayerNorm takes ~8 primitives (two reductions, Sub,
// Pow, Add, Sqrt, Div, Mul, Add) whose VJPs would emit ~25 backward nodes and keep their
// intermediates alive; the closed form needs two reductions.
// The statistics are recomputed from x in x's dtype rather than taken from the op's Mean and
// InvStdDev outputs: those are float32 for every input dtype (ONNX allows no float64 stash), so
// the float64 twin could not be checked to 1e-6 with them. Two reductions over [batch, D] are
// negligible next to the layer's GEMMs.
// saved for backward: x, scale
const layerNormalizationVjp: Vjp = ({ node, dy: [dy], needs }) => {
  const [x, scale] = node.inputs as Value[];
  const axis = attr(node, "axis", -1);
  const eps = attr(node, "epsilon", 1e-5);
  const axes = trailingAxes(x!, axis);
  const xc = sub(x!, meanOver(x!, axes));
  const rstd = reciprocal(sqrt(add(meanOver(mul(xc, xc), axes), eps)));
  return normBackward(x!, scale!, mul(xc, rstd), rstd, dy!, axis, true, needs);
};

/**
 * RMSNorm composed from primitives: `x / sqrt(mean(x², axes) + epsilon) · scale`, the LLaMA and
 * T5 formula (no mean subtraction, no bias). Composed because it is six cheap primitives whose
 * VJPs already exist, and it runs at opset 17.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { rmsNorm } from "./normalization.ts";
 * const g = new Graph();
 * const x = g.input("x", "F32", ["batch", 4096]);
 * const y = rmsNorm(x, g.input("norm.weight", "F32", [4096]));
 * ```
 */
export function rmsNorm(x: Value, scale: Value, opts: RmsNormOptions = {}): Value {
  const { axis = -1, epsilon = 1e-6 } = opts;
  assertFloat("RMSNorm", x);
  checkParam("RMSNorm", x, scale, axis, "scale");
  const rstd = reciprocal(sqrt(add(meanOver(mul(x, x), trailingAxes(x, axis)), epsilon)));
  return mul(mul(x, rstd), scale);
}

/**
 * RMSNorm as one ONNX RMSNormalization node (opset 23; onnxruntime 1.30 runs it in float32 and
 * float64). Same formula as {@link rmsNorm}.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { rmsNormOp } from "./normalization.ts";
 * const g = new Graph();
 * const x = g.input("x", "F32", ["batch", 4096]);
 * const y = rmsNormOp(x, g.input("norm.weight", "F32", [4096])); // the graph now needs opset 23
 * ```
 */
export function rmsNormOp(x: Value, scale: Value, opts: RmsNormOptions = {}): Value {
  const { axis = -1, epsilon = 1e-6 } = opts;
  assertFloat("RMSNormalization", x);
  checkParam("RMSNormalization", x, scale, axis, "scale");
  x.graph.requireOpset(23);
  return x.graph.node(
    "RMSNormalization",
    [x, scale],
    { axis: int(axis), epsilon: float(epsilon) },
    [{ dtype: x.dtype, shape: x.shape }],
  )[0]!;
}

// Fused for the same reason as LayerNormalization; the op outputs no statistics, so rstd is
// recomputed from x (one reduction) with the epsilon the forward used.
// saved for backward: x, scale
const rmsNormalizationVjp: Vjp = ({ node, dy: [dy], needs }) => {
  const [x, scale] = node.inputs as Value[];
  const axis = attr(node, "axis", -1);
  const eps = attr(node, "epsilon", 1e-5);
  const rstd = reciprocal(sqrt(add(meanOver(mul(x!, x!), trailingAxes(x!, axis)), eps)));
  return normBackward(x!, scale!, mul(x!, rstd), rstd, dy!, axis, false, needs);
};

/**
 * The shared tail of both fused VJPs. With `x̂` the normalized input, `g = dy·scale` and means
 * over the normalized axes: `dX = rstd·(g − mean(g) − x̂·mean(g·x̂))` for LayerNorm, and the same
 * without `mean(g)` for RMSNorm (which subtracts no mean).
 */
function normBackward(
  x: Value,
  scale: Value,
  xhat: Value,
  rstd: Value,
  dy: Value,
  axis: number,
  centered: boolean,
  needs: readonly boolean[],
): (Value | null)[] {
  const axes = trailingAxes(x, axis);
  const lead = leadingAxes(x, axis);
  let dX: Value | null = null;
  if (needs[0]) {
    const g = mul(dy, scale);
    let inner = sub(g, mul(xhat, meanOver(mul(g, xhat), axes)));
    if (centered) inner = sub(inner, meanOver(g, axes));
    dX = mul(rstd, inner);
  }
  const dScale = needs[1] ? reduceSum(mul(dy, xhat), lead) : null;
  const dBias = needs[2] ? reduceSum(dy, lead) : null;
  return [dX, dScale, dBias];
}

/** Gradient rules of this family. */
export const VJPS: Record<string, Vjp> = {
  LayerNormalization: layerNormalizationVjp,
  RMSNormalization: rmsNormalizationVjp,
};
