/**
 * Reading a training run's folder for the report: `metrics.jsonl` (required) and, when present,
 * `summary.json`, `adapter_config.json`, `ffwd_training.json` and `confusion.json` (see
 * `workflows/finetune.ts` for what a run writes and `confusion.ts` for the confusion format).
 *
 * Reading is forgiving, because a report is most wanted for a run that went wrong: a missing
 * optional file leaves its section out, and a bad line, a NaN or an Inf, or an unreadable
 * optional file is skipped and described in {@linkcode Run.notes} instead of failing.
 *
 * @module
 */

import { parsePeftConfig, type PeftConfig } from "../adapters/config.ts";
import { type Confusion, parseConfusion } from "./confusion.ts";

/** One training line of `metrics.jsonl`; `NaN` marks a value that is absent or not finite. */
export interface StepMetrics {
  readonly step: number;
  readonly loss: number;
  readonly lr: number;
  readonly gradNorm: number;
  readonly samplesPerS: number;
}

/** One eval line of `metrics.jsonl`; `NaN` marks a value that is absent or not finite. */
export interface EvalMetrics {
  readonly step: number;
  readonly epoch: number;
  readonly loss: number;
  readonly accuracy: number;
}

/** The lines of `metrics.jsonl`, by increasing step, and what was skipped. */
export interface Metrics {
  readonly steps: readonly StepMetrics[];
  readonly evals: readonly EvalMetrics[];
  readonly notes: readonly string[];
}

/** The fields of `summary.json` the report shows (absent when missing or not finite). */
export interface RunSummary {
  readonly steps?: number;
  readonly seconds?: number;
  readonly trainableParams?: number;
  readonly baseParams?: number;
  readonly stoppedEarly?: boolean;
  /** Whether a signal ended the run before its last step (`ffwd train --resume` continues it). */
  readonly interrupted?: boolean;
  /** The layers that got adapters, by name, when the run recorded them. */
  readonly adaptedLayers?: readonly string[];
}

/** Everything the report shows about one run. */
export interface Run {
  readonly dir: string;
  /** The folder's name. */
  readonly name: string;
  readonly metrics: Metrics;
  readonly summary: RunSummary | null;
  readonly config: PeftConfig | null;
  readonly training: Readonly<Record<string, unknown>> | null;
  readonly confusion: Confusion | null;
  /** The files that were read and shown, in order. */
  readonly files: readonly string[];
  /** What was skipped or could not be read, one sentence each. */
  readonly notes: readonly string[];
}

/**
 * Parses the text of a `metrics.jsonl`. Lines that are not JSON objects with a numeric `step`
 * are skipped, non-finite values (`null` as `JSON.stringify(NaN)` writes it, `NaN`, `Infinity`)
 * become `NaN`, and a step logged twice (a resumed run logs again the steps after its last
 * checkpoint) keeps its later line. Each kind of skip adds one note.
 *
 * @example
 * ```ts
 * import { parseMetrics } from "./run.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * const m = parseMetrics('{"step":1,"loss":2.3,"lr":0.001}\n{"step":2,"loss":NaN,"lr":0.001}\n');
 * strictEqual(m.steps.length, 2);
 * deepStrictEqual(m.notes, ["1 non-finite value (NaN or Inf) skipped: loss at step 2"]);
 * ```
 */
export function parseMetrics(text: string, source = "metrics.jsonl"): Metrics {
  const steps = new Map<number, StepMetrics>(), evals = new Map<number, EvalMetrics>();
  const bad: number[] = [], nonFinite: string[] = [];
  let repeated = 0;
  text.split("\n").forEach((raw, i) => {
    if (raw.trim() === "") return;
    const line = parseLine(raw);
    if (!line || !isNumber(line.step)) return void bad.push(i + 1);
    const step = line.step;
    const num = (key: string, required: boolean): number => {
      const v = line[key];
      if (isNumber(v)) return v;
      if (required || v !== undefined) nonFinite.push(`${key} at step ${step}`);
      return NaN;
    };
    if (line.eval === true) {
      if (evals.has(step)) repeated++;
      const epoch = isNumber(line.epoch) ? line.epoch : NaN;
      evals.set(step, { step, epoch, loss: num("loss", true), accuracy: num("accuracy", false) });
    } else {
      if (steps.has(step)) repeated++;
      steps.set(step, {
        step,
        loss: num("loss", true),
        lr: num("lr", true),
        gradNorm: num("grad_norm", false),
        samplesPerS: num("samples_per_s", false),
      });
    }
  });
  const notes: string[] = [];
  if (bad.length) {
    notes.push(
      `${
        plural(bad.length, "line")
      } of ${source} not a JSON object with a numeric "step", skipped: ${
        listed(bad.map((n) => `line ${n}`))
      }`,
    );
  }
  if (nonFinite.length) {
    notes.push(
      `${plural(nonFinite.length, "non-finite value")} (NaN or Inf) skipped: ${listed(nonFinite)}`,
    );
  }
  if (repeated) {
    notes.push(
      `${plural(repeated, "step")} logged more than once (a resumed run logs again the steps ` +
        `after its last checkpoint): the later lines are shown`,
    );
  }
  const byStep = <T extends { step: number }>(m: Map<number, T>) =>
    [...m.values()].sort((a, b) => a.step - b.step);
  return { steps: byStep(steps), evals: byStep(evals), notes };
}

/** One line as an object, accepting the bare `NaN` / `Infinity` that Python's json writes. */
function parseLine(raw: string): Record<string, unknown> | null {
  for (const text of [raw, raw.replace(/(?<=[:,[]\s*)(-?Infinity|NaN)(?=\s*[,}\]])/g, '"$1"')]) {
    try {
      const v = JSON.parse(text);
      return v !== null && typeof v === "object" && !Array.isArray(v) ? v : null;
    } catch { /* try the next form */ }
  }
  return null;
}

function isNumber(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** The first few items, then how many more. */
function listed(items: readonly string[], max = 5): string {
  const more = items.length - max;
  return items.slice(0, max).join(", ") + (more > 0 ? ` and ${more} more` : "");
}

/**
 * Reads the run in `dir`. A missing folder or `metrics.jsonl` is an error (`Deno.errors.NotFound`);
 * everything else is optional.
 *
 * @example
 * ```ts
 * import { readRun } from "./run.ts";
 * import { strictEqual } from "node:assert/strict";
 * const run = await readRun("fixtures/report_run");
 * strictEqual(run.metrics.steps.length, 300);
 * ```
 */
export async function readRun(dir: string): Promise<Run> {
  dir = dir.replace(/(?<=.)[/\\]+$/, "");
  const where = `Cannot read run "${dir}"`;
  try {
    if (!(await Deno.stat(dir)).isDirectory) throw new TypeError(`${where}: it is not a folder`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`${where}: no such folder`);
    }
    throw e;
  }
  const notes: string[] = [], files: string[] = [];
  const metricsText = await optionalText(`${dir}/metrics.jsonl`);
  if (metricsText === null) {
    throw new Deno.errors.NotFound(`${where}: "${dir}/metrics.jsonl" does not exist`);
  }
  files.push("metrics.jsonl");
  const metrics = parseMetrics(metricsText);
  const optional = async <T>(
    file: string,
    parse: (json: unknown, path: string) => T,
  ): Promise<T | null> => {
    const path = `${dir}/${file}`;
    try {
      const text = await optionalText(path);
      if (text === null) return null;
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (e) {
        throw new SyntaxError(`Cannot read "${path}": invalid JSON (${(e as Error).message})`);
      }
      const parsed = parse(json, path);
      files.push(file);
      return parsed;
    } catch (e) {
      notes.push(`${(e as Error).message}: not shown`);
      return null;
    }
  };
  const summary = await optional("summary.json", (json) => readSummary(json));
  const config = await optional("adapter_config.json", parsePeftConfig);
  const training = await optional("ffwd_training.json", (json, path) => {
    if (json === null || typeof json !== "object" || Array.isArray(json)) {
      throw new TypeError(`Cannot read "${path}": expected a JSON object`);
    }
    return json as Record<string, unknown>;
  });
  const confusion = await optional("confusion.json", parseConfusion);
  return {
    dir,
    name: (await Deno.realPath(dir)).split(/[/\\]/).pop() || dir,
    metrics,
    summary,
    config,
    training,
    confusion,
    files,
    notes: [...metrics.notes, ...notes],
  };
}

function readSummary(json: unknown): RunSummary {
  const s = (json ?? {}) as Record<string, unknown>;
  const n = (v: unknown) => (isNumber(v) ? v : undefined);
  return {
    steps: n(s.steps),
    seconds: n(s.seconds),
    trainableParams: n(s.trainable_params),
    baseParams: n(s.base_params),
    stoppedEarly: typeof s.stopped_early === "boolean" ? s.stopped_early : undefined,
    interrupted: typeof s.interrupted === "boolean" ? s.interrupted : undefined,
    adaptedLayers: Array.isArray(s.adapted_layers) &&
        s.adapted_layers.every((n): n is string => typeof n === "string")
      ? s.adapted_layers
      : undefined,
  };
}

/** The file's text, or null when it does not exist. */
async function optionalText(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new Error(`Cannot read "${path}": ${(e as Error).message}`, { cause: e });
  }
}
