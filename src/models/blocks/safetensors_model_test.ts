import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { grad } from "../../engine/autograd.ts";
import { Graph, type Value } from "../../engine/graph.ts";
import { Session } from "../../engine/runtime.ts";
import { add, mul } from "../../engine/ops/elementwise.ts";
import { matmul } from "../../engine/ops/matmul.ts";
import { reduceSum } from "../../engine/ops/reduce.ts";
import { transpose } from "../../engine/ops/shape.ts";
import type { LinearHook } from "../model.ts";
import { Rng } from "../../rng.ts";
import type { Tensor } from "../../tensor.ts";
import { randomTensor } from "../../../tests/_assert.ts";
import { runGraph } from "../../../tests/_ops.ts";
import { openSafetensorsModel } from "./safetensors_model.ts";

const HF = new URL("../../../fixtures/hf/", import.meta.url).pathname;
const R = 2;

/** A LoRA branch on every layer, `y + (x·Aᵀ)·Bᵀ`, with A [r, in] and B [out, r] as graph inputs. */
function loraHook(g: Graph, params: Value[]): LinearHook {
  return ({ layer, x, y }) => {
    const a = g.input(`${layer.name}.lora_A`, "F32", [R, layer.inFeatures]);
    const b = g.input(`${layer.name}.lora_B`, "F32", [layer.outFeatures, R]);
    params.push(a, b);
    return add(y, matmul(matmul(x, transpose(a)), transpose(b)));
  };
}

function feedsFor(params: Value[], x: Tensor, zeroB: boolean, f64: boolean) {
  const rng = new Rng(9);
  const feeds: Record<string, Tensor> = {};
  const make = (shape: readonly number[], fill: (a: Float64Array) => void): Tensor => {
    const d = new Float64Array(shape.reduce((a, b) => a * b, 1));
    fill(d);
    return f64
      ? { dtype: "F64", shape, data: d }
      : { dtype: "F32", shape, data: Float32Array.from(d) };
  };
  for (const p of params) {
    const zero = zeroB && p.name.endsWith("lora_B");
    feeds[p.name] = make(p.shape as number[], (d) => zero || rng.fillUniform(d, -0.5, 0.5));
  }
  feeds.x = make(x.shape, (d) => d.set(x.data as Float32Array));
  return feeds;
}

Deno.test("layer names are module paths, so PEFT adapter keys line up", async () => {
  const model = await openSafetensorsModel(`${HF}llama_3layers/model.safetensors`, {
    block: "model.layers.1.mlp",
  });
  deepStrictEqual(
    model.layers.map((l) => `base_model.model.${l.name}.lora_A.weight`),
    ["gate_proj", "up_proj", "down_proj"].map((m) =>
      `base_model.model.model.layers.1.mlp.${m}.lora_A.weight`
    ),
  );
  strictEqual(model.block, "model.layers.1.mlp");
  model.close();
});

for (const dir of ["llama", "gpt2", "bert", "t5_gated"]) {
  Deno.test(`${dir}: LoRA with B = 0 leaves the base output unchanged`, async () => {
    const model = await openSafetensorsModel(`${HF}${dir}/model.safetensors`);
    const x = randomTensor([4, 8], 1);
    const outputs: Float32Array[] = [];
    for (const adapted of [false, true]) {
      const g = new Graph();
      const params: Value[] = [];
      const built = model.build(g, adapted ? { hook: loraHook(g, params) } : {});
      g.output(built.outputs[0]!);
      const out = await runGraph(g, feedsFor(params, x, true, false));
      outputs.push(out[built.outputs[0]!.name]!.data as Float32Array);
    }
    deepStrictEqual(outputs[1], outputs[0]);
    model.close();
  });
}

Deno.test("LoRA gradients through a SwiGLU block match finite differences (float64 twin)", async () => {
  const model = await openSafetensorsModel(`${HF}llama/model.safetensors`, { weights: "load" });
  ok([...model.resolved.keys].length === 3);
  const g = new Graph();
  const params: Value[] = [];
  const { outputs } = model.build(g, { hook: loraHook(g, params) });
  const r = g.constant({
    dtype: "F32",
    shape: [8],
    data: Float32Array.from({ length: 8 }, (_, i) => 0.5 + i / 8),
  });
  const loss = reduceSum(mul(outputs[0]!, r));
  const grads = grad(loss, params);
  g.output(loss);
  for (const d of grads) g.output(d);
  const s = await Session.compile(g, { float64: true, threads: 1 });
  const feeds = feedsFor(params, randomTensor([2, 8], 4), false, true);
  const analytic = await s.run(feeds);
  const eps = 1e-6;
  for (const [k, p] of params.entries()) {
    const v = feeds[p.name]!.data as Float64Array;
    const dv = analytic[grads[k]!.name]!.data as Float64Array;
    for (const i of [0, v.length - 1]) {
      const v0 = v[i]!;
      v[i] = v0 + eps;
      const up = (await s.run(feeds, [loss.name]))[loss.name]!.data[0] as number;
      v[i] = v0 - eps;
      const down = (await s.run(feeds, [loss.name]))[loss.name]!.data[0] as number;
      v[i] = v0;
      const numeric = (up - down) / (2 * eps);
      const err = Math.abs(numeric - dv[i]!) / Math.max(Math.abs(numeric), 1e-3);
      ok(err < 1e-6, `${p.name}[${i}]: autograd ${dv[i]}, finite difference ${numeric}`);
    }
  }
  await s.release();
  model.close();
});

Deno.test("weights: 'load' holds F32 weights in memory instead of referencing them", async () => {
  const model = await openSafetensorsModel(`${HF}opt/model.safetensors`, { weights: "load" });
  const g = new Graph();
  model.build(g);
  ok([...g.initializers.values()].every((d) => !("kind" in d)));
  model.close();
});

Deno.test("the config option overrides config.json, or drops it", async () => {
  const path = `${HF}gpt2/model.safetensors`;
  const none = await openSafetensorsModel(path, { config: null });
  deepStrictEqual(none.detected.blocks[0]!.activationFrom, "default");
  strictEqual(none.detected.config, null);
  none.close();
  const relu = await openSafetensorsModel(path, { config: { activation_function: "relu" } });
  deepStrictEqual(relu.resolved.activations, ["relu", null]);
  relu.close();
  const beside = await openSafetensorsModel(path);
  strictEqual(beside.detected.config, `${HF}gpt2/config.json`);
  beside.close();
});

Deno.test("a spec replaces detection, even when the config names an unknown activation", async () => {
  const path = `${HF}opt/model.safetensors`;
  await rejects(
    () => openSafetensorsModel(path, { config: { activation_function: "relu6" } }),
    (e: Error) => e instanceof RangeError && e.message.includes(path),
  );
  const model = await openSafetensorsModel(path, {
    config: { activation_function: "relu6" },
    block: "decoder",
    spec: {
      form: "sequential",
      layers: [{ name: "model.decoder.layers.0.fc1", activation: "tanh" }, {
        name: "model.decoder.layers.0.fc2",
      }],
    },
  });
  strictEqual(model.block, "decoder");
  deepStrictEqual(model.blocks, []);
  deepStrictEqual(model.layers.map((l) => l.biasKey), [
    "model.decoder.layers.0.fc1.bias",
    "model.decoder.layers.0.fc2.bias",
  ]);
  model.close();
});
