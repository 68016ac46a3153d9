/**
 * Convolution and pooling over any number of spatial axes (ONNX Conv, MaxPool, AveragePool,
 * GlobalAveragePool, GlobalMaxPool; layout [batch, channels, ...spatial]) and the element-wise Max
 * and Min CNN exports clamp with (openWakeWord's `Max(LeakyRelu(x), c)`): what a gradient crosses
 * to reach adapters placed before a convolutional trunk.
 *
 * Geometry is the ONNX spec's: with `ek = (k − 1)·d + 1`, an axis of size n gives
 * `⌊(n + pb + pe − ek) / s⌋ + 1` outputs (⌈·⌉ with ceil_mode, minus a last window that would start
 * in the end padding, as onnxruntime computes); SAME pads `max(0, (⌈n/s⌉ − 1)·s + ek − n)`, the
 * odd one at the end (SAME_UPPER) or start (SAME_LOWER). A symbolic spatial size gives a size named
 * by its formula, so equal geometry over the same samples gives equal sizes.
 *
 * Backward (Conv and AveragePool need static spatial sizes):
 * - Conv: dX is the transposed convolution of dY by W (Dumoulin & Visin, arXiv:1603.07285, §4),
 *   cropped or extended at the end to X's size; dW convolves X by dY, strides and dilations
 *   swapped, the batch as channels; dB sums dY.
 * - MaxPool, GlobalMaxPool: each window's gradient goes to its argmax (MaxPool's Indices: the first
 *   maximum on ties, as in PyTorch); overlapping windows add up (ScatterElements, reduction add).
 * - AveragePool: dY over each window's divisor, spread by a depthwise ConvTranspose of ones; the
 *   graph measures the divisors, so count_include_pad and ceil_mode follow onnxruntime's forward.
 * - Max, Min: the input holding the extreme gets the gradient; tied inputs share it equally
 *   (PyTorch's `maximum` gives each of two tied inputs half).
 *
 * onnxruntime's CPU provider runs Conv, ConvTranspose, AveragePool and the global pools in float32
 * only: their gradients are checked against PyTorch (`fixtures/golden/make_conv_grads.py`).
 *
 * @module
 */

import { type Attr, type Dim, int, ints, type Node, str, type Value } from "../graph.ts";
import { assertFloat, assertSameDtype, broadcastShapes, knownSize } from "../shapes.ts";
import { inputsOf, outputOf, type Vjp } from "../vjp.ts";
import { cast } from "./cast.ts";
import { constantOfShape, int64s, scalar, shapeOf, sizeOf, zerosLike } from "./constant.ts";
import { add, div, mul, type Operand } from "./elementwise.ts";
import { reduceSum } from "./reduce.ts";
import { equal, where } from "./select.ts";
import { expand, reshape, reshapeTo, transpose, unbroadcast } from "./shape.ts";
import { slice } from "./slice.ts";
import { attr } from "./_helpers.ts";

type Ints = readonly number[];

/** ONNX `auto_pad`: explicit `pads` (NOTSET), none (VALID), or ⌈n / stride⌉ outputs (SAME_*). */
export type AutoPad = "NOTSET" | "SAME_UPPER" | "SAME_LOWER" | "VALID";

/** How a window slides over the spatial axes; each list has one entry per spatial axis. */
export interface WindowOptions {
  /** Step between windows (default 1). */
  strides?: readonly number[];
  /** Zero padding, every axis's begin then every axis's end, as ONNX orders it (default 0). */
  pads?: readonly number[];
  /** Spacing between kernel taps (default 1). */
  dilations?: readonly number[];
  /** Padding rule (default "NOTSET": `pads`). */
  autoPad?: AutoPad;
}

/** Options of {@link conv}. */
export interface ConvOptions extends WindowOptions {
  /** Channel groups: `group = channels` is depthwise (default 1). */
  group?: number;
  /** ONNX `kernel_shape`, checked against w's spatial shape (default: w's). */
  kernelShape?: readonly number[];
}

/** Options of the windowed pools. */
export interface PoolOptions extends WindowOptions {
  /** Round the output size up, adding a partial last window (default false). */
  ceilMode?: boolean;
  /** AveragePool only: divide by the whole window, padding included (default false). */
  countIncludePad?: boolean;
}

/** A window op's geometry per spatial axis, and its attributes. */
interface Geometry {
  readonly kernel: readonly number[];
  readonly strides: readonly number[];
  readonly dilations: readonly number[];
  /** Begins then ends; `null` when auto_pad SAME meets a symbolic size (known at run time only). */
  readonly pads: readonly number[] | null;
  readonly out: readonly Dim[];
  /** kernel_shape, strides, dilations, pads or auto_pad, and ceil_mode where it changes a size. */
  readonly attrs: Record<string, Attr>;
}

function geometry(op: string, x: Value, kernel: Ints, o: PoolOptions): Geometry {
  const n = x.rank - 2;
  const list = (v: Ints | undefined, len: number, what: string, min = 1) => {
    const r = v ?? new Array<number>(len).fill(min); // the minimum is the default
    if (r.length !== len || r.some((d) => !Number.isInteger(d) || d < min)) {
      throw new RangeError(
        `Invalid ${what} [${r.join(", ")}] in ${op} of ${x}: expected ${len} integers >= ${min}`,
      );
    }
    return r;
  };
  list(kernel, n, "kernel_shape");
  const [strides, dilations] = [list(o.strides, n, "strides"), list(o.dilations, n, "dilations")];
  const auto = o.autoPad ?? "NOTSET";
  const same = auto === "SAME_UPPER" || auto === "SAME_LOWER";
  const spatial = x.shape.slice(2);
  const symbolic = spatial.some((d) => typeof d !== "number");
  const given = list(auto === "NOTSET" ? o.pads : undefined, 2 * n, "pads", 0);
  const pads = same && symbolic ? null : [...given];
  let ceil = o.ceilMode === true && symbolic;
  const dropped: [number, number][] = []; // axes whose last ceil window starts in the end pad
  const out = spatial.map((d, i): Dim => {
    const [s, ek] = [strides[i]!, (kernel[i]! - 1) * dilations[i]! + 1];
    if (same) {
      if (typeof d !== "number") return s === 1 ? d : `ceil(${d}/${s})`;
      const size = Math.ceil(d / s);
      const total = Math.max(0, (size - 1) * s + ek - d);
      const begin = auto === "SAME_UPPER" ? Math.floor(total / 2) : Math.ceil(total / 2);
      [pads![i], pads![n + i]] = [begin, total - begin];
      return size;
    }
    const [pb, pe] = [pads![i]!, pads![n + i]!];
    if (typeof d !== "number") {
      const rounding = o.ceilMode ? "ceil" : "floor";
      return s === 1 && pb + pe === ek - 1 ? d : `${rounding}((${d}+${pb}+${pe}-${ek})/${s})+1`;
    }
    const span = d + pb + pe - ek;
    if (span < 0) {
      throw new TypeError(
        `Cannot apply ${op}: the window spans ${ek} on spatial axis ${i}, more than the padded ` +
          `input (${d + pb + pe}); x is ${x}, kernel [${kernel.join(", ")}]`,
      );
    }
    const [floor, size] = [Math.floor(span / s) + 1, Math.ceil(span / s) + 1];
    if (!o.ceilMode) return floor;
    if ((size - 1) * s < d + pb) {
      ceil ||= size !== floor;
      return size;
    }
    dropped.push([i, span % s]); // the last window would start in the end padding
    return size - 1;
  });
  // ceil_mode is written only where it changes a size, and end pads trimmed so no window is dropped:
  // onnxruntime's kernels drop it but not its shape inference, whose static shapes would clash.
  for (const [i, cut] of ceil ? dropped : []) if (pads![n + i]! >= cut) pads![n + i]! -= cut;
  const attrs: Record<string, Attr> = {
    ...taps(kernel, strides, dilations),
    ...(pads ? { pads: ints(pads) } : { auto_pad: str(auto) }),
    ...(ceil ? { ceil_mode: int(1) } : {}),
  };
  return { kernel, strides, dilations, pads, out, attrs };
}

const taps = (k: Ints, s: Ints, d: Ints) => ({
  kernel_shape: ints(k),
  strides: ints(s),
  dilations: ints(d),
});

/** A geometry whose sizes and pads are all known, with x's spatial `size`: what backward needs. */
interface Static extends Geometry {
  readonly pads: readonly number[];
  readonly out: readonly number[];
  readonly size: readonly number[];
}

/** The numbers of `dims`, or an error naming the node when one is symbolic. */
function known(node: Node, x: Value, dims: readonly Dim[]): number[] {
  if (dims.every((d) => typeof d === "number")) return dims as number[];
  throw new TypeError(
    `Cannot differentiate ${node.op} (node ${node.name}): x ${x} has symbolic spatial sizes`,
  );
}

/** The geometry of a window node, from its attributes (those ffwd's builders write, or ONNX's). */
function staticGeometry(node: Node, x: Value, kernel: readonly Dim[]): Static {
  const list = (name: string) => node.attrs[name]?.value as number[] | undefined;
  const geo = geometry(node.op, x, known(node, x, kernel), {
    strides: list("strides"),
    pads: list("pads"),
    dilations: list("dilations"),
    autoPad: node.attrs["auto_pad"]?.value as AutoPad | undefined,
    ceilMode: attr(node, "ceil_mode", 0) === 1,
  });
  return { ...geo, out: known(node, x, geo.out), size: known(node, x, x.shape.slice(2)) } as Static;
}

/** Where the last window of spatial axis `i` ends (exclusive), in x's coordinates. */
const reach = (geo: Static, i: number) =>
  (geo.out[i]! - 1) * geo.strides[i]! + (geo.kernel[i]! - 1) * geo.dilations[i]! + 1 -
  geo.pads[i]!;

/** Per spatial axis: how far the last window reads past x's end, and how many inputs it leaves. */
const ends = (geo: Static) => geo.size.map((s, i) => Math.max(0, reach(geo, i) - s));
const unread = (geo: Static) => geo.size.map((s, i) => Math.max(0, s - reach(geo, i)));

const spatialAxes = (v: Value, from = 2) => Array.from({ length: v.rank - 2 }, (_, i) => i + from);
const begins = (geo: Static) => geo.pads.slice(0, geo.size.length);

function checkInput(op: string, x: Value, kernelRank: number): void {
  assertFloat(op, x);
  if (x.rank >= 3 && x.rank - 2 === kernelRank) return;
  throw new TypeError(`Cannot apply ${op} to x ${x}: expected ${kernelRank} spatial axes`);
}

/**
 * ONNX Conv: `y[n, m] = b[m] + Σ_c w[m, c] ⋆ x[n, g·C/group + c]` (g: the group of filter m),
 * w [M, C/group, ...kernel], b [M] or `null`.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { conv } from "./conv.ts";
 * const g = new Graph();
 * const x = g.input("x", "F32", ["batch", 1, 28, 28]);
 * const y = conv(x, g.input("w", "F32", [6, 1, 5, 5]), null, { pads: [2, 2, 2, 2] });
 * if (`${y}` !== "[batch, 6, 28, 28]") throw new Error(`${y}`);
 * ```
 */
export function conv(x: Value, w: Value, b: Value | null, opts: ConvOptions = {}): Value {
  checkInput("Conv", x, w.rank - 2);
  assertSameDtype("Conv", x, w);
  if (b) assertSameDtype("Conv", x, b);
  const { group = 1, kernelShape } = opts;
  const [c, m, cg, kernel] = [x.shape[1]!, w.shape[0]!, w.shape[1]!, w.shape.slice(2)];
  const fail = (why: string): never => {
    throw new TypeError(`Cannot apply Conv: ${why}, x is ${x}, w is ${w}`);
  };
  if (kernel.some((d) => typeof d !== "number")) fail("the kernel's size is symbolic");
  if (!Number.isInteger(group) || group < 1) fail(`invalid group ${group}`);
  if (typeof m === "number" && m % group) fail(`${m} filters do not split into ${group} groups`);
  if (typeof c === "number" && typeof cg === "number" ? c !== cg * group : group > 1 || c !== cg) {
    fail(`x has ${c} channels, w expects ${cg} per group × ${group} groups`);
  }
  if (kernelShape && kernelShape.join() !== kernel.join()) {
    fail(`kernel_shape [${kernelShape.join(", ")}] differs from w's`);
  }
  if (b && (b.rank !== 1 || b.shape[0] !== m)) fail(`bias b is ${b}, expected [${m}]`);
  const geo = geometry("Conv", x, kernel as number[], opts);
  return x.graph.node("Conv", b ? [x, w, b] : [x, w], { ...geo.attrs, group: int(group) }, [
    { dtype: x.dtype, shape: [x.shape[0]!, m, ...geo.out] },
  ])[0]!;
}

/**
 * dX of a window op: the ConvTranspose of `dy` by `w` (the forward's weight, or ones for a pool),
 * cropped at the end (pads) where the last window read padding, extended with zeros
 * (output_padding) where it left inputs unread, so dX has x's size.
 */
function inputGrad(dy: Value, w: Value, x: Value, geo: Static, group: number): Value {
  const extra = unread(geo);
  const attrs: Record<string, Attr> = {
    ...taps(geo.kernel, geo.strides, geo.dilations),
    pads: ints([...begins(geo), ...ends(geo)]),
    group: int(group),
  };
  if (extra.some((e) => e > 0)) attrs["output_padding"] = ints(extra);
  return x.graph.node("ConvTranspose", [dy, w], attrs, [{ dtype: dy.dtype, shape: x.shape }])[0]!;
}

/**
 * dW of Conv, `dW[m, c] = Σ_n dy[n, m] ⋆ x[n, c]`: a convolution with a group's channels as batch,
 * the batch as channels (group-major) and dy [M, N, ...out] as kernel, its taps the forward's stride
 * apart, its steps the forward's dilation. Inputs no window read add kernel positions, cut after.
 */
function weightGrad(x: Value, dy: Value, w: Value, geo: Static, group: number): Value {
  const cg = w.shape[1] as number;
  let xs = transpose(x, [1, 0, ...spatialAxes(x)]); // [C, N, ...size]
  if (group > 1) {
    const split = reshape(x, [x.shape[0]!, group, cg, ...geo.size]);
    xs = reshape(transpose(split, [2, 1, 0, ...spatialAxes(x, 3)]), [cg, -1, ...geo.size]);
  }
  const k = unread(geo).map((u, i) => geo.kernel[i]! + Math.floor(u / geo.dilations[i]!));
  const dyT = transpose(dy, [1, 0, ...spatialAxes(dy)]); // [M, N, ...out]
  const dw = x.graph.node("Conv", [xs, dyT], {
    ...taps(geo.out, geo.dilations, geo.strides),
    pads: ints([...begins(geo), ...ends(geo)]),
    group: int(group),
  }, [{ dtype: dy.dtype, shape: [cg, w.shape[0]!, ...k] }])[0]!;
  const over = k.some((d, i) => d > geo.kernel[i]!);
  const cut = over ? slice(dw, geo.kernel.map(() => 0), geo.kernel, spatialAxes(dw)) : dw;
  return transpose(cut, [1, 0, ...spatialAxes(dw)]);
}

// saved for backward: x and w (the forward's inputs)
const convVjp: Vjp = ({ node, dy: [dy], needs }) => {
  const [x, w, b] = node.inputs as [Value, Value, Value | null];
  const [group, geo] = [attr(node, "group", 1), staticGeometry(node, x, w.shape.slice(2))];
  return [
    needs[0] ? inputGrad(dy!, w, x, geo, group) : null,
    needs[1] ? weightGrad(x, dy!, w, geo, group) : null,
    needs[2] && b ? reduceSum(dy!, [0, ...spatialAxes(dy!)]) : null,
  ];
};

function pool(op: string, x: Value, kernel: Ints, o: PoolOptions, outputs = 1): Value[] {
  checkInput(op, x, kernel.length);
  const geo = geometry(op, x, kernel, o);
  const attrs = { ...geo.attrs };
  if (op === "AveragePool") {
    if (o.countIncludePad) attrs["count_include_pad"] = int(1);
    if (geo.dilations.every((d) => d === 1)) delete attrs["dilations"];
    else x.graph.requireOpset(19); // AveragePool takes dilations from opset 19 on
  }
  const shape = [x.shape[0]!, x.shape[1]!, ...geo.out];
  const outs = [{ dtype: x.dtype, shape }, { dtype: "I64" as const, shape }].slice(0, outputs);
  return x.graph.node(op, [x], attrs, outs);
}

/**
 * ONNX MaxPool: the maximum of each window, padding excluded.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { maxPool } from "./conv.ts";
 * const x = new Graph().input("x", "F32", ["batch", 6, 24, 24]);
 * const y = maxPool(x, [2, 2], { strides: [2, 2] });
 * if (`${y}` !== "[batch, 6, 12, 12]") throw new Error(`${y}`);
 * ```
 */
export function maxPool(x: Value, kernel: Ints, opts: PoolOptions = {}): Value {
  return pool("MaxPool", x, kernel, opts)[0]!;
}

/**
 * {@link maxPool} with MaxPool's second output, I64: the argmax of each window as an index into x
 * flattened row-major (padding not counted).
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { maxPoolWithIndices } from "./conv.ts";
 * const [y, at] = maxPoolWithIndices(new Graph().input("x", "F32", ["batch", 3, 8]), [2]);
 * if (at.dtype !== "I64" || `${y}` !== "[batch, 3, 7]") throw new Error(`${at.dtype} ${y}`);
 * ```
 */
export function maxPoolWithIndices(x: Value, kernel: Ints, opts: PoolOptions = {}): [Value, Value] {
  return pool("MaxPool", x, kernel, opts, 2) as [Value, Value];
}

/** dX: `dy` added at the flat positions `at` of x (ScatterElements, reduction "add"). */
function scatterAdd(dy: Value, at: Value, x: Value): Value {
  const flat = (v: Value) => reshape(v, [-1]);
  const zeros = zerosLike(flat(x));
  const attrs = { axis: int(0), reduction: str("add") };
  const out = [{ dtype: dy.dtype, shape: zeros.shape }];
  const [sum] = x.graph.node("ScatterElements", [zeros, flat(at), flat(dy)], attrs, out);
  return reshapeTo(sum!, shapeOf(x), x.shape);
}

/** The argmax of each window of a max-pooling node: its Indices, or a MaxPool with `attrs`. */
function argmaxOf(node: Node, attrs: Readonly<Record<string, Attr>> = node.attrs): Value {
  if (node.op === "MaxPool" && node.outputs[1] && attr(node, "storage_order", 0) === 0) {
    return node.outputs[1];
  }
  const [x, { dtype, shape }] = [node.inputs[0]!, node.outputs[0]!];
  const outs = [{ dtype, shape }, { dtype: "I64" as const, shape }];
  return x.graph.node("MaxPool", [x], { ...attrs, storage_order: int(0) }, outs)[1]!;
}

// saved for backward: x (the argmax is recomputed unless the forward kept its Indices)
const maxPoolVjp: Vjp = ({ node, dy: [dy] }) => [scatterAdd(dy!, argmaxOf(node), node.inputs[0]!)];

/**
 * ONNX AveragePool: the mean of each window, over its inputs only (default) or over the whole
 * window with padding counted as zeros (`countIncludePad`).
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { averagePool } from "./conv.ts";
 * const x = new Graph().input("x", "F32", ["batch", 4, 9]);
 * const y = averagePool(x, [3], { strides: [2], pads: [1, 1], countIncludePad: true });
 * if (`${y}` !== "[batch, 4, 5]") throw new Error(`${y}`);
 * ```
 */
export function averagePool(x: Value, kernel: Ints, opts: PoolOptions = {}): Value {
  return pool("AveragePool", x, kernel, opts)[0]!;
}

// saved for backward: x's shape. Each window's divisor is measured: AveragePool of ones gives
// (inputs counted / divisor), a convolution of ones by ones counts the inputs (constants that
// onnxruntime folds once, at session creation).
const averagePoolVjp: Vjp = ({ node, dy: [dy] }) => {
  const x = node.inputs[0]!;
  const g = x.graph;
  const geo = staticGeometry(node, x, node.attrs["kernel_shape"]!.value as number[]);
  const [c] = known(node, x, [x.shape[1]!]);
  const ones = (shape: number[]) => constantOfShape(int64s(g, shape), 1, dy!.dtype, shape);
  const last = ends(geo).map((e, i) => Math.max(e, geo.pads[geo.size.length + i]!));
  const unit = ones([1, 1, ...geo.size]);
  const shape = [1, 1, ...geo.out];
  const [pooled] = g.node("AveragePool", [unit], node.attrs, [{ dtype: dy!.dtype, shape }]);
  const [count] = g.node("Conv", [unit, ones([1, 1, ...geo.kernel])], {
    ...taps(geo.kernel, geo.strides, geo.dilations),
    pads: ints([...begins(geo), ...last]), // to the end pad, or as far as a ceil window reads
  }, [{ dtype: dy!.dtype, shape }]);
  return [inputGrad(mul(dy!, div(pooled!, count!)), ones([c!, 1, ...geo.kernel]), x, geo, c!)];
};

function globalPool(op: string, x: Value): Value {
  checkInput(op, x, x.rank - 2);
  const shape = [x.shape[0]!, x.shape[1]!, ...x.shape.slice(2).map(() => 1)];
  return x.graph.node(op, [x], {}, [{ dtype: x.dtype, shape }])[0]!;
}

/**
 * ONNX GlobalAveragePool: the mean over all spatial axes, kept as size-1 axes.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { globalAveragePool } from "./conv.ts";
 * const y = globalAveragePool(new Graph().input("x", "F32", ["batch", 64, 7, 7]));
 * if (`${y}` !== "[batch, 64, 1, 1]") throw new Error(`${y}`);
 * ```
 */
export const globalAveragePool = (x: Value): Value => globalPool("GlobalAveragePool", x);

// dX = dy / (spatial size), spread back (the size is read at run time when it is symbolic)
const globalAveragePoolVjp: Vjp = ({ node, dy: [dy] }) => {
  const x = node.inputs[0]!;
  const n = knownSize(x.shape.slice(2)) ?? cast(div(sizeOf(x), sizeOf(outputOf(node))), dy!.dtype);
  return [expand(div(dy!, n), shapeOf(x), x.shape)];
};

/**
 * ONNX GlobalMaxPool: the maximum over all spatial axes, kept as size-1 axes.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { globalMaxPool } from "./conv.ts";
 * const y = globalMaxPool(new Graph().input("x", "F32", ["batch", 96, 9]));
 * if (`${y}` !== "[batch, 96, 1]") throw new Error(`${y}`);
 * ```
 */
export const globalMaxPool = (x: Value): Value => globalPool("GlobalMaxPool", x);

// saved for backward: x; the argmax comes from a MaxPool whose window is the whole input
const globalMaxPoolVjp: Vjp = ({ node, dy: [dy] }) => {
  const x = node.inputs[0]!;
  const kernel = ints(known(node, x, x.shape.slice(2)));
  return [scatterAdd(dy!, argmaxOf(node, { kernel_shape: kernel }), x)];
};

function extreme(op: string, values: readonly Operand[]): Value {
  const first = values.find((v): v is Value => typeof v !== "number");
  if (!first) throw new TypeError(`Cannot apply ${op} to numbers only: give a graph value`);
  const vs = values.map((v) => (typeof v === "number" ? scalar(first.graph, v, first.dtype) : v));
  for (const v of vs) assertSameDtype(op, first, v);
  const shape = vs.reduce((s, v) => broadcastShapes(op, s, v.shape), first.shape);
  return first.graph.node(op, vs, {}, [{ dtype: first.dtype, shape }])[0]!;
}

/**
 * Element-wise maximum of any number of operands, broadcast together (ONNX Max); a number becomes
 * a scalar of the values' dtype.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { maximum } from "./conv.ts";
 * const y = maximum([new Graph().input("x", "F32", ["batch", 4]), -1]); // clamped below at -1
 * if (`${y}` !== "[batch, 4]") throw new Error(`${y}`);
 * ```
 */
export const maximum = (values: readonly Operand[]): Value => extreme("Max", values);

/**
 * Element-wise minimum of any number of operands, broadcast together (ONNX Min).
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { minimum } from "./conv.ts";
 * const y = minimum([new Graph().input("a", "F32", [2, 3]), 6]); // clamped above at 6
 * if (`${y}` !== "[2, 3]") throw new Error(`${y}`);
 * ```
 */
export const minimum = (values: readonly Operand[]): Value => extreme("Min", values);

// saved for backward: the inputs and y. Each input equal to y gets dy / (number of such inputs).
const extremeVjp: Vjp = ({ node, dy: [dy], needs }) => {
  const xs = inputsOf(node);
  const hits = xs.map((x) => equal(x, outputOf(node)));
  const share = div(dy!, hits.map((h) => cast(h, dy!.dtype)).reduce((a, b) => add(a, b)));
  return xs.map((x, i) => (needs[i] ? unbroadcast(where(hits[i]!, share, 0), x) : null));
};

/** Gradient rules of this family. */
export const VJPS: Record<string, Vjp> = {
  Conv: convVjp,
  MaxPool: maxPoolVjp,
  AveragePool: averagePoolVjp,
  GlobalAveragePool: globalAveragePoolVjp,
  GlobalMaxPool: globalMaxPoolVjp,
  Max: extremeVjp,
  Min: extremeVjp,
};
