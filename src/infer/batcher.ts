/**
 * Micro-batching across requests and adapters: requests wait up to `maxWaitMs` (counted from the
 * oldest waiting one) or until `maxBatch` rows are queued, then run as one mixed-adapter batch
 * (`InferenceEngine.runSnapshots`, one snapshot per row). One batch runs at a time: ORT already
 * uses every core inside a run, and requests arriving meanwhile form the next batch.
 *
 * Each request brings its own snapshot, resolved when it arrived, so a batch may mix versions of
 * one adapter; rows never see a version other than their request's.
 *
 * @module
 */

import type { AdapterSnapshot, InferenceEngine } from "./engine.ts";

/** Options of {@linkcode Batcher}. */
export interface BatcherOptions {
  /** Most rows per run (a single larger request runs alone). Default 64. */
  readonly maxBatch?: number;
  /** Longest wait for more requests, ms. Default 5. */
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
  readonly x: Float32Array; // [rows, in]
  readonly rows: number;
  readonly snap: AdapterSnapshot | null;
  readonly at: number;
  readonly resolve: (y: Float32Array) => void;
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
 * ```ts ignore
 * const batcher = new Batcher(engine, { maxBatch: 64, maxWaitMs: 5 });
 * const [snap] = await engine.resolve(["rot45"]);
 * const y = await batcher.submit(new Float32Array(8), snap); // [1, out]
 * await batcher.drain();
 * ```
 */
export class Batcher {
  #queue: Pending[] = [];
  #queuedRows = 0;
  #running = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #idle: (() => void)[] = [];
  readonly #maxBatch: number;
  readonly #maxWait: number;
  readonly #maxQueue: number;

  constructor(
    private readonly engine: Pick<InferenceEngine, "runSnapshots" | "widths">,
    private readonly opts: BatcherOptions = {},
  ) {
    this.#maxBatch = opts.maxBatch ?? 64;
    this.#maxWait = opts.maxWaitMs ?? 5;
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

  /** Queues `x` (`[rows, in]`, row-major) to run with `snap`; resolves to its `[rows, out]`. */
  submit(x: Float32Array, snap: AdapterSnapshot | null): Promise<Float32Array> {
    const rows = x.length / this.engine.widths[0];
    if (!Number.isInteger(rows) || rows < 1) {
      throw new TypeError(
        `Cannot batch ${x.length} values: not a whole number of rows of ${this.engine.widths[0]}`,
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
      this.#queue.push({ x, rows, snap, at: performance.now(), resolve, reject });
      this.#queuedRows += rows;
      this.#schedule();
    });
  }

  /** Resolves once nothing is queued or running. */
  drain(): Promise<void> {
    if (!this.#running && this.#queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.#idle.push(r));
  }

  #schedule(): void {
    if (this.#running || this.#queue.length === 0) {
      if (!this.#running) this.#idle.splice(0).forEach((r) => r());
      return;
    }
    if (this.#queuedRows >= this.#maxBatch) return void this.#dispatch();
    if (this.#timer !== undefined) return;
    const wait = Math.max(0, this.#queue[0]!.at + this.#maxWait - performance.now());
    this.#timer = setTimeout(() => this.#dispatch(), wait);
  }

  async #dispatch(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch: Pending[] = [];
    let rows = 0;
    while (this.#queue.length) {
      const next = this.#queue[0]!;
      if (batch.length > 0 && rows + next.rows > this.#maxBatch) break;
      batch.push(this.#queue.shift()!);
      rows += next.rows;
    }
    this.#queuedRows -= rows;
    this.#running = true;
    try {
      const [din, dout] = this.engine.widths;
      const x = batch.length === 1 ? batch[0]!.x : new Float32Array(rows * din);
      const snaps: (AdapterSnapshot | null)[] = [];
      let at = 0;
      for (const p of batch) {
        if (x !== p.x) x.set(p.x, at * din);
        for (let i = 0; i < p.rows; i++) snaps.push(p.snap);
        at += p.rows;
      }
      const y =
        (await this.engine.runSnapshots({ dtype: "F32", shape: [rows, din], data: x }, snaps))
          .data as Float32Array;
      at = 0;
      for (const p of batch) {
        p.resolve(y.subarray(at * dout, (at + p.rows) * dout));
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
}
