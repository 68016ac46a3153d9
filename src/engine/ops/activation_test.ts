import { assert, assertClose, f32, values } from "../../../tests/_assert.ts";
import { runGraph } from "../../../tests/_ops.ts";
import { grad } from "../autograd.ts";
import { gradcheck } from "../gradcheck.ts";
import { Graph, type Value } from "../graph.ts";
import type { Tensor } from "../../tensor.ts";
import {
  erf,
  gelu,
  leakyRelu,
  logSoftmax,
  relu,
  sigmoid,
  silu,
  softmax,
  tanh,
} from "./activation.ts";

/**
 * Runs `f` on a 1-D input and fetches its value, or with `grad` only its gradient (for ones as
 * the incoming gradient): a float64 gradient graph that needs no Erf then runs without the forward.
 */
async function evaluate(
  f: (x: Value) => Value,
  xs: readonly number[],
  opts: { float64?: boolean; grad?: boolean } = {},
): Promise<number[]> {
  const g = new Graph();
  const x = g.input("x", "F32", [xs.length]);
  const y = f(x);
  const out = opts.grad ? grad(y, [x])[0]! : y;
  const { float64 = false } = opts;
  // In float64 the points are fed as they are, not rounded to float32 first.
  const feed: Tensor = float64
    ? { dtype: "F64", shape: [xs.length], data: Float64Array.from(xs) }
    : f32([xs.length], xs);
  return values((await runGraph(g, { x: feed }, { float64, outputs: [out] }))[out.name]);
}

/**
 * erf to double precision: `2/√π · e^{-x²} · Σ 2ⁿ x^{2n+1} / (1·3·…·(2n+1))`, a series of positive
 * terms (no cancellation), exact to a few ulps for |x| < 6; erf(±6) is ±1 in float64.
 */
function erfRef(x: number): number {
  if (Math.abs(x) >= 6) return Math.sign(x);
  let term = x;
  let sum = x;
  for (let n = 1; n < 200 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
    term *= (2 * x * x) / (2 * n + 1);
    sum += term;
  }
  return (2 / Math.sqrt(Math.PI)) * Math.exp(-x * x) * sum;
}

const phi = (x: number) => Math.exp(-x * x / 2) / Math.sqrt(2 * Math.PI);
const geluRef = (x: number) => 0.5 * x * (1 + erfRef(x / Math.SQRT2));
const dGeluRef = (x: number) => 0.5 * (1 + erfRef(x / Math.SQRT2)) + x * phi(x);
const geluTanhRef = (x: number) =>
  0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

const POINTS = [-6, -3, -2, -1, -0.75, -0.5, -1e-3, 0, 1e-3, 0.5, 1, 2, 3, 6];
const one = (shape: number[], offset?: number) => ({ x: { shape, offset } });

Deno.test("relu, leakyRelu, sigmoid, tanh and silu gradients match finite differences", async () => {
  for (const f of [relu, (x: Value) => leakyRelu(x, 0.2), leakyRelu, sigmoid, tanh, silu]) {
    await gradcheck(([x]) => f(x!), one([3, 4]));
  }
});

Deno.test("softmax and logSoftmax gradients match finite differences along every axis", async () => {
  for (const axis of [-1, 0, 1]) {
    await gradcheck(([x]) => softmax(x!, axis), one([2, 3, 4]), { eps: 1e-5 });
    await gradcheck(([x]) => logSoftmax(x!, axis), one([2, 3, 4]), { eps: 1e-5 });
  }
});

Deno.test("tanh-approximated gelu gradients match finite differences, as an op and decomposed", async () => {
  await gradcheck(([x]) => gelu(x!, { approximate: "tanh" }), one([3, 4], 0));
  await gradcheck(([x]) => gelu(x!, { approximate: "tanh", form: "decomposed" }), one([3, 4]));
  // Wider range: the op's hand VJP against onnxruntime's own double Gelu around the tails.
  await gradcheck(([x]) => gelu(x!, { approximate: "tanh" }), {
    x: { shape: [8], data: [-4.5, -3, -2, -1.2, 0.3, 1.7, 2.9, 4.2] },
  });
});

Deno.test("the Erf gradient in float64 matches finite differences of a double-precision erf", async () => {
  // onnxruntime has no float64 Erf kernel, so gradcheck cannot run the forward; the backward
  // (dy·2/√π·e^{-x²}) needs no Erf, so its float64 twin runs and is checked against erfRef.
  const xs = [-2.5, -1.3, -0.4, 0, 0.2, 0.9, 1.7, 3];
  const dx = await evaluate(erf, xs, { float64: true, grad: true });
  const h = 1e-5;
  assertClose(dx, xs.map((x) => (erfRef(x + h) - erfRef(x - h)) / (2 * h)), {
    rtol: 1e-6,
    what: "dErf",
  });
});

Deno.test("exact gelu gradients equal Φ(x) + x·φ(x) in float32, as an op and decomposed", async () => {
  // Float32 against a float64 closed form (no float64 Erf kernel, so no finite differences).
  const xs = Array.from({ length: 41 }, (_, i) => -5 + i / 4);
  for (const form of ["op", "decomposed"] as const) {
    const dx = await evaluate((x) => gelu(x, { form }), xs, { grad: true });
    assertClose(dx, xs.map(dGeluRef), { rtol: 1e-6, what: `dGelu (${form})` });
  }
});

Deno.test("erf and exact gelu match a double-precision reference within 1e-6", async () => {
  assertClose(await evaluate(erf, POINTS), POINTS.map(erfRef), { rtol: 1e-6, what: "erf" });
  for (const form of ["op", "decomposed"] as const) {
    const y = await evaluate((x) => gelu(x, { form }), POINTS);
    assertClose(y, POINTS.map(geluRef), { rtol: 1e-6, what: `gelu (${form})` });
  }
});

Deno.test("tanh gelu matches 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) within 1e-6", async () => {
  for (const form of ["op", "decomposed"] as const) {
    const y = await evaluate((x) => gelu(x, { approximate: "tanh", form }), POINTS);
    assertClose(y, POINTS.map(geluTanhRef), { rtol: 1e-6, what: `tanh gelu (${form})` });
  }
});

Deno.test("gelu as an op needs opset 20; decomposed it is the PyTorch export's node sequence", () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 4]);
  gelu(x, { form: "decomposed" });
  gelu(x, { approximate: "tanh", form: "decomposed" });
  const opset = (): number => g.minOpset;
  assert(opset() === 17, `decomposed gelu raised the opset to ${opset()}`);
  const ops = g.nodes.map((n) => n.op).join(",");
  assert(ops.startsWith("Div,Erf,Add,Mul,Mul,"), `exact decomposed gelu is ${ops}`);
  gelu(x);
  assert(opset() === 20, `Gelu op left the opset at ${opset()}`);
});

Deno.test("softmax and logSoftmax stay finite and exact for logits of ±1000", async () => {
  const xs = [1000, -1000, 0, 999];
  const p = await evaluate((x) => softmax(x), xs);
  const logp = await evaluate((x) => logSoftmax(x), xs);
  const lse = 1000 + Math.log(1 + Math.exp(-1));
  assertClose(p, xs.map((x) => Math.exp(x - lse)), { rtol: 1e-6, what: "softmax" });
  assertClose(logp, xs.map((x) => x - lse), { rtol: 1e-6, what: "logSoftmax" });
});

Deno.test("sigmoid, tanh, silu and leakyRelu match their formulas", async () => {
  const sig = (x: number) => 1 / (1 + Math.exp(-x));
  assertClose(await evaluate(sigmoid, POINTS), POINTS.map(sig), { rtol: 1e-6, what: "sigmoid" });
  assertClose(await evaluate(tanh, POINTS), POINTS.map(Math.tanh), { rtol: 1e-6, what: "tanh" });
  assertClose(await evaluate(silu, POINTS), POINTS.map((x) => x * sig(x)), {
    rtol: 1e-6,
    what: "silu",
  });
  const leaky = await evaluate((x) => leakyRelu(x, 0.1), POINTS);
  assertClose(leaky, POINTS.map((x) => (x > 0 ? x : 0.1 * x)), { rtol: 1e-6, what: "leakyRelu" });
});
