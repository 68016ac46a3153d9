/**
 * `saveBest` across a resume (imported only by `finetune.ts`). A checkpoint's
 * `trainer_state.safetensors` holds the parameters where training is, and the training config
 * has no field for `saveBest`; so with `saveBest` the checkpoint's adapter is the best
 * evaluation's, and its `ffwd_training.json` says so: `save_best`, and once an evaluation ran,
 * `best_eval_loss`, `best_step` and `best_epoch`. A resumed run reads them back from there and
 * keeps the best of the run it continues.
 *
 * @module
 */

import type { JsonValue } from "../adapters/config.ts";
import { FFWD_TRAINING_FILE, loadPeftAdapter } from "../adapters/peft.ts";
import type { LayerAdapter } from "../src/lora/branch.ts";
import type { TrainerState } from "../src/train/trainer.ts";
import { findCheckpoint } from "./checkpoint.ts";
import { adapterParams, type TrainedTensor } from "./_finetune_params.ts";

/** What a checkpoint's adapter records of `saveBest`. */
export function bestRecord(best: TrainerState["best"]): Record<string, JsonValue> {
  return {
    save_best: true,
    ...(best ? { best_eval_loss: best.loss, best_step: best.step, best_epoch: best.epoch } : {}),
  };
}

/**
 * Whether the run that wrote the checkpoint in `dir` kept its best adapter, and that adapter's
 * evaluation and values (checked against `params`, the values this run trains).
 */
export async function readBest(
  dir: string,
  adapters: readonly LayerAdapter[],
  trained: ReadonlyMap<string, TrainedTensor>,
  params: ReadonlyMap<string, Float32Array>,
): Promise<{ saveBest: boolean; best?: TrainerState["best"] }> {
  const { folder } = await findCheckpoint(dir);
  // The record alone tells; the adapter is read only when it holds a best evaluation's values.
  const record = await Deno.readTextFile(`${folder}/${FFWD_TRAINING_FILE}`).catch((e) => {
    if (e instanceof Deno.errors.NotFound) return "{}";
    throw e;
  });
  const t = JSON.parse(record) as Record<string, JsonValue>;
  if (t?.save_best !== true) return { saveBest: false };
  const [loss, step, epoch] = [t.best_eval_loss, t.best_step, t.best_epoch];
  if (typeof loss !== "number" || typeof step !== "number" || typeof epoch !== "number") {
    return { saveBest: true };
  }
  const best = adapterParams(await loadPeftAdapter(folder), adapters, trained);
  for (const [key, p] of params) {
    if (best.get(key)?.length !== p.length) {
      throw new TypeError(
        `Cannot resume from "${dir}": the best adapter in "${folder}" has no ${p.length} values ` +
          `for "${key}"; resume with the options of the run that wrote it`,
      );
    }
  }
  return { saveBest: true, best: { loss, step, epoch, params: best } };
}
