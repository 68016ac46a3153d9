/**
 * The feeds of the stacked-adapter branch (`src/lora/multi.ts`) for one batch: the one-hot selector,
 * the rank mask, and per layer `A_cat [K·rmax, in]`, `B_cat [out, K·rmax]`, `R [K, out]`.
 *
 * Fast paths, because most batches are simple:
 * - a batch of one adapter whose layer rank equals `rmax` feeds the snapshot's own arrays (no copy);
 * - layers no adapter of the batch touches, and batches with no adapter at all, feed shared
 *   constant zeros / ones (cached by length; ORT never writes its inputs);
 * - stacks of several adapters are kept for the next batches over the same set (adapters are
 *   ordered by version, so the set's order does not matter): the last few sets, up to
 *   {@linkcode STACK_CACHE_BYTES}. Snapshots are immutable, so a cached stack is never stale.
 *
 * It also turns an adapter's layers into a snapshot's: checked against the model, the scale folded
 * into B once, DoRA's ratio computed once.
 *
 * Imported only by `engine.ts`.
 *
 * @module
 */

import type { LinearLayer } from "../models/model.ts";
import type { Tensor } from "../tensor.ts";
import type { DoraRatios, LayerWeights } from "../lora/dora.ts";
import { MASK, ONEHOT, stackNames } from "../lora/multi.ts";

/** One layer of a snapshot: B has the scale folded in. */
export interface SnapshotLayer {
  /** LoRA A, `[r, in]`. */
  readonly A: Float32Array;
  /** `scale · B`, `[out, r]`. */
  readonly sB: Float32Array;
  /** The layer's rank r. */
  readonly rank: number;
  /** DoRA's `m / ‖W + scale·B·A‖` [out], `null` for LoRA. */
  readonly ratio: Float32Array | null;
}

/** What the stacker needs of a snapshot. */
export interface Stackable {
  /** Unique per snapshot. */
  readonly version: number;
  readonly rank: number;
  readonly layers: ReadonlyMap<string, SnapshotLayer>;
}

const MAX_CONSTANTS = 256;
/** Most stacks kept, and their most bytes in total. */
export const STACK_CACHE_ENTRIES = 4;
export const STACK_CACHE_BYTES = 64 * 2 ** 20;

/** Builds stacked feeds for a fixed set of layers. */
export class Stacker {
  #consts = new Map<number, Float32Array>(); // key: ±length (negative = ones)
  #stacks = new Map<string, { feeds: Record<string, Tensor>; bytes: number }>(); // LRU order
  readonly #names: { layer: LinearLayer; A: string; B: string; R: string }[];

  constructor(layers: readonly LinearLayer[]) {
    this.#names = layers.map((layer) => ({ layer, ...stackNames(layer.name) }));
  }

  /** Feeds for `snaps` (one per row, `null` for the base), except the model's own input. */
  feeds(snaps: readonly (Stackable | null)[]): Record<string, Tensor> {
    const rows = snaps.length;
    const distinct = [...new Set(snaps.filter((s) => s !== null))].sort((a, b) =>
      a.version - b.version
    );
    const index = new Map(distinct.map((s, k) => [s, k])); // adapter → k
    const K = Math.max(1, distinct.length);
    let rmax = 1;
    for (const s of distinct) rmax = Math.max(rmax, s.rank);
    const kr = K * rmax;
    const onehot = new Float32Array(rows * K); // [rows, K]
    const mask = new Float32Array(rows * kr); // [rows, K·rmax]
    snaps.forEach((s, i) => {
      if (!s) return;
      const k = index.get(s)!;
      onehot[i * K + k] = 1;
      mask.fill(1, i * kr + k * rmax, i * kr + (k + 1) * rmax);
    });
    const selectors = { [ONEHOT]: f32([rows, K], onehot), [MASK]: f32([rows, kr], mask) };
    const key = distinct.map((s) => s.version).join(",");
    const cached = this.#stacks.get(key);
    if (cached) {
      this.#stacks.delete(key);
      this.#stacks.set(key, cached);
      return { ...cached.feeds, ...selectors };
    }
    const feeds: Record<string, Tensor> = {};
    let copied = 0;
    for (const { layer, A, B, R } of this.#names) {
      const { inFeatures: din, outFeatures: dout } = layer;
      const parts = distinct.map((s) => s.layers.get(layer.name));
      const only = K === 1 ? parts[0] : undefined;
      if (!parts.some((l) => l)) {
        feeds[A] = f32([kr, din], this.#const(0, kr * din));
        feeds[B] = f32([dout, kr], this.#const(0, dout * kr));
        feeds[R] = f32([K, dout], this.#const(1, K * dout));
      } else if (only && only.rank === rmax) {
        feeds[A] = f32([kr, din], only.A);
        feeds[B] = f32([dout, kr], only.sB);
        feeds[R] = f32([K, dout], only.ratio ?? this.#const(1, dout));
      } else {
        Object.assign(feeds, stack(parts, { A, B, R }, din, dout, rmax, this.#const(1, K * dout)));
        copied += (kr * (din + dout) + K * dout) * 4;
      }
    }
    if (copied > 0) this.#remember(key, feeds, copied);
    return { ...feeds, ...selectors };
  }

  #remember(key: string, feeds: Record<string, Tensor>, bytes: number): void {
    if (bytes > STACK_CACHE_BYTES) return;
    this.#stacks.set(key, { feeds, bytes });
    let total = 0;
    for (const e of this.#stacks.values()) total += e.bytes;
    for (const [k, e] of this.#stacks) {
      if (this.#stacks.size <= STACK_CACHE_ENTRIES && total <= STACK_CACHE_BYTES) break;
      this.#stacks.delete(k);
      total -= e.bytes;
    }
  }

  /** A shared array of `n` zeros or ones. */
  #const(value: 0 | 1, n: number): Float32Array {
    const key = value ? -n - 1 : n;
    let a = this.#consts.get(key);
    if (!a) {
      if (this.#consts.size >= MAX_CONSTANTS) this.#consts.clear();
      a = new Float32Array(n);
      if (value) a.fill(1);
      this.#consts.set(key, a);
    }
    return a;
  }
}

/** Copies K adapters' layer into fresh stacks, ranks zero-padded to `rmax`. */
function stack(
  parts: readonly (SnapshotLayer | undefined)[],
  names: { A: string; B: string; R: string },
  din: number,
  dout: number,
  rmax: number,
  ones: Float32Array,
): Record<string, Tensor> {
  const K = parts.length, kr = K * rmax;
  const A = new Float32Array(kr * din); // [K·rmax, in]
  const B = new Float32Array(dout * kr); // [out, K·rmax]
  let R = ones; // [K, out]
  parts.forEach((l, k) => {
    if (!l) return;
    A.set(l.A, k * rmax * din); // rows k·rmax … k·rmax + r−1; the rest stays zero
    const r = l.rank, sB = l.sB;
    for (let o = 0; o < dout; o++) {
      const from = o * r, to = o * kr + k * rmax;
      for (let j = 0; j < r; j++) B[to + j] = sB[from + j]!;
    }
    if (l.ratio) {
      if (R === ones) R = ones.slice();
      R.set(l.ratio, k * dout);
    }
  });
  return {
    [names.A]: f32([kr, din], A),
    [names.B]: f32([dout, kr], B),
    [names.R]: f32([K, dout], R),
  };
}

function f32(shape: number[], data: Float32Array): Tensor {
  return { dtype: "F32", shape, data };
}

/** The snapshot form of an adapter's layers (validated), with its bytes and largest rank. */
export async function snapshotLayers(
  name: string,
  weights: ReadonlyMap<string, LayerWeights>,
  adaptable: readonly LinearLayer[],
  dora: DoraRatios,
): Promise<{ layers: Map<string, SnapshotLayer>; bytes: number; rank: number }> {
  const layers = new Map<string, SnapshotLayer>();
  const known = new Map(adaptable.map((l) => [l.name, l]));
  let bytes = 0, rank = 0;
  for (const [lname, lw] of weights) {
    const layer = known.get(lname);
    const where = `Cannot register adapter "${name}": layer "${lname}"`;
    if (!layer) {
      throw new RangeError(
        `${where} is not adaptable here; layers: ${[...known.keys()].join(", ")}`,
      );
    }
    const { rank: r, A, B } = lw;
    const { inFeatures: din, outFeatures: dout } = layer;
    if (A.length !== r * din || B.length !== dout * r) {
      throw new TypeError(
        `${where} has A of ${A.length} and B of ${B.length} values, expected [${r}, ${din}] and [${dout}, ${r}]`,
      );
    }
    const sB = new Float32Array(B.length);
    for (let i = 0; i < sB.length; i++) sB[i] = B[i]! * lw.scale;
    const ratio = lw.magnitude ? await dora.compute(layer, lw) : null;
    layers.set(lname, { A, sB, rank: r, ratio });
    bytes += (A.length + sB.length + (ratio?.length ?? 0)) * 4;
    rank = Math.max(rank, r);
  }
  return { layers, bytes, rank };
}
