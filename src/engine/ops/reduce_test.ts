import { deepStrictEqual, throws } from "node:assert/strict";
import { grad } from "../autograd.ts";
import { gradcheck } from "../gradcheck.ts";
import { Graph, int } from "../graph.ts";
import { constantNode, int64s } from "./constant.ts";
import { mul } from "./elementwise.ts";
import { reduceMean, reduceSum } from "./reduce.ts";
import { unbroadcast } from "./shape.ts";
import { assertClose, f32, values } from "../../../tests/_assert.ts";
import { runGraph, runGraphEach } from "../../../tests/_ops.ts";

const AXES: (number[] | undefined)[] = [undefined, [0], [1], [-1], [0, 2], [2, 0, 1]];

Deno.test("reduceSum() gradients match finite differences for several axes and keepdims", async () => {
  for (const axes of AXES) {
    for (const keep of [false, true]) {
      await gradcheck(([x]) => reduceSum(x!, axes, keep), { x: { shape: [2, 3, 4] } });
    }
  }
});

Deno.test("reduceMean() gradients match finite differences for several axes and keepdims", async () => {
  for (const axes of AXES) {
    for (const keep of [false, true]) {
      await gradcheck(([x]) => reduceMean(x!, axes, keep), { x: { shape: [2, 3, 4] } });
    }
  }
});

Deno.test("unbroadcast() sums a gradient back to the operand's shape", async () => {
  await gradcheck(([d, b]) => unbroadcast(d!, b!), {
    d: { shape: [2, 3, 4] },
    b: { shape: [3, 1], check: false },
  });
});

Deno.test("reduce shapes follow keepdims and explicit axes", () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 3, 4]);
  deepStrictEqual(reduceSum(x, [1]).shape, ["batch", 4]);
  deepStrictEqual(reduceSum(x, [1, -1], true).shape, ["batch", 1, 1]);
  deepStrictEqual(reduceMean(x).shape, []);
  deepStrictEqual(reduceMean(x, [0], true).shape, [1, 3, 4]);
  deepStrictEqual(reduceSum(x, []), x);
});

Deno.test("reduceSum() and reduceMean() compute sums and means", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", [2, 3]);
  const s = g.output(reduceSum(x, [1]));
  const m = g.output(reduceMean(x, [0], true));
  const out = await runGraph(g, { x: f32([2, 3], [1, 2, 3, 4, 5, 6]) });
  assertClose(values(out[s.name]), [6, 15]);
  assertClose(values(out[m.name]), [2.5, 3.5, 4.5]);
});

Deno.test("reductions reject axes out of range, naming the op", () => {
  const x = new Graph().input("x", "F32", [2, 3]);
  throws(() => reduceSum(x, [2]), {
    name: "RangeError",
    message: "Invalid axis 2 in ReduceSum for a value of rank 2",
  });
  throws(() => reduceMean(x, [-3]), {
    message: "Invalid axis -3 in ReduceMean for a value of rank 2",
  });
  throws(() => reduceSum(x, [1, -1]), {
    message: "Invalid axes [1, 1] in ReduceSum of [2, 3]: axes repeat",
  });
  throws(() => unbroadcast(x, new Graph().input("y", "F32", [1, 2, 3])), {
    message: "Cannot reduce gradient [2, 3] to operand [1, 2, 3]",
  });
});

Deno.test("reduceMean() over a symbolic batch axis divides the gradient by the runtime batch", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 3]);
  const m = g.output(reduceMean(x, [0]));
  const all = reduceMean(mul(x, x)); // every axis, keepdims 0
  g.output(all);
  const [dx] = grad(reduceSum(m), [x]);
  const [dAll] = grad(all, [x], { prefix: "dall" });
  g.output(dx!);
  g.output(dAll!);
  const feeds = (n: number) => ({ x: f32([n, 3], Array.from({ length: 3 * n }, (_, i) => i)) });
  const [two, five] = await runGraphEach(g, [feeds(2), feeds(5)]);
  assertClose(values(two![m.name]), [1.5, 2.5, 3.5]);
  assertClose(values(two![dx!.name]), new Array(6).fill(1 / 2));
  assertClose(values(five![dx!.name]), new Array(15).fill(1 / 5));
  // d mean(x²) / dx = 2x / n
  assertClose(values(five![dAll!.name]), Array.from({ length: 15 }, (_, i) => (2 * i) / 15));
});

Deno.test("reduceSum() over a symbolic batch axis keeps its gradient shape at run time", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 2]);
  const [dx] = grad(reduceSum(reduceSum(x, [0], true)), [x]);
  g.output(dx!);
  const three = await runGraph(g, { x: f32([3, 2], [1, 2, 3, 4, 5, 6]) });
  deepStrictEqual(three[dx!.name]!.shape, [3, 2]);
  assertClose(values(three[dx!.name]), [1, 1, 1, 1, 1, 1]);
});

Deno.test("imported reduce nodes with constant axes inputs are differentiated", async () => {
  // As importers write them: ReduceSum axes from a Constant node, ReduceMean axes as an input
  // (opset 18+ form; the emitter turns it back into an attribute at opset 17).
  await gradcheck(([x], g) => {
    const axes = constantNode(g, { dtype: "I64", shape: [1], data: new BigInt64Array([1n]) });
    const s = g.node("ReduceSum", [x!, axes], {}, [{ dtype: "F32", shape: [2, 1, 4] }])[0]!;
    return g.node("ReduceMean", [s, int64s(g, [0, 2])], { keepdims: int(0) }, [{
      dtype: "F32",
      shape: [1],
    }])[0]!;
  }, { x: { shape: [2, 3, 4] } });
});
