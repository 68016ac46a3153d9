import { deepStrictEqual, match, throws } from "node:assert/strict";
import { grad } from "../autograd.ts";
import { gradcheck } from "../gradcheck.ts";
import { Graph, type Value } from "../graph.ts";
import { mul } from "./elementwise.ts";
import { reduceSum } from "./reduce.ts";
import { range, slice, sliceDynamic, sliceRange } from "./slice.ts";
import { concat } from "./concat.ts";
import { constantNode, dimOf, int64s, scalar } from "./constant.ts";
import { squeeze } from "./shape.ts";
import { assertClose, f32, values } from "../../../tests/_assert.ts";
import { runGraph, runGraphEach } from "../../../tests/_ops.ts";

const I = Infinity;

Deno.test("sliceRange() clamps as the ONNX Slice spec says", () => {
  deepStrictEqual(sliceRange(5, 1, 3, 1), { start: 1, end: 3, length: 2 });
  deepStrictEqual(sliceRange(5, -2, I, 1), { start: 3, end: 5, length: 2 });
  deepStrictEqual(sliceRange(5, -9, 99, 2), { start: 0, end: 5, length: 3 });
  deepStrictEqual(sliceRange(5, 4, 2, 1), { start: 4, end: 2, length: 0 });
  deepStrictEqual(sliceRange(5, -1, -I, -1), { start: 4, end: -1, length: 5 });
  deepStrictEqual(sliceRange(5, 99, 1, -2), { start: 4, end: 1, length: 2 });
});

Deno.test("slice() with unit steps: gradients (a Pad) match finite differences", async () => {
  const x = { x: { shape: [4, 5] } };
  await gradcheck(([v]) => slice(v!, [1], [3]), x);
  await gradcheck(([v]) => slice(v!, [1, 2], [3, 4]), x);
  await gradcheck(([v]) => slice(v!, [-2], [I], [1]), x);
  await gradcheck(([v]) => slice(v!, [-99, 1], [99, -1], [-1, 0]), x); // clamped, axes reordered
});

Deno.test("slice() with other steps: gradients (a scatter) match finite differences", async () => {
  const x = { x: { shape: [4, 5] } };
  await gradcheck(([v]) => slice(v!, [0], [I], [1], [2]), x);
  await gradcheck(([v]) => slice(v!, [-1], [-I], [0], [-1]), x);
  await gradcheck(([v]) => slice(v!, [3, 1], [0, I], [1, 0], [-2, 2]), x);
});

Deno.test("slice() computes the elements ONNX Slice takes", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", [2, 5]);
  const a = g.output(slice(x, [1], [-1], [1]));
  const b = g.output(slice(x, [-1, 4], [-I, -I], [0, 1], [-1, -2]));
  deepStrictEqual(a.shape, [2, 3]);
  deepStrictEqual(b.shape, [2, 3]);
  const out = await runGraph(g, { x: f32([2, 5], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]) });
  assertClose(values(out[a.name]), [1, 2, 3, 6, 7, 8]);
  assertClose(values(out[b.name]), [9, 7, 5, 4, 2, 0]);
});

Deno.test("slice() rejects invalid bounds, naming the op and the shape", () => {
  const x = new Graph().input("x", "F32", [2, 5]);
  throws(() => slice(x, [0, 0], [1]), {
    name: "TypeError",
    message: "Invalid Slice of [2, 5]: starts [0,0], ends [1], axes [0,1] and steps [1,1] " +
      "need one entry per distinct axis",
  });
  throws(() => slice(x, [0], [1], [0], [0]), { name: "RangeError", message: /steps non-zero/ });
  throws(() => slice(x, [0.5], [1]), { name: "RangeError", message: /Invalid Slice of \[2, 5\]/ });
  throws(() => slice(x, [0], [1], [2]), {
    message: "Invalid axis 2 in Slice for a value of rank 2",
  });
});

Deno.test("slice() keeps or renames symbolic dimensions", () => {
  const x = new Graph().input("x", "F32", ["batch", 5]);
  deepStrictEqual(slice(x, [1], [3], [1]).shape, ["batch", 2]);
  deepStrictEqual(slice(x, [0], [I]).shape, ["batch", 5]);
  deepStrictEqual(slice(x, [-1], [-I], [0], [-1]).shape, ["batch", 5]);
  match(String(slice(x, [1], [I]).shape[0]), /^dim_/);
});

Deno.test("slice() along a symbolic batch axis differentiates at two batch sizes", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 2]);
  const tail = slice(x, [1], [I]); // rows 1.. (clamped at run time)
  const odd = slice(x, [-1, 1], [-I, 2], [0, 1], [-2, 1]); // last row, every other one upwards
  const [dx] = grad(reduceSum(mul(tail, tail)), [x]);
  const [dOdd] = grad(reduceSum(mul(odd, 3)), [x], { prefix: "dodd" });
  g.output(dx!);
  g.output(dOdd!);
  const feeds = (n: number) => ({ x: f32([n, 2], Array.from({ length: 2 * n }, (_, i) => i)) });
  const [one, four] = await runGraphEach(g, [feeds(1), feeds(4)]);
  assertClose(values(one![dx!.name]), [0, 0]);
  assertClose(values(four![dx!.name]), [0, 0, 4, 6, 8, 10, 12, 14]);
  assertClose(values(one![dOdd!.name]), [0, 3]);
  assertClose(values(four![dOdd!.name]), [0, 0, 0, 3, 0, 0, 0, 3]);
});

Deno.test("sliceDynamic() with bounds computed at run time: gradients match finite differences", async () => {
  // `x[:rows of t]` (rows known at build time) and `x[rows of t::-1, 1::2]` (bounds made by a
  // Concat node, so known only at run time).
  const rows = (t: Value) => dimOf(t, 0);
  await gradcheck(
    ([x, t]) =>
      sliceDynamic(x!, { starts: int64s(x!.graph, [0]), ends: rows(t!), axes: [0] }, [3, 4]),
    {
      x: { shape: [6, 4] },
      t: { shape: [3], check: false },
    },
  );
  await gradcheck(([x, t]) => {
    const g = x!.graph;
    const starts = concat([int64s(g, [1]), rows(t!)], 0);
    const ends = int64s(g, [Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER]); // ±∞
    return sliceDynamic(x!, { starts, ends, axes: [1, 0], steps: int64s(g, [2, -1]) }, [3, 2]);
  }, { x: { shape: [4, 5] }, t: { shape: [2], check: false } });
});

Deno.test("sliceDynamic() takes the rows a run-time length asks for, at two lengths", async () => {
  // `position_ids[:, :seq]` as BERT's embeddings write it: the table is fixed, seq is not.
  const g = new Graph();
  const ids = g.input("ids", "F32", ["batch", "seq"]);
  const table = g.input("table", "F32", [1, 4]);
  const upToSeq = { starts: int64s(g, [0]), ends: dimOf(ids, 1), axes: [1] };
  const used = sliceDynamic(table, upToSeq, [1, "seq"]);
  const y = g.output(mul(used, ids)); // [batch, seq]
  const [dt] = grad(reduceSum(y), [table]);
  g.output(dt!);
  const feeds = (n: number) => ({
    ids: f32([2, n], new Array(2 * n).fill(1)),
    table: f32([1, 4], [10, 20, 30, 40]),
  });
  const [two, three] = await runGraphEach(g, [feeds(2), feeds(3)]);
  assertClose(values(two![y.name]), [10, 20, 10, 20]);
  assertClose(values(three![dt!.name]), [2, 2, 2, 0]);
  throws(() => sliceDynamic(table, { ...upToSeq, starts: scalar(g, 0, "I64") }, [1, "seq"]), {
    message: /Invalid Slice of \[1, 4\]: bounds must be 1-D I64 or I32 values/,
  });
});

Deno.test("range() counts like ONNX Range; a float range differentiates in start and delta", async () => {
  await gradcheck(([s, d]) => range(s!, scalar(s!.graph, 2.5, "F32"), d!, 7), {
    start: { shape: [], data: [-0.75] },
    delta: { shape: [], data: [0.5] },
  });
  const g = new Graph();
  const ids = g.input("ids", "I64", ["batch", "seq"]);
  const n = squeeze(dimOf(ids, 1), [0]);
  const positions = g.output(range(scalar(g, 0, "I64"), n, scalar(g, 1, "I64"), "seq"));
  const odd = g.output(range(scalar(g, 1, "I64"), scalar(g, 8, "I64"), scalar(g, 2, "I64")));
  deepStrictEqual(positions.shape, ["seq"]);
  deepStrictEqual(odd.shape, [4]);
  match(String(range(scalar(g, 1, "I64"), n, scalar(g, 1, "I64")).shape[0]), /^dim_/);
  // Float bounds held by Constant nodes (as imported graphs carry them) give a known length too.
  const f = (x: number) => constantNode(g, { dtype: "F32", shape: [], data: Float32Array.of(x) });
  deepStrictEqual(range(f(0), f(2.5), f(0.5)).shape, [5]);
  const out = await runGraph(g, {
    ids: { dtype: "I64", shape: [1, 3], data: new BigInt64Array(3) },
  });
  deepStrictEqual(values(out[positions.name]), [0, 1, 2]);
  deepStrictEqual(values(out[odd.name]), [1, 3, 5, 7]);
  throws(() => range(scalar(g, 0, "I64"), scalar(g, 3, "F32"), scalar(g, 1, "I64")), {
    message: /Cannot apply Range: start, limit and delta must be scalars of one dtype/,
  });
});
