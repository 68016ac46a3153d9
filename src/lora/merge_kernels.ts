/**
 * The numeric side of merging, in onnxruntime: one small graph per kind of merge and weight shape
 * (the rank is symbolic), compiled on first use and run with a preallocated output, so merging a
 * layer holds its weight twice (input and output) and nothing else. Imported by
 * `workflows/merge.ts` only.
 *
 * The graphs are `delta.ts`'s formulas: {@linkcode deltaWeight} fused into a single Gemm with the
 * base weight as Gemm's `C`, and for DoRA the `Σ V²` half of `doraNorm` ({@linkcode outputSquares})
 * per block of rows, summed over the blocks before the square root.
 *
 * @module
 */

import * as ort from "npm:onnxruntime-node@1.30.0";
import { Graph, type Value } from "../engine/graph.ts";
import { encodeModel, toModelProto } from "../engine/emit.ts";
import { defaultThreads } from "../engine/runtime.ts";
import type { Orientation } from "../models/model.ts";
import { deltaWeight, outputSquares } from "./delta.ts";

/** What a kernel computes. */
export type KernelKind =
  /** `W + coef·ΔW` */
  | "lora"
  /** `V = W + coef·ΔW`, `n = ‖V‖` per output, `W' = V · m / n`; also returns `n`. */
  | "dora"
  /** `W = W'· n / m + coef·ΔW` (coef negated by the caller). */
  | "dora_unmerge";

/** The operands of one kernel run, all float32 in PEFT's layout. */
export interface KernelArgs {
  /** How `weight` is stored. */
  readonly orientation: Orientation;
  /** The stored weight, `[out, in]` or `[in, out]`. */
  readonly weight: Float32Array;
  /** The layer's output size. */
  readonly outFeatures: number;
  /** The layer's input size. */
  readonly inFeatures: number;
  /** The adapter's rank r for the layer. */
  readonly rank: number;
  /** LoRA A, `[r, in]`. */
  readonly A: Float32Array;
  /** LoRA B, `[out, r]`. */
  readonly B: Float32Array;
  /** Factor of `B·A`: the LoRA scale (divided by a Gemm layer's `alpha`), negated to unmerge. */
  readonly coef: number;
  /** DoRA magnitude `[out]`. */
  readonly magnitude?: Float32Array;
  /** DoRA's norm `‖W + ΔW‖` `[out]` recorded by the merge (to unmerge). */
  readonly norm?: Float32Array;
  /**
   * Buffer for the result (`out·in` values; `weight` itself merges in place). Reusing one across
   * layers avoids faulting in fresh pages for every layer, which costs more than the Gemm itself.
   */
  readonly into?: Float32Array;
}

/**
 * Elements of the weight per kernel run. A layer is merged in blocks of rows of its stored
 * weight: onnxruntime-node returns a large output through a fresh native buffer and a copy even
 * when the output is preallocated (measured: 1–2 s for a 256 MiB layer, page faults dominating),
 * while blocks of a few MiB stay in the session's arena and land in the caller's buffer at memory
 * speed (60 ms for the same layer).
 */
const BLOCK = 1 << 21;

/**
 * onnxruntime sessions of merge kernels, by orientation and width; release them when done.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { MergeKernels } from "./merge_kernels.ts";
 * const kernels = new MergeKernels();
 * const { weight } = await kernels.run("lora", {
 *   orientation: "out_in", outFeatures: 2, inFeatures: 2, rank: 1, coef: 2,
 *   weight: new Float32Array([1, 0, 0, 1]), A: new Float32Array([1, 1]), B: new Float32Array([1, 0]),
 * });
 * deepStrictEqual([...weight], [3, 2, 0, 1]);
 * await kernels.release();
 * ```
 */
export class MergeKernels {
  #sessions = new Map<string, Promise<ort.InferenceSession>>();

  /**
   * Makes an empty cache: sessions are compiled on first use.
   *
   * @param threads Intra-op threads of each kernel session (default: the number of cores).
   */
  constructor(readonly threads: number = defaultThreads()) {}

  /** Runs one kernel; returns the new weight (and DoRA's norm for `"dora"`). */
  async run(
    kind: KernelKind,
    args: KernelArgs,
  ): Promise<{ weight: Float32Array; norm?: Float32Array }> {
    const { orientation: o, outFeatures: m, inFeatures: n, rank: r, A, B } = args;
    const [rows, cols] = o === "out_in" ? [m, n] : [n, m];
    const dora = kind === "dora";
    const session = await this.#session(o, cols, dora);
    const out = args.into?.subarray(0, m * n) ?? new Float32Array(m * n);
    const W = kind === "dora_unmerge"
      ? scaleOutputs(args.weight, ratio(args.norm!, args.magnitude!), o, rows, cols, null)
      : args.weight;
    const sums = dora ? new Float64Array(m) : null; // ‖V‖² per output
    const f32 = (data: Float32Array, shape: number[]) => new ort.Tensor("float32", data, shape);
    const s = f32(new Float32Array([args.coef]), []);
    const step = Math.max(1, Math.floor(BLOCK / cols));
    // In place, each block of W is copied aside first: onnxruntime's inputs and outputs must not
    // overlap, and the block is a few MiB where a second full-size buffer would be the layer's size.
    const aside = out.buffer === W.buffer ? new Float32Array(step * cols) : null;
    for (let r0 = 0; r0 < rows; r0 += step) {
      const k = Math.min(step, rows - r0);
      let w = W.subarray(r0 * cols, (r0 + k) * cols);
      if (aside) w = (aside.set(w), aside.subarray(0, k * cols));
      const feeds: Record<string, ort.Tensor> = { W: f32(w, [k, cols]), s };
      if (o === "out_in") {
        feeds.A = f32(A, [r, n]);
        feeds.B = f32(B.subarray(r0 * r, (r0 + k) * r), [k, r]);
      } else {
        const block = new Float32Array(r * k); // A's columns r0…r0+k: [r, k]
        for (let i = 0; i < r; i++) block.set(A.subarray(i * n + r0, i * n + r0 + k), i * k);
        feeds.A = f32(block, [r, k]);
        feeds.B = f32(B, [m, r]);
      }
      const fetches: Record<string, ort.Tensor> = {
        out: f32(out.subarray(r0 * cols, (r0 + k) * cols), [k, cols]),
      };
      const sq = dora ? new Float32Array(o === "out_in" ? k : cols) : null;
      if (sq) fetches.sq = f32(sq, [sq.length]);
      await session.run(feeds, fetches);
      if (sq && o === "out_in") { for (let i = 0; i < k; i++) sums![r0 + i] = sq[i]!; }
      else if (sq) { for (let j = 0; j < cols; j++) sums![j] = sums![j]! + sq[j]!; }
    }
    if (!sums) return { weight: out };
    const norm = Float32Array.from(sums, Math.sqrt);
    scaleOutputs(out, ratio(args.magnitude!, norm), o, rows, cols, out);
    return { weight: out, norm };
  }

  #session(o: Orientation, cols: number, dora: boolean): Promise<ort.InferenceSession> {
    const key = `${o}:${cols}:${dora}`;
    let p = this.#sessions.get(key);
    if (!p) {
      p = compile(o, cols, dora, this.threads);
      this.#sessions.set(key, p);
      p.catch(() => this.#sessions.delete(key));
    }
    return p;
  }

  /** Frees every session. */
  async release(): Promise<void> {
    const all = [...this.#sessions.values()];
    this.#sessions.clear();
    for (const p of all) await (await p.catch(() => null))?.release();
  }
}

/** `a / b` elementwise. */
function ratio(a: Float32Array, b: Float32Array): Float32Array {
  return a.map((v, i) => v / b[i]!);
}

/**
 * Multiplies each output of a stored weight by `f[output]` (rows for `[out, in]`, columns for
 * `[in, out]`), into `into` or a new buffer. O(out·in): DoRA's rescaling, no product involved.
 */
function scaleOutputs(
  w: Float32Array,
  f: Float32Array,
  o: Orientation,
  rows: number,
  cols: number,
  into: Float32Array | null,
): Float32Array {
  const out = into ?? new Float32Array(w.length);
  for (let i = 0; i < rows; i++) {
    const base = i * cols;
    if (o === "out_in") {
      const fi = f[i]!;
      for (let j = 0; j < cols; j++) out[base + j] = w[base + j]! * fi;
    } else {
      for (let j = 0; j < cols; j++) out[base + j] = w[base + j]! * f[j]!;
    }
  }
  return out;
}

/**
 * The graph's ONNX bytes with its outputs renamed in place (producer, consumers, graph output):
 * onnxruntime then writes the last node straight into the caller's preallocated buffer, where an
 * `Identity` to the wanted name would cost an intermediate and a copy.
 */
function named(g: Graph, outputs: Record<string, Value>): Uint8Array {
  const { proto } = toModelProto(g, { outputs: Object.values(outputs) });
  const rename = new Map(Object.entries(outputs).map(([name, v]) => [v.name, name]));
  const swap = (names: string[]) => names.map((n) => rename.get(n) ?? n);
  for (const node of proto.graph!.node) {
    node.input = swap(node.input);
    node.output = swap(node.output);
  }
  for (const o of proto.graph!.output) o.name = rename.get(o.name) ?? o.name;
  return encodeModel(proto);
}

/** `out = W + s·ΔW` on a block of rows of the stored weight (and, for DoRA, `Σ out²` per output). */
async function compile(
  o: Orientation,
  cols: number,
  dora: boolean,
  threads: number,
): Promise<ort.InferenceSession> {
  const g = new Graph();
  const W = g.input("W", "F32", ["rows", cols]);
  // A block of rows of W is a block of B's rows ([out, in] storage) or of A's columns ([in, out]).
  const A = g.input("A", "F32", ["rank", o === "out_in" ? cols : "rows"]);
  const B = g.input("B", "F32", [o === "out_in" ? "rows" : cols, "rank"]);
  const s = g.input("s", "F32", []);
  const out = deltaWeight(A, B, s, o, W);
  const outputs: Record<string, Value> = { out };
  if (dora) outputs.sq = outputSquares(out, o); // [rows] or [cols]: Σ out² per output
  return await ort.InferenceSession.create(named(g, outputs), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
  });
}
