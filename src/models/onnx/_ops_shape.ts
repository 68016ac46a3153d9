/**
 * Op handlers: layout ops and integer shape computations (see `op_map.ts`). Shape, Unsqueeze,
 * Squeeze, Concat, Slice, Cast, Reshape, Range and ConstantOfShape fold at import when their
 * inputs are known (see `_fold.ts`), so PyTorch's runtime reshape targets become static; symbolic
 * dimensions (`batch`, `seq`) pass through the folding by name.
 *
 * What the folding cannot finish runs at run time, with static shapes kept as far as they are
 * known: Reshape and Expand to targets computed from the input (`[batch · seq, -1]`), Slice with
 * bounds read from it (`position_ids[:, :seq]`), `Range(0, seq, 1)` (of length `seq`) and Tile.
 *
 * @module
 */

import type { Dim, Graph, Shape, Value } from "../../engine/graph.ts";
import { normAxis } from "../../engine/shapes.ts";
import { constantOfShape, dimOf, int64s, sizeOf } from "../../engine/ops/constant.ts";
import { concat, split } from "../../engine/ops/concat.ts";
import { range, slice, slicedDim, sliceDynamic } from "../../engine/ops/slice.ts";
import {
  cast,
  expand,
  flatten,
  reshape,
  reshapeTo,
  squeeze,
  tile,
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

/** A shape input as far as the import knows it: folded, or read from the nodes that built it. */
function targetOf(ctx: OpContext, i: number): readonly (Dim | undefined)[] {
  return ctx.folded(i)?.data ?? fold.knownDims(ctx.value(i));
}

const reshapeOp: OpHandler = (ctx) => {
  const allowzero = attrInt(ctx.node, "allowzero", 0) === 1;
  const folded = ctx.opset < 5 ? attrInts(ctx.node, "shape") : ctx.folded(1)?.data;
  const f = ctx.folded(0);
  if (f && folded?.every((d) => typeof d === "number")) {
    return [fold.reshape(f, folded as number[])];
  }
  const x = ctx.value(0);
  const target = (folded ?? targetOf(ctx, 1)).map((d, i) =>
    d === 0 && !allowzero ? x.shape[i]! : d
  );
  // The static builder infers one dimension; ONNX infers -1 and copies 0 only at run time.
  const open = target.filter((d, i) =>
    d === undefined || d === -1 || (d !== x.shape[i] && typeof d === "string")
  );
  if (folded && open.length <= 1) return [reshape(x, target as Dim[])];
  return [reshapeTo(x, ctx.value(1), inferred(ctx.g, x.shape, target))];
};

/**
 * The static shape of a reshape to a target known only in part: known entries as they are, a
 * single -1 computed from the sizes when the symbolic dimensions cancel, new symbolic dimensions
 * for the rest.
 */
function inferred(g: Graph, from: Shape, target: readonly (Dim | undefined)[]): Dim[] {
  const out = target.map((d) => (d === undefined || d === -1 ? g.freshName("dim") : d));
  const open = target.flatMap((d, i) => (d === undefined || d === -1 ? [i] : []));
  if (open.length !== 1 || target[open[0]!] !== -1) return out;
  const syms = from.filter((d) => typeof d === "string") as string[];
  let n = from.reduce<number>((p, d) => (typeof d === "number" ? p * d : p), 1);
  for (const [i, d] of out.entries()) {
    if (i === open[0]) continue;
    if (typeof d === "number") n /= d;
    else if (syms.includes(d)) syms.splice(syms.indexOf(d), 1);
    else return out;
  }
  if (syms.length === 0 && Number.isInteger(n)) out[open[0]!] = n;
  else if (syms.length === 1 && n === 1) out[open[0]!] = syms[0]!;
  return out;
}

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
  const bound = (i: number, name: string) =>
    old ? attrInts(ctx.node, name) : ctx.has(i) ? ctx.folded(i)?.data : undefined;
  const [starts, ends] = [bound(1, "starts"), bound(2, "ends")];
  const axes = old ? attrInts(ctx.node, "axes") : ctx.has(3) ? ctx.ints(3, "axes") : undefined;
  const steps = !old && ctx.has(4) ? targetOf(ctx, 4) : undefined;
  const numeric = (b: readonly (Dim | undefined)[] | undefined): b is number[] =>
    !!b?.every((d) => typeof d === "number");
  if (old && (!starts || !ends)) return ctx.fail("starts and ends are required");
  if (!numeric(starts) || !numeric(ends) || (steps && !numeric(steps))) {
    return [runtimeSlice(ctx, starts, ends, axes, steps)];
  }
  const f = ctx.folded(0);
  if (
    f && f.shape.length === 1 && starts.length === 1 && (!axes || axes[0] === 0 || axes[0] === -1)
  ) {
    const r = fold.slice1(f, starts[0]!, ends[0]!, steps?.[0] ?? 1);
    if (r) return [r];
  }
  return [slice(ctx.value(0), starts, ends, axes, steps)];
};

/**
 * A Slice whose bounds are known only at run time, such as `position_ids[:, :seq]` with `seq`
 * read from the input. A sliced dimension is that symbolic dimension when the slice runs from 0
 * with step 1 to it (the slice is shorter only if `seq` exceeds the axis, and then the model
 * cannot run anyway), exact where the bounds are numbers, and a new symbolic dimension otherwise.
 */
function runtimeSlice(
  ctx: OpContext,
  starts: readonly Dim[] | undefined,
  ends: readonly Dim[] | undefined,
  axes: readonly number[] | undefined,
  steps: readonly (Dim | undefined)[] | undefined,
): Value {
  const x = ctx.value(0);
  const n = starts?.length ?? ends?.length ?? ctx.shape(1)[0];
  if (typeof n !== "number") return ctx.fail("the number of sliced axes is unknown");
  const ax = (axes ?? Array.from({ length: n }, (_, i) => i)).map((a) =>
    normAxis("Slice", a, x.rank)
  );
  const shape = [...x.shape];
  ax.forEach((a, i) => {
    const [s, e, k] = [starts?.[i], ends?.[i], steps ? steps[i] : 1];
    shape[a] = typeof s === "number" && typeof e === "number" && typeof k === "number"
      ? slicedDim(ctx.g, x.shape[a]!, { start: s, end: e, step: k })
      : s === 0 && k === 1 && typeof e === "string"
      ? e
      : ctx.g.freshName("dim");
  });
  const bounds = { starts: ctx.value(1), ends: ctx.value(2), axes: ax };
  return sliceDynamic(x, ctx.has(4) ? { ...bounds, steps: ctx.value(4) } : bounds, shape);
}

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

const expandOp: OpHandler = (ctx) => {
  const x = ctx.value(0);
  const target = targetOf(ctx, 1);
  const lead = target.length - x.rank;
  // Expand never shrinks: a size known only at run time is x's where x's is not 1.
  const dims = target.map((d, i) => {
    const own = x.shape[i - lead];
    return d ?? (own !== undefined && own !== 1 ? own : ctx.g.freshName("dim"));
  });
  return [expand(x, ctx.value(1), dims)];
};

/** Tile (opset 6+: repeats as an input), with the repeats folded or read at run time. */
const tileOp: OpHandler = (ctx) => {
  if (ctx.opset < 6) {
    return ctx.fail("Tile before opset 6 (tiles and axis inputs) is not supported");
  }
  const x = ctx.value(0);
  const reps = targetOf(ctx, 1);
  if (reps.every((r) => typeof r === "number")) return [tile(x, reps as number[])];
  const shape = x.shape.map((d, i) => {
    const r = reps[i];
    return r === 1 ? d : d === 1 && r !== undefined ? r : ctx.g.freshName("dim");
  });
  return [tile(x, ctx.value(1), shape)];
};

/**
 * Range: folded when start, limit and delta are known integers. `Range(0, seq, 1)` with `seq`
 * read from the input stays symbolic, of length `seq`, and runs at run time.
 */
const rangeOp: OpHandler = (ctx) => {
  const [s, l, d] = [0, 1, 2].map((i) => ctx.folded(i)?.data[0]);
  if (typeof s === "number" && typeof l === "number" && typeof d === "number") {
    if (d === 0) return ctx.fail("delta is 0");
    const n = Math.max(0, Math.ceil((l - s) / d));
    return [fold.vector(Array.from({ length: n }, (_, i) => s + i * d), ctx.dtype(0))];
  }
  const length = s === 0 && d === 1 && typeof l === "string" ? l : undefined;
  return [range(ctx.value(0), ctx.value(1), ctx.value(2), length)];
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
  const dims = targetOf(ctx, 0).map((d) => d ?? ctx.g.freshName("dim"));
  return [constantOfShape(ctx.value(0), value, computeDtype(v.dtype), dims)];
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
  Expand: expandOp,
  Tile: tileOp,
  Range: rangeOp,
  ConstantOfShape: constantOfShapeOp,
  Pad: padOp,
};

function constantOrValue(ctx: OpContext) {
  const t = ctx.constant(0);
  return t && isFloat(t.dtype) ? { constant: t } : ctx.value(0);
}
