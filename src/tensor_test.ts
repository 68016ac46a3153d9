import { deepStrictEqual, equal, ok, strictEqual, throws } from "node:assert/strict";
import {
  allocData,
  bf16BitsToNumber,
  castFloat,
  DTYPES,
  f16BitsToNumber,
  fromBytes,
  isDType,
  isFloat,
  ITEMSIZE,
  numberToBf16Bits,
  numberToF16Bits,
  numel,
  tensor,
  toBytes,
  toFloat32,
} from "./tensor.ts";

const isNaNF16 = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
const isNaNBf16 = (h: number) => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;

/** Bits of x rounded by the engine's own Float16Array (ECMAScript: one rounding, ties to even). */
function oracleF16(x: number): number {
  const h = new Float16Array([x]);
  return new Uint16Array(h.buffer)[0]!;
}

/** A deterministic xorshift generator, so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

Deno.test("numel() multiplies dimensions and is 1 for rank 0 and 0 for empty shapes", () => {
  strictEqual(numel([]), 1);
  strictEqual(numel([2, 3, 4]), 24);
  strictEqual(numel([5, 0, 7]), 0);
});

Deno.test("ITEMSIZE and allocData() agree with the typed array of every dtype", () => {
  for (const dtype of DTYPES) {
    const data = allocData(dtype, 3);
    strictEqual(data.length, 3, dtype);
    strictEqual(data.BYTES_PER_ELEMENT, ITEMSIZE[dtype], dtype);
  }
  ok(allocData("I64", 1) instanceof BigInt64Array);
  ok(allocData("U64", 1) instanceof BigUint64Array);
  ok(allocData("BF16", 1) instanceof Uint16Array);
  ok(allocData("F8_E5M2", 1) instanceof Uint8Array);
});

Deno.test("isDType() accepts the safetensors names only", () => {
  for (const dtype of DTYPES) ok(isDType(dtype));
  for (const s of ["f32", "float32", "F4", "", "__proto__", "toString"]) ok(!isDType(s), s);
});

Deno.test("tensor() checks shape and data length", () => {
  const t = tensor("F32", [2, 2], new Float32Array([1, 2, 3, 4]));
  deepStrictEqual(t.shape, [2, 2]);
  strictEqual(tensor("I64", []).data.length, 1);
  strictEqual(tensor("F32", [0, 3]).data.length, 0);
  throws(() => tensor("F32", [2, 2], new Float32Array(3)), {
    name: "TypeError",
    message: "Tensor data has 3 elements, expected 4 for shape [2, 2]",
  });
  throws(() => tensor("F32", [-1]), { name: "RangeError", message: /shape \[-1\]/ });
  throws(() => tensor("F32", [1.5]), { name: "RangeError", message: /shape \[1\.5\]/ });
});

Deno.test("fromBytes() and toBytes() round-trip every dtype, aligned or not", () => {
  const bytes = new Uint8Array(8 * 3 + 1);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 37 + 11) & 0xff;
  for (const dtype of DTYPES) {
    const n = 24 / ITEMSIZE[dtype];
    for (const start of [0, 1]) {
      const slice = bytes.subarray(start, start + 24);
      const t = fromBytes(dtype, [n], slice);
      strictEqual(t.dtype, dtype);
      strictEqual(t.data.length, n);
      deepStrictEqual(toBytes(t), slice, `${dtype} at byte ${start}`);
    }
  }
});

Deno.test("fromBytes() views aligned bytes and copies unaligned ones", () => {
  const buf = new Uint8Array(9);
  const aligned = fromBytes("F32", [2], buf.subarray(0, 8));
  strictEqual(aligned.data.buffer, buf.buffer);
  const unaligned = fromBytes("F32", [2], buf.subarray(1, 9));
  ok(unaligned.data.buffer !== buf.buffer);
  strictEqual(unaligned.data.byteOffset % 4, 0);
});

Deno.test("fromBytes() rejects a byte length that does not match dtype and shape", () => {
  throws(() => fromBytes("F32", [2, 3], new Uint8Array(20)), {
    name: "TypeError",
    message: "Tensor of dtype F32 and shape [2, 3] needs 24 bytes, got 20",
  });
});

Deno.test("fromBytes() reads 64-bit integers as bigints, little-endian", () => {
  const bytes = new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
  deepStrictEqual([...fromBytes("I64", [2], bytes).data], [-(2n ** 63n) + 1n, 0xffffffffn]);
  deepStrictEqual([...fromBytes("U64", [2], bytes).data], [2n ** 63n + 1n, 0xffffffffn]);
});

// --- binary16 -----------------------------------------------------------------------------

Deno.test("f16BitsToNumber() decodes normals, subnormals, zeros, infinities and NaN exactly", () => {
  strictEqual(f16BitsToNumber(0x3c00), 1);
  strictEqual(f16BitsToNumber(0xc000), -2);
  strictEqual(f16BitsToNumber(0x7bff), 65504);
  strictEqual(f16BitsToNumber(0x0400), 2 ** -14);
  strictEqual(f16BitsToNumber(0x0001), 2 ** -24);
  strictEqual(f16BitsToNumber(0x03ff), 1023 * 2 ** -24);
  strictEqual(f16BitsToNumber(0x3555), 0.333251953125);
  ok(Object.is(f16BitsToNumber(0x0000), 0));
  ok(Object.is(f16BitsToNumber(0x8000), -0));
  strictEqual(f16BitsToNumber(0x7c00), Infinity);
  strictEqual(f16BitsToNumber(0xfc00), -Infinity);
  ok(Number.isNaN(f16BitsToNumber(0x7e00)));
  ok(Number.isNaN(f16BitsToNumber(0xfc01)));
});

Deno.test("numberToF16Bits() inverts f16BitsToNumber() for all 65536 bit patterns", () => {
  for (let h = 0; h < 65536; h++) {
    const x = f16BitsToNumber(h);
    if (isNaNF16(h)) ok(isNaNF16(numberToF16Bits(x)), `NaN 0x${h.toString(16)}`);
    else if (numberToF16Bits(x) !== h) throw new Error(`0x${h.toString(16)} came back different`);
  }
});

Deno.test("numberToF16Bits() rounds midpoints to even and anything past them to nearest", () => {
  // Each pair of neighbouring positive halves, including subnormals and the step to infinity.
  for (let h = 0; h < 0x7c00; h++) {
    const lo = f16BitsToNumber(h);
    const hi = h === 0x7bff ? 65536 : f16BitsToNumber(h + 1);
    const mid = (lo + hi) / 2; // exact in float64
    const even = h % 2 === 0 ? h : h + 1;
    const below = mid - (hi - lo) / 1024;
    const above = mid + (hi - lo) / 1024;
    if (numberToF16Bits(mid) !== even) throw new Error(`tie above 0x${h.toString(16)}`);
    if (numberToF16Bits(below) !== h) throw new Error(`below the tie above 0x${h.toString(16)}`);
    if (numberToF16Bits(above) !== h + 1) throw new Error(`above the tie of 0x${h.toString(16)}`);
    if (numberToF16Bits(-mid) !== (even | 0x8000)) throw new Error(`negative tie 0x${h}`);
  }
});

Deno.test("numberToF16Bits() handles overflow, underflow, signed zero, Inf and NaN", () => {
  strictEqual(numberToF16Bits(65504), 0x7bff);
  strictEqual(numberToF16Bits(65519.99), 0x7bff);
  strictEqual(numberToF16Bits(65520), 0x7c00); // tie between 65504 (odd) and 2^16: overflows
  strictEqual(numberToF16Bits(1e10), 0x7c00);
  strictEqual(numberToF16Bits(-1e300), 0xfc00);
  strictEqual(numberToF16Bits(Infinity), 0x7c00);
  strictEqual(numberToF16Bits(-Infinity), 0xfc00);
  strictEqual(numberToF16Bits(2 ** -25), 0x0000); // tie between 0 and the smallest subnormal
  strictEqual(numberToF16Bits(2 ** -25 + 2 ** -60), 0x0001);
  strictEqual(numberToF16Bits(3 * 2 ** -25), 0x0002); // tie between 1 and 2 units: even
  strictEqual(numberToF16Bits(1023.5 * 2 ** -24), 0x0400); // subnormal carries into normal
  strictEqual(numberToF16Bits(1e-300), 0x0000);
  strictEqual(numberToF16Bits(-1e-300), 0x8000);
  strictEqual(numberToF16Bits(-0), 0x8000);
  ok(isNaNF16(numberToF16Bits(NaN)));
});

Deno.test("numberToF16Bits() matches numpy's float64 -> float16 cast", () => {
  // Produced with numpy 2.4: np.array([x]).astype(np.float16).view(np.uint16)
  const cases: [number, number][] = [
    [0.1, 0x2e66],
    [1 / 3, 0x3555],
    [3.14159, 0x4248],
    [-2.5e-6, 0x802a],
    [1e-7, 0x0002],
    [6.1e-5, 0x03ff],
    [65519, 0x7bff],
    [65520, 0x7c00],
    [5.960464477539063e-8, 0x0001],
    [2.9802322387695312e-8, 0x0000],
    [1.0029296875, 0x3c03],
    [-1e5, 0xfc00],
  ];
  for (const [x, bits] of cases) strictEqual(numberToF16Bits(x), bits, String(x));
});

Deno.test("numberToF16Bits() agrees with Float16Array on random doubles of every magnitude", () => {
  const next = rng(42);
  const f64 = new Float64Array(1);
  const u32 = new Uint32Array(f64.buffer);
  for (let i = 0; i < 200_000; i++) {
    // exponents around the half range, random mantissas and signs
    u32[0] = next();
    u32[1] = ((next() % 80) + 1023 - 40) << 20 | (next() & 0xfffff) | (next() & 0x80000000);
    const x = f64[0]!;
    if (numberToF16Bits(x) !== oracleF16(x)) throw new Error(`mismatch for ${x}`);
  }
});

Deno.test("castFloat() F32 -> F16 agrees with numberToF16Bits() on random float32 patterns", () => {
  const next = rng(7);
  const bits = new Uint32Array(300_000);
  for (let i = 0; i < bits.length; i++) {
    const r = next();
    // half of them with exponents in and around the half range, where the rounding happens
    bits[i] = i % 2 ? r : (r & 0x807fffff) | ((((r >>> 8) % 48) + 96) << 23);
  }
  // all the binary16 ties and their float32 neighbours
  const ties: number[] = [];
  for (let h = 0; h < 0x7c00; h++) {
    const mid = (f16BitsToNumber(h) + (h === 0x7bff ? 65536 : f16BitsToNumber(h + 1))) / 2;
    ties.push(mid, -mid);
  }
  const tieBits = new Uint32Array(new Float32Array(ties).buffer);
  const all = new Uint32Array(bits.length + tieBits.length * 3);
  all.set(bits);
  for (let i = 0; i < tieBits.length; i++) {
    const at = bits.length + 3 * i;
    all[at] = tieBits[i]!;
    all[at + 1] = tieBits[i]! + 1;
    all[at + 2] = tieBits[i]! - 1;
  }
  const f32 = new Float32Array(all.buffer);
  const h = castFloat(tensor("F32", [f32.length], f32), "F16").data;
  for (let i = 0; i < f32.length; i++) {
    const want = numberToF16Bits(f32[i]!);
    if (isNaNF16(want)) ok(isNaNF16(h[i]!));
    else if (h[i] !== want) {
      throw new Error(`float32 0x${all[i]!.toString(16)}: ${h[i]} != ${want}`);
    }
  }
});

// --- bfloat16 -----------------------------------------------------------------------------

Deno.test("bf16BitsToNumber() is the upper half of a float32", () => {
  strictEqual(bf16BitsToNumber(0x3f80), 1);
  strictEqual(bf16BitsToNumber(0xc040), -3);
  strictEqual(bf16BitsToNumber(0x7f7f), 3.3895313892515355e38);
  strictEqual(bf16BitsToNumber(0x0001), 2 ** -133);
  strictEqual(bf16BitsToNumber(0x0080), 2 ** -126);
  ok(Object.is(bf16BitsToNumber(0x8000), -0));
  strictEqual(bf16BitsToNumber(0xff80), -Infinity);
  ok(Number.isNaN(bf16BitsToNumber(0x7fc0)));
});

Deno.test("numberToBf16Bits() inverts bf16BitsToNumber() for all 65536 bit patterns", () => {
  for (let h = 0; h < 65536; h++) {
    const x = bf16BitsToNumber(h);
    if (isNaNBf16(h)) ok(isNaNBf16(numberToBf16Bits(x)), `NaN 0x${h.toString(16)}`);
    else if (numberToBf16Bits(x) !== h) throw new Error(`0x${h.toString(16)} came back different`);
  }
});

Deno.test("numberToBf16Bits() rounds ties to even, subnormals included, and overflows to Inf", () => {
  for (let h = 0; h < 0x7f80; h++) {
    const lo = bf16BitsToNumber(h);
    const hi = h === 0x7f7f ? 2 ** 128 : bf16BitsToNumber(h + 1);
    const mid = (lo + hi) / 2;
    const even = h % 2 === 0 ? h : h + 1;
    if (numberToBf16Bits(mid) !== even) throw new Error(`tie above 0x${h.toString(16)}`);
    if (numberToBf16Bits(-mid) !== (even | 0x8000)) throw new Error(`negative tie 0x${h}`);
    const step = (hi - lo) / 2 ** 20; // below float32 resolution near the tie
    if (numberToBf16Bits(mid - step) !== h) throw new Error(`below tie 0x${h.toString(16)}`);
    if (numberToBf16Bits(mid + step) !== h + 1) throw new Error(`above tie 0x${h.toString(16)}`);
  }
  strictEqual(numberToBf16Bits(3.4e38), 0x7f80);
  strictEqual(numberToBf16Bits(-1e300), 0xff80);
  strictEqual(numberToBf16Bits(2 ** -134), 0x0000);
  strictEqual(numberToBf16Bits(3 * 2 ** -134), 0x0002);
  strictEqual(numberToBf16Bits(-0), 0x8000);
  ok(isNaNBf16(numberToBf16Bits(NaN)));
});

Deno.test("numberToBf16Bits() rounds a double once, not through float32", () => {
  // 1 + 2^-8 is the tie between 1 and 1 + 2^-7; float32 cannot hold the 2^-30 that breaks it.
  strictEqual(numberToBf16Bits(1 + 2 ** -8 + 2 ** -30), 0x3f81);
  strictEqual(numberToBf16Bits(1 + 2 ** -8 - 2 ** -30), 0x3f80);
  strictEqual(numberToBf16Bits(-(1 + 2 ** -8 + 2 ** -30)), 0xbf81);
  strictEqual(numberToBf16Bits(1 + 2 ** -8), 0x3f80);
  strictEqual(numberToBf16Bits(1 + 3 * 2 ** -8), 0x3f82);
  const f64 = tensor("F64", [2], new Float64Array([1 + 2 ** -8 + 2 ** -30, 1 + 2 ** -8]));
  deepStrictEqual([...castFloat(f64, "BF16").data], [0x3f81, 0x3f80]);
});

Deno.test("castFloat() F32 -> BF16 matches numberToBf16Bits() on random float32 patterns", () => {
  const next = rng(99);
  const bits = new Uint32Array(300_000).map(() => next());
  const f32 = new Float32Array(bits.buffer);
  const h = castFloat(tensor("F32", [f32.length], f32), "BF16").data;
  for (let i = 0; i < f32.length; i++) {
    const want = numberToBf16Bits(f32[i]!);
    if (isNaNBf16(want)) ok(isNaNBf16(h[i]!));
    else if (h[i] !== want) throw new Error(`float32 0x${bits[i]!.toString(16)}`);
  }
});

// --- conversions --------------------------------------------------------------------------

Deno.test("toFloat32() converts F16 and BF16 exactly, including specials", () => {
  const f16 = tensor("F16", [5], new Uint16Array([0x3c00, 0x0001, 0x8000, 0xfc00, 0x7e00]));
  const out = toFloat32(f16).data;
  deepStrictEqual([...out.slice(0, 4)], [1, 2 ** -24, -0, -Infinity]);
  ok(Object.is(out[2], -0));
  ok(Number.isNaN(out[4]));
  const bf16 = tensor("BF16", [3], new Uint16Array([0x3f80, 0xc040, 0x0001]));
  deepStrictEqual([...toFloat32(bf16).data], [1, -3, 2 ** -133]);
  deepStrictEqual(toFloat32(bf16).shape, [3]);
});

Deno.test("toFloat32() converts integer and boolean tensors and refuses F8", () => {
  deepStrictEqual(
    [...toFloat32(tensor("I64", [2], new BigInt64Array([-3n, 2n ** 40n]))).data],
    [-3, 2 ** 40],
  );
  deepStrictEqual([...toFloat32(tensor("U8", [2], new Uint8Array([0, 255]))).data], [0, 255]);
  deepStrictEqual([...toFloat32(tensor("BOOL", [2], new Uint8Array([1, 0]))).data], [1, 0]);
  deepStrictEqual([...toFloat32(tensor("F64", [1], new Float64Array([0.1]))).data], [
    Math.fround(0.1),
  ]);
  throws(() => toFloat32(tensor("F8_E4M3", [1])), {
    name: "TypeError",
    message: "Cannot compute in dtype F8_E4M3: convert the tensor to F32 first",
  });
  const f32 = tensor("F32", [1]);
  strictEqual(toFloat32(f32), f32);
});

Deno.test("castFloat() converts between F32 and F64 and keeps the shape", () => {
  const f32 = tensor("F32", [1, 2], new Float32Array([0.5, -1.25]));
  const f64 = castFloat(f32, "F64");
  deepStrictEqual(f64.shape, [1, 2]);
  deepStrictEqual([...f64.data], [0.5, -1.25]);
  strictEqual(
    castFloat(tensor("F64", [1], new Float64Array([0.1])), "F32").data[0],
    Math.fround(0.1),
  );
  strictEqual(castFloat(f32, "F32"), f32);
  // F16 -> F32 -> F16 is the identity on every finite half
  const all = new Uint16Array(0x7c00).map((_, i) => i);
  deepStrictEqual(castFloat(toFloat32(tensor("F16", [all.length], all)), "F16").data, all);
});

Deno.test("isFloat() is true for the four computable float dtypes only", () => {
  deepStrictEqual(DTYPES.filter(isFloat), ["F64", "F32", "F16", "BF16"]);
  equal(isFloat("F8_E5M2"), false);
});
