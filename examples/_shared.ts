/**
 * What the examples share: one run of a task end to end (base scores, a LoRA fine-tune, the
 * adapter served by the engine, a merged ONNX export with its parity report, the merged file
 * scored again, `summary.json`), the scores, the printed table, and a report card of
 * predictions.
 *
 * Everything goes under `runs/examples/<name>/`: `adapter/` (PEFT files, metrics and the training
 * report), `report.html` (a copy of the training report), `merged.onnx` with its parity report `merged.onnx.parity.json`, and
 * `summary.json`.
 *
 * @module
 */

import {
  type Adapter,
  type BaseModel,
  type Dataset,
  engineWeights,
  exportFile,
  finetune,
  type FinetuneOptions,
  InferenceEngine,
  largestError,
  openModel,
  type PeftConfig,
  type Tensor,
  writeFileAtomic,
} from "../mod.ts";
import { countCorrect } from "../workflows/finetune.ts";
import { lineChart } from "../report/svg.ts";

/** The repository's root folder, with a trailing slash. */
export const ROOT: string = new URL("..", import.meta.url).pathname;

/** Scores a model's output (`[rows, …]`, logits) against a dataset's labels or targets. */
export type Score = (output: Tensor, data: Dataset) => number;

/** One example's task. */
export interface ExampleTask {
  /** The model file (ONNX) the adapter is trained on and merged into. */
  readonly model: string;
  /** Train and score on this value (the logits before a final Softmax or Sigmoid). */
  readonly output?: string;
  /** The shifted task's training data. */
  readonly train: Dataset;
  /** Held-out test sets by column title, the shifted task's first. */
  readonly tests: ReadonlyArray<readonly [string, Dataset]>;
  readonly config: PeftConfig;
  /** Loss and loop settings, as `finetune` takes them. */
  readonly training: Omit<FinetuneOptions, "config" | "outDir">;
  readonly score: Score;
  /** The output folder (`runs/examples/<name>`). */
  readonly outDir: string;
  /** When the example started (`performance.now()`), for `total_seconds`; default: now. */
  readonly startedAt?: number;
}

/** The scores of every test set, per model variant. */
export interface Scores {
  readonly base: number[];
  readonly adapted: number[];
  readonly merged: number[];
}

/** What {@linkcode runExample} measured; `summary.json` holds it with the task's own fields. */
export interface ExampleResult {
  /** The test sets' titles, in the order of the scores. */
  readonly titles: readonly string[];
  /** The output folder as printed, relative to the repository. */
  readonly shownDir: string;
  readonly scores: Scores;
  readonly trainableParameters: number;
  readonly baseParameters: number;
  readonly steps: number;
  readonly trainSeconds: number;
  readonly parity: { pass: boolean; maxRel: number };
  readonly summary: Record<string, unknown>;
}

/** Prints one line of progress. */
export function log(s: string): void {
  console.log(s);
}

/** `0.9123` as `91.23%`. */
export const pct = (v: number): string => `${(100 * v).toFixed(2)}%`;

/**
 * Fraction of rows whose arg-max is the label.
 *
 * @example
 * ```ts
 * import { accuracy } from "./_shared.ts";
 * import { strictEqual } from "node:assert/strict";
 * const out = { dtype: "F32" as const, shape: [2, 2], data: new Float32Array([0, 1, 1, 0]) };
 * const y = { kind: "labels" as const, data: new BigInt64Array([1n, 1n]) };
 * strictEqual(accuracy(out, { rows: 2, width: 0, x: new Float32Array(), y }), 0.5);
 * ```
 */
export function accuracy(output: Tensor, data: Dataset): number {
  if (data.y.kind !== "labels") throw new TypeError("Cannot score accuracy: the data has targets");
  const labels: Tensor = { dtype: "I64", shape: [data.rows], data: data.y.data };
  return countCorrect(output, labels) / data.rows;
}

/**
 * The mean of the true-positive and true-negative rates of a one-logit detector (logit > 0, a
 * probability over 0.5, detects), against 0/1 targets.
 *
 * @example
 * ```ts
 * import { balancedAccuracy } from "./_shared.ts";
 * import { strictEqual } from "node:assert/strict";
 * const out = { dtype: "F32" as const, shape: [4, 1], data: new Float32Array([3, -1, -2, -5]) };
 * const y = { kind: "targets" as const, width: 1, data: new Float32Array([1, 1, 0, 0]) };
 * strictEqual(balancedAccuracy(out, { rows: 4, width: 0, x: new Float32Array(), y }), 0.75);
 * ```
 */
export function balancedAccuracy(output: Tensor, data: Dataset): number {
  const z = output.data as Float32Array;
  const hit = [0, 0], count = [0, 0];
  for (let r = 0; r < data.rows; r++) {
    const c = data.y.data[r]! > 0.5 ? 1 : 0;
    count[c]!++;
    if ((z[r]! > 0 ? 1 : 0) === c) hit[c]!++;
  }
  return (hit[0]! / Math.max(1, count[0]!) + hit[1]! / Math.max(1, count[1]!)) / 2;
}

/** A dataset's inputs as the engine takes them: `x` `[rows, width]`, or its named inputs. */
function rowsOf(data: Dataset): Tensor | Record<string, Tensor> {
  if (!data.inputs) return { dtype: "F32", shape: [data.rows, data.width], data: data.x };
  const out: Record<string, Tensor> = {};
  for (const [name, t] of data.inputs) {
    out[name] = { dtype: t.dtype, shape: [data.rows, ...t.shape], data: t.data } as Tensor;
  }
  return out;
}

/** Scores every test set with one engine, the base (`null`) or an adapter. */
async function scoreAll(
  engine: InferenceEngine,
  task: ExampleTask,
  adapter: string | null,
): Promise<number[]> {
  const out: number[] = [];
  for (const [, data] of task.tests) {
    out.push(task.score(await engine.run(rowsOf(data), adapter), data));
  }
  return out;
}

/** Runs `f` with the model at `path` (ending at `output`) and an engine over it; closes both. */
export async function withEngine<T>(
  path: string,
  output: string | undefined,
  f: (engine: InferenceEngine, model: BaseModel) => Promise<T>,
): Promise<T> {
  const model = await openModel(path, { output });
  const engine = await InferenceEngine.create(model);
  try {
    return await f(engine, model);
  } finally {
    await engine.close();
    model.close();
  }
}

/**
 * Runs `task` end to end and writes its folder: base scores, the fine-tune, the adapter's scores
 * through the serving engine, the merged ONNX export with its parity report (the whole file, its
 * own outputs), the merged file's scores, and `summary.json` with `extra` merged in.
 */
export async function runExample(
  task: ExampleTask,
  extra: Record<string, unknown> = {},
): Promise<ExampleResult> {
  const t0 = task.startedAt ?? performance.now();
  const dir = shown(task.outDir);
  await Deno.mkdir(task.outDir, { recursive: true });
  const { base, adapted, trained, trainSeconds } = await trainAndScore(task);
  await Deno.copyFile(`${task.outDir}/adapter/report.html`, `${task.outDir}/report.html`);
  const parity = await exportMerged(task.model, trained.adapter, `${task.outDir}/merged.onnx`);
  const merged = await withEngine(
    `${task.outDir}/merged.onnx`,
    task.output,
    (engine) => scoreAll(engine, task, null),
  );
  const verdict = parity.pass ? "PASS" : "FAIL";
  log(
    `    ${dir}/merged.onnx: parity ${verdict} (max relative error ${
      parity.maxRel.toExponential(2)
    }); merged: ${fmtScores(task, merged)}`,
  );
  const result: ExampleResult = {
    titles: task.tests.map(([title]) => title),
    shownDir: dir,
    scores: { base, adapted, merged },
    trainableParameters: trained.trainableParams,
    baseParameters: trained.baseParams,
    steps: trained.steps,
    trainSeconds,
    parity,
    summary: {},
  };
  const summary = summaryOf(task, result, (performance.now() - t0) / 1000, extra);
  const bytes = new TextEncoder().encode(JSON.stringify(summary, null, 2) + "\n");
  await writeFileAtomic(`${task.outDir}/summary.json`, bytes);
  return { ...result, summary };
}

/** Base scores, the fine-tune into `<outDir>/adapter`, and the adapter's scores (served). */
async function trainAndScore(task: ExampleTask) {
  return await withEngine(task.model, task.output, async (engine, model) => {
    const base = await scoreAll(engine, task, null);
    log(`    base: ${fmtScores(task, base)}`);
    const start = performance.now();
    const trained = await finetune(model, task.train, {
      ...task.training,
      config: task.config,
      outDir: `${task.outDir}/adapter`,
    });
    const trainSeconds = (performance.now() - start) / 1000;
    await engine.register("adapted", engineWeights(trained.adapter, model));
    const adapted = await scoreAll(engine, task, "adapted");
    const size = trained.trainableParams.toLocaleString("en-US");
    log(
      `    LoRA: ${size} trainable parameters, ${trained.steps} steps in ${
        trainSeconds.toFixed(1)
      } s; adapted: ${fmtScores(task, adapted)}`,
    );
    return { base, adapted, trained, trainSeconds };
  });
}

/** `summary.json`: the headline numbers first (the shifted task's test set), then the details. */
function summaryOf(
  task: ExampleTask,
  r: ExampleResult,
  totalSeconds: number,
  extra: Record<string, unknown>,
): Record<string, unknown> {
  const { base, adapted, merged } = r.scores;
  return {
    base_accuracy: base[0],
    adapted_accuracy: adapted[0],
    merged_accuracy: merged[0],
    trainable_parameters: r.trainableParameters,
    base_parameters: r.baseParameters,
    train_seconds: round(r.trainSeconds),
    total_seconds: round(totalSeconds),
    test_sets: Object.fromEntries(
      r.titles.map((
        title,
        i,
      ) => [title, { base: base[i], adapted: adapted[i], merged: merged[i] }]),
    ),
    ...extra,
    adapter: {
      path: `${r.shownDir}/adapter`,
      rank: task.config.r,
      alpha: task.config.loraAlpha,
      targets: task.config.targetModules,
      steps: r.steps,
      ...task.training,
    },
    parity: {
      file: `${r.shownDir}/merged.onnx`,
      report: `${r.shownDir}/merged.onnx.parity.json`,
      pass: r.parity.pass,
      max_rel: r.parity.maxRel,
    },
  };
}

const round = (s: number) => Math.round(s * 1000) / 1000;

function fmtScores(task: ExampleTask, scores: readonly number[]): string {
  return task.tests.map(([title], i) => `${title} ${pct(scores[i]!)}`).join(", ");
}

/** Merges `adapter` into the whole file at `base` and writes `out` with its parity report beside it. */
export async function exportMerged(
  base: string,
  adapter: Adapter,
  out: string,
): Promise<{ pass: boolean; maxRel: number }> {
  const { report } = await exportFile(base, adapter, { out, rows: 64, seed: 0 });
  return { pass: report!.verdict === "pass", maxRel: largestError(report!) };
}

/**
 * Prints an example's table (one column per test set, one row per model variant), then one line:
 * `note`, the adapter's size and training time, the parity verdict and the output folder.
 */
export function printTable(result: ExampleResult, adapterRow: string, note = ""): void {
  const { scores } = result;
  const rows = [
    ["", ...result.titles],
    ["base (no adapter)", ...scores.base.map(pct)],
    [adapterRow, ...scores.adapted.map(pct)],
    ["merged ONNX file", ...scores.merged.map(pct)],
  ];
  printRows(rows);
  const size = result.trainableParameters.toLocaleString("en-US");
  const verdict = result.parity.pass ? "PASS" : "FAIL";
  console.log(
    `${note}${size} trainable parameters, trained in ${result.trainSeconds.toFixed(1)} s; ` +
      `merged ONNX parity: ${verdict}; everything is in ${result.shownDir}/`,
  );
}

/**
 * Prints rows as the demo does: a header, a rule, the first `left` columns left-aligned and the
 * others right-aligned.
 */
export function printRows(rows: readonly (readonly string[])[], left = 1): void {
  const widths = rows[0]!.map((_, j) => Math.max(...rows.map((r) => r[j]!.length)));
  const line = (r: readonly string[]) =>
    r.map((c, j) => (j < left ? c.padEnd(widths[j]!) : c.padStart(widths[j]!))).join("   ");
  console.log("\n" + line(rows[0]!).trimEnd());
  console.log(widths.map((w) => "─".repeat(w)).join("   "));
  for (const r of rows.slice(1)) console.log(line(r).trimEnd());
  console.log();
}

/**
 * A report card plotting actual against predicted values for each input `x`, in the training
 * report's markup and colours (Okabe–Ito blue and vermillion).
 *
 * @example
 * ```ts
 * import { predictionsCard } from "./_shared.ts";
 * import { ok } from "node:assert/strict";
 * ok(predictionsCard([0, 1], [0, 1], [0.1, 0.8]).includes("<svg"));
 * ```
 */
export function predictionsCard(
  xs: readonly number[],
  actual: readonly number[],
  predicted: readonly number[],
): string {
  const [blue, red] = ["#0072B2", "#D55E00"];
  const svg = lineChart([
    // a wide faint band under the predictions, which cover it when they are right
    {
      id: "actual",
      points: xs.map((x, i) => [x, actual[i]!]),
      color: blue,
      width: 12,
      opacity: 0.3,
    },
    {
      id: "predicted",
      points: xs.map((x, i) => [x, predicted[i]!]),
      color: red,
      width: 1.5,
      markers: true,
      pointTitle: (i) => `x = ${xs[i]}: predicted ${predicted[i]!.toFixed(4)}, actual ${actual[i]}`,
    },
  ], { label: "Actual against predicted", xLabel: "x", yLabel: "y", xPad: 0.1, yInclude: 0 });
  const key = (label: string, color: string, style: string, css: string) =>
    `<li><span class="swatch ${style}" style="${css}:${color}"></span>${label}</li>`;
  return `<section class="card"><div class="card-head"><div><h2>Actual against predicted</h2>` +
    `<p class="meta">the trained model's probability of y = 1 (the sigmoid of its logit), ` +
    `from the merged ONNX file</p></div><ul class="legend">` +
    `${key("actual", blue, "faint", "border-color")}${key("predicted", red, "dot", "background")}` +
    `</ul></div>\n${svg}\n</section>`;
}

/** A report (`report.html`) with `card` added after its charts, before its footer. */
export function withCard(report: string, card: string): string {
  const at = report.lastIndexOf(`<footer class="foot">`);
  if (at < 0) throw new SyntaxError("Cannot add a card to the report: it has no footer");
  return `${report.slice(0, at)}${card}\n${report.slice(at)}`;
}

/** Where an output folder is printed: relative to the repository when inside it. */
export const shown = (dir: string): string => dir.startsWith(ROOT) ? dir.slice(ROOT.length) : dir;
