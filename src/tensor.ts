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
  /** 64-bit floats. */
  F64: Float64Array;
  /** 32-bit floats. */
  F32: Float32Array;
  /** IEEE half precision, as raw 16-bit patterns (`Float16Array` does not cross into ORT). */
  F16: Uint16Array;
  /** bfloat16, as raw 16-bit patterns (the top half of a float32). */
  BF16: Uint16Array;
  /** 64-bit signed integers. */
  I64: BigInt64Array;
  /** 32-bit signed integers. */
  I32: Int32Array;
  /** 16-bit signed integers. */
  I16: Int16Array;
  /** 8-bit signed integers. */
  I8: Int8Array;
  /** 64-bit unsigned integers. */
  U64: BigUint64Array;
  /** 32-bit unsigned integers. */
  U32: Uint32Array;
  /** 16-bit unsigned integers. */
  U16: Uint16Array;
  /** Bytes. */
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
  /** Element type. */
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
 * isDType("BF16"); // true
 * isDType("float32"); // false
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
 * numel([2, 3]); // 6
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
 * allocData("I64", 3); // BigInt64Array [0n, 0n, 0n]
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
 * const t = tensor("F32", [2, 2], new Float32Array([1, 2, 3, 4]));
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
 * const t = fromBytes("U16", [2], new Uint8Array([1, 0, 2, 0]));
 * t.data; // Uint16Array [1, 2]
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
 * toBytes(tensor("U16", [1], new Uint16Array([258]))); // Uint8Array [2, 1]
 * ```
 */
export function toBytes(t: Tensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

// --- half precision ---------------------------------------------------------------------------

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * Exact conversion of one IEEE binary16 bit pattern to a number.
 *
 * @example
 * ```ts
 * import { f16BitsToNumber } from "./tensor.ts";
 * f16BitsToNumber(0x3c00); // 1
 * f16BitsToNumber(0x0001); // 2 ** -24, the smallest subnormal
 * ```
 */
export function f16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/**
 * Rounds a number to the nearest binary16 (ties to even) and returns its bit pattern. Values from
 * 65520 up overflow to infinity; NaN becomes a quiet NaN.
 *
 * @example
 * ```ts
 * import { numberToF16Bits } from "./tensor.ts";
 * numberToF16Bits(1); // 0x3c00
 * numberToF16Bits(65520); // 0x7c00 (Infinity)
 * ```
 */
export function numberToF16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf or quiet NaN
  // Re-round from the float64 value so x is rounded once, not first to f32 then to f16.
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00; // rounds past the largest finite half (65504)
  if (a < 2 ** -14) {
    // subnormal half: value = m · 2^-24, m in [0, 1024]
    const m = roundHalfEven(a * 2 ** 24);
    return sign | m; // m == 1024 carries into the smallest normal, which the bit layout encodes
  }
  const e = Math.floor(Math.log2(a));
  let eb = e;
  // log2 can be off by one near powers of two
  if (2 ** eb > a) eb--;
  else if (2 ** (eb + 1) <= a) eb++;
  mant = roundHalfEven((a / 2 ** eb - 1) * 1024);
  if (mant === 1024) {
    mant = 0;
    eb++;
  }
  if (eb + 15 >= 0x1f) return sign | 0x7c00;
  return sign | ((eb + 15) << 10) | mant;
}

function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const r = v - f;
  if (r > 0.5) return f + 1;
  if (r < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * Exact conversion of one bfloat16 bit pattern to a number.
 *
 * @example
 * ```ts
 * import { bf16BitsToNumber } from "./tensor.ts";
 * bf16BitsToNumber(0x3f80); // 1
 * ```
 */
export function bf16BitsToNumber(h: number): number {
  u32[0] = h << 16;
  return f32[0]!;
}

/**
 * Rounds a number to the nearest bfloat16 (ties to even) and returns its bit pattern. The number is
 * rounded once: a float64 is not first rounded to float32 and then again to bfloat16.
 *
 * @example
 * ```ts
 * import { numberToBf16Bits } from "./tensor.ts";
 * numberToBf16Bits(1); // 0x3f80
 * numberToBf16Bits(1 + 2 ** -8); // 0x3f80: a tie, rounded to the even neighbour
 * ```
 */
export function numberToBf16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) {
    return ((bits >>> 16) | 0x40) & 0xffff; // keep NaN a NaN
  }
  // Rounding x to float32 first can land exactly on a bfloat16 midpoint that x itself is not on
  // (double rounding). Then the side of the midpoint that x lies on decides.
  if ((bits & 0xffff) === 0x8000 && x !== f32[0]) {
    const away = Math.abs(x) > Math.abs(f32[0]!);
    return ((bits >>> 16) + (away ? 1 : 0)) & 0xffff;
  }
  return f32BitsToBf16Bits(bits);
}

/** Rounds one float32 bit pattern to bfloat16 (ties to even). */
function f32BitsToBf16Bits(bits: number): number {
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) {
    return ((bits >>> 16) | 0x40) & 0xffff; // keep NaN a NaN
  }
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Rounds one float32 bit pattern to binary16 (ties to even) with integer operations only. */
function f32BitsToF16Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf or quiet NaN
  if (exp > 142) return sign | 0x7c00; // |x| >= 2^16
  if (exp >= 113) {
    // normal half: keep 10 of 23 mantissa bits; a carry out of the mantissa bumps the exponent,
    // up to 0x7c00 (Infinity) for values from 65520
    const h = ((exp - 112) << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    return sign | (rest > 0x1000 || (rest === 0x1000 && (h & 1)) ? h + 1 : h);
  }
  if (exp < 102) return sign; // |x| < 2^-25 rounds to zero
  // subnormal half: value = m · 2^-24
  const full = mant | 0x800000;
  const shift = 126 - exp; // 14..24
  const h = full >>> shift;
  const rest = full & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return sign | (rest > half || (rest === half && (h & 1)) ? h + 1 : h);
}

let F16_TABLE: Float32Array | undefined;

/** All 65536 binary16 values as float32 (exact), built on first use: 256 KiB. */
function f16Table(): Float32Array {
  if (!F16_TABLE) {
    F16_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) F16_TABLE[h] = f16BitsToNumber(h);
  }
  return F16_TABLE;
}

/**
 * Converts any numeric tensor to float32 (exactly for F16 and BF16; F64 and 64-bit integers are
 * rounded). F8 tensors cannot be computed with and throw.
 *
 * @example
 * ```ts
 * import { tensor, toFloat32 } from "./tensor.ts";
 * const h = tensor("BF16", [1], new Uint16Array([0x3f80]));
 * toFloat32(h).data[0]; // 1
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
 * castFloat(tensor("F32", [1], new Float32Array([1])), "BF16").data[0]; // 0x3f80
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
 * isFloat("BF16"); // true
 * isFloat("F8_E4M3"); // false: stored as bytes only
 * ```
 */
export function isFloat(dtype: DType): boolean {
  return dtype === "F64" || dtype === "F32" || dtype === "F16" || dtype === "BF16";
}
