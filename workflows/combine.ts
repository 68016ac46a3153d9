/**
 * Several LoRA adapters of one base as one adapter, exactly or truncated to a rank:
 *
 * - `linear`: `ΔW = Σ wᵢ · ΔWᵢ`, realised by concatenation: A = [A₁; A₂; …] `[Σr, in]`,
 *   B = [w₁s₁B₁, w₂s₂B₂, …] `[out, Σr]` (weights and scales folded into B), scale 1. Exact.
 * - `cat`: the same delta in the layout of PEFT's `add_weighted_adapter(combination_type="cat")`:
 *   weights and scales folded into A, B kept. Exact; the rank is the sum of the ranks.
 * - `svd`: the linear combination re-ranked to `rank` through its factors, never the dense delta:
 *   B = Q_B·R_B and Aᵀ = Q_A·R_A (thin QR), SVD of the small core R_B·R_Aᵀ = U·S·Vᵀ, keep the top
 *   `rank` (B' = Q_B·U_k·S_k, A' = (Q_A·V_k)ᵀ, PEFT's split). The relative Frobenius error of the
 *   truncation, `√(Σ_{j>k} σⱼ²) / √(Σ σⱼ²)`, is reported per layer; at full rank it is 0.
 *
 * The combined adapter has scale 1 everywhere (`lora_alpha = r` per layer, no rsLoRA). DoRA
 * adapters, trained biases and `modules_to_save` tensors have no weighted sum and are refused.
 *
 * @module
 */

import { type Tensor, toFloat32 } from "../src/tensor.ts";
import type { Adapter, AdapterLayer } from "../adapters/adapter.ts";
import { defaultPeftConfig, layerHyper } from "../adapters/config.ts";
import { escapeRegExp } from "../adapters/targets.ts";
import { matmul, qr, svd, transpose } from "./_svd.ts";

/** How {@linkcode combineAdapters} combines. */
export type CombineMethod = "linear" | "cat" | "svd";

/** Options of {@linkcode combineAdapters}. */
export interface CombineOptions {
  /** Default `"linear"`. */
  readonly method?: CombineMethod;
  /** One weight per adapter; default 1 each (a plain sum). */
  readonly weights?: readonly number[];
  /** Target rank of `svd` (required there). */
  readonly rank?: number;
  /** Name of the result; default the names joined with `+`. */
  readonly name?: string;
}

/** The combined adapter and, for `svd`, each layer's truncation error. */
export interface Combined {
  /** The combined adapter, named by `opts.name`. */
  readonly adapter: Adapter;
  /** Relative Frobenius error of the truncation by module (`svd` only; 0 at full rank). */
  readonly errors: ReadonlyMap<string, number>;
}

/**
 * Combines adapters of the same base into one.
 *
 * @example
 * ```ts
 * import { combineAdapters } from "./combine.ts";
 * import { loadAdapter } from "../adapters/adapter.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const a = await loadAdapter("fixtures/peft/legacy");
 * const { adapter } = combineAdapters([a, a], { method: "cat", weights: [0.7, 0.3] });
 * deepStrictEqual(adapter.layers.get("fc1")!.A.shape, [4, 6]); // rank 2 + 2
 * ```
 */
export function combineAdapters(adapters: readonly Adapter[], opts: CombineOptions = {}): Combined {
  const method = opts.method ?? "linear";
  const weights = opts.weights ?? adapters.map(() => 1);
  const name = opts.name ?? adapters.map((a) => a.name).join("+");
  const where = `Cannot combine adapters ${adapters.map((a) => `"${a.name}"`).join(", ")}`;
  check(adapters, weights, method, opts.rank, where);
  const layers = new Map<string, AdapterLayer>();
  const errors = new Map<string, number>();
  const modules = [...new Set(adapters.flatMap((a) => [...a.layers.keys()]))];
  for (const module of modules) {
    const parts = adapters.flatMap((a, i) => {
      const t = a.layers.get(module);
      return t ? [{ t, w: weights[i]! * layerHyper(a.config, module).scale, from: a.name }] : [];
    });
    const [out, inF] = [parts[0]!.t.B.shape[0]!, parts[0]!.t.A.shape[1]!];
    for (const p of parts) {
      if (p.t.B.shape[0] !== out || p.t.A.shape[1] !== inF) {
        throw new TypeError(
          `${where}: module "${module}" is [${out}, ${inF}] in "${parts[0]!.from}" but [${
            p.t.B.shape[0]
          }, ${p.t.A.shape[1]}] in "${p.from}"`,
        );
      }
    }
    const { A, B, rank } = concat(parts, out, inF, method === "cat" ? "A" : "B");
    if (method !== "svd") layers.set(module, { A: f32(A, [rank, inF]), B: f32(B, [out, rank]) });
    else {
      const r = rerank(A, B, out, inF, rank, opts.rank!);
      layers.set(module, { A: f32(r.A, [opts.rank!, inF]), B: f32(r.B, [out, opts.rank!]) });
      errors.set(module, r.error);
    }
  }
  const ranks = new Map([...layers].map(([m, t]) => [m, t.A.shape[0]!]));
  const r = mostCommon([...ranks.values()]);
  const pattern: Record<string, number> = {};
  for (const [m, k] of ranks) if (k !== r) pattern[escapeRegExp(m)] = k;
  const first = adapters[0]!.config;
  const config = defaultPeftConfig({
    r,
    loraAlpha: r,
    targetModules: modules,
    rankPattern: pattern,
    alphaPattern: { ...pattern },
    fanInFanOut: first.fanInFanOut,
    baseModelNameOrPath: first.baseModelNameOrPath,
    taskType: first.taskType,
  });
  return {
    adapter: { name, config, layers, biases: new Map(), extra: new Map() },
    errors,
  };
}

function check(
  adapters: readonly Adapter[],
  weights: readonly number[],
  method: CombineMethod,
  rank: number | undefined,
  where: string,
): void {
  if (adapters.length === 0) throw new TypeError("Cannot combine adapters: none given");
  if (!["linear", "cat", "svd"].includes(method)) {
    throw new RangeError(`${where}: unknown method "${method}", expected linear, cat or svd`);
  }
  if (weights.length !== adapters.length || weights.some((w) => !Number.isFinite(w))) {
    throw new RangeError(
      `${where}: expected ${adapters.length} finite weights, got [${weights.join(", ")}]`,
    );
  }
  if (method === "svd" && (rank === undefined || !Number.isInteger(rank) || rank < 1)) {
    throw new RangeError(`${where}: svd needs a target rank (an integer >= 1), got ${rank}`);
  }
  for (const a of adapters) {
    if (a.config.useDora) throw new TypeError(`${where}: "${a.name}" is a DoRA adapter`);
    if (a.biases.size || a.extra.size) {
      throw new TypeError(
        `${where}: "${a.name}" holds trained biases or modules_to_save tensors, which have no weighted sum`,
      );
    }
    if (a.config.fanInFanOut !== adapters[0]!.config.fanInFanOut) {
      throw new TypeError(
        `${where}: "${a.name}" and "${adapters[0]!.name}" differ in fan_in_fan_out`,
      );
    }
  }
}

/** A = [A₁; A₂; …] and B = [B₁, B₂, …] with each factor `w` folded into A or B, in float64. */
function concat(
  parts: readonly { t: AdapterLayer; w: number }[],
  out: number,
  inF: number,
  foldInto: "A" | "B",
): { A: Float64Array; B: Float64Array; rank: number } {
  const rank = parts.reduce((s, p) => s + p.t.A.shape[0]!, 0);
  const A = new Float64Array(rank * inF);
  const B = new Float64Array(out * rank);
  let at = 0;
  for (const { t, w } of parts) {
    const r = t.A.shape[0]!;
    const a = toFloat32(t.A).data, b = toFloat32(t.B).data;
    const [wa, wb] = foldInto === "A" ? [w, 1] : [1, w];
    for (let i = 0; i < r * inF; i++) A[at * inF + i] = a[i]! * wa;
    for (let o = 0; o < out; o++) {
      for (let j = 0; j < r; j++) B[o * rank + at + j] = b[o * r + j]! * wb;
    }
    at += r;
  }
  return { A, B, rank };
}

/** `B·A` re-ranked to `k` through QR of the factors and the SVD of their core. */
function rerank(
  A: Float64Array,
  B: Float64Array,
  out: number,
  inF: number,
  rank: number,
  k: number,
): { A: Float64Array; B: Float64Array; error: number } {
  const qb = qr(B, out, rank); // B = Q_B·R_B, R_B [pb, rank]
  const qa = qr(transpose(A, rank, inF), inF, rank); // Aᵀ = Q_A·R_A, R_A [pa, rank]
  const core = matmul(qb.R, transpose(qa.R, qa.p, rank), qb.p, rank, qa.p); // [pb, pa]
  const { U, S, V, q } = svd(core, qb.p, qa.p);
  let total = 0, dropped = 0;
  S.forEach((s, j) => {
    total += s * s;
    if (j >= k) dropped += s * s;
  });
  const keep = Math.min(k, q);
  // B' = Q_B·U_k·S_k [out, k], A' = (Q_A·V_k)ᵀ [k, in]; columns past q stay zero.
  const US = new Float64Array(qb.p * k), Vk = new Float64Array(qa.p * k);
  for (let i = 0; i < qb.p; i++) {
    for (let j = 0; j < keep; j++) US[i * k + j] = U[i * q + j]! * S[j]!;
  }
  for (let i = 0; i < qa.p; i++) for (let j = 0; j < keep; j++) Vk[i * k + j] = V[i * q + j]!;
  const Bk = matmul(qb.Q, US, out, qb.p, k);
  const Ak = transpose(matmul(qa.Q, Vk, inF, qa.p, k), inF, k);
  return { A: Ak, B: Bk, error: total > 0 ? Math.sqrt(dropped / total) : 0 };
}

function f32(data: Float64Array, shape: number[]): Tensor<"F32"> {
  return { dtype: "F32", shape, data: Float32Array.from(data) };
}

function mostCommon(values: readonly number[]): number {
  const counts = new Map<number, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1] || b[0] - a[0])[0]![0];
}
