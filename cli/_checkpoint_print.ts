/**
 * Printing a whole-checkpoint merge for `ffwd merge` and `ffwd export`: where the files and the
 * report are and the verdict (or, with `--json`, the report, also when the check fails).
 *
 * @module
 */

import { writeOut } from "./_errors.ts";
import { tolerance } from "./_inspect_text.ts";
import type { CheckpointMergeResult } from "../workflows/merge_checkpoint.ts";

/**
 * The merge itself is imported when a command runs, so that `ffwd --help` and `inspect` never
 * load onnxruntime or TF.js.
 */
export const checkpoints = () => import("../workflows/merge_checkpoint.ts");

/**
 * Runs a whole-checkpoint merge and prints where the files and the report are and the verdict
 * (or, with `--json`, the report, also when the check fails).
 */
export async function printCheckpoint(
  merge: () => Promise<CheckpointMergeResult>,
  lines: readonly string[],
  json: true | undefined,
): Promise<void> {
  let result: CheckpointMergeResult;
  try {
    result = await merge();
  } catch (e) {
    const { CheckpointCheckError } = await checkpoints();
    if (json && e instanceof CheckpointCheckError) {
      writeOut(`${JSON.stringify(e.report, null, 2)}\n`);
    }
    throw e;
  }
  const { report: r, files } = result;
  if (json) return writeOut(`${JSON.stringify(r, null, 2)}\n`);
  // The main file, then the other shards, then the side files (config.json, tokenizer files).
  const shard = (f: string) => f.endsWith(".safetensors") ? 0 : 1;
  const [main, ...rest] = [
    files.at(-2)!,
    ...files.slice(0, -2).sort((a, b) => shard(a) - shard(b)),
  ];
  const name = (f: string) => f.slice(f.lastIndexOf("/") + 1);
  const extra = rest.length ? ` (+ ${rest.map(name).join(", ")})` : "";
  const worst = Math.max(0, ...r.tensors.map((t) => t.maxRel));
  const tol = r.check.tolerances[r.storage]?.relative ?? 0;
  writeOut(
    [
      ...lines,
      `wrote ${main}${extra}`,
      `parity: ${r.verdict}, largest relative error ${worst.toExponential(1)} (tolerance ${
        tolerance(tol)
      }, ${r.storage} storage) over ${r.tensors.length} merged tensors, ${r.check.rows} rows each against float64 (seed ${r.check.seed}); ${r.unchanged.tensors} other tensors byte-identical`,
      ...r.notes.map((n) => `note: ${n}`),
      `report: ${result.reportPath}`,
    ].join("\n") + "\n",
  );
}
