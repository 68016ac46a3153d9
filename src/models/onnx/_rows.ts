/**
 * Whether a graph computes each row of its batch on its own, so that a batch size an exporter
 * baked into the inputs can be freed (see `freeBatch` in `_analyze.ts`).
 *
 * The check is structural and conservative. Values that carry the batch on axis 0 are followed
 * from the inputs; every node that reads one must be an op known to act per row with the
 * attributes it has: elementwise ops and activations, MatMul/Gemm with the batch on the left
 * and a weight on the right, convolutions and pooling, normalisations and reductions over axes
 * other than 0 (BatchNormalization in its inference form), Softmax over
 * an axis other than 0, Transpose keeping axis 0 first, Flatten after axis 0, a Reshape that copies
 * axis 0 (target `[0, …]`) or infers it from fixed row sizes (`[-1, 256]`), Concat/Split/Slice/Squeeze/Unsqueeze away from axis 0, Gather on
 * another axis. Anything else — a reduction over all axes, Softmax over axis 0, a Reshape to a
 * constant shape, an op this list does not know — keeps the declared batch.
 *
 * @module
 */

import type { NodeProto } from "../../onnx/gen/onnx_pb.ts";
import { attrInt, attrInts } from "./_attrs.ts";
import { describeNode, domainOf } from "./_graph.ts";
import type { Tensor } from "../../tensor.ts";

/** Ops that combine their inputs element by element (with broadcasting). */
const ELEMENTWISE = new Set([
  "Abs",
  "Add",
  "And",
  "Cast",
  "Ceil",
  "Clip",
  "Cos",
  "Div",
  "Dropout",
  "Elu",
  "Equal",
  "Erf",
  "Exp",
  "FastGelu",
  "Floor",
  "Gelu",
  "Greater",
  "GreaterOrEqual",
  "HardSigmoid",
  "HardSwish",
  "Identity",
  "IsInf",
  "IsNaN",
  "LeakyRelu",
  "Less",
  "LessOrEqual",
  "Log",
  "Max",
  "Mean",
  "Min",
  "Mish",
  "Mul",
  "Neg",
  "Not",
  "Or",
  "Pow",
  "PRelu",
  "QuickGelu",
  "Reciprocal",
  "Relu",
  "Round",
  "Selu",
  "Sigmoid",
  "Sign",
  "Sin",
  "Softplus",
  "Softsign",
  "Sqrt",
  "Sub",
  "Sum",
  "Tanh",
  "Where",
  "Xor",
]);

/** Whether `axis` (negative counts from the end) is certainly not axis 0 of a rank ≥ 2 value. */
const notFirst = (axis: number) => axis >= 1 || axis === -1;

/**
 * The first node that may mix rows of the batch-carrying `inputs`, described, or `null` when every
 * node acts per row. `constants` resolves axes given as inputs (opset 13+ reductions, Slice).
 */
export function rowMixer(
  nodes: readonly NodeProto[],
  inputs: readonly string[],
  constants: ReadonlyMap<string, Tensor>,
  index: ReadonlyMap<NodeProto, number>,
): string | null {
  const batched = new Set(inputs);
  const ints = (name: string | undefined): number[] | undefined => {
    const t = name ? constants.get(name) : undefined;
    return t ? Array.from(t.data as ArrayLike<number | bigint>, Number) : undefined;
  };
  for (const n of nodes) {
    const carried = n.input.map((i) => batched.has(i));
    if (!carried.some(Boolean)) continue;
    if (n.opType === "Shape" || n.opType === "Size") continue; // shape values, not rows
    if (!perRow(n, carried, ints)) {
      return describeNode(n, index.get(n) ?? -1);
    }
    for (const o of n.output) if (o) batched.add(o);
  }
  return null;
}

function perRow(
  n: NodeProto,
  carried: readonly boolean[],
  ints: (name: string | undefined) => number[] | undefined,
): boolean {
  if (domainOf(n) !== "" && !(domainOf(n) === "com.microsoft" && ELEMENTWISE.has(n.opType))) {
    return false;
  }
  if (ELEMENTWISE.has(n.opType)) return true;
  const axesOf = () => attrInts(n, "axes") ?? ints(n.input[1]);
  switch (n.opType) {
    case "MatMul":
      return !carried[1];
    case "Gemm":
      return !carried[1] && attrInt(n, "transA", 0) === 0;
    case "Softmax":
    case "LogSoftmax":
    case "Hardmax":
      return notFirst(attrInt(n, "axis", -1));
    case "LayerNormalization":
    case "RMSNormalization":
    case "SimplifiedLayerNormalization":
      return notFirst(attrInt(n, "axis", -1)) && !carried.slice(1).some(Boolean);
    case "ReduceMean":
    case "ReduceSum":
    case "ReduceMax":
    case "ReduceMin":
    case "ReduceProd":
    case "ReduceL1":
    case "ReduceL2":
    case "ReduceSumSquare":
    case "ReduceLogSumExp": {
      const axes = axesOf();
      return axes !== undefined && axes.length > 0 && axes.every(notFirst);
    }
    case "Transpose": {
      const perm = attrInts(n, "perm");
      return perm !== undefined && perm[0] === 0;
    }
    case "Flatten":
      return attrInt(n, "axis", 1) >= 1;
    case "Reshape": {
      // `[0, …]` copies axis 0. `[-1, fixed…]` (PyTorch's `x.view(-1, 256)`) keeps rows as rows
      // when a row holds exactly the fixed part; the dry run's shape rule checks that, and the
      // output must then lead with the batch.
      const shape = ints(n.input[1]);
      const rest = shape?.slice(1) ?? [];
      return !carried[1] && shape !== undefined && attrInt(n, "allowzero", 0) === 0 &&
        (shape[0] === 0 || (shape[0] === -1 && rest.every((d) => d > 0)));
    }
    case "Concat":
    case "Split":
      return notFirst(attrInt(n, "axis", 0));
    case "Squeeze":
    case "Unsqueeze": {
      const axes = axesOf();
      return axes !== undefined && axes.length > 0 && axes.every((a) => a >= 1);
    }
    case "Slice": {
      const axes = ints(n.input[3]);
      return axes !== undefined && axes.every((a) => a >= 1);
    }
    case "Gather":
      // Rows of the data must stay rows; batch-carrying indices (a lookup per row) are fine.
      return !carried[0] || attrInt(n, "axis", 0) >= 1;
    // Convolutions, pooling and per-sample normalisation slide over the axes after the channel.
    case "Conv":
    case "ConvTranspose":
    case "ConvInteger":
    case "MaxPool":
    case "AveragePool":
    case "LpPool":
    case "GlobalAveragePool":
    case "GlobalMaxPool":
    case "GlobalLpPool":
    case "LRN":
    case "InstanceNormalization":
    case "BatchNormalization": // inference form: running statistics, no batch statistics
      return !carried.slice(1).some(Boolean);
    default:
      return false;
  }
}
