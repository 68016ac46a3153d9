/**
 * Core Keras layers as ONNX nodes: Dense (the layers adapters target), the layers that are the
 * identity at inference (Dropout and its kin), Flatten, Reshape, Permute, the merge layers,
 * Embedding, BatchNormalization, LayerNormalization, ZeroPadding2D and Rescaling.
 *
 * Dense is `MatMul(x, kernel)` on the `[in, out]` kernel as Keras stores it, then `Add(bias)`
 * (node `<layer>/BiasAdd`, the logits a loss reads when an activation follows), then the
 * activation: the pattern ffwd's ONNX importer finds as a linear layer named after the kernel's
 * `<layer>/kernel`.
 *
 * @module
 */

import { activate, pointwise } from "./_activations.ts";
import { type Dim, type KTensor, range } from "./_emit.ts";
import {
  axisOf,
  channelsFirst,
  type Converter,
  expectRank,
  flag,
  type LayerCtx,
  num,
  product,
  shapeText,
} from "./_keras.ts";

const dense: Converter = (ctx, [x]) => {
  const { em, name } = ctx;
  const k = ctx.weight("kernel");
  const [inF, outF] = k.shape as [number, number];
  const last = x!.shape.at(-1);
  if (k.shape.length !== 2 || x!.shape.length < 2 || (last !== null && last !== inF)) {
    ctx.fail(
      `its input is ${shapeText(x!.shape)} and its kernel [${k.shape.join(", ")}]: the input's ` +
        `last dimension must be the kernel's first`,
    );
  }
  let y = em.op(name, "MatMul", [x!.name, em.weight(`${name}/kernel`, k.shape, () => k.data)]);
  if (flag(ctx.config, "use_bias", true)) {
    const b = ctx.weight("bias");
    y = em.op(name, "Add", [y, em.weight(`${name}/bias`, b.shape, () => b.data)], {}, "BiasAdd");
  }
  return [activate(ctx, { name: y, shape: [...x!.shape.slice(0, -1), outF] })];
};

const identity: Converter = (_ctx, [x]) => [x!];

const flatten: Converter = (ctx, [x]) => {
  const rank = x!.shape.length;
  if (rank <= 2) return [x!];
  let v = x!.name;
  // Keras flattens channels-first data in channels-last order, so weights port across formats.
  if (channelsFirst(ctx)) {
    v = ctx.em.op(ctx.name, "Transpose", [v], { perm: { ints: [0, ...range(2, rank), 1] } });
  }
  const y = ctx.em.op(ctx.name, "Flatten", [v], { axis: { i: 1 } });
  return [{ name: y, shape: [null, product(x!.shape.slice(1))] }];
};

const reshape: Converter = (ctx, [x]) => {
  const given = ctx.config.target_shape;
  // TF.js writes the free size as null, Keras as -1.
  const target = Array.isArray(given) ? given.map((d) => d ?? -1) : [];
  if (!Array.isArray(given) || !target.every((d) => Number.isInteger(d))) {
    return ctx.fail(`target_shape is ${JSON.stringify(given)}, expected a list of integers`);
  }
  const known = product(x!.shape.slice(1));
  const rest = product(target.filter((d) => d !== -1))!;
  const dims: Dim[] = target.map((d) => d === -1 ? (known === null ? null : known / rest) : d);
  if (known !== null && product(dims) !== known) {
    ctx.fail(`it cannot reshape ${shapeText(x!.shape)} to ${shapeText([null, ...target])}`);
  }
  // -1 takes the batch when every other size is known; else 0 copies the batch and -1 stays.
  const spec = dims.every((d) => d !== null) ? [-1, ...dims as number[]] : [0, ...target];
  const y = ctx.em.op(ctx.name, "Reshape", [x!.name, ctx.em.ints(ctx.name, spec)]);
  return [{ name: y, shape: [null, ...dims] }];
};

const permute: Converter = (ctx, [x]) => {
  const dims = ctx.config.dims;
  const rank = x!.shape.length;
  if (!Array.isArray(dims) || [...dims].sort().join() !== range(1, rank).join()) {
    return ctx.fail(`dims is ${JSON.stringify(dims)}, expected a permutation of 1…${rank - 1}`);
  }
  const perm = [0, ...dims as number[]];
  const y = ctx.em.op(ctx.name, "Transpose", [x!.name], { perm: { ints: perm } });
  return [{ name: y, shape: perm.map((p) => x!.shape[p]!) }];
};

/** A merge layer folding its inputs pairwise with `op` (and a final scale for Average). */
function merge(op: string, scale?: (n: number) => number): Converter {
  return (ctx, inputs) => {
    if (inputs.length < 2 || (op === "Sub" && inputs.length !== 2)) {
      ctx.fail(`it gets ${inputs.length} inputs, expected ${op === "Sub" ? "2" : "2 or more"}`);
    }
    const shape = broadcast(ctx, inputs);
    const fold = (values: readonly string[]) => {
      let y = values.reduce((a, b) => ctx.em.op(ctx.name, op, [a, b]));
      if (scale) {
        y = ctx.em.op(ctx.name, "Mul", [y, ctx.em.floats(ctx.name, [scale(values.length)])]);
      }
      return y;
    };
    const y = fold(inputs.map((t) => t.name));
    const twins = inputs.map((t) => ctx.em.twinOf(t.name));
    const rank = inputs[0]!.shape.length;
    if (twins.every((t) => t !== undefined) && inputs.every((t) => t.shape.length === rank)) {
      ctx.em.pair(y, fold(twins as string[]));
    }
    return [{ name: y, shape }];
  };
}

/** The broadcast shape of the inputs of a merge layer. */
function broadcast(ctx: LayerCtx, inputs: readonly KTensor[]): Dim[] {
  const rank = Math.max(...inputs.map((t) => t.shape.length));
  return range(0, rank).map((i) => {
    const dims: Dim[] = inputs.map((t) => {
      const j = t.shape.length - rank + i;
      return j < 0 ? 1 : t.shape[j]!;
    });
    const sizes = new Set(dims.filter((d) => d !== null && d !== 1));
    if (sizes.size > 1) {
      ctx.fail(`its inputs ${inputs.map((t) => shapeText(t.shape)).join(", ")} do not broadcast`);
    }
    return i === 0 ? null : sizes.size ? [...sizes][0]! : dims.includes(null) ? null : 1;
  });
}

const concatenate: Converter = (ctx, inputs) => {
  const rank = inputs[0]!.shape.length;
  if (inputs.length < 2 || inputs.some((t) => t.shape.length !== rank)) {
    ctx.fail(`its inputs ${inputs.map((t) => shapeText(t.shape)).join(", ")} differ in rank`);
  }
  const axis = axisOf(ctx, num(ctx.config, "axis", -1), rank);
  const y = ctx.em.op(ctx.name, "Concat", inputs.map((t) => t.name), { axis: { i: axis } });
  const sizes: Dim[] = inputs.map((t) => t.shape[axis]!);
  const joined = sizes.includes(null) ? null : (sizes as number[]).reduce((a, b) => a + b, 0);
  return [{ name: y, shape: inputs[0]!.shape.map((d, i) => (i === axis ? joined : d)) }];
};

const embedding: Converter = (ctx, [x]) => {
  if (flag(ctx.config, "mask_zero", false)) {
    ctx.fail("mask_zero is true: masks are not converted (the layers after it would ignore them)");
  }
  const e = ctx.weight("embeddings");
  const table = ctx.em.weight(`${ctx.name}/embeddings`, e.shape, () => e.data);
  // TF.js casts the (float) ids to int32 first: truncation, as Cast does.
  const ids = ctx.em.op(ctx.name, "Cast", [x!.name], { to: { i: 7 } }); // INT64
  const y = ctx.em.op(ctx.name, "Gather", [table, ids], { axis: { i: 0 } });
  return [{ name: y, shape: [...x!.shape, e.shape[1]!] }];
};

/** Keras `axis` given as a number or a one-element list. */
function oneAxis(ctx: LayerCtx, rank: number): number {
  const v = ctx.config.axis;
  const a = Array.isArray(v) && v.length === 1 ? v[0] : v ?? -1;
  if (typeof a !== "number") return ctx.fail(`axis is ${JSON.stringify(v)}, expected one axis`);
  return axisOf(ctx, a, rank);
}

/** `(x − mean) · gamma / √(variance + ε) + beta`, along one axis, with the moving statistics. */
const batchNorm: Converter = (ctx, [x]) => {
  const { em, name, config: c } = ctx;
  const rank = x!.shape.length;
  const axis = oneAxis(ctx, rank);
  const mean = ctx.weight("moving_mean");
  const variance = ctx.weight("moving_variance");
  const channels = mean.shape[0]!;
  const eps = num(c, "epsilon", 1e-3);
  const gamma = flag(c, "scale", true) ? ctx.weight("gamma").data : null;
  const factor = Float32Array.from(variance.data, (v, i) => (gamma?.[i] ?? 1) / Math.sqrt(v + eps));
  const beta = flag(c, "center", true) ? ctx.weight("beta").data : null;
  // The constants broadcast along `axis`: `[C]` for the last axis, `[C, 1, …]` for another one.
  const apply = (v: string, shape: number[]) => {
    const key = (w: string) => `${name}/${w}${shape.length > 1 ? `_${shape.length}d` : ""}`;
    const m = em.weight(key("moving_mean"), shape, () => mean.data);
    let y = em.op(name, "Mul", [
      em.op(name, "Sub", [v, m]),
      em.weight(key("factor"), shape, () => factor),
    ]);
    if (beta) y = em.op(name, "Add", [y, em.weight(key("beta"), shape, () => beta)]);
    return y;
  };
  const along = (a: number) => [channels, ...Array(rank - 1 - a).fill(1)];
  if (axis !== rank - 1) return [{ name: apply(x!.name, along(axis)), shape: x!.shape }];
  return [pointwise(ctx, x!, (v, first) => apply(v, first ? along(1) : [channels]))];
};

const layerNorm: Converter = (ctx, [x]) => {
  const { em, name, config: c } = ctx;
  const rank = x!.shape.length;
  const given = Array.isArray(c.axis) ? c.axis as number[] : [num(c, "axis", -1)];
  const axes = given.map((a) => axisOf(ctx, a, rank)).sort();
  if (axes.some((a, i) => a !== rank - axes.length + i)) {
    ctx.fail(
      `axis ${JSON.stringify(c.axis)} is not the trailing axes, which LayerNormalization needs`,
    );
  }
  const dims = x!.shape.slice(axes[0]!);
  if (dims.some((d) => d === null)) {
    ctx.fail(`its normalized axes of ${shapeText(x!.shape)} are not all known`);
  }
  const shape = dims as number[];
  const n = shape.reduce((a, b) => a * b, 1);
  const g = flag(c, "scale", true) ? ctx.weight("gamma").data : new Float32Array(n).fill(1);
  const inputs = [x!.name, em.weight(`${name}/gamma`, shape, () => g)];
  if (flag(c, "center", true)) {
    const b = ctx.weight("beta");
    inputs.push(em.weight(`${name}/beta`, shape, () => b.data));
  }
  const epsilon = num(c, "epsilon", 1e-3);
  const y = em.op(name, "LayerNormalization", inputs, {
    axis: { i: axes[0]! },
    epsilon: { f: epsilon },
  });
  return [{ name: y, shape: x!.shape }];
};

/** `[[before, after], …]` for `n` spatial axes from Keras's int, pair, or pair of pairs. */
function paddings(ctx: LayerCtx, n: number): [number, number][] {
  const v = ctx.config.padding ?? 1;
  if (typeof v === "number") return Array.from({ length: n }, () => [v, v]);
  if (Array.isArray(v) && v.length === n && v.every((p) => typeof p === "number")) {
    return v.map((p) => [p, p] as [number, number]);
  }
  if (Array.isArray(v) && v.length === n && v.every((p) => Array.isArray(p) && p.length === 2)) {
    return v as [number, number][];
  }
  return ctx.fail(`padding is ${JSON.stringify(v)}, which is not ${n}-D zero padding`);
}

function zeroPadding(n: number): Converter {
  return (ctx, [x]) => {
    expectRank(ctx, x!, n + 2);
    const pads = paddings(ctx, n);
    const first = channelsFirst(ctx);
    const padsFor = (cf: boolean) => {
      const begin = cf ? [0, 0, ...pads.map((p) => p[0])] : [0, ...pads.map((p) => p[0]), 0];
      const end = cf ? [0, 0, ...pads.map((p) => p[1])] : [0, ...pads.map((p) => p[1]), 0];
      return [...begin, ...end];
    };
    const pad = (v: string, cf: boolean) =>
      ctx.em.op(ctx.name, "Pad", [v, ctx.em.ints(ctx.name, padsFor(cf))]);
    const off = first ? 2 : 1;
    const shape = x!.shape.map((d, i) => {
      const p = pads[i - off];
      return p && d !== null ? d + p[0] + p[1] : d;
    });
    const y = first
      ? { name: pad(x!.name, true), shape }
      : pointwise(ctx, x!, (v, cf) => pad(v, cf));
    return [{ name: y.name, shape }];
  };
}

const rescaling: Converter = (ctx, [x]) => {
  const scale = ctx.config.scale;
  const offset = ctx.config.offset ?? 0;
  const constant = (v: unknown, what: string) => {
    if (typeof v === "number") return ctx.em.floats(ctx.name, [v]);
    if (Array.isArray(v) && v.every((e) => typeof e === "number")) {
      return ctx.em.floats(ctx.name, v, [v.length]);
    }
    return ctx.fail(`${what} is ${JSON.stringify(v)}, expected a number or a list of numbers`);
  };
  const y = ctx.em.op(ctx.name, "Mul", [x!.name, constant(scale, "scale")]);
  return [{ name: ctx.em.op(ctx.name, "Add", [y, constant(offset, "offset")]), shape: x!.shape }];
};

/** The core layers, by class. */
export const CORE_LAYERS: Readonly<Record<string, Converter>> = {
  Dense: dense,
  Dropout: identity,
  SpatialDropout1D: identity,
  SpatialDropout2D: identity,
  SpatialDropout3D: identity,
  AlphaDropout: identity,
  GaussianDropout: identity,
  GaussianNoise: identity,
  ActivityRegularization: identity,
  Flatten: flatten,
  Reshape: reshape,
  Permute: permute,
  Add: merge("Add"),
  Subtract: merge("Sub"),
  Multiply: merge("Mul"),
  Average: merge("Add", (n) => 1 / n),
  Maximum: merge("Max"),
  Minimum: merge("Min"),
  Concatenate: concatenate,
  Embedding: embedding,
  BatchNormalization: batchNorm,
  LayerNormalization: layerNorm,
  ZeroPadding2D: zeroPadding(2),
  Rescaling: rescaling,
};
