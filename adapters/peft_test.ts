import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { readSafetensors, type TensorInput, writeSafetensors } from "../src/io/safetensors.ts";
import type { Tensor } from "../src/tensor.ts";
import type { Adapter, AdapterLayer } from "./adapter.ts";
import { defaultPeftConfig, layerHyper, type PeftConfig } from "./config.ts";
import { loadPeftAdapter, peftStateDict, savePeftAdapter } from "./peft.ts";
import { planMerge } from "../workflows/merge.ts";
import { runModel, runUnmerged } from "../workflows/parity.ts";
import { openSafetensorsModel } from "../src/models/blocks/safetensors_model.ts";
import { randomTensor, relError } from "../tests/_assert.ts";

const FIXTURES = new URL("../fixtures/peft/", import.meta.url).pathname;

/** A DoRA adapter on fc1 [8 → 16] and fc2 [16 → 4] using every optional part. */
function fullAdapter(name = "rot45", config: Partial<PeftConfig> = {}): Adapter {
  return {
    name,
    config: defaultPeftConfig({
      r: 4,
      loraAlpha: 8,
      targetModules: ["fc1", "fc2"],
      useDora: true,
      useRslora: true,
      bias: "all",
      rankPattern: { fc2: 2 },
      alphaPattern: { fc2: 3 },
      modulesToSave: ["head"],
      baseModelNameOrPath: "ffwd/mlp",
      taskType: "SEQ_CLS",
      extra: { custom: [1, "two"] },
      ...config,
    }),
    layers: new Map([
      ["fc1", {
        A: randomTensor([4, 8], 1),
        B: randomTensor([16, 4], 2),
        magnitude: randomTensor([16], 3),
      }],
      ["fc2", {
        A: randomTensor([2, 16], 4),
        B: randomTensor([4, 2], 5),
        magnitude: randomTensor([4], 6),
      }],
    ]),
    biases: new Map([["fc1", randomTensor([16], 7)], ["fc0", randomTensor([8], 8)]]),
    extra: new Map([["head.weight", randomTensor([2, 4], 9)], [
      "head.bias",
      randomTensor([2], 10),
    ]]),
    training: { steps: 100, lr: 0.001, metrics: { loss: [0.5, 0.25] } },
  };
}

/** `scale · B·A` [out, in] with plain loops. */
function delta(A: Tensor, B: Tensor, scale: number): Float64Array {
  const [r, n] = A.shape as [number, number];
  const m = B.shape[0]!;
  const a = A.data as Float32Array, b = B.data as Float32Array;
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < r; k++) s += b[i * r + k]! * a[k * n + j]!;
      out[i * n + j] = scale * s;
    }
  }
  return out;
}

async function entries(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

Deno.test("savePeftAdapter() then loadPeftAdapter() gives identical tensors and config", async () => {
  const parent = await Deno.makeTempDir();
  const adapter = fullAdapter();
  await savePeftAdapter(`${parent}/rot45`, adapter);
  deepStrictEqual(await entries(`${parent}/rot45`), [
    "adapter_config.json",
    "adapter_model.safetensors",
    "ffwd_training.json",
  ]);
  deepStrictEqual(await loadPeftAdapter(`${parent}/rot45`), adapter);
  deepStrictEqual(await entries(parent), ["rot45"]);
  await Deno.remove(parent, { recursive: true });
});

Deno.test("savePeftAdapter() writes PEFT's keys, metadata and config layout", async () => {
  const dir = `${await Deno.makeTempDir()}/a`;
  const adapter = fullAdapter();
  await savePeftAdapter(dir, adapter);
  const { tensors, metadata } = await readSafetensors(`${dir}/adapter_model.safetensors`);
  deepStrictEqual(metadata, { format: "pt" });
  deepStrictEqual([...tensors.keys()].sort(), [
    "base_model.model.fc0.bias",
    "base_model.model.fc1.base_layer.bias",
    "base_model.model.fc1.lora_A.weight",
    "base_model.model.fc1.lora_B.weight",
    "base_model.model.fc1.lora_magnitude_vector",
    "base_model.model.fc2.lora_A.weight",
    "base_model.model.fc2.lora_B.weight",
    "base_model.model.fc2.lora_magnitude_vector",
    "base_model.model.head.bias",
    "base_model.model.head.weight",
  ]);
  deepStrictEqual([...tensors.keys()].sort(), [...peftStateDict(adapter).keys()].sort());
  const text = await Deno.readTextFile(`${dir}/adapter_config.json`);
  const json = JSON.parse(text);
  deepStrictEqual(Object.keys(json), Object.keys(json).sort());
  ok(text.startsWith('{\n  "alora_invocation_tokens": null,\n'), text.slice(0, 60));
  strictEqual(json.peft_type, "LORA");
  strictEqual(json.inference_mode, true);
  strictEqual(json.use_dora, true);
  deepStrictEqual(json.rank_pattern, { fc2: 2 });
  ok(!("steps" in json), "training extras stay out of PEFT's config");
  await Deno.remove(dir.slice(0, dir.lastIndexOf("/")), { recursive: true });
});

Deno.test("loadPeftAdapter() reads every fixture and matches PyTorch's merged weights", async () => {
  for (const name of ["mlp_lora", "mlp_dora", "legacy", "conv1d_lora"]) {
    const adapter = await loadPeftAdapter(`${FIXTURES}${name}`);
    strictEqual(adapter.name, name);
    const { tensors: base } = await readSafetensors(`${FIXTURES}${name}/base.safetensors`);
    const { tensors: golden } = await readSafetensors(`${FIXTURES}${name}/golden.safetensors`);
    ok(adapter.layers.size >= 2);
    for (const [module, t] of adapter.layers) {
      const { scale } = layerHyper(adapter.config, module);
      const w = base.get(`${module}.weight`)!;
      const [m, n] = [t.B.shape[0]!, t.A.shape[1]!];
      const d = delta(t.A, t.B, scale);
      // W + delta, in the base's layout ([in, out] with fan_in_fan_out): then DoRA's row scaling.
      const merged = new Float64Array(m * n);
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          const wij = adapter.config.fanInFanOut
            ? w.data[j * m + i] as number
            : w.data[i * n + j] as number;
          merged[i * n + j] = wij + d[i * n + j]!;
        }
      }
      if (t.magnitude) {
        for (let i = 0; i < m; i++) {
          let norm = 0;
          for (let j = 0; j < n; j++) norm += merged[i * n + j]! ** 2;
          const f = (t.magnitude.data[i] as number) / Math.sqrt(norm);
          for (let j = 0; j < n; j++) merged[i * n + j]! *= f;
        }
      }
      const want = golden.get(`merged.${module}`)!.data as Float32Array;
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          const got = merged[i * n + j]!;
          const ref = adapter.config.fanInFanOut ? want[j * m + i]! : want[i * n + j]!;
          ok(
            Math.abs(got - ref) <= 1e-5 * Math.max(1, Math.abs(ref)),
            `${name} ${module} [${i}, ${j}]: ${got} vs ${ref}`,
          );
        }
      }
    }
  }
});

Deno.test("loadPeftAdapter() sorts biases, modules_to_save and patterns as PEFT saved them", async () => {
  const lora = await loadPeftAdapter(`${FIXTURES}mlp_lora`);
  deepStrictEqual(lora.layers.get("fc2")!.A.shape, [2, 8]);
  deepStrictEqual([...lora.extra.keys()].sort(), ["fc3.bias", "fc3.weight"]);
  strictEqual(lora.biases.size, 0);
  const dora = await loadPeftAdapter(`${FIXTURES}mlp_dora`);
  deepStrictEqual([...dora.biases.keys()].sort(), ["fc1", "fc2", "fc3"]);
  deepStrictEqual(dora.layers.get("fc3")!.magnitude!.shape, [3]);
  const legacy = await loadPeftAdapter(`${FIXTURES}legacy`);
  deepStrictEqual([...legacy.layers.keys()].sort(), ["fc1", "fc2"]);
});

Deno.test("loadPeftAdapter() errors name the folder or file", async () => {
  const parent = await Deno.makeTempDir();
  const dir = `${parent}/broken`;
  await rejects(
    loadPeftAdapter(dir),
    (e: Error) => e instanceof Deno.errors.NotFound && /no such folder/.test(e.message),
  );
  await savePeftAdapter(dir, fullAdapter("broken"));
  const config = await Deno.readTextFile(`${dir}/adapter_config.json`);
  await Deno.writeTextFile(`${dir}/adapter_config.json`, config.slice(0, 50));
  await rejects(loadPeftAdapter(dir), {
    name: "SyntaxError",
    message: new RegExp(`^Cannot read "${dir}/adapter_config.json": invalid JSON`),
  });
  await Deno.writeTextFile(`${dir}/adapter_config.json`, config.replace('"r": 4', '"r": 3'));
  await rejects(loadPeftAdapter(dir), {
    name: "TypeError",
    message: `Cannot load "${dir}/adapter_model.safetensors" with "${dir}/adapter_config.json": ` +
      `tensor "base_model.model.fc1.lora_A.weight" has shape [4, 8], expected [3, in] (r = 3)`,
  });
  await Deno.writeTextFile(
    `${dir}/adapter_config.json`,
    config.replace('"lora_bias": false', '"lora_bias": true'),
  );
  await rejects(loadPeftAdapter(dir), {
    name: "RangeError",
    message: /"lora_bias": true .* is not supported/,
  });
  await Deno.remove(`${dir}/adapter_config.json`);
  await rejects(loadPeftAdapter(dir), {
    message: `Cannot load adapter "broken": "${dir}/adapter_config.json" does not exist`,
  });
  await Deno.writeTextFile(`${dir}/adapter_config.json`, config);
  await Deno.rename(`${dir}/adapter_model.safetensors`, `${dir}/adapter_model.bin`);
  await rejects(loadPeftAdapter(dir), {
    name: "TypeError",
    message: /adapter_model.bin" is a PyTorch pickle.*save_file\(/,
  });
  await Deno.remove(`${dir}/adapter_model.bin`);
  await rejects(loadPeftAdapter(dir), {
    message: `Cannot load adapter "broken": "${dir}/adapter_model.safetensors" does not exist`,
  });
  await writeSafetensors(`${dir}/adapter_model.safetensors`, {
    "base_model.model.fc1.lora_A.weight": randomTensor([4, 8], 1),
  });
  await rejects(loadPeftAdapter(dir), {
    message: /tensor "base_model.model.fc1.lora_B.weight" is missing/,
  });
  await writeSafetensors(`${dir}/adapter_model.safetensors`, {
    "base_model.model.emb.lora_embedding_A": randomTensor([4, 8], 1),
  });
  await rejects(loadPeftAdapter(dir), {
    message: /"base_model.model.emb.lora_embedding_A" is of a kind ffwd does not support/,
  });
  await Deno.remove(parent, { recursive: true });
});

Deno.test("a save that fails midway leaves no folder and no temporary files", async () => {
  const parent = await Deno.makeTempDir();
  const good = fullAdapter("x");
  const failing: Adapter<TensorInput> = {
    ...good,
    layers: new Map<string, AdapterLayer<TensorInput>>([...good.layers, [
      "fc3",
      {
        A: randomTensor([4, 4], 11),
        B: { dtype: "F32", shape: [4, 4], load: () => Promise.reject(new Error("disk on fire")) },
        magnitude: randomTensor([4], 12),
      },
    ]]),
  };
  await rejects(savePeftAdapter(`${parent}/new`, failing), { message: /disk on fire/ });
  deepStrictEqual(await entries(parent), []);
  const badShape = {
    ...good,
    layers: new Map([["fc1", { ...good.layers.get("fc1")!, B: randomTensor([16, 3], 1) }]]),
  };
  await rejects(savePeftAdapter(`${parent}/new`, badShape), {
    name: "TypeError",
    message:
      `Cannot save adapter "x" to "${parent}/new": tensor "base_model.model.fc1.lora_B.weight" has shape [16, 3], expected [out, 4] (r = 4)`,
  });
  deepStrictEqual(await entries(parent), []);
  await Deno.remove(parent, { recursive: true });
});

Deno.test("a failed save does not clobber the adapter already at the destination", async () => {
  const parent = await Deno.makeTempDir();
  const dir = `${parent}/rot45`;
  const old = fullAdapter();
  await savePeftAdapter(dir, old);
  await Deno.writeTextFile(`${dir}/README.md`, "model card");
  const before = new Map<string, Uint8Array>();
  for (const f of await entries(dir)) before.set(f, await Deno.readFile(`${dir}/${f}`));
  const lazyFail: Adapter<TensorInput> = {
    ...old,
    extra: new Map([["head.weight", {
      dtype: "F32",
      shape: [2, 4],
      load: () => Promise.reject(new Error("boom")),
    }]]),
  };
  await rejects(savePeftAdapter(dir, lazyFail), { message: /boom/ });
  deepStrictEqual(await entries(parent), ["rot45"]);
  for (const f of await entries(dir)) {
    deepStrictEqual(await Deno.readFile(`${dir}/${f}`), before.get(f), f);
  }
  deepStrictEqual(await loadPeftAdapter(dir), old);

  // A successful overwrite replaces the adapter's files, drops a stale training record, keeps the README.
  const { training: _, ...next } = fullAdapter("rot45", { r: 4, loraAlpha: 1 });
  await savePeftAdapter(dir, next);
  deepStrictEqual(await entries(dir), [
    "README.md",
    "adapter_config.json",
    "adapter_model.safetensors",
  ]);
  strictEqual(await Deno.readTextFile(`${dir}/README.md`), "model card");
  deepStrictEqual(await loadPeftAdapter(dir), next);
  deepStrictEqual(await entries(parent), ["rot45"]);
  await Deno.remove(parent, { recursive: true });
});

Deno.test("loadPeftAdapter() points at the previous adapter left by an interrupted save", async () => {
  const parent = await Deno.makeTempDir();
  await savePeftAdapter(`${parent}/.rot45.abc.old`, fullAdapter());
  await rejects(loadPeftAdapter(`${parent}/rot45`), {
    message:
      `Cannot load adapter "rot45": no such folder; an interrupted save left the previous adapter in "${parent}/.rot45.abc.old"`,
  });
  await Deno.remove(parent, { recursive: true });
});

Deno.test("PEFT fixtures run unmerged in ffwd as PEFT's forward computes them (golden y, y_base)", async () => {
  for (const name of ["mlp_lora", "mlp_dora", "legacy", "conv1d_lora"]) {
    const dir = `${FIXTURES}${name}`;
    const model = await openSafetensorsModel(`${dir}/base.safetensors`);
    try {
      const { tensors: golden } = await readSafetensors(`${dir}/golden.safetensors`);
      const x = golden.get("x")! as Tensor<"F32">;
      const probe = { source: "golden", rows: x.shape[0]!, feeds: { [model.inputs[0]!.name]: x } };
      const [yBase] = await runModel(model, probe);
      const [y] = await runUnmerged(model, planMerge(model, await loadPeftAdapter(dir)), probe);
      for (const [what, actual, key] of [["base", yBase, "y_base"], ["adapted", y, "y"]] as const) {
        const err = relError(actual!.data as Float32Array, golden.get(key)!.data as Float32Array);
        ok(err < 1e-6, `${name} ${what}: error ${err.toExponential(2)}`);
      }
    } finally {
      model.close();
    }
  }
});
