/**
 * Exports of an adapted base, each checked for parity and written all or nothing:
 *
 * - `onnx` / `merged`: the merged weights in ONNX. An ONNX base keeps its own graph with only the
 *   changed initializers replaced (dtypes kept); a safetensors or TF.js base becomes a clean
 *   opset-17 graph with a symbolic batch. `metadata_props` record the adapter (`ffwd.adapter`,
 *   `ffwd.adapter_config`) and the engine's parity check (`ffwd.parity`).
 * - `onnx` / `adapter-inputs`: the base plus the LoRA branches, A and B (and DoRA's magnitude) as
 *   graph inputs named by their PEFT keys, so any onnxruntime can swap adapters by feeding other
 *   tensors. Each layer's scale is baked into the graph as a constant (Gemm `alpha`) and listed in
 *   `ffwd.scales`; trained biases and `modules_to_save` tensors are baked into the base.
 * - `safetensors`: the base file with the merged tensors in its own keys and dtypes (bf16 stays
 *   bf16, rounded to nearest even), every other tensor copied byte for byte, metadata kept (plus
 *   `ffwd.adapter`). Streamed one tensor at a time: memory stays near the largest tensor.
 *
 * Every file goes to a staging folder beside the output first; the written file is loaded fresh
 * and checked (see `parity.ts`); only a passing export is renamed into place, with its parity
 * report `<out>.parity.json` beside it (and, for safetensors, the base's `config.json` and
 * tokenizer files, see `_side_files.ts`). A failure of any kind removes the staging folder: no
 * file is left behind.
 *
 * @module
 */

import { writeFileAtomic } from "../src/fs/atomic.ts";
import type { OnnxModel } from "../src/models/onnx/import.ts";
import { openModel } from "../src/models/open.ts";
import type { BaseModel } from "../src/models/model.ts";
import type { DType, Tensor } from "../src/tensor.ts";
import { type Adapter, matchAdapter } from "../adapters/adapter.ts";
import { type JsonValue, peftConfigToJson } from "../adapters/config.ts";
import { type AdapterInputs, loraHook } from "../src/lora/branch.ts";
import { mergeAdapter, type MergePlan, planMerge } from "./merge.ts";
import {
  adapterFeeds,
  type Check,
  compareRuns,
  makeProbe,
  ParityError,
  type ParityReport,
  parityReportName,
  type Probe,
  runModel,
  runOnnxFile,
  runUnmerged,
  storageTolerance,
  type Tolerance,
} from "./parity.ts";
import { graphOf, keepsGraph, writeGraphOnnx, writePatchedOnnx } from "./_export_onnx.ts";
import { stageSideFiles } from "./_side_files.ts";
import { reopened, writeMergedSafetensors } from "./_export_safetensors.ts";

/** The file an export writes; a safetensors export needs a safetensors base. */
export type ExportFormat = "onnx" | "safetensors";
/** What an ONNX export holds: merged weights, or the base with A and B as graph inputs. */
export type ExportMode = "merged" | "adapter-inputs";

/** Options of {@linkcode exportAdapter}. */
export interface ExportOptions {
  /** Path of the file to write; its parity report `<out>.parity.json` goes beside it. */
  readonly out: string;
  /** Probe inputs from a file (JSONL `{"x": [...]}`, CSV or safetensors); default seeded. */
  readonly probe?: string;
  /** Rows of seeded probe inputs (default 8). */
  readonly rows?: number;
  /** Seed of the probe inputs (default 0). */
  readonly seed?: number;
  /** Default: from the extension of `out` (`.safetensors`, else ONNX). */
  readonly format?: ExportFormat;
  /** Default `"merged"`, the only mode of a safetensors export. */
  readonly mode?: ExportMode;
  /** The block spec the model was opened with, to open the written safetensors file the same way. */
  readonly spec?: string;
  /** Run the parity check (default true); false skips it and writes no report (benchmarks only). */
  readonly parity?: boolean;
  /**
   * Most bytes of merged tensors a streamed safetensors merge keeps in memory for check (b),
   * the merged model in the engine (default 1 GiB); beyond it, (a) is compared with the file only.
   */
  readonly holdLimit?: number;
  /**
   * Relative tolerance of the checks against the unmerged model, instead of the storage dtype's
   * default (see `parity.ts`).
   */
  readonly tolerance?: number;
  /** Recorded in the report as `combine` (how several adapters became this one). */
  readonly combine?: JsonValue;
  /**
   * The adapters `adapter` was combined from (`combineAdapters`): each is matched against the model
   * first, so an adapter made for another model is named, not the combination.
   */
  readonly parts?: readonly Adapter[];
}

/** What {@linkcode exportAdapter} wrote. */
export interface ExportResult {
  /** Absolute paths of the files written: the model, its side files if any, the parity report. */
  readonly files: readonly string[];
  /** The parity report, or `null` when `parity: false` skipped the check. */
  readonly report: ParityReport | null;
  /** Path of the parity report (`<out>.parity.json`), or `null` when none was written. */
  readonly reportPath: string | null;
}

/**
 * Exports `adapter` on `model` as `opts.out`, checked for parity.
 *
 * @example
 * ```ts
 * import { exportAdapter } from "./export.ts";
 * import { strictEqual } from "node:assert/strict";
 * import { loadAdapter } from "../adapters/adapter.ts";
 * import { openSafetensorsModel } from "../src/models/blocks/safetensors_model.ts";
 * const model = await openSafetensorsModel("fixtures/peft/mlp_lora/base.safetensors");
 * const out = (await Deno.makeTempDir()) + "/merged.onnx";
 * const { report } = await exportAdapter(model, await loadAdapter("fixtures/peft/mlp_lora"), { out });
 * strictEqual(report!.verdict, "pass");
 * model.close();
 * ```
 */
export async function exportAdapter(
  model: BaseModel,
  adapter: Adapter,
  opts: ExportOptions,
): Promise<ExportResult> {
  const format = opts.format ?? (/\.safetensors$/i.test(opts.out) ? "safetensors" : "onnx");
  const mode = opts.mode ?? "merged";
  const where = `Cannot export adapter "${adapter.name}" to "${opts.out}"`;
  if (format === "safetensors" && (mode !== "merged" || model.format !== "safetensors")) {
    throw new TypeError(
      `${where}: safetensors exports hold merged weights of a safetensors base (the base is ${model.format}, mode ${mode}); use --format onnx`,
    );
  }
  for (const part of opts.parts ?? []) matchAdapter(part, model);
  const plan = planMerge(model, adapter);
  const probe = opts.parity === false
    ? null
    : await makeProbe(model, { file: opts.probe, rows: opts.rows, seed: opts.seed });
  const c: Export = {
    model,
    adapter,
    plan,
    opts,
    format,
    mode,
    probe,
    runs: probe ? { unmerged: await runUnmerged(model, plan, probe) } : {},
    notes: [],
    tolerance: opts.tolerance === undefined
      ? storageTolerance(mode === "merged" ? storageDtypes(model, plan) : ["F32"])
      : { relative: opts.tolerance, reason: "given by the caller" },
  };
  const { dir, name } = await outputFolder(opts.out, model.source, where);
  const stage = await Deno.makeTempDir({ dir, prefix: `.${name}.`, suffix: ".staging" });
  try {
    const path = `${stage}/${name}`;
    const files = format === "safetensors"
      ? await exportSafetensors(c, path)
      : mode === "merged"
      ? await exportOnnxMerged(c, path)
      : await exportOnnxAdapterInputs(c, path);
    if (format === "safetensors") {
      const from = model.source.slice(0, model.source.lastIndexOf("/") + 1) || ".";
      files.push(...await stageSideFiles(from, dir, stage));
    }
    let result: ParityReport | null = null;
    if (probe) {
      result = makeReport(c, compareRuns(c.runs, outputNames(c), c.tolerance.relative));
      if (result.verdict === "fail") throw new ParityError(result);
      const json = new TextEncoder().encode(`${JSON.stringify(result, null, 2)}\n`);
      await writeFileAtomic(`${stage}/${parityReportName(name)}`, json, { sync: false });
      files.push(parityReportName(name));
    }
    // Side files first, then the model, then the report: a reader never sees a model without data.
    files.sort((a, b) => order(a, name) - order(b, name));
    for (const f of files) await Deno.rename(`${stage}/${f}`, `${dir}/${f}`);
    if (!files.includes(`${name}.data`)) await Deno.remove(`${dir}/${name}.data`).catch(() => {});
    return {
      files: files.map((f) => `${dir}/${f}`),
      report: result,
      reportPath: result ? `${dir}/${parityReportName(name)}` : null,
    };
  } finally {
    await Deno.remove(stage, { recursive: true }).catch(() => {});
  }
}

/**
 * {@linkcode exportAdapter} of the model file at `base` (opened with `openModel`, closed after).
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { exportFile } from "./export.ts";
 * import { loadAdapter } from "../adapters/adapter.ts";
 * const out = (await Deno.makeTempDir()) + "/merged.onnx";
 * const adapter = await loadAdapter("fixtures/peft/mlp_lora");
 * const { report } = await exportFile("fixtures/peft/mlp_lora/base.safetensors", adapter, { out });
 * strictEqual(report!.verdict, "pass");
 * ```
 */
export async function exportFile(
  base: string,
  adapter: Adapter,
  opts: ExportOptions,
): Promise<ExportResult> {
  const model = await openModel(base);
  try {
    return await exportAdapter(model, adapter, opts);
  } finally {
    model.close();
  }
}

/** One export in progress: what it writes, and the runs and notes of its parity check. */
interface Export {
  readonly model: BaseModel;
  readonly adapter: Adapter;
  readonly plan: MergePlan;
  readonly opts: ExportOptions;
  readonly format: ExportFormat;
  readonly mode: ExportMode;
  readonly probe: Probe | null;
  readonly runs: Partial<Record<Check, Tensor[]>>;
  readonly notes: string[];
  readonly tolerance: Tolerance;
}

function outputNames(c: Export): string[] {
  return c.model.outputs.map((o) => o.name);
}

function makeReport(c: Export, outputs: ParityReport["outputs"]): ParityReport {
  const pass = outputs.every((o) => o.pairs.every((p) => p.pass));
  return {
    verdict: pass ? "pass" : "fail",
    model: c.model.source,
    adapter: c.adapter.name,
    output: c.opts.out,
    format: c.format,
    mode: c.mode,
    storage: c.mode === "merged" ? coarsest(storageDtypes(c.model, c.plan)) : "F32",
    tolerance: c.tolerance,
    probe: { source: c.probe!.source, rows: c.probe!.rows },
    outputs,
    notes: c.notes,
    ...(c.opts.combine !== undefined ? { combine: c.opts.combine } : {}),
  };
}

/** `metadata_props` of an ONNX export (and `ffwd.adapter` of a safetensors one). */
function metadata(c: Export): Record<string, string> {
  return {
    "ffwd.adapter": c.adapter.name,
    "ffwd.adapter_config": JSON.stringify(peftConfigToJson(c.adapter.config)),
    "ffwd.mode": c.mode,
    "ffwd.parity": c.probe ? `see ${parityReportName(basename(c.opts.out))}` : "not checked",
  };
}

async function exportSafetensors(c: Export, path: string): Promise<string[]> {
  const limit = c.probe ? c.opts.holdLimit ?? 2 ** 30 : 0;
  const held = await writeMergedSafetensors(path, c.model, c.plan, c.adapter.name, limit);
  if (!c.probe) return [basename(path)];
  if (held) c.runs.merged = await runModel(c.model, c.probe, { build: { overrides: held } });
  else {
    c.notes.push(
      `the merged tensors exceed the hold limit (${limit} bytes): the merged model was checked from the written file only`,
    );
  }
  c.runs.file = await reopened(path, c.model, c.opts.spec, c.probe);
  return [basename(path)];
}

/** Merged ONNX; the engine's check (unmerged vs merged) runs first and goes into the metadata. */
async function exportOnnxMerged(c: Export, path: string): Promise<string[]> {
  const merged = await mergeAdapter(c.model, c.adapter);
  const meta = metadata(c);
  if (c.probe) {
    c.runs.merged = await runModel(c.model, c.probe, { build: { overrides: merged.tensors } });
    const engine = compareRuns(c.runs, outputNames(c), c.tolerance.relative);
    meta["ffwd.parity"] = JSON.stringify(engine);
    const report = makeReport(c, engine);
    if (report.verdict === "fail") throw new ParityError(report);
  }
  const files = keepsGraph(c.model, c.notes)
    ? await writePatchedOnnx(path, c.model as OnnxModel, merged.tensors, meta)
    : await writeGraphOnnx(path, graphOf(c.model, { overrides: merged.tensors }, meta));
  if (c.probe) c.runs.file = await runOnnxFile(path, c.probe);
  return files;
}

/** The base plus LoRA branches with A and B as inputs; scales baked in and listed. */
async function exportOnnxAdapterInputs(c: Export, path: string): Promise<string[]> {
  const meta = metadata(c);
  meta["ffwd.scales"] = JSON.stringify(
    Object.fromEntries(c.plan.layers.map((l) => [l.layer.name, l.scale])),
  );
  const hook = loraHook(c.plan.layers, new Map<string, AdapterInputs>());
  const g = graphOf(c.model, { hook, overrides: c.plan.replaced }, meta);
  const files = await writeGraphOnnx(path, g);
  if (c.probe) c.runs.file = await runOnnxFile(path, c.probe, adapterFeeds(c.plan));
  return files;
}

function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

function order(file: string, name: string): number {
  return file === name ? 1 : file === parityReportName(name) ? 2 : 0;
}

/** The folder (absolute) and name of `out`; refuses to write over the base. */
async function outputFolder(
  out: string,
  source: string,
  where: string,
): Promise<{ dir: string; name: string }> {
  const cut = out.lastIndexOf("/");
  const name = out.slice(cut + 1);
  if (name === "" || name === "." || name === "..") {
    throw new TypeError(`${where}: not a file name`);
  }
  let dir: string;
  try {
    dir = await Deno.realPath(cut < 0 ? "." : out.slice(0, cut) || "/");
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`${where}: its folder does not exist`);
    }
    throw e;
  }
  const src = await Deno.realPath(source).catch(() => source);
  if (`${dir}/${name}` === src) throw new TypeError(`${where}: it is the base model itself`);
  return { dir, name };
}

/** The storage dtypes of every tensor the merge changes. */
function storageDtypes(model: BaseModel, plan: MergePlan): DType[] {
  const keys = new Set([...plan.deltas.keys(), ...plan.replaced.keys()]);
  return model.layers.filter((l) => keys.has(l.weightKey) || keys.has(l.biasKey ?? "")).map((l) =>
    l.dtype
  );
}

function coarsest(dtypes: readonly DType[]): DType {
  return (["BF16", "F16", "F32", "F64"] as const).find((d) => dtypes.includes(d)) ?? "F32";
}
