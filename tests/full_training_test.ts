/**
 * Training a model from scratch with the library: a network made by `initModel` trained whole
 * with `full` (no adapter, every linear layer a module to save) learns, its folder loads back and
 * merges into a model with parity; naming every layer in `modulesToSave` trains the same; a full
 * run's saved training config resumes it without `full`; and `targets` none with nothing else to
 * train is refused.
 *
 * @module
 */

import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { loadAdapter, matchAdapter } from "../adapters/adapter.ts";
import type { Dataset } from "../src/data/dataset.ts";
import { InferenceEngine } from "../src/infer/engine.ts";
import type { BlockSpec } from "../src/models/blocks/spec.ts";
import { openModel } from "../src/models/open.ts";
import { exportAdapter } from "../workflows/export.ts";
import { finetune, type FinetuneOptions } from "../workflows/finetune.ts";
import { initModel } from "../workflows/init_model.ts";
import { resolveTrainOptions, toTrainConfig } from "../workflows/train_options.ts";
import { withTempDir } from "./_assert.ts";

const SPEC: BlockSpec = {
  form: "sequential",
  layers: [
    { name: "fc1", in_features: 1, out_features: 2, activation: "relu" },
    { name: "fc2", out_features: 1 },
  ],
};

const DATA: Dataset = {
  rows: 2,
  width: 1,
  x: new Float32Array([0, 1]),
  y: { kind: "targets", width: 1, data: new Float32Array([0, 1]) },
};

const RECIPE = {
  loss: "bce",
  optimizer: "adam",
  lr: 0.01,
  batchSize: 2,
  shuffle: false,
} as const satisfies FinetuneOptions;

/** Trains a fresh model of `SPEC` (seed 0) in `dir` with `options`. */
async function trainFresh(dir: string, options: FinetuneOptions) {
  const init = await initModel(SPEC, `${dir}/model.safetensors`);
  const model = await openModel(init.path);
  try {
    return await finetune(model, DATA, { ...RECIPE, outDir: `${dir}/run`, ...options });
  } finally {
    model.close();
  }
}

Deno.test("full training learns x → y from scratch; the folder loads back and merges with parity", async () => {
  await withTempDir(async (dir) => {
    const r = await trainFresh(dir, { full: true, epochs: 1000 });
    ok(r.lastLoss < 0.05, `final loss ${r.lastLoss}`);
    ok(r.metrics[0]!.loss > 0.5, `first loss ${r.metrics[0]!.loss}`);
    deepStrictEqual([r.trainableParams, r.baseParams, r.adapter.layers.size], [7, 7, 0]);

    const saved = await loadAdapter(`${dir}/run`);
    deepStrictEqual(
      [saved.config.targetModules, saved.config.modulesToSave, [...saved.extra.keys()].sort()],
      [[], ["fc1", "fc2"], ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]],
    );
    const model = await openModel(`${dir}/model.safetensors`);
    const merged = `${dir}/trained.safetensors`;
    try {
      strictEqual(matchAdapter(saved, model).matched.length, 4);
      const { report } = await exportAdapter(model, saved, { out: merged });
      strictEqual(report!.verdict, "pass");
    } finally {
      model.close();
    }
    const trained = await openModel(merged);
    const engine = await InferenceEngine.create(trained);
    try {
      const out = await engine.run({ dtype: "F32", shape: [2, 1], data: DATA.x }, null);
      const [z0, z1] = out.data as Float32Array;
      ok(z0! < 0 && z1! > 0, `logits ${z0}, ${z1}: σ should be below 0.5 for x = 0, above for 1`);
    } finally {
      await engine.close();
      trained.close();
    }
  });
});

Deno.test("modulesToSave naming every layer trains what full trains: all-linear leaves them out", async () => {
  await withTempDir(async (dir) => {
    await trainFresh(`${dir}/full`, { full: true, epochs: 20 });
    await trainFresh(`${dir}/saved`, { modulesToSave: ["fc1", "fc2"], epochs: 20 });
    deepStrictEqual(
      await Deno.readFile(`${dir}/saved/run/adapter_model.safetensors`),
      await Deno.readFile(`${dir}/full/run/adapter_model.safetensors`),
    );
  });
});

Deno.test("a full run saves a training config that resolves to the same run without full", async () => {
  await withTempDir(async (dir) => {
    await trainFresh(dir, { full: true, epochs: 2 });
    const file = JSON.parse(await Deno.readTextFile(`${dir}/run/checkpoint/train_config.json`));
    deepStrictEqual([file.targets, file.modules_to_save, file.full], [
      "none",
      ["fc1", "fc2"],
      undefined,
    ]);
    const again = resolveTrainOptions(file, { outDir: `${dir}/run` });
    deepStrictEqual(toTrainConfig(again), file);
  });
});

Deno.test("targets none with nothing to train, and full with targets, are refused before anything is written", async () => {
  await withTempDir(async (dir) => {
    await rejects(
      () => trainFresh(`${dir}/a`, { targets: "none", epochs: 1 }),
      (e: Error) =>
        e instanceof RangeError && e.message.includes("--targets none puts no adapter") &&
        e.message.includes("add --full"),
    );
    await rejects(
      () => trainFresh(`${dir}/b`, { full: true, targets: "fc1", epochs: 1 }),
      (e: Error) =>
        e instanceof TypeError && e.message.includes("Cannot train with --full and --targets fc1"),
    );
    for (const run of ["a", "b"]) {
      await rejects(() => Deno.stat(`${dir}/${run}/run`), Deno.errors.NotFound);
    }
  });
});
