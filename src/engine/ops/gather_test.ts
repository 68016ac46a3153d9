import { deepStrictEqual, throws } from "node:assert/strict";
import { grad } from "../autograd.ts";
import { gradcheck } from "../gradcheck.ts";
import { Graph } from "../graph.ts";
import { int64s, scalar } from "./constant.ts";
import { mul } from "./elementwise.ts";
import { gather } from "./gather.ts";
import { reduceSum } from "./reduce.ts";
import { assertClose, f32, values } from "../../../tests/_assert.ts";
import { runGraph, runGraphEach } from "../../../tests/_ops.ts";

const ids = (shape: number[], data: number[]) => ({ shape, data, dtype: "I64" as const });

Deno.test("gather() gradients match finite differences, repeated indices adding up", async () => {
  // An embedding lookup whose ids repeat (3 twice, 0 three times) and count from the end (-1).
  await gradcheck(([table, i]) => gather(table!, i!), {
    table: { shape: [5, 3] },
    i: ids([2, 4], [3, 0, 3, -1, 0, 0, 1, 2]),
  });
  // Along a middle axis, with a matrix of indices and with a rank-0 index (`x[:, 0]`).
  await gradcheck(([x, i]) => gather(x!, i!, 1), {
    x: { shape: [2, 4, 3] },
    i: ids([2, 2], [1, 1, -4, 2]),
  });
  await gradcheck(([x, i]) => gather(x!, i!, -1), { x: { shape: [2, 4, 3] }, i: ids([], [2]) });
  await gradcheck(([x]) => gather(x!, scalar(x!.graph, 0, "I64"), 1), { x: { shape: [2, 3, 2] } });
  await gradcheck(([x]) => gather(x!, int64s(x!.graph, [2, 0, 2])), { x: { shape: [3, 2] } });
});

Deno.test("gather() computes ONNX Gather's values and shapes", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", [3, 2]);
  const i = g.input("i", "I64", ["batch", 2]);
  const y = g.output(gather(x, i));
  const col = g.output(gather(x, scalar(g, -1, "I64"), 1));
  deepStrictEqual(y.shape, ["batch", 2, 2]);
  deepStrictEqual(col.shape, [3]);
  const feeds = { x: f32([3, 2], [0, 1, 2, 3, 4, 5]) };
  const out = await runGraph(g, {
    ...feeds,
    i: { dtype: "I64", shape: [1, 2], data: BigInt64Array.from([2n, -3n]) },
  });
  assertClose(values(out[y.name]), [4, 5, 0, 1]);
  assertClose(values(out[col.name]), [1, 3, 5]);
});

Deno.test("gather() scatters its gradient into a table of run-time size", async () => {
  // The table's rows are symbolic: the zeros of the scatter take their shape at run time.
  const g = new Graph();
  const table = g.input("table", "F32", ["rows", 2]);
  const i = g.input("i", "I64", [3]);
  const [dt] = grad(reduceSum(mul(gather(table, i, 0), 2)), [table]);
  g.output(dt!);
  const feed = (n: number) => ({
    table: f32([n, 2], new Array(2 * n).fill(1)),
    i: { dtype: "I64" as const, shape: [3], data: BigInt64Array.from([1n, -1n, 1n]) },
  });
  const [three, two] = await runGraphEach(g, [feed(3), feed(2)]);
  assertClose(values(three![dt!.name]), [0, 0, 4, 4, 2, 2]);
  assertClose(values(two![dt!.name]), [0, 0, 6, 6]);
});

Deno.test("gather() rejects float indices and scalar data, naming the values", () => {
  const g = new Graph();
  const x = g.input("x", "F32", [3, 2]);
  throws(() => gather(x, g.input("f", "F32", [2])), {
    name: "TypeError",
    message: 'Cannot apply Gather with indices "f" of dtype F32: expected I64 or I32',
  });
  throws(() => gather(g.input("s", "F32", []), g.input("k", "I64", [])), {
    message: "Cannot apply Gather to a scalar: data is []",
  });
  throws(() => gather(x, g.input("j", "I64", [1]), 2), {
    message: "Invalid axis 2 in Gather for a value of rank 2",
  });
});
