import { deepStrictEqual, strictEqual, throws } from "node:assert/strict";
import { detectBlocks } from "./detect.ts";
import { parseBlockSpec } from "./spec.ts";

const params = (...modules: string[]) => modules.flatMap((m) => [`${m}.weight`, `${m}.bias`]);
const weights = (...modules: string[]) => modules.map((m) => `${m}.weight`);

Deno.test("detectBlocks() finds one SwiGLU block per LLaMA layer, in layer order", () => {
  const names: string[] = ["model.embed_tokens.weight", "lm_head.weight"];
  for (const i of [0, 2, 10]) {
    const p = `model.layers.${i}`;
    names.push(
      ...weights(`${p}.self_attn.q_proj`, `${p}.self_attn.o_proj`, `${p}.input_layernorm`),
    );
    names.push(...weights(`${p}.mlp.gate_proj`, `${p}.mlp.up_proj`, `${p}.mlp.down_proj`));
  }
  const found = detectBlocks(names, { model_type: "mistral", hidden_act: "silu" });
  deepStrictEqual(found.blocks.map((b) => b.name), [
    "model.layers.0.mlp",
    "model.layers.2.mlp",
    "model.layers.10.mlp",
  ]);
  const b = found.blocks[2]!;
  deepStrictEqual([b.layout, b.activation, b.activationFrom], [
    "swiglu",
    "silu",
    "config.hidden_act",
  ]);
  deepStrictEqual(b.spec, {
    name: "model.layers.10.mlp",
    form: "gated",
    activation: "silu",
    gate: { name: "model.layers.10.mlp.gate_proj", bias: null },
    up: { name: "model.layers.10.mlp.up_proj", bias: null },
    down: { name: "model.layers.10.mlp.down_proj", bias: null },
  });
  strictEqual(found.modelType, "mistral");
});

Deno.test("detectBlocks() reads GPT-2 Conv1D as [in, out] and leaves attention c_proj alone", () => {
  const names = params("h.0.attn.c_attn", "h.0.attn.c_proj", "h.0.mlp.c_fc", "h.0.mlp.c_proj");
  const found = detectBlocks(names, { activation_function: "gelu_new" });
  deepStrictEqual(found.blocks.map((b) => [b.name, b.layout, b.layers]), [
    ["h.0.mlp", "gpt2", ["h.0.mlp.c_fc", "h.0.mlp.c_proj"]],
  ]);
  const spec = found.blocks[0]!.spec;
  strictEqual(spec.form === "sequential" && spec.layers[0]!.orientation, "in_out");
});

Deno.test("detectBlocks() gives BERT its residual and LayerNorm, old gamma/beta names too", () => {
  const p = "roberta.encoder.layer.0";
  const names = [
    ...params(`${p}.attention.output.dense`, `${p}.intermediate.dense`, `${p}.output.dense`),
    `${p}.output.LayerNorm.gamma`,
    `${p}.output.LayerNorm.beta`,
  ];
  const [b] = detectBlocks(names, { hidden_act: "gelu", layer_norm_eps: 1e-5 }).blocks;
  strictEqual(b!.layout, "bert");
  strictEqual(b!.spec.residual, true);
  deepStrictEqual(b!.spec.norm, {
    kind: "layer_norm",
    weight: `${p}.output.LayerNorm.gamma`,
    bias: `${p}.output.LayerNorm.beta`,
    eps: 1e-5,
    position: "post",
  });
});

Deno.test("detectBlocks() takes T5's activation from dense_act_fn or feed_forward_proj", () => {
  const p = "decoder.block.1.layer.2.DenseReluDense";
  const gated = weights(`${p}.wi_0`, `${p}.wi_1`, `${p}.wo`);
  const byProj = detectBlocks(gated, { feed_forward_proj: "gated-gelu" }).blocks[0]!;
  deepStrictEqual([byProj.layout, byProj.activation], ["t5_gated", "gelu_new"]);
  const byFn = detectBlocks(gated, { feed_forward_proj: "gated-gelu", dense_act_fn: "gelu" });
  strictEqual(byFn.blocks[0]!.activation, "gelu");
  const plain = detectBlocks(weights(`${p}.wi`, `${p}.wo`), { feed_forward_proj: "relu" });
  deepStrictEqual([plain.blocks[0]!.layout, plain.blocks[0]!.activation], ["t5", "relu"]);
});

Deno.test("detectBlocks() recognises DistilBERT, OPT and plain fc1/fc2/fc3 MLPs", () => {
  const distil = detectBlocks(params("t.layer.0.ffn.lin1", "t.layer.0.ffn.lin2"), {
    activation: "gelu",
  });
  deepStrictEqual(distil.blocks.map((b) => [b.name, b.layout, b.activation]), [
    ["t.layer.0.ffn", "distilbert", "gelu"],
  ]);
  const opt = detectBlocks(
    params(
      "model.decoder.layers.0.self_attn.out_proj",
      "model.decoder.layers.0.fc1",
      "model.decoder.layers.0.fc2",
    ),
    { activation_function: "relu" },
  );
  deepStrictEqual(opt.blocks.map((b) => [b.name, b.layout]), [["model.decoder.layers.0", "fc"]]);
  const mlp = detectBlocks(params("fc1", "fc2", "fc3")).blocks[0]!;
  deepStrictEqual([mlp.name, mlp.layers, mlp.activationFrom], [
    "",
    ["fc1", "fc2", "fc3"],
    "default",
  ]);
  const spec = mlp.spec.form === "sequential" ? mlp.spec.layers : [];
  deepStrictEqual(spec.map((l) => l.activation), ["relu", "relu", undefined]);
});

Deno.test("detectBlocks() orders nn.Sequential indices numerically", () => {
  const found = detectBlocks(params("10", "0", "2"));
  deepStrictEqual(found.blocks[0]!.layers, ["0", "2", "10"]);
  deepStrictEqual(detectBlocks(weights("layers.0", "layers.1")).blocks[0]!.name, "layers");
});

Deno.test("detectBlocks() with shapes skips containers holding non-matrix weights", () => {
  const t = (name: string, shape: number[]) => ({ name, dtype: "F32" as const, shape });
  const found = detectBlocks([
    t("0.weight", [16, 8]),
    t("1.weight", [16]), // BatchNorm1d
    t("2.weight", [4, 16]),
  ]);
  deepStrictEqual(found.blocks, []);
});

Deno.test("detectBlocks() names the config field of an activation it cannot build", () => {
  throws(
    () => detectBlocks(params("fc1", "fc2"), { hidden_act: "relu6" }),
    (e: Error) => e instanceof RangeError && e.message.includes(`"relu6" in config.hidden_act`),
  );
});

Deno.test("detected specs are valid block specs and JSON round-trips them", () => {
  const found = detectBlocks([
    ...params("h.0.mlp.c_fc", "h.0.mlp.c_proj"),
    ...weights("m.gate_proj", "m.up_proj", "m.down_proj"),
  ]);
  strictEqual(found.blocks.length, 2);
  for (const b of found.blocks) deepStrictEqual(parseBlockSpec(b.spec), b.spec);
  deepStrictEqual(JSON.parse(JSON.stringify(found)), found);
});
