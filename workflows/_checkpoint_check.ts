/**
 * The check of a merged shard against its source, without the model's code (for
 * `merge_checkpoint.ts` only). Both files are read back from disk, the written one through its
 * own header, so the check shares nothing with the merge but the plan:
 *
 * - every tensor the merge did not change, and the header, must be byte-identical;
 * - of every changed tensor, rows drawn with a seeded generator must equal `W + scale·B·A` (DoRA:
 *   times `m / ‖W + scale·B·A‖` per output; a replaced tensor: the adapter's values) computed
 *   here in float64 from the source's rows and the adapter's factors, within the rounding of the
 *   storage dtype. A "row" is a row of the stored 2-D weight (an input of a `[in, out]` one).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { openSafetensors, type SafetensorsEntry } from "../src/io/safetensors.ts";
import type { Rng } from "../src/rng.ts";
import { type DType, fromBytes, numel, toFloat32 } from "../src/tensor.ts";
import type { Tolerance } from "./parity.ts";
import type { LayerDelta, MergePlan } from "./merge.ts";
import { readAt, type Shard } from "./_checkpoint_files.ts";

/** The check of one changed tensor. */
export interface TensorCheck {
  /** The tensor's key. */
  readonly key: string;
  /** What changed it: a LoRA or DoRA layer (its module), or a whole tensor of the adapter. */
  readonly change: "lora" | "dora" | "replaced";
  /** The adapted module, for `lora` and `dora`. */
  readonly module?: string;
  /** Its stored dtype. */
  readonly dtype: DType;
  /** Its shape as stored. */
  readonly shape: readonly number[];
  /** How the weight is stored, for `lora` and `dora`. */
  readonly orientation?: "out_in" | "in_out";
  /** The factor of `B·A` (the LoRA scale). */
  readonly scale?: number;
  /** The stored rows compared. */
  readonly rows: readonly number[];
  /** Largest absolute difference over those rows. */
  readonly maxAbs: number;
  /** Largest over the rows of the row's absolute difference over its largest reference magnitude. */
  readonly maxRel: number;
  /** The relative tolerance of its storage dtype. */
  readonly tolerance: number;
  /** Whether `maxRel <= tolerance` (and every value is finite). */
  readonly pass: boolean;
}

/** The check of one shard. */
export interface ShardCheck {
  readonly tensors: TensorCheck[];
  /** Tensors found byte-identical, and their bytes. */
  readonly identical: { readonly tensors: number; readonly bytes: number };
  /** Keys of unchanged tensors that differ (`"(header)"` for the header). */
  readonly differing: string[];
}

/**
 * The tolerance of a merged weight against its float64 value: the rounding to the storage dtype
 * (half a unit in the last place of the element, at most as much relative to the row's largest
 * magnitude), doubled for the float32 arithmetic before it.
 */
export function weightTolerance(dtype: DType): Tolerance {
  if (dtype === "BF16") {
    return { relative: 2 ** -8, reason: "bf16 storage rounds by up to 2^-9 relative" };
  }
  if (dtype === "F16") {
    return { relative: 2 ** -10, reason: "f16 storage rounds by up to 2^-11 relative" };
  }
  return {
    relative: 1e-5,
    reason: "the merge computes in float32: only its rounding and summation order differ",
  };
}

const CHUNK = 16 << 20;

/** Two buffers for comparing files chunk by chunk, reused from shard to shard. */
export type CompareBuffers = readonly [Uint8Array, Uint8Array];

/** Fresh {@linkcode CompareBuffers}. */
export function compareBuffers(): CompareBuffers {
  return [new Uint8Array(CHUNK), new Uint8Array(CHUNK)];
}

/** Checks `outPath`, the merged copy of `shard`; `rows` rows of each changed tensor from `rng`. */
export async function checkShard(
  shard: Shard,
  outPath: string,
  plan: MergePlan,
  rng: Rng,
  rows: number,
  [a, b]: CompareBuffers = compareBuffers(),
): Promise<ShardCheck> {
  using out = await openSafetensors(outPath);
  using srcFile = await Deno.open(shard.path, { read: true });
  using outFile = await Deno.open(outPath, { read: true });
  const same = async (from: number, to: number, length: number): Promise<boolean> => {
    for (let done = 0; done < length; done += CHUNK) {
      const n = Math.min(CHUNK, length - done);
      await Promise.all([
        readAt(srcFile, from + done, a.subarray(0, n), `Cannot read "${shard.path}"`),
        readAt(outFile, to + done, b.subarray(0, n), `Cannot read "${outPath}"`),
      ]);
      if (!Buffer.from(a.buffer, 0, n).equals(Buffer.from(b.buffer, 0, n))) return false;
    }
    return true;
  };
  const result: ShardCheck = { tensors: [], identical: { tensors: 0, bytes: 0 }, differing: [] };
  const start = shard.header.dataStart;
  if (out.header.dataStart !== start || !await same(0, 0, start)) result.differing.push("(header)");
  let identical = 0, bytes = 0;
  for (const e of shard.header.tensors) {
    const o = out.has(e.name) ? out.entry(e.name) : null;
    if (plan.deltas.has(e.name) || plan.replaced.has(e.name)) {
      if (!o || o.dtype !== e.dtype || o.byteLength !== e.byteLength) {
        result.differing.push(e.name);
        continue;
      }
      const base = rowReader(srcFile, e, shard.path), merged = rowReader(outFile, o, outPath);
      result.tensors.push(await checkRows(plan, e, rng, rows, base, merged));
    } else if (
      o && o.byteLength === e.byteLength && await same(e.fileOffset, o.fileOffset, e.byteLength)
    ) {
      identical++;
      bytes += e.byteLength;
    } else result.differing.push(e.name);
  }
  return { ...result, identical: { tensors: identical, bytes } };
}

/** `[rows, columns]` of a tensor as the check reads it: a 2-D view, or one row. */
function rowsCols(shape: readonly number[]): [number, number] {
  return shape.length > 1 ? [shape[0]!, numel(shape) / shape[0]!] : [1, numel(shape)];
}

/** Reads one row of a tensor of `file` as float64. */
function rowReader(file: Deno.FsFile, e: SafetensorsEntry, path: string) {
  const [rows, cols] = rowsCols(e.shape);
  const size = e.byteLength / rows;
  return async (row: number): Promise<Float64Array> => {
    const buf = new Uint8Array(size);
    await readAt(file, e.fileOffset + row * size, buf, `Cannot read "${path}"`);
    const t = fromBytes(e.dtype, [cols], buf);
    return t.dtype === "F64" ? t.data as Float64Array : Float64Array.from(toFloat32(t).data);
  };
}

/** Compares sampled rows of a changed tensor with its float64 reference. */
async function checkRows(
  plan: MergePlan,
  e: SafetensorsEntry,
  rng: Rng,
  rows: number,
  base: (row: number) => Promise<Float64Array>,
  merged: (row: number) => Promise<Float64Array>,
): Promise<TensorCheck> {
  const [total] = rowsCols(e.shape);
  const picked = new Set<number>();
  while (picked.size < Math.min(rows, total)) picked.add(Math.floor(rng.uniform() * total));
  const sample = [...picked].sort((x, y) => x - y);
  const d = plan.deltas.get(e.name);
  const replacement = plan.replaced.get(e.name)?.data;
  const norms = d?.magnitude && d.layer.orientation === "in_out"
    ? await columnNorms(d, total, base)
    : null;
  let maxAbs = 0, maxRel = 0;
  for (const row of sample) {
    const got = await merged(row);
    const ref = replacement
      ? Float64Array.from(replacement.subarray(row * got.length, (row + 1) * got.length))
      : adapted(d!, row, await base(row), norms);
    let abs = 0, scale = 0;
    for (let j = 0; j < ref.length; j++) {
      abs = Math.max(abs, Math.abs(got[j]! - ref[j]!)); // NaN fails below
      scale = Math.max(scale, Math.abs(ref[j]!));
      if (Number.isNaN(got[j]!)) abs = Infinity;
    }
    maxAbs = Math.max(maxAbs, abs);
    maxRel = Math.max(maxRel, abs === 0 ? 0 : abs / (scale || Number.MIN_VALUE));
  }
  const tolerance = weightTolerance(e.dtype).relative;
  const layer = d?.layer;
  return {
    key: e.name,
    change: !d ? "replaced" : d.magnitude ? "dora" : "lora",
    ...(layer ? { module: layer.name } : {}),
    dtype: e.dtype,
    shape: e.shape,
    ...(layer ? { orientation: layer.orientation, scale: d!.coef } : {}),
    rows: sample,
    maxAbs,
    maxRel,
    tolerance,
    pass: maxRel <= tolerance,
  };
}

/** `W + coef·ΔW` of one stored row in float64 (DoRA: scaled by `m / ‖V‖` per output). */
function adapted(
  d: LayerDelta,
  row: number,
  w: Float64Array,
  columnNorms: Float64Array | null,
): Float64Array {
  const v = withDelta(d, row, w);
  const m = d.magnitude;
  if (!m) return v;
  if (d.layer.orientation === "out_in") {
    const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
    return v.map((x) => x * m[row]! / norm);
  }
  return v.map((x, j) => x * m[j]! / columnNorms![j]!);
}

/** `W + coef·ΔW` of one stored row: `ΔW[i, :] = B[i, :]·A` for `[out, in]`, `(B·A[:, i])ᵀ` else. */
function withDelta(d: LayerDelta, row: number, w: Float64Array): Float64Array {
  const { A, B, rank: r, coef } = d;
  const n = d.layer.inFeatures;
  const v = new Float64Array(w);
  if (d.layer.orientation === "out_in") {
    for (let k = 0; k < r; k++) {
      const b = coef * B[row * r + k]!;
      for (let j = 0; j < n; j++) v[j] = v[j]! + b * A[k * n + j]!;
    }
  } else {
    for (let j = 0; j < v.length; j++) {
      let s = 0;
      for (let k = 0; k < r; k++) s += B[j * r + k]! * A[k * n + row]!;
      v[j] = v[j]! + coef * s;
    }
  }
  return v;
}

/** DoRA's `‖W + coef·ΔW‖` of every output of an `[in, out]` weight: all its rows are read. */
async function columnNorms(
  d: LayerDelta,
  rows: number,
  base: (row: number) => Promise<Float64Array>,
): Promise<Float64Array> {
  const sums = new Float64Array(d.layer.outFeatures);
  for (let i = 0; i < rows; i++) {
    const v = withDelta(d, i, await base(i));
    for (let j = 0; j < v.length; j++) sums[j] = sums[j]! + v[j]! * v[j]!;
  }
  return sums.map(Math.sqrt);
}
