/**
 * `deno task example:tutorial`: the §5 network trained from scratch learns x → y, writes its
 * folder as the other examples do, and gives the same numbers every run.
 *
 * @module
 */

import { deepStrictEqual, ok } from "node:assert/strict";
import { runTutorial } from "../examples/tutorial.ts";
import { withTempDir } from "./_assert.ts";

Deno.test("the tutorial trains 1 → 2 → 1 from scratch, writes its folder, and repeats its numbers", async () => {
  await withTempDir(async (dir) => {
    const a = await runTutorial(`${dir}/a`);
    const b = await runTutorial(`${dir}/b`);
    ok(a.parity.pass, `parity failed: max relative error ${a.parity.maxRel}`);
    ok(a.firstLoss > 0.5 && a.finalLoss < 0.05, `loss ${a.firstLoss} → ${a.finalLoss}`);
    ok(a.predicted[0]! < 0.5 && a.predicted[1]! > 0.5, `predicted ${a.predicted}`);
    deepStrictEqual([b.firstLoss, b.finalLoss, b.predicted], [
      a.firstLoss,
      a.finalLoss,
      a.predicted,
    ]);
    const files = [
      "spec.json",
      "data.jsonl",
      "model.safetensors",
      "adapter/adapter_model.safetensors",
      "adapter/metrics.jsonl",
      "report.html",
      "merged.onnx",
      "merged.onnx.parity.json",
    ];
    for (const f of files) ok((await Deno.stat(`${dir}/a/${f}`)).size > 0, `${f} is empty`);
    ok((await Deno.readTextFile(`${dir}/a/report.html`)).includes("Actual against predicted"));
    const summary = JSON.parse(await Deno.readTextFile(`${dir}/a/summary.json`));
    deepStrictEqual(
      [
        summary.first_loss,
        summary.final_loss,
        summary.predictions.map((p: { predicted: number }) => p.predicted),
      ],
      [a.firstLoss, a.finalLoss, a.predicted],
    );
  });
});
