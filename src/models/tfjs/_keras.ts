/**
 * What a layer converter receives, and readers of Keras layer configs as Keras 2, Keras 3 and
 * TF.js write them (snake_case keys; `kernel_size` as a number or a list; `dtype` as a string or a
 * Keras 3 `DTypePolicy`; activations as a name or a serialized function object).
 *
 * @module
 */

import type { Tensor } from "../../tensor.ts";
import type { Dim, Emitter, InputDtype, KTensor } from "./_emit.ts";

/** A layer's `config` object. */
export type Config = Readonly<Record<string, unknown>>;

/** One call of a layer, as its converter sees it. */
export interface LayerCtx {
  readonly em: Emitter;
  /** The Keras layer name: the scope of its nodes and weights. */
  readonly name: string;
  /** The Keras class name (`Conv2D`). */
  readonly cls: string;
  readonly config: Config;
  /** Whether the file was written by Keras 3 (different defaults: `hard_sigmoid` is x/6 + 1/2). */
  readonly keras3: boolean;
  /** The layer's weight called `w` (`kernel`, `bias`, `moving_mean`, …) as stored. */
  weight(w: string): Tensor<"F32">;
  /** Throws a `TypeError` naming the model, the layer and its class. */
  fail(message: string): never;
}

/** Converts one call of a layer: its inputs to its outputs. */
export type Converter = (ctx: LayerCtx, inputs: readonly KTensor[]) => KTensor[];

/** A number from the config, or `fallback` when absent or null. */
export function num(c: Config, key: string, fallback: number): number {
  const v = c[key];
  return typeof v === "number" ? v : fallback;
}

/** A boolean from the config, or `fallback` when absent or null. */
export function flag(c: Config, key: string, fallback: boolean): boolean {
  const v = c[key];
  return typeof v === "boolean" ? v : fallback;
}

/** A string from the config (TF.js's camelCase values, `channelsLast`, are normalized). */
export function str(c: Config, key: string, fallback: string): string {
  const v = c[key];
  return typeof v === "string" ? v.replace(/[A-Z]/g, (m) => `_${m.toLowerCase()}`) : fallback;
}

/** `n` integers from a number or a list (`kernel_size: 3` or `[3, 3]`); `fallback` when null. */
export function ints(
  ctx: LayerCtx,
  key: string,
  n: number,
  fallback?: readonly number[],
): number[] {
  const v = ctx.config[key];
  if (typeof v === "number") return Array(n).fill(v);
  if (Array.isArray(v) && v.length === n && v.every((x) => typeof x === "number")) return v;
  if ((v === undefined || v === null) && fallback) return [...fallback];
  return ctx.fail(`${key} is ${JSON.stringify(v)}, expected ${n} integer${n > 1 ? "s" : ""}`);
}

/** Whether a spatial layer computes channels-first (`data_format: "channels_first"`). */
export function channelsFirst(ctx: LayerCtx): boolean {
  return str(ctx.config, "data_format", "channels_last") === "channels_first";
}

/** The activation's name: a string, a Keras 3 function object's `config`, or `linear`. */
export function activationName(v: unknown): string {
  if (typeof v === "string") return v;
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    if (typeof o.config === "string") return o.config;
    if (typeof o.class_name === "string") return o.class_name;
  }
  return "linear";
}

/** The element type a config's `dtype` names: int64, another integer type as int32, or float32. */
export function inputDtype(c: Config): InputDtype {
  let d = c.dtype;
  if (d && typeof d === "object") d = (d as { config?: { name?: unknown } }).config?.name;
  if (d === "int64") return "I64";
  return typeof d === "string" && /^u?int/.test(d) ? "I32" : "F32";
}

/** `axis` (negative counts from the end) as a position in a tensor of rank `rank`. */
export function axisOf(ctx: LayerCtx, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 1 || a >= rank) {
    ctx.fail(`axis ${axis} is out of range for a rank-${rank} input (the batch axis excluded)`);
  }
  return a;
}

/** The product of the dimensions, or null when one is unknown. */
export function product(dims: readonly Dim[]): Dim {
  return dims.reduce<Dim>((a, d) => (a === null || d === null ? null : a * d), 1);
}

/** `[a, b]` as Keras prints shapes, unknown dimensions as `null`. */
export function shapeText(dims: readonly Dim[]): string {
  return `[${dims.map((d) => d ?? "null").join(", ")}]`;
}

/** Fails unless the input has rank `rank`. */
export function expectRank(ctx: LayerCtx, x: KTensor, rank: number, what = "input"): void {
  if (x.shape.length !== rank) {
    ctx.fail(`its ${what} is ${shapeText(x.shape)}, expected rank ${rank} (batch included)`);
  }
}

/** The data of a tensor of `shape` with its axes permuted (`perm[i]` is the input axis of i). */
export function permuted(data: Float32Array, shape: readonly number[], perm: readonly number[]) {
  const outShape = perm.map((p) => shape[p]!);
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const out = new Float32Array(data.length);
  const idx = new Array<number>(perm.length).fill(0);
  for (let o = 0; o < out.length; o++) {
    let src = 0;
    for (let i = 0; i < perm.length; i++) src += idx[i]! * strides[perm[i]!]!;
    out[o] = data[src]!;
    for (let i = perm.length - 1; i >= 0; i--) {
      if (++idx[i]! < outShape[i]!) break;
      idx[i] = 0;
    }
  }
  return { data: out, shape: outShape };
}
