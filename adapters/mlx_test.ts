/**
 * MLX-LM adapters: the real one from mlx-examples (`../shared/realdata`, see its README.md) and
 * folders made here. The real-data ones are registered by `realdataTest` (see tests/_realdata.ts).
 */

import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
import { readSafetensors, writeSafetensors } from "../src/io/safetensors.ts";
import type { LinearLayer } from "../src/models/model.ts";
import { type Adapter, loadAdapter, matchAdapter } from "./adapter.ts";
import { defaultPeftConfig, layerHyper } from "./config.ts";
import { loadMlxAdapter, saveMlxAdapter } from "./mlx.ts";
import { REALDATA, realdataTest } from "../tests/_realdata.ts";
import { randomTensor } from "../tests/_assert.ts";

const MLX_DIR = `${REALDATA}ml-explore__mlx-examples/llms/adapters`;

registerRealdataTests();

function registerRealdataTests(): void {
  realdataTest("loadMlxAdapter() converts the mlx-examples adapter to PEFT's layout", async () => {
    const adapter = await loadAdapter(MLX_DIR);
    strictEqual(adapter.name, "adapters");
    strictEqual(adapter.config.r, 8);
    strictEqual(adapter.config.loraAlpha, 80); // scale 10 · r 8
    strictEqual(adapter.config.useDora, false);
    deepStrictEqual(adapter.config.targetModules, ["self_attn.q_proj", "self_attn.v_proj"]);
    deepStrictEqual(adapter.config.layersToTransform, [36, 37, 38, 39]);
    strictEqual(
      adapter.config.baseModelNameOrPath,
      "/Users/gokdenizgulmez/Desktop/MiniCPM-2B-sft-bf16-4bit",
    );
    strictEqual(adapter.layers.size, 8);
    const modules = [...adapter.layers.keys()].sort();
    deepStrictEqual(modules.slice(0, 2), [
      "model.layers.36.self_attn.q_proj",
      "model.layers.36.self_attn.v_proj",
    ]);
    for (const t of adapter.layers.values()) {
      deepStrictEqual(t.A.shape, [8, 2304]);
      deepStrictEqual(t.B.shape, [2304, 8]);
    }
    const raw = adapter.training?.mlx_lm as Record<string, unknown>;
    strictEqual(raw.lora_layers, 4);
  });

  realdataTest(
    "each converted layer's B·A·(alpha/r) equals scale · lora_bᵀ · lora_aᵀ",
    async () => {
      const adapter = await loadMlxAdapter(MLX_DIR);
      const { tensors: raw } = await readSafetensors(`${MLX_DIR}/adapters.safetensors`);
      const mlxScale = 10; // lora_parameters.scale of the file
      for (const [module, t] of adapter.layers) {
        const { alpha, rank } = layerHyper(adapter.config, module);
        const loraA = raw.get(`${module}.lora_a`)!.data as Float32Array; // [in, r]
        const loraB = raw.get(`${module}.lora_b`)!.data as Float32Array; // [r, out]
        const A = t.A.data as Float32Array; // [r, in]
        const B = t.B.data as Float32Array; // [out, r]
        const [r, n] = t.A.shape as [number, number];
        const m = t.B.shape[0]!;
        let worst = 0;
        for (let i = 0; i < m; i++) {
          for (let j = 0; j < n; j++) {
            let peft = 0;
            let mlx = 0;
            for (let k = 0; k < r; k++) {
              peft += B[i * r + k]! * A[k * n + j]!;
              mlx += loraB[k * m + i]! * loraA[j * r + k]!; // (lora_bᵀ)[i, k] · (lora_aᵀ)[k, j]
            }
            peft *= alpha / rank;
            mlx *= mlxScale;
            const err = Math.abs(peft - mlx) / Math.max(Math.abs(mlx), 1e-30);
            if (mlx !== 0 && err > worst) worst = err;
          }
        }
        ok(worst <= 1e-6, `${module}: relative error ${worst}`);
      }
    },
  );

  realdataTest(
    "loadMlxAdapter() with legacyAlphaScale scales by alpha / rank as old mlx-examples did",
    async () => {
      const adapter = await loadMlxAdapter(MLX_DIR, { legacyAlphaScale: true });
      strictEqual(layerHyper(adapter.config, "model.layers.36.self_attn.q_proj").scale, 20); // 10 · 16 / 8
    },
  );

  realdataTest(
    "matchAdapter() reports the MLX attention adapter against an MLP and a small LLaMA-like model",
    async () => {
      const adapter = await loadMlxAdapter(MLX_DIR);
      const layer = (name: string, n: number, m: number): LinearLayer => ({
        name,
        inFeatures: n,
        outFeatures: m,
        orientation: "out_in",
        weightKey: `${name}.weight`,
        dtype: "F32",
      });
      const mlp = { layers: [layer("fc1", 784, 512), layer("fc2", 512, 10)] };
      throws(() => matchAdapter(adapter, mlp), {
        name: "RangeError",
        message:
          /^Cannot load adapter "adapters": 8 of its 8 layers do not fit, so it was made for another model: tensor "base_model\.model\.model\.layers\.\d+\.self_attn\.[qv]_proj\.lora_A\.weight" matches no linear layer of the model; .*; and 5 more layers \(its layers: fc1, fc2\)$/,
      });
      const none = matchAdapter(adapter, mlp, { allowMismatch: true });
      deepStrictEqual([none.layers.length, none.matched.length, none.unmatched.length], [0, 0, 16]);

      const fake = {
        layers: [36, 37, 38, 39].flatMap((i) => [
          layer(`model.layers.${i}.self_attn.q_proj`, 2304, 2304),
          layer(`model.layers.${i}.self_attn.v_proj`, 2048, 2304),
        ]),
      };
      throws(() => matchAdapter(adapter, fake), {
        name: "TypeError",
        message:
          /tensor "base_model\.model\.model\.layers\.\d+\.self_attn\.v_proj\.lora_A\.weight" has shape \[8, 2304\], expected \[8, 2048\]/,
      });
      const some = matchAdapter(adapter, fake, { allowMismatch: true });
      deepStrictEqual(
        some.layers.map((l) => l.layer.name).sort(),
        [36, 37, 38, 39].map((i) => `model.layers.${i}.self_attn.q_proj`),
      );
      strictEqual(some.layers[0]!.scale, 10);
      strictEqual(some.mismatched.length, 4);
      deepStrictEqual(some.mismatched[0]!.expected, [8, 2048]);
      deepStrictEqual(some.mismatched[0]!.actual, [8, 2304]);
      strictEqual(some.matched.length, 12); // 4 q_proj A+B, 4 v_proj B
    },
  );
}

Deno.test("saveMlxAdapter() then loadMlxAdapter() keeps the tensors and the scale (DoRA)", async () => {
  const dir = `${await Deno.makeTempDir()}/mlx`;
  const adapter: Adapter = {
    name: "mlx",
    config: defaultPeftConfig({
      r: 4,
      loraAlpha: 6,
      useDora: true,
      targetModules: ["up_proj"],
      loraDropout: 0.1,
    }),
    layers: new Map([
      ["model.layers.0.mlp.up_proj", {
        A: randomTensor([4, 6], 1),
        B: randomTensor([5, 4], 2),
        magnitude: randomTensor([5], 3),
      }],
      ["model.layers.1.mlp.up_proj", {
        A: randomTensor([4, 6], 4),
        B: randomTensor([5, 4], 5),
        magnitude: randomTensor([5], 6),
      }],
    ]),
    biases: new Map(),
    extra: new Map(),
  };
  await saveMlxAdapter(dir, adapter);
  const back = await loadAdapter(dir);
  deepStrictEqual(back.layers, adapter.layers);
  strictEqual(layerHyper(back.config, "model.layers.0.mlp.up_proj").scale, 1.5);
  deepStrictEqual(back.config.targetModules, ["mlp.up_proj"]);
  deepStrictEqual(back.config.layersToTransform, [0, 1]);
  strictEqual(back.config.useDora, true);
  const { tensors } = await readSafetensors(`${dir}/adapters.safetensors`);
  deepStrictEqual(tensors.get("model.layers.0.mlp.up_proj.lora_a")!.shape, [6, 4]);
  await Deno.remove(dir.slice(0, dir.lastIndexOf("/")), { recursive: true });
});

Deno.test("loadMlxAdapter() errors name the file and the field", async () => {
  const dir = await Deno.makeTempDir();
  const write = (config: unknown) =>
    Deno.writeTextFile(`${dir}/adapter_config.json`, JSON.stringify(config));
  await writeSafetensors(`${dir}/adapters.safetensors`, {
    "layers.0.q.lora_a": randomTensor([6, 4], 1),
    "layers.0.q.lora_b": randomTensor([4, 5], 2),
  });
  await write({ fine_tune_type: "full" });
  await rejects(loadMlxAdapter(dir), {
    name: "TypeError",
    message: /adapter_config.json": "fine_tune_type" is "full"/,
  });
  await write({ lora_parameters: { rank: 4, dropout: 0 } });
  await rejects(loadMlxAdapter(dir), {
    message:
      `Cannot read "${dir}/adapter_config.json": field "lora_parameters.scale" must be a number, got nothing`,
  });
  await write({ lora_parameters: { rank: 8, scale: 20 } });
  await rejects(loadMlxAdapter(dir), {
    message: new RegExp(
      `adapters.safetensors": tensor "layers.0.q.lora_a" has rank 4, but .* gives lora_parameters.rank 8`,
    ),
  });
  await write({ fine_tune_type: "dora", lora_parameters: { rank: 4, scale: 20 } });
  await rejects(loadMlxAdapter(dir), { message: /tensor "layers.0.q.m" is missing \(DoRA\)/ });
  await writeSafetensors(`${dir}/adapters.safetensors`, {
    "layers.0.q.weight": randomTensor([4, 5], 2),
  });
  await rejects(loadMlxAdapter(dir), {
    message: /"layers.0.q.weight" is not an MLX LoRA\/DoRA tensor/,
  });
  await Deno.remove(dir, { recursive: true });
});
