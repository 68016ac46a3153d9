/**
 * The hot-swap inference engine: one base model compiled once with the grouped-adapter branch
 * (see `src/lora/multi.ts`: rows are grouped by adapter, so each row's LoRA work is done once), a
 * registry of named adapters, and runs where every row may use a different adapter or none.
 *
 * - Switching adapters feeds other tensors: no recompilation, no base reload; registering an
 *   adapter costs O(adapter bytes) (scale folded into B once, DoRA ratios computed once).
 * - The graph is compiled without DoRA's term, which LoRA adapters only pass exact zeros through
 *   (`src/lora/multi.ts` has what it costs), and compiled once more, with it, when the first DoRA
 *   adapter is registered: that registration waits for the compile, runs meanwhile finish on the
 *   first graph, whose session is released after the last of them. LoRA rows get the same bits
 *   from both graphs.
 * - Consistency: a request resolves each adapter name to an immutable snapshot when it starts;
 *   replacing or unloading an adapter meanwhile does not affect it (the old snapshot lives until
 *   the request drops it).
 * - A capacity (count and/or bytes) with LRU eviction; adapters with a loader come back lazily on
 *   their next use. A lazy load that finishes after the name was registered or unregistered
 *   explicitly does not overwrite that newer decision.
 * - Whole models: a batch is one tensor `[rows, …]` per model input, of any dtype and rank (token
 *   ids, masks, images), or `x` `[rows, width]` for a one-input model (reshaped to its rows); the
 *   output is `[rows, …]`. A model whose file fixes its batch (`[1, 16, 96]`) runs its rows one
 *   batch-sized chunk at a time.
 *
 * @module
 */

import type { Dim } from "../engine/graph.ts";
import {
  fromOrt,
  type OrtTensor,
  type PrepackCacheUse,
  type Session,
  type SessionOptions,
  toOrt,
} from "../engine/runtime.ts";
import type { BaseModel, LinearLayer, ModelIO } from "../models/model.ts";
import { formatShape, type Tensor } from "../tensor.ts";
import { modelFeeds } from "../data/feeds.ts";
import { DoraRatios, type LayerWeights } from "../lora/dora.ts";
import { type SnapshotLayer, snapshotLayers } from "./_stack.ts";
import { compileServing, CurrentGraph, type Served } from "./_graph.ts";
import { concatRows, padRows, sliceRows } from "./rows.ts";

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
  /** Whether a layer is DoRA (has a magnitude vector). */
  readonly dora: boolean;
  /** The name it is registered under. */
  readonly name: string;
  /** Increases with every registration, engine-wide. */
  readonly version: number;
  /**
   * Bytes of its float32 arrays (A, scaled B; for DoRA B with the ratio folded in, and ratio − 1),
   * counted against `maxBytes`.
   */
  readonly bytes: number;
  /** The largest rank over its layers. */
  readonly rank: number;
  /** Where the weights came from (`AdapterWeights.source`). */
  readonly source?: string;
  /** Per layer: A, B with the scale (and DoRA's ratio) folded in [out, r], and ratio − 1 [out]. */
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
 * import { adapterWeights } from "../../adapters/weights.ts";
 * import { openSafetensorsModel } from "../models/blocks/safetensors_model.ts";
 * const model = await openSafetensorsModel("fixtures/peft/legacy/base.safetensors"); // 6 → 3
 * const engine = await InferenceEngine.create(model, { maxAdapters: 8 });
 * // adapterWeights takes an adapter folder, a loaded Adapter or engine weights
 * await engine.register("legacy", await adapterWeights("fixtures/peft/legacy", model));
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
  readonly #graphs: CurrentGraph;
  readonly #dora: DoraRatios;
  /** The inputs as `feeds` checks them: the batch free (a fixed one is met by chunking). */
  readonly #specs: readonly ModelIO[];
  /** The batch size the model file fixes (`[1, 16, 96]`: 1), or `undefined` when it is free. */
  readonly fixedBatch: number | undefined;

  /** The layers adapters attach to. */
  readonly layers: readonly LinearLayer[];
  /** The model's inputs, in its order. */
  readonly inputs: readonly ModelIO[];
  /** The output served, `[rows, …]`. */
  readonly output: ModelIO;
  private readonly feedNames: readonly string[];

  private constructor(
    readonly model: BaseModel,
    served: Served,
    private readonly opts: EngineOptions,
  ) {
    ({ layers: this.layers, inputs: this.inputs, output: this.output } = served);
    this.feedNames = served.feedNames;
    this.loader = opts.loader;
    this.#graphs = new CurrentGraph(served.graph, async () => {
      return (await compileServing(model, opts, true)).graph;
    });
    this.#dora = new DoraRatios(model);
    const batch = this.inputs[0]!.shape[0];
    this.fixedBatch = typeof batch === "number" ? batch : undefined;
    this.#specs = this.inputs.map((i) => ({ ...i, shape: ["batch", ...i.shape.slice(1)] }));
  }

  /** Compiles the serving graph of `model` (without DoRA's term until a DoRA adapter comes). */
  static async create(model: BaseModel, opts: EngineOptions = {}): Promise<InferenceEngine> {
    return new InferenceEngine(model, await compileServing(model, opts, false), opts);
  }

  /** Whether the serving graph has DoRA's term: from the first DoRA registration on. */
  get doraTerm(): boolean {
    return this.#graphs.graph.dora;
  }

  /** The session runs start on now. */
  private get session(): Session {
    return this.#graphs.graph.session;
  }

  /**
   * `rows` as the model's feeds: `x` renamed and reshaped for a one-input model, every input
   * checked for its dtype and shape, the inputs agreeing on the rows and on their symbolic
   * dimensions (a `seq` shared by `input_ids` and `attention_mask`). Throws a TypeError naming
   * the input and both shapes.
   */
  feeds(
    rows: Tensor | Readonly<Record<string, Tensor>>,
  ): { rows: number; feeds: Record<string, Tensor> } {
    const where = "Cannot run";
    const given: Readonly<Record<string, Tensor>> = isTensor(rows) ? { x: rows } : rows;
    for (const k of Object.keys(given)) {
      if (k !== "x" && !this.#specs.some((s) => s.name === k)) {
        throw new TypeError(
          `${where}: "${k}" is not an input of the model; its inputs: ${this.#list()}`,
        );
      }
    }
    const feeds = modelFeeds(this.#specs, given, where);
    const dims = new Map<Dim, { input: string; size: number }>();
    for (const s of this.#specs) {
      const t = feeds[s.name]!;
      s.shape.forEach((d, i) => {
        if (typeof d !== "string") return;
        const seen = dims.get(d);
        if (!seen) return void dims.set(d, { input: s.name, size: t.shape[i]! });
        if (seen.size !== t.shape[i]) {
          throw new TypeError(
            `${where}: input "${s.name}" has ${d} = ${t.shape[i]} (shape ${
              formatShape(t.shape)
            }), input "${seen.input}" has ${d} = ${seen.size}`,
          );
        }
      });
    }
    return { rows: feeds[this.#specs[0]!.name]!.shape[0]!, feeds };
  }

  #list(): string {
    return this.#specs.map((s) => `"${s.name}" ${s.dtype} ${formatShape(s.shape)}`).join(", ");
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

  /**
   * Registers (or replaces) an adapter given as engine weights; returns its snapshot.
   * `adapterWeights()` (in `adapters/weights.ts`, exported by `mod.ts`) makes them from an adapter
   * folder or a loaded adapter.
   */
  async register(name: string, weights: AdapterWeights): Promise<AdapterSnapshot> {
    this.#loading.delete(name); // a lazy load in flight is now stale
    const snap = await this.#snapshot(name, weights);
    this.#loading.delete(name); // and one that started while this one loaded
    return this.#install(snap);
  }

  /** Removes an adapter; requests already holding it finish with it. Returns whether it existed. */
  unregister(name: string): boolean {
    this.#loading.delete(name);
    const s = this.#entries.get(name);
    if (s) this.#drop(name, s);
    return s !== undefined;
  }

  /** Takes `name` out of the registry and its stacks out of the stacker's cache. */
  #drop(name: string, s: AdapterSnapshot): void {
    this.#entries.delete(name);
    this.#graphs.graph.stacker?.forget(s.version);
  }

  /**
   * The snapshot of `name` if it is registered, marked recently used; `undefined` otherwise (then
   * {@linkcode resolve} loads it).
   */
  use(name: string): AdapterSnapshot | undefined {
    const s = this.#entries.get(name);
    if (s) {
      this.#entries.delete(name);
      this.#entries.set(name, s);
    }
    return s;
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
      let s = seen.get(n);
      if (!s) s = this.use(n) ?? await this.#load(n);
      else if (this.#entries.get(n) === s) this.use(n); // still current: used again
      seen.set(n, s);
      out.push(s);
    }
    return out;
  }

  #install(snap: AdapterSnapshot): AdapterSnapshot {
    const old = this.#entries.get(snap.name);
    if (old) this.#drop(snap.name, old);
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
      this.#drop(n, s);
      bytes -= s.bytes;
      this.stats.evictions++;
    }
  }

  async #snapshot(name: string, w: AdapterWeights): Promise<AdapterSnapshot> {
    const built = await snapshotLayers(name, w.layers, this.layers, this.#dora);
    if (built.dora) await this.#graphs.ensureDora();
    return { name, version: ++this.#version, source: w.source, ...built };
  }

  /**
   * Runs a batch with one adapter per row (`null` for the base) and returns the output `[rows,
   * …]`. The batch is tensors `[rows, …]` by model input name, or `x` `[rows, width]` for a
   * one-input model (alone or as `{ x }`). Names are resolved to snapshots first; the same
   * snapshots serve the whole run.
   */
  async run(
    rows: Tensor | Readonly<Record<string, Tensor>>,
    adapters: string | null | readonly (string | null)[],
  ): Promise<Tensor> {
    const n = (isTensor(rows) ? rows : Object.values(rows)[0])?.shape[0] ?? 0;
    const names = Array.isArray(adapters)
      ? adapters
      : new Array<string | null>(n).fill(adapters as string | null);
    if (names.length !== n) {
      throw new TypeError(`Cannot run: ${n} input rows but ${names.length} adapter names`);
    }
    return this.runSnapshots(rows, await this.resolve(names));
  }

  /**
   * Runs with already resolved snapshots (one per row), whether still registered or not.
   *
   * ORT's GEMM takes a GEMV path for one row, which sums in another order (results differ by an
   * ulp or so). A single row therefore runs twice, as two rows, which keeps every row's output
   * independent of its batch: batched serving and offline prediction agree bit for bit. A model
   * whose file fixes the batch runs chunks of exactly that many rows, the last one padded with
   * copies of its last row.
   */
  async runSnapshots(
    rows: Tensor | Readonly<Record<string, Tensor>>,
    snaps: readonly (AdapterSnapshot | null)[],
  ): Promise<Tensor> {
    const { rows: n, feeds } = this.feeds(rows);
    if (snaps.length !== n) {
      throw new TypeError(`Cannot run: ${n} input rows but ${snaps.length} snapshots`);
    }
    return await this.runFeeds(feeds, snaps);
  }

  /**
   * {@linkcode runSnapshots} for feeds that {@linkcode feeds} returned (by model input name, rows
   * first), with one snapshot per row: they are not checked again (the batcher's path).
   */
  async runFeeds(
    feeds: Readonly<Record<string, Tensor>>,
    snaps: readonly (AdapterSnapshot | null)[],
  ): Promise<Tensor> {
    if (this.#closed) throw new Error("Cannot run: the engine was closed");
    const n = snaps.length;
    const fixed = this.fixedBatch;
    if (fixed === undefined && n !== 1) return await this.#run(feeds, snaps, n);
    const [step, size] = fixed === undefined ? [1, 2] : [fixed, fixed];
    const parts: Tensor[] = [];
    for (let r = 0; r < n; r += step) {
      const k = Math.min(step, n - r);
      const chunk: Record<string, Tensor> = {};
      for (const [name, t] of Object.entries(feeds)) {
        chunk[name] = padRows(sliceRows(t, r, k), size);
      }
      const s = snaps.slice(r, r + k);
      while (s.length < size) s.push(s[k - 1]!);
      parts.push(sliceRows(await this.#run(chunk, s, k), 0, k));
    }
    return concatRows(parts);
  }

  /**
   * One session run; `counted` of its rows are real (the rest pad a chunk). The feeds were checked
   * by {@linkcode feeds} and built by the stacker to the graph's declared shapes, so they go to
   * onnxruntime directly rather than through `Session.run`'s checks (a run of a small model is
   * tens of microseconds: the checks would be a good part of it).
   */
  async #run(
    feeds: Readonly<Record<string, Tensor>>,
    snaps: readonly (AdapterSnapshot | null)[],
    counted: number,
  ): Promise<Tensor> {
    // on the graph current now, even if a DoRA registration replaces it meanwhile
    const out = await this.#graphs.use(async ({ session, stacker, outputName }) => {
      const all: Record<string, OrtTensor> = {};
      if (stacker) {
        const stacked = stacker.feeds(snaps);
        for (const k in stacked) all[k] = toOrt(stacked[k]!);
      }
      this.#specs.forEach((s, i) => (all[this.feedNames[i]!] = toOrt(feeds[s.name]!)));
      try {
        return (await session.inner.run(all, [outputName]))[outputName]!;
      } catch (e) {
        // The model's inputs as the caller gave them: the rows of a padded chunk and the stacked
        // adapter feeds are the engine's own business.
        const shapes = this.#specs.map((s) => {
          const t = feeds[s.name]!;
          return `"${s.name}" ${t.dtype} ${formatShape([counted, ...t.shape.slice(1)])}`;
        });
        const rows = `${counted} row${counted === 1 ? "" : "s"}`;
        throw new Error(
          `Cannot run the model on ${rows}: ${(e as Error).message} (inputs: ${shapes.join(", ")})`,
          { cause: e },
        );
      }
    });
    this.stats.runs++;
    this.stats.rows += counted;
    return fromOrt(out);
  }

  /** How the base's session used `prepackCache` (`null` without one), for start-up messages. */
  get prepackCache(): PrepackCacheUse | null {
    return this.session.cache;
  }

  /** Frees the session and the DoRA ratio sessions; later runs fail. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#graphs.release();
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

function isTensor(rows: Tensor | Readonly<Record<string, Tensor>>): rows is Tensor {
  const t = rows as Partial<Tensor>;
  return typeof t.dtype === "string" && Array.isArray(t.shape) && ArrayBuffer.isView(t.data);
}
