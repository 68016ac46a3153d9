import { assert, assertEquals, assertRejects } from "../../tests/_assert.ts";
import { setImmediate } from "node:timers";
import type { Tensor } from "../tensor.ts";
import { Batcher, BusyError } from "./batcher.ts";
import type { AdapterSnapshot } from "./engine.ts";

/** A fake engine of rows of 2: y = x · 10 + k, k = the row's snapshot version (0 for none). */
function fakeEngine(delayMs = 0, fail = false) {
  const runs: { rows: number; versions: number[] }[] = [];
  return {
    runs,
    async runFeeds(
      feeds: Readonly<Record<string, Tensor>>,
      snaps: readonly (AdapterSnapshot | null)[],
    ): Promise<Tensor> {
      const x = feeds.x!;
      const versions = snaps.map((s) => s?.version ?? 0);
      runs.push({ rows: x.shape[0]!, versions });
      await new Promise((r) => setTimeout(r, delayMs));
      if (fail) throw new Error("boom");
      const data = (x.data as Float32Array).map((v, i) => v * 10 + versions[i >> 1]!);
      return { dtype: "F32", shape: x.shape, data }; // rows of 2 values, shaped as x
    },
  };
}

const snap = (version: number) => ({ version } as AdapterSnapshot);

/** A request of `x` `[rows, 2]` (`values.length / 2` rows), or of zeros. */
function rows(values: number[] | number): Record<string, Tensor> {
  const data = typeof values === "number" ? new Float32Array(values) : Float32Array.from(values);
  return { x: { dtype: "F32", shape: [data.length / 2, 2], data } };
}

Deno.test("requests within maxWaitMs run as one batch, each getting its own rows back", async () => {
  const engine = fakeEngine();
  const b = new Batcher(engine, { maxWaitMs: 20 });
  const ys = await Promise.all([
    b.submit(rows([1, 2]), snap(1)),
    b.submit(rows([3, 4, 5, 6]), null),
    b.submit(rows([7, 8]), snap(2)),
  ]);
  assertEquals(engine.runs, [{ rows: 4, versions: [1, 0, 0, 2] }]);
  assertEquals(ys.map((y) => [...y.data]), [[11, 21], [30, 40, 50, 60], [72, 82]]);
  assertEquals(ys.map((y) => y.shape), [[1, 2], [2, 2], [1, 2]]);
});

Deno.test("batches hold at most maxBatch rows; a larger request runs alone", async () => {
  const engine = fakeEngine(5);
  const seen: [number, number][] = [];
  const b = new Batcher(engine, {
    maxBatch: 4,
    maxWaitMs: 10_000, // a batch that waited for the timer would take 10 s
    onBatch: (r, q) => seen.push([r, q]),
  });
  const t0 = performance.now();
  const ones = Array.from({ length: 6 }, () => b.submit(rows(2), null));
  const big = b.submit(rows(12), snap(3)); // 6 rows
  await Promise.all([...ones, big]);
  assertEquals(engine.runs.map((r) => r.rows), [4, 2, 6]);
  assertEquals(seen, [[4, 4], [2, 2], [6, 1]]);
  assert(performance.now() - t0 < 5_000, "a full batch does not wait for the timer");
});

Deno.test("a failed run rejects every request of its batch, and the next batch still runs", async () => {
  const failing = fakeEngine(0, true);
  const b = new Batcher(failing, { maxWaitMs: 1 });
  const p = [b.submit(rows(2), null), b.submit(rows(2), null)];
  for (const r of p) await assertRejects(() => r, Error, "boom");
  await assertRejects(() => b.submit(rows(2), null), Error, "boom");
});

Deno.test("drain() waits for queued and running batches; a full queue is a BusyError", async () => {
  const engine = fakeEngine(10);
  const b = new Batcher(engine, { maxWaitMs: 5, maxQueueRows: 3 });
  const p = [b.submit(rows(4), null), b.submit(rows(2), null)];
  await assertRejects(() => b.submit(rows(2), null), BusyError, "3 rows are waiting");
  await b.drain();
  assertEquals(engine.runs.length, 1);
  await Promise.all(p);
  await b.drain(); // idle: resolves at once
  assertEquals(b.queuedRows, 0);
});

Deno.test("bad options, empty requests and inputs of unequal rows are rejected", () => {
  let threw = 0;
  for (const opts of [{ maxBatch: 0 }, { maxWaitMs: -1 }]) {
    try {
      new Batcher(fakeEngine(), opts);
    } catch (e) {
      threw += e instanceof RangeError ? 1 : 0;
    }
  }
  assertEquals(threw, 2);
  const unequal = { ...rows(4), m: rows(2).x! }; // 2 rows of x, 1 row of m
  for (const bad of [{}, rows(0), unequal]) {
    try {
      new Batcher(fakeEngine()).submit(bad, null);
      throw new Error(`accepted ${JSON.stringify(Object.keys(bad))}`);
    } catch (e) {
      assert(e instanceof TypeError, String(e));
    }
  }
});

Deno.test("requests whose rows differ in shape run in separate batches, the oldest first", async () => {
  const engine = fakeEngine();
  const b = new Batcher(engine, { maxWaitMs: 20 });
  const wide = (n: number) => ({ x: { ...rows(2 * n).x!, shape: [n, 1, 2] } }); // rows of [1, 2]
  const ys = await Promise.all([
    b.submit(rows([1, 2]), snap(1)),
    b.submit(wide(1), snap(2)),
    b.submit(rows([3, 4]), null),
    b.submit(wide(2), null),
  ]);
  assertEquals(engine.runs, [{ rows: 2, versions: [1, 0] }, { rows: 3, versions: [2, 0, 0] }]);
  assertEquals(ys.map((y) => y.shape), [[1, 2], [1, 1, 2], [1, 2], [2, 1, 2]]);
  assertEquals([...ys[2]!.data], [30, 40]);
});

Deno.test("an idle batcher runs a request at once; requests arriving meanwhile form the next batch", async () => {
  const engine = fakeEngine(30);
  const b = new Batcher(engine); // maxWaitMs 0: continuous batching
  const first = b.submit(rows([1, 2]), snap(1));
  await new Promise((r) => setImmediate(r)); // the event loop's next turn
  assertEquals(engine.runs.length, 1, "the first request started without waiting");
  const later = [b.submit(rows([3, 4]), null), b.submit(rows([5, 6]), snap(2))];
  assertEquals(b.queuedRows, 2);
  await first;
  await Promise.all(later);
  assertEquals(engine.runs, [{ rows: 1, versions: [1] }, { rows: 2, versions: [0, 2] }]);
});

Deno.test("batches in a row, smaller and larger than the one before, each run on their own rows", async () => {
  const engine = fakeEngine();
  const seen: number[][] = []; // the x each run was given
  const b = new Batcher({
    runFeeds: (feeds, snaps) => {
      seen.push([...(feeds.x!.data as Float32Array)]);
      return engine.runFeeds(feeds, snaps);
    },
  }, { maxWaitMs: 5 });
  const batch = (values: number[][]) => Promise.all(values.map((v) => b.submit(rows(v), null)));
  const ys = [
    await batch([[1, 2], [3, 4], [5, 6]]),
    await batch([[7, 8], [9, 10]]), // the joined rows of the first batch are reused
    await batch([[11, 12], [13, 14], [15, 16], [17, 18]]), // and grown
  ];
  assertEquals(seen, [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10], [11, 12, 13, 14, 15, 16, 17, 18]]);
  assertEquals(ys.map((y) => y.map((t) => [...t.data])), [
    [[10, 20], [30, 40], [50, 60]],
    [[70, 80], [90, 100]],
    [[110, 120], [130, 140], [150, 160], [170, 180]],
  ]);
});
