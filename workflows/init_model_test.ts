import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
import { initModel, initTensors } from "./init_model.ts";
import type { BlockSpec } from "../src/models/blocks/spec.ts";
import { openSafetensorsModel } from "../src/models/blocks/safetensors_model.ts";
import { withTempDir } from "../tests/_assert.ts";

const MLP: BlockSpec = {
  form: "sequential",
  layers: [
    { name: "fc1", in_features: 16, out_features: 64, activation: "relu" },
    { name: "fc2", out_features: 8 },
  ],
};

Deno.test("initTensors() draws weights and biases from nn.Linear's U(±1/√fan_in)", () => {
  const t = initTensors(MLP, { seed: 3 });
  for (const [key, fanIn] of [["fc1", 16], ["fc2", 64]] as const) {
    const bound = 1 / Math.sqrt(fanIn);
    for (const part of ["weight", "bias"]) {
      const v = [...t.get(`${key}.${part}`)!.data];
      ok(v.every((w) => Math.abs(w) <= bound), `${key}.${part} exceeds ${bound}`);
      // 64 draws of U(±bound) reach past both ±0.8·bound but for a chance of 0.24% (seeded here)
      if (v.length >= 64) {
        ok(Math.max(...v) > 0.8 * bound && Math.min(...v) < -0.8 * bound, `${key}.${part} range`);
      }
    }
    const w = [...t.get(`${key}.weight`)!.data];
    ok(Math.abs(w.reduce((a, b) => a + b, 0) / w.length) < 0.1 * bound, `${key} mean`);
  }
  deepStrictEqual(
    [...t].map(([k, v]) => [k, v.shape]),
    [["fc1.weight", [64, 16]], ["fc1.bias", [64]], ["fc2.weight", [8, 64]], ["fc2.bias", [8]]],
  );
});

Deno.test("the same seed writes the same file byte for byte, another seed other values", async () => {
  await withTempDir(async (dir) => {
    await initModel(MLP, `${dir}/a/model.safetensors`, { seed: 7 });
    await initModel(MLP, `${dir}/b/model.safetensors`, { seed: 7 });
    await initModel(MLP, `${dir}/c/model.safetensors`, { seed: 8 });
    const [a, b, c] = await Promise.all(
      ["a", "b", "c"].map((s) => Deno.readFile(`${dir}/${s}/model.safetensors`)),
    );
    deepStrictEqual(a, b);
    ok(a!.length === c!.length && a!.some((byte, i) => byte !== c![i]));
  });
});

Deno.test("an [in, out] layer holds the transpose of the [out, in] layer of the same seed", () => {
  const inOut: BlockSpec = {
    form: "sequential",
    layers: [{ name: "fc", in_features: 3, out_features: 2, orientation: "in_out", bias: null }],
  };
  const w = initTensors({ ...inOut, layers: [{ ...inOut.layers[0]!, orientation: "out_in" }] })
    .get("fc.weight")!;
  const t = initTensors(inOut).get("fc.weight")!;
  deepStrictEqual(t.shape, [3, 2]);
  for (let o = 0; o < 2; o++) {
    for (let i = 0; i < 3; i++) strictEqual(t.data[i * 2 + o], w.data[o * 3 + i]);
  }
  strictEqual(initTensors(inOut).has("fc.bias"), false);
});

Deno.test("a gated block with a norm: sizes from gate and down, the norm's scale 1 and shift 0", () => {
  const t = initTensors({
    form: "gated",
    activation: "silu",
    gate: { name: "gate_proj", in_features: 4, out_features: 6, bias: null },
    up: { name: "up_proj", bias: null },
    down: { name: "down_proj", out_features: 4, bias: null },
    residual: true,
    norm: { kind: "layer_norm", weight: "ln.weight", bias: "ln.bias" },
  });
  deepStrictEqual(
    [...t].map(([k, v]) => [k, v.shape]),
    [
      ["gate_proj.weight", [6, 4]],
      ["up_proj.weight", [6, 4]],
      ["down_proj.weight", [4, 6]],
      ["ln.weight", [4]],
      ["ln.bias", [4]],
    ],
  );
  deepStrictEqual([...t.get("ln.weight")!.data, ...t.get("ln.bias")!.data], [
    1,
    1,
    1,
    1,
    0,
    0,
    0,
    0,
  ]);
});

Deno.test("missing or disagreeing sizes are errors naming the layer and the field", () => {
  const fails = (spec: BlockSpec, ...parts: string[]) =>
    throws(
      () => initTensors(spec),
      (e: Error) => e instanceof TypeError && parts.every((p) => e.message.includes(p)),
    );
  fails(
    { form: "sequential", layers: [{ name: "fc1", out_features: 2 }] },
    'layer "fc1" needs "in_features"',
  );
  fails(
    { form: "sequential", layers: [{ name: "fc1", in_features: 1 }] },
    'layer "fc1" needs "out_features"',
  );
  fails(
    {
      form: "sequential",
      layers: [{ name: "fc1", in_features: 1, out_features: 2 }, {
        name: "fc2",
        in_features: 3,
        out_features: 1,
      }],
    },
    'layer "fc2" has "in_features" 3, and layer "fc1" gives 2',
  );
  fails(
    {
      form: "sequential",
      layers: [{ name: "a", in_features: 1, out_features: 1, weight: "w" }, {
        name: "b",
        out_features: 1,
        weight: "w",
      }],
    },
    'tensor "w" is named twice',
  );
});

Deno.test("initModel() says how ffwd opens the file, and writes config.json for the activation", async () => {
  await withTempDir(async (dir) => {
    const relu = await initModel(MLP, `${dir}/relu/model.safetensors`);
    strictEqual(relu.opensWith, "names");
    await rejects(() => Deno.stat(`${dir}/relu/config.json`), Deno.errors.NotFound);

    const tanhSpec: BlockSpec = {
      form: "sequential",
      layers: MLP.layers.map((l, i) => i === 0 ? { ...l, activation: "tanh" as const } : l),
    };
    const tanh = await initModel(tanhSpec, `${dir}/tanh/model.safetensors`);
    deepStrictEqual([tanh.opensWith, tanh.config], ["config", `${dir}/tanh/config.json`]);
    const model = await openSafetensorsModel(`${dir}/tanh/model.safetensors`);
    deepStrictEqual(model.resolved.activations, ["tanh", null]);
    model.close();

    const named: BlockSpec = {
      form: "sequential",
      layers: [{ name: "hidden", in_features: 1, out_features: 2, activation: "relu" }, {
        name: "out",
        out_features: 1,
      }],
    };
    strictEqual((await initModel(named, `${dir}/named/model.safetensors`)).opensWith, "spec");
  });
});
