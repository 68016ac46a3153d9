/**
 * The hot-swap inference engine: one base model compiled once with the stacked-adapter branch
 * (see `multi_lora.ts`), a registry of named adapters, and runs where every row may use a
 * different adapter or none.
 *
 * - Switching adapters feeds other tensors: no recompilation, no base reload; registering an
 *   adapter costs O(adapter bytes) (scale folded into B once, DoRA ratios computed once).
 * - Consistency: a request resolves each adapter name to an immutable snapshot when it starts;
 *   replacing or unloading an adapter meanwhile does not affect it (the old snapshot lives until
 *   the request drops it).
 * - A capacity (count and/or bytes) with LRU eviction; adapters with a loader come back lazily on
 *   their next use.
 *
 * @module
 */

import { Graph } from "../engine/graph.ts";
import { Session, type SessionOptions } from "../engine/runtime.ts";
import type { BaseModel, LinearLayer } from "../model.ts";
import type { Tensor } from "../tensor.ts";
import { MASK, multiLoraHook, ONEHOT, type StackInputs, stackNames } from "./multi_lora.ts";
import { doraRatios } from "./dora_ratio.ts";

/** One layer of an adapter, in PEFT's Linear layout. */
export interface LayerWeights {
  readonly A: Float32Array; // [r, in]
  readonly B: Float32Array; // [out, r]
  readonly rank: number;
  readonly scale: number;
  /** DoRA magnitude [out], when the adapter is DoRA. */
  readonly magnitude?: Float32Array;
}

/** An adapter as the engine takes it: per-layer weights by layer name. */
export interface AdapterWeights {
  readonly layers: ReadonlyMap<string, LayerWeights>;
}

/** An immutable registered adapter version. */
export interface AdapterSnapshot {
  readonly name: string;
  readonly version: number;
  readonly bytes: number;
  readonly rank: number;
  /** Per layer: B with the scale folded in [out, r], and the DoRA ratio [out] (null for LoRA). */
  readonly layers: ReadonlyMap<
    string,
    { A: Float32Array; sB: Float32Array; rank: number; ratio: Float32Array | null }
  >;
}

/** Loads an adapter by name (e.g. from a directory of PEFT adapters). */
export type AdapterLoader = (name: string) => Promise<AdapterWeights>;

/** Options of {@link InferenceEngine.create}. */
export interface EngineOptions extends SessionOptions {
  /** Layers adapters may attach to (default: every linear layer of the model). */
  layers?: readonly LinearLayer[];
  /** Most adapters kept at once (LRU eviction beyond). */
  maxAdapters?: number;
  /** Most adapter bytes kept at once (LRU eviction beyond). */
  maxBytes?: number;
  /** Loads adapters that are not registered, on first use. */
  loader?: AdapterLoader;
}

/** Counters for `/metrics`. */
export interface EngineStats {
  loads: number;
  evictions: number;
  runs: number;
  rows: number;
}

/**
 * One base, many adapters.
 *
 * @example
 * ```ts ignore
 * const engine = await InferenceEngine.create(model);
 * engine.register("rot45", weights);
 * const y = await engine.run(x, ["rot45", null]); // row 0 with the adapter, row 1 without
 * ```
 */
export class InferenceEngine {
  readonly stats: EngineStats = { loads: 0, evictions: 0, runs: 0, rows: 0 };
  #entries = new Map<string, AdapterSnapshot>(); // insertion order = LRU order
  #loading = new Map<string, Promise<AdapterSnapshot>>();
  #version = 0;

  private constructor(
    readonly model: BaseModel,
    readonly layers: readonly LinearLayer[],
    private readonly session: Session,
    private readonly inputName: string,
    private readonly outputName: string,
    private readonly stacks: Map<string, StackInputs>,
    private readonly opts: EngineOptions,
  ) {}

  /** Compiles the serving graph of `model` once. */
  static async create(model: BaseModel, opts: EngineOptions = {}): Promise<InferenceEngine> {
    const layers = opts.layers ?? model.layers;
    const g = new Graph();
    const stacks = new Map<string, StackInputs>();
    const built = model.build(g, { hook: multiLoraHook(layers, stacks) });
    const input = built.inputs[0]!;
    const output = built.outputs[0]!;
    g.output(output);
    const session = await Session.compile(g, { ...opts, outputs: [output] });
    return new InferenceEngine(model, layers, session, input.name, output.name, stacks, opts);
  }

  /** Names of registered adapters, least recently used first. */
  get adapters(): AdapterSnapshot[] {
    return [...this.#entries.values()];
  }

  /** The current snapshot of `name`, if registered. */
  get(name: string): AdapterSnapshot | undefined {
    return this.#entries.get(name);
  }

  /** Registers (or replaces) an adapter; returns its snapshot. */
  async register(name: string, weights: AdapterWeights): Promise<AdapterSnapshot> {
    const snap = await this.#snapshot(name, weights);
    this.#entries.delete(name);
    this.#entries.set(name, snap);
    this.stats.loads++;
    this.#evict(name);
    return snap;
  }

  /** Removes an adapter; requests already holding it finish with it. Returns whether it existed. */
  unregister(name: string): boolean {
    return this.#entries.delete(name);
  }

  /** Resolves names to snapshots (loading lazily), marking them recently used. */
  async resolve(names: readonly (string | null)[]): Promise<(AdapterSnapshot | null)[]> {
    const out: (AdapterSnapshot | null)[] = [];
    for (const n of names) {
      if (n === null) {
        out.push(null);
        continue;
      }
      let s = this.#entries.get(n);
      if (s) {
        this.#entries.delete(n);
        this.#entries.set(n, s);
      } else {
        s = await this.#load(n);
      }
      out.push(s);
    }
    return out;
  }

  async #load(name: string): Promise<AdapterSnapshot> {
    const loader = this.opts.loader;
    if (!loader) throw new UnknownAdapterError(name);
    let p = this.#loading.get(name);
    if (!p) {
      p = loader(name).then((w) => this.register(name, w)).finally(() =>
        this.#loading.delete(name)
      );
      this.#loading.set(name, p);
    }
    return await p;
  }

  #evict(keep: string): void {
    const { maxAdapters = Infinity, maxBytes = Infinity } = this.opts;
    let bytes = 0;
    for (const s of this.#entries.values()) bytes += s.bytes;
    for (const [n, s] of this.#entries) {
      if (this.#entries.size <= maxAdapters && bytes <= maxBytes) break;
      if (n === keep) continue;
      this.#entries.delete(n);
      bytes -= s.bytes;
      this.stats.evictions++;
    }
  }

  async #snapshot(name: string, w: AdapterWeights): Promise<AdapterSnapshot> {
    const layers = new Map<
      string,
      { A: Float32Array; sB: Float32Array; rank: number; ratio: Float32Array | null }
    >();
    const known = new Map(this.layers.map((l) => [l.name, l]));
    let bytes = 0, rank = 0;
    for (const [lname, lw] of w.layers) {
      const layer = known.get(lname);
      if (!layer) {
        throw new RangeError(
          `Cannot register adapter "${name}": layer "${lname}" is not adaptable here; layers: ${
            [...known.keys()].join(", ")
          }`,
        );
      }
      const r = lw.rank;
      if (lw.A.length !== r * layer.inFeatures || lw.B.length !== layer.outFeatures * r) {
        throw new TypeError(
          `Cannot register adapter "${name}": layer "${lname}" has A of ${lw.A.length} and B of ${lw.B.length} values, expected [${r}, ${layer.inFeatures}] and [${layer.outFeatures}, ${r}]`,
        );
      }
      const sB = new Float32Array(lw.B.length);
      for (let i = 0; i < sB.length; i++) sB[i] = lw.B[i]! * lw.scale;
      const ratio = lw.magnitude ? await doraRatios(this.model, layer, lw) : null;
      layers.set(lname, { A: lw.A, sB, rank: r, ratio });
      bytes += (lw.A.length + sB.length + (ratio?.length ?? 0)) * 4;
      rank = Math.max(rank, r);
    }
    return { name, version: ++this.#version, bytes, rank, layers };
  }

  /**
   * Runs `x` [rows, in] with one adapter per row (`null` for the base), as one session run.
   * Names are resolved to snapshots first; the same snapshots serve the whole run.
   */
  async run(x: Tensor, adapters: string | null | readonly (string | null)[]): Promise<Tensor> {
    const rows = x.shape[0]!;
    const names = Array.isArray(adapters)
      ? adapters
      : new Array<string | null>(rows).fill(adapters as string | null);
    if (names.length !== rows) {
      throw new TypeError(`Cannot run: ${rows} input rows but ${names.length} adapter names`);
    }
    return this.runSnapshots(x, await this.resolve(names));
  }

  /** Runs with already resolved snapshots (one per row). */
  async runSnapshots(x: Tensor, snaps: readonly (AdapterSnapshot | null)[]): Promise<Tensor> {
    const rows = x.shape[0]!;
    const distinct = [...new Set(snaps.filter((s): s is AdapterSnapshot => s !== null))];
    const K = Math.max(1, distinct.length);
    const rmax = Math.max(1, ...distinct.map((s) => s.rank));
    const onehot = new Float32Array(rows * K);
    const mask = new Float32Array(rows * K * rmax);
    snaps.forEach((s, i) => {
      if (!s) return;
      const k = distinct.indexOf(s);
      onehot[i * K + k] = 1;
      mask.fill(1, i * K * rmax + k * rmax, i * K * rmax + (k + 1) * rmax);
    });
    const feeds: Record<string, Tensor> = {
      [this.inputName]: x,
      [ONEHOT]: { dtype: "F32", shape: [rows, K], data: onehot },
      [MASK]: { dtype: "F32", shape: [rows, K * rmax], data: mask },
    };
    for (const layer of this.layers) {
      const n = stackNames(layer.name);
      const { inFeatures: din, outFeatures: dout } = layer;
      const A = new Float32Array(K * rmax * din);
      const B = new Float32Array(dout * K * rmax);
      const R = new Float32Array(K * dout).fill(1);
      distinct.forEach((s, k) => {
        const l = s.layers.get(layer.name);
        if (!l) return;
        A.set(l.A, k * rmax * din); // rows k·rmax … k·rmax + r−1; the rest stays zero
        for (let o = 0; o < dout; o++) {
          B.set(l.sB.subarray(o * l.rank, (o + 1) * l.rank), o * K * rmax + k * rmax);
        }
        if (l.ratio) R.set(l.ratio, k * dout);
      });
      feeds[n.A] = { dtype: "F32", shape: [K * rmax, din], data: A };
      feeds[n.B] = { dtype: "F32", shape: [dout, K * rmax], data: B };
      feeds[n.R] = { dtype: "F32", shape: [K, dout], data: R };
    }
    const out = await this.session.run(feeds, [this.outputName]);
    this.stats.runs++;
    this.stats.rows += rows;
    return out[this.outputName]!;
  }

  /** Frees the session. */
  async close(): Promise<void> {
    await this.session.release();
  }
}

/** An adapter name that is neither registered nor loadable. */
export class UnknownAdapterError extends Error {
  constructor(readonly adapter: string) {
    super(`Unknown adapter "${adapter}"`);
    this.name = "UnknownAdapterError";
  }
}
