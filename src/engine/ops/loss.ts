/**
 * Losses: mean squared error, softmax cross-entropy (integer labels or soft targets) and binary
 * cross-entropy on logits. Each is numerically stable for any finite logits and returns the mean
 * over the batch unless `reduction` says `"sum"` or `"none"`.
 *
 * Cross-entropy with labels is the ONNX SoftmaxCrossEntropyLoss op (what `torch.onnx` exports for
 * `F.cross_entropy`) with a fused VJP; the others are composed and the autograd differentiates them.
 *
 * @module
 */

import { formatShape, str, type Value } from "../graph.ts";
import { assertFloat, knownSize, sameShape } from "../shapes.ts";
import type { Vjp } from "../vjp.ts";
import { int64s, scalar, shapeOf, sizeOf } from "./constant.ts";
import { add, div, exp, log, mul, neg, sub } from "./elementwise.ts";
import { meanOver, reduceSum } from "./reduce.ts";
import { cast } from "./cast.ts";
import { reshape, reshapeTo, unsqueeze } from "./shape.ts";
import { equal } from "./select.ts";
import { logSoftmax, relu } from "./activation.ts";

/** How a loss reduces its per-sample values. */
export type Reduction = "mean" | "sum" | "none";

/** Options of the losses. */
export interface LossOptions {
  /** `"mean"` (default) over all per-sample losses, `"sum"`, or `"none"` (one loss per sample). */
  reduction?: Reduction;
}

function reductionOf(opts: LossOptions): Reduction {
  const r = opts.reduction ?? "mean";
  if (r !== "mean" && r !== "sum" && r !== "none") {
    throw new RangeError(`Invalid reduction "${r}": expected "mean", "sum" or "none"`);
  }
  return r;
}

function reduce(perSample: Value, reduction: Reduction): Value {
  if (reduction === "none") return perSample;
  if (reduction === "sum") return reduceSum(perSample);
  return perSample.rank === 0 ? perSample : meanOver(perSample, undefined, false);
}

function sameShapes(op: string, a: Value, b: Value, what: string): void {
  assertFloat(op, a);
  if (a.dtype !== b.dtype || !sameShape(a.shape, b.shape)) {
    throw new TypeError(
      `Cannot apply ${op}: ${what} must match, a is ${a.dtype} ${a}, b is ${b.dtype} ${b}`,
    );
  }
}

/**
 * Mean squared error `mean((pred − target)²)`, composed.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { mseLoss } from "./loss.ts";
 * const g = new Graph();
 * const loss = mseLoss(g.input("pred", "F32", ["batch", 3]), g.input("y", "F32", ["batch", 3]));
 * ```
 */
export function mseLoss(pred: Value, target: Value, opts: LossOptions = {}): Value {
  sameShapes("mseLoss", pred, target, "dtypes and shapes");
  const d = sub(pred, target);
  return reduce(mul(d, d), reductionOf(opts));
}

/**
 * Softmax cross-entropy of `logits` [..., C] against int64 class labels [...] or float targets
 * [..., C] (one-hot or soft; each row should sum to 1). Stable for any finite logits: it never
 * exponentiates a logit, only differences from the row's log-sum-exp.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { crossEntropy } from "./loss.ts";
 * const g = new Graph();
 * const logits = g.input("logits", "F32", ["batch", 10]);
 * const loss = crossEntropy(logits, g.input("labels", "I64", ["batch"]));
 * const soft = crossEntropy(logits, g.input("probs", "F32", ["batch", 10]), { reduction: "sum" });
 * ```
 */
export function crossEntropy(logits: Value, target: Value, opts: LossOptions = {}): Value {
  const reduction = reductionOf(opts);
  assertFloat("crossEntropy", logits);
  if (logits.rank === 0) {
    throw new TypeError(`Cannot apply crossEntropy to scalar logits ${logits}`);
  }
  if (target.dtype !== "I64") {
    sameShapes("crossEntropy", logits, target, "logits and soft targets");
    return reduce(neg(reduceSum(mul(target, logSoftmax(logits, -1)), [-1])), reduction);
  }
  const rows = logits.shape.slice(0, -1);
  if (!sameShape(target.shape, rows)) {
    throw new TypeError(
      `Cannot apply crossEntropy: labels have shape ${formatShape(target.shape)}, expected ${
        formatShape(rows)
      } for logits ${logits}`,
    );
  }
  // SoftmaxCrossEntropyLoss puts classes on axis 1; flatten [..., C] to [N, C] when needed.
  const c = logits.shape[logits.rank - 1]!;
  const flat = logits.rank === 2 ? logits : reshape(logits, [-1, c]);
  const labels = logits.rank === 2 ? target : reshape(target, [-1]);
  const [loss] = logits.graph.node(
    "SoftmaxCrossEntropyLoss",
    [flat, labels],
    { reduction: str(reduction) },
    [
      { dtype: logits.dtype, shape: reduction === "none" ? [flat.shape[0]!] : [] },
      { dtype: logits.dtype, shape: flat.shape }, // log_prob, saved for backward
    ],
  );
  if (reduction !== "none" || logits.rank === 2) return loss!;
  return reshapeTo(loss!, shapeOf(target), target.shape);
}

// Fused: the forward is one onnxruntime kernel (the op torch.onnx exports) instead of LogSoftmax,
// a one-hot Mul and two reductions, and the backward is the closed form
// dLogits = (softmax − onehot)·dLoss rather than the chain rule back through those nodes.
// saved for backward: log_prob (output 1), so softmax = exp(log_prob); the labels
const softmaxCrossEntropyLossVjp: Vjp = ({ node, dy: [dy] }) => {
  const [x, labels] = node.inputs as Value[];
  const logProb = node.outputs[1]!;
  const reduction = (node.attrs["reduction"] as { value: string } | undefined)?.value ?? "mean";
  const dZ = sub(exp(logProb), oneHot(labels!, x!)); // [N, C]
  if (reduction === "none") return [mul(dZ, unsqueeze(dy!, [1])), null];
  const n = knownSize([x!.shape[0]!]);
  const perRow = reduction === "sum" ? dy! : n !== undefined
    ? div(dy!, n) // not mul by 1/n, which a float32 constant cannot hold exactly
    : div(dy!, cast(sizeOf(labels!), x!.dtype));
  return [mul(dZ, perRow), null];
};

/** One-hot rows [N, C] of x's dtype for int64 labels [N]. */
function oneHot(labels: Value, like: Value): Value {
  const g = labels.graph;
  const c = like.shape[1]!;
  const classes = typeof c === "number"
    ? int64s(g, Array.from({ length: c }, (_, i) => i))
    : g.node("Range", [scalar(g, 0, "I64"), classCount(like), scalar(g, 1, "I64")], {}, [{
      dtype: "I64",
      shape: [c],
    }])[0]!;
  return cast(equal(unsqueeze(labels, [1]), classes), like.dtype);
}

/** C of logits [N, C] as an int64 scalar, when C is symbolic. */
function classCount(like: Value): Value {
  return like.graph.node("Gather", [shapeOf(like), scalar(like.graph, 1, "I64")], {}, [{
    dtype: "I64",
    shape: [],
  }])[0]!;
}

/**
 * Binary cross-entropy on logits, `max(x, 0) − x·t + log(1 + exp(−|x|))`, stable for any finite x.
 *
 * Written with `−|x| = x − 2·relu(x)` so its only kink is relu's: the autograd then produces
 * `sigmoid(x) − t` everywhere, including at x = 0 (where writing `abs(x)` would give `−t`, as
 * relu' and sign both pick 0 there — and a zero-initialised head starts exactly at x = 0).
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { bceWithLogits } from "./loss.ts";
 * const g = new Graph();
 * const loss = bceWithLogits(g.input("z", "F32", ["batch", 1]), g.input("t", "F32", ["batch", 1]));
 * ```
 */
export function bceWithLogits(logits: Value, targets: Value, opts: LossOptions = {}): Value {
  sameShapes("bceWithLogits", logits, targets, "dtypes and shapes");
  const pos = relu(logits);
  const softplusTail = log(add(exp(sub(logits, mul(pos, 2))), 1)); // log(1 + e^-|x|)
  return reduce(add(sub(pos, mul(logits, targets)), softplusTail), reductionOf(opts));
}

/** Gradient rules of this family. */
export const VJPS: Record<string, Vjp> = {
  SoftmaxCrossEntropyLoss: softmaxCrossEntropyLossVjp,
};
