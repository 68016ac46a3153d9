/**
 * Continuous batching across requests and adapters: a request that finds the engine idle runs at
 * once (on the event loop's next turn, with the requests read in the same turn), and requests that
 * arrive while a batch runs queue up and form the next batch, which starts as soon as the engine is
 * free (as vLLM does), so batching adds no latency at low load and amortizes a run over many
 * requests at high load. A batch is one mixed-adapter engine run
 * (`InferenceEngine.runFeeds`, one snapshot per row). One batch runs at a time: ORT already uses
 * every core inside a run.
 *
 * `maxWaitMs` (default 0) makes an idle engine wait that long (counted from the oldest waiting
 * request) for more rows before it runs a batch smaller than `maxBatch`: fuller batches at the
 * cost of latency, for clients that arrive in bursts.
 *
 * Each request brings its own snapshot, resolved when it arrived, so a batch may mix versions of
 * one adapter; rows never see a version other than their request's.
 *
 * A request is a tensor `[rows, …]` per model input. Requests join a batch when their rows have
 * the same shapes (a sequence model's requests of 7 and of 12 tokens run in separate batches);
 * the oldest waiting request always runs in the next batch, with the requests shaped like it.
 * The rows of a batch of several requests are joined into one array per input that the next
 * batch reuses, so the engine must neither keep its feeds once its run has settled nor answer
 * with a view of them.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import type { AdapterSnapshot, InferenceEngine } from "./engine.ts";
import { formatShape, type Tensor, type TensorData } from "../tensor.ts";
import { concatRows, sliceRows } from "./rows.ts";

/** Options of {@linkcode Batcher}. */
export interface BatcherOptions {
  /** Most rows per run (a single larger request runs alone). Default 64. */
  readonly maxBatch?: number;
  /**
   * Longest wait of an idle engine for more requests, ms. Default 0: run at once, and batch
   * what queues up while a batch runs.
   */
  readonly maxWaitMs?: number;
  /**
   * Most rows waiting; beyond, {@linkcode Batcher.submit} rejects with a BusyError (a request
   * larger than this is still taken when nothing waits). Default 65536.
   */
  readonly maxQueueRows?: number;
  /** Called after each run with its rows and requests (for metrics). */
  readonly onBatch?: (rows: number, requests: number) => void;
}

interface Pending {
  readonly feeds: Readonly<Record<string, Tensor>>; // [rows, …] each
  readonly rows: number;
  /** Input names, dtypes and row shapes: requests with the same key can share a run. */
  readonly key: string;
  readonly snap: AdapterSnapshot | null;
  readonly at: number;
  readonly resolve: (y: Tensor) => void;
  readonly reject: (e: unknown) => void;
}

/**
 * The queue is full: the server answers 503 with `Retry-After`.
 *
 * @example
 * ```ts
 * import { BusyError } from "./batcher.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(new BusyError("Server busy").name, "BusyError");
 * ```
 */
export class BusyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BusyError";
  }
}

/**
 * Groups concurrent requests into engine runs.
 *
 * @example
 * ```ts
 * import { Batcher } from "./batcher.ts";
 * import { InferenceEngine } from "./engine.ts";
 * import { loadAdapter } from "../../adapters/adapter.ts";
 * import { engineWeights } from "../../adapters/weights.ts";
 * import { openSafetensorsModel } from "../models/blocks/safetensors_model.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const model = await openSafetensorsModel("fixtures/peft/legacy/base.safetensors"); // 6 → 3
 * const engine = await InferenceEngine.create(model);
 * const adapter = await loadAdapter("fixtures/peft/legacy");
 * const snap = await engine.register("legacy", engineWeights(adapter, model));
 * const batches: number[] = [];
 * const batcher = new Batcher(engine, { maxWaitMs: 5, onBatch: (rows) => batches.push(rows) });
 * const rows = (n: number) => ({ x: { dtype: "F32" as const, shape: [n, 6], data: new Float32Array(n * 6) } });
 * const [y1, y2] = await Promise.all([
 *   batcher.submit(rows(1), snap), // one row with the adapter
 *   batcher.submit(rows(2), null), // two rows of the base
 * ]);
 * deepStrictEqual([y1.shape, y2.shape], [[1, 3], [2, 3]]); // [rows, out] each
 * deepStrictEqual(batches, [3]); // both requests ran as one batch
 * await batcher.drain();
 * await engine.close();
 * model.close();
 * ```
 */
export class Batcher {
  #queue: Pending[] = [];
  #queuedRows = 0;
  #running = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #soon = false; // a dispatch is due on the next turn of the event loop
  #idle: (() => void)[] = [];
  /**
   * The arrays batches are joined into, by input name, reused run after run (one batch runs at a
   * time, and the engine keeps no feed past its run): no allocation, nor the garbage-collector
   * work it brings, per batch (as the slabs of `_request.ts` save it per request).
   */
  #joined = new Map<string, TensorData>();
  readonly #maxBatch: number;
  readonly #maxWait: number;
  readonly #maxQueue: number;

  constructor(
    private readonly engine: Pick<InferenceEngine, "runFeeds">,
    private readonly opts: BatcherOptions = {},
  ) {
    this.#maxBatch = opts.maxBatch ?? 64;
    this.#maxWait = opts.maxWaitMs ?? 0;
    this.#maxQueue = opts.maxQueueRows ?? 65536;
    if (!Number.isInteger(this.#maxBatch) || this.#maxBatch < 1) {
      throw new RangeError(`Invalid maxBatch ${this.#maxBatch}: expected an integer >= 1`);
    }
    if (!(this.#maxWait >= 0)) {
      throw new RangeError(`Invalid maxWaitMs ${this.#maxWait}: expected a number >= 0`);
    }
  }

  /** Rows waiting (not yet running). */
  get queuedRows(): number {
    return this.#queuedRows;
  }

  /**
   * Queues a request, tensors `[rows, …]` by input name as {@linkcode InferenceEngine.feeds}
   * returns them (they are not checked again), to run with `snap`; resolves to its rows of the
   * output, `[rows, …]`.
   */
  submit(feeds: Readonly<Record<string, Tensor>>, snap: AdapterSnapshot | null): Promise<Tensor> {
    let rows = -1, key = "", equal = true;
    for (const k in feeds) {
      const t = feeds[k]!;
      if (rows < 0) rows = t.shape[0] ?? 0;
      else equal &&= t.shape[0] === rows;
      key += `${k}:${t.dtype}[${t.shape.slice(1).join(",")}],`;
    }
    if (rows < 1 || !equal) {
      throw new TypeError(
        `Cannot batch inputs of ${
          Object.entries(feeds).map(([k, t]) => `"${k}" ${formatShape(t.shape)}`).join(", ") ||
          "nothing"
        }: expected one or more rows, the same number in each`,
      );
    }
    if (this.#queuedRows > 0 && this.#queuedRows + rows > this.#maxQueue) {
      return Promise.reject(
        new BusyError(
          `Server busy: ${this.#queuedRows} rows are waiting (limit ${this.#maxQueue})`,
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const at = this.#maxWait > 0 ? performance.now() : 0; // only a wait reads it
      this.#queue.push({ feeds, rows, key, snap, at, resolve, reject });
      this.#queuedRows += rows;
      if (!this.#running) this.#schedule();
    });
  }

  /** Resolves once nothing is queued or running. */
  drain(): Promise<void> {
    if (!this.#running && this.#queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.#idle.push(r));
  }

  /**
   * Called when the engine is free: runs the next batch as soon as the requests that came in with
   * this one are read (the event loop's next turn: at once for a full batch), or when its wait is
   * over.
   */
  #schedule(): void {
    if (this.#queue.length === 0) return void this.#idle.splice(0).forEach((r) => r());
    if (this.#queuedRows >= this.#maxBatch) return void this.#dispatch();
    if (this.#maxWait === 0) {
      // Rather than running the first request alone: the requests that arrived with it join its
      // batch, and a lone client waits only for one turn of the event loop.
      if (!this.#soon) {
        this.#soon = true;
        setImmediate(() => {
          this.#soon = false;
          if (!this.#running && this.#queue.length > 0) this.#dispatch();
        });
      }
      return;
    }
    // A timer even when the wait is over, so requests submitted together still run together.
    const wait = Math.max(0, this.#queue[0]!.at + this.#maxWait - performance.now());
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      if (!this.#running) this.#dispatch();
    }, wait);
  }

  async #dispatch(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch: Pending[] = [];
    const later: Pending[] = [];
    const key = this.#queue[0]!.key;
    let rows = 0;
    let full = false;
    for (const next of this.#queue) {
      full ||= next.key === key && batch.length > 0 && rows + next.rows > this.#maxBatch;
      if (full || next.key !== key) later.push(next);
      else {
        batch.push(next);
        rows += next.rows;
      }
    }
    this.#queue = later;
    this.#queuedRows -= rows;
    this.#running = true;
    try {
      const feeds: Record<string, Tensor> = {};
      for (const name in batch[0]!.feeds) {
        feeds[name] = batch.length === 1 ? batch[0]!.feeds[name]! : this.#join(name, batch);
      }
      const snaps: (AdapterSnapshot | null)[] = new Array(rows);
      let at = 0;
      for (const p of batch) {
        snaps.fill(p.snap, at, at + p.rows);
        at += p.rows;
      }
      const y = await this.engine.runFeeds(feeds, snaps);
      at = 0;
      for (const p of batch) {
        p.resolve(batch.length === 1 ? y : sliceRows(y, at, p.rows));
        at += p.rows;
      }
      this.opts.onBatch?.(rows, batch.length);
    } catch (e) {
      for (const p of batch) p.reject(e);
    } finally {
      this.#running = false;
      this.#schedule();
    }
  }

  /** Input `name` of the batch's requests as one tensor, in the array kept for it. */
  #join(name: string, batch: readonly Pending[]): Tensor {
    const parts = batch.map((p) => p.feeds[name]!);
    const into = this.#joined.get(name);
    const t = concatRows(parts, { into });
    if (t.data.buffer !== into?.buffer) this.#joined.set(name, t.data); // grown, or another dtype
    return t;
  }
}
