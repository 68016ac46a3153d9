import { deepStrictEqual, match, throws } from "node:assert/strict";
import { grad } from "../autograd.ts";
import { gradcheck } from "../gradcheck.ts";
import { Graph } from "../graph.ts";
import { mul } from "./elementwise.ts";
import { reduceSum } from "./reduce.ts";
import { slice, sliceRange } from "./slice.ts";
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
