/**
 * The demo's export step: merge the trained adapter into the ONNX base, write the merged model
 * and its parity report.
 *
 * @module
 */

import { loadAdapter } from "../adapters/adapter.ts";
import { exportAdapter } from "../workflows/export.ts";
import { openModel } from "../src/models/open.ts";

/** Exports and returns the verdict and the largest relative error of any compared pair. */
export async function exportDemo(
  baseOnnx: string,
  adapterDir: string,
  out: string,
): Promise<{ pass: boolean; maxRel: number }> {
  const model = await openModel(baseOnnx);
  try {
    const { report } = await exportAdapter(model, await loadAdapter(adapterDir), {
      out,
      rows: 64,
      seed: 0,
    });
    const pairs = report!.outputs.flatMap((o) => o.pairs);
    return { pass: report!.verdict === "pass", maxRel: Math.max(...pairs.map((p) => p.maxRel)) };
  } finally {
    model.close();
  }
}
