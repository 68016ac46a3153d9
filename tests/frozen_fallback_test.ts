/**
 * A node whose builder refuses it is carried as frozen context instead of failing the import:
 * a reflect-mode Pad (ffwd builds only constant padding) before a linear layer loads, computes
 * what onnxruntime computes for the file, says so in a note, and a LoRA on the layer after it
 * trains.
 */

import { assertEquals, maxDiff, randomTensor, withTempDir } from "./_assert.ts";
import { f32, i64, io, model, node, runImported, runOriginal, writeModel } from "./_onnx.ts";
import { openOnnxModel } from "../src/models/onnx/import.ts";
import { Rng } from "../src/rng.ts";
import { finetune } from "../workflows/finetune.ts";
import { defaultPeftConfig } from "../adapters/config.ts";

Deno.test("a reflect Pad before a linear layer runs as frozen context, and a LoRA after it trains", async () => {
  await withTempDir(async (dir) => {
    const rng = new Rng(8);
    const w = Array.from(randomTensor([6, 3], rng).data);
    const path = await writeModel(
      dir,
      "pad.onnx",
      model({
        nodes: [
          node("Pad", ["x", "pads"], ["padded"], { mode: { s: "reflect" } }, { name: "pad" }),
          node("MatMul", ["padded", "fc.weight"], ["h"], {}, { name: "fc" }),
          node("Add", ["h", "fc.bias"], ["y"]),
        ],
        inputs: [io("x", ["N", 4])],
        outputs: [io("y", ["N", 3])],
        inits: [
          i64("pads", [4], [0, 1, 0, 1]),
          f32("fc.weight", [6, 3], w),
          f32("fc.bias", [3], [0.1, 0, -0.1]),
        ],
        opset: 13,
      }),
    );
    const m = await openOnnxModel(path);
    assertEquals(m.layers.map((l) => [l.inFeatures, l.outFeatures]), [[6, 3]]);
    const note = m.notes.find((n) => n.startsWith('node "pad" (Pad): mode "reflect"'));
    assertEquals(note?.endsWith("it runs as frozen context instead"), true, m.notes.join("\n"));
    const feeds = { x: randomTensor([5, 4], rng) };
    const got = await runImported(m, feeds);
    const want = await runOriginal(path, feeds);
    assertEquals(maxDiff(got.y!, want.y!) <= 1e-6, true);
    const x = randomTensor([32, 4], rng).data as Float32Array;
    const y = randomTensor([32, 3], rng).data as Float32Array;
    const data = { rows: 32, width: 4, x, y: { kind: "targets" as const, data: y, width: 3 } };
    const train = (epochs: number) =>
      finetune(m, data, {
        config: defaultPeftConfig({ r: 2, loraAlpha: 4, targetModules: [m.layers[0]!.name] }),
        loss: "mse",
        epochs,
        batchSize: 32,
        lr: 0.05,
      });
    const first = await train(1);
    const trained = await train(20);
    assertEquals(trained.steps, 20);
    assertEquals(
      trained.lastLoss < first.lastLoss,
      true,
      `${first.lastLoss} → ${trained.lastLoss}`,
    );
    m.close();
  });
});
