/**
 * The examples keep working: the image example's library path (LeNet-5 from
 * `fixtures/examples/image/`, digits from the `mnist` package) on a few hundred digits and two
 * epochs, so CI checks it in seconds rather than the example's full run.
 *
 * @module
 */

import { assert, assertEquals, withTempDir } from "./_assert.ts";
import { imageExample } from "../examples/image.ts";

Deno.test("the image example adapts LeNet-5 to inverted digits and writes its folder", async () => {
  await withTempDir(async (dir) => {
    const r = await imageExample({ outDir: dir, trainRows: 2048, testRows: 256, epochs: 6 });
    assertEquals(r.titles, ["inverted digits", "original digits"]);
    assert(r.parity.pass, `parity failed: max relative error ${r.parity.maxRel}`);
    // The merged file computes what the served adapter computes.
    assertEquals(r.scores.merged, r.scores.adapted);
    const [base, adapted] = [r.scores.base[0]!, r.scores.adapted[0]!];
    assert(adapted > base + 0.1, `inverted digits: base ${base}, adapted ${adapted}`);
    for (
      const f of [
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "report.html",
        "merged.onnx",
        "merged.onnx.parity.json",
      ]
    ) {
      assert((await Deno.stat(`${dir}/${f}`)).size > 0, `${f} is empty`);
    }
    const summary = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`));
    assertEquals(summary.base_accuracy, base);
    assertEquals(summary.adapted_accuracy, adapted);
    assertEquals(summary.trainable_parameters, 8 * (256 + 120) + 8 * (120 + 84) + 8 * (84 + 10));
    assert(summary.train_seconds > 0, `train_seconds ${summary.train_seconds}`);
  });
});
