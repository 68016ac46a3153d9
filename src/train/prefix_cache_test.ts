import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { withTempDir } from "../../tests/_assert.ts";
import { defaultPeftConfig } from "../../adapters/config.ts";
import { finetune } from "../../workflows/finetune.ts";
import { buildAdapted } from "../lora/adapted.ts";
import { planAdapters } from "../../adapters/targets.ts";
import { openModel } from "../models/open.ts";
import { Rng } from "../rng.ts";
import type { Dataset } from "../data/dataset.ts";
import { planPrefix } from "./prefix_cache.ts";

// A CNN exported by PyTorch (fixtures/whole/make_whole.py): Conv → ReLU → MaxPool twice, then a
// dense head fc1 → ReLU → fc2. LoRA on the head: everything up to fc1's input is frozen prefix.
const CNN = "fixtures/whole/cnn/model.onnx";
const MLP = "fixtures/mnist/base.onnx";

function images(rows: number, seed: number): Dataset {
  const rng = new Rng(seed);
  const x = rng.fillNormal(new Float32Array(rows * 784)) as Float32Array;
  const labels = BigInt64Array.from({ length: rows }, () => BigInt(rng.int(10)));
  return { rows, width: 784, x, y: { kind: "labels", data: labels, classes: 10 } };
}

async function run(cache: boolean, dropout: number, cacheBudget?: number) {
  return await withTempDir(async (dir) => {
    const model = await openModel(CNN);
    const config = defaultPeftConfig({
      r: 4,
      loraAlpha: 8,
      targetModules: ["fc1", "fc2"],
      loraDropout: dropout,
    });
    const result = await finetune(model, images(96, 1), {
      config,
      outDir: dir,
      epochs: 2,
      batchSize: 32,
      lr: 1e-2,
      seed: 5,
      evalSplit: 0.25,
      cache,
      cacheBudget,
    });
    const metrics = await Deno.readTextFile(`${dir}/metrics.jsonl`);
    const weights = await Deno.readFile(`${dir}/adapter_model.safetensors`);
    model.close();
    return {
      result,
      // A step line's one wall-clock field (trainer.ts); the rest must match to the bit.
      metrics: metrics.replace(/,"samples_per_s":[^,}]*/g, ""),
      weights,
    };
  });
}

Deno.test("the frozen-prefix cache changes no number: cached and uncached runs are bit-identical", async () => {
  for (const dropout of [0, 0.1]) {
    const cached = await run(true, dropout);
    const plain = await run(false, dropout);
    ok(cached.result.prefixCache, "the CNN's convolutions were not cached");
    strictEqual(plain.result.prefixCache, undefined);
    strictEqual(cached.result.prefixCache!.spilled, false);
    deepStrictEqual(cached.weights, plain.weights, `adapters differ (dropout ${dropout})`);
    strictEqual(cached.result.lastLoss, plain.result.lastLoss);
    deepStrictEqual(cached.result.eval, plain.result.eval);
    ok(cached.metrics.includes('"loss"') && !cached.metrics.includes("samples_per_s"));
    strictEqual(cached.metrics, plain.metrics, `metrics differ (dropout ${dropout})`);
  }
});

Deno.test("a cache over its budget spills to files beside the run folder and changes no number", async () => {
  const spilled = await run(true, 0.1, 1024);
  const plain = await run(false, 0.1);
  strictEqual(spilled.result.prefixCache?.spilled, true);
  ok(spilled.result.prefixCache!.bytes > 1024);
  deepStrictEqual(spilled.weights, plain.weights);
  strictEqual(spilled.result.lastLoss, plain.result.lastLoss);
  deepStrictEqual(spilled.result.eval, plain.result.eval);
  strictEqual(spilled.metrics, plain.metrics);
});

Deno.test("planPrefix() caches what the head reads, and only the frozen base product when an adapter reads the inputs", async () => {
  const cnn = await openModel(CNN);
  const built = buildAdapted(
    cnn,
    planAdapters(cnn, { targetModules: ["fc2"], r: 2, loraAlpha: 4 }),
    {
      loss: "cross_entropy",
    },
  );
  const plan = planPrefix(built.graph, [built.loss!, built.output], built.inputs)!;
  // fc2 is the only adapted layer: fc1 and the convolutions are all frozen prefix; the step reads
  // fc2's input (and fc2's frozen base output), never the image.
  deepStrictEqual(plan.fed, []);
  ok(plan.cached.length >= 1 && plan.cached.every((v) => v.shape[0] === "batch"));
  ok(plan.cached.some((v) => v.shape.join() === "batch,32"), plan.cached.map(String).join(" "));
  cnn.close();
  const mlp = await openModel(MLP);
  const first = buildAdapted(
    mlp,
    planAdapters(mlp, { targetModules: ["fc1"], r: 2, loraAlpha: 4 }),
    {
      loss: "cross_entropy",
    },
  );
  // fc1 reads the input itself: only fc1's frozen base product (x·Wᵀ + b) is cached, and the
  // step still reads the input, for fc1's LoRA branch.
  const p = planPrefix(first.graph, [first.loss!, first.output], first.inputs)!;
  deepStrictEqual(p.cached.map((v) => [v.producer?.op, v.shape]), [["Gemm", ["batch", 256]]]);
  deepStrictEqual(p.fed, first.inputs);
  mlp.close();
});
