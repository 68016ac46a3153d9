/**
 * Training checkpoints: the adapter in PEFT's format plus `trainer_state.safetensors` (parameters,
 * optimizer buffers, generator state and position, as JSON metadata), so `--resume` continues
 * exactly. The state file is the authority on resume; it is replaced atomically.
 *
 * @module
 */

import { readSafetensors, writeSafetensors } from "../src/io/safetensors.ts";
import type { Tensor } from "../src/tensor.ts";
import type { OptimizerState } from "../src/train/optim.ts";
import type { TrainerState } from "../src/train/trainer.ts";
import type { Adapter } from "../adapters/adapter.ts";
import { savePeftAdapter } from "../adapters/peft.ts";
import { writeFolderAtomic } from "../src/fs/atomic_folder.ts";

const STATE_FILE = "trainer_state.safetensors";

/** Writes the adapter and the trainer state into `dir`, replacing it atomically. */
export async function writeCheckpoint(
  dir: string,
  adapter: Adapter,
  state: TrainerState,
): Promise<void> {
  await savePeftAdapter(dir, adapter);
  const tensors = new Map<string, Tensor>();
  for (const [k, v] of state.params) {
    tensors.set(`param/${k}`, { dtype: "F32", shape: [v.length], data: v });
  }
  for (const [k, bufs] of Object.entries(state.optimizer.buffers)) {
    for (const [b, v] of Object.entries(bufs)) {
      tensors.set(`optim/${k}/${b}`, { dtype: "F32", shape: [v.length], data: v });
    }
  }
  const meta = {
    step: state.step,
    epoch: state.epoch,
    position: state.position,
    rng: state.rng,
    optimizer: state.optimizer.name,
    optimizer_step: state.optimizer.step,
    optimizer_param_steps: state.optimizer.paramSteps,
    best_eval: state.bestEval,
    bad_evals: state.badEvals,
  };
  await writeFolderAtomic(dir, [STATE_FILE], async (staging) => {
    await writeSafetensors(`${staging}/${STATE_FILE}`, tensors, {
      metadata: { ffwd_trainer_state: JSON.stringify(meta) },
    });
  });
}

/**
 * Reads a checkpoint written by {@link finetune}: `dir` is its output folder or the checkpoint
 * folder itself.
 *
 * @example
 * ```ts
 * import { finetune, readCheckpoint } from "./finetune.ts";
 * import { defaultPeftConfig } from "../adapters/config.ts";
 * import { openSafetensorsModel } from "../src/models/blocks/safetensors_model.ts";
 * import { strictEqual } from "node:assert/strict";
 * const model = await openSafetensorsModel("fixtures/mnist/base.safetensors");
 * const data = {
 *   rows: 4,
 *   width: 784,
 *   x: new Float32Array(4 * 784),
 *   y: { kind: "labels" as const, data: new BigInt64Array(4) },
 * };
 * const outDir = await Deno.makeTempDir();
 * const config = defaultPeftConfig({ r: 2, loraAlpha: 4, targetModules: ["fc3"] });
 * await finetune(model, data, { config, loss: "cross_entropy", outDir, batchSize: 4 });
 * strictEqual((await readCheckpoint(outDir)).step, 1); // the final checkpoint
 * model.close();
 * ```
 */
export async function readCheckpoint(dir: string): Promise<TrainerState> {
  let path = `${dir}/checkpoint/${STATE_FILE}`;
  try {
    await Deno.stat(path);
  } catch {
    path = `${dir}/${STATE_FILE}`;
  }
  const { tensors, metadata } = await readSafetensors(path);
  const raw = metadata["ffwd_trainer_state"];
  if (!raw) {
    throw new SyntaxError(`Cannot resume from "${path}": it has no ffwd_trainer_state metadata`);
  }
  const meta = JSON.parse(raw);
  const params = new Map<string, Float32Array>();
  const buffers: Record<string, Record<string, Float32Array>> = {};
  for (const [k, t] of tensors) {
    const data = t.data as Float32Array;
    if (k.startsWith("param/")) params.set(k.slice(6), data);
    else if (k.startsWith("optim/")) {
      const rest = k.slice(6);
      const cut = rest.lastIndexOf("/");
      (buffers[rest.slice(0, cut)] ??= {})[rest.slice(cut + 1)] = data;
    }
  }
  const optimizer: OptimizerState = {
    name: meta.optimizer,
    step: meta.optimizer_step,
    paramSteps: meta.optimizer_param_steps,
    buffers,
  };
  return {
    step: meta.step,
    epoch: meta.epoch,
    position: meta.position,
    rng: meta.rng,
    optimizer,
    params,
    bestEval: meta.best_eval,
    badEvals: meta.bad_evals,
  };
}
