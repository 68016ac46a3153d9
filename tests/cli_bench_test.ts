/**
 * `ffwd bench train --model --data`, run as a subprocess on the whole-model CNN fixture
 * (`fixtures/whole/cnn/model.onnx`: convolutions, then fc1 400→32 and fc2 32→10) with a small
 * generated data file: the JSON names the model, its adapted layers and whether the frozen prefix
 * was cached, and carries the synthetic benchmark's fields; flags that only make sense with or
 * without `--model` are usage errors.
 */

import { assert, assertEquals, withTempDir } from "./_assert.ts";
import { ffwd } from "./_cli.ts";
import { writeSafetensors } from "../src/io/safetensors.ts";
import { Rng } from "../src/rng.ts";

const MODEL = "fixtures/whole/cnn/model.onnx";

/** 16 random 28×28 images with labels, as a safetensors data file in `dir`. */
async function images(dir: string): Promise<string> {
  const rng = new Rng(4);
  const path = `${dir}/images.safetensors`;
  await writeSafetensors(path, {
    x: { dtype: "F32", shape: [16, 1, 28, 28], data: rng.fillUniform(new Float32Array(16 * 784)) },
    y: {
      dtype: "I64",
      shape: [16],
      data: BigInt64Array.from({ length: 16 }, (_, i) => BigInt(i % 10)),
    },
  });
  return path;
}

const SMALL = ["--rank", "2", "--batch", "4", "--steps", "2", "--warmup", "1", "--threads", "1"];

Deno.test("ffwd bench train --model times the step of a real model and says what it timed", async () => {
  await withTempDir(async (dir) => {
    const data = await images(dir);
    const run = await ffwd(
      ...["bench", "train", "--model", MODEL, "--data", data, "--targets", "fc1,fc2"],
      ...SMALL,
      "--json",
    );
    assertEquals(run.code, 0, run.stderr);
    const r = JSON.parse(run.stdout);
    assertEquals(
      [r.model, r.targets, r.dims, r.cached_prefix, r.batch, r.rank, r.rows],
      [MODEL, ["fc1", "fc2"], [[400, 32], [32, 10]], true, 4, 2, 16],
    );
    for (const key of ["ms_per_step", "best_ms", "median_ms", "matmul_gflops", "gflop_per_step"]) {
      assert(r[key] > 0, `${key} is ${r[key]}`);
    }
    // A step this small rounds its rate to 0 GFLOP/s or close: only the fields' presence counts.
    for (const key of ["gflops", "ratio", "optimizer_ms", "compile_ms", "cache_ms", "rss_end_mb"]) {
      assert(typeof r[key] === "number" && r[key] >= 0, `${key} is ${r[key]}`);
    }
    assert(r.optimizer_fraction > 0 && r.optimizer_fraction < 1, `${r.optimizer_fraction}`);

    // Without the cache the step runs the convolutions too: more GEMM work per step.
    const text = await ffwd(
      ...["bench", "train", "--model", MODEL, "--data", data, "--targets", "fc1,fc2"],
      ...SMALL,
      "--no-cache",
    );
    assertEquals(text.code, 0, text.stderr);
    assert(text.stdout.includes("frozen prefix   none cached"), text.stdout);
    const work = Number(/GEMM work\s+([\d.]+) GFLOP/.exec(text.stdout)?.[1]);
    assert(work > r.gflop_per_step, `${work} GFLOP uncached, ${r.gflop_per_step} cached`);
  });
});

Deno.test("ffwd bench train: --model without --data, --data without --model and --dims with --model exit 2", async () => {
  const cases = [
    { args: ["--model", MODEL], says: "--model needs --data" },
    {
      args: ["--data", "x.jsonl", "--no-cache"],
      says: "--data, --no-cache only apply with --model",
    },
    { args: ["--model", MODEL, "--data", "x.jsonl", "--dims", "4,2"], says: "--dims is for" },
  ];
  for (const { args, says } of cases) {
    const r = await ffwd("bench", "train", ...args);
    const what = `ffwd bench train ${args.join(" ")}: ${r.stderr}`;
    assertEquals(r.code, 2, what);
    assert(r.stderr.startsWith("error: bench train") && r.stderr.includes(says), what);
    assertEquals(r.stdout, "", what);
  }
});
