import { deepStrictEqual, match, throws } from "node:assert/strict";
import { grad } from "../autograd.ts";
import { gradcheck } from "../gradcheck.ts";
import { Graph } from "../graph.ts";
import { concat, split } from "./concat.ts";
import { mul } from "./elementwise.ts";
import { reduceSum } from "./reduce.ts";
import { assertClose, f32, values } from "../../../tests/_assert.ts";
import { runGraph, runGraphEach } from "../../../tests/_ops.ts";

Deno.test("concat() gradients match finite differences along every axis", async () => {
  for (const axis of [0, 1, -1]) {
    const shape = (n: number) => [0, 1, 2].map((i) => (i === (axis + 3) % 3 ? n : 2));
    await gradcheck(([a, b, c]) => concat([a!, b!, c!], axis), {
      a: { shape: shape(1) },
      b: { shape: shape(3) },
      c: { shape: shape(2) },
    });
  }
});

Deno.test("concat() of a value with itself accumulates both pieces' gradients", async () => {
  await gradcheck(([a]) => concat([a!, a!], 0), { a: { shape: [2, 3] } });
});

Deno.test("split() gradients match finite differences, zeros for unused pieces", async () => {
  await gradcheck(([x]) => concat(split(x!, [1, 3, 2], 1).reverse(), 1), { x: { shape: [2, 6] } });
  await gradcheck(([x]) => split(x!, [1, 3, 2], 1)[1]!, { x: { shape: [2, 6] } });
  await gradcheck(([x]) => split(x!, [2, 0, 1])[2]!, { x: { shape: [3, 2] } });
  await gradcheck(([x]) => {
    const [a, , c] = split(x!, [1, 1, 2], -1);
    return mul(a!, c!);
  }, { x: { shape: [3, 4] } });
});

Deno.test("concat() and split() compute the expected values and shapes", async () => {
  const g = new Graph();
  const a = g.input("a", "F32", [2, 1]);
  const b = g.input("b", "F32", [2, 2]);
  const c = g.output(concat([a, b], 1));
  const [p, q] = split(c, [2, 1], 1).map((v) => g.output(v));
  deepStrictEqual(c.shape, [2, 3]);
  deepStrictEqual(q!.shape, [2, 1]);
  const out = await runGraph(g, { a: f32([2, 1], [1, 2]), b: f32([2, 2], [3, 4, 5, 6]) });
  assertClose(values(out[c.name]), [1, 3, 4, 2, 5, 6]);
  assertClose(values(out[p!.name]), [1, 3, 2, 5]);
  assertClose(values(out[q!.name]), [4, 6]);
});

Deno.test("concat() and split() reject mismatched shapes, naming the op and both shapes", () => {
  const g = new Graph();
  const a = g.input("a", "F32", [2, 3]);
  throws(() => concat([a, g.input("b", "F32", [4, 5])], 1), {
    name: "TypeError",
    message: "Cannot concatenate along axis 1 in Concat: a is [2, 3], b is [4, 5]",
  });
  throws(() => concat([a, g.input("c", "F32", [2])], 0), {
    message: "Cannot concatenate along axis 0 in Concat: a is [2, 3], b is [2]",
  });
  throws(() => concat([a, g.input("d", "F64", [2, 3])], 0), { message: /dtypes differ/ });
  throws(() => concat([], 0), { message: "Cannot apply Concat to an empty list of values" });
  throws(() => split(a, [1, 1], 1), {
    message: "Cannot split [2, 3] along axis 1 in Split: sizes [1, 1] add up to 2, not 3",
  });
  throws(() => split(a, [1.5, 1.5], 1), { name: "RangeError", message: /Invalid sizes/ });
});

Deno.test("concat() along a symbolic batch axis differentiates at two batch sizes", async () => {
  const g = new Graph();
  const a = g.input("a", "F32", ["batch", 2]);
  const b = g.input("b", "F32", ["rows", 2]);
  const c = concat([a, b], 0);
  match(String(c.shape[0]), /^dim_/);
  const other = new Graph().input("a", "F32", ["batch", 2]);
  deepStrictEqual(concat([other, other], 1).shape, ["batch", 4]);
  const w = g.constant(f32([2], [1, 10]));
  const [da, db] = grad(reduceSum(mul(mul(c, c), w)), [a, b]);
  g.output(da!);
  g.output(db!);
  const seq = (n: number, from: number) => Array.from({ length: n }, (_, i) => from + i);
  const feeds = (n: number) => ({ a: f32([n, 2], seq(2 * n, 0)), b: f32([3, 2], seq(6, 100)) });
  const [one, three] = await runGraphEach(g, [feeds(1), feeds(3)]);
  // d Σ w·c² / dc = 2·w·c, split back at the runtime sizes
  assertClose(values(one![da!.name]), [0, 20]);
  assertClose(values(three![da!.name]), seq(6, 0).map((v, i) => 2 * v * (i % 2 ? 10 : 1)));
  assertClose(values(three![db!.name]), seq(6, 100).map((v, i) => 2 * v * (i % 2 ? 10 : 1)));
});

Deno.test("split() of a symbolic batch gets zeros for the piece with no gradient", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 4]);
  const [, right] = split(x, [3, 1], 1);
  const [dx] = grad(reduceSum(mul(right!, right!)), [x]);
  g.output(dx!);
  const out = await runGraph(g, { x: f32([2, 4], [1, 2, 3, 4, 5, 6, 7, 8]) });
  assertClose(values(out[dx!.name]), [0, 0, 0, 8, 0, 0, 0, 16]);
});
