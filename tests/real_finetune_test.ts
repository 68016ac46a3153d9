/**
 * Fine-tuning third-party bases end to end: ONNX Runtime's own MNIST MLP (784→128→32→10,
 * MatMul + Add on [in, out] initializers listed as graph inputs) and tf2onnx's Keras sine MLP
 * (1→16→16→1) from `../shared/realdata`. For each: an adapter on every linear layer trains (the
 * loss falls), is saved in PEFT's layout under the layers' imported names, loads back, and its
 * merged ONNX export passes the parity report.
 *
 * @module
 */

import { assert, assertEquals } from "./_assert.ts";
import { REALDATA, realdataTest } from "./_realdata.ts";
import { loadAdapter } from "../adapters/adapter.ts";
import { defaultPeftConfig } from "../adapters/config.ts";
import { exportAdapter } from "../workflows/export.ts";
import { finetune } from "../workflows/finetune.ts";
import type { LossName } from "../src/lora/adapted.ts";
import { loadMnist } from "../src/data/mnist.ts";
import { openModel } from "../src/models/open.ts";
import { Rng } from "../src/rng.ts";
import { type Dataset, takeRows } from "../src/data/dataset.ts";

const MNIST_MLP =
  `${REALDATA}onnxruntime__onnxruntime-qnn/onnxruntime/test/testdata/test_training_model.onnx`;
const SINE = `${REALDATA}tracel-ai__burn/examples/raspberry-pi-pico/src/model/sine.onnx`;

/** Per-step losses from metrics.jsonl. */
async function losses(dir: string): Promise<number[]> {
  return (await Deno.readTextFile(`${dir}/metrics.jsonl`)).trim().split("\n")
    .map((l) => JSON.parse(l)).filter((l) => !l.eval).map((l) => l.loss);
}

const mean = (v: readonly number[]) => v.reduce((a, b) => a + b, 0) / v.length;

async function trainAndExport(
  path: string,
  data: Dataset,
  loss: LossName,
  opts: { epochs: number; batchSize: number; lr: number },
): Promise<{ first: number; last: number }> {
  const model = await openModel(path);
  const dir = await Deno.makeTempDir();
  try {
    const config = defaultPeftConfig({ r: 4, loraAlpha: 8, targetModules: "all-linear" });
    await finetune(model, data, { config, loss, outDir: dir, seed: 3, ...opts });
    const trace = await losses(dir);
    const perEpoch = trace.length / opts.epochs;
    // The saved adapter names the layers as the import names them, and loads back.
    const adapter = await loadAdapter(dir);
    assertEquals(
      [...adapter.layers.keys()].sort(),
      model.layers.slice(0, -1).map((l) => l.name).sort(),
    );
    const { report } = await exportAdapter(model, adapter, { out: `${dir}/merged.onnx` });
    assertEquals(report!.verdict, "pass", `${path}: parity ${JSON.stringify(report)}`);
    return { first: mean(trace.slice(0, perEpoch)), last: mean(trace.slice(-perEpoch)) };
  } finally {
    model.close();
    await Deno.remove(dir, { recursive: true });
  }
}

realdataTest(
  "a LoRA on ONNX Runtime's MNIST MLP learns real digits and exports with parity",
  async () => {
    const all = await loadMnist();
    const data = takeRows(all, new Rng(1).permutation(all.rows).subarray(0, 1024));
    const { first, last } = await trainAndExport(MNIST_MLP, data, "cross_entropy", {
      epochs: 4,
      batchSize: 64,
      lr: 1e-2,
    });
    assert(last < 0.7 * first, `mean loss of the last epoch ${last} vs the first ${first}`);
  },
);

realdataTest(
  "a LoRA on tf2onnx's Keras sine MLP fits a shifted curve and exports with parity",
  async () => {
    const rows = 256;
    const x = new Float32Array(rows);
    new Rng(2).fillUniform(x, 0, 2 * Math.PI);
    const y = x.map((v) => Math.sin(v) + 0.5);
    const data: Dataset = { rows, width: 1, x, y: { kind: "targets", data: y, width: 1 } };
    const { first, last } = await trainAndExport(SINE, data, "mse", {
      epochs: 20,
      batchSize: 32,
      lr: 1e-2,
    });
    assert(last < 0.5 * first, `mean loss of the last epoch ${last} vs the first ${first}`);
  },
);
