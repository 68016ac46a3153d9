/**
 * The hot-swap inference engine: one base model compiled once with the stacked-adapter branch
 * (see `src/lora/multi.ts`), a registry of named adapters, and runs where every row may use a
 * different adapter or none.
 *
 * - Switching adapters feeds other tensors: no recompilation, no base reload; registering an
 *   adapter costs O(adapter bytes) (scale folded into B once, DoRA ratios computed once).
 * - Consistency: a request resolves each adapter name to an immutable snapshot when it starts;
 *   replacing or unloading an adapter meanwhile does not affect it (the old snapshot lives until
 *   the request drops it).
 * - A capacity (count and/or bytes) with LRU eviction; adapters with a loader come back lazily on
 *   their next use. A lazy load that finishes after the name was registered or unregistered
 *   explicitly does not overwrite that newer decision.
 *
 * @module
 */

import { Graph } from "../engine/graph.ts";
import { Session, type SessionOptions } from "../engine/runtime.ts";
import type { BaseModel, LinearLayer } from "../models/model.ts";
import type { Tensor } from "../tensor.ts";
import { DoraRatios, type LayerWeights } from "../lora/dora.ts";
import { multiLoraHook, type StackInputs } from "../lora/multi.ts";
import { type SnapshotLayer, snapshotLayers, Stacker } from "./_stack.ts";

export type { LayerWeights, SnapshotLayer };

/** An adapter as the engine takes it: per-layer weights by layer name. */
export interface AdapterWeights {
  /** Weights by layer name; layers not listed run without the adapter. */
  readonly layers: ReadonlyMap<string, LayerWeights>;
  /** Where the weights came from (a folder), for listings. */
  readonly source?: string;
}

/** An immutable registered adapter version. */
export interface AdapterSnapshot {
  /** The name it is registered under. */
  readonly name: string;
  /** Increases with every registration, engine-wide. */
  readonly version: number;
  /** Bytes of its float32 arrays (A, scaled B, DoRA ratios), counted against `maxBytes`. */
  readonly bytes: number;
  /** The largest rank over its layers. */
  readonly rank: number;
  /** Where the weights came from (`AdapterWeights.source`). */
  readonly source?: string;
  /** Per layer: B with the scale folded in [out, r], and the DoRA ratio [out] (null for LoRA). */
  readonly layers: ReadonlyMap<string, SnapshotLayer>;
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
  /** Registrations, explicit or lazy. */
  loads: number;
  /** Adapters dropped to stay within `maxAdapters` or `maxBytes`. */
  evictions: number;
  /** Session runs. */
  runs: number;
  /** Input rows run (a padded single-row run counts one). */
  rows: number;
}

/**
 * One base, many adapters.
 *
 * @example
 * ```ts
 * import { InferenceEngine } from "./engine.ts";
 * import { loadAdapter } from "../../adapters/adapter.ts";
 * import { engineWeights } from "../../adapters/weights.ts";
 * import { openSafetensorsModel } from "../models/blocks/safetensors_model.ts";
 * const model = await openSafetensorsModel("fixtures/peft/legacy/base.safetensors"); // 6 → 3
 * const engine = await InferenceEngine.create(model, { maxAdapters: 8 });
 * await engine.register("legacy", engineWeights(await loadAdapter("fixtures/peft/legacy"), model));
 * const x = { dtype: "F32" as const, shape: [2, 6], data: new Float32Array(12).fill(1) };
 * const y = await engine.run(x, ["legacy", null]); // row 0 with the adapter, row 1 without
 * await engine.close();
 * model.close();
 * ```
 */
export class InferenceEngine {
  /** Counters since creation, read by the server's `/metrics`. */
  readonly stats: EngineStats = { loads: 0, evictions: 0, runs: 0, rows: 0 };
  /** Loads unknown names on first use; may be set after creation (the server installs one). */
  loader: AdapterLoader | undefined;
  #entries = new Map<string, AdapterSnapshot>(); // insertion order = LRU order
  #loading = new Map<string, Promise<AdapterSnapshot>>();
  #version = 0;
  #closed = false;
  readonly #stacker: Stacker;
  readonly #dora: DoraRatios;

  private constructor(
    readonly model: BaseModel,
    readonly layers: readonly LinearLayer[],
    private readonly session: Session,
    private readonly inputName: string,
    private readonly outputName: string,
    /** `[in, out]` widths of the model's 2-D input and output. */
    readonly widths: readonly [number, number],
    private readonly opts: EngineOptions,
  ) {
    this.loader = opts.loader;
    this.#stacker = new Stacker(layers);
    this.#dora = new DoraRatios(model);
  }

  /** Compiles the serving graph of `model` once. */
  static async create(model: BaseModel, opts: EngineOptions = {}): Promise<InferenceEngine> {
    const layers = opts.layers ?? model.layers;
    const g = new Graph();
    const stacks = new Map<string, StackInputs>();
    const built = model.build(g, { hook: multiLoraHook(layers, stacks) });
    const input = built.inputs[0]!;
    const output = built.outputs[0]!;
    const [din, dout] = [input.shape.at(-1), output.shape.at(-1)];
    if (input.rank !== 2 || typeof din !== "number" || typeof dout !== "number") {
      throw new TypeError(`Cannot serve a model with input ${input} and output ${output}`);
    }
    g.output(output);
    const session = await Session.compile(g, { ...opts, outputs: [output] });
    return new InferenceEngine(model, layers, session, input.name, output.name, [din, dout], opts);
  }

  /** Registered adapters, least recently used first. */
  get adapters(): AdapterSnapshot[] {
    return [...this.#entries.values()];
  }

  /** Bytes held by registered adapters. */
  get bytes(): number {
    let n = 0;
    for (const s of this.#entries.values()) n += s.bytes;
    return n;
  }

  /** The current snapshot of `name`, if registered (does not count as a use). */
  get(name: string): AdapterSnapshot | undefined {
    return this.#entries.get(name);
  }

  /** Registers (or replaces) an adapter; returns its snapshot. */
  async register(name: string, weights: AdapterWeights): Promise<AdapterSnapshot> {
    this.#loading.delete(name); // a lazy load in flight is now stale
    return this.#install(await this.#snapshot(name, weights));
  }

  /** Removes an adapter; requests already holding it finish with it. Returns whether it existed. */
  unregister(name: string): boolean {
    this.#loading.delete(name);
    return this.#entries.delete(name);
  }

  /** Resolves names to snapshots (loading lazily), marking them recently used. */
  async resolve(names: readonly (string | null)[]): Promise<(AdapterSnapshot | null)[]> {
    const out: (AdapterSnapshot | null)[] = [];
    const seen = new Map<string, AdapterSnapshot>(); // one version per name within a call
    for (const n of names) {
      if (n === null) {
        out.push(null);
        continue;
      }
      let s = seen.get(n) ?? this.#entries.get(n);
      if (s && this.#entries.get(n) === s) {
        this.#entries.delete(n);
        this.#entries.set(n, s);
      } else if (!s) {
        s = await this.#load(n);
      }
      seen.set(n, s);
      out.push(s);
    }
    return out;
  }

  #install(snap: AdapterSnapshot): AdapterSnapshot {
    this.#entries.delete(snap.name);
    this.#entries.set(snap.name, snap);
    this.stats.loads++;
    this.#evict(snap.name);
    return snap;
  }

  async #load(name: string): Promise<AdapterSnapshot> {
    const loader = this.loader;
    if (!loader) throw new UnknownAdapterError(name);
    let p = this.#loading.get(name);
    if (!p) {
      const mine: Promise<AdapterSnapshot> = loader(name)
        .then((w) => this.#snapshot(name, w))
        .then((snap) => {
          if (this.#loading.get(name) !== mine) return this.#entries.get(name) ?? snap; // stale
          this.#loading.delete(name);
          return this.#install(snap);
        }, (e) => {
          if (this.#loading.get(name) === mine) this.#loading.delete(name);
          throw e;
        });
      this.#loading.set(name, p = mine);
    }
    return await p;
  }

  #evict(keep: string): void {
    const { maxAdapters = Infinity, maxBytes = Infinity } = this.opts;
    let bytes = this.bytes;
    for (const [n, s] of this.#entries) {
      if (this.#entries.size <= maxAdapters && bytes <= maxBytes) break;
      if (n === keep) continue;
      this.#entries.delete(n);
      bytes -= s.bytes;
      this.stats.evictions++;
    }
  }

  async #snapshot(name: string, w: AdapterWeights): Promise<AdapterSnapshot> {
    const built = await snapshotLayers(name, w.layers, this.layers, this.#dora);
    return { name, version: ++this.#version, source: w.source, ...built };
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

  /** Runs with already resolved snapshots (one per row), whether still registered or not. */
  async runSnapshots(x: Tensor, snaps: readonly (AdapterSnapshot | null)[]): Promise<Tensor> {
    if (this.#closed) throw new Error("Cannot run: the engine was closed");
    const rows = x.shape[0]!;
    if (snaps.length !== rows) {
      throw new TypeError(`Cannot run: ${rows} input rows but ${snaps.length} snapshots`);
    }
    if (rows === 1) return await this.#runOne(x, snaps[0]!);
    const feeds = this.#stacker.feeds(snaps);
    feeds[this.inputName] = x;
    const out = await this.session.run(feeds, [this.outputName]);
    this.stats.runs++;
    this.stats.rows += rows;
    return out[this.outputName]!;
  }

  /**
   * ORT's GEMM takes a GEMV path for one row, which sums in another order (results differ by an
   * ulp or so). Running the row twice keeps every row's output independent of its batch, so
   * batched serving and offline prediction agree bit for bit.
   */
  async #runOne(x: Tensor, snap: AdapterSnapshot | null): Promise<Tensor> {
    const w = x.shape[1]!;
    const two = new Float32Array(2 * w);
    two.set(x.data as Float32Array);
    two.copyWithin(w, 0, w);
    const y = await this.runSnapshots({ dtype: "F32", shape: [2, w], data: two }, [snap, snap]);
    this.stats.rows--; // the padded run above counted two rows
    const out = y.shape[1]!;
    return { dtype: "F32", shape: [1, out], data: (y.data as Float32Array).slice(0, out) };
  }

  /** Frees the session and the DoRA ratio sessions; later runs fail. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.session.release();
    await this.#dora.release();
  }
}

/**
 * An adapter name that is neither registered nor loadable (the server answers 404).
 *
 * @example
 * ```ts ignore
 * try {
 *   await engine.run(x, "nope");
 * } catch (e) {
 *   if (e instanceof UnknownAdapterError) console.log(e.adapter); // "nope"
 * }
 * ```
 */
export class UnknownAdapterError extends Error {
  constructor(readonly adapter: string, options?: ErrorOptions) {
    super(`Unknown adapter "${adapter}"`, options);
    this.name = "UnknownAdapterError";
  }
}
