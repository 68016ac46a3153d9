import { deepStrictEqual, equal, throws } from "node:assert/strict";
import { grad } from "../autograd.ts";
import { gradcheck } from "../gradcheck.ts";
import { Graph } from "../graph.ts";
import {
  constantInts,
  constantNode,
  constantOfShape,
  dimOf,
  int64s,
  onesLike,
  scalar,
  shapeOf,
  sizeOf,
  zerosLike,
} from "./constant.ts";
import { add, mul } from "./elementwise.ts";
import { reduceSum } from "./reduce.ts";
import { cast } from "./shape.ts";
import { assertClose, f32, values } from "../../../tests/_assert.ts";
import { runGraph } from "../../../tests/_ops.ts";

Deno.test("constantNode() emits an ONNX Constant holding its tensor", async () => {
  const g = new Graph();
  const c = g.output(constantNode(g, f32([2, 2], [1, 2, 3, 4])));
  const i = g.output(
    constantNode(g, { dtype: "I64", shape: [3], data: new BigInt64Array([7n, -1n, 0n]) }),
  );
  equal(c.producer?.op, "Constant");
  deepStrictEqual(c.shape, [2, 2]);
  const out = await runGraph(g, {});
  assertClose(values(out[c.name]), [1, 2, 3, 4]);
  deepStrictEqual(values(out[i.name]), [7, -1, 0]);
});

Deno.test("a Constant node in a differentiated graph is widened in the float64 twin", async () => {
  await gradcheck(([x], g) => mul(x!, constantNode(g, f32([3], [0.5, -2, 3]))), {
    x: { shape: [2, 3] },
  });
  await gradcheck(([x], g) => add(mul(x!, scalar(g, 1.5)), x!), { x: { shape: [4] } });
});

Deno.test("shape queries and filled tensors follow the runtime shape", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 3]);
  const s = g.output(shapeOf(x));
  const n = g.output(sizeOf(x));
  const d = g.output(dimOf(x, 0));
  const z = g.output(zerosLike(x));
  const o = g.output(onesLike(x));
  const f = g.output(constantOfShape(shapeOf(x), 2.5, "F32", x.shape));
  deepStrictEqual([s.shape, n.shape, d.shape, z.shape], [[2], [], [1], ["batch", 3]]);
  const out = await runGraph(g, { x: f32([2, 3], [1, 2, 3, 4, 5, 6]) });
  deepStrictEqual(values(out[s.name]), [2, 3]);
  deepStrictEqual(values(out[n.name]), [6]);
  deepStrictEqual(values(out[d.name]), [2]);
  assertClose(values(out[z.name]), [0, 0, 0, 0, 0, 0]);
  assertClose(values(out[o.name]), [1, 1, 1, 1, 1, 1]);
  assertClose(values(out[f.name]), [2.5, 2.5, 2.5, 2.5, 2.5, 2.5]);
  equal(dimOf(x, -1).producer, null); // a static dimension is a constant
  deepStrictEqual(constantInts(dimOf(x, 1)), [3]);
});

Deno.test("scalar() makes constants of every compute dtype", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", [2]);
  const h = cast(x, "F16");
  const y = g.output(cast(mul(h, scalar(g, 1 / 3, "F16")), "F32"));
  const i = g.output(add(scalar(g, 2, "I64"), int64s(g, [1, 2])));
  deepStrictEqual(constantInts(scalar(g, 1, "BOOL")), [1]);
  throws(() => scalar(g, 1, "U8"), { message: "Cannot make a scalar constant of dtype U8" });
  const out = await runGraph(g, { x: f32([2], [3, 6]) });
  // ORT may compute the F16 product in F32 and round once: within an F16 step of [1, 2]
  assertClose(values(out[y.name]), [1, 2], { atol: 2 ** -9 });
  deepStrictEqual(values(out[i.name]), [3, 4]);
});

Deno.test("constantInts() reads initializers and Constant nodes, not computed values", () => {
  const g = new Graph();
  deepStrictEqual(constantInts(int64s(g, [0, -1])), [0, -1]);
  const c = constantNode(g, { dtype: "I32", shape: [2], data: new Int32Array([4, 5]) });
  deepStrictEqual(constantInts(c), [4, 5]);
  equal(constantInts(scalar(g, 1.5)), undefined);
  equal(constantInts(shapeOf(g.input("x", "F32", [2]))), undefined);
});

Deno.test("constants and shape queries carry no gradient", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 2]);
  const y = mul(x, cast(sizeOf(x), "F32")); // the size is a constant to the autograd
  const [dx] = grad(reduceSum(y), [x]);
  g.output(dx!);
  const out = await runGraph(g, { x: f32([3, 2], [1, 2, 3, 4, 5, 6]) });
  assertClose(values(out[dx!.name]), [6, 6, 6, 6, 6, 6]);
});
