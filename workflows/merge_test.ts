import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
import { openSafetensorsModel } from "../src/models/blocks/safetensors_model.ts";
import { saveOnnx } from "../src/engine/emit.ts";
import { Graph } from "../src/engine/graph.ts";
import { relu } from "../src/engine/ops/activation.ts";
import { gemm } from "../src/engine/ops/matmul.ts";
import { openOnnxModel } from "../src/models/onnx/import.ts";
import { readSafetensors } from "../src/io/safetensors.ts";
import { castFloat, type Tensor, toFloat32 } from "../src/tensor.ts";
import { type Adapter, loadAdapter } from "../adapters/adapter.ts";
import { layerHyper } from "../adapters/config.ts";
import { mergeAdapter, planMerge, unmergeAdapter } from "./merge.ts";
import { randomAdapter } from "../tests/_random_adapter.ts";
import { relError } from "../tests/_assert.ts";

const PEFT = new URL("../fixtures/peft/", import.meta.url).pathname;
const HF = new URL("../fixtures/hf/", import.meta.url).pathname;

const f32 = (t: Tensor) => toFloat32(t).data;

/** `scale · B·A` in float64, [out, in]. */
function denseDelta(adapter: Adapter, module: string): Float64Array {
  const t = adapter.layers.get(module)!;
  const { scale } = layerHyper(adapter.config, module);
  const [r, n] = t.A.shape as [number, number];
  const m = t.B.shape[0]!;
  const A = f32(t.A), B = f32(t.B);
  const d = new Float64Array(m * n);
  for (let o = 0; o < m; o++) {
    for (let k = 0; k < r; k++) {
      for (let i = 0; i < n; i++) {
        d[o * n + i] = d[o * n + i]! + scale * B[o * r + k]! * A[k * n + i]!;
      }
    }
  }
  return d;
}

Deno.test("mergeAdapter() matches PyTorch's merged weights of every PEFT fixture within 1e-6", async () => {
  for (const name of ["mlp_lora", "mlp_dora", "legacy", "conv1d_lora"]) {
    const model = await openSafetensorsModel(`${PEFT}${name}/base.safetensors`);
    const adapter = await loadAdapter(`${PEFT}${name}`);
    const merged = await mergeAdapter(model, adapter);
    const { tensors: golden } = await readSafetensors(`${PEFT}${name}/golden.safetensors`);
    for (
      const module of [
        ...adapter.layers.keys(),
        ...[...adapter.extra.keys()].map((k) => k.slice(0, k.lastIndexOf("."))),
      ]
    ) {
      const got = merged.tensors.get(`${module}.weight`)!;
      const err = relError(f32(got), f32(golden.get(`merged.${module}`)!));
      ok(err <= 1e-6, `${name} ${module}: relative error ${err}`);
    }
    model.close();
  }
});

Deno.test("unmergeAdapter() after mergeAdapter() returns the base weights within 1e-6", async () => {
  for (const name of ["mlp_lora", "mlp_dora", "conv1d_lora"]) {
    const model = await openSafetensorsModel(`${PEFT}${name}/base.safetensors`);
    const merged = await mergeAdapter(model, await loadAdapter(`${PEFT}${name}`));
    const restored = await unmergeAdapter(merged);
    ok(restored.size >= 2);
    for (const [key, t] of restored) {
      const err = relError(f32(t), f32(await model.readTensor(key)));
      ok(err <= 1e-6, `${name} ${key}: relative error ${err}`);
    }
    model.close();
  }
});

Deno.test("mergeAdapter() adds scale·B·A, transposed for [in, out] storage, and B = 0 changes nothing", async () => {
  const model = await openSafetensorsModel(`${PEFT}conv1d_lora/base.safetensors`);
  const adapter = await loadAdapter(`${PEFT}conv1d_lora`);
  const merged = await mergeAdapter(model, adapter);
  for (const layer of model.layers) {
    const d = denseDelta(adapter, layer.name); // [out, in]
    const w = f32(await model.readTensor(layer.weightKey)); // [in, out]
    const got = f32(merged.tensors.get(layer.weightKey)!);
    const want = w.map((v, j) =>
      v + d[(j % layer.outFeatures) * layer.inFeatures + Math.floor(j / layer.outFeatures)]!
    );
    ok(relError(got, want) <= 1e-6, layer.name);
  }
  const zero = randomAdapter(model, { bScale: 0 });
  for (const [key, t] of (await mergeAdapter(model, zero)).tensors) {
    deepStrictEqual(t.data, (await model.readTensor(key)).data, key);
  }
  model.close();
});

Deno.test("mergeAdapter() names the adapter and the layer when the merge is not finite", async () => {
  const model = await openSafetensorsModel(`${PEFT}mlp_lora/base.safetensors`);
  const adapter = randomAdapter(model, { name: "broken", layers: ["fc2"] });
  (adapter.layers.get("fc2")!.B.data as Float32Array)[3] = Infinity;
  await rejects(mergeAdapter(model, adapter), (e: Error) => {
    ok(e instanceof RangeError);
    ok(/adapter "broken" into layer "fc2"/.test(e.message), e.message);
    ok(/non-finite/.test(e.message), e.message);
    return true;
  });
  model.close();
});

Deno.test("mergeAdapter() keeps a BF16 base in BF16, rounded to nearest even", async () => {
  const model = await openSafetensorsModel(`${HF}llama_bf16/model.safetensors`);
  const adapter = randomAdapter(model, { r: 2, seed: 4 });
  const merged = await mergeAdapter(model, adapter);
  for (const layer of model.layers) {
    const t = merged.tensors.get(layer.weightKey)!;
    strictEqual(t.dtype, "BF16");
    const d = denseDelta(adapter, layer.name);
    const w = f32(await model.readTensor(layer.weightKey));
    const exact = Float32Array.from(w, (v, i) => v + d[i]!);
    const rounded = castFloat({ dtype: "F32", shape: t.shape, data: exact }, "BF16").data;
    // float32 sums may differ in the last float32 bit, which can move a bf16 tie: at most 1 ulp.
    const off = (t.data as Uint16Array).filter((b, i) => Math.abs(b - rounded[i]!) > 1).length;
    strictEqual(off, 0, layer.name);
    const same = (t.data as Uint16Array).filter((b, i) => b === rounded[i]).length;
    ok(same >= 0.99 * t.data.length, `${layer.name}: ${same} of ${t.data.length} equal`);
  }
  model.close();
});

Deno.test("mergeAdapter() writes W + ΔW / alpha into a Gemm with alpha ≠ 1, and refuses DoRA there", async () => {
  const dir = await Deno.makeTempDir();
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 3]);
  const w = g.initializer("fc1.weight", {
    dtype: "F32",
    shape: [4, 3],
    data: new Float32Array(12).fill(0.5),
  });
  const b = g.initializer("fc1.bias", {
    dtype: "F32",
    shape: [4],
    data: new Float32Array(4).fill(1),
  });
  g.output(relu(gemm(x, w, b, { transB: true, alpha: 0.5, beta: 2 })));
  await saveOnnx(`${dir}/alpha.onnx`, g);
  const model = await openOnnxModel(`${dir}/alpha.onnx`);
  const adapter = randomAdapter(model, { seed: 2 });
  const merged = await mergeAdapter(model, adapter);
  const d = denseDelta(adapter, "fc1");
  const want = Float64Array.from(d, (v) => 0.5 + v / 0.5);
  ok(relError(f32(merged.tensors.get("fc1.weight")!), want) <= 1e-6);
  throws(() => planMerge(model, randomAdapter(model, { dora: true })), /alpha 0.5/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("planMerge() replaces trained biases and modules_to_save tensors and lists the adapted weights", async () => {
  const model = await openSafetensorsModel(`${PEFT}mlp_dora/base.safetensors`);
  const dora = planMerge(model, await loadAdapter(`${PEFT}mlp_dora`));
  deepStrictEqual([...dora.deltas.keys()].sort(), ["fc1.weight", "fc3.weight"]);
  deepStrictEqual([...dora.replaced.keys()].sort(), ["fc1.bias", "fc2.bias", "fc3.bias"]);
  const lora = planMerge(model, await loadAdapter(`${PEFT}mlp_lora`));
  deepStrictEqual([...lora.replaced.keys()].sort(), ["fc3.bias", "fc3.weight"]);
  model.close();
});
