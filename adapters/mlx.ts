/**
 * MLX-LM adapter folders (https://github.com/ml-explore/mlx-lm, `mlx_lm/tuner/utils.py`
 * `load_adapters`, `mlx_lm/tuner/lora.py`, `dora.py`): `adapter_config.json` holding the training
 * arguments (`fine_tune_type`, `num_layers` or the older `lora_layers`, `lora_parameters:
 * {rank, scale, dropout, keys?}`) and `adapters.safetensors` with `<module>.lora_a` [in, r],
 * `<module>.lora_b` [r, out] and, for DoRA, `<module>.m` [out].
 *
 * MLX adds `scale · (x·lora_a)·lora_b`, so its delta is `scale · lora_bᵀ · lora_aᵀ` with an
 * absolute `scale`. In PEFT's layout that is A = lora_aᵀ [r, in], B = lora_bᵀ [out, r] and
 * `lora_alpha = scale · r`, so that `alpha / r = scale`. MLX's DoRA is PEFT's (magnitude over the
 * row norms of `W + scale·B·A`, detached). Before April 2024 mlx-examples multiplied the scale by
 * `alpha / rank` from `lora_parameters.alpha`; later versions ignore `alpha` (it stayed in the
 * default arguments until 2025), so a file cannot tell: `legacyAlphaScale` opts into the old rule.
 *
 * @module
 */

import { readSafetensors, type TensorInput, writeSafetensors } from "../src/io/safetensors.ts";
import { writeFileAtomic } from "../src/fs/atomic.ts";
import type { Tensor } from "../src/tensor.ts";
import type { Adapter, AdapterLayer } from "./adapter.ts";
import { defaultPeftConfig, type JsonValue, layerHyper } from "./config.ts";
import { readJsonFile } from "./_json.ts";
import { layerIndex } from "./targets.ts";
import { checkAdapter, listFolder } from "./folder.ts";
import { formatShape, transpose2d } from "../src/tensor.ts";
import { writeFolderAtomic } from "../src/fs/atomic_folder.ts";
import { loraScale } from "../src/lora/branch.ts";

/** MLX-LM's config file: the training arguments, `lora_parameters` among them. */
export const MLX_CONFIG_FILE = "adapter_config.json";
/** MLX-LM's weights file (safetensors), `lora_a` / `lora_b` in MLX's layout. */
export const MLX_WEIGHTS_FILE = "adapters.safetensors";

/** Options of {@linkcode loadMlxAdapter}. */
export interface LoadMlxOptions {
  /** Name for messages; default the folder's name. */
  readonly name?: string;
  /** Scale by `scale · alpha / rank`, as mlx-examples did before April 2024. */
  readonly legacyAlphaScale?: boolean;
}

/**
 * Loads an MLX-LM LoRA or DoRA adapter folder and converts it to PEFT's layout.
 *
 * @example
 * ```ts ignore
 * import { loadMlxAdapter } from "./mlx.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const adapter = await loadMlxAdapter("../shared/realdata/ml-explore__mlx-examples/llms/adapters");
 * deepStrictEqual(adapter.layers.get("model.layers.36.self_attn.q_proj")!.A.shape, [8, 2304]);
 * ```
 */
export async function loadMlxAdapter(dir: string, options: LoadMlxOptions = {}): Promise<Adapter> {
  const name = options.name ?? dir.replace(/\/+$/, "").split("/").pop()!;
  const where = `Cannot load adapter "${name}"`;
  const files = await listFolder(dir, where);
  const configPath = `${dir}/${MLX_CONFIG_FILE}`;
  const weights = `${dir}/${MLX_WEIGHTS_FILE}`;
  for (const [file, path] of [[MLX_CONFIG_FILE, configPath], [MLX_WEIGHTS_FILE, weights]]) {
    if (!files.has(file!)) throw new Deno.errors.NotFound(`${where}: "${path}" does not exist`);
  }
  const raw = await readJsonFile(configPath);
  const mlx = parseMlxConfig(raw, configPath);
  const { tensors } = await readSafetensors(weights);
  const layers = new Map<string, AdapterLayer>();
  for (const [module, parts] of groupTensors(tensors, weights)) {
    const { lora_a: a, lora_b: b, m } = parts;
    const key = (p: string) => `"${module}.${p}"`;
    if (!a || !b) {
      throw new TypeError(
        `Cannot load "${weights}": tensor ${key(a ? "lora_b" : "lora_a")} is missing`,
      );
    }
    if (a.shape.length !== 2 || b.shape.length !== 2 || a.shape[1] !== b.shape[0]) {
      throw new TypeError(
        `Cannot load "${weights}": tensors ${key("lora_a")} ${formatShape(a.shape)} and ${
          key("lora_b")
        } ${formatShape(b.shape)} are not [in, r] and [r, out]`,
      );
    }
    if (a.shape[1] !== mlx.rank) {
      throw new TypeError(
        `Cannot load "${weights}": tensor ${key("lora_a")} has rank ${
          a.shape[1]
        }, but "${configPath}" gives lora_parameters.rank ${mlx.rank}`,
      );
    }
    if (mlx.dora !== (m !== undefined)) {
      throw new TypeError(
        `Cannot load "${weights}": tensor ${key("m")} ${
          mlx.dora ? "is missing (DoRA)" : "is present but the adapter is not DoRA"
        }`,
      );
    }
    layers.set(module, { A: transpose2d(a), B: transpose2d(b), ...(m ? { magnitude: m } : {}) });
  }
  const scale = options.legacyAlphaScale && mlx.alpha !== undefined
    ? mlx.scale * loraScale(mlx.alpha, mlx.rank, false)
    : mlx.scale;
  const modules = [...layers.keys()];
  const indices = modules.map(layerIndex);
  const config = defaultPeftConfig({
    r: mlx.rank,
    loraAlpha: scale * mlx.rank,
    targetModules: mlx.keys ?? blockKeys(modules),
    loraDropout: mlx.dropout,
    useDora: mlx.dora,
    layersToTransform: indices.every((i) => i !== undefined)
      ? [...new Set(indices as number[])].sort((x, y) => x - y)
      : null,
    baseModelNameOrPath: mlx.model,
    taskType: "CAUSAL_LM",
  });
  const adapter: Adapter = {
    name,
    config,
    layers,
    biases: new Map(),
    extra: new Map(),
    training: { mlx_lm: raw as JsonValue },
  };
  checkAdapter(adapter, `Cannot load "${weights}"`);
  return adapter;
}

interface MlxConfig {
  rank: number;
  scale: number;
  alpha?: number;
  dropout: number;
  keys: string[] | null;
  dora: boolean;
  model: string | null;
}

function parseMlxConfig(raw: unknown, path: string): MlxConfig {
  const where = `Cannot read "${path}"`;
  const obj = (v: unknown): v is Record<string, unknown> =>
    v !== null && typeof v === "object" && !Array.isArray(v);
  if (!obj(raw)) throw new TypeError(`${where}: expected a JSON object`);
  const type = raw.fine_tune_type ?? (raw.use_dora === true ? "dora" : "lora");
  if (type === "full") {
    throw new TypeError(`${where}: "fine_tune_type" is "full": a full fine-tune, not an adapter`);
  }
  if (type !== "lora" && type !== "dora") {
    throw new RangeError(
      `${where}: field "fine_tune_type" must be "lora" or "dora", got ${JSON.stringify(type)}`,
    );
  }
  const p = raw.lora_parameters;
  if (!obj(p)) {
    throw new TypeError(
      `${where}: field "lora_parameters" must be an object, got ${JSON.stringify(p)}`,
    );
  }
  const num = (k: string, fallback?: number): number => {
    const v = p[k] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new TypeError(
        `${where}: field "lora_parameters.${k}" must be a number, got ${
          JSON.stringify(v) ?? "nothing"
        }`,
      );
    }
    return v;
  };
  const rank = num("rank");
  if (!Number.isInteger(rank) || rank < 1) {
    throw new RangeError(
      `${where}: field "lora_parameters.rank" must be an integer >= 1, got ${rank}`,
    );
  }
  const keys = p.keys;
  if (keys != null && !(Array.isArray(keys) && keys.every((k) => typeof k === "string"))) {
    throw new TypeError(
      `${where}: field "lora_parameters.keys" must be a list of module names, got ${
        JSON.stringify(keys)
      }`,
    );
  }
  return {
    rank,
    scale: num("scale"),
    ...(typeof p.alpha === "number" ? { alpha: p.alpha } : {}),
    dropout: num("dropout", 0),
    keys: keys ?? null,
    dora: type === "dora",
    model: typeof raw.model === "string" ? raw.model : null,
  };
}

/** Module names relative to their block (`model.layers.3.self_attn.q_proj` → `self_attn.q_proj`), as MLX's `keys`. */
function blockKeys(modules: readonly string[]): string[] {
  return [...new Set(modules.map((m) => m.replace(/^(?:.*\.)?(?:layers|h|blocks)\.\d+\./, "")))]
    .sort();
}

function groupTensors(
  tensors: ReadonlyMap<string, Tensor>,
  source: string,
): Map<string, Record<string, Tensor>> {
  const out = new Map<string, Record<string, Tensor>>();
  for (const [key, t] of tensors) {
    const m = /^(.+)\.(lora_a|lora_b|m)$/.exec(key);
    if (!m) {
      throw new TypeError(
        `Cannot load "${source}": tensor "${key}" is not an MLX LoRA/DoRA tensor (lora_a, lora_b, m)`,
      );
    }
    (out.get(m[1]!) ?? out.set(m[1]!, {}).get(m[1]!)!)[m[2]!] = t;
  }
  return out;
}

/**
 * Saves an adapter as an MLX-LM folder (lora_a = Aᵀ, lora_b = Bᵀ, `scale` = the LoRA scale),
 * atomically like {@link savePeftAdapter}. MLX has one rank and one scale for all layers, and no
 * biases or `modules_to_save`: adapters that need them are refused.
 *
 * @example
 * ```ts
 * import { saveMlxAdapter } from "./mlx.ts";
 * import { defaultPeftConfig } from "./config.ts";
 * import { tensor } from "../src/tensor.ts";
 * const layers = new Map([["model.layers.0.mlp.up_proj", { A: tensor("F32", [8, 4]), B: tensor("F32", [3, 8]) }]]);
 * const dir = (await Deno.makeTempDir()) + "/mlx";
 * await saveMlxAdapter(dir, { name: "a", config: defaultPeftConfig(), layers, biases: new Map(), extra: new Map() });
 * ```
 */
export async function saveMlxAdapter(dir: string, adapter: Adapter<Tensor>): Promise<void> {
  const where = `Cannot save adapter "${adapter.name}" to "${dir}" in MLX format`;
  checkAdapter(adapter, where);
  if (adapter.biases.size || adapter.extra.size) {
    throw new TypeError(`${where}: MLX adapters hold no biases or modules_to_save`);
  }
  const hypers = [...adapter.layers.keys()].map((m) => layerHyper(adapter.config, m));
  const { rank, scale } = hypers[0] ??
    { rank: adapter.config.r, scale: adapter.config.loraAlpha / adapter.config.r };
  if (hypers.some((h) => h.rank !== rank || h.scale !== scale)) {
    throw new RangeError(`${where}: its layers differ in rank or scale, MLX has one of each`);
  }
  const tensors = new Map<string, TensorInput>();
  for (const [module, t] of adapter.layers) {
    tensors.set(`${module}.lora_a`, transpose2d(t.A)).set(`${module}.lora_b`, transpose2d(t.B));
    if (t.magnitude) tensors.set(`${module}.m`, t.magnitude);
  }
  const c = adapter.config;
  // MLX matches `keys` exactly against names inside a block, not as PEFT's suffixes: derive them.
  const keys = blockKeys([...adapter.layers.keys()]);
  const config = {
    fine_tune_type: c.useDora ? "dora" : "lora",
    model: c.baseModelNameOrPath,
    num_layers: -1, // every block gets the wrapper; the blocks without tensors keep B = 0
    lora_parameters: { rank, scale, dropout: c.loraDropout, keys },
  };
  await writeFolderAtomic(dir, [MLX_CONFIG_FILE, MLX_WEIGHTS_FILE], async (folder) => {
    await writeSafetensors(`${folder}/${MLX_WEIGHTS_FILE}`, tensors);
    await writeFileAtomic(
      `${folder}/${MLX_CONFIG_FILE}`,
      new TextEncoder().encode(`${JSON.stringify(config, null, 4)}\n`),
    );
  });
}
