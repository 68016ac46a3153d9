/**
 * `ffwd train` and the numeric options of every command, run as subprocesses: a bad number is a
 * usage error (exit 2, one line naming the option and the value), and `ffwd train --config` with
 * flags trains byte for byte the adapter `finetune()` trains from the same file and options.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { loadDataset } from "../src/data/files.ts";
import { openModel } from "../src/models/open.ts";
import { Rng } from "../src/rng.ts";
import { finetune } from "../workflows/finetune.ts";
import { ffwd } from "./_cli.ts";
import { withTempDir } from "./_assert.ts";

const MODEL = new URL("../fixtures/hf/fc_mlp/model.safetensors", import.meta.url).pathname;

Deno.test("a bad number exits 2 with one error line naming the option and the value", async () => {
  const cases = [
    { args: ["train", "--rank", "abc"], option: "--rank", value: "abc" },
    { args: ["train", "--dropout", "1.5"], option: "--dropout", value: "1.5" },
    { args: ["train", "--batch-size", "0"], option: "--batch-size", value: "0" },
    {
      args: ["serve", "--model", MODEL, "--adapters-dir", ".", "--port", "abc"],
      option: "--port",
      value: "abc",
    },
    {
      args: ["predict", "--model", MODEL, "--data", "x", "--threads", "2.5"],
      option: "--threads",
      value: "2.5",
    },
    { args: ["bench", "train", "--dims", "8,x"], option: "--dims", value: "8,x" },
    {
      args: ["merge", "--model", MODEL, "--adapter", ".", "--out", "m.onnx", "--weights", "1,y"],
      option: "--weights",
      value: "1,y",
    },
  ];
  for (const { args, option, value } of cases) {
    const r = await ffwd(...args);
    const what = `ffwd ${args.join(" ")}: ${r.stderr}`;
    strictEqual(r.code, 2, what);
    strictEqual(r.stderr.trimEnd().split("\n").length, 1, what);
    ok(r.stderr.startsWith(`error: option '${option} `), what);
    ok(r.stderr.includes(`'${value}'`), what);
    strictEqual(r.stdout, "", what);
  }
});

Deno.test("ffwd train --config with flags trains the adapter finetune() trains from the same file and options", async () => {
  await withTempDir(async (dir) => {
    const rng = new Rng(1);
    const lines = Array.from({ length: 64 }, () => {
      const x = Array.from({ length: 8 }, () => Math.round(rng.uniform() * 200 - 100) / 100);
      return JSON.stringify({ x, y: (x[0]! > 0 ? 1 : 0) + (x[1]! > 0 ? 2 : 0) });
    });
    await Deno.writeTextFile(`${dir}/train.jsonl`, lines.join("\n") + "\n");
    const config = `${dir}/train.json`;
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        model: MODEL,
        data: `${dir}/train.jsonl`,
        rank: 2,
        targets: "fc1,fc2",
        dropout: 0.1,
        epochs: 2,
        batch_size: 16,
        lr: 0.5,
        seed: 3,
        eval_split: 0.25,
        threads: 1,
      }),
    );
    const cli = await ffwd("train", "--config", config, "--lr", "0.01", "--out", `${dir}/cli`);
    strictEqual(cli.code, 0, cli.stderr);

    const model = await openModel(MODEL);
    try {
      const data = await loadDataset(`${dir}/train.jsonl`, { width: 8 });
      const r = await finetune(model, data, {
        trainConfig: config,
        lr: 0.01,
        outDir: `${dir}/lib`,
      });
      strictEqual(r.steps, 6); // 48 training rows after the 25% split, batches of 16, 2 epochs
    } finally {
      model.close();
    }
    for (const file of ["adapter_model.safetensors", "adapter_config.json"]) {
      deepStrictEqual(
        await Deno.readFile(`${dir}/cli/${file}`),
        await Deno.readFile(`${dir}/lib/${file}`),
        file,
      );
    }
    const metrics = async (run: string) =>
      (await Deno.readTextFile(`${dir}/${run}/metrics.jsonl`)).trim().split("\n")
        .map((l) => JSON.parse(l)).map(({ samples_per_s: _, ...rest }) => rest);
    deepStrictEqual(await metrics("cli"), await metrics("lib"));
  });
});
