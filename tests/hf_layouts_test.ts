/**
 * Every Hugging Face layout ffwd recognises, against PyTorch: each `fixtures/hf/<layout>/` folder
 * holds a small model, its `config.json` and `golden.safetensors` (input `x`, PyTorch's output `y`,
 * metadata `block`), all made by `fixtures/hf/make_fixtures.py`.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { Graph } from "../src/engine/graph.ts";
import { readSafetensors } from "../src/io/safetensors.ts";
import type { Tensor } from "../src/tensor.ts";
import {
  openSafetensorsModel,
  type SafetensorsModel,
} from "../src/models/blocks/safetensors_model.ts";
import { detectSafetensorsBlocks } from "../src/models/blocks/safetensors_model.ts";
import { assertRejects, relError } from "./_assert.ts";
import { runGraph } from "./_ops.ts";

const HF = new URL("../fixtures/hf/", import.meta.url).pathname;

/** Runs the model's forward graph on `x` through onnxruntime. */
async function forward(model: SafetensorsModel, x: Tensor): Promise<Tensor> {
  const g = new Graph();
  const { inputs, outputs } = model.build(g);
  g.output(outputs[0]!);
  return (await runGraph(g, { [inputs[0]!.name]: x }))[outputs[0]!.name]!;
}

const LAYOUTS: Record<string, { layout?: string; first: string }> = {
  llama: { layout: "swiglu", first: "model.layers.0.mlp.gate_proj" },
  llama_bf16: { layout: "swiglu", first: "model.layers.0.mlp.gate_proj" },
  llama_3layers: { layout: "swiglu", first: "model.layers.1.mlp.gate_proj" },
  gpt2: { layout: "gpt2", first: "h.0.mlp.c_fc" },
  bert: { layout: "bert", first: "bert.encoder.layer.0.intermediate.dense" },
  distilbert: { layout: "distilbert", first: "distilbert.transformer.layer.0.ffn.lin1" },
  t5: { layout: "t5", first: "encoder.block.0.layer.1.DenseReluDense.wi" },
  t5_gated: { layout: "t5_gated", first: "encoder.block.0.layer.1.DenseReluDense.wi_0" },
  opt: { layout: "fc", first: "model.decoder.layers.0.fc1" },
  phi: { layout: "fc", first: "model.layers.0.mlp.fc1" },
  clip: { layout: "fc", first: "vision_model.encoder.layers.0.mlp.fc1" },
  sequential: { layout: "sequential", first: "0" },
  fc_mlp: { layout: "fc", first: "fc1" },
  layers_mlp: { layout: "sequential", first: "layers.0" },
  custom_gated: { first: "encoder.ffn.w1" },
  custom_seq: { first: "proj_in" },
};

for (const [dir, want] of Object.entries(LAYOUTS)) {
  Deno.test(`${dir}: ffwd's forward equals PyTorch's within 1e-5`, async () => {
    const golden = await readSafetensors(`${HF}${dir}/golden.safetensors`);
    const block = golden.metadata.block!;
    const spec = want.layout ? undefined : `${HF}${dir}/block.json`;
    const model = await openSafetensorsModel(`${HF}${dir}/model.safetensors`, { block, spec });
    try {
      assertEquals(model.layers[0]!.name, want.first);
      if (want.layout) {
        const hit = model.detected.blocks.find((b) => b.name === block);
        assertEquals(hit?.layout, want.layout);
      }
      assertEquals(model.block, block === "" ? undefined : block);
      const y = await forward(model, golden.tensors.get("x")!);
      const expected = golden.tensors.get("y")!;
      assertEquals(y.shape, expected.shape);
      const err = relError(y.data as Float32Array, expected.data as Float32Array);
      assert(err <= 1e-5, `max |y − PyTorch's y| is ${err} × max |PyTorch's y|, over 1e-5`);
    } finally {
      model.close();
    }
  });
}

Deno.test("GPT-2 Conv1D weights are read as [in, out]", async () => {
  const model = await openSafetensorsModel(`${HF}gpt2/model.safetensors`);
  try {
    assertEquals(model.layers.map((l) => [l.orientation, l.inFeatures, l.outFeatures]), [
      ["in_out", 8, 32],
      ["in_out", 32, 8],
    ]);
    assertEquals(model.detected.blocks[0]!.activation, "gelu_new");
    assertEquals(model.detected.blocks[0]!.activationFrom, "config.activation_function");
  } finally {
    model.close();
  }
});

Deno.test("bf16 weights stay bf16 and are cast to float32 inside the graph", async () => {
  const model = await openSafetensorsModel(`${HF}llama_bf16/model.safetensors`);
  try {
    assert(model.layers.every((l) => l.dtype === "BF16"));
    const g = new Graph();
    model.build(g);
    const inits = [...g.initializers.values()];
    assert(inits.length === 3 && inits.every((d) => d.dtype === "BF16"));
    assertEquals(g.nodes.filter((n) => n.op === "Cast").length, 3);
  } finally {
    model.close();
  }
});

Deno.test("F32 weights are referenced in place, not read", async () => {
  const model = await openSafetensorsModel(`${HF}llama/model.safetensors`);
  try {
    const g = new Graph();
    model.build(g);
    const inits = [...g.initializers.values()];
    assertEquals(inits.length, 3);
    for (const d of inits) {
      assert("kind" in d && d.kind === "external" && d.path === model.source);
    }
  } finally {
    model.close();
  }
});

Deno.test("a file with three LLaMA layers lists its blocks and asks for one", async () => {
  const path = `${HF}llama_3layers/model.safetensors`;
  const found = await detectSafetensorsBlocks(path);
  const names = ["model.layers.0.mlp", "model.layers.1.mlp", "model.layers.2.mlp"];
  assertEquals(found.blocks.map((b) => b.name), names);
  assertEquals(found.modelType, "llama");
  assertEquals(JSON.parse(JSON.stringify(found)), found);
  const e = await assertRejects(() => openSafetensorsModel(path), RangeError);
  assert(e.message.includes("3 feedforward blocks"), e.message);
  for (const n of names) assert(e.message.includes(`"${n}"`), e.message);
  const u = await assertRejects(
    () => openSafetensorsModel(path, { block: "model.layers.7.mlp" }),
    RangeError,
  );
  assert(u.message.includes(`no block "model.layers.7.mlp"`), u.message);
  assert(u.message.includes(`"model.layers.2.mlp"`), u.message);
  const m = await openSafetensorsModel(path, { block: "model.layers.2.mlp" });
  assertEquals(m.blocks, names);
  assertEquals(m.layers.map((l) => l.weightKey), [
    "model.layers.2.mlp.gate_proj.weight",
    "model.layers.2.mlp.up_proj.weight",
    "model.layers.2.mlp.down_proj.weight",
  ]);
  m.close();
});

Deno.test("a file without a recognisable block says so and suggests a spec", async () => {
  const e = await assertRejects(
    () => openSafetensorsModel(`${HF}custom_seq/model.safetensors`),
    TypeError,
  );
  assert(e.message.includes("no feedforward block recognised"), e.message);
  assert(e.message.includes("spec"), e.message);
});
