import { deepStrictEqual, equal, match, throws } from "node:assert/strict";
import { grad } from "../autograd.ts";
import { gradcheck } from "../gradcheck.ts";
import { Graph, type Value } from "../graph.ts";
import { concat } from "./concat.ts";
import { f16BitsToNumber, numberToF16Bits } from "../../tensor.ts";
import { dimOf, int64s, shapeOf } from "./constant.ts";
import { exp, mul } from "./elementwise.ts";
import { reduceSum } from "./reduce.ts";
import {
  cast,
  expand,
  flatten,
  identity,
  reshape,
  squeeze,
  tile,
  transpose,
  transposeLast2,
  unsqueeze,
} from "./shape.ts";
import { assertClose, f32, values } from "../../../tests/_assert.ts";
import { runGraph, runGraphEach } from "../../../tests/_ops.ts";

Deno.test("reshape() gradients match finite differences", async () => {
  await gradcheck(([x]) => reshape(x!, [6, 4]), { x: { shape: [2, 3, 4] } });
  await gradcheck(([x]) => reshape(x!, [-1, 2]), { x: { shape: [2, 3, 4] } });
  await gradcheck(([x]) => reshape(x!, []), { x: { shape: [1, 1] } });
});

Deno.test("transpose() gradients match finite differences", async () => {
  await gradcheck(([x]) => transpose(x!, [1, 2, 0]), { x: { shape: [2, 3, 4] } });
  await gradcheck(([x]) => transpose(x!), { x: { shape: [2, 3, 4] } });
  await gradcheck(([x]) => transposeLast2(x!), { x: { shape: [2, 3, 4] } });
  await gradcheck(([x]) => transpose(x!, [-1, 0]), { x: { shape: [3, 2] } });
});

Deno.test("expand() gradients match finite differences", async () => {
  await gradcheck(([x, t]) => expand(x!, shapeOf(t!), t!.shape), {
    x: { shape: [3, 1] },
    t: { shape: [2, 3, 4], check: false },
  });
  await gradcheck(([x, t]) => expand(x!, shapeOf(t!), t!.shape), {
    x: { shape: [] },
    t: { shape: [2, 3], check: false },
  });
});

Deno.test("unsqueeze(), squeeze() and flatten() gradients match finite differences", async () => {
  await gradcheck(([x]) => unsqueeze(x!, [0, -1]), { x: { shape: [2, 3] } });
  await gradcheck(([x]) => squeeze(x!, [1, 3]), { x: { shape: [2, 1, 3, 1] } });
  for (const axis of [0, 1, 2, 3, -1]) {
    await gradcheck(([x]) => flatten(x!, axis), { x: { shape: [2, 3, 4] } });
  }
});

Deno.test("identity() and cast() gradients match finite differences", async () => {
  await gradcheck(([x]) => identity(x!), { x: { shape: [2, 3] } });
  await gradcheck(([x]) => cast(cast(x!, "F64"), "F32"), { x: { shape: [2, 3] } });
  await gradcheck(([x]) => cast(exp(cast(x!, "F64")), "F32"), { x: { shape: [2, 3] } });
});

Deno.test("shape ops infer static shapes, keeping symbolic dimensions", () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 2, 3]);
  deepStrictEqual(reshape(x, ["batch", 6]).shape, ["batch", 6]);
  deepStrictEqual(reshape(x, ["batch", -1]).shape, ["batch", 6]);
  deepStrictEqual(reshape(reshape(x, ["batch", 6]), [-1, 6]).shape, ["batch", 6]);
  match(String(reshape(x, [-1, 3]).shape[0]), /^dim_/);
  deepStrictEqual(reshape(g.input("y", "F32", [4, 6]), [2, -1, 3]).shape, [2, 4, 3]);
  deepStrictEqual(transpose(x, [0, 2, 1]).shape, ["batch", 3, 2]);
  deepStrictEqual(unsqueeze(x, [1, -1]).shape, ["batch", 1, 2, 3, 1]);
  deepStrictEqual(squeeze(unsqueeze(x, [1]), [1]).shape, ["batch", 2, 3]);
  deepStrictEqual(flatten(x).shape, ["batch", 6]);
  deepStrictEqual(flatten(x, 0).shape[0], 1);
  deepStrictEqual(flatten(x, 3).shape[1], 1);
  equal(cast(x, "F32"), x);
  equal(cast(x, "F16").dtype, "F16");
});

Deno.test("shape ops reject impossible shapes, naming the op and both shapes", () => {
  const g = new Graph();
  const x = g.input("x", "F32", [2, 3]);
  throws(() => reshape(x, [4, 2]), {
    name: "TypeError",
    message: "Cannot reshape [2, 3] to [4, 2] in Reshape: sizes differ",
  });
  throws(() => reshape(x, [-1, 4]), {
    message: "Cannot reshape [2, 3] to [-1, 4] in Reshape: 6 elements do not divide by 4",
  });
  throws(() => reshape(x, [-1, -1]), {
    message: "Cannot reshape [2, 3] to [-1, -1] in Reshape: more than one unknown dimension",
  });
  throws(() => reshape(x, [0, 6]), { message: /a dimension of size 0 is not supported/ });
  throws(() => transpose(x, [0, 0]), { message: "Invalid perm [0, 0] in Transpose of [2, 3]" });
  throws(() => squeeze(x, [0]), {
    message: "Cannot squeeze axis 0 of [2, 3] in Squeeze: its size is not 1",
  });
  throws(() => unsqueeze(x, [0, 0]), { message: /axes repeat/ });
  throws(() => flatten(x, 3), { name: "RangeError", message: /Invalid axis 3 in Flatten/ });
  throws(() => expand(g.input("y", "F32", [3, 2]), shapeOf(x), x.shape), {
    message: "Cannot broadcast in Expand: a is [3, 2], b is [2, 3]",
  });
});

Deno.test("transpose() and flatten() move elements as ONNX does", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", [2, 3]);
  const t = g.output(transpose(x));
  const f = g.output(flatten(unsqueeze(x, [0]), 2));
  const out = await runGraph(g, { x: f32([2, 3], [1, 2, 3, 4, 5, 6]) });
  assertClose(values(out[t.name]), [1, 4, 2, 5, 3, 6]);
  deepStrictEqual(out[f.name]!.shape, [2, 3]);
});

Deno.test("cast() from F32 to F16 and back rounds in the forward and backward pass", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", [4]);
  const w = f32([4], [1 / 3, 1, 2.0001, -0.1]);
  const y = g.output(cast(cast(x, "F16"), "F32"));
  const [dx] = grad(reduceSum(mul(y, g.constant(w))), [x]);
  g.output(dx!);
  const xs = [0.1, 1 / 3, 1000.7, -2.5];
  const out = await runGraph(g, { x: f32([4], xs) });
  const half = (v: number) => f16BitsToNumber(numberToF16Bits(v));
  assertClose(values(out[y.name]), xs.map((v) => half(Math.fround(v))), { atol: 0 });
  // dx = cast(cast(w, F16), F32): the gradient crosses the same two casts
  assertClose(values(out[dx!.name]), Array.from(w.data, half), { atol: 0 });
});

Deno.test("reshape() and flatten() of a symbolic batch run and differentiate at two batch sizes", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 2, 3]);
  const r = reshape(x, ["batch", 6]);
  const f = flatten(transpose(x, [0, 2, 1]));
  const y = g.output(mul(r, f));
  const [dx] = grad(reduceSum(y), [x]);
  g.output(dx!);
  const feeds = (n: number) => ({ x: f32([n, 2, 3], Array.from({ length: 6 * n }, (_, i) => i)) });
  const [one, four] = await runGraphEach(g, [feeds(1), feeds(4)]);
  deepStrictEqual(one![y.name]!.shape, [1, 6]);
  deepStrictEqual(four![y.name]!.shape, [4, 6]);
  deepStrictEqual(four![dx!.name]!.shape, [4, 2, 3]);
  // y = r · f with r = x flat and f = xᵀ flat, so dx = f + r read back through the transpose
  assertClose(values(one![dx!.name]), [0, 5, 5, 5, 5, 10]);
});

Deno.test("tile() gradients match finite differences, repeats constant or computed at run time", async () => {
  await gradcheck(([x]) => tile(x!, [2, 1, 3]), { x: { shape: [2, 3, 2] } });
  await gradcheck(([x]) => tile(x!, [3]), { x: { shape: [2] } });
  // Repeats read from another value at run time, as `cls_token` is tiled to the batch.
  await gradcheck(([x, t]) => tile(x!, rowsThen(t!, [1, 1]), [4, 2, 3]), {
    x: { shape: [1, 2, 3] },
    t: { shape: [4, 5], check: false },
  });
});

/** `[rows of t, ...rest]` as an int64 vector computed at run time. */
const rowsThen = (t: Value, rest: number[]) => concat([dimOf(t, 0), int64s(t.graph, rest)], 0);

Deno.test("tile() repeats as ONNX Tile does and sums its gradient over the copies", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", [2, 2]);
  const t = g.input("t", "F32", ["batch", 1]);
  const y = g.output(tile(x, [1, 2]));
  const z = tile(x, rowsThen(t, [1]));
  deepStrictEqual(y.shape, [2, 4]);
  match(String(z.shape[0]), /^dim_/);
  const [dx] = grad(reduceSum(z), [x]);
  g.output(dx!);
  const out = await runGraph(g, { x: f32([2, 2], [1, 2, 3, 4]), t: f32([3, 1], [0, 0, 0]) });
  assertClose(values(out[y.name]), [1, 2, 1, 2, 3, 4, 3, 4]);
  assertClose(values(out[dx!.name]), [3, 3, 3, 3]);
  throws(() => tile(x, [2]), {
    message: "Invalid repeats [2] in Tile of [2, 2]: expected 2 integers >= 0",
  });
});
