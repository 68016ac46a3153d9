/**
 * Op handlers: layout ops and integer shape computations (see `op_map.ts`). Shape, Gather,
 * Unsqueeze, Squeeze, Concat, Slice, Cast, Reshape and ConstantOfShape fold at import when their
 * inputs are known (see `_fold.ts`), so PyTorch's runtime reshape targets become static.
 *
 * Gather is supported for shape computations only (constant data and indices): the feedforward
 * blocks ffwd fine-tunes have no embedding lookups, and a Gather on data fails with that reason.
 *
 * @module
 */

import type { Dim } from "../../engine/graph.ts";
import { normAxis } from "../../engine/shapes.ts";
import { constantOfShape, dimOf, int64s, sizeOf } from "../../engine/ops/constant.ts";
import { concat, split } from "../../engine/ops/concat.ts";
import { slice } from "../../engine/ops/slice.ts";
import {
  cast,
  expand,
  flatten,
  reshape,
  squeeze,
  transpose,
  unsqueeze,
} from "../../engine/ops/shape.ts";
import { isFloat, numel, type Tensor, toFloat32 } from "../../tensor.ts";
import { attrFloat, attrInt, attrInts, attrString, attrTensor } from "./_attrs.ts";
import { computeDtype, type OpContext, type OpHandler } from "./_context.ts";
import * as fold from "./_fold.ts";
import { dtypeOfCode, tensorFromProto } from "../../io/onnx/tensor_proto.ts";

/** Axes from an attribute before `since`, from input `i` from then on (undefined if absent). */
function axesOf(ctx: OpContext, i: number, since: number): number[] | undefined {
  if (ctx.opset < since) return attrInts(ctx.node, "axes");
  return ctx.has(i) ? ctx.ints(i, "axes") : undefined;
}

const reshapeOp: OpHandler = (ctx) => {
  const target = ctx.opset < 5 ? attrInts(ctx.node, "shape") : ctx.folded(1)?.data;
  if (!target) return ctx.fail("the target shape is computed at run time; ffwd needs it at import");
  const allowzero = attrInt(ctx.node, "allowzero", 0) === 1;
  const f = ctx.folded(0);
  if (f && target.every((d) => typeof d === "number")) return [fold.reshape(f, target as number[])];
  const x = ctx.value(0);
  const dims: Dim[] = target.map((d, i) => (d === 0 && !allowzero ? x.shape[i]! : d));
  return [reshape(x, dims)];
};

const castOp: OpHandler = (ctx) => {
  const to = ctx.node.attribute.find((a) => a.name === "to");
  const code = to && to.s.length
    ? CAST_NAMES[new TextDecoder().decode(to.s)]
    : attrInt(ctx.node, "to");
  if (code === undefined) return ctx.fail("the target type is missing");
  const dtype = computeDtype(dtypeOfCode(code, `the target type of node "${ctx.node.name}"`));
  const f = ctx.folded(0);
  if (f && fold.isIntDtype(dtype)) return [{ ...f, dtype }];
  if (f && fold.isNumeric(f) && isFloat(dtype)) {
    const t = toFloat32(fold.tensorOf(f));
    return [{ constant: dtype === "F64" ? { ...t, dtype, data: Float64Array.from(t.data) } : t }];
  }
  return [cast(ctx.value(0), dtype)];
};

/** Type names of opset-1 Cast (`to` was a string then). */
const CAST_NAMES: Record<string, number> = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
};

const concatOp: OpHandler = (ctx) => {
  const axis = attrInt(ctx.node, "axis", 1);
  const parts = Array.from({ length: ctx.inputCount }, (_, i) => i).filter((i) => ctx.has(i));
  const folded = parts.map((i) => ctx.folded(i));
  if (folded.every((f) => f !== undefined)) {
    const r = fold.concat(folded as fold.Folded[]);
    if (r) return [r];
  }
  return [concat(parts.map((i) => ctx.value(i)), axis)];
};

const splitOp: OpHandler = (ctx) => {
  const x = ctx.value(0);
  const axis = normAxis("Split", attrInt(ctx.node, "axis", 0), x.rank);
  let sizes = ctx.opset < 13
    ? attrInts(ctx.node, "split")
    : ctx.has(1)
    ? ctx.ints(1, "split")
    : undefined;
  if (!sizes) {
    const d = x.shape[axis]!;
    const n = attrInt(ctx.node, "num_outputs") ?? ctx.node.output.length;
    if (typeof d !== "number") return ctx.fail(`cannot split symbolic dimension "${d}" evenly`);
    const chunk = Math.ceil(d / n);
    sizes = Array.from({ length: n }, (_, i) => Math.max(0, Math.min(chunk, d - i * chunk)));
  }
  return split(x, sizes, axis);
};

const sliceOp: OpHandler = (ctx) => {
  const old = ctx.opset < 10;
  const starts = old ? attrInts(ctx.node, "starts") : ctx.ints(1, "starts");
  const ends = old ? attrInts(ctx.node, "ends") : ctx.ints(2, "ends");
  if (!starts || !ends) return ctx.fail("starts and ends are required");
  const axes = old ? attrInts(ctx.node, "axes") : ctx.has(3) ? ctx.ints(3, "axes") : undefined;
  const steps = !old && ctx.has(4) ? ctx.ints(4, "steps") : undefined;
  const f = ctx.folded(0);
  if (
    f && f.shape.length === 1 && starts.length === 1 && (!axes || axes[0] === 0 || axes[0] === -1)
  ) {
    const r = fold.slice1(f, starts[0]!, ends[0]!, steps?.[0] ?? 1);
    if (r) return [r];
  }
  return [slice(ctx.value(0), starts, ends, axes, steps)];
};

const squeezeOp: OpHandler = (ctx) => {
  const axes = axesOf(ctx, 1, 13);
  const f = ctx.folded(0);
  if (f) return [fold.squeeze(f, axes)];
  const x = ctx.value(0);
  return [squeeze(x, axes ?? x.shape.flatMap((d, i) => (d === 1 ? [i] : [])))];
};

const unsqueezeOp: OpHandler = (ctx) => {
  const axes = axesOf(ctx, 1, 13);
  if (!axes) return ctx.fail("axes are required");
  const f = ctx.folded(0);
  return [f ? fold.unsqueeze(f, axes) : unsqueeze(ctx.value(0), axes)];
};

/** A Constant node's tensor, from whichever `value*` attribute it has. */
function constantTensor(ctx: OpContext): Tensor {
  const n = ctx.node;
  const t = attrTensor(n, "value");
  if (t) return tensorFromProto(t, `the value of node "${n.name}"`);
  const a = n.attribute.find((x) => x.name.startsWith("value_"));
  switch (a?.name) {
    case "value_float":
      return { dtype: "F32", shape: [], data: new Float32Array([a.f]) };
    case "value_floats":
      return { dtype: "F32", shape: [a.floats.length], data: Float32Array.from(a.floats) };
    case "value_int":
      return { dtype: "I64", shape: [], data: new BigInt64Array([a.i]) };
    case "value_ints":
      return { dtype: "I64", shape: [a.ints.length], data: BigInt64Array.from(a.ints) };
  }
  return ctx.fail(`value attribute ${a?.name ?? "(none)"} is not supported`);
}

const constantOp: OpHandler = (ctx) => {
  const t = constantTensor(ctx);
  return [fold.isIntDtype(t.dtype) ? fold.foldedOf(t) : { constant: t }];
};

const shapeOp: OpHandler = (ctx) => {
  const shape = ctx.shape(0);
  const r = shape.length;
  const clampAxis = (a: number) => Math.max(0, Math.min(r, a < 0 ? a + r : a));
  const start = clampAxis(attrInt(ctx.node, "start", 0));
  const end = clampAxis(attrInt(ctx.node, "end", r));
  return [fold.vector(shape.slice(start, Math.max(start, end)))];
};

const sizeOp: OpHandler = (ctx) => {
  const shape = ctx.shape(0);
  if (shape.every((d) => typeof d === "number")) {
    return [{ dtype: "I64", shape: [], data: [numel(shape as number[])] }];
  }
  return [sizeOf(ctx.value(0))];
};

const gatherOp: OpHandler = (ctx) => {
  const data = ctx.folded(0);
  const indices = ctx.folded(1);
  const r = data && indices ? fold.gather(data, indices, attrInt(ctx.node, "axis", 0)) : undefined;
  if (!r) {
    return ctx.fail(
      "Gather is supported on shape computations only (constant 1-D data and indices); " +
        "embedding lookups are not part of a feedforward block",
    );
  }
  return [r];
};

const expandOp: OpHandler = (ctx) => {
  const target = ctx.folded(1);
  if (!target) return ctx.fail("the target shape is computed at run time; ffwd needs it at import");
  return [expand(ctx.value(0), ctx.value(1), target.data)];
};

const constantOfShapeOp: OpHandler = (ctx) => {
  const shape = ctx.folded(0);
  const t = attrTensor(ctx.node, "value");
  const v = t
    ? tensorFromProto(t, `the value of node "${ctx.node.name}"`)
    : { dtype: "F32" as const, shape: [1], data: new Float32Array([0]) };
  const value = Number(v.data[0] ?? 0);
  if (shape && fold.isNumeric(shape) && fold.isIntDtype(v.dtype)) {
    const dims = shape.data as number[];
    return [{ dtype: v.dtype, shape: dims, data: new Array<number>(numel(dims)).fill(value) }];
  }
  const dtype = computeDtype(v.dtype);
  return [constantOfShape(ctx.value(0), value, dtype, shape?.data ?? ctx.fail("shape unknown"))];
};

/**
 * Pad in constant mode, composed from builders so it stays differentiable: positive pads concat
 * blocks of the pad value, negative pads slice. Pads come from an attribute before opset 11 and
 * from a constant input after; `axes` (opset 18) restricts them to some axes.
 */
const padOp: OpHandler = (ctx) => {
  const mode = attrString(ctx.node, "mode", "constant");
  if (mode !== "constant") return ctx.fail(`mode "${mode}" is not supported, only "constant"`);
  let x = ctx.value(0);
  const pads = ctx.opset < 11 ? attrInts(ctx.node, "pads") : ctx.ints(1, "pads");
  if (!pads) return ctx.fail("pads are required");
  const value = ctx.opset < 11
    ? attrFloat(ctx.node, "value", 0)
    : ctx.has(2)
    ? ctx.scalar(2) ?? ctx.fail("the pad value must be a constant")
    : 0;
  const axes = ctx.has(3) ? ctx.ints(3, "axes") : x.shape.map((_, i) => i);
  const k = axes.length;
  axes.forEach((axis, i) => {
    const a = normAxis("Pad", axis, x.rank);
    const [before, after] = [pads[i]!, pads[i + k]!];
    if (before < 0 || after < 0) {
      x = slice(x, [Math.max(0, -before)], [after < 0 ? after : Infinity], [a]);
    }
    const block = (n: number) => {
      const dims = x.shape.map((_, j) => (j === a ? int64s(x.graph, [n]) : dimOf(x, j)));
      const shape = x.shape.map((d, j) => (j === a ? n : d));
      return constantOfShape(concat(dims, 0), value, x.dtype, shape);
    };
    const parts = [...(before > 0 ? [block(before)] : []), x, ...(after > 0 ? [block(after)] : [])];
    if (parts.length > 1) x = concat(parts, a);
  });
  return [x];
};

const flattenOp: OpHandler = (ctx) => [flatten(ctx.value(0), attrInt(ctx.node, "axis", 1))];

/** Handlers of this family, by op type. */
export const SHAPE_OPS: Record<string, OpHandler> = {
  Reshape: reshapeOp,
  Transpose: (ctx) => [transpose(ctx.value(0), attrInts(ctx.node, "perm"))],
  Flatten: flattenOp,
  Identity: (ctx) => [ctx.folded(0) ?? constantOrValue(ctx)],
  Cast: castOp,
  CastLike: (ctx) => [cast(ctx.value(0), computeDtype(ctx.dtype(1)))],
  Concat: concatOp,
  Split: splitOp,
  Slice: sliceOp,
  Squeeze: squeezeOp,
  Unsqueeze: unsqueezeOp,
  Constant: constantOp,
  Shape: shapeOp,
  Size: sizeOp,
  Gather: gatherOp,
  Expand: expandOp,
  ConstantOfShape: constantOfShapeOp,
  Pad: padOp,
};

function constantOrValue(ctx: OpContext) {
  const t = ctx.constant(0);
  return t && isFloat(t.dtype) ? { constant: t } : ctx.value(0);
}
