/**
 * The one host-side tensor type of ffwd: a dtype, a shape and typed data.
 *
 * Dtype names follow the safetensors specification (`F32`, `BF16`, …). Half-precision data (F16,
 * BF16) is held as raw 16-bit patterns in a `Uint16Array`: Deno's global `Float16Array` does not
 * cross into onnxruntime-node, and BF16 has no typed array at all. F8 formats are held as bytes and
 * cannot be computed with.
 *
 * @module
 */

import {
  f16Table,
  f32BitsToBf16Bits,
  f32BitsToF16Bits,
  numberToBf16Bits,
  numberToF16Bits,
} from "./half.ts";

export { bf16BitsToNumber, f16BitsToNumber, numberToBf16Bits, numberToF16Bits } from "./half.ts";

/** Every element type a tensor can hold (safetensors names). */
export const DTYPES = [
  "F64",
  "F32",
  "F16",
  "BF16",
  "I64",
  "I32",
  "I16",
  "I8",
  "U64",
  "U32",
  "U16",
  "U8",
  "BOOL",
  "F8_E4M3",
  "F8_E5M2",
] as const;

/** An element type, named as in safetensors headers. */
export type DType = typeof DTYPES[number];

/** The typed array that holds each dtype's elements. */
export interface DataOf {
  /** ONNX `DOUBLE`. */
  F64: Float64Array;
  /** ONNX `FLOAT`. */
  F32: Float32Array;
  /** IEEE half precision, as raw 16-bit patterns (`Float16Array` does not cross into ORT). */
  F16: Uint16Array;
  /** bfloat16, as raw 16-bit patterns (the top half of a float32). */
  BF16: Uint16Array;
  /** ONNX `INT64`; class labels are I64. */
  I64: BigInt64Array;
  /** ONNX `INT32`. */
  I32: Int32Array;
  /** ONNX `INT16`. */
  I16: Int16Array;
  /** ONNX `INT8`. */
  I8: Int8Array;
  /** ONNX `UINT64`. */
  U64: BigUint64Array;
  /** ONNX `UINT32`. */
  U32: Uint32Array;
  /** ONNX `UINT16`. */
  U16: Uint16Array;
  /** ONNX `UINT8`. */
  U8: Uint8Array;
  /** Booleans, one byte each (0 or 1). */
  BOOL: Uint8Array;
  /** FP8 E4M3, as raw bytes: stored and copied only, never computed with. */
  F8_E4M3: Uint8Array;
  /** FP8 E5M2, as raw bytes: stored and copied only, never computed with. */
  F8_E5M2: Uint8Array;
}

/** Any typed array a tensor can hold. */
export type TensorData = DataOf[DType];

/** Bytes per element of each dtype. */
export const ITEMSIZE: Readonly<Record<DType, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

const CTORS = {
  F64: Float64Array,
  F32: Float32Array,
  F16: Uint16Array,
  BF16: Uint16Array,
  I64: BigInt64Array,
  I32: Int32Array,
  I16: Int16Array,
  I8: Int8Array,
  U64: BigUint64Array,
  U32: Uint32Array,
  U16: Uint16Array,
  U8: Uint8Array,
  BOOL: Uint8Array,
  F8_E4M3: Uint8Array,
  F8_E5M2: Uint8Array,
} as const;

/** A dense, row-major tensor on the host. */
export interface Tensor<D extends DType = DType> {
  /** Element type; it fixes which typed array `data` is (see {@linkcode DataOf}). */
  readonly dtype: D;
  /** Dimensions, outermost first (`[]` for a scalar). */
  readonly shape: readonly number[];
  /** The elements in row-major order; its length is the product of `shape`. */
  readonly data: DataOf[D];
}

/**
 * Whether `s` names a dtype ffwd knows.
 *
 * @example
 * ```ts
 * import { isDType } from "./tensor.ts";
 * import { ok, strictEqual } from "node:assert/strict";
 * ok(isDType("BF16"));
 * strictEqual(isDType("float32"), false);
 * ```
 */
export function isDType(s: string): s is DType {
  return (DTYPES as readonly string[]).includes(s);
}

/**
 * Number of elements of a shape (1 for rank 0).
 *
 * @example
 * ```ts
 * import { numel } from "./tensor.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(numel([2, 3]), 6);
 * ```
 */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Allocates a zero-filled typed array of `n` elements of `dtype`.
 *
 * @example
 * ```ts
 * import { allocData } from "./tensor.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * deepStrictEqual(allocData("I64", 3), new BigInt64Array([0n, 0n, 0n]));
 * ```
 */
export function allocData<D extends DType>(dtype: D, n: number): DataOf[D] {
  return new CTORS[dtype](n) as DataOf[D];
}

/**
 * Makes a tensor, checking that the data length matches the shape.
 *
 * @example
 * ```ts
 * import { tensor } from "./tensor.ts";
 * import { deepStrictEqual, throws } from "node:assert/strict";
 * deepStrictEqual(tensor("F32", [2, 2]).data, new Float32Array(4)); // zeros without data
 * throws(() => tensor("F32", [2, 2], new Float32Array(3)), TypeError);
 * ```
 */
export function tensor<D extends DType>(
  dtype: D,
  shape: readonly number[],
  data?: DataOf[D],
): Tensor<D> {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new RangeError(
        `Invalid tensor shape [${shape.join(", ")}]: dimensions must be integers >= 0`,
      );
    }
  }
  const n = numel(shape);
  const buf = data ?? allocData(dtype, n);
  if (buf.length !== n) {
    throw new TypeError(
      `Tensor data has ${buf.length} elements, expected ${n} for shape [${shape.join(", ")}]`,
    );
  }
  return { dtype, shape: [...shape], data: buf };
}

/**
 * Views `bytes` (little-endian) as a tensor of `dtype`. The bytes are copied when they are not
 * aligned for the typed array (protobuf and file reads can hand out unaligned slices).
 *
 * @example
 * ```ts
 * import { fromBytes } from "./tensor.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const t = fromBytes("U16", [2], new Uint8Array([1, 0, 2, 0]));
 * deepStrictEqual(t.data, new Uint16Array([1, 2]));
 * ```
 */
export function fromBytes<D extends DType>(
  dtype: D,
  shape: readonly number[],
  bytes: Uint8Array,
): Tensor<D> {
  const size = ITEMSIZE[dtype];
  const n = numel(shape);
  if (bytes.byteLength !== n * size) {
    throw new TypeError(
      `Tensor of dtype ${dtype} and shape [${shape.join(", ")}] needs ${
        n * size
      } bytes, got ${bytes.byteLength}`,
    );
  }
  const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  const data = new CTORS[dtype](aligned.buffer as ArrayBuffer, aligned.byteOffset, n);
  return { dtype, shape: [...shape], data: data as DataOf[D] };
}

/**
 * The little-endian bytes of a tensor's data (a view, not a copy).
 *
 * @example
 * ```ts
 * import { tensor, toBytes } from "./tensor.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * deepStrictEqual(toBytes(tensor("U16", [1], new Uint16Array([258]))), new Uint8Array([2, 1]));
 * ```
 */
export function toBytes(t: Tensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

// --- half precision ---------------------------------------------------------------------------

/**
 * Converts any numeric tensor to float32 (exactly for F16 and BF16; F64 and 64-bit integers are
 * rounded). F8 tensors cannot be computed with and throw.
 *
 * @example
 * ```ts
 * import { tensor, toFloat32 } from "./tensor.ts";
 * import { strictEqual } from "node:assert/strict";
 * const h = tensor("BF16", [1], new Uint16Array([0x3f80]));
 * strictEqual(toFloat32(h).data[0], 1);
 * ```
 */
export function toFloat32(t: Tensor): Tensor<"F32"> {
  if (t.dtype === "F32") return t as Tensor<"F32">;
  const n = t.data.length;
  const out = new Float32Array(n);
  switch (t.dtype) {
    case "F16": {
      const src = t.data as Uint16Array;
      const table = f16Table();
      for (let i = 0; i < n; i++) out[i] = table[src[i]!]!;
      break;
    }
    case "BF16": {
      // bf16 is the top half of an f32: shift the bits into place in bulk.
      const src = t.data as Uint16Array;
      const dst = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) dst[i] = src[i]! << 16;
      break;
    }
    case "F8_E4M3":
    case "F8_E5M2":
      throw new TypeError(`Cannot compute in dtype ${t.dtype}: convert the tensor to F32 first`);
    case "I64":
    case "U64": {
      const src = t.data as BigInt64Array | BigUint64Array;
      for (let i = 0; i < n; i++) out[i] = Number(src[i]!);
      break;
    }
    default: {
      const src = t.data as Exclude<TensorData, BigInt64Array | BigUint64Array>;
      for (let i = 0; i < n; i++) out[i] = src[i]!;
    }
  }
  return { dtype: "F32", shape: [...t.shape], data: out };
}

/**
 * Converts a float32 tensor to another floating dtype: F16 and BF16 round to nearest even.
 *
 * @example
 * ```ts
 * import { castFloat, tensor } from "./tensor.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(castFloat(tensor("F32", [1], new Float32Array([1])), "BF16").data[0], 0x3f80);
 * ```
 */
export function castFloat<D extends "F64" | "F32" | "F16" | "BF16">(
  t: Tensor<"F32"> | Tensor<"F64">,
  dtype: D,
): Tensor<D> {
  const n = t.data.length;
  const src = t.data;
  if (dtype === t.dtype) return t as unknown as Tensor<D>;
  const out = allocData(dtype, n);
  if (dtype === "F16") {
    const o = out as Uint16Array;
    if (t.dtype === "F32") {
      const bits = new Uint32Array(src.buffer, src.byteOffset, n);
      for (let i = 0; i < n; i++) o[i] = f32BitsToF16Bits(bits[i]!);
    } else {
      for (let i = 0; i < n; i++) o[i] = numberToF16Bits(src[i]!);
    }
  } else if (dtype === "BF16") {
    const o = out as Uint16Array;
    if (t.dtype === "F32") {
      const bits = new Uint32Array(src.buffer, src.byteOffset, n);
      for (let i = 0; i < n; i++) o[i] = f32BitsToBf16Bits(bits[i]!);
    } else {
      for (let i = 0; i < n; i++) o[i] = numberToBf16Bits(src[i]!);
    }
  } else {
    (out as Float32Array | Float64Array).set(src);
  }
  return { dtype, shape: [...t.shape], data: out };
}

/**
 * Whether a dtype is a floating-point type ffwd can compute with (after casting to F32).
 *
 * @example
 * ```ts
 * import { isFloat } from "./tensor.ts";
 * import { ok, strictEqual } from "node:assert/strict";
 * ok(isFloat("BF16"));
 * strictEqual(isFloat("F8_E4M3"), false); // stored as bytes only
 * ```
 */
export function isFloat(dtype: DType): boolean {
  return dtype === "F64" || dtype === "F32" || dtype === "F16" || dtype === "BF16";
}

/** Formats a shape as `[8, 784]` (symbolic dimensions by name: `[batch, 784]`). */
export function formatShape(shape: readonly (number | string)[]): string {
  return `[${shape.join(", ")}]`;
}

/** Whether two shapes have the same dimensions. */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * `t` transposed ([m, n] → [n, m]), any dtype: elements are moved as bytes.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { tensor, transpose2d } from "./tensor.ts";
 * const t = transpose2d(tensor("F32", [2, 3], new Float32Array([1, 2, 3, 4, 5, 6])));
 * deepStrictEqual([t.shape, [...t.data]], [[3, 2], [1, 4, 2, 5, 3, 6]]);
 * ```
 */
export function transpose2d(t: Tensor): Tensor {
  const [m, n] = t.shape as [number, number];
  const size = ITEMSIZE[t.dtype];
  const src = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const dst = new Uint8Array(src.length);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const from = (i * n + j) * size;
      dst.set(src.subarray(from, from + size), (j * m + i) * size);
    }
  }
  return fromBytes(t.dtype, [n, m], dst);
}

/**
 * The index of the largest of `data[at]`, …, `data[at + k − 1]`, relative to `at` (the first on
 * ties): the class a row of logits picks.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { argmaxAt } from "./tensor.ts";
 * strictEqual(argmaxAt(new Float32Array([9, 0, 5, 1, 5]), 1, 4), 1);
 * ```
 */
export function argmaxAt(data: ArrayLike<number>, at: number, k: number): number {
  let best = 0;
  for (let j = 1; j < k; j++) if (data[at + j]! > data[at + best]!) best = j;
  return best;
}

/**
 * Whether `dtype` holds whole numbers: the signed and unsigned integers, 8 to 64 bits. `BOOL` is
 * not one, as in NumPy; callers that take flags too say so.
 *
 * @example
 * ```ts
 * import { isInteger } from "./tensor.ts";
 * import { ok, strictEqual } from "node:assert/strict";
 * ok(isInteger("U16") && isInteger("I64"));
 * strictEqual(isInteger("BOOL") || isInteger("F32"), false);
 * ```
 */
export function isInteger(dtype: DType): boolean {
  return /^[IU](8|16|32|64)$/.test(dtype);
}
