/**
 * What `finetune()` refuses before it writes anything, through `finetune()` itself (the CLI's
 * messages are checked in `tests/cli_train_test.ts`), what it accepts instead (one-hot targets
 * as the labels they encode), what it saves as `target_modules`, and models that already output
 * probabilities (a final Softmax or Sigmoid) for losses that expect logits.
 */

import { assertEquals, assertRejects, assertThrows } from "../tests/_assert.ts";
import { openSafetensorsModel } from "../src/models/blocks/safetensors_model.ts";
import { Rng } from "../src/rng.ts";
import type { Dataset } from "../src/data/dataset.ts";
import type { LayerAdapter } from "../src/lora/branch.ts";
import { defaultPeftConfig } from "../adapters/config.ts";
import { finetune } from "./finetune.ts";
import { checkRanks } from "./_finetune_checks.ts";
import { initModel } from "./init_model.ts";
import { openModel } from "../src/models/open.ts";

const MODEL = new URL("../fixtures/hf/fc_mlp/model.safetensors", import.meta.url).pathname;

function labels(rows: number): Dataset {
  const rng = new Rng(3);
  const x = rng.fillUniform(new Float32Array(rows * 8), -1, 1) as Float32Array;
  const y = BigInt64Array.from({ length: rows }, (_, i) => BigInt(i % 4));
  return { rows, width: 8, x, y: { kind: "labels", data: y } };
}

function oneHot(d: Dataset): Dataset {
  const y = new Float32Array(d.rows * 4);
  (d.y.data as BigInt64Array).forEach((c, r) => (y[r * 4 + Number(c)] = 1));
  return { ...d, y: { kind: "targets", data: y, width: 4 } };
}

const train = async (data: Dataset, options: Record<string, unknown> = {}) => {
  const outDir = `${await Deno.makeTempDir()}/run`;
  const r = await finetune(await openSafetensorsModel(MODEL), data, {
    rank: 2,
    batchSize: 8,
    epochs: 2,
    lr: 0.01,
    outDir,
    ...options,
  });
  return { r, outDir };
};

Deno.test("cross_entropy trains one-hot targets exactly as the class labels they encode", async () => {
  const data = labels(32);
  const a = await train(data, { evalData: labels(8) });
  const b = await train(oneHot(data), { evalData: oneHot(labels(8)) });
  assertEquals(b.r.eval, a.r.eval);
  assertEquals(
    await Deno.readFile(`${b.outDir}/adapter_model.safetensors`),
    await Deno.readFile(`${a.outDir}/adapter_model.safetensors`),
  );
});

Deno.test("finetune() refuses bad numbers, data that does not fit, and a rank no layer can use, writing nothing", async () => {
  const data = labels(16);
  const eval7 = {
    ...labels(4),
    y: { kind: "labels" as const, data: new BigInt64Array([0n, 7n, 1n, 2n]) },
  };
  const cases: [Dataset, Record<string, unknown>, new (...args: never[]) => Error, string][] = [
    [data, { epochs: 0 }, RangeError, "--epochs 0: expected an integer >= 1"],
    [data, { batchSize: 0 }, RangeError, "--batch-size 0: expected an integer >= 1"],
    [data, { evalSplit: 1 }, RangeError, "--eval-split 1: expected a number in [0, 1)"],
    [data, { loss: "bce" }, TypeError, 'the training data with --loss bce: "y" holds class labels'],
    [data, { evalData: eval7 }, RangeError, "the evaluation data with --loss cross_entropy: row 2"],
    [data, { rank: 32, targets: "fc1,fc2" }, RangeError, "--rank 32: above min(in, out)"],
    [data, { resume: "nowhere" }, Deno.errors.NotFound, 'Cannot resume from "nowhere"'],
  ];
  for (const [d, options, Err, message] of cases) {
    const outDir = `${await Deno.makeTempDir()}/run`;
    await assertRejects(() => train(d, { ...options, outDir }), Err, message);
    await assertRejects(() => Deno.stat(outDir), Deno.errors.NotFound);
  }
});

Deno.test("checkRanks() passes a rank above some layers' min(in, out) on as advice, and refuses it above all", () => {
  const ad = (name: string, inFeatures: number, outFeatures: number, rank: number) =>
    ({
      layer: {
        name,
        inFeatures,
        outFeatures,
        orientation: "out_in",
        weightKey: name,
        dtype: "F32",
      },
      rank,
      alpha: rank,
      scale: 1,
      dora: false,
    }) as LayerAdapter;
  const warnings: string[] = [];
  checkRanks(
    [ad("a", 8, 16, 12), ad("b", 16, 16, 12)],
    ["a is too small"],
    (m) => warnings.push(m),
  );
  assertEquals(warnings, ["a is too small"]);
  assertThrows(
    () => checkRanks([ad("a", 8, 16, 20), ad("b", 16, 16, 20)], [], () => {}),
    RangeError,
    "Cannot train with --rank 20: above min(in, out) of every targeted layer (a: 8, b: 16)",
  );
});

Deno.test("target_modules saves the layers all-linear resolved to, and names or a pattern as given", async () => {
  const saved = async (targetModules: string | string[]) => {
    const { outDir } = await train(labels(8), {
      config: defaultPeftConfig({ r: 2, loraAlpha: 4, targetModules }),
      maxSteps: 1,
    });
    return JSON.parse(await Deno.readTextFile(`${outDir}/adapter_config.json`)).target_modules;
  };
  assertEquals(await saved("all-linear"), ["fc1", "fc2"]);
  assertEquals(await saved(["fc3", "fc1"]), ["fc3", "fc1"]);
  assertEquals(await saved("fc[23]"), "fc[23]");
});

Deno.test("a checkpoint resumes only a run of the same adapters, and says how to resume it", async () => {
  const { outDir } = await train(labels(16), { targets: "fc1,fc2", maxSteps: 1 });
  for (
    const [targets, says] of [
      ["fc1", 'its checkpoint trains "base_model.model.fc2.lora_A.weight", this run does not'],
      ["fc1,fc3", 'its checkpoint has no "base_model.model.fc3.lora_A.weight"'],
    ]
  ) {
    await assertRejects(
      () => train(labels(16), { targets, resume: outDir, outDir: `${outDir}2` }),
      TypeError,
      says,
    );
  }
  await assertRejects(
    () => train(labels(16), { targets: "fc1,fc2", rank: 3, resume: outDir, outDir: `${outDir}2` }),
    TypeError,
    `its checkpoint has 16 values for "base_model.model.fc1.lora_A.weight", this run 24`,
  );
});

Deno.test("a model that outputs probabilities is refused for cross_entropy and bce, naming its logits", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // The TF.js fixture ends in a Sigmoid over 4 outputs; its logits are "fc3/MatMul".
    const tfjs = new URL("../fixtures/tfjs/dense/model.json", import.meta.url).pathname;
    const rng = new Rng(5);
    const x = rng.fillUniform(new Float32Array(16 * 8), -1, 1) as Float32Array;
    const y = Float32Array.from({ length: 16 * 4 }, (_, i) => (i % 3 === 0 ? 1 : 0));
    const data: Dataset = { rows: 16, width: 8, x, y: { kind: "targets", data: y, width: 4 } };
    const options = { rank: 2, batchSize: 8, epochs: 1, loss: "bce" as const, outDir: `${dir}/a` };
    await assertRejects(
      async () => await finetune(await openModel(tfjs), data, options),
      TypeError,
      'its output "y" is already a Sigmoid of "fc3/MatMul", and bce expects logits; ' +
        "train on the logits with --output fc3/MatMul",
    );
    await assertRejects(() => Deno.stat(`${dir}/a`), Deno.errors.NotFound);
    const r = await finetune(await openModel(tfjs, { output: "fc3/MatMul" }), data, options);
    assertEquals(r.steps, 2);
    // A block spec whose last layer applies a sigmoid: the fix is in the spec.
    const spec = {
      form: "sequential" as const,
      layers: [
        { name: "fc1", in_features: 8, out_features: 6, activation: "relu" as const },
        { name: "fc2", out_features: 4, activation: "sigmoid" as const },
      ],
    };
    await Deno.writeTextFile(`${dir}/spec.json`, JSON.stringify(spec));
    await initModel(spec, `${dir}/m.safetensors`);
    const block = await openModel(`${dir}/m.safetensors`, { spec: `${dir}/spec.json` });
    await assertRejects(
      () => finetune(block, data, { ...options, outDir: `${dir}/b` }),
      TypeError,
      'its block spec applies sigmoid to the output of its last layer "fc2", and bce expects ' +
        'logits; remove that layer\'s "activation" from the spec',
    );
    await assertRejects(() => Deno.stat(`${dir}/b`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
