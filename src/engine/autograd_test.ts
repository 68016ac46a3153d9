import { deepStrictEqual, equal, ok, throws } from "node:assert/strict";
import { f32, randomTensor, values } from "../../tests/_assert.ts";
import { runGraph } from "../../tests/_ops.ts";
import type { Tensor } from "../tensor.ts";
import { grad } from "./autograd.ts";
import { toModelProto } from "./emit.ts";
import { gradcheck } from "./gradcheck.ts";
import { Graph, type Value } from "./graph.ts";
import { relu } from "./ops/activation.ts";
import { detach } from "./ops/detach.ts";
import { add, exp, mul, sub } from "./ops/elementwise.ts";
import { matmul } from "./ops/matmul.ts";
import { reduceSum } from "./ops/reduce.ts";
import { transpose } from "./ops/shape.ts";

Deno.test("contributions of a value used three times are summed", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", [2, 3]);
  const loss = reduceSum(add(add(x, x), x));
  const [dx] = grad(loss, [x]);
  g.output(dx!);
  const out = await runGraph(g, { x: randomTensor([2, 3], 1) });
  deepStrictEqual([...out[dx!.name]!.data as Float32Array], [3, 3, 3, 3, 3, 3]);
  await gradcheck(([v]) => mul(mul(v!, v!), v!), { x: { shape: [2, 3] } }); // 3x²
});

Deno.test("nodes the requested outputs do not need are not emitted", () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 3]);
  const w = g.input("w", "F32", [3, 2]);
  exp(x); // a dead forward branch
  const loss = reduceSum(matmul(x, w));
  const [dx, dw] = grad(loss, [x, w]);
  g.output(loss);
  g.output(dw!);
  const nodes = toModelProto(g).proto.graph!.node;
  ok(nodes.length < g.nodes.length, `${nodes.length} of ${g.nodes.length}`);
  ok(!nodes.some((n) => n.opType === "Exp"));
  ok(!nodes.some((n) => n.output.includes(dx!.name)));
  // dX = dY · Wᵀ is dead: the only backward MatMul left is dW = Xᵀ · dY.
  equal(nodes.filter((n) => n.opType === "MatMul").length, 2);
});

Deno.test("a requested value the loss does not depend on gets a zero gradient", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 3]);
  const unused = g.input("u", "F32", ["batch", 2]);
  const [du] = grad(reduceSum(mul(x, x)), [unused]);
  deepStrictEqual(du!.shape, ["batch", 2]);
  g.output(du!);
  const out = await runGraph(g, { x: randomTensor([4, 3], 2), u: randomTensor([4, 2], 3) });
  deepStrictEqual(out[du!.name]!.shape, [4, 2]);
  ok((out[du!.name]!.data as Float32Array).every((v) => v === 0));
});

Deno.test("an op without a gradient rule fails naming the op and the node", () => {
  const g = new Graph();
  const x = g.input("x", "F32", [3]);
  const y = g.node("Sin", [x], {}, [{ dtype: "F32", shape: [3] }])[0]!;
  throws(() => grad(reduceSum(y), [x]), {
    name: "TypeError",
    message: new RegExp(`Cannot differentiate Sin \\(node ${y.producer!.name}\\)`),
  });
  // Not on a path to the requested value: no rule is needed.
  const w = g.input("w", "F32", [3]);
  grad(reduceSum(add(y, w)), [w]);
});

Deno.test("grad() checks its arguments", () => {
  const g = new Graph();
  const x = g.input("x", "F32", [3]);
  const loss = reduceSum(x);
  const other = new Graph().input("y", "F32", [3]);
  throws(() => grad(loss, [other]), /"y": it is in another graph/);
  throws(() => grad(loss, [x], { seed: x }), /expected F32 \[\], got F32 \[3\]/);
  const i = g.input("i", "I64", [3]);
  throws(() => grad(i, [x]), /of dtype I64: expected a float/);
});

// --- LoRA: y_i = x W_iᵀ + scale · (x A_iᵀ) B_iᵀ, frozen W_i, trainable A_i [r, in], B_i [out, r].

const DIMS = [5, 7, 6, 3];
const RANK = 2;
const SCALE = 0.5;

function loraMlp(x: Value, weights: readonly Value[], ab: readonly Value[]): Value {
  let h = x;
  weights.forEach((w, i) => {
    const base = matmul(h, transpose(w));
    const delta = matmul(matmul(h, transpose(ab[2 * i]!)), transpose(ab[2 * i + 1]!));
    h = add(base, mul(delta, SCALE));
    if (i < weights.length - 1) h = relu(h);
  });
  return h;
}

function loraParams(g: Graph): Value[] {
  const ab: Value[] = [];
  for (let i = 0; i < 3; i++) {
    ab.push(
      g.input(`A${i}`, "F32", [RANK, DIMS[i]!]),
      g.input(`B${i}`, "F32", [DIMS[i + 1]!, RANK]),
    );
  }
  return ab;
}

Deno.test("the LoRA backward has no weight gradient for the frozen W: 13 backward MatMuls", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", DIMS[0]!]);
  const t = g.input("t", "F32", ["batch", DIMS[3]!]);
  const weights = [0, 1, 2].map((i) =>
    g.initializer(`W${i}`, randomTensor([DIMS[i + 1]!, DIMS[i]!], 10 + i))
  );
  const ab = loraParams(g);
  const d = sub(loraMlp(x, weights, ab), t);
  const loss = reduceSum(mul(d, d));
  const forward = new Set(g.nodes.map((n) => n.name));
  const grads = grad(loss, ab);
  g.output(loss);
  for (const v of grads) g.output(v);
  const emitted = toModelProto(g).proto.graph!.node;
  const backward = emitted.filter((n) => !forward.has(n.name));
  const products = backward.filter((n) => n.opType === "MatMul" || n.opType === "Gemm");
  // Layer 1: dB, dA and the dh through B. Layers 2 and 3: the same plus dX through A and dX
  // through W. A weight gradient for any W would add one more per layer.
  equal(products.length, 3 + 5 + 5);
  // And no data-dependent value has a W's shape (or its transpose's) anywhere in the model.
  const wShapes = weights.flatMap((w) => [String(w.shape), String([...w.shape].reverse())]);
  const dataDependent = new Set<Value>(g.inputs);
  const live = new Set(emitted.map((n) => n.name));
  for (const n of g.nodes) {
    if (!n.inputs.some((i) => i && dataDependent.has(i))) continue;
    for (const o of n.outputs) {
      dataDependent.add(o);
      ok(!live.has(n.name) || !wShapes.includes(String(o.shape)), `${n.op} ${n.name} ${o}`);
    }
  }
  const feeds: Record<string, Tensor> = { x: randomTensor([4, 5], 1), t: randomTensor([4, 3], 2) };
  ab.forEach((v, i) => (feeds[v.name] = randomTensor(v.shape as number[], 20 + i)));
  const out = await runGraph(g, feeds);
  for (const v of grads) ok((out[v.name]!.data as Float32Array).some((e) => e !== 0), v.name);
});

Deno.test("LoRA gradients, including x's (it feeds both the base and the adapter path), match finite differences", async () => {
  const weights = [0, 1, 2].map((i) => randomTensor([DIMS[i + 1]!, DIMS[i]!], 30 + i));
  await gradcheck(([x, ...ab], g) => {
    const w = weights.map((t, i) => g.constant(t, `W${i}`));
    return loraMlp(x!, w, ab);
  }, {
    x: { shape: [3, DIMS[0]!] },
    A0: { shape: [RANK, DIMS[0]!] },
    B0: { shape: [DIMS[1]!, RANK] },
    A1: { shape: [RANK, DIMS[1]!] },
    B1: { shape: [DIMS[2]!, RANK] },
    A2: { shape: [RANK, DIMS[2]!] },
    B2: { shape: [DIMS[3]!, RANK] },
  });
});

Deno.test("grad() stops at detach(): a detached branch contributes no gradient", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", [3]);
  // loss = sum(x · detach(x)): the gradient is detach(x) = x, not 2x.
  const [dx] = grad(reduceSum(mul(x, detach(x))), [x]);
  g.output(dx!);
  const out = await runGraph(g, { x: f32([3], [1, 2, 3]) });
  deepStrictEqual(values(out[dx!.name]), [1, 2, 3]);
});

Deno.test("grad() through an op without a gradient rule names it, the blocked and the clear parameters", () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 4]);
  const a = g.input("a", "F32", [4, 4]);
  const b = g.input("b", "F32", [4, 2]);
  // An op carried from an imported model (here LpNormalization) sits between a and b.
  const [h] = g.node("LpNormalization", [matmul(x, a)], {}, [{
    dtype: "F32",
    shape: ["batch", 4],
  }]);
  const loss = reduceSum(matmul(h!, b));
  throws(
    () => grad(loss, [a, b]),
    (e: Error) =>
      e instanceof TypeError && /^Cannot differentiate LpNormalization \(node /.test(e.message) &&
      e.message.includes('the gradient of "a" would have to cross it') &&
      e.message.includes('these can train: "b"'),
  );
  // b alone lies after it: fine.
  const [db] = grad(loss, [b]);
  deepStrictEqual(db!.shape, [4, 2]);
});
