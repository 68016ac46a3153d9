/**
 * PEFT adapter folders (https://github.com/huggingface/peft): `adapter_config.json` plus
 * `adapter_model.safetensors` with metadata `{"format": "pt"}`, as `PeftModel.save_pretrained`
 * writes them. Tensor keys follow `get_peft_model_state_dict` (`peft/utils/save_and_load.py`),
 * which drops the adapter name: `base_model.model.<module>.lora_A.weight` [r, in],
 * `….lora_B.weight` [out, r], DoRA's `….lora_magnitude_vector` [out] (its in-memory
 * `lora_magnitude_vector.<name>.weight` is renamed on save), trained biases of adapted layers as
 * `….<module>.base_layer.bias`, `modules_to_save` tensors under their plain model key.
 *
 * Loading also accepts keys that still carry the adapter name (`….lora_A.default.weight`, as some
 * tools and older versions write them) and the older `….modules_to_save.<name>.weight` form. A
 * pickled `adapter_model.bin` is refused with the command that converts it. ffwd's own extras
 * (training config, metrics) go to `ffwd_training.json`, a file PEFT's loader never opens.
 *
 * @module
 */

import { readSafetensors, type TensorInput, writeSafetensors } from "../src/io/safetensors.ts";
import { writeFileAtomic } from "../src/fs/atomic.ts";
import type { Tensor } from "../src/tensor.ts";
import type { Adapter, AdapterLayer } from "./adapter.ts";
import { type JsonValue, type PeftConfig, peftConfigToJson, readPeftConfig } from "./config.ts";
import { readJsonFile } from "./_json.ts";
import { parsePeftKey, PEFT_PREFIX, peftKeys, peftPrefix } from "../src/lora/branch.ts";
import { checkAdapter, listFolder } from "./folder.ts";
import { writeFolderAtomic } from "../src/fs/atomic_folder.ts";

/** PEFT's config file, read and written by `save_pretrained` / `from_pretrained`. */
export const PEFT_CONFIG_FILE = "adapter_config.json";
/** PEFT's weights file (safetensors), in PEFT's key layout. */
export const PEFT_WEIGHTS_FILE = "adapter_model.safetensors";
/** PEFT's pickled weights file (not read). */
export const PEFT_BIN_FILE = "adapter_model.bin";
/** ffwd's training record, beside PEFT's files. */
export const FFWD_TRAINING_FILE = "ffwd_training.json";

/** Files a save owns: replaced or removed, never carried over from an older adapter. */
const OWNED = [PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, PEFT_BIN_FILE, FFWD_TRAINING_FILE];

/**
 * The tensors of an adapter under PEFT's saved keys.
 *
 * @example
 * ```ts
 * import { peftStateDict } from "./peft.ts";
 * import { defaultPeftConfig } from "./config.ts";
 * import { tensor } from "../src/tensor.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const layers = new Map([["fc1", { A: tensor("F32", [8, 4]), B: tensor("F32", [3, 8]) }]]);
 * const sd = peftStateDict({ name: "a", config: defaultPeftConfig(), layers, biases: new Map(), extra: new Map() });
 * deepStrictEqual([...sd.keys()], [
 *   "base_model.model.fc1.lora_A.weight",
 *   "base_model.model.fc1.lora_B.weight",
 * ]);
 * ```
 */
export function peftStateDict<T extends TensorInput>(adapter: Adapter<T>): Map<string, T> {
  const out = new Map<string, T>();
  for (const [module, t] of adapter.layers) {
    const k = peftKeys(module);
    out.set(k.A, t.A).set(k.B, t.B);
    if (t.magnitude) out.set(k.magnitude, t.magnitude);
  }
  for (const [module, bias] of adapter.biases) {
    out.set(`${peftPrefix(module)}.${adapter.layers.has(module) ? "base_layer." : ""}bias`, bias);
  }
  for (const [key, t] of adapter.extra) out.set(peftPrefix(key), t);
  return out;
}

/** Options of {@linkcode savePeftAdapter}. */
export interface SavePeftOptions {
  /** Flush files to disk before the folder is swapped in. Default `true`. */
  readonly sync?: boolean;
}

/**
 * Saves an adapter as a PEFT folder, all or nothing: the files are written into a staging folder
 * beside `dir` that then replaces `dir` (see `writeFolderAtomic` in `src/fs/atomic_folder.ts`). A failure (a bad
 * shape, a lazy tensor that throws) leaves no partial folder and an existing adapter at `dir`
 * untouched; files in `dir` other than the adapter's (a README) are kept.
 *
 * @example
 * ```ts
 * import { savePeftAdapter } from "./peft.ts";
 * import { defaultPeftConfig } from "./config.ts";
 * import { tensor } from "../src/tensor.ts";
 * const layers = new Map([["fc1", { A: tensor("F32", [8, 4]), B: tensor("F32", [3, 8]) }]]);
 * const dir = (await Deno.makeTempDir()) + "/rot45";
 * await savePeftAdapter(dir, { name: "rot45", config: defaultPeftConfig({ targetModules: ["fc1"] }), layers, biases: new Map(), extra: new Map() });
 * ```
 */
export async function savePeftAdapter(
  dir: string,
  adapter: Adapter<TensorInput>,
  options: SavePeftOptions = {},
): Promise<void> {
  const where = `Cannot save adapter "${adapter.name}" to "${dir}"`;
  checkAdapter(adapter, where);
  const tensors = peftStateDict(adapter);
  const sync = options.sync ?? true;
  const json = (v: JsonValue) => new TextEncoder().encode(`${JSON.stringify(v, null, 2)}\n`);
  let staging = "";
  try {
    await writeFolderAtomic(dir, OWNED, async (folder) => {
      staging = folder;
      await writeSafetensors(`${folder}/${PEFT_WEIGHTS_FILE}`, tensors, {
        metadata: { format: "pt" },
        sync,
      });
      await writeFileAtomic(
        `${folder}/${PEFT_CONFIG_FILE}`,
        json(peftConfigToJson(adapter.config)),
        { sync },
      );
      if (adapter.training) {
        await writeFileAtomic(
          `${folder}/${FFWD_TRAINING_FILE}`,
          json(adapter.training as JsonValue),
          { sync },
        );
      }
    });
  } catch (e) {
    if (!(e instanceof Error) || e.message.startsWith("Cannot save adapter")) throw e;
    const message = `${where}: ${staging ? e.message.replaceAll(staging, dir) : e.message}`;
    // Same class (TypeError, Deno.errors.NotFound, ...), so callers can still tell failures apart.
    const Err = e.constructor as new (message: string, options?: ErrorOptions) => Error;
    throw new Err(message, { cause: e });
  }
}

/** Options of {@linkcode loadPeftAdapter}. */
export interface LoadPeftOptions {
  /** Name for messages; default the folder's name. */
  readonly name?: string;
}

/**
 * Loads a PEFT adapter folder written by PEFT (any version that writes safetensors) or by ffwd.
 * Missing files, bad JSON, bad fields and tensors that do not fit the config are errors naming
 * the file.
 *
 * @example
 * ```ts
 * import { loadPeftAdapter } from "./peft.ts";
 * import { strictEqual } from "node:assert/strict";
 * const adapter = await loadPeftAdapter("fixtures/peft/mlp_lora");
 * strictEqual(adapter.config.r, 4);
 * ```
 */
export async function loadPeftAdapter(
  dir: string,
  options: LoadPeftOptions = {},
): Promise<Adapter> {
  const name = options.name ?? dir.replace(/\/+$/, "").split("/").pop()!;
  const where = `Cannot load adapter "${name}"`;
  const files = await listFolder(dir, where);
  const weights = `${dir}/${PEFT_WEIGHTS_FILE}`;
  if (!files.has(PEFT_WEIGHTS_FILE)) {
    if (files.has(PEFT_BIN_FILE)) {
      throw new TypeError(
        `${where}: "${dir}/${PEFT_BIN_FILE}" is a PyTorch pickle, which ffwd does not read (unpickling runs code); ` +
          `convert it with: python -c "import torch; from safetensors.torch import save_file; ` +
          `save_file(torch.load('${PEFT_BIN_FILE}', weights_only=True), '${PEFT_WEIGHTS_FILE}', metadata={'format': 'pt'})"`,
      );
    }
    throw new Deno.errors.NotFound(`${where}: "${weights}" does not exist`);
  }
  const configPath = `${dir}/${PEFT_CONFIG_FILE}`;
  if (!files.has(PEFT_CONFIG_FILE)) {
    throw new Deno.errors.NotFound(`${where}: "${configPath}" does not exist`);
  }
  const config = await readPeftConfig(configPath);
  checkSupported(config, configPath);
  const { tensors } = await readSafetensors(weights);
  const parsed = fromPeftStateDict(tensors, config, weights);
  let training: Record<string, JsonValue> | undefined;
  if (files.has(FFWD_TRAINING_FILE)) {
    const path = `${dir}/${FFWD_TRAINING_FILE}`;
    const json = await readJsonFile(path);
    if (json === null || typeof json !== "object" || Array.isArray(json)) {
      throw new TypeError(`Cannot read "${path}": expected a JSON object`);
    }
    training = json as Record<string, JsonValue>;
  }
  const adapter: Adapter = { name, config, ...parsed, ...(training ? { training } : {}) };
  checkAdapter(adapter, `Cannot load "${weights}" with "${configPath}"`);
  return adapter;
}

/**
 * Throws when a config uses a PEFT feature whose tensors or semantics ffwd does not implement,
 * so such an adapter is refused instead of silently computing something else.
 *
 * @example
 * ```ts
 * import { checkSupported } from "./peft.ts";
 * import { defaultPeftConfig } from "./config.ts";
 * import { throws } from "node:assert/strict";
 * checkSupported(defaultPeftConfig(), "adapter_config.json");
 * const qalora = defaultPeftConfig({ extra: { use_qalora: true } });
 * throws(
 *   () => checkSupported(qalora, "adapter_config.json"),
 *   /"use_qalora": true is not supported by ffwd/,
 * );
 * ```
 */
export function checkSupported(config: PeftConfig, source: string): void {
  const x = config.extra;
  const unsupported: [boolean, string][] = [
    [x.lora_bias === true, `"lora_bias": true (a bias on lora_B)`],
    [x.use_qalora === true, `"use_qalora": true`],
    [x.use_bdlora != null && x.use_bdlora !== false, `"use_bdlora"`],
    [x.layer_replication != null, `"layer_replication"`],
    [Array.isArray(x.target_parameters) && x.target_parameters.length > 0, `"target_parameters"`],
    [x.alora_invocation_tokens != null, `"alora_invocation_tokens" (activated LoRA)`],
    [x.trainable_token_indices != null, `"trainable_token_indices"`],
  ];
  for (const [bad, what] of unsupported) {
    if (bad) throw new RangeError(`Cannot load "${source}": ${what} is not supported by ffwd`);
  }
  const init = String(config.initLoraWeights);
  if (/^(pissa|olora|corda|loftq)/.test(init)) {
    throw new RangeError(
      `Cannot load "${source}": "init_lora_weights" is "${init}", so the adapter is relative to a modified base; ` +
        `convert it to plain LoRA with PEFT's save_pretrained(path_initial_model_for_weight_conversion=...)`,
    );
  }
}

/** The tensors of an adapter, sorted by role. */
export type PeftParts<T extends TensorInput = Tensor> = Pick<
  Adapter<T>,
  "layers" | "biases" | "extra"
>;

/**
 * Sorts a PEFT state dict into layers, biases and extra tensors (keys with or without the
 * `base_model.model.` prefix and the adapter name). `source` names the file in errors.
 *
 * @example
 * ```ts
 * import { fromPeftStateDict } from "./peft.ts";
 * import { defaultPeftConfig } from "./config.ts";
 * import { tensor } from "../src/tensor.ts";
 * import { ok } from "node:assert/strict";
 * const sd = new Map([
 *   ["base_model.model.fc1.lora_A.default.weight", tensor("F32", [8, 4])],
 *   ["base_model.model.fc1.lora_B.default.weight", tensor("F32", [3, 8])],
 * ]);
 * ok(fromPeftStateDict(sd, defaultPeftConfig(), "adapter_model.safetensors").layers.has("fc1"));
 * ```
 */
export function fromPeftStateDict<T extends TensorInput>(
  tensors: ReadonlyMap<string, T>,
  config: PeftConfig,
  source = PEFT_WEIGHTS_FILE,
): PeftParts<T> {
  const parts = new Map<string, { A?: T; B?: T; magnitude?: T }>();
  const part = (m: string) => parts.get(m) ?? parts.set(m, {}).get(m)!;
  const rest: [string, T][] = [];
  for (const [fullKey, t] of tensors) {
    const key = fullKey.startsWith(PEFT_PREFIX) ? fullKey.slice(PEFT_PREFIX.length) : fullKey;
    const lora = parsePeftKey(key);
    if (lora) part(lora.module)[lora.role] = t;
    else if (/(^|\.)lora_/.test(key)) {
      throw new TypeError(
        `Cannot load "${source}": tensor "${fullKey}" is of a kind ffwd does not support`,
      );
    } else rest.push([key.replace(/\.modules_to_save(?:\.[^.]+)?(?=\.[^.]+$)/, ""), t]);
  }
  const layers = new Map<string, AdapterLayer<T>>();
  for (const [module, p] of parts) {
    const k = peftKeys(module);
    if (!p.A || !p.B) {
      throw new TypeError(
        `Cannot load "${source}": tensor "${p.A ? k.B : k.A}" is missing (found "${
          p.A ? k.A : k.B
        }")`,
      );
    }
    layers.set(module, { A: p.A, B: p.B, ...(p.magnitude ? { magnitude: p.magnitude } : {}) });
  }
  const biases = new Map<string, T>();
  const extra = new Map<string, T>();
  const toSave = config.modulesToSave ?? [];
  for (const [key, t] of rest) {
    const module = key.slice(0, key.lastIndexOf("."));
    const saved = toSave.some((s) => module === s || module.endsWith(`.${s}`));
    const base = /^(.+)\.base_layer\.bias$/.exec(key);
    if (base && layers.has(base[1]!)) biases.set(base[1]!, t);
    else if (!saved && key.endsWith(".bias") && (config.bias !== "none" || layers.has(module))) {
      biases.set(module, t);
    } else extra.set(key, t);
  }
  return { layers, biases, extra };
}
