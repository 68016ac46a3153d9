import { deepStrictEqual, equal, ok, throws } from "node:assert/strict";
import { Rng } from "../../rng.ts";
import { grad } from "../autograd.ts";
import { gradcheck } from "../gradcheck.ts";
import { Graph } from "../graph.ts";
import { scalar } from "./constant.ts";
import { mul } from "./elementwise.ts";
import { dropout, dropoutInference, dropoutMask } from "./dropout.ts";
import { reduceSum } from "./reduce.ts";
import { assertClose, f32, values } from "../../../tests/_assert.ts";
import { runGraph } from "../../../tests/_ops.ts";

Deno.test("dropoutMask() is reproducible from the generator state", () => {
  const rng = new Rng(3);
  rng.uniform();
  const saved = rng.state();
  const a = dropoutMask(rng, [4, 8], 0.25);
  const b = dropoutMask(Rng.fromState(saved), [4, 8], 0.25);
  deepStrictEqual(a, b);
  deepStrictEqual(a.shape, [4, 8]);
  // The next mask continues the stream exactly as a resumed run would.
  const resumed = Rng.fromState(rng.state());
  deepStrictEqual(dropoutMask(rng, [5], 0.5), dropoutMask(resumed, [5], 0.5));
});

Deno.test("dropoutMask() drops a fraction p of the elements, and none at p = 0", () => {
  const m = dropoutMask(new Rng(11), [100, 100], 0.3);
  ok(m.data.every((v) => v === 0 || v === 1));
  const dropped = m.data.reduce((s, v) => s + (1 - v), 0) / m.data.length;
  ok(Math.abs(dropped - 0.3) < 0.02, `dropped ${dropped}`);
  ok(dropoutMask(new Rng(11), [50], 0).data.every((v) => v === 1));
  throws(() => dropoutMask(new Rng(1), [2], 1), {
    name: "RangeError",
    message: "Invalid dropout probability 1: expected 0 <= p < 1",
  });
});

Deno.test("dropout() gradients (dy · mask / (1 - p)) match finite differences", async () => {
  const mask = dropoutMask(new Rng(5), [3, 4], 0.5);
  await gradcheck(([x, m]) => dropout(x!, 0.5, m!), {
    x: { shape: [3, 4] },
    m: { shape: [3, 4], data: Array.from(mask.data), check: false },
  });
  await gradcheck(([x, m]) => dropout(x!, 0.2, m!), {
    x: { shape: [3, 4] },
    m: { shape: [1, 4], data: [1, 0, 1, 1], check: false },
  });
});

Deno.test("dropout() scales kept elements by 1 / (1 - p) and zeroes dropped ones", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 4]);
  const m = g.input("mask", "F32", ["batch", 4]);
  const y = g.output(dropout(x, 0.2, m));
  const [dx] = grad(reduceSum(y), [x]);
  g.output(dx!);
  const out = await runGraph(g, {
    x: f32([2, 4], [1, 2, 3, 4, 5, 6, 7, 8]),
    mask: f32([2, 4], [1, 0, 1, 1, 0, 0, 1, 0]),
  });
  assertClose(values(out[y.name]), [1.25, 0, 3.75, 5, 0, 0, 8.75, 0]);
  assertClose(values(out[dx!.name]), [1.25, 0, 1.25, 1.25, 0, 0, 1.25, 0]);
});

Deno.test("dropout() rejects bad probabilities and masks, naming both shapes", () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 4]);
  throws(() => dropout(x, -0.1, g.input("m", "F32", ["batch", 4])), { name: "RangeError" });
  throws(() => dropout(x, 0.1, g.input("m2", "F32", ["batch", 8])), {
    name: "TypeError",
    message: "Cannot broadcast in Dropout: a is [batch, 4], b is [batch, 8]",
  });
  throws(() => dropout(x, 0.1, g.input("m3", "F32", [2, "batch", 4])), {
    message: "Cannot apply Dropout: the mask must be F32 and broadcast to x, " +
      "x is F32 [batch, 4], mask is F32 [2, batch, 4]",
  });
  throws(() => dropout(x, 0.1, g.input("m4", "F64", ["batch", 4])), { message: /mask is F64/ });
});

Deno.test("dropoutInference() and inference-mode ONNX Dropout nodes are the identity", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", [3]);
  const a = dropoutInference(x);
  equal(a.producer?.op, "Identity");
  // An imported Dropout node with a ratio and training_mode = false.
  const off = g.constant({ dtype: "BOOL", shape: [], data: new Uint8Array([0]) });
  const b = g.node("Dropout", [a, scalar(g, 0.5), off], {}, [{ dtype: "F32", shape: [3] }])[0]!;
  const y = g.output(mul(b, 2));
  const [dx] = grad(reduceSum(y), [x]);
  g.output(dx!);
  const out = await runGraph(g, { x: f32([3], [1, 2, 3]) });
  assertClose(values(out[y.name]), [2, 4, 6]);
  assertClose(values(out[dx!.name]), [2, 2, 2]);
  await gradcheck(([v], h) => {
    return h.node("Dropout", [v!], {}, [{ dtype: "F32", shape: [2, 2] }])[0]!;
  }, { v: { shape: [2, 2] } });
});

Deno.test("a training-mode ONNX Dropout node cannot be differentiated", () => {
  const g = new Graph();
  const x = g.input("x", "F32", [3]);
  const on = g.constant({ dtype: "BOOL", shape: [], data: new Uint8Array([1]) });
  const y = g.node("Dropout", [x, scalar(g, 0.5), on], {}, [{ dtype: "F32", shape: [3] }])[0]!;
  throws(() => grad(reduceSum(y), [x]), {
    name: "TypeError",
    message:
      /Cannot differentiate Dropout \(node Dropout_\d+\) in training mode: build it with dropout\(x, p, mask\)/,
  });
});
