/**
 * The test helpers that need no onnxruntime: assertions (`@std/assert` is on JSR, which this
 * project cannot reach), error measures, tensors to feed (given or seeded-random) and temporary
 * folders. Running a graph needs onnxruntime, so that helper lives apart, in `_ops.ts`: a test
 * that only reads files or compares numbers does not load the native addon.
 *
 * @module
 */

import { Rng } from "../src/rng.ts";
import { numel, type Tensor } from "../src/tensor.ts";

/** Throws when `cond` is falsy. */
export function assert(cond: unknown, message = "assertion failed"): asserts cond {
  if (!cond) throw new Error(message);
}

/** Deep equality through JSON-like structure (arrays, plain objects, primitives, bigint). */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  const a = show(actual), e = show(expected);
  if (a !== e) {
    throw new Error(
      `${message ? message + ": " : ""}values differ\n  actual:   ${a}\n  expected: ${e}`,
    );
  }
}

function show(v: unknown): string {
  return JSON.stringify(
    v,
    (_, x) => (typeof x === "bigint" ? `${x}n` : x instanceof Map ? [...x] : x),
  );
}

/** Asserts that `fn` rejects (with `ErrorClass`, and a message containing `includes`); returns the error. */
export async function assertRejects(
  fn: () => Promise<unknown>,
  ErrorClass?: abstract new (...args: never[]) => Error,
  includes?: string,
): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    return checkError(e, ErrorClass, includes);
  }
  throw new Error("Expected the function to reject");
}

/** Asserts that `fn` throws (with `ErrorClass`, and a message containing `includes`); returns the error. */
export function assertThrows(
  fn: () => unknown,
  ErrorClass?: abstract new (...args: never[]) => Error,
  includes?: string,
): Error {
  try {
    fn();
  } catch (e) {
    return checkError(e, ErrorClass, includes);
  }
  throw new Error("Expected the function to throw");
}

function checkError(
  e: unknown,
  ErrorClass?: abstract new (...args: never[]) => Error,
  includes?: string,
): Error {
  if (ErrorClass && !(e instanceof ErrorClass)) {
    throw new Error(
      `Expected ${ErrorClass.name}, got ${(e as Error)?.constructor?.name}: ${
        (e as Error)?.message
      }`,
    );
  }
  if (includes && !String((e as Error)?.message).includes(includes)) {
    throw new Error(
      `Expected the message to include ${JSON.stringify(includes)}, got: ${(e as Error)?.message}`,
    );
  }
  return e as Error;
}

/**
 * Error of `actual` against `expected` relative to the expected tensor's scale:
 * `max|actual − expected| / max|expected|` (exactly 0 when both are all zeros).
 */
export function relError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) {
    throw new TypeError(`Cannot compare ${actual.length} values with ${expected.length}`);
  }
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  if (Number.isNaN(worst)) return Infinity;
  return worst === 0 ? 0 : worst / scale;
}

/** Whether two float32 arrays hold the same bytes (NaN payloads and signed zeros included). */
export function sameBytes(a: Float32Array, b: Float32Array): boolean {
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** Numbers to compare: a plain or typed array, or a tensor (whose shape then counts too). */
export type Numbers = ArrayLike<number> | Tensor;

function isTensor(x: Numbers): x is Tensor {
  return "shape" in x && "data" in x;
}

/** The elements of `x` as numbers, after checking that `x` and `y` have one shape or length. */
function pairOf(x: Numbers, y: Numbers): [ArrayLike<number | bigint>, ArrayLike<number | bigint>] {
  if (isTensor(x) && isTensor(y) && x.shape.join() !== y.shape.join()) {
    throw new TypeError(`Cannot compare tensors: shapes differ, [${x.shape}] and [${y.shape}]`);
  }
  const a = isTensor(x) ? x.data : x;
  const b = isTensor(y) ? y.data : y;
  if (a.length !== b.length) {
    throw new TypeError(`Cannot compare ${a.length} values with ${b.length}`);
  }
  return [a, b];
}

/** Options of {@link assertClose}. */
export interface CloseOptions {
  /** Absolute tolerance (default 1e-6). */
  atol?: number;
  /** Tolerance relative to each expected element (default 0). */
  rtol?: number;
  /** What is compared, for the message. */
  what?: string;
}

/**
 * Throws unless every element satisfies `|actual − expected| ≤ max(atol, rtol·|expected|)`: within
 * `atol`, or within `rtol` of the expected element, whichever allows more. `{ atol: t, rtol: t }`
 * is `t·max(1, |expected|)`: absolute below 1, relative above. NaN never passes; two tensors must
 * have one shape, anything else one length.
 */
export function assertClose(actual: Numbers, expected: Numbers, options: CloseOptions = {}): void {
  const { atol = 1e-6, rtol = 0, what = "value" } = options;
  const [a, e] = pairOf(actual, expected);
  for (let i = 0; i < e.length; i++) {
    const [x, y] = [Number(a[i]), Number(e[i])];
    const d = Math.abs(x - y);
    if (!(d <= Math.max(atol, rtol * Math.abs(y)))) {
      throw new Error(
        `${what} element ${i}: got ${x}, expected ${y} (difference ${d}, atol ${atol}, rtol ${rtol})`,
      );
    }
  }
}

/**
 * Largest `|actual − expected|` over the elements, Infinity when either holds a NaN (so
 * `maxDiff(a, b) > tol` catches it). Two tensors must have one shape, anything else one length.
 */
export function maxDiff(actual: Numbers, expected: Numbers): number {
  const [a, e] = pairOf(actual, expected);
  let worst = 0;
  for (let i = 0; i < e.length; i++) {
    const d = Math.abs(Number(a[i]) - Number(e[i]));
    if (Number.isNaN(d)) return Infinity;
    worst = Math.max(worst, d);
  }
  return worst;
}

/** An F32 tensor of `shape` holding `values`. */
export function f32(shape: readonly number[], values: ArrayLike<number>): Tensor<"F32"> {
  return { dtype: "F32", shape, data: Float32Array.from(values) };
}

/** The elements of a tensor as plain numbers (int64 ones converted); throws when it is missing. */
export function values(t: Tensor | undefined): number[] {
  if (!t) throw new Error("Missing output tensor");
  return Array.from(t.data as ArrayLike<number | bigint>, Number);
}

/**
 * An F32 tensor of `shape` with values uniform in [lo, hi) (default [-1, 1)) drawn from `rng`:
 * a seed starts a fresh {@link Rng}, an `Rng` goes on with its stream.
 */
export function randomTensor(
  shape: readonly number[],
  rng: Rng | number,
  options: { lo?: number; hi?: number } = {},
): Tensor<"F32"> {
  const r = typeof rng === "number" ? new Rng(rng) : rng;
  const data = new Float32Array(numel(shape));
  r.fillUniform(data, options.lo ?? -1, options.hi ?? 1);
  return { dtype: "F32", shape, data };
}

/** Runs `fn` with a fresh temporary folder and removes the folder afterwards, even on failure. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "ffwd_test_" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
