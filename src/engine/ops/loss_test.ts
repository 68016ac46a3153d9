import { assert, assertClose, f32 } from "../../../tests/_assert.ts";
import { runGraph } from "../../../tests/_ops.ts";
import { grad } from "../autograd.ts";
import { gradcheck } from "../gradcheck.ts";
import { Graph } from "../graph.ts";
import type { Tensor } from "../../tensor.ts";
import { bceWithLogits, crossEntropy, mseLoss } from "./loss.ts";

const i64 = (data: readonly number[]): Tensor => ({
  dtype: "I64",
  shape: [data.length],
  data: BigInt64Array.from(data, (v) => BigInt(v)),
});

const REDUCTIONS = ["mean", "sum", "none"] as const;
const LABELS = [2, 0, 3, 1, 1, 0];

Deno.test("mseLoss gradients for pred and target match finite differences", async () => {
  for (const reduction of REDUCTIONS) {
    await gradcheck(([p, t]) => mseLoss(p!, t!, { reduction }), {
      p: { shape: [3, 4] },
      t: { shape: [3, 4] },
    });
  }
});

Deno.test("crossEntropy with int64 labels: logit gradients match finite differences", async () => {
  for (const reduction of REDUCTIONS) {
    const labels = { shape: [6], dtype: "I64" as const, data: LABELS };
    await gradcheck(([x, l]) => crossEntropy(x!, l!, { reduction }), {
      x: { shape: [6, 4] },
      l: labels,
    });
    // [2, 3, C] logits with [2, 3] labels go through a flattening reshape.
    await gradcheck(([x, l]) => crossEntropy(x!, l!, { reduction }), {
      x: { shape: [2, 3, 4] },
      l: { ...labels, shape: [2, 3] },
    });
  }
});

Deno.test("crossEntropy with soft targets: gradients for logits and targets match finite differences", async () => {
  for (const reduction of REDUCTIONS) {
    await gradcheck(([x, t]) => crossEntropy(x!, t!, { reduction }), {
      x: { shape: [3, 4] },
      t: { shape: [3, 4], offset: 1 },
    });
  }
});

Deno.test("bceWithLogits gradients for logits and targets match finite differences", async () => {
  for (const reduction of REDUCTIONS) {
    await gradcheck(([x, t]) => bceWithLogits(x!, t!, { reduction }), {
      x: { shape: [3, 4], data: [-30, -3, -1, -0.5, -0.1, 0.05, 0.3, 0.9, 2, 4, 12, 40] },
      t: { shape: [3, 4], offset: 1 },
    }, { eps: 1e-5 }); // a loss of ~100 makes float64 differences noisy at the default 1e-6
  }
});

Deno.test("crossEntropy stays finite and exact with logits of ±1000, labels or one-hot targets", async () => {
  const logits = [1000, -1000, 0, 0, 0, 1000, -1000, 1000, 999];
  // −log softmax at the label: row 0 (label 1) 2000, row 1 (label 0) 1000, row 2 (label 2)
  // log(e^1000 + e^999) − 999 = log(1 + e)
  const expected = [2000, 1000, Math.log(1 + Math.E)];
  const probs = [1, 0, 2].flatMap((c) => [0, 1, 2].map((k) => (k === c ? 1 : 0)));
  for (const soft of [false, true]) {
    const g = new Graph();
    const x = g.input("x", "F32", ["batch", 3]);
    const t = soft ? g.input("t", "F32", ["batch", 3]) : g.input("t", "I64", ["batch"]);
    const perRow = crossEntropy(x, t, { reduction: "none" });
    const mean = crossEntropy(x, t);
    const [dx] = grad(mean, [x]);
    const feeds = { x: f32([3, 3], logits), t: soft ? f32([3, 3], probs) : i64([1, 0, 2]) };
    const out = await runGraph(g, feeds, { outputs: [perRow, mean, dx!] });
    assertClose(out[perRow.name]!, expected, { rtol: 1e-6, what: "per-row loss" });
    const m = [(expected[0]! + expected[1]! + expected[2]!) / 3];
    assertClose(out[mean.name]!, m, { rtol: 1e-6, what: "mean loss" });
    // (softmax − onehot) / batch: rows 0 and 1 put all mass on one class, row 2 splits e : 1.
    const p = Math.E / (1 + Math.E);
    const want = [1, -1, 0, -1, 0, 1, 0, p, (1 - p) - 1].map((v) => v / 3);
    assertClose(out[dx!.name]!, want, { rtol: 1e-6, what: "dLogits" });
  }
});

Deno.test("bceWithLogits is finite and exact for large |x| and its gradient is sigmoid(x) − t at 0", async () => {
  const xs = [1000, -1000, 50, -50, 0, 0];
  const ts = [0, 1, 1, 0, 1, 0.25];
  const g = new Graph();
  const x = g.input("x", "F32", ["batch"]);
  const t = g.input("t", "F32", ["batch"]);
  const perSample = bceWithLogits(x, t, { reduction: "none" });
  const [dx] = grad(bceWithLogits(x, t, { reduction: "sum" }), [x]);
  const out = await runGraph(g, { x: f32([6], xs), t: f32([6], ts) }, {
    outputs: [perSample, dx!],
  });
  const loss = [1000, 1000, Math.exp(-50), Math.exp(-50), Math.LN2, Math.LN2];
  assertClose(out[perSample.name]!, loss, { rtol: 1e-6, what: "loss" });
  const sig = (v: number) => 1 / (1 + Math.exp(-v));
  const dLogits = xs.map((v, i) => sig(v) - ts[i]!);
  assertClose(out[dx!.name]!, dLogits, { rtol: 1e-6, what: "dLogits" });
});

Deno.test("crossEntropy with labels equals crossEntropy with one-hot targets", async () => {
  const logits = Array.from({ length: 24 }, (_, i) => 3 * Math.sin(2.1 * i));
  const oneHot = LABELS.flatMap((c) => [0, 1, 2, 3].map((k) => (k === c ? 1 : 0)));
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 4]);
  const a = crossEntropy(x, g.input("l", "I64", ["batch"]), { reduction: "none" });
  const b = crossEntropy(x, g.input("t", "F32", ["batch", 4]), { reduction: "none" });
  const feeds = { x: f32([6, 4], logits), l: i64(LABELS), t: f32([6, 4], oneHot) };
  const out = await runGraph(g, feeds, { outputs: [a, b] });
  assertClose(out[a.name]!, out[b.name]!, { rtol: 1e-6, what: "labels vs one-hot" });
});

Deno.test("mseLoss is the mean of squared differences and rejects mismatched shapes", async () => {
  const g = new Graph();
  const p = g.input("p", "F32", ["batch", 2]);
  const loss = mseLoss(p, g.input("t", "F32", ["batch", 2]));
  const feeds = { p: f32([2, 2], [1, 2, 3, 4]), t: f32([2, 2], [0, 2, 5, 1]) };
  const out = await runGraph(g, feeds, { outputs: [loss] });
  assertClose(out[loss.name]!, [(1 + 0 + 4 + 9) / 4], { rtol: 1e-6, what: "mse" });
  let message = "";
  try {
    mseLoss(p, g.input("u", "F32", ["batch", 3]));
  } catch (e) {
    message = (e as Error).message;
  }
  assert(message.includes("[batch, 2]") && message.includes("[batch, 3]"), message);
});

Deno.test("crossEntropy with a symbolic class count builds its one-hot rows at runtime", async () => {
  const logits = [0.5, -1, 2, 0, 1, 1];
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", "classes"]);
  const [dx] = grad(crossEntropy(x, g.input("l", "I64", ["batch"]), { reduction: "sum" }), [x]);
  const out = await runGraph(g, { x: f32([2, 3], logits), l: i64([2, 0]) }, { outputs: [dx!] });
  const want = [0, 1].flatMap((r) => {
    const row = logits.slice(3 * r, 3 * r + 3);
    const z = row.reduce((a, v) => a + Math.exp(v), 0);
    return row.map((v, k) => Math.exp(v) / z - (k === [2, 0][r] ? 1 : 0));
  });
  assertClose(out[dx!.name]!, want, { rtol: 1e-6, what: "dLogits" });
});
