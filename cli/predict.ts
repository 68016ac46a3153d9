/**
 * `ffwd predict --model <file> [--adapter DIR] --data <rows> [--out FILE] [--json] [--argmax |
 * --probs]`: runs a base model, with or without an adapter, on rows from a JSONL (`{"x": [...]}`,
 * or `{"inputs": {"input_ids": [...], ...}}` by the model's input names), CSV or safetensors file,
 * and writes one `{"y": ...}` line per input row, nested to the output's row shape (`[k]` numbers
 * for a `[rows, k]` output, `[[...32]]` for `[rows, 1, 32]`). `--argmax` writes the class instead
 * (`{"y": 3}`), `--probs` the softmax over the last axis (the sigmoid for a one-wide output).
 *
 * When the rows carry `y` (a JSONL `"y"`, a CSV `--label-column`, a safetensors `y` tensor), a
 * score line follows on stderr: the accuracy for integer labels, the mean squared error of the
 * printed values (the probabilities with `--probs`) for float targets; with `--json` that line is
 * JSON (`{"accuracy":0.985,"correct":1970,"rows":2000}`). Stdout holds the predictions alone, one
 * line per row, so it lines up with the data file.
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

import { Option } from "@commander-js/extra-typings";
import type { Dataset } from "../src/data/dataset.ts";
import type { InferenceEngine } from "../src/infer/engine.ts";
import type { DataInputs } from "../src/data/files.ts";
import type { OutputRows, Score } from "../src/infer/outputs.ts";
import { numel, type Tensor } from "../src/tensor.ts";
import { writeErr, writeOut } from "./_errors.ts";
import { labelColumn, positiveInteger } from "./_numbers.ts";
import type { Program } from "./_program.ts";

/** What `ffwd predict` takes. */
export interface PredictCliOptions {
  readonly model: string;
  readonly block?: string;
  /** ONNX: the value the model ends at instead of its first output. */
  readonly output?: string;
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
  /** Values per row of the output (the product of `shape`). */
  readonly width: number;
  /** The shape of one row of the output: `[k]` for a `[rows, k]` output. */
  readonly shape: readonly number[];
  /** `[rows, …shape]`, row-major (an integer output converted to float32). */
  readonly y: Float32Array;
  /** The data's labels or targets, when its rows carry `y` and they could be read. */
  readonly targets?: Dataset["y"];
  /** Why the rows' `y` could not be read (the predictions are made all the same). */
  readonly targetsError?: string;
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
  // Imported here, so that `ffwd --help` and `inspect` never load onnxruntime or TF.js.
  const [{ InferenceEngine }, { openModel }, files, { rowWidth }, { adapterWeights }] =
    await Promise.all([
      import("../src/infer/engine.ts"),
      import("../src/models/open.ts"),
      import("../src/data/files.ts"),
      import("../src/data/feeds.ts"),
      import("../adapters/weights.ts"),
    ]);
  const model = await openModel(o.model, { block: o.block, output: o.output });
  try {
    // One pass over a file: pre-packing the weights costs more at creation than it saves over
    // the batches of a typical file (8 × 4096×16384 F32, 64 rows: 12.6 s with it, 2.6 s without).
    const engine = await InferenceEngine.create(model, { threads: o.threads, prepack: false });
    try {
      const name = o.adapter === undefined ? null : "adapter";
      if (o.adapter !== undefined) {
        const where = `Cannot predict with adapter "${o.adapter}"`;
        await engine.register("adapter", await adapterWeights(o.adapter, model, { where }));
      }
      const only = engine.inputs.length === 1 ? engine.inputs[0] : undefined;
      const read = { width: rowWidth(only), labelColumn: o.labelColumn, inputs: engine.inputs };
      let data: DataInputs & { y?: Dataset["y"] };
      let targetsError: string | undefined;
      if (await carriesY(o.data, o.labelColumn)) {
        try {
          data = await files.loadDataset(o.data, read);
        } catch (e) {
          data = await files.loadInputs(o.data, read); // throws first if the inputs are wrong
          targetsError = (e as Error).message;
        }
      } else data = await files.loadInputs(o.data, read);
      const batch = o.batchSize ?? 64;
      let shape = outputRow(engine);
      let y = new Float32Array(0);
      for (let r = 0; r < data.rows; r += batch) {
        const n = Math.min(batch, data.rows - r);
        const out = await engine.run(rowsOf(data, r, n), name);
        if (r === 0) { // the output's symbolic dimensions are known once a batch ran
          shape = out.shape.slice(1);
          y = new Float32Array(data.rows * numel(shape));
        }
        const at = r * numel(shape);
        if (out.dtype === "F32") y.set(out.data as Float32Array, at);
        else y.set(Array.from(out.data as ArrayLike<number | bigint>, Number), at);
      }
      const width = numel(shape);
      return { rows: data.rows, width, shape, y, targets: data.y, targetsError };
    } finally {
      await engine.close();
    }
  } finally {
    model.close();
  }
}

/**
 * Whether the data's rows carry `y`: a CSV with a label column, a JSONL file whose first row has
 * `"y"`, a safetensors file with a `y` tensor. Only the start of the file is read.
 */
async function carriesY(path: string, labelColumn: string | number | undefined): Promise<boolean> {
  const ext = path.slice(path.lastIndexOf(".") + 1).toLowerCase();
  if (ext === "csv") return labelColumn !== undefined;
  if (ext === "safetensors") {
    const { inspectSafetensors } = await import("../src/io/safetensors.ts");
    return (await inspectSafetensors(path)).tensors.some((t) => t.name === "y");
  }
  if (ext !== "jsonl" && ext !== "ndjson") return false;
  const line = await firstLine(path);
  try {
    const row: unknown = JSON.parse(line);
    return typeof row === "object" && row !== null && "y" in row;
  } catch {
    return false; // the reader names the bad line
  }
}

/** The first non-blank line of a text file, reading no further than it. */
async function firstLine(path: string): Promise<string> {
  using file = await Deno.open(path);
  const text = new TextDecoder();
  const buf = new Uint8Array(1 << 16);
  let got = "";
  for (let n; (n = await file.read(buf)) !== null;) {
    got += text.decode(buf.subarray(0, n), { stream: true });
    const lines = got.split("\n");
    const found = lines.slice(0, -1).find((l) => l.trim());
    if (found !== undefined) return found;
    got = lines.at(-1)!;
  }
  return got + text.decode();
}

/**
 * What `ffwd predict` prints for `p`: the classes (`argmax`), the probabilities (`probs`) or the
 * output as it is, and the score of the data's `y` (for float targets, of the values before the
 * arg-max), or why there is none.
 */
export async function predictionRows(
  p: Predictions,
  o: { readonly argmax?: boolean; readonly probs?: boolean } = {},
): Promise<{ readonly out: OutputRows; readonly score?: Score; readonly noScore?: string }> {
  const { argmaxRows, probabilities, scoreRows } = await import("../src/infer/outputs.ts");
  const values = o.probs ? probabilities(p) : p;
  const out = o.argmax ? argmaxRows(p) : values;
  if (!p.targets) return { out, noScore: p.targetsError };
  try {
    return { out, score: scoreRows(p.targets.kind === "labels" ? p : values, p.targets) };
  } catch (e) {
    return { out, noScore: (e as Error).message };
  }
}

/** The score line: `accuracy 0.9850 (1970 of 2000 rows)`, `mse 0.0123 (2000 rows)`, or JSON. */
function scoreLine(score: Score, json: boolean | undefined): string {
  if (json) return JSON.stringify(score);
  return "accuracy" in score
    ? `accuracy ${score.accuracy.toFixed(4)} (${score.correct} of ${score.rows} rows)`
    : `mse ${score.mse.toPrecision(6)} (${score.rows} rows)`;
}

/** Rows `r … r+n` of the data: its named inputs, or `x` `[n, width]` (views, no copies). */
function rowsOf(
  data: DataInputs,
  r: number,
  n: number,
): Record<string, Tensor> {
  if (!data.inputs) {
    const x = data.x.subarray(r * data.width, (r + n) * data.width);
    return { x: { dtype: "F32", shape: [n, data.width], data: x } };
  }
  const out: Record<string, Tensor> = {};
  for (const [k, t] of data.inputs) {
    const per = numel(t.shape);
    const view = (t.data as unknown as { subarray(a: number, b: number): Tensor["data"] })
      .subarray(r * per, (r + n) * per);
    out[k] = { dtype: t.dtype, shape: [n, ...t.shape], data: view } as Tensor;
  }
  return out;
}

/** The output's row shape before any row ran (symbolic dimensions count 0). */
function outputRow(engine: InferenceEngine): number[] {
  return engine.output.shape.slice(1).map((d) => (typeof d === "number" ? d : 0));
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
    .option(
      "--output <name>",
      "end the model at this value (another output, or the logits a final Softmax reads)",
    )
    .option("--adapter <dir>", "adapter folder (PEFT or MLX-LM), run unmerged")
    .requiredOption(
      "--data <file>",
      'input rows: .jsonl ({"x": [...]} or {"inputs": {"<input>": [...]}}), .csv or .safetensors',
    )
    .option(
      "--label-column <col>",
      "CSV: a label column to leave out (name or index)",
      labelColumn,
    )
    .option(
      "--out <file>",
      'write {"y": ...} lines here, nested to the output\'s rows (atomically)',
    )
    .option("--json", "print the lines on stdout (the default without --out); the score as JSON")
    .addOption(
      new Option("--argmax", 'write each row\'s class ({"y": 3}; one-wide: logit > 0)')
        .conflicts("probs"),
    )
    .option("--probs", "write softmax probabilities over the last axis (one-wide: the sigmoid)")
    .option("--batch-size <rows>", "rows per engine run", positiveInteger, 64)
    .option("--threads <n>", "onnxruntime threads (default: every core)", positiveInteger)
    .action(async (o) => {
      const { rowValues } = await import("../src/infer/rows.ts");
      const { shortestFloat32, writeJsonl } = await import("../src/data/files.ts");
      const { out, score, noScore } = await predictionRows(await predictFile(o), o);
      const { rows, shape, y } = out;
      const t = { dtype: "F32" as const, shape: [rows, ...shape], data: y };
      const lines = rowValues(t, (v) => shortestFloat32(v as number)).map((v) => ({ y: v }));
      if (o.out !== undefined) await writeJsonl(o.out, lines);
      if (o.json || o.out === undefined) {
        const text = lines.map((l) => JSON.stringify(l));
        writeOut(text.join("\n") + (rows ? "\n" : ""));
      } else {
        writeOut(`Wrote ${rows} predictions to ${o.out}\n`);
      }
      if (score) writeErr(scoreLine(score, o.json));
      else if (noScore) writeErr(`warning: no score: ${noScore}`);
    });
}
