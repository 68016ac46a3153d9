/**
 * The training configuration file (`--config train.json`): every option `ffwd train` has as a
 * flag, validated with zod so a bad value names its field. Flags given on the command line, and
 * options given to `finetune()`, win over the file (see `train_options.ts`).
 *
 * ```json
 * {
 *   "model": "fixtures/mnist/base.safetensors", "data": "train.jsonl", "out": "runs/rot45",
 *   "rank": 8, "alpha": 16, "targets": ["fc1", "fc2", "fc3"], "dora": false, "rslora": false,
 *   "dropout": 0, "epochs": 3, "batch_size": 64, "lr": 0.001, "optimizer": "adamw",
 *   "loss": "cross_entropy", "seed": 0, "shuffle": true
 * }
 * ```
 *
 * @module
 */

import { z } from "npm:zod@4.6.7";

const positiveInt = z.number().int().positive();

/** The schema of a training config file (snake_case keys, like PEFT's files). */
export const TrainConfigSchema = z.strictObject({
  model: z.string().optional(),
  block: z.string().optional(),
  data: z.string().optional(),
  out: z.string().optional(),
  eval: z.string().optional(),
  eval_split: z.number().min(0).lt(1).optional(),
  label_column: z.union([z.string(), z.number().int()]).optional(),
  rank: positiveInt.optional(),
  alpha: z.number().positive().optional(),
  targets: z.union([z.string(), z.array(z.string()).nonempty()]).optional(),
  layers_to_transform: z.array(z.number().int().nonnegative()).optional(),
  rank_pattern: z.record(z.string(), positiveInt).optional(),
  alpha_pattern: z.record(z.string(), z.number().positive()).optional(),
  dora: z.boolean().optional(),
  rslora: z.boolean().optional(),
  bias: z.enum(["none", "all", "lora_only"]).optional(),
  modules_to_save: z.array(z.string()).optional(),
  init: z.enum(["kaiming", "gaussian"]).optional(),
  dropout: z.number().min(0).lt(1).optional(),
  epochs: positiveInt.optional(),
  max_steps: positiveInt.optional(),
  batch_size: positiveInt.optional(),
  grad_accum: positiveInt.optional(),
  lr: z.number().nonnegative().optional(),
  schedule: z.enum(["constant", "linear", "cosine"]).optional(),
  warmup_steps: z.number().int().nonnegative().optional(),
  optimizer: z.enum(["sgd", "momentum", "rmsprop", "adam", "adamw"]).optional(),
  weight_decay: z.number().nonnegative().optional(),
  momentum: z.number().min(0).max(1).optional(),
  nesterov: z.boolean().optional(),
  clip_norm: z.number().positive().optional(),
  loss: z.enum(["mse", "cross_entropy", "bce"]).optional(),
  seed: z.number().int().nonnegative().optional(),
  shuffle: z.boolean().optional(),
  checkpoint_every: positiveInt.optional(),
  early_stopping: positiveInt.optional(),
  init_adapter: z.string().optional(),
  resume: z.string().optional(),
  threads: positiveInt.optional(),
  cache: z.boolean().optional(),
  cache_budget_mb: z.number().positive().optional(),
  output: z.string().optional(),
});

/**
 * zod's inference of {@link TrainConfigSchema}. Tagged internal because it is made of zod's own
 * types, which ffwd's documentation does not include; {@link TrainConfig} is the public name.
 *
 * @internal
 */
type InferredTrainConfig = z.infer<typeof TrainConfigSchema>;

/**
 * A parsed training config: the keys of `TrainConfigSchema` (snake_case, like the flags of
 * `ffwd train`), each optional; see the module documentation for an example file.
 */
export type TrainConfig = InferredTrainConfig;

/**
 * Validates a parsed JSON value as a training config; errors name the file and the field.
 *
 * @example
 * ```ts
 * import { parseTrainConfig } from "./train_config.ts";
 * import { strictEqual, throws } from "node:assert/strict";
 * strictEqual(parseTrainConfig({ rank: 8, lr: 0.001 }).rank, 8);
 * throws(() => parseTrainConfig({ rank: 0 }), /train\.json": field "rank"/);
 * ```
 */
export function parseTrainConfig(json: unknown, source = "train.json"): TrainConfig {
  const r = TrainConfigSchema.safeParse(json);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const field = issue.path.length ? issue.path.join(".") : "(top level)";
  throw new TypeError(`Invalid training config "${source}": field "${field}": ${issue.message}`);
}

/**
 * Reads and validates a training config file.
 *
 * @example
 * ```ts
 * import { readTrainConfig } from "./train_config.ts";
 * import { strictEqual } from "node:assert/strict";
 * const path = (await Deno.makeTempDir()) + "/train.json";
 * await Deno.writeTextFile(path, JSON.stringify({ rank: 8, alpha: 16, targets: ["fc1"] }));
 * strictEqual((await readTrainConfig(path)).alpha, 16);
 * ```
 */
export async function readTrainConfig(path: string): Promise<TrainConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new Deno.errors.NotFound(
      `Cannot read training config "${path}": ${(e as Error).message}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`Cannot parse training config "${path}": ${(e as Error).message}`);
  }
  return parseTrainConfig(json, path);
}
