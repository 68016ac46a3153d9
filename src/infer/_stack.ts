/**
 * The feeds of the grouped-adapter branch (`src/lora/multi.ts`) for one batch: the selectors
 * (each chunk's slots, each row's slot and, for DoRA's term, adapter) and per layer the stacks
 * `A [K, rmax, in]`, `B [K, out, rmax]` (DoRA's ratio folded in) and, for DoRA's term,
 * `D [K, out]` (ratio − 1). Rows without an adapter form the last chunk, whose stacks are zeros.
 *
 * Fast paths, because most batches are simple:
 * - a batch of one adapter whose layer rank equals `rmax` feeds the snapshot's own arrays (no copy);
 * - layers no adapter of the batch touches, and batches with no adapter at all, feed shared
 *   constant zeros (cached by length; ORT never writes its inputs);
 * - stacks of several adapters are kept for the next batches over the same set (adapters are
 *   ordered by version, so the set's order does not matter): the last few sets, up to
 *   {@linkcode STACK_CACHE_BYTES}. Snapshots are immutable, so a cached stack is never stale;
 *   the engine drops the stacks of an adapter that was replaced or unregistered
 *   ({@linkcode Stacker.forget}) so that they do not hold its memory.
 *
 * It also turns an adapter's layers into a snapshot's: checked against the model, the scale folded
 * into B once, DoRA's ratio computed once.
 *
 * Imported only by `engine.ts` and `_graph.ts`.
 *
 * @module
 */

import type { LinearLayer } from "../models/model.ts";
import type { Tensor } from "../tensor.ts";
import type { DoraRatios, LayerWeights } from "../lora/dora.ts";
import { ADAPTER, BACK, ROWS, stackNames } from "../lora/multi.ts";

/**
 * One layer of a snapshot, as the serving graph takes it: B has the scale (and DoRA's ratio
 * `m / ‖W + scale·B·A‖`) folded in.
 */
export interface SnapshotLayer {
  /** LoRA A, `[r, in]`. */
  readonly A: Float32Array;
  /** The layer's rank r. */
  readonly rank: number;
  /** The B the serving graph multiplies by, `[out, r]`: `ratio ⊙ scale·B` (DoRA), or `scale·B`. */
  readonly rB: Float32Array;
  /** `ratio − 1` [out] (DoRA), or `null` for LoRA. */
  readonly dr: Float32Array | null;
}

/** What the stacker needs of a snapshot. */
export interface Stackable {
  /** Unique per snapshot. */
  readonly version: number;
  readonly rank: number;
  /** Whether a layer is DoRA (has a ratio). */
  readonly dora: boolean;
  readonly layers: ReadonlyMap<string, SnapshotLayer>;
}

/** Options of {@linkcode Stacker}. */
export interface StackerOptions {
  /** The graph has DoRA's term: feed `D` and the adapter selector (default true). */
  readonly dora?: boolean;
}

const MAX_CONSTANTS = 256;
/** Most stacks kept, and their most bytes in total. */
export const STACK_CACHE_ENTRIES = 4;
export const STACK_CACHE_BYTES = 64 * 2 ** 20;

/** Builds grouped feeds for a fixed set of layers, for a graph with or without DoRA's term. */
export class Stacker {
  #zeros = new Map<number, Float32Array>(); // by length
  #stacks = new Map<string, Stack>(); // LRU order
  readonly #names: { layer: LinearLayer; A: string; B: string; D: string | null }[];
  readonly #dora: boolean;

  constructor(layers: readonly LinearLayer[], opts: StackerOptions = {}) {
    this.#dora = opts.dora ?? true;
    this.#names = layers.map((layer) => {
      const n = stackNames(layer.name);
      return { layer, A: n.A, B: n.B, D: this.#dora ? n.D : null };
    });
  }

  /**
   * Feeds for `snaps` (one per row, `null` for the base), except the model's own inputs. Throws
   * for a DoRA snapshot when the graph has no DoRA term (its rows would lose `(ratio − 1) ⊙ x·Wᵀ`).
   */
  feeds(snaps: readonly (Stackable | null)[]): Record<string, Tensor> {
    const distinct: Stackable[] = [];
    const index = new Map<Stackable | null, number>(); // adapter → k
    for (const s of snaps) {
      if (s && !index.has(s)) {
        if (s.dora && !this.#dora) {
          throw new Error(
            `Cannot stack DoRA adapter version ${s.version}: the graph has no DoRA term`,
          );
        }
        index.set(s, 0);
        distinct.push(s);
      }
    }
    distinct.sort((a, b) => a.version - b.version);
    distinct.forEach((s, k) => index.set(s, k));
    const none = distinct.length === 0 || snaps.includes(null);
    if (none) index.set(null, distinct.length); // the last chunk: rows without an adapter
    const feeds = { ...this.#stacked(distinct, none) };
    Object.assign(feeds, this.#selectors(snaps, index, distinct.length + (none ? 1 : 0)));
    return feeds;
  }

  /** Drops the kept stacks that hold snapshot `version` (it was replaced or unregistered). */
  forget(version: number): void {
    for (const [key, e] of this.#stacks) if (e.versions.includes(version)) this.#stacks.delete(key);
  }

  /** Rows grouped by adapter into K chunks of m slots (spare slots repeat the group's first). */
  #selectors(
    snaps: readonly (Stackable | null)[],
    index: ReadonlyMap<Stackable | null, number>,
    K: number,
  ): Record<string, Tensor> {
    const n = snaps.length;
    const count = new Int32Array(K);
    const of = new Int32Array(n); // each row's chunk
    for (let i = 0; i < n; i++) {
      const k = of[i] = index.get(snaps[i] ?? null)!;
      count[k] = count[k]! + 1;
    }
    let m = 2; // a GEMM of one row takes another path: never fewer than two slots
    for (const c of count) m = Math.max(m, c);
    const rows = new Int32Array(K * m); // [K, m]
    const back = new Int32Array(n); // [batch]
    const fill = new Int32Array(K);
    for (let i = 0; i < n; i++) {
      const k = of[i]!;
      const slot = k * m + fill[k]!;
      fill[k] = fill[k]! + 1;
      rows[slot] = i;
      back[i] = slot;
    }
    for (let k = 0; k < K; k++) rows.fill(rows[k * m]!, k * m + fill[k]!, (k + 1) * m);
    const feeds: Record<string, Tensor> = {
      [ROWS]: { dtype: "I32", shape: [K, m], data: rows },
      [BACK]: { dtype: "I32", shape: [n], data: back },
    };
    if (this.#dora) feeds[ADAPTER] = { dtype: "I32", shape: [n], data: of };
    return feeds;
  }

  /** Every layer's stacks for the adapters `distinct` (in version order), and zeros for `none`. */
  #stacked(distinct: readonly Stackable[], none: boolean): Record<string, Tensor> {
    const key = distinct.map((s) => s.version).join(",") + (none ? ",none" : "");
    const cached = this.#stacks.get(key);
    if (cached) {
      this.#stacks.delete(key);
      this.#stacks.set(key, cached);
      return cached.feeds;
    }
    const K = distinct.length + (none ? 1 : 0);
    let rmax = 1;
    for (const s of distinct) rmax = Math.max(rmax, s.rank);
    const feeds: Record<string, Tensor> = {};
    let copied = 0;
    for (const { layer, A, B, D } of this.#names) {
      const { inFeatures: din, outFeatures: dout } = layer;
      const parts = distinct.map((s) => s.layers.get(layer.name));
      if (none) parts.push(undefined);
      const only = K === 1 ? parts[0] : undefined;
      if (!parts.some((l) => l)) {
        feeds[A] = f32([K, rmax, din], this.#zero(K * rmax * din));
        feeds[B] = f32([K, dout, rmax], this.#zero(K * dout * rmax));
        if (D) feeds[D] = f32([K, dout], this.#zero(K * dout));
      } else if (only && only.rank === rmax) {
        feeds[A] = f32([1, rmax, din], only.A);
        feeds[B] = f32([1, dout, rmax], only.rB);
        if (D) feeds[D] = f32([1, dout], only.dr ?? this.#zero(dout));
      } else {
        Object.assign(feeds, stack(parts, { A, B, D }, din, dout, rmax, this.#zero(K * dout)));
        copied += K * (rmax * (din + dout) + (D ? dout : 0)) * 4;
      }
    }
    if (copied > 0) {
      this.#remember(key, {
        feeds,
        bytes: copied,
        versions: distinct.map((s) => s.version),
      });
    }
    return feeds;
  }

  #remember(key: string, entry: Stack): void {
    if (entry.bytes > STACK_CACHE_BYTES) return;
    this.#stacks.set(key, entry);
    let total = 0;
    for (const e of this.#stacks.values()) total += e.bytes;
    for (const [k, e] of this.#stacks) {
      if (this.#stacks.size <= STACK_CACHE_ENTRIES && total <= STACK_CACHE_BYTES) break;
      this.#stacks.delete(k);
      total -= e.bytes;
    }
  }

  /** A shared array of `n` zeros. */
  #zero(n: number): Float32Array {
    let a = this.#zeros.get(n);
    if (!a) {
      if (this.#zeros.size >= MAX_CONSTANTS) this.#zeros.clear();
      this.#zeros.set(n, a = new Float32Array(n));
    }
    return a;
  }
}

/** Stacked feeds kept for a set of adapters: their bytes, and the versions they hold. */
interface Stack {
  readonly feeds: Record<string, Tensor>;
  readonly bytes: number;
  readonly versions: readonly number[];
}

/** Copies K adapters' layer into fresh stacks, ranks zero-padded to `rmax` (`D` when named). */
function stack(
  parts: readonly (SnapshotLayer | undefined)[],
  names: { A: string; B: string; D: string | null },
  din: number,
  dout: number,
  rmax: number,
  zeros: Float32Array,
): Record<string, Tensor> {
  const K = parts.length;
  const A = new Float32Array(K * rmax * din); // [K, rmax, in]
  const B = new Float32Array(K * dout * rmax); // [K, out, rmax]
  let D = zeros; // [K, out]
  parts.forEach((l, k) => {
    if (!l) return;
    A.set(l.A, k * rmax * din); // rows k·rmax … k·rmax + r−1; the rest stays zero
    const r = l.rank, rB = l.rB, at = k * dout * rmax;
    if (r === rmax) B.set(rB, at);
    else for (let o = 0; o < dout; o++) B.set(rB.subarray(o * r, (o + 1) * r), at + o * rmax);
    if (l.dr && names.D) {
      if (D === zeros) D = zeros.slice();
      D.set(l.dr, k * dout);
    }
  });
  const feeds = { [names.A]: f32([K, rmax, din], A), [names.B]: f32([K, dout, rmax], B) };
  if (names.D) feeds[names.D] = f32([K, dout], D);
  return feeds;
}

function f32(shape: number[], data: Float32Array): Tensor {
  return { dtype: "F32", shape, data };
}

/**
 * The snapshot form of an adapter's layers (validated), with its bytes, largest rank and whether
 * a layer is DoRA.
 */
export async function snapshotLayers(
  name: string,
  weights: ReadonlyMap<string, LayerWeights>,
  adaptable: readonly LinearLayer[],
  dora: DoraRatios,
): Promise<{ layers: Map<string, SnapshotLayer>; bytes: number; rank: number; dora: boolean }> {
  const layers = new Map<string, SnapshotLayer>();
  const known = new Map(adaptable.map((l) => [l.name, l]));
  let bytes = 0, rank = 0, anyDora = false;
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
    const ratio = lw.magnitude ? await dora.compute(layer, lw) : null; // [out]
    // row o of [out, r] times ratio[o]
    const rB = ratio ? sB.map((v, i) => v * ratio[Math.floor(i / r)]!) : sB;
    const dr = ratio && ratio.map((v) => v - 1);
    layers.set(lname, { A, rank: r, rB, dr });
    bytes += (A.length + rB.length + (dr?.length ?? 0)) * 4;
    rank = Math.max(rank, r);
    anyDora ||= dr !== null;
  }
  return { layers, bytes, rank, dora: anyDora };
}
