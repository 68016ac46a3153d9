import { deepStrictEqual, equal as same, throws } from "node:assert/strict";
import { grad } from "../autograd.ts";
import { gradcheck } from "../gradcheck.ts";
import { Graph } from "../graph.ts";
import { mul } from "./elementwise.ts";
import { reduceSum } from "./reduce.ts";
import {
  clip,
  equal,
  greater,
  greaterOrEqual,
  less,
  lessOrEqual,
  logicalAnd,
  logicalNot,
  logicalOr,
  where,
} from "./select.ts";
import { assertClose, f32, values } from "../../../tests/_assert.ts";
import { runGraph, runGraphEach } from "../../../tests/_ops.ts";

Deno.test("where() gradients match finite differences with broadcasting both ways", async () => {
  const shapes: [number[], number[], number[]][] = [
    [[2, 3], [2, 3], [2, 3]],
    [[2, 3], [3], [2, 1]],
    [[3], [2, 1], []],
    [[2, 1, 3], [4, 1], [1, 4, 3]],
  ];
  for (const [c, a, b] of shapes) {
    await gradcheck(([k, x, y]) => where(greater(k!, 0), x!, y!), {
      k: { shape: c, check: false },
      a: { shape: a },
      b: { shape: b },
    });
  }
  await gradcheck(([x]) => where(less(x!, 0), 0, x!), { x: { shape: [2, 3] } });
});

Deno.test("clip() gradients match finite differences for every bound combination", async () => {
  const x = { x: { shape: [3, 4] } };
  await gradcheck(([v]) => clip(v!, -0.5, 0.5), x);
  await gradcheck(([v]) => clip(v!, -0.5), x);
  await gradcheck(([v]) => clip(v!, undefined, 0.25), x);
  await gradcheck(([v]) => clip(v!), x);
  await gradcheck(([v, lo, hi]) => clip(v!, lo!, hi!), {
    x: { shape: [3, 4] },
    lo: { shape: [], data: [-0.3] },
    hi: { shape: [], data: [0.4] },
  });
});

Deno.test("clip() passes the gradient at its bounds, as PyTorch's clamp does", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", [5]);
  const lo = g.input("lo", "F32", []);
  const hi = g.input("hi", "F32", []);
  const y = g.output(clip(x, lo, hi));
  const [dx, dlo, dhi] = grad(reduceSum(mul(y, g.constant(f32([5], [1, 2, 3, 4, 5])))), [
    x,
    lo,
    hi,
  ]);
  [dx, dlo, dhi].forEach((d) => g.output(d!));
  const out = await runGraph(g, {
    x: f32([5], [-2, -1, 0, 1, 2]),
    lo: f32([], [-1]),
    hi: f32([], [1]),
  });
  assertClose(values(out[y.name]), [-1, -1, 0, 1, 1]);
  assertClose(values(out[dx!.name]), [0, 2, 3, 4, 0]);
  assertClose(values(out[dlo!.name]), [1]);
  assertClose(values(out[dhi!.name]), [5]);
});

Deno.test("comparisons and logical ops compute BOOL masks with broadcasting", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", [4]);
  const t = g.input("t", "F32", [2, 1]);
  const outs = [
    greater(x, t),
    less(x, 0),
    equal(x, 0),
    greaterOrEqual(x, 0),
    lessOrEqual(x, 0),
    logicalNot(greater(x, 0)),
    logicalAnd(greater(x, -1), less(x, 1)),
    logicalOr(less(x, -1), greater(x, 1)),
  ].map((v) => g.output(v));
  deepStrictEqual(outs[0]!.shape, [2, 4]);
  same(outs[0]!.dtype, "BOOL");
  const out = await runGraph(g, { x: f32([4], [-2, 0, 0.5, 3]), t: f32([2, 1], [0, 1]) });
  deepStrictEqual(outs.map((v) => values(out[v.name])), [
    [0, 0, 1, 1, 0, 0, 0, 1],
    [1, 0, 0, 0],
    [0, 1, 0, 0],
    [0, 1, 1, 1],
    [1, 1, 0, 0],
    [1, 1, 0, 0],
    [0, 1, 1, 0],
    [1, 0, 0, 1],
  ]);
});

Deno.test("select ops reject bad operands, naming the op and the shapes", () => {
  const g = new Graph();
  const x = g.input("x", "F32", [2, 3]);
  const c = greater(x, 0);
  throws(() => where(c, x, g.input("y", "F32", [4, 3])), {
    name: "TypeError",
    message: "Cannot broadcast in Where: cond is [2, 3], a is [2, 3], b is [4, 3]",
  });
  throws(() => where(x, x, 0), {
    message: 'Cannot apply Where to "x" of dtype F32: expected BOOL',
  });
  throws(() => greater(x, g.input("z", "F32", [2])), {
    message: "Cannot broadcast in Greater: a is [2, 3], b is [2]",
  });
  throws(() => clip(x, g.input("lo", "F32", [3])), {
    message:
      "Cannot apply Clip: min must be a scalar of dtype F32, x is F32 [2, 3], min is F32 [3]",
  });
  throws(() => clip(x, 1, -1), {
    name: "RangeError",
    message: "Invalid Clip bounds: min 1 is greater than max -1",
  });
  throws(() => logicalAnd(c, x), { message: /Cannot apply And to "x" of dtype F32/ });
});

Deno.test("where() over a symbolic batch runs and differentiates at two batch sizes", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 2]);
  const b = g.input("b", "F32", [2]);
  const y = where(greater(x, 0), x, b);
  const [dx, db] = grad(reduceSum(y), [x, b]);
  g.output(dx!);
  g.output(db!);
  const feeds = (xs: number[]) => ({ x: f32([xs.length / 2, 2], xs), b: f32([2], [0, 0]) });
  const [two, three] = await runGraphEach(g, [feeds([1, -1, -1, -1]), feeds([1, 1, -1, 1, -1, 1])]);
  assertClose(values(two![dx!.name]), [1, 0, 0, 0]);
  assertClose(values(two![db!.name]), [1, 2]);
  assertClose(values(three![db!.name]), [2, 0]);
});
