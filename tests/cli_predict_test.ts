/**
 * `ffwd predict` run as a user runs it: `--argmax` and `--probs` against the logits it prints
 * without them, the score line for labelled rows, and its errors (an adapter for another model,
 * one it cannot run unmerged). Also `adapterWeights()` with a folder or a loaded adapter,
 * and a one-row run's error, which must not show the engine's padding.
 */

import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { ffwd } from "./_cli.ts";
import { MODEL, randomRows, writeAdapter } from "./_serve_fixtures.ts";
import { loadAdapter } from "../adapters/adapter.ts";
import { adapterWeights, engineWeights } from "../adapters/weights.ts";
import { InferenceEngine } from "../src/infer/engine.ts";
import { openModel } from "../src/models/open.ts";

const PEFT = new URL("../fixtures/peft", import.meta.url).pathname;
const BERT = new URL("../fixtures/whole/bert/model.onnx", import.meta.url).pathname;

async function dataFile(lines: unknown[]): Promise<string> {
  const path = await Deno.makeTempFile({ suffix: ".jsonl" });
  await Deno.writeTextFile(path, lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
  return path;
}

const ys = (stdout: string) => stdout.trim().split("\n").map((l) => JSON.parse(l).y);

Deno.test("`ffwd predict --argmax` and `--probs` are the arg-max and softmax of its logits, with the accuracy on stderr", async () => {
  const rows = randomRows(5, 3);
  const labels = [0, 1, 2, 3, 1];
  const data = await dataFile(rows.map((x, i) => ({ x, y: labels[i] })));
  const plain = await ffwd("predict", "--model", MODEL, "--data", data);
  assertEquals(plain.code, 0, plain.stderr);
  const logits: number[][] = ys(plain.stdout);
  const best = logits.map((l) => l.indexOf(Math.max(...l)));
  const correct = best.filter((c, i) => c === labels[i]).length;
  assertEquals(plain.stderr, `accuracy ${(correct / 5).toFixed(4)} (${correct} of 5 rows)\n`);

  const argmax = await ffwd("predict", "--model", MODEL, "--data", data, "--argmax", "--json");
  assertEquals(argmax.code, 0, argmax.stderr);
  assertEquals(argmax.stdout, best.map((c) => `{"y":${c}}\n`).join(""));
  assertEquals(JSON.parse(argmax.stderr), { accuracy: correct / 5, correct, rows: 5 });

  const probs = await ffwd("predict", "--model", MODEL, "--data", data, "--probs");
  assertEquals(probs.code, 0, probs.stderr);
  const p: number[][] = ys(probs.stdout);
  for (const [r, row] of p.entries()) {
    const e = logits[r]!.map((v) => Math.exp(v));
    const sum = e.reduce((a, b) => a + b);
    row.forEach((v, j) => assert(Math.abs(v - e[j]! / sum) < 1e-6, `row ${r}: ${v}`));
    assert(Math.abs(row.reduce((a, b) => a + b) - 1) < 1e-6, `row ${r} sums to 1`);
  }
  assertEquals(probs.stderr, plain.stderr, "the accuracy does not depend on --probs");
});

Deno.test("`ffwd predict` gives float targets their mean squared error, and rows without y no score", async () => {
  const rows = randomRows(3, 4);
  const data = await dataFile(rows.map((x) => ({ x, y: [0, 0, 0, 0] })));
  const run = await ffwd("predict", "--model", MODEL, "--data", data);
  assertEquals(run.code, 0, run.stderr);
  const flat = ys(run.stdout).flat() as number[];
  const mse = flat.reduce((a, v) => a + v * v, 0) / flat.length;
  const m = run.stderr.match(/^mse (\S+) \(3 rows\)\n$/);
  assert(m, run.stderr);
  assert(Math.abs(Number(m[1]) - mse) <= 1e-5 * mse, `${m[1]} vs ${mse}`);

  const bare = await ffwd(
    "predict",
    "--model",
    MODEL,
    "--data",
    await dataFile(rows.map((x) => ({ x }))),
  );
  assertEquals([bare.code, bare.stderr, bare.stdout], [0, "", run.stdout]);
  const both = await ffwd("predict", "--model", MODEL, "--data", data, "--argmax", "--probs");
  assertEquals(both.code, 2);
});

Deno.test("`ffwd predict` with an adapter for another model says so in one line naming the folder", async () => {
  const data = await dataFile([{ x: randomRows(1, 1)[0] }]);
  const other = await ffwd(
    "predict",
    "--model",
    MODEL,
    "--adapter",
    `${PEFT}/legacy`,
    "--data",
    data,
  );
  assertEquals(other.code, 1);
  assertEquals(
    other.stderr,
    `error: Cannot predict with adapter "${PEFT}/legacy": 2 of its 2 layers do not fit, so it was ` +
      `made for another model: tensor "base_model.model.fc1.lora_A.weight" has shape [2, 6], ` +
      `expected [2, 8]; tensor "base_model.model.fc2.lora_A.weight" has shape [2, 8], expected [2, 16]\n`,
  );
  const six = await dataFile([{ x: [1, 2, 3, 4, 5, 6] }]);
  const saved = await ffwd(
    "predict",
    "--model",
    `${PEFT}/mlp_lora/base.safetensors`,
    "--adapter",
    `${PEFT}/mlp_lora`,
    "--data",
    six,
  );
  assertEquals(saved.code, 1);
  assert(
    saved.stderr.startsWith(`error: Cannot predict with adapter "${PEFT}/mlp_lora": it replaces `),
    saved.stderr,
  );
});

Deno.test("adapterWeights() takes an adapter folder or a loaded adapter, with the same outputs as engineWeights", async () => {
  const dir = await Deno.makeTempDir();
  await writeAdapter(`${dir}/a`, 1);
  const model = await openModel(MODEL);
  const engine = await InferenceEngine.create(model);
  try {
    const adapter = await loadAdapter(`${dir}/a`);
    await engine.register("weights", engineWeights(adapter, model));
    await engine.register("adapter", await adapterWeights(adapter, model));
    const folder = await engine.register("folder", await adapterWeights(`${dir}/a`, model));
    assertEquals(folder.source, `${dir}/a`);
    const x = {
      dtype: "F32" as const,
      shape: [3, 8],
      data: new Float32Array(randomRows(3, 7).flat()),
    };
    const want = (await engine.run(x, "weights")).data;
    assertEquals((await engine.run(x, "adapter")).data, want);
    assertEquals((await engine.run(x, "folder")).data, want);
    await assertRejects(
      () => adapterWeights(`${PEFT}/legacy`, model),
      TypeError,
      `Cannot load adapter "${PEFT}/legacy": 2 of its 2 layers do not fit`,
    );
  } finally {
    await engine.close();
    model.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a one-row run that fails names its inputs with one row, not the engine's padding", async () => {
  const model = await openModel(BERT);
  const engine = await InferenceEngine.create(model);
  try {
    const ids = {
      dtype: "I64" as const,
      shape: [1, 8],
      data: new BigInt64Array(8).fill(1n << 40n),
    };
    const mask = { dtype: "I64" as const, shape: [1, 8], data: new BigInt64Array(8).fill(1n) };
    const e = await assertRejects(
      () => engine.run({ input_ids: ids, attention_mask: mask }, null),
      Error,
      "Cannot run the model on 1 row: ",
    );
    assert(
      e.message.endsWith(`(inputs: "input_ids" I64 [1, 8], "attention_mask" I64 [1, 8])`),
      e.message,
    );
    assert(!e.message.includes("[2, 8]"), e.message);
  } finally {
    await engine.close();
    model.close();
  }
});
