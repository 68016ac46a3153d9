/**
 * What `finetune()` checks before it compiles or writes anything (imported only by
 * `finetune.ts`): `--full` against targets, a run that trains nothing, the loop's numbers, the
 * output folder (and what an in-memory run cannot write), the data against the loss and the
 * model's output, the evaluation split, `saveBest` without evaluation, ranks no targeted layer
 * can use, a checkpoint that trains other tensors, and a loss on probabilities. Messages name
 * `ffwd train`'s flag (`finetune()` spells its options the same, in camelCase) or the data's row,
 * and what would work.
 *
 * @module
 */

import type { Dataset } from "../src/data/dataset.ts";
import type { Shape } from "../src/engine/graph.ts";
import type { LossName } from "../src/lora/adapted.ts";
import type { LayerAdapter } from "../src/lora/branch.ts";
import type { BaseModel } from "../src/models/model.ts";
import type { TrainerState } from "../src/train/trainer.ts";
import type { ResolvedTrainOptions } from "./train_options.ts";
import { isNoTargets } from "../adapters/targets.ts";

/**
 * `full` trains every linear layer whole, with no adapter: targets (other than `none`) contradict
 * it.
 */
export function checkFull(o: ResolvedTrainOptions): void {
  const t = o.config.targetModules;
  if (!o.full || isNoTargets(t)) return;
  const shown = t === null ? "null" : typeof t === "string" ? `/${t}/` : t.join(",");
  throw new TypeError(
    `Cannot train with --full and --targets ${shown}: --full trains every linear layer whole, ` +
      "with no adapter; leave out --targets, or leave out --full to train adapters",
  );
}

/**
 * A run trains something: with no adapter (`--targets none`), layers trained whole
 * (`--modules-to-save`, `--full`) or biases (`--bias all`) must be.
 */
export function checkTrainsSomething(
  adapters: readonly LayerAdapter[],
  trained: ReadonlyMap<string, unknown>,
  layers: readonly string[],
): void {
  if (adapters.length > 0 || trained.size > 0) return;
  throw new RangeError(
    `Cannot train: --targets none puts no adapter on any of the ${layers.length} linear layers ` +
      `(${layers.slice(0, 4).join(", ")}${layers.length > 4 ? ", …" : ""}), and nothing else ` +
      "trains; add --full to train every layer whole, --modules-to-save NAMES to train some, or " +
      "give --targets to train adapters",
  );
}

/** `batchSize` → `--batch-size`. */
const flag = (option: string) => `--${option.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/** The loop's counts and rates: what commander and the config file's schema check for the CLI. */
export function checkNumbers(o: ResolvedTrainOptions): void {
  const rules: [keyof ResolvedTrainOptions, string, (n: number) => boolean][] = [
    ["epochs", "an integer >= 1", (n) => Number.isInteger(n) && n >= 1],
    ["batchSize", "an integer >= 1", (n) => Number.isInteger(n) && n >= 1],
    ["maxSteps", "an integer >= 1", (n) => Number.isInteger(n) && n >= 1],
    ["gradAccum", "an integer >= 1", (n) => Number.isInteger(n) && n >= 1],
    ["checkpointEvery", "an integer >= 1", (n) => Number.isInteger(n) && n >= 1],
    ["threads", "an integer >= 1", (n) => Number.isInteger(n) && n >= 1],
    ["warmupSteps", "an integer >= 0", (n) => Number.isInteger(n) && n >= 0],
    ["lr", "a number >= 0", (n) => Number.isFinite(n) && n >= 0],
    ["clipNorm", "a number > 0", (n) => Number.isFinite(n) && n > 0],
    ["evalSplit", "a number in [0, 1)", (n) => n >= 0 && n < 1],
  ];
  for (const [option, expected, ok] of rules) {
    const v = o[option];
    if (v !== undefined && (typeof v !== "number" || !ok(v))) {
      throw new RangeError(`Cannot train with ${flag(option)} ${String(v)}: expected ${expected}`);
    }
  }
}

/** The output folder may exist, as a folder: a file there (or above it) is an error now. */
export async function checkOutDir(outDir: string): Promise<void> {
  for (let path = outDir.replace(/(.)\/+$/, "$1"); path; path = path.replace(/\/?[^/]*$/, "")) {
    try {
      if ((await Deno.stat(path)).isDirectory) return;
      const what = path === outDir ? "it is a file" : `"${path}" is a file`;
      throw new TypeError(
        `Cannot write the run to "${outDir}": ${what}; --out takes a folder (new or existing)`,
      );
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory)) throw e;
    }
  }
}

/** Checkpoints and the report are files: a run without an output folder cannot write them. */
export function checkInMemory(o: ResolvedTrainOptions): void {
  if (o.outDir === "") {
    throw new TypeError(
      'Cannot write the run to "": outDir is empty; give a folder, or leave it out to train ' +
        "in memory",
    );
  }
  if (o.outDir !== undefined) return;
  const asked = [
    ...(o.checkpointEvery !== undefined
      ? [`checkpoints (--checkpoint-every ${o.checkpointEvery})`]
      : []),
    ...(o.report ? ["the report"] : []),
  ];
  if (asked.length === 0) return;
  throw new TypeError(
    `Cannot write ${asked.join(" or ")} without an output folder: pass outDir, or set "out" in ` +
      "the training config",
  );
}

/**
 * `data` checked against the loss and the model's output `shape` (`[batch, ...]`), named
 * `source` in messages. Cross-entropy takes one-hot targets as the class labels they encode.
 */
export function fitData(data: Dataset, loss: LossName, shape: Shape, source: string): Dataset {
  const where = `Cannot train on ${source} with --loss ${loss}`;
  const dims = shape.slice(1);
  const last = shape.at(-1);
  const size = {
    classes: typeof last === "number" ? last : undefined,
    perRow: dims.every((d) => typeof d === "number")
      ? (dims as number[]).reduce((a, b) => a * b, 1)
      : undefined,
    dims,
  };
  if (loss === "cross_entropy") return classLabels(data, size.classes, where);
  checkTargets(data, loss, size, where);
  return data;
}

const outputs = (n: number) => `the model has ${n} output${n === 1 ? "" : "s"}`;

/** Labels within the model's classes; one-hot rows become the labels they encode. */
function classLabels(data: Dataset, classes: number | undefined, where: string): Dataset {
  const y = data.y;
  if (y.kind === "labels") {
    const bad = classes === undefined
      ? -1
      : y.data.findIndex((v) => v < 0n || v >= BigInt(classes));
    if (bad >= 0) {
      throw new RangeError(
        `${where}: row ${bad + 1} has label ${y.data[bad]}, and ${outputs(classes!)} ` +
          `(labels 0 to ${classes! - 1})`,
      );
    }
    return data;
  }
  if (classes !== undefined && y.width !== classes) {
    throw new TypeError(
      `${where}: "y" has ${y.width} values a row, and ${outputs(classes)}; give each row's ` +
        `class as an integer label ("y": ${classes - 1} for the last)`,
    );
  }
  const labels = new BigInt64Array(data.rows);
  for (let r = 0; r < data.rows; r++) {
    const row = y.data.subarray(r * y.width, (r + 1) * y.width);
    const hot = row.indexOf(1);
    if (hot < 0 || row.some((v, j) => v !== 0 && j !== hot)) {
      const best = row.reduce((b, v, j) => (v > row[b]! ? j : b), 0);
      throw new TypeError(
        `${where}: row ${r + 1}'s "y" [${shortList(row)}] is not one-hot, and cross_entropy ` +
          `takes one class a row: give it as an integer label ("y": ${best}) or a one-hot row; ` +
          "for real-valued targets use --loss mse",
      );
    }
    labels[r] = BigInt(hot);
  }
  return { ...data, y: { kind: "labels", data: labels, classes: y.width } };
}

/** mse and bce: float targets of the output's size a row (bce: in [0, 1]). */
function checkTargets(
  data: Dataset,
  loss: LossName,
  size: { classes?: number; perRow?: number; dims: Shape },
  where: string,
): void {
  const y = data.y;
  const { perRow, classes, dims } = size;
  if (y.kind === "labels") {
    throw new TypeError(
      `${where}: "y" holds class labels (row 1 has "y": ${y.data[0]}), and ${loss} takes ` +
        `${perRow ?? "the output's"} target values a row ("y": [...]); for class labels use ` +
        "--loss cross_entropy",
    );
  }
  if (perRow !== undefined && y.width !== perRow) {
    const shape = perRow !== classes ? ` (the output is [${dims.join(", ")}] a row)` : "";
    throw new TypeError(
      `${where}: "y" has ${y.width} values a row, and ${outputs(perRow)}; give ${perRow} ` +
        `target values a row${shape}`,
    );
  }
  const bad = loss === "bce" ? y.data.findIndex((v) => !(v >= 0 && v <= 1)) : -1;
  if (bad >= 0) {
    throw new RangeError(
      `${where}: row ${Math.floor(bad / y.width) + 1} has target ${y.data[bad]}, and bce takes ` +
        "targets in [0, 1] (probabilities of the positive class)",
    );
  }
}

function shortList(row: Float32Array): string {
  const shown = [...row.subarray(0, 6)].map((v) => String(Math.round(v * 1e4) / 1e4));
  return row.length > 6 ? `${shown.join(", ")}, …` : shown.join(", ");
}

/** Both sides of the split have rows; an evaluation set has rows. */
export function checkSplit(
  o: ResolvedTrainOptions,
  rows: number,
  sets: { data: Dataset; evalData?: Dataset },
  source: string,
): void {
  const split = !o.evalData && !o.evalFile && o.evalSplit;
  if (split && sets.data.rows === 0) {
    throw new RangeError(
      `Cannot train: --eval-split ${o.evalSplit} leaves none of the ${rows} rows of ${source} ` +
        `to train on; hold out a smaller fraction`,
    );
  }
  if (split && sets.evalData?.rows === 0) {
    throw new RangeError(
      `Cannot train: --eval-split ${o.evalSplit} holds out none of the ${rows} rows of ` +
        `${source}; hold out ${atLeastOneRow(rows)} or more`,
    );
  }
  if (sets.data.rows === 0) throw new RangeError(`Cannot train: ${source} has no rows`);
  if (sets.evalData?.rows === 0) {
    throw new RangeError(`Cannot evaluate: ${o.evalFile ?? "the evaluation data"} has no rows`);
  }
}

/** `saveBest` compares evaluations: a run without evaluation data has none. */
export function checkSaveBest(saveBest: boolean | undefined, evalData: Dataset | undefined): void {
  if (!saveBest || evalData) return;
  throw new TypeError(
    "Cannot train with --save-best: it keeps the adapter of the evaluation with the lowest loss, " +
      "and the run has no evaluation data; give --eval or --eval-split",
  );
}

/** A round fraction of `rows` that rounds to at least one row (as `splitDataset` rounds). */
function atLeastOneRow(rows: number): number {
  const min = 0.5 / rows;
  const unit = 10 ** Math.floor(Math.log10(min));
  return Number((Math.ceil(min / unit) * unit).toPrecision(1));
}

/**
 * A rank above min(in, out) adds parameters and memory, not expressiveness. Above it on some
 * layers is advice (PEFT allows it); on every targeted layer the run is refused.
 */
export function checkRanks(
  adapters: readonly LayerAdapter[],
  advice: readonly string[],
  onWarning?: (message: string) => void,
): void {
  const room = (a: LayerAdapter) => Math.min(a.layer.inFeatures, a.layer.outFeatures);
  if (adapters.length === 0 || adapters.some((a) => a.rank <= room(a))) {
    for (const message of advice) onWarning?.(message);
    return;
  }
  const ranks = new Set(adapters.map((a) => a.rank));
  const rank = ranks.size === 1 ? `--rank ${adapters[0]!.rank}` : "these ranks";
  const most = Math.max(...adapters.map(room));
  const shown = adapters.slice(0, 4).map((a) =>
    ranks.size === 1 ? `${a.layer.name}: ${room(a)}` : `${a.layer.name}: ${a.rank} > ${room(a)}`
  );
  const more = adapters.length > 4 ? `, and ${adapters.length - 4} more` : "";
  throw new RangeError(
    `Cannot train with ${rank}: above min(in, out) of every targeted layer ` +
      `(${shown.join(", ")}${more}), the extra rank adds parameters and memory, not ` +
      `expressiveness; use --rank ${most} or less`,
  );
}

/** A checkpoint resumes only the run that wrote it: the same tensors, of the same sizes. */
export function checkResume(
  state: TrainerState,
  params: ReadonlyMap<string, Float32Array>,
  dir: string,
): void {
  const differ = (what: string) =>
    new TypeError(
      `Cannot resume from "${dir}": ${what}; resume with the options of the run that wrote it ` +
        `(ffwd train --resume ${dir} alone reads them)`,
    );
  for (const [key, p] of params) {
    const saved = state.params.get(key);
    if (!saved) throw differ(`its checkpoint has no "${key}"`);
    if (saved.length !== p.length) {
      throw differ(`its checkpoint has ${saved.length} values for "${key}", this run ${p.length}`);
    }
  }
  for (const key of state.params.keys()) {
    if (!params.has(key)) throw differ(`its checkpoint trains "${key}", this run does not`);
  }
}

/**
 * Cross-entropy and binary cross-entropy expect logits: on an output that is already a Softmax or
 * a Sigmoid they train silently wrong (the gradient vanishes as probabilities saturate). A
 * LogSoftmax output is fine for cross-entropy (log-softmax is idempotent).
 */
export function refuseProbabilities(model: BaseModel, loss: string): void {
  const act = model.finalActivation;
  if (!act || (loss !== "cross_entropy" && loss !== "bce")) return;
  if (act.op === "LogSoftmax" && loss === "cross_entropy") return;
  if (model.format === "safetensors") {
    throw new TypeError(
      `Cannot fine-tune "${model.source}" with ${loss}: its block spec applies ` +
        `${act.op.toLowerCase()} to the output of its last layer "${act.input}", and ${loss} ` +
        `expects logits; remove that layer's "activation" from the spec`,
    );
  }
  throw new TypeError(
    `Cannot fine-tune "${model.source}" with ${loss}: its output "${model.outputs[0]?.name}" is ` +
      `already a ${act.op} of "${act.input}", and ${loss} expects logits; train on the logits ` +
      `with --output ${act.input} (library: openModel(path, { output: "${act.input}" }))`,
  );
}
