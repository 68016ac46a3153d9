/**
 * Writing one merged shard (for `merge_checkpoint.ts` only). A merged tensor keeps its dtype and
 * shape, so the shard keeps its header and every offset: the header and the unchanged tensors
 * are copied to the same offsets of the new file while the changed tensors are read, merged in
 * reused buffers and written into the gaps.
 *
 * Memory: three times the largest changed tensor's bytes at most (see `CheckpointWriter.write`).
 *
 * @module
 */

import { f16Table, f32BitsToBf16Bits, f32BitsToF16Bits } from "../src/half.ts";
import { type DType, numel, type Tensor } from "../src/tensor.ts";
import { firstNonFinite, MergeKernels, type MergePlan, mergeTensor } from "./merge.ts";
import { Graph } from "../src/engine/graph.ts";
import { reduceSum } from "../src/engine/ops/reduce.ts";
import { Session } from "../src/engine/runtime.ts";
import type { SafetensorsEntry } from "../src/io/safetensors.ts";
import { copyRanges, type Range, readAt, type Shard, writeAt } from "./_checkpoint_files.ts";

/** Buffer 0 holds what is read; F32 results go to 1 and 2 in turn, others back into 0 via 3. */
const [INPUT, OUTPUTS, F32] = [0, [1, 2], 3];

/**
 * Tensors smaller than this are scanned for NaN and infinities in TypeScript; larger ones are
 * summed by onnxruntime first (14–24 ms for 11 M values against 55–180 ms for the scan, measured
 * on the development machine), and scanned only when the sum is not finite.
 */
const NATIVE_CHECK = 1 << 20;

/**
 * Merges shards of one checkpoint with one plan. Reuses its buffers from tensor to tensor
 * (faulting in fresh pages costs more than the merge) and its onnxruntime sessions from shard to
 * shard; release it when done.
 */
export class CheckpointWriter {
  readonly #plan: MergePlan;
  readonly #kernels: MergeKernels;
  readonly #threads: number;
  readonly #buffers: ArrayBuffer[] = [];
  #sum: Promise<Session> | null = null;

  /**
   * @param plan What to merge.
   * @param threads Intra-op threads of the onnxruntime sessions.
   */
  constructor(plan: MergePlan, threads: number) {
    this.#plan = plan;
    this.#threads = threads;
    this.#kernels = new MergeKernels(threads);
  }

  /**
   * Writes `shard` to the new file `dst` with the plan's tensors merged; returns the keys merged.
   * The file is not flushed to disk (the caller syncs every file at once).
   *
   * A float32 tensor is merged from one buffer into another (onnxruntime is faster when its
   * input and output do not overlap), and written while the next one is read and merged; other
   * dtypes go through a float32 copy and back in place, one at a time. Either way three times the
   * largest merged tensor's bytes at most (in a checkpoint of one dtype).
   */
  async write(shard: Shard, dst: string): Promise<string[]> {
    const plan = this.#plan;
    const changed = shard.header.tensors.filter((e) =>
      plan.deltas.has(e.name) || plan.replaced.has(e.name)
    );
    if (changed.length === 0) {
      await Deno.copyFile(shard.path, dst);
      return [];
    }
    using out = await Deno.open(dst, { write: true, createNew: true });
    // The header and the unchanged tensors: copied meanwhile, around the changed tensors' bytes.
    const kept: Range[] = [];
    let at = 0;
    for (const e of changed) {
      if (e.fileOffset > at) kept.push([at, e.fileOffset]);
      at = e.fileOffset + e.byteLength;
    }
    if (at < shard.header.fileSize) kept.push([at, shard.header.fileSize]);
    const copying = copyRanges(shard.path, dst, kept);
    this.#reserve(changed);
    using src = await Deno.open(shard.path, { read: true });
    let writing: Promise<void> = Promise.resolve();
    try {
      for (const [i, e] of changed.entries()) {
        const input = this.#bytes(INPUT, e.byteLength);
        await readAt(src, e.fileOffset, input, `Cannot read "${shard.path}"`);
        const result = e.dtype === "F32"
          ? await this.#mergeF32(e.name, e.shape, input, this.#bytes(OUTPUTS[i % 2]!, e.byteLength))
          : await this.#mergeOther(e.name, e.dtype, e.shape, input);
        await writing;
        writing = writeAt(out, e.fileOffset, result);
        if (result === input) await writing; // the next read reuses `input`
      }
    } finally {
      await Promise.allSettled([writing, copying]);
    }
    await Promise.all([writing, copying]);
    return changed.map((e) => e.name);
  }

  /** Frees the onnxruntime sessions. */
  async release(): Promise<void> {
    await this.#kernels.release();
    const sum = this.#sum;
    this.#sum = null;
    await (await sum?.catch(() => null))?.release();
  }

  /** Grows the buffers once to what `changed` needs: each growth faults in fresh pages. */
  #reserve(changed: readonly SafetensorsEntry[]): void {
    const most = (es: readonly SafetensorsEntry[], f: (e: SafetensorsEntry) => number) =>
      Math.max(0, ...es.map(f));
    const f32 = changed.filter((e) => e.dtype === "F32");
    const other = changed.filter((e) => e.dtype !== "F32");
    this.#bytes(INPUT, most(changed, (e) => e.byteLength));
    for (const o of OUTPUTS) this.#bytes(o, most(f32, (e) => e.byteLength));
    this.#bytes(F32, most(other, (e) => 4 * numel(e.shape)));
  }

  /** `n` bytes of buffer `i` (8-byte aligned). */
  #bytes(i: number, n: number): Uint8Array {
    if ((this.#buffers[i]?.byteLength ?? -1) < n) this.#buffers[i] = new ArrayBuffer(n);
    return new Uint8Array(this.#buffers[i]!, 0, n);
  }

  async #mergeF32(
    key: string,
    shape: readonly number[],
    input: Uint8Array,
    output: Uint8Array,
  ): Promise<Uint8Array> {
    const n = numel(shape);
    const into = new Float32Array(output.buffer, 0, n);
    const base = f32Tensor(shape, new Float32Array(input.buffer, 0, n));
    const { tensor } = await mergeTensor(this.#plan, key, base, this.#options(into));
    if (tensor.data !== into) into.set(tensor.data as Float32Array); // a replacement
    return output;
  }

  /** F16, BF16 and F64, in place in `bytes` through a float32 copy (rounding to nearest even). */
  async #mergeOther(
    key: string,
    dtype: DType,
    shape: readonly number[],
    bytes: Uint8Array,
  ): Promise<Uint8Array> {
    const n = numel(shape);
    const f32 = new Float32Array(this.#bytes(F32, 4 * n).buffer, 0, n);
    decode(dtype, bytes, f32);
    const { tensor } = await mergeTensor(
      this.#plan,
      key,
      f32Tensor(shape, f32),
      this.#options(f32),
    );
    const merged = tensor.data as Float32Array; // `f32`, or a replacement's own data
    encode(merged, dtype, bytes);
    const bad = dtype === "F64"
      ? -1
      : firstNonFinite({ dtype: dtype as "F16", shape, data: new Uint16Array(bytes.buffer, 0, n) });
    if (bad >= 0) {
      throw new RangeError(
        `Cannot merge adapter "${this.#plan.adapter}" into tensor "${key}": the merged value ${
          merged[bad]
        } at element ${bad} does not fit in ${dtype}; the adapter seems broken`,
      );
    }
    return bytes;
  }

  #options(into: Float32Array) {
    return { kernels: this.#kernels, into, findNonFinite: (t: Tensor) => this.#findNonFinite(t) };
  }

  /** {@linkcode firstNonFinite}, after a sum in onnxruntime has found one for a large tensor. */
  async #findNonFinite(t: Tensor): Promise<number> {
    if (t.dtype !== "F32" || t.data.length < NATIVE_CHECK) return firstNonFinite(t);
    this.#sum ??= sumSession(this.#threads);
    const session = await this.#sum;
    const x = { dtype: "F32", shape: [t.data.length], data: t.data } as Tensor;
    const sum = Object.values(await session.run({ x }))[0]!.data[0] as number;
    return Number.isFinite(sum) ? -1 : firstNonFinite(t);
  }
}

/** `Σ x` over a vector: NaN or infinite when any element is (or, harmlessly, on overflow). */
async function sumSession(threads: number): Promise<Session> {
  const g = new Graph();
  g.output(reduceSum(g.input("x", "F32", ["n"]), [0]));
  return await Session.compile(g, { threads });
}

function f32Tensor(shape: readonly number[], data: Float32Array): Tensor<"F32"> {
  return { dtype: "F32", shape: [...shape], data };
}

function decode(dtype: DType, bytes: Uint8Array, into: Float32Array): void {
  const n = into.length;
  if (dtype === "BF16") {
    // bf16 is the top half of a float32
    const src = new Uint16Array(bytes.buffer, 0, n), dst = new Uint32Array(into.buffer, 0, n);
    for (let i = 0; i < n; i++) dst[i] = src[i]! << 16;
  } else if (dtype === "F16") {
    const src = new Uint16Array(bytes.buffer, 0, n), table = f16Table();
    for (let i = 0; i < n; i++) into[i] = table[src[i]!]!;
  } else if (dtype === "F64") {
    into.set(new Float64Array(bytes.buffer, 0, n)); // merged in float32, like every merge
  } else throw new TypeError(`Cannot merge a tensor stored as ${dtype}`);
}

function encode(values: Float32Array, dtype: DType, bytes: Uint8Array): void {
  const n = values.length;
  if (dtype === "F64") {
    new Float64Array(bytes.buffer, 0, n).set(values);
    return;
  }
  const bits = new Uint32Array(values.buffer, values.byteOffset, n);
  const out = new Uint16Array(bytes.buffer, 0, n);
  const round = dtype === "BF16" ? f32BitsToBf16Bits : f32BitsToF16Bits;
  for (let i = 0; i < n; i++) out[i] = round(bits[i]!);
}
