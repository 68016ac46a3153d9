/**
 * Dropout (Srivastava et al., 2014, "Dropout: a simple way to prevent neural networks from
 * overfitting", JMLR 15), in its inverted form: in training `y = x · mask / (1 − p)`, so that
 * inference is the identity.
 *
 * The mask is a graph input that the trainer feeds every step, drawn on the host by
 * {@link dropoutMask} from the project's one seeded {@link Rng}. ONNX's own `Dropout` (and
 * `RandomUniform`) draw from generator state that lives inside the onnxruntime session and
 * cannot be saved or restored, so a run resumed from a checkpoint would draw different masks;
 * the `Rng` state is checkpointed, so a resumed run reproduces the uninterrupted one exactly.
 *
 * Imported graphs may contain ONNX `Dropout` nodes. In inference mode (no `training_mode` input,
 * or a constant false one) they are the identity, and their gradient passes through unchanged;
 * in training mode they cannot be differentiated. Builders that import such nodes should emit
 * {@link dropoutInference} (an `Identity`) instead.
 *
 * @module
 */

import type { Rng } from "../../rng.ts";
import type { Tensor } from "../../tensor.ts";
import type { Value } from "../graph.ts";
import { broadcastShapes, sameShape } from "../shapes.ts";
import type { Vjp } from "../vjp.ts";
import { constantInts } from "./constant.ts";
import { mul } from "./elementwise.ts";
import { identity } from "./shape.ts";

function checkP(p: number): void {
  if (!(p >= 0 && p < 1)) {
    throw new RangeError(`Invalid dropout probability ${p}: expected 0 <= p < 1`);
  }
}

/**
 * Training-mode dropout: `x · mask / (1 − p)`, where `mask` is a graph input of 0s and 1s of
 * x's dtype, of x's shape or broadcasting to it (e.g. `[1, features]` to drop the same features
 * for a whole batch), fed each step from {@link dropoutMask}. Built from `Mul`, so the gradient
 * is `dy · mask / (1 − p)`.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { dropout } from "./dropout.ts";
 * const g = new Graph();
 * const h = g.input("h", "F32", ["batch", 16]);
 * const mask = g.input("dropout_mask.0", "F32", ["batch", 16]);
 * const y = dropout(h, 0.1, mask);
 * ```
 */
export function dropout(x: Value, p: number, mask: Value): Value {
  checkP(p);
  if (
    mask.dtype !== x.dtype || !sameShape(broadcastShapes("Dropout", x.shape, mask.shape), x.shape)
  ) {
    throw new TypeError(
      `Cannot apply Dropout: the mask must be ${x.dtype} and broadcast to x, x is ${x.dtype} ${x}, mask is ${mask.dtype} ${mask}`,
    );
  }
  const kept = mul(x, mask);
  return p === 0 ? kept : mul(kept, 1 / (1 - p));
}

/**
 * A dropout mask of `shape`: each element is 0 with probability `p` and 1 otherwise, drawn in
 * row-major order from `rng` (one draw per element, whatever `p`), so the same generator state
 * gives the same mask.
 *
 * @example
 * ```ts
 * import { Rng } from "../../rng.ts";
 * import { dropoutMask } from "./dropout.ts";
 * const mask = dropoutMask(new Rng(42), [32, 16], 0.1); // F32 [32, 16] of 0s and 1s
 * ```
 */
export function dropoutMask(rng: Rng, shape: readonly number[], p: number): Tensor<"F32"> {
  checkP(p);
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new RangeError(`Invalid dropout mask shape [${shape.join(", ")}]`);
    }
    n *= d;
  }
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = rng.uniform() < p ? 0 : 1;
  return { dtype: "F32", shape: [...shape], data };
}

/**
 * Inference-mode dropout, the identity (an ONNX `Identity` node): what an imported ONNX `Dropout`
 * in inference mode computes.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { dropoutInference } from "./dropout.ts";
 * const y = dropoutInference(new Graph().input("h", "F32", ["batch", 16]));
 * ```
 */
export function dropoutInference(x: Value): Value {
  return identity(x);
}

// ONNX Dropout(data, ratio?, training_mode?) in inference mode: dX = dY
const dropoutVjp: Vjp = ({ node, dy: [dy] }) => {
  const mode = node.inputs[2];
  if (mode && constantInts(mode)?.[0] !== 0) {
    throw new TypeError(
      `Cannot differentiate Dropout (node ${node.name}) in training mode: build it with dropout(x, p, mask)`,
    );
  }
  return [dy ?? null, null, null];
};

/** A dropout mask input the trainer feeds each step. */
export interface MaskInput {
  /** The graph input that receives the 0/1 mask; symbolic dimensions take the batch's rows. */
  readonly value: Value;
  /** Drop probability. */
  readonly p: number;
}

/** Gradient rules of this family (training-mode dropout is `Mul`s and needs none of its own). */
export const VJPS: Record<string, Vjp> = {
  Dropout: dropoutVjp,
};
