import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { defaultPeftConfig } from "../adapters/config.ts";
import type { Dataset } from "../src/data/dataset.ts";
import { evalSets, resolveTrainOptions, toTrainConfig, TRAIN_DEFAULTS } from "./train_options.ts";
import { parseTrainConfig } from "./train_config.ts";
import { withTempDir } from "../tests/_assert.ts";

Deno.test("resolveTrainOptions() with nothing given is the defaults", () => {
  const o = resolveTrainOptions({});
  const D = TRAIN_DEFAULTS;
  deepStrictEqual(o, {
    config: defaultPeftConfig({
      r: D.rank,
      loraAlpha: D.alphaPerRank * D.rank,
      targetModules: D.targets,
      useDora: D.dora,
      useRslora: D.rslora,
      bias: D.bias,
      modulesToSave: null,
      loraDropout: D.dropout,
      layersToTransform: null,
      rankPattern: {},
      alphaPattern: {},
      initLoraWeights: true,
      baseModelNameOrPath: null,
    }),
    loss: D.loss,
    epochs: D.epochs,
    batchSize: D.batchSize,
    lr: D.lr,
    optimizer: D.optimizer,
    seed: D.seed,
    shuffle: D.shuffle,
  });
});

Deno.test("resolveTrainOptions(): an option wins over the file's field, which wins over the default", () => {
  const file = {
    model: "base.safetensors",
    rank: 4,
    targets: "/fc[12]/",
    modules_to_save: ["fc3"],
    lr: 0.5,
    batch_size: 8,
    shuffle: false,
    weight_decay: 0.1,
    momentum: 0.8,
    early_stopping: 2,
    out: "runs/file",
  };
  const o = resolveTrainOptions(file, {
    alpha: 3,
    lr: 0.01,
    optimizerOptions: { weightDecay: 0 },
    earlyStopping: { patience: 5, minDelta: 0.1 },
  });
  deepStrictEqual(
    [o.config.r, o.config.loraAlpha, o.config.targetModules, o.config.modulesToSave],
    [4, 3, "fc[12]", ["fc3"]],
  );
  strictEqual(o.config.baseModelNameOrPath, "base.safetensors");
  deepStrictEqual([o.lr, o.batchSize, o.shuffle, o.outDir], [0.01, 8, false, "runs/file"]);
  deepStrictEqual(o.optimizerOptions, { weightDecay: 0, momentum: 0.8 });
  deepStrictEqual(o.earlyStopping, { patience: 5, minDelta: 0.1 });
  // A given shuffle (true) wins over the file's false; comma lists split like the flags.
  const flags = resolveTrainOptions(file, {
    shuffle: true,
    targets: "fc1, fc2",
    modulesToSave: "fc3,",
  });
  deepStrictEqual(
    [flags.shuffle, flags.config.targetModules, flags.config.modulesToSave],
    [true, ["fc1", "fc2"], ["fc3"]],
  );
  deepStrictEqual(flags.earlyStopping, { patience: 2 });
});

Deno.test("resolveTrainOptions() of resolved options changes nothing (the CLI resolves, then finetune())", () => {
  const once = resolveTrainOptions(
    { rank: 2, dropout: 0.1, eval_split: 0.2, weight_decay: 0.01, early_stopping: 3, seed: 4 },
    { outDir: "runs/x", epochs: 3, onWarning: () => {} },
  );
  deepStrictEqual(resolveTrainOptions({}, once), once);
});

Deno.test("a given config wins whole over the adapter options and the file", () => {
  const config = defaultPeftConfig({ r: 16, loraAlpha: 32, targetModules: ["fc1"] });
  const o = resolveTrainOptions({ rank: 4, dora: true }, { config, alpha: 1 });
  strictEqual(o.config, config);
});

const data: Dataset = {
  rows: 10,
  width: 2,
  x: Float32Array.from({ length: 20 }, (_, i) => i),
  y: { kind: "labels", data: BigInt64Array.from({ length: 10 }, (_, i) => BigInt(i % 2)) },
};

Deno.test("evalSets() prefers evalData, then the eval file, then a seeded split", async () => {
  const given = await evalSets(data, resolveTrainOptions({ eval_split: 0.5 }, { evalData: data }));
  deepStrictEqual([given.data, given.evalData], [data, data]);
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/eval.jsonl`, '{"x": [1, 2], "y": 1}\n');
    const file = await evalSets(
      data,
      resolveTrainOptions({ eval: `${dir}/eval.jsonl`, eval_split: 0.5 }),
    );
    deepStrictEqual([file.data.rows, file.evalData?.rows], [10, 1]);
  });
  const split = await evalSets(data, resolveTrainOptions({ eval_split: 0.3, seed: 1 }));
  deepStrictEqual([split.data.rows, split.evalData?.rows], [7, 3]);
  const again = await evalSets(data, resolveTrainOptions({}, { evalSplit: 0.3, seed: 1 }));
  deepStrictEqual(again, split);
  // Every row lands in exactly one of the two sets.
  const rows = [...split.data.x, ...split.evalData!.x].filter((_, i) => i % 2 === 0);
  deepStrictEqual(rows.sort((a, b) => a - b), [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
  strictEqual((await evalSets(data, resolveTrainOptions({}))).evalData, undefined);
});

Deno.test("toTrainConfig() saves options that resolve again to the same run, and passes the schema", () => {
  const file = {
    model: "base.onnx",
    block: "mlp",
    output: "logits",
    data: "train.csv",
    eval_split: 0.2,
    label_column: "label",
    rank: 4,
    alpha: 12,
    targets: ["fc1", "fc2"],
    layers_to_transform: [0, 2],
    rank_pattern: { fc2: 2 },
    alpha_pattern: { fc2: 3 },
    dora: true,
    rslora: true,
    bias: "lora_only" as const,
    modules_to_save: ["head"],
    init: "gaussian" as const,
    dropout: 0.1,
    loss: "mse" as const,
    epochs: 3,
    max_steps: 50,
    batch_size: 16,
    grad_accum: 2,
    lr: 0.02,
    schedule: "cosine" as const,
    warmup_steps: 5,
    optimizer: "sgd" as const,
    weight_decay: 0.1,
    momentum: 0.9,
    nesterov: true,
    clip_norm: 1,
    seed: 7,
    shuffle: false,
    checkpoint_every: 10,
    early_stopping: 2,
    threads: 1,
    cache: false,
    cache_budget_mb: 64,
  };
  for (const given of [file, {}, { targets: "/fc[12]/" }, { targets: "all-linear" }]) {
    const o = resolveTrainOptions(given, { outDir: "runs/a" });
    const saved = parseTrainConfig(JSON.parse(JSON.stringify(toTrainConfig(o))));
    deepStrictEqual(resolveTrainOptions(saved, { outDir: "runs/a" }), o);
  }
  deepStrictEqual(toTrainConfig(resolveTrainOptions(file)), file);
});
