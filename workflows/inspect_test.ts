import { deepStrictEqual, rejects, strictEqual } from "node:assert/strict";
import { inspectAdapter } from "./inspect.ts";
import { REALDATA, realdataTest } from "../tests/_realdata.ts";

const FIXTURES = new URL("../fixtures/peft/", import.meta.url).pathname;
const MLX_DIR = `${REALDATA}ml-explore__mlx-examples/llms/adapters`;

Deno.test("inspectAdapter() describes a PEFT DoRA + rsLoRA folder as JSON-able data", async () => {
  const s = await inspectAdapter(`${FIXTURES}mlp_dora`);
  deepStrictEqual(JSON.parse(JSON.stringify(s)), s);
  strictEqual(s.kind, "peft");
  deepStrictEqual(s.files, [
    "adapter_config.json",
    "adapter_model.safetensors",
    "base.safetensors",
    "golden.safetensors",
  ]);
  deepStrictEqual(
    [
      s.config.rank,
      s.config.alpha,
      s.config.scale,
      s.config.dora,
      s.config.rslora,
      s.config.targetModules,
    ],
    [4, 4, 2, true, true, "fc[13]"],
  );
  deepStrictEqual(s.layers, [{ module: "fc1", rank: 4, alpha: 4, scale: 2 }, {
    module: "fc3",
    rank: 4,
    alpha: 4,
    scale: 2,
  }]);
  strictEqual(s.tensors.length, 9);
  deepStrictEqual(s.tensors.find((t) => t.name === "base_model.model.fc1.lora_A.weight"), {
    name: "base_model.model.fc1.lora_A.weight",
    dtype: "F32",
    shape: [4, 6],
  });
  strictEqual(s.parameters, 24 + 32 + 8 + 8 + 8 + 32 + 12 + 3 + 3);
});

Deno.test("inspectAdapter() gives each layer's own rank and scale under rank_pattern", async () => {
  const s = await inspectAdapter(`${FIXTURES}mlp_lora`);
  deepStrictEqual(s.layers.map((l) => [l.module, l.rank, l.alpha, l.scale]).sort(), [[
    "fc1",
    4,
    8,
    2,
  ], ["fc2", 2, 4, 2]]);
  deepStrictEqual(s.config.modulesToSave, ["fc3"]);
});

realdataTest(
  "inspectAdapter() describes an MLX-LM folder in PEFT's terms with MLX's tensor names",
  async (t) => {
    const s = await inspectAdapter(MLX_DIR);
    strictEqual(s.kind, "mlx");
    deepStrictEqual([s.config.rank, s.config.alpha, s.config.scale, s.config.dora], [
      8,
      80,
      10,
      false,
    ]);
    strictEqual(s.layers.length, 8);
    strictEqual(s.tensors.length, 16);
    await t.step("tensor names are MLX's", () => {
      deepStrictEqual(
        s.tensors.find((x) => x.name === "model.layers.36.self_attn.q_proj.lora_a")?.shape,
        [2304, 8],
      );
    });
  },
);

Deno.test("inspectAdapter() errors name the folder", async () => {
  const dir = await Deno.makeTempDir();
  await rejects(inspectAdapter(`${dir}/missing`), {
    message: `Cannot load adapter "${dir}/missing": no such folder`,
  });
  await Deno.remove(dir, { recursive: true });
});
