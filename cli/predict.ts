/**
 * `ffwd predict --model <file> [--adapter DIR] --data <rows> [--out FILE] [--json]`: runs a base
 * model, with or without an adapter, on rows from a JSONL (`{"x": [...]}`), CSV or safetensors
 * file, and writes one `{"y": [...]}` line per input row.
 *
 * ```sh
 * deno task ffwd predict --model base.safetensors --adapter runs/rot45 --data test.jsonl --out y.jsonl
 * ```
 *
 * The adapter runs unmerged through the same {@linkcode InferenceEngine} as `ffwd serve`, and an
 * engine row's output does not depend on the batch it ran in, so offline and served outputs are
 * bit-identical. `--out` is written atomically; without it (or with `--json`) the lines go to
 * stdout. Numbers are printed as the shortest decimals that read back to the same float32.
 *
 * @module
 */

import { InferenceEngine } from "../src/infer/engine.ts";
import { openModel } from "../src/models/open.ts";
import { loadInputs, shortestFloat32, writeJsonl } from "../src/data/files.ts";
import { servableWeights } from "./_adapter_weights.ts";
import { writeOut } from "./_errors.ts";
import { labelColumn, positiveInteger } from "./_numbers.ts";
import type { Program } from "./_program.ts";

/** What `ffwd predict` takes. */
export interface PredictCliOptions {
  readonly model: string;
  readonly block?: string;
  /** An adapter folder (PEFT or MLX-LM). */
  readonly adapter?: string;
  readonly data: string;
  /** CSV: the label column to leave out (name or 0-based index). */
  readonly labelColumn?: string | number;
  /** Rows per engine run. Default 64. */
  readonly batchSize?: number;
  readonly threads?: number;
}

/** Outputs of {@linkcode predictFile}. */
export interface Predictions {
  readonly rows: number;
  /** Output width. */
  readonly width: number;
  /** `[rows, width]`. */
  readonly y: Float32Array;
}

/**
 * Runs the model (and adapter) on every row of the data file.
 *
 * @example
 * ```ts ignore
 * const { rows, y } = await predictFile({ model: "base.safetensors", adapter: "runs/a", data: "x.jsonl" });
 * ```
 */
export async function predictFile(o: PredictCliOptions): Promise<Predictions> {
  const model = await openModel(o.model, { block: o.block });
  try {
    // One pass over a file: pre-packing the weights costs more at creation than it saves over
    // the batches of a typical file (8 × 4096×16384 F32, 64 rows: 12.6 s with it, 2.6 s without).
    const engine = await InferenceEngine.create(model, { threads: o.threads, prepack: false });
    try {
      const [din, dout] = engine.widths;
      const name = o.adapter === undefined ? null : "adapter";
      if (o.adapter !== undefined) {
        await engine.register("adapter", await servableWeights(o.adapter, model));
      }
      const { rows, x } = await loadInputs(o.data, { width: din, labelColumn: o.labelColumn });
      const y = new Float32Array(rows * dout);
      const batch = o.batchSize ?? 64;
      for (let r = 0; r < rows; r += batch) {
        const n = Math.min(batch, rows - r);
        const xb = x.subarray(r * din, (r + n) * din);
        const out = await engine.run({ dtype: "F32", shape: [n, din], data: xb }, name);
        y.set(out.data as Float32Array, r * dout);
      }
      return { rows, width: dout, y };
    } finally {
      await engine.close();
    }
  } finally {
    model.close();
  }
}

/**
 * Adds `predict` to the program.
 *
 * @example
 * ```ts
 * import { Command } from "@commander-js/extra-typings";
 * import { registerPredict } from "./predict.ts";
 * const program = new Command().option("--debug");
 * registerPredict(program);
 * ```
 */
export function registerPredict(program: Program): void {
  program
    .command("predict")
    .description("run a base model, with or without an adapter, on rows of a data file")
    .requiredOption("--model <file>", "base model (.safetensors, .onnx or TF.js model.json)")
    .option("--block <name>", "block of a multi-block file (model.layers.3.mlp)")
    .option("--adapter <dir>", "adapter folder (PEFT or MLX-LM), run unmerged")
    .requiredOption("--data <file>", 'input rows: .jsonl ({"x": [...]}), .csv or .safetensors')
    .option(
      "--label-column <col>",
      "CSV: a label column to leave out (name or index)",
      labelColumn,
    )
    .option("--out <file>", 'write {"y": [...]} lines here (atomically)')
    .option("--json", "print the lines on stdout (the default without --out)")
    .option("--batch-size <rows>", "rows per engine run", positiveInteger, 64)
    .option("--threads <n>", "onnxruntime threads (default: every core)", positiveInteger)
    .action(async (o) => {
      const { rows, width, y } = await predictFile(o);
      const lines = Array.from({ length: rows }, (_, i) => ({
        y: y.subarray(i * width, (i + 1) * width),
      }));
      if (o.out !== undefined) await writeJsonl(o.out, lines);
      if (o.json || o.out === undefined) {
        const text = lines.map((l) => JSON.stringify({ y: Array.from(l.y, shortestFloat32) }));
        writeOut(text.join("\n") + (rows ? "\n" : ""));
      } else {
        writeOut(`Wrote ${rows} predictions to ${o.out}\n`);
      }
    });
}
