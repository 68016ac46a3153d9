/**
 * Training checkpoints: the adapter in PEFT's format, `trainer_state.safetensors` (parameters,
 * optimizer buffers, generator state and position, as JSON metadata) and `train_config.json` (the
 * run's options, as a training config file), so `--resume` continues exactly and `ffwd train
 * --resume DIR` needs nothing else. The state file is the authority on resume; the folder is
 * replaced atomically.
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
import { readTrainConfig, type TrainConfig } from "./train_config.ts";

const STATE_FILE = "trainer_state.safetensors";
const CONFIG_FILE = "train_config.json";

/** Writes of a run in progress, which {@link stopWrites} waits for. */
const writing = new Set<Promise<unknown>>();
let stopped = false;

/** Writes the adapter, the trainer state and the run's options into `dir`, replacing it atomically. */
export function writeCheckpoint(
  dir: string,
  adapter: Adapter,
  state: TrainerState,
  config?: TrainConfig,
): Promise<void> {
  return trackWrite(() => writeFiles(dir, adapter, state, config));
}

/**
 * Starts a write of a run's files (a checkpoint, the adapter swapped into the output folder, the
 * summary) that {@link stopWrites} lets finish; once writes are stopped it never starts, and the
 * promise never settles: the process is ending.
 */
export function trackWrite<T>(write: () => Promise<T>): Promise<T> {
  if (stopped) return new Promise<T>(() => {});
  const started = write();
  const tracked = started.catch(() => {}).finally(() => writing.delete(tracked));
  writing.add(tracked);
  return started;
}

/**
 * For a process about to end at once (a second interrupt): no tracked write starts any more, and
 * the returned promise resolves when those in progress are done. The process then never ends
 * between the two renames that swap a folder, nor leaves a half-written file beside the run: the
 * last checkpoint, and the run folder holding it, stay whole.
 *
 * @example
 * ```ts ignore
 * await stopWrites(); // then Deno.exit()
 * ```
 */
export async function stopWrites(): Promise<void> {
  stopped = true;
  while (writing.size) await Promise.all(writing);
}

async function writeFiles(
  dir: string,
  adapter: Adapter,
  state: TrainerState,
  config: TrainConfig | undefined,
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
    seconds: state.seconds,
  };
  const files = config ? [STATE_FILE, CONFIG_FILE] : [STATE_FILE];
  await writeFolderAtomic(dir, files, async (staging) => {
    await writeSafetensors(`${staging}/${STATE_FILE}`, tensors, {
      metadata: { ffwd_trainer_state: JSON.stringify(meta) },
    });
    if (config) {
      await Deno.writeTextFile(`${staging}/${CONFIG_FILE}`, JSON.stringify(config, null, 2) + "\n");
    }
  });
}

/**
 * Where the checkpoint of `dir` is: `dir` is a run's output folder (its `checkpoint/`) or the
 * checkpoint folder itself. A folder without one is an error that says so, and how runs write
 * them.
 *
 * @example
 * ```ts
 * import { findCheckpoint } from "./checkpoint.ts";
 * import { rejects } from "node:assert/strict";
 * const empty = await Deno.makeTempDir();
 * await rejects(() => findCheckpoint(empty), /it holds no checkpoint/);
 * ```
 */
export async function findCheckpoint(dir: string): Promise<{ folder: string; run: string }> {
  const path = dir.replace(/(.)\/+$/, "$1");
  for (const folder of [`${path}/checkpoint`, path]) {
    try {
      if ((await Deno.stat(`${folder}/${STATE_FILE}`)).isFile) {
        const run = folder === path ? path.replace(/\/?[^/]*$/, "") || "." : path;
        return { folder, run };
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory)) throw e;
    }
  }
  const where = `Cannot resume from "${dir}"`;
  try {
    if (!(await Deno.stat(path)).isDirectory) {
      throw new TypeError(`${where}: it is a file; give the output folder of a run`);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`${where}: no such folder`);
    }
    throw e;
  }
  throw new Deno.errors.NotFound(
    `${where}: it holds no checkpoint (checkpoint/${STATE_FILE}); a run writes one when it ends ` +
      "or is interrupted, and every --checkpoint-every steps",
  );
}

/**
 * The options of the run that wrote the checkpoint in `dir` (see {@link findCheckpoint}), or
 * `undefined` for a checkpoint written without them.
 */
export async function readCheckpointConfig(dir: string): Promise<TrainConfig | undefined> {
  const path = `${(await findCheckpoint(dir)).folder}/${CONFIG_FILE}`;
  try {
    await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  return await readTrainConfig(path);
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
  const path = `${(await findCheckpoint(dir)).folder}/${STATE_FILE}`;
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
    ...(typeof meta.seconds === "number" ? { seconds: meta.seconds } : {}),
  };
}
