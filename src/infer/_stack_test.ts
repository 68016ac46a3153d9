import { assert, assertEquals, assertThrows } from "../../tests/_assert.ts";
import type { LinearLayer } from "../models/model.ts";
import { ADAPTER, BACK, ROWS, stackNames } from "../lora/multi.ts";
import { type SnapshotLayer, type Stackable, Stacker } from "./_stack.ts";

const layer = { name: "fc", inFeatures: 3, outFeatures: 2 } as LinearLayer;

/** A snapshot of rank `r` on `fc` whose values are `version` (DoRA ratios 2 when `dora`). */
function snap(version: number, r: number, dora = false): Stackable {
  const A = new Float32Array(r * 3).fill(version);
  const sB = new Float32Array(2 * r).fill(version);
  const l: SnapshotLayer = {
    A,
    rank: r,
    rB: dora ? sB.map((v) => 2 * v) : sB,
    dr: dora ? new Float32Array(2).fill(1) : null,
  };
  return { version, rank: r, dora, layers: new Map([["fc", l]]) };
}

Deno.test("rows are grouped by adapter: K chunks of the largest group, one slot a row", () => {
  const [a, b, c] = [snap(1, 2), snap(2, 1), snap(3, 2, true)];
  const feeds = new Stacker([layer]).feeds([b, a, null, a, c, b, b]);
  // chunks: a (rows 1, 3), b (rows 0, 5, 6), c (row 4), none (row 2); m = 3 slots
  assertEquals(feeds[ROWS]!.shape, [4, 3]);
  assertEquals([...feeds[ROWS]!.data], [1, 3, 1, 0, 5, 6, 4, 4, 4, 2, 2, 2]); // spares repeat
  assertEquals([...feeds[BACK]!.data], [3, 0, 9, 1, 6, 4, 5]); // each row's slot, k·m + j
  assertEquals([...feeds[ADAPTER]!.data], [1, 0, 3, 0, 2, 1, 1]);
  const n = stackNames("fc");
  assertEquals(feeds[n.A]!.shape, [4, 2, 3]); // [K, rmax, in]; none: zeros
  assertEquals([...feeds[n.A]!.data], [
    ...[1, 1, 1, 1, 1, 1],
    ...[2, 2, 2, 0, 0, 0],
    ...[3, 3, 3, 3, 3, 3],
    ...[0, 0, 0, 0, 0, 0],
  ]);
  assertEquals(feeds[n.B]!.shape, [4, 2, 2]); // [K, out, rmax]: b's rank 1 padded with a zero
  assertEquals([...feeds[n.B]!.data], [1, 1, 1, 1, 2, 0, 2, 0, 6, 6, 6, 6, 0, 0, 0, 0]); // c: ratio in
  assertEquals([...feeds[n.D]!.data], [0, 0, 0, 0, 1, 1, 0, 0]); // ratio − 1, 0 for LoRA and none
});

Deno.test("one adapter at its rank feeds its own arrays; a batch without adapters feeds zeros", () => {
  const a = snap(1, 2);
  const stacker = new Stacker([layer]);
  const one = stacker.feeds([a]);
  const n = stackNames("fc");
  assert(one[n.A]!.data === a.layers.get("fc")!.A, "the adapter's own array, not a copy");
  assertEquals([one[ROWS]!.shape, [...one[ROWS]!.data]], [[1, 2], [0, 0]]); // never under 2 slots
  const none = stacker.feeds([null, null, null]);
  assertEquals([none[ROWS]!.shape, [...none[BACK]!.data]], [[1, 3], [0, 1, 2]]);
  assertEquals(none[n.A]!.shape, [1, 1, 3]); // rank 1 of zeros: next to no work
  assertEquals([...none[n.A]!.data], [0, 0, 0]);
});

Deno.test("for a graph without DoRA's term: no D, no adapter selector, and DoRA adapters refused", () => {
  const [a, b] = [snap(1, 2), snap(2, 1)];
  const stacker = new Stacker([layer], { dora: false });
  const feeds = stacker.feeds([b, a, null]);
  const n = stackNames("fc");
  assertEquals(Object.keys(feeds).sort(), [BACK, ROWS, n.A, n.B].sort());
  assertEquals(Object.keys(stacker.feeds([a])).sort(), [BACK, ROWS, n.A, n.B].sort());
  assertEquals(Object.keys(stacker.feeds([null, null])).sort(), [BACK, ROWS, n.A, n.B].sort());
  // the same stacks as a stacker for a graph with the term
  const full = new Stacker([layer]).feeds([b, a, null]);
  for (const k of [ROWS, BACK, n.A, n.B]) assertEquals([...feeds[k]!.data], [...full[k]!.data]);
  assertThrows(() => stacker.feeds([a, snap(3, 2, true)]), Error, "no DoRA term");
});

Deno.test("stacks are kept for the next batch over the same set until an adapter in it is forgotten", () => {
  const [a, b, c] = [snap(1, 2), snap(2, 1), snap(3, 2)];
  const stacker = new Stacker([layer]);
  const n = stackNames("fc");
  const first = stacker.feeds([a, b, a])[n.A]!;
  assert(stacker.feeds([b, b, a])[n.A]!.data === first.data, "the kept stack, whatever the order");
  const other = stacker.feeds([a, c])[n.A]!;
  stacker.forget(b.version);
  const again = stacker.feeds([a, b])[n.A]!;
  assert(again.data !== first.data, "stacked anew after forget()");
  assertEquals([...again.data], [...first.data]);
  assert(stacker.feeds([c, a])[n.A]!.data === other.data, "a set without b is still kept");
});
