/**
 * Merging a PEFT adapter into a whole safetensors checkpoint: every weight the adapter targets,
 * in every block, attention included, found by its key alone (no block template, no model code),
 * each in its own orientation (GPT-2's `Conv1D` `[in, out]` included) with PEFT's formulas
 * (`merge.ts`: LoRA, rsLoRA's scale, DoRA's norm). Sharded checkpoints
 * (`model-0000N-of-0000M.safetensors` + `.index.json`) are merged shard by shard into the same
 * layout.
 *
 * Every other tensor, the header and its metadata stay byte-identical: a merged tensor keeps its
 * dtype (F16/BF16 rounded to nearest even) and shape, so each file keeps its header and offsets
 * (`_checkpoint_write.ts`). Memory stays near the largest merged tensor.
 *
 * The check needs no model code (`_checkpoint_check.ts`): after writing, both files are read back;
 * every unchanged tensor must be byte-identical, and seeded rows of every merged tensor must match
 * `W + scale·B·A` computed independently in float64. Its report, `<out>.parity.json`, lists the
 * worst relative error of each merged tensor. The files go to a staging folder beside the output
 * and are renamed into place (the base's `config.json` and tokenizer files first, then the
 * shards, the index last) only when the check passes; any failure removes the staging folder,
 * leaving nothing behind.
 *
 * @module
 */

import type { Adapter } from "../adapters/adapter.ts";
import type { JsonValue } from "../adapters/config.ts";
import { writeFileAtomic } from "../src/fs/atomic.ts";
import { Rng } from "../src/rng.ts";
import type { DType } from "../src/tensor.ts";
import { parityReportName, type Tolerance } from "./parity.ts";
import { stageSideFiles } from "./_side_files.ts";
import {
  type Checkpoint,
  isCheckpoint as isCheckpointPath,
  openCheckpoint,
  outputFiles,
} from "./_checkpoint_files.ts";
import { planCheckpoint } from "./_checkpoint_plan.ts";
import { CheckpointWriter } from "./_checkpoint_write.ts";
import type { MergePlan } from "./merge.ts";
import {
  checkShard,
  compareBuffers,
  type TensorCheck,
  weightTolerance,
} from "./_checkpoint_check.ts";

export type { TensorCheck } from "./_checkpoint_check.ts";

/**
 * Intra-op threads of the merge's onnxruntime sessions. The merge is memory-bound, and the copy of
 * unchanged bytes, the writes and the checks run on other threads meanwhile, so more intra-op
 * threads would compete with them for the cores and memory bandwidth rather than finish sooner.
 */
const THREADS = 1;

/**
 * Whether `path` names a safetensors checkpoint {@linkcode mergeCheckpoint} opens: a
 * `.safetensors` or `.index.json` file, or a folder holding `model.safetensors[.index.json]`.
 *
 * @example
 * ```ts
 * import { ok } from "node:assert/strict";
 * import { isCheckpoint } from "./merge_checkpoint.ts";
 * ok(await isCheckpoint("fixtures/checkpoints/llama_sharded"));
 * ok(!(await isCheckpoint("fixtures/mnist/base.onnx")));
 * ```
 */
export function isCheckpoint(path: string): Promise<boolean> {
  return isCheckpointPath(path);
}

/** Options of {@linkcode mergeCheckpoint}. */
export interface CheckpointMergeOptions {
  /**
   * Where to write: a `.safetensors` file (single-file checkpoint), a `.index.json` (sharded;
   * the shards keep their names, beside it) or an existing folder (every file keeps its name).
   * The parity report goes into the same folder, named after the output (a folder: after the
   * checkpoint's main file): `merged.safetensors.parity.json`.
   */
  readonly out: string;
  /** Rows checked per merged tensor (default 8). */
  readonly rows?: number;
  /** Seed of the rows checked (default 0). */
  readonly seed?: number;
  /** Flush the files to disk before they are renamed into place (default true). */
  readonly sync?: boolean;
  /** Recorded in the report as `combine` (how several adapters became this one). */
  readonly combine?: JsonValue;
  /**
   * The adapters `adapter` was combined from (`combineAdapters`): each is matched against the model
   * first, so an adapter made for another model is named, not the combination.
   */
  readonly parts?: readonly Adapter[];
}

/** The parity report of a checkpoint merge (`<out>.parity.json`). */
export interface CheckpointReport {
  /** `"pass"` when every merged tensor is within tolerance and every other one is identical. */
  readonly verdict: "pass" | "fail";
  /** The checkpoint as given. */
  readonly model: string;
  /** The adapter's name (its folder's name). */
  readonly adapter: string;
  /** The output as given. */
  readonly output: string;
  /** Names of the files written, beside the report: shards first, then the index. */
  readonly files: readonly string[];
  /** Always safetensors: a checkpoint merge writes the checkpoint's own format. */
  readonly format: "safetensors";
  /** Always merged weights. */
  readonly mode: "merged";
  /** Coarsest storage dtype of the merged tensors. */
  readonly storage: DType;
  /** How the merged tensors were checked, and the tolerance of each storage dtype. */
  readonly check: {
    readonly reference: "float64";
    readonly rows: number;
    readonly seed: number;
    readonly tolerances: Readonly<Record<string, Tolerance>>;
  };
  /** Every merged tensor, with its worst relative error over the rows checked. */
  readonly tensors: readonly TensorCheck[];
  /** The tensors the merge did not change, compared byte for byte with the checkpoint's. */
  readonly unchanged: {
    readonly tensors: number;
    readonly bytes: number;
    readonly identical: boolean;
    /** Keys of those that differ (`"<file>: (header)"` for a header). */
    readonly differing: readonly string[];
  };
  /** What the merge decided that a reader should know, one sentence each. */
  readonly notes: readonly string[];
  /** How several adapters were combined, when they were. */
  readonly combine?: JsonValue;
}

/** What {@linkcode mergeCheckpoint} wrote. */
export interface CheckpointMergeResult {
  /**
   * Absolute paths: the base's `config.json` and tokenizer files the output's folder lacked, the
   * shards, the index (if any), the parity report.
   */
  readonly files: readonly string[];
  /** The parity report, as written. */
  readonly report: CheckpointReport;
  /** Absolute path of the parity report (`<out>.parity.json`). */
  readonly reportPath: string;
}

/**
 * A failed check of a checkpoint merge; `report` says which tensors. Nothing was written.
 *
 * @example
 * ```ts ignore
 * try {
 *   await mergeCheckpoint("model.safetensors", adapter, { out: "merged.safetensors" });
 * } catch (e) {
 *   if (e instanceof CheckpointCheckError) console.log(JSON.stringify(e.report));
 * }
 * ```
 */
export class CheckpointCheckError extends Error {
  /**
   * Makes the error; its message names the failing tensors.
   *
   * @param report The report of the failed check.
   */
  constructor(readonly report: CheckpointReport) {
    const bad = report.tensors.filter((t) => !t.pass).map((t) =>
      `"${t.key}" relative error ${t.maxRel.toExponential(2)} > ${t.tolerance}`
    );
    const differing = report.unchanged.differing.map((k) => `"${k}" is not byte-identical`);
    super(
      `Check of the merged checkpoint failed: ${
        [...bad, ...differing].join("; ")
      }; no file was written`,
    );
    this.name = "CheckpointCheckError";
  }
}

/**
 * Merges `adapter` into the safetensors checkpoint at `model` (a file, a `.index.json`, or a
 * folder holding `model.safetensors[.index.json]`) and writes it to `opts.out`, checked.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { mergeCheckpoint } from "./merge_checkpoint.ts";
 * import { loadAdapter } from "../adapters/adapter.ts";
 * const adapter = await loadAdapter("fixtures/checkpoints/llama/adapter");
 * const out = (await Deno.makeTempDir()) + "/merged.safetensors";
 * const { report } = await mergeCheckpoint("fixtures/checkpoints/llama/model.safetensors", adapter, { out });
 * strictEqual(report.verdict, "pass");
 * strictEqual(report.unchanged.identical, true);
 * ```
 */
export async function mergeCheckpoint(
  model: string,
  adapter: Adapter,
  opts: CheckpointMergeOptions,
): Promise<CheckpointMergeResult> {
  const where = `Cannot merge adapter "${adapter.name}" into "${model}"`;
  const ck = await openCheckpoint(model);
  for (const part of opts.parts ?? []) {
    planCheckpoint(ck, part, `Cannot merge adapter "${part.name}" into "${model}"`);
  }
  const { merge: plan, notes } = planCheckpoint(ck, adapter, where);
  const out = await outputFiles(ck, opts.out, `Cannot write "${opts.out}"`);
  const rows = opts.rows ?? 8, seed = opts.seed ?? 0;
  const stage = await Deno.makeTempDir({
    dir: out.dir,
    prefix: `.${out.main}.`,
    suffix: ".staging",
  });
  try {
    const sync = opts.sync !== false;
    const checks = await writeAndCheck(ck, stage, out.names, plan, { rows, seed, sync });
    const written = [...out.names.values()];
    if (ck.index) {
      const index = `${stage}/${out.names.get(ck.index)}`;
      await Deno.copyFile(`${ck.dir}/${ck.index}`, index);
      if (sync) await syncFile(index);
    }
    const report = makeReport(ck, adapter, opts, { rows, seed, written, notes, ...checks });
    if (report.verdict === "fail") throw new CheckpointCheckError(report);
    const json = new TextEncoder().encode(`${JSON.stringify(report, null, 2)}\n`);
    const reportName = parityReportName(out.main);
    await writeFileAtomic(`${stage}/${reportName}`, json, { sync });
    const side = await stageSideFiles(ck.dir, out.dir, stage);
    // The shards before the index, the report last: a reader never sees an index without shards.
    const files = [...side, ...written, reportName];
    for (const f of files) await Deno.rename(`${stage}/${f}`, `${out.dir}/${f}`);
    if (sync) await syncFolder(out.dir);
    return {
      files: files.map((f) => `${out.dir}/${f}`),
      report,
      reportPath: `${out.dir}/${reportName}`,
    };
  } finally {
    await Deno.remove(stage, { recursive: true }).catch(() => {});
  }
}

/**
 * Writes every shard into `stage` and checks it: each shard's flush to disk and check run while
 * the next shard is merged (the check reads what is still in the page cache), the checks one after
 * another, so the rows drawn from one generator stay the same.
 */
async function writeAndCheck(
  ck: Checkpoint,
  stage: string,
  names: ReadonlyMap<string, string>,
  plan: MergePlan,
  o: { rows: number; seed: number; sync: boolean },
) {
  const tensors: TensorCheck[] = [];
  const differing: string[] = [];
  let identical = 0, bytes = 0;
  const rng = new Rng(o.seed), buffers = compareBuffers();
  const writer = new CheckpointWriter(plan, THREADS);
  let checking: Promise<void> = Promise.resolve();
  try {
    for (const s of ck.shards) {
      const path = `${stage}/${names.get(s.name)}`;
      await writer.write(s, path);
      const previous = checking;
      checking = (async () => {
        await previous;
        const [c] = await Promise.all([
          checkShard(s, path, plan, rng, o.rows, buffers),
          o.sync ? syncFile(path) : null,
        ]);
        tensors.push(...c.tensors);
        differing.push(...c.differing.map((k) => k === "(header)" ? `${s.name}: (header)` : k));
        identical += c.identical.tensors;
        bytes += c.identical.bytes;
      })();
      checking.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
    }
  } finally {
    await Promise.allSettled([checking, writer.release()]);
  }
  await checking;
  return { tensors, differing, identical, bytes };
}

function makeReport(
  ck: Checkpoint,
  adapter: Adapter,
  opts: CheckpointMergeOptions,
  r: {
    rows: number;
    seed: number;
    written: string[];
    notes: readonly string[];
    tensors: TensorCheck[];
    differing: string[];
    identical: number;
    bytes: number;
  },
): CheckpointReport {
  const dtypes = [...new Set(r.tensors.map((t) => t.dtype))];
  const pass = r.tensors.every((t) => t.pass) && r.differing.length === 0;
  return {
    verdict: pass ? "pass" : "fail",
    model: ck.source,
    adapter: adapter.name,
    output: opts.out,
    files: r.written,
    format: "safetensors",
    mode: "merged",
    storage: (["BF16", "F16", "F32", "F64"] as const).find((d) => dtypes.includes(d)) ?? "F32",
    check: {
      reference: "float64",
      rows: r.rows,
      seed: r.seed,
      tolerances: Object.fromEntries(dtypes.map((d) => [d, weightTolerance(d)])),
    },
    tensors: r.tensors,
    unchanged: {
      tensors: r.identical + r.differing.filter((k) => !k.endsWith("(header)")).length,
      bytes: r.bytes,
      identical: r.differing.length === 0,
      differing: r.differing,
    },
    notes: r.notes,
    ...(opts.combine !== undefined ? { combine: opts.combine } : {}),
  };
}

async function syncFile(path: string): Promise<void> {
  using f = await Deno.open(path, { read: true, write: true });
  await f.syncData();
}

/** Makes the renames durable (POSIX; some file systems refuse, the data is synced already). */
async function syncFolder(dir: string): Promise<void> {
  if (Deno.build.os === "windows") return;
  try {
    using d = await Deno.open(dir, { read: true });
    await d.sync();
  } catch { /* see above */ }
}
