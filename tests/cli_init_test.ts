/**
 * `ffwd init` and `ffwd train --full`, run as subprocesses: the tutorial's network written from a
 * spec, trained from scratch, exported and predicted, each command giving what the library gives;
 * `--resume` of a full run continues it from its checkpoint alone; and the mistakes fail in one
 * line naming what would work.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import type { Dataset } from "../src/data/dataset.ts";
import type { BlockSpec } from "../src/models/blocks/spec.ts";
import { openModel } from "../src/models/open.ts";
import { finetune } from "../workflows/finetune.ts";
import { initModel } from "../workflows/init_model.ts";
import { type CliRun, ffwd } from "./_cli.ts";
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

const RECIPE = ["--loss", "bce", "--optimizer", "adam", "--lr", "0.01", "--batch-size", "2"];
const LIBRARY = { loss: "bce", optimizer: "adam", lr: 0.01, batchSize: 2 } as const;

/** The tutorial's files in `dir`: the spec, the data, and the model of seed 0. */
async function files(dir: string): Promise<void> {
  await Deno.writeTextFile(`${dir}/spec.json`, JSON.stringify(SPEC));
  await Deno.writeTextFile(`${dir}/data.jsonl`, '{"x": [0], "y": [0]}\n{"x": [1], "y": [1]}\n');
  const r = await ffwd(
    "init",
    "--spec",
    `${dir}/spec.json`,
    "--seed",
    "0",
    "--out",
    `${dir}/model.safetensors`,
  );
  succeeded(r, "init");
  strictEqual(
    r.stdout.trim(),
    `wrote ${dir}/model.safetensors: 7 parameters (fc1 [1 → 2] relu, fc2 [2 → 1]), seed 0`,
  );
}

function succeeded(r: CliRun, what: string): void {
  strictEqual(r.code, 0, `${what}: ${r.stderr}`);
}

/**
 * `finetune()` on a fresh model of seed 0 in `dir`, as the CLI runs were given; the run records
 * the paths of the model and the data (`data.jsonl` in `dir`), as `ffwd train` does.
 */
async function library(dir: string, epochs: number, stopAfter?: number) {
  await initModel(SPEC, `${dir}/model.safetensors`);
  await Deno.writeTextFile(`${dir}/data.jsonl`, '{"x": [0], "y": [0]}\n{"x": [1], "y": [1]}\n');
  const model = await openModel(`${dir}/model.safetensors`);
  try {
    await finetune(model, DATA, {
      ...LIBRARY,
      model: `${dir}/model.safetensors`,
      data: `${dir}/data.jsonl`,
      full: true,
      epochs,
      stopAfter,
      shuffle: false,
      outDir: `${dir}/run`,
    });
  } finally {
    model.close();
  }
}

Deno.test("ffwd init, train --full, export and predict run the tutorial's network as the library does", async () => {
  await withTempDir(async (dir) => {
    await files(dir);
    await Deno.mkdir(`${dir}/lib`);
    await library(`${dir}/lib`, 1000);
    deepStrictEqual(
      await Deno.readFile(`${dir}/model.safetensors`),
      await Deno.readFile(`${dir}/lib/model.safetensors`),
    );
    const train = await ffwd(
      "train",
      ...["--model", `${dir}/model.safetensors`, "--data", `${dir}/data.jsonl`],
      ...["--out", `${dir}/trained`, "--full", ...RECIPE, "--epochs", "1000", "--no-shuffle"],
    );
    succeeded(train, "train");
    ok(train.stderr.includes("training 2 of 2 linear layers whole"), train.stderr);
    ok(train.stdout.includes("7 trainable parameters (100.00% of the base)"), train.stdout);
    deepStrictEqual(
      await Deno.readFile(`${dir}/trained/adapter_model.safetensors`),
      await Deno.readFile(`${dir}/lib/run/adapter_model.safetensors`),
    );
    succeeded(
      await ffwd(
        "export",
        ...["--model", `${dir}/model.safetensors`, "--adapter", `${dir}/trained`],
        ...["--format", "onnx", "--out", `${dir}/model.onnx`],
      ),
      "export",
    );
    const predict = await ffwd(
      "predict",
      ...["--model", `${dir}/model.onnx`, "--data", `${dir}/data.jsonl`, "--json"],
    );
    succeeded(predict, "predict");
    const [z0, z1] = predict.stdout.trim().split("\n").map((l) => JSON.parse(l).y[0]);
    ok(z0 < 0 && z1 > 0, `logits ${z0}, ${z1}`);
  });
});

Deno.test("ffwd train --resume continues a full run from its checkpoint alone", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/whole`);
    await Deno.mkdir(`${dir}/half`);
    await library(`${dir}/whole`, 20);
    await library(`${dir}/half`, 20, 10);
    succeeded(await ffwd("train", "--resume", `${dir}/half/run`), "resume");
    deepStrictEqual(
      await Deno.readFile(`${dir}/half/run/adapter_model.safetensors`),
      await Deno.readFile(`${dir}/whole/run/adapter_model.safetensors`),
    );
  });
});

Deno.test("ffwd init and train --full mistakes fail in one line naming what would work", async () => {
  await withTempDir(async (dir) => {
    await files(dir);
    const data = ["--model", `${dir}/model.safetensors`, "--data", `${dir}/data.jsonl`];
    await Deno.writeTextFile(
      `${dir}/no_sizes.json`,
      JSON.stringify({ form: "sequential", layers: [{ name: "fc1" }, { name: "fc2" }] }),
    );
    const cases = [
      {
        args: ["train", ...data, "--out", `${dir}/a`, "--targets", "none", "--loss", "bce"],
        code: 1,
        says: ["--targets none puts no adapter on any of the 2 linear layers", "add --full"],
      },
      {
        args: ["train", ...data, "--out", `${dir}/b`, "--full", "--targets", "fc1", ...RECIPE],
        code: 1,
        says: ["Cannot train with --full and --targets fc1", "leave out --targets"],
      },
      {
        args: ["init", "--spec", `${dir}/no_sizes.json`, "--out", `${dir}/c/m.safetensors`],
        code: 1,
        says: [`"${dir}/no_sizes.json"`, 'layer "fc1" needs "in_features"'],
      },
      {
        args: ["init", "--spec", `${dir}/spec.json`, "--out", `${dir}/d/m.onnx`],
        code: 2,
        says: ["must name a .safetensors file"],
      },
    ];
    for (const { args, code, says } of cases) {
      const r = await ffwd(...args);
      const what = `ffwd ${args.join(" ")}: ${r.stderr}`;
      strictEqual(r.code, code, what);
      strictEqual(r.stderr.trimEnd().split("\n").length, 1, what);
      ok(says.every((s) => r.stderr.includes(s)), what);
    }
    for (const out of ["a", "b", "c", "d"]) {
      ok(!(await Deno.stat(`${dir}/${out}`).catch(() => null)), `${out} was written`);
    }
  });
});
