/**
 * `ffwd train` and the numeric options of every command, run as subprocesses: a bad number is a
 * usage error (exit 2, one line naming the option and the value); a mistake in the data, the
 * options or the paths fails before anything is written, in one line naming the flag or the row
 * and what would work; `ffwd train --config` with flags trains byte for byte the adapter
 * `finetune()` trains from the same file and options; and `--save-best` saves the adapter
 * `finetune()` keeps with `saveBest`.
 */

import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { loadDataset } from "../src/data/files.ts";
import { openModel } from "../src/models/open.ts";
import { Rng } from "../src/rng.ts";
import { finetune } from "../workflows/finetune.ts";
import { type CliRun, ffwd } from "./_cli.ts";
import { withTempDir } from "./_assert.ts";

const MODEL = new URL("../fixtures/hf/fc_mlp/model.safetensors", import.meta.url).pathname;

Deno.test("a bad number exits 2 with one error line naming the option and the value", async () => {
  const cases = [
    { args: ["train", "--rank", "abc"], option: "--rank", value: "abc" },
    { args: ["train", "--dropout", "1.5"], option: "--dropout", value: "1.5" },
    { args: ["train", "--batch-size", "0"], option: "--batch-size", value: "0" },
    { args: ["train", "--epochs", "0"], option: "--epochs", value: "0" },
    { args: ["train", "--eval-split", "1.5"], option: "--eval-split", value: "1.5" },
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

Deno.test("ffwd train --save-best saves the adapter of the best evaluation, as finetune() does, and says which", async () => {
  await withTempDir(async (dir) => {
    const rng = new Rng(2);
    const jsonl = (rows: number) =>
      Array.from({ length: rows }, () => {
        const x = Array.from({ length: 8 }, () => Math.round(rng.uniform() * 200 - 100) / 100);
        return JSON.stringify({ x, y: (x[0]! > 0 ? 1 : 0) + (x[1]! > 0 ? 2 : 0) });
      }).join("\n") + "\n";
    await Deno.writeTextFile(`${dir}/train.jsonl`, jsonl(16));
    await Deno.writeTextFile(`${dir}/eval.jsonl`, jsonl(32));
    const options = { rank: 4, targets: "fc1,fc2,fc3", epochs: 6, batchSize: 8, lr: 0.05 };
    const cli = await ffwd(
      ...["train", "--model", MODEL, "--data", `${dir}/train.jsonl`, "--eval", `${dir}/eval.jsonl`],
      ...["--rank", "4", "--targets", options.targets, "--epochs", "6", "--batch-size", "8"],
      ...["--lr", "0.05", "--threads", "1", "--save-best", "--out", `${dir}/cli`],
    );
    strictEqual(cli.code, 0, cli.stderr);
    const model = await openModel(MODEL);
    try {
      const data = await loadDataset(`${dir}/train.jsonl`, { model });
      const r = await finetune(model, data, {
        ...options,
        evalFile: `${dir}/eval.jsonl`,
        threads: 1,
        saveBest: true,
        outDir: `${dir}/lib`,
      });
      const { best } = r;
      ok(best && best.epoch < 6, JSON.stringify(best)); // else the test shows nothing
      ok(cli.stdout.includes(`saved the adapter of epoch ${best.epoch} (step ${best.step})`));
      const summary = JSON.parse(await Deno.readTextFile(`${dir}/cli/summary.json`));
      deepStrictEqual(summary.best, best);
    } finally {
      model.close();
    }
    deepStrictEqual(
      await Deno.readFile(`${dir}/cli/adapter_model.safetensors`),
      await Deno.readFile(`${dir}/lib/adapter_model.safetensors`),
    );
  });
});

Deno.test("input mistakes fail before anything is written, in one line naming the flag or the row", async () => {
  await withTempDir(async (dir) => {
    const rows = Array.from({ length: 32 }, (_, i) => {
      const x = Array.from({ length: 8 }, (_, j) => ((i * 7 + j * 3) % 11) / 10 - 0.5);
      return { x, y: i % 4 };
    });
    const write = (name: string, y: (r: { y: number }, i: number) => unknown) =>
      Deno.writeTextFile(
        `${dir}/${name}`,
        rows.map((r, i) => JSON.stringify({ x: r.x, y: y(r, i) })).join("\n") + "\n",
      );
    await write("labels.jsonl", (r) => r.y);
    await write("soft.jsonl", () => [0.1, 0.7, 0.1, 0.1]);
    await write("big.jsonl", (r, i) => (i === 5 ? 7 : r.y));
    await write("wide.jsonl", () => [0, 0, 0, 0, 1]);
    await Deno.writeTextFile(`${dir}/data.csv`, "a,b,c,d,e,f,g,h,label\n1,2,3,4,5,6,7,8,1\n");
    await Deno.writeTextFile(`${dir}/a_file`, "");
    await Deno.mkdir(`${dir}/no_checkpoint`);
    const llama = MODEL.replace("fc_mlp", "llama_3layers");
    const cases: {
      args: string[];
      says: string[];
      lacks?: string[];
      model?: string;
      out?: string;
    }[] = [
      { args: ["--data", `${dir}/soft.jsonl`], says: ['row 1\'s "y"', "not one-hot", '"y": 1'] },
      {
        args: ["--data", `${dir}/labels.jsonl`, "--loss", "mse"],
        says: ["--loss mse", "holds class labels", "use --loss cross_entropy"],
      },
      { args: ["--data", `${dir}/big.jsonl`], says: ["row 6 has label 7", "labels 0 to 3"] },
      {
        args: ["--data", `${dir}/wide.jsonl`, "--loss", "mse"],
        says: ['"y" has 5 values a row', "the model has 4 outputs"],
      },
      { args: ["--eval-split", "0.99"], says: ["--eval-split 0.99", "smaller fraction"] },
      { args: ["--save-best"], says: ["--save-best", "no evaluation data", "give --eval"] },
      { args: ["--rank", "64"], says: ["--rank 64", "(fc1: 8, fc2: 16)", "--rank 16 or less"] },
      {
        args: [],
        model: MODEL.replace("/model.safetensors", ""),
        says: ["--model", "it is a folder", MODEL],
      },
      { args: [], model: llama, says: ["3 feedforward blocks", "choose one with --block"] },
      { args: [], out: `${dir}/a_file`, says: ["it is a file", "--out takes a folder"] },
      { args: ["--resume", `${dir}/no_checkpoint`], says: ["it holds no checkpoint"] },
      {
        args: ["--data", `${dir}/data.csv`],
        says: ["name its label column with --label-column"],
        lacks: ["labelColumn"],
      },
      {
        args: ["--data", dir],
        says: ["use .jsonl, .csv or .safetensors\n"],
        lacks: ["pass format"],
      },
    ];
    // One at a time: concurrent `deno run`s may wait on the node_modules lock, and say so.
    const results: CliRun[] = [];
    for (const [i, c] of cases.entries()) {
      results.push(
        await ffwd(
          "train",
          ...["--model", c.model ?? MODEL, "--out", c.out ?? `${dir}/run${i}`],
          ...(c.args.includes("--data") ? [] : ["--data", `${dir}/labels.jsonl`]),
          ...c.args,
        ),
      );
    }
    for (const [i, { says, lacks = [], out }] of cases.entries()) {
      const r = results[i]!;
      const what = `${cases[i]!.args.join(" ")}: ${r.stderr}`;
      strictEqual(r.code, 1, what);
      strictEqual(r.stderr.trimEnd().split("\n").length, 1, what);
      ok(r.stderr.startsWith("error: "), what);
      for (const s of says) ok(r.stderr.includes(s), `"${s}" in ${what}`);
      for (const s of lacks) ok(!r.stderr.includes(s), `no "${s}" in ${what}`);
      if (!out) await rejects(() => Deno.stat(`${dir}/run${i}`), Deno.errors.NotFound, what);
    }
    strictEqual(await Deno.readTextFile(`${dir}/a_file`), "");
  });
});

Deno.test("ffwd merge and export refuse an --out that is a folder, and export a --model folder", async () => {
  await withTempDir(async (dir) => {
    const adapter = new URL("../fixtures/peft/mlp_lora", import.meta.url).pathname;
    const base = ["--model", MODEL, "--adapter", adapter];
    await Deno.mkdir(`${dir}/m.onnx`);
    const runs = await Promise.all([
      ffwd("export", ...base, "--format", "onnx", "--out", dir),
      ffwd("merge", ...base, "--out", `${dir}/m.onnx`),
      ffwd(
        "export",
        "--model",
        dir,
        "--adapter",
        adapter,
        "--format",
        "onnx",
        "--out",
        `${dir}/x.onnx`,
      ),
    ]);
    const says = [
      `give the file to write, such as "${dir}/model.onnx"`,
      "it is a folder",
      "it is a folder",
    ];
    for (const [i, r] of runs.entries()) {
      strictEqual(r.code, 1, r.stderr);
      strictEqual(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
      ok(r.stderr.startsWith("error: Cannot "), r.stderr);
      ok(r.stderr.includes(says[i]!), r.stderr);
    }
    deepStrictEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["m.onnx"]);
  });
});
