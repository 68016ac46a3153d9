import { deepStrictEqual, throws } from "node:assert/strict";
import { grad } from "../autograd.ts";
import { gradcheck } from "../gradcheck.ts";
import { Graph, type Value } from "../graph.ts";
import { abs, add, div, exp, log, mul, neg, pow, reciprocal, sqrt, sub } from "./elementwise.ts";
import { reduceSum } from "./reduce.ts";
import { assertClose, f32, values } from "../../../tests/_assert.ts";
import { runGraph, runGraphEach } from "../../../tests/_ops.ts";

const BINARY: Record<string, (a: Value, b: Value) => Value> = { add, sub, mul, div, pow };

// Pairs of shapes that broadcast in every direction: equal, each side widened, missing leading
// axes on either side, and rank-0 operands on either side.
const PAIRS: [number[], number[]][] = [
  [[2, 3], [2, 3]],
  [[3, 1], [1, 4]],
  [[1, 4], [3, 1]],
  [[4], [2, 3, 4]],
  [[2, 1, 4], [3, 1]],
  [[2, 3], []],
  [[], [2, 3]],
];

for (const [name, op] of Object.entries(BINARY)) {
  Deno.test(`${name}() gradients match finite differences under broadcasting both ways`, async () => {
    for (const [sa, sb] of PAIRS) {
      // Div needs b away from 0; Pow's gradient for b needs a > 0.
      const a = { shape: sa, offset: name === "pow" ? 2 : 0 };
      const b = { shape: sb, offset: name === "div" ? 2 : 0 };
      await gradcheck(([x, y]) => op(x!, y!), { a, b });
    }
  });
}

Deno.test("binary ops with a number operand match finite differences on the value side", async () => {
  await gradcheck(([x]) => add(x!, 1.5), { x: { shape: [2, 3] } });
  await gradcheck(([x]) => sub(2, x!), { x: { shape: [2, 3] } });
  await gradcheck(([x]) => mul(-3, x!), { x: { shape: [2, 3] } });
  await gradcheck(([x]) => div(1, x!), { x: { shape: [2, 3], offset: 2 } });
  await gradcheck(([x]) => div(x!, 4), { x: { shape: [2, 3] } });
  await gradcheck(([x]) => pow(x!, 3), { x: { shape: [2, 3] } }); // negative bases are fine
  await gradcheck(([x]) => pow(2, x!), { x: { shape: [2, 3] } });
});

Deno.test("unary ops' gradients match finite differences", async () => {
  await gradcheck(([x]) => neg(x!), { x: { shape: [2, 3] } });
  await gradcheck(([x]) => exp(x!), { x: { shape: [2, 3] } });
  await gradcheck(([x]) => log(x!), { x: { shape: [2, 3], offset: 2 } });
  await gradcheck(([x]) => sqrt(x!), { x: { shape: [2, 3], offset: 2 } });
  await gradcheck(([x]) => reciprocal(x!), { x: { shape: [2, 3], offset: 2 } });
  await gradcheck(([x]) => abs(x!), { x: { shape: [2, 3] } });
  await gradcheck(([x]) => exp(x!), { x: { shape: [] } });
});

Deno.test("a value used twice accumulates both gradient contributions", async () => {
  await gradcheck(([x]) => mul(x!, exp(x!)), { x: { shape: [5] } });
});

Deno.test("add() broadcasts [3, 1] with [4] to [3, 4] in the forward pass", async () => {
  const g = new Graph();
  const y = g.output(add(g.input("a", "F32", [3, 1]), g.input("b", "F32", [4])));
  deepStrictEqual(y.shape, [3, 4]);
  const out = await runGraph(g, { a: f32([3, 1], [0, 10, 20]), b: f32([4], [1, 2, 3, 4]) });
  assertClose(values(out[y.name]), [1, 2, 3, 4, 11, 12, 13, 14, 21, 22, 23, 24]);
});

Deno.test("pow(), div() and abs() compute the expected values", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", [3]);
  const p = g.output(pow(x, 2));
  const q = g.output(div(1, x));
  const r = g.output(abs(x));
  const out = await runGraph(g, { x: f32([3], [-2, 0.5, 4]) });
  assertClose(values(out[p.name]), [4, 0.25, 16]);
  assertClose(values(out[q.name]), [-0.5, 2, 0.25]);
  assertClose(values(out[r.name]), [2, 0.5, 4]);
});

Deno.test("binary ops reject shapes that do not broadcast, naming the op and both shapes", () => {
  const g = new Graph();
  const a = g.input("a", "F32", [2, 3]);
  const b = g.input("b", "F32", [4, 3]);
  throws(() => add(a, b), {
    name: "TypeError",
    message: "Cannot broadcast in Add: a is [2, 3], b is [4, 3]",
  });
  const c = g.input("c", "F32", ["batch", 3]);
  throws(() => mul(c, g.input("d", "F32", [5, 3])), {
    message: "Cannot broadcast in Mul: a is [batch, 3], b is [5, 3]",
  });
});

Deno.test("binary ops reject mixed dtypes and two numbers", () => {
  const g = new Graph();
  const a = g.input("a", "F32", [2]);
  throws(() => sub(a, g.input("b", "F64", [2])), {
    message: "Cannot apply Sub: dtypes differ, a is F32 [2], b is F64 [2]",
  });
  throws(() => add(1, 2), { name: "TypeError", message: /Cannot apply Add to two numbers/ });
  throws(() => log(g.input("i", "I64", [2])), { message: /Cannot apply Log to "i" of dtype I64/ });
});

Deno.test("a bias broadcast over a symbolic batch gets the batch-summed gradient", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 2]);
  const b = g.input("b", "F32", [2]);
  const [db] = grad(reduceSum(mul(add(x, b), 3)), [b]);
  g.output(db!);
  const feeds = (n: number) => ({ x: f32([n, 2], new Array(2 * n).fill(1)), b: f32([2], [0, 0]) });
  const [two, five] = await runGraphEach(g, [feeds(2), feeds(5)]);
  assertClose(values(two![db!.name]), [6, 6]);
  assertClose(values(five![db!.name]), [15, 15]);
});
