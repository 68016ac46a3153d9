/**
 * Parity checks of merges and exports: probe inputs run through (a) the adapted model unmerged
 * in ffwd's engine (the LoRA branch graph that training and the adapter-inputs export use),
 * (b) the base with the merged weights in the engine, and (c) the written file loaded fresh; the
 * outputs are compared pairwise and the result is the parity report, written beside the output and
 * named after it (`merged.onnx` → `merged.onnx.parity.json`; see {@linkcode parityReportName}).
 *
 * Errors are measured per output as the largest absolute difference and the same divided by the
 * largest magnitude of the reference output (an ∞-norm relative error, so outputs near zero do
 * not turn rounding into huge ratios).
 *
 * Tolerances: 1e-5 relative for float32 storage (the arithmetic differs only in summation order).
 * Rounding a merged weight to a half-precision storage dtype moves it by up to half a unit in the
 * last place: 2^-9 relative for bf16 (8 significant bits), 2^-11 for f16. Summed over a dot
 * product with independent rounding errors, an output moves by about 2^-9/√3 ≈ 1.1e-3 (bf16) of
 * its scale per layer; the tolerance is 8 half-units, 2^-6 ≈ 1.6e-2 for bf16 and 2^-8 ≈ 3.9e-3
 * for f16: a margin of ~14× for a few stacked layers and cancellation. It applies to the pairs
 * that involve the unmerged model; the merged model and the file hold the same rounded weights,
 * so their pair keeps 1e-5.
 *
 * @module
 */

import type { BaseModel } from "../src/models/model.ts";
import { Rng } from "../src/rng.ts";
import { allocData, type DType, type Tensor } from "../src/tensor.ts";
import { loadInputs } from "../src/data/files.ts";
import { modelFeeds, rowWidth, takesIntegers } from "../src/data/feeds.ts";
import type { JsonValue } from "../adapters/config.ts";

export { adapterFeeds, runModel, runOnnxFile, runUnmerged } from "./_parity_runs.ts";

/**
 * One run of a parity check: the adapter unmerged, the base with merged weights, or the written
 * file loaded fresh.
 */
export type Check = "unmerged" | "merged" | "file";

/** Probe inputs by model input name. */
export interface Probe {
  /** `seeded normal (seed 0)` or the file's path. */
  readonly source: string;
  readonly rows: number;
  readonly feeds: Readonly<Record<string, Tensor>>;
}

/** Options of {@linkcode makeProbe}. */
export interface ProbeOptions {
  /** Inputs from a file (JSONL `{"x": [...]}`, CSV or safetensors; see `loadInputs`). */
  readonly file?: string;
  /** Rows of seeded inputs where the batch is free (default 8). */
  readonly rows?: number;
  /** Seed of the random inputs (default 0). */
  readonly seed?: number;
}

/** A relative tolerance and the reason for it. */
export interface Tolerance {
  /** The largest relative error (`maxRel`) that passes. */
  readonly relative: number;
  /** Why that tolerance, one sentence (written to the report). */
  readonly reason: string;
}

/** One pair of runs compared on one output. */
export interface PairResult {
  /** The runs compared, reference first: `"unmerged vs merged"`, `"merged vs file"`, … */
  readonly pair: string;
  /** Largest absolute difference over the output's elements. */
  readonly maxAbs: number;
  /** `maxAbs` divided by the largest magnitude of the reference run's output. */
  readonly maxRel: number;
  /** The relative tolerance applied to this pair. */
  readonly tolerance: number;
  /** Whether `maxRel <= tolerance`. */
  readonly pass: boolean;
}

/** The parity report (`<output>.parity.json`). */
export interface ParityReport {
  /** `"pass"` when every pair of every output is within its tolerance. */
  readonly verdict: "pass" | "fail";
  /** Path of the base model's file. */
  readonly model: string;
  /** The adapter's `name`: its folder's name when loaded, `a+b` for a combination. */
  readonly adapter: string;
  /** Path of the exported file, as given in `out`. */
  readonly output: string;
  /** `format` as given, or told from the extension of `out`. */
  readonly format: "onnx" | "safetensors";
  /** What the export holds: merged weights, or the base with A and B as inputs. */
  readonly mode: "merged" | "adapter-inputs";
  /** Coarsest storage dtype of the merged weights. */
  readonly storage: DType;
  /** Tolerance of the pairs that involve the unmerged model (merged vs file keeps 1e-5). */
  readonly tolerance: Tolerance;
  /** Where the probe inputs came from (a file, or `seeded normal (seed 0)`) and their rows. */
  readonly probe: { readonly source: string; readonly rows: number };
  /** Per model output, the pairs of runs compared. */
  readonly outputs: readonly { readonly name: string; readonly pairs: readonly PairResult[] }[];
  /** What the export changed or could not check, one sentence each. */
  readonly notes: readonly string[];
  /** How several adapters were combined, when they were. */
  readonly combine?: JsonValue;
}

/**
 * The largest relative error of any pair the report compared (0 when it compared none).
 *
 * @example
 * ```ts ignore
 * const { report } = await exportAdapter(model, adapter, { out: "merged.onnx" });
 * console.log(largestError(report!)); // 2.4e-7
 * ```
 */
export function largestError(report: ParityReport): number {
  return Math.max(0, ...report.outputs.flatMap((o) => o.pairs.map((p) => p.maxRel)));
}

/**
 * The file name of the parity report of an output named `output` (a file name, no folder): the
 * output's name plus `.parity.json`, as `.data` is for its external weights, so that two exports
 * into one folder keep both reports. A sharded checkpoint is named after its shards
 * (`model.safetensors.index.json` → `model.safetensors.parity.json`).
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { parityReportName } from "./parity.ts";
 * strictEqual(parityReportName("merged.onnx"), "merged.onnx.parity.json");
 * strictEqual(parityReportName("m.safetensors.index.json"), "m.safetensors.parity.json");
 * ```
 */
export function parityReportName(output: string): string {
  return `${output.replace(/\.index\.json$/i, "")}.parity.json`;
}

/**
 * A failed parity check; `report` says which output and pair.
 *
 * @example
 * ```ts ignore
 * try {
 *   await exportAdapter(model, adapter, { out: "merged.onnx" });
 * } catch (e) {
 *   if (e instanceof ParityError) console.log(JSON.stringify(e.report));
 * }
 * ```
 */
export class ParityError extends Error {
  /**
   * Makes the error; its message lists the failing pairs.
   *
   * @param report The report of the failed check.
   */
  constructor(readonly report: ParityReport) {
    super(`Parity check failed: ${failures(report)}; no file was written`);
    this.name = "ParityError";
  }
}

const F32_TOLERANCE = 1e-5;

/**
 * The tolerance for merged weights stored in `dtypes` (the coarsest decides); see the module
 * documentation for the derivation.
 *
 * @example
 * ```ts
 * import { storageTolerance } from "./parity.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(storageTolerance(["F32", "BF16"]).relative, 2 ** -6);
 * strictEqual(storageTolerance(["F32"]).relative, 1e-5);
 * ```
 */
export function storageTolerance(dtypes: readonly DType[]): Tolerance {
  if (dtypes.includes("BF16")) {
    return {
      relative: 2 ** -6,
      reason:
        "bf16 storage: each merged weight is rounded by up to 2^-9 relative (8 significant bits); 2^-6 = 8 half-units allows for stacked layers and cancellation",
    };
  }
  if (dtypes.includes("F16")) {
    return {
      relative: 2 ** -8,
      reason:
        "f16 storage: each merged weight is rounded by up to 2^-11 relative (11 significant bits); 2^-8 = 8 half-units allows for stacked layers and cancellation",
    };
  }
  return {
    relative: F32_TOLERANCE,
    reason: "float32 storage: only the summation order differs",
  };
}

/**
 * Probe inputs for `model`: read from a file (`x` rows, or inputs by name), or seeded values with
 * free dimensions set to `rows` (the first) and 1 (any other): standard normal floats, and 0 or 1
 * for integer inputs (token ids and masks valid for any vocabulary).
 *
 * @example
 * ```ts
 * import { makeProbe } from "./parity.ts";
 * import { openTfjsModel } from "../src/models/tfjs.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * const probe = await makeProbe(await openTfjsModel("fixtures/tfjs/dense/model.json"), { rows: 4 });
 * deepStrictEqual(probe.feeds.fc1_input!.shape, [4, 8]);
 * strictEqual(probe.source, "seeded normal (seed 0)");
 * ```
 */
export async function makeProbe(model: BaseModel, opts: ProbeOptions = {}): Promise<Probe> {
  if (opts.file !== undefined) {
    const where = `Cannot probe "${model.source}" with "${opts.file}"`;
    const data = await loadInputs(opts.file, {
      width: model.inputs.length === 1 ? rowWidth(model.inputs[0]) : undefined,
      inputs: model.inputs,
    });
    const given: Record<string, Tensor> = data.inputs
      ? Object.fromEntries(
        [...data.inputs].map(([k, t]) => [k, { ...t, shape: [data.rows, ...t.shape] } as Tensor]),
      )
      : { x: { dtype: "F32", shape: [data.rows, data.width], data: data.x } };
    const feeds = modelFeeds(model.inputs, given, where);
    for (const input of model.inputs) {
      const b = input.shape[0];
      if (typeof b === "number" && b !== data.rows) {
        throw new RangeError(
          `${where}: the model takes exactly ${b} rows, the file has ${data.rows}`,
        );
      }
    }
    return { source: opts.file, rows: data.rows, feeds };
  }
  const seed = opts.seed ?? 0;
  const rows = opts.rows ?? 8;
  const rng = new Rng(seed);
  const feeds: Record<string, Tensor> = {};
  for (const input of model.inputs) {
    const shape = input.shape.map((d, i) => (typeof d === "number" ? d : i === 0 ? rows : 1));
    const n = shape.reduce((a, d) => a * d, 1);
    if (input.dtype === "F32") {
      feeds[input.name] = {
        dtype: "F32",
        shape,
        data: rng.fillNormal(new Float32Array(n)) as Float32Array,
      };
    } else if (takesIntegers(input.dtype)) {
      // Token ids and masks: 0 and 1 are valid for any vocabulary and any mask.
      const data = allocData(input.dtype, n);
      for (let i = 0; i < n; i++) {
        const v = rng.int(2);
        if (data instanceof BigInt64Array || data instanceof BigUint64Array) data[i] = BigInt(v);
        else (data as Int32Array)[i] = v;
      }
      feeds[input.name] = { dtype: input.dtype, shape, data } as Tensor;
    } else {
      throw new TypeError(
        `Cannot probe "${model.source}": input "${input.name}" is ${input.dtype}; give probe rows ` +
          "from a file",
      );
    }
  }
  const first = Object.values(feeds)[0];
  return { source: `seeded normal (seed ${seed})`, rows: first?.shape[0] ?? 0, feeds };
}

/**
 * Compares the runs that are present, pairwise, on every output. Pairs that involve the
 * unmerged run use `tolerance`; merged vs file uses 1e-5.
 *
 * @example
 * ```ts
 * import { compareRuns } from "./parity.ts";
 * const y = { dtype: "F32" as const, shape: [2], data: new Float32Array([1, 2]) };
 * import { deepStrictEqual } from "node:assert/strict";
 * const [out] = compareRuns({ unmerged: [y], merged: [y] }, ["y"], 1e-5);
 * deepStrictEqual(out!.pairs, [
 *   { pair: "unmerged vs merged", maxAbs: 0, maxRel: 0, tolerance: 1e-5, pass: true },
 * ]);
 * ```
 */
export function compareRuns(
  runs: Partial<Record<Check, readonly Tensor[]>>,
  names: readonly string[],
  tolerance: number,
): { name: string; pairs: PairResult[] }[] {
  const order: Check[] = ["unmerged", "merged", "file"];
  return names.map((name, i) => {
    const pairs: PairResult[] = [];
    for (let a = 0; a < order.length; a++) {
      for (let b = a + 1; b < order.length; b++) {
        const ref = runs[order[a]!]?.[i], got = runs[order[b]!]?.[i];
        if (!ref || !got) continue;
        const tol = order[a] === "unmerged" ? tolerance : F32_TOLERANCE;
        const { maxAbs, maxRel } = difference(got, ref);
        pairs.push({
          pair: `${order[a]} vs ${order[b]}`,
          maxAbs,
          maxRel,
          tolerance: tol,
          pass: maxRel <= tol,
        });
      }
    }
    return { name, pairs };
  });
}

function difference(got: Tensor, ref: Tensor): { maxAbs: number; maxRel: number } {
  const g = got.data as Float32Array, r = ref.data as Float32Array;
  if (g.length !== r.length) return { maxAbs: Infinity, maxRel: Infinity };
  let maxAbs = 0, scale = 0;
  for (let i = 0; i < r.length; i++) {
    const d = Math.abs(g[i]! - r[i]!);
    maxAbs = Number.isNaN(d) ? Infinity : Math.max(maxAbs, d);
    scale = Math.max(scale, Math.abs(r[i]!));
  }
  return { maxAbs, maxRel: maxAbs === 0 ? 0 : maxAbs / (scale || Number.MIN_VALUE) };
}

/**
 * The failing pairs of a report, one phrase each (`output "y": unmerged vs file 3.2e-2 > 1e-5`).
 *
 * @example
 * ```ts ignore
 * if (report.verdict === "fail") console.error(failures(report));
 * ```
 */
export function failures(report: ParityReport): string {
  const bad = report.outputs.flatMap((o) =>
    o.pairs.filter((p) => !p.pass).map((p) =>
      `output "${o.name}": ${p.pair} relative error ${p.maxRel.toExponential(2)} > ${p.tolerance}`
    )
  );
  return bad.join("; ") || "none";
}
