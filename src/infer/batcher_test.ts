import { assert, assertEquals, assertRejects } from "../../tests/_assert.ts";
import type { Tensor } from "../tensor.ts";
import { Batcher, BusyError } from "./batcher.ts";
import type { AdapterSnapshot } from "./engine.ts";

/** A fake engine: y = x · 10 + k, k = the row's snapshot version (0 for none); widths [2, 2]. */
function fakeEngine(delayMs = 0, fail = false) {
  const runs: { rows: number; versions: number[] }[] = [];
  return {
    runs,
    widths: [2, 2] as const,
    async runSnapshots(x: Tensor, snaps: readonly (AdapterSnapshot | null)[]): Promise<Tensor> {
      const versions = snaps.map((s) => s?.version ?? 0);
      runs.push({ rows: x.shape[0]!, versions });
      await new Promise((r) => setTimeout(r, delayMs));
      if (fail) throw new Error("boom");
      const data = (x.data as Float32Array).map((v, i) => v * 10 + versions[i >> 1]!);
      return { dtype: "F32", shape: [x.shape[0]!, 2], data };
    },
  };
}

const snap = (version: number) => ({ version } as AdapterSnapshot);

Deno.test("requests within maxWaitMs run as one batch, each getting its own rows back", async () => {
  const engine = fakeEngine();
  const b = new Batcher(engine, { maxWaitMs: 20 });
  const ys = await Promise.all([
    b.submit(new Float32Array([1, 2]), snap(1)),
    b.submit(new Float32Array([3, 4, 5, 6]), null),
    b.submit(new Float32Array([7, 8]), snap(2)),
  ]);
  assertEquals(engine.runs, [{ rows: 4, versions: [1, 0, 0, 2] }]);
  assertEquals(ys.map((y) => [...y]), [[11, 21], [30, 40, 50, 60], [72, 82]]);
});

Deno.test("batches hold at most maxBatch rows; a larger request runs alone", async () => {
  const engine = fakeEngine(5);
  const seen: [number, number][] = [];
  const b = new Batcher(engine, {
    maxBatch: 4,
    maxWaitMs: 50,
    onBatch: (r, q) => seen.push([r, q]),
  });
  const t0 = performance.now();
  const ones = Array.from({ length: 6 }, () => b.submit(new Float32Array(2), null));
  const big = b.submit(new Float32Array(12), snap(3)); // 6 rows
  await Promise.all([...ones, big]);
  assertEquals(engine.runs.map((r) => r.rows), [4, 2, 6]);
  assertEquals(seen, [[4, 4], [2, 2], [6, 1]]);
  assert(performance.now() - t0 < 45, "a full batch does not wait for the timer");
});

Deno.test("a failed run rejects every request of its batch, and the next batch still runs", async () => {
  const failing = fakeEngine(0, true);
  const b = new Batcher(failing, { maxWaitMs: 1 });
  const p = [b.submit(new Float32Array(2), null), b.submit(new Float32Array(2), null)];
  for (const r of p) await assertRejects(() => r, Error, "boom");
  await assertRejects(() => b.submit(new Float32Array(2), null), Error, "boom");
});

Deno.test("drain() waits for queued and running batches; a full queue is a BusyError", async () => {
  const engine = fakeEngine(10);
  const b = new Batcher(engine, { maxWaitMs: 5, maxQueueRows: 3 });
  const p = [b.submit(new Float32Array(4), null), b.submit(new Float32Array(2), null)];
  await assertRejects(() => b.submit(new Float32Array(2), null), BusyError, "3 rows are waiting");
  await b.drain();
  assertEquals(engine.runs.length, 1);
  await Promise.all(p);
  await b.drain(); // idle: resolves at once
  assertEquals(b.queuedRows, 0);
});

Deno.test("bad options and partial rows are rejected", () => {
  let threw = 0;
  for (const opts of [{ maxBatch: 0 }, { maxWaitMs: -1 }]) {
    try {
      new Batcher(fakeEngine(), opts);
    } catch (e) {
      threw += e instanceof RangeError ? 1 : 0;
    }
  }
  assertEquals(threw, 2);
  try {
    new Batcher(fakeEngine()).submit(new Float32Array(3), null);
    throw new Error("accepted 1.5 rows");
  } catch (e) {
    assert(e instanceof TypeError, String(e));
  }
});
