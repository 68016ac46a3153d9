/**
 * Half-precision numbers bit by bit: IEEE binary16 and bfloat16 bit patterns to numbers (exact)
 * and numbers to bit patterns (round to nearest, ties to even, rounded once).
 *
 * @module
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * Exact conversion of one IEEE binary16 bit pattern to a number.
 *
 * @example
 * ```ts
 * import { f16BitsToNumber } from "./half.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(f16BitsToNumber(0x3c00), 1);
 * strictEqual(f16BitsToNumber(0x0001), 2 ** -24); // the smallest subnormal
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
 * import { numberToF16Bits } from "./half.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(numberToF16Bits(1), 0x3c00);
 * strictEqual(numberToF16Bits(65520), 0x7c00); // rounds up to Infinity
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
 * import { bf16BitsToNumber } from "./half.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(bf16BitsToNumber(0x3f80), 1);
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
 * import { numberToBf16Bits } from "./half.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(numberToBf16Bits(1), 0x3f80);
 * strictEqual(numberToBf16Bits(1 + 2 ** -8), 0x3f80); // a tie, rounded to the even neighbour
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
export function f32BitsToBf16Bits(bits: number): number {
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) {
    return ((bits >>> 16) | 0x40) & 0xffff; // keep NaN a NaN
  }
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Rounds one float32 bit pattern to binary16 (ties to even) with integer operations only. */
export function f32BitsToF16Bits(bits: number): number {
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
export function f16Table(): Float32Array {
  if (!F16_TABLE) {
    F16_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) F16_TABLE[h] = f16BitsToNumber(h);
  }
  return F16_TABLE;
}
