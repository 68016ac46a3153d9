/**
 * Convolution and pooling layers as ONNX Conv, MaxPool, AveragePool, ReduceMean and ReduceMax.
 *
 * Kernels are rearranged once at conversion: Keras stores `[…kernel, in, out]`, ONNX Conv reads
 * `[out, in / group, …kernel]`; a depthwise kernel `[…kernel, in, multiplier]` becomes a grouped
 * convolution (`group = in`) whose output channel `c · multiplier + m` reads input channel `c`,
 * which is Keras's order. SeparableConv is that depthwise convolution followed by a 1×1 one.
 *
 * Padding: `valid` is `auto_pad = VALID`; `same` is `SAME_UPPER`, which puts the odd padding at
 * the end as TensorFlow does (explicit `pads` at stride 1, where the total is
 * `(kernel − 1) · dilation` whatever the size, since onnxruntime refuses SAME with dilations);
 * Conv1D's `causal` pads `(kernel − 1) · dilation` at the start.
 * Average pooling leaves padding out of the mean (TensorFlow's rule, ONNX's default).
 * Channels-last inputs are transposed to channels-first around the ops (see `_emit.ts`).
 *
 * @module
 */

import { activate } from "./_activations.ts";
import { type Attr, type Dim, type KTensor, range } from "./_emit.ts";
import {
  channelsFirst,
  type Converter,
  expectRank,
  flag,
  ints,
  type LayerCtx,
  num,
  permuted,
  shapeText,
  str,
} from "./_keras.ts";

/** The sliding window of a layer: sizes, strides, dilations and the ONNX padding attributes. */
interface Window {
  readonly kernel: number[];
  readonly strides: number[];
  readonly dilations: number[];
  readonly padding: string;
  readonly attrs: Record<string, Attr>;
}

function windowOf(
  ctx: LayerCtx,
  n: number,
  kernel: number[],
  strides: number[],
  dilations: number[],
): Window {
  const padding = str(ctx.config, "padding", "valid");
  const attrs: Record<string, Attr> = {
    kernel_shape: { ints: kernel },
    strides: { ints: strides },
  };
  if (padding === "same" && strides.every((st) => st === 1)) {
    // onnxruntime refuses SAME with dilations; at stride 1 the padding is (k − 1)·d whatever n.
    const total = kernel.map((k, i) => (k - 1) * dilations[i]!);
    attrs.pads = {
      ints: [...total.map((t) => Math.floor(t / 2)), ...total.map((t) => t - Math.floor(t / 2))],
    };
  } else if (padding === "same") attrs.auto_pad = { s: "SAME_UPPER" };
  else if (padding === "valid") attrs.auto_pad = { s: "VALID" };
  else if (padding === "causal" && n === 1) {
    attrs.pads = { ints: [(kernel[0]! - 1) * dilations[0]!, 0] };
  } else {ctx.fail(
      `padding "${padding}" cannot be converted (supported: valid, same${
        n === 1 ? ", causal" : ""
      })`,
    );}
  return { kernel, strides, dilations, padding, attrs };
}

/** The spatial output sizes of a window over `sizes`. */
function outSizes(ctx: LayerCtx, sizes: readonly Dim[], w: Window): Dim[] {
  return sizes.map((d, i) => {
    if (d === null) return null;
    const [k, s, dil] = [w.kernel[i]!, w.strides[i]!, w.dilations[i]!];
    const reach = (k - 1) * dil + 1;
    const out = w.padding === "same"
      ? Math.ceil(d / s)
      : w.padding === "causal"
      ? Math.floor((d - 1) / s) + 1
      : Math.floor((d - reach) / s) + 1;
    if (out < 1) ctx.fail(`its window of ${reach} does not fit its input's size ${d}`);
    return out;
  });
}

/** Splits a Keras spatial tensor into its spatial sizes and channels. */
function parts(ctx: LayerCtx, x: KTensor, n: number): { spatial: Dim[]; channels: Dim } {
  expectRank(ctx, x, n + 2);
  return channelsFirst(ctx)
    ? { spatial: x.shape.slice(2), channels: x.shape[1]! }
    : { spatial: x.shape.slice(1, -1), channels: x.shape.at(-1)! };
}

/** Runs `f` on the channels-first form of `x`; returns the result in `x`'s layout. */
function channelsFirstOp(
  ctx: LayerCtx,
  x: KTensor,
  shapeFirst: Dim[],
  f: (first: string) => string,
): KTensor {
  const rank = x.shape.length;
  if (channelsFirst(ctx)) return { name: f(x.name), shape: shapeFirst };
  const y = f(ctx.em.toFirst(ctx.name, x.name, rank));
  return {
    name: ctx.em.fromFirst(ctx.name, y, rank),
    shape: [shapeFirst[0]!, ...shapeFirst.slice(2), shapeFirst[1]!],
  };
}

type ConvKind = "conv" | "depthwise" | "separable";

function conv(n: number, kind: ConvKind): Converter {
  return (ctx, [x]) => {
    const { em, name } = ctx;
    const { spatial, channels } = parts(ctx, x!, n);
    const ones = Array(n).fill(1);
    const kernelKey = kind === "conv" ? "kernel" : "depthwise_kernel";
    const k = ctx.weight(kernelKey);
    const size = k.shape.slice(0, n);
    const w = windowOf(
      ctx,
      n,
      size,
      ints(ctx, "strides", n, ones),
      ints(ctx, "dilation_rate", n, ones),
    );
    w.attrs.dilations = { ints: w.dilations };
    const [cin, cout] = k.shape.slice(n) as [number, number];
    const groups = kind === "conv" ? num(ctx.config, "groups", 1) : cin;
    if (
      k.shape.length !== n + 2 ||
      (channels !== null && channels !== cin * (kind === "conv" ? groups : 1))
    ) {
      ctx.fail(
        `its input is ${shapeText(x!.shape)} and its ${kernelKey} [${k.shape.join(", ")}]: the ` +
          "channels do not match",
      );
    }
    // [...kernel, in, out] → [out, in, ...kernel]; depthwise [...kernel, in, m] → [in·m, 1, ...kernel]
    const perm = kind === "conv" ? [n + 1, n, ...range(0, n)] : [n, n + 1, ...range(0, n)];
    const t = permuted(k.data, k.shape, perm);
    const shape = kind === "conv" ? t.shape : [cin * cout, 1, ...size];
    const weight = em.weight(`${name}/${kernelKey}`, shape, () => t.data);
    const bias = flag(ctx.config, "use_bias", true) ? ctx.weight("bias") : null;
    const b = bias ? [em.weight(`${name}/bias`, bias.shape, () => bias.data)] : [];
    const point = kind === "separable" ? ctx.weight("pointwise_kernel") : null; // [1…, in·m, out]
    const filters = point ? point.shape.at(-1)! : kind === "conv" ? cout : cin * cout;
    const y = channelsFirstOp(ctx, x!, [null, filters, ...outSizes(ctx, spatial, w)], (v) => {
      const attrs = { ...w.attrs, group: { i: groups } };
      if (kind !== "separable") return em.op(name, "Conv", [v, weight, ...b], attrs);
      const depthwise = em.op(name, "Conv", [v, weight], attrs, "depthwise");
      const pw = permuted(point!.data, point!.shape, [n + 1, n, ...range(0, n)]);
      const pointwise = em.weight(`${name}/pointwise_kernel`, pw.shape, () => pw.data);
      return em.op(
        name,
        "Conv",
        [depthwise, pointwise, ...b],
        { kernel_shape: { ints: ones } },
        "pointwise",
      );
    });
    return [activate(ctx, y)];
  };
}

function pool(n: number, op: "MaxPool" | "AveragePool"): Converter {
  return (ctx, [x]) => {
    const { spatial, channels } = parts(ctx, x!, n);
    const size = ints(ctx, "pool_size", n, Array(n).fill(2));
    const w = windowOf(ctx, n, size, ints(ctx, "strides", n, size), Array(n).fill(1));
    const y = channelsFirstOp(
      ctx,
      x!,
      [null, channels, ...outSizes(ctx, spatial, w)],
      (v) => ctx.em.op(ctx.name, op, [v], w.attrs),
    );
    return [y];
  };
}

function globalPool(n: number, op: "ReduceMean" | "ReduceMax"): Converter {
  return (ctx, [x]) => {
    const { channels } = parts(ctx, x!, n);
    const keep = flag(ctx.config, "keepdims", false);
    const first = channelsFirst(ctx);
    // Without keepdims the result is [batch, channels] either way: a convolution's twin serves.
    const twin = !first && !keep ? ctx.em.twinOf(x!.name) : undefined;
    const axes = first || twin ? range(2, n + 2) : range(1, n + 1);
    const y = ctx.em.op(ctx.name, op, [twin ?? x!.name], {
      axes: { ints: axes },
      keepdims: { i: keep ? 1 : 0 },
    });
    const shape: Dim[] = !keep
      ? [null, channels]
      : first
      ? [null, channels, ...Array(n).fill(1)]
      : [null, ...Array(n).fill(1), channels];
    return [{ name: y, shape }];
  };
}

/** The convolution and pooling layers, by class. */
export const CONV_LAYERS: Readonly<Record<string, Converter>> = {
  Conv1D: conv(1, "conv"),
  Conv2D: conv(2, "conv"),
  DepthwiseConv2D: conv(2, "depthwise"),
  SeparableConv2D: conv(2, "separable"),
  MaxPooling1D: pool(1, "MaxPool"),
  MaxPooling2D: pool(2, "MaxPool"),
  AveragePooling1D: pool(1, "AveragePool"),
  AveragePooling2D: pool(2, "AveragePool"),
  GlobalAveragePooling1D: globalPool(1, "ReduceMean"),
  GlobalAveragePooling2D: globalPool(2, "ReduceMean"),
  GlobalMaxPooling1D: globalPool(1, "ReduceMax"),
  GlobalMaxPooling2D: globalPool(2, "ReduceMax"),
};
