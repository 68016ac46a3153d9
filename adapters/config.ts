/**
 * PEFT's `adapter_config.json` for LoRA: reading it tolerantly, writing it as PEFT does, and
 * converting it to and from {@link TargetOptions}.
 *
 * Fields and defaults follow `peft/tuners/lora/config.py` (`LoraConfig`) and `peft/config.py`
 * (`PeftConfig`): `r` 8, `lora_alpha` 8, `target_modules` null, `bias` "none", patterns `{}`.
 * Reading tolerates what older and newer PEFT versions write: missing keys take PEFT's defaults
 * (configs from before DoRA and rsLoRA have no `use_dora` / `use_rslora` / `rank_pattern`), and
 * keys this module does not model are kept verbatim in `extra` and written back on save. Writing
 * mirrors `PeftConfigMixin.save_pretrained`: every field, keys sorted, two-space indent, plus the
 * other keys PEFT 0.19 writes with their defaults.
 *
 * @module
 */

import { z } from "npm:zod@4.6.7";
import { isNoTargets, patternValue, type TargetOptions } from "./targets.ts";
import { loraScale } from "../src/lora/branch.ts";
import { at, copy, type JsonValue, readJsonFile, sameJson, show, sortKeys } from "./_json.ts";

export type { JsonValue } from "./_json.ts";

/** A LoRA `adapter_config.json` with PEFT's defaults filled in (PEFT's names, in camelCase). */
export interface PeftConfig {
  /** `peft_type`: always `"LORA"`, as other PEFT methods are refused when read. */
  readonly peftType: "LORA";
  /** `r`: the default rank (PEFT's default 8). */
  readonly r: number;
  /** `lora_alpha`: the default alpha; the scale is `alpha / r` (PEFT's default 8). */
  readonly loraAlpha: number;
  /** Names (suffix match), one regular expression (whole-name match), or null (architecture default). */
  readonly targetModules: readonly string[] | string | null;
  /** `lora_dropout`: dropout probability on the adapter branch's input, in [0, 1]. */
  readonly loraDropout: number;
  /** `bias`: which biases train with the adapter: none, every bias, or the adapted layers'. */
  readonly bias: "none" | "all" | "lora_only";
  /** `use_rslora`: rank-stabilised scale `alpha / √r` instead of `alpha / r`. */
  readonly useRslora: boolean;
  /** `use_dora`: weight-decomposed LoRA, with a learned magnitude per output. */
  readonly useDora: boolean;
  /** The base stores weights [in, out] (GPT-2 `Conv1D`): only the delta is transposed. */
  readonly fanInFanOut: boolean;
  /** `rank_pattern`: ranks that override `r`, by regular expression matching a path's end. */
  readonly rankPattern: Readonly<Record<string, number>>;
  /** `alpha_pattern`: alphas that override `loraAlpha`, matched like `rankPattern`. */
  readonly alphaPattern: Readonly<Record<string, number>>;
  /** `init_lora_weights`: PEFT's initialisation scheme, kept and written back (default true). */
  readonly initLoraWeights: boolean | string;
  /** `modules_to_save`: modules trained and saved whole besides the adapter, or null. */
  readonly modulesToSave: readonly string[] | null;
  /** `layers_to_transform`: transformer layer indices to adapt (null: every layer). */
  readonly layersToTransform: readonly number[] | null;
  /** `layers_pattern`: PEFT's name of the layer list, kept and written back. */
  readonly layersPattern: readonly string[] | string | null;
  /** `base_model_name_or_path`: the base the adapter was trained on, when recorded. */
  readonly baseModelNameOrPath: string | null;
  /** `revision`: the base model's revision, when recorded. */
  readonly revision: string | null;
  /** `task_type`: PEFT's task type (`"CAUSAL_LM"`, …), when recorded. */
  readonly taskType: string | null;
  /** PEFT's class default is false; `save_pretrained` writes true. */
  readonly inferenceMode: boolean;
  /** Keys not modelled above, verbatim (values equal to PEFT's defaults are dropped). */
  readonly extra: Readonly<Record<string, JsonValue>>;
}

/** Other keys PEFT 0.19 writes, with their defaults: written when `extra` does not set them. */
const PEFT_EXTRA_DEFAULTS: Readonly<Record<string, JsonValue>> = {
  alora_invocation_tokens: null,
  arrow_config: null,
  auto_mapping: null,
  corda_config: null,
  ensure_weight_tying: false,
  eva_config: null,
  exclude_modules: null,
  layer_replication: null,
  loftq_config: {},
  lora_bias: false,
  lora_ga_config: null,
  megatron_config: null,
  megatron_core: "megatron.core",
  qalora_group_size: 16,
  target_parameters: null,
  trainable_token_indices: null,
  use_bdlora: null,
  use_qalora: false,
};

const names = z.union([z.array(z.string()), z.string()]).nullable().default(null);
const pattern = (value: z.ZodNumber) =>
  z.record(z.string(), value).nullable().default({}).transform((v) => v ?? {});

const SCHEMA = z.looseObject({
  peft_type: z.string().default("LORA"),
  r: z.number().int().min(1).default(8),
  lora_alpha: z.number().default(8),
  target_modules: names,
  lora_dropout: z.number().min(0).max(1).nullable().default(0).transform((v) => v ?? 0),
  bias: z.enum(["none", "all", "lora_only"]).nullable().default("none").transform((v) =>
    v ?? "none"
  ),
  use_rslora: z.boolean().default(false),
  use_dora: z.boolean().default(false),
  fan_in_fan_out: z.boolean().default(false),
  rank_pattern: pattern(z.number().int().min(1)),
  alpha_pattern: pattern(z.number()),
  init_lora_weights: z.union([z.boolean(), z.string()]).default(true),
  modules_to_save: z.array(z.string()).nullable().default(null),
  layers_to_transform: z.union([z.number().int().min(0), z.array(z.number().int().min(0))])
    .nullable().default(null),
  layers_pattern: names,
  base_model_name_or_path: z.string().nullable().default(null),
  revision: z.string().nullable().default(null),
  task_type: z.string().nullable().default(null),
  inference_mode: z.boolean().default(false),
});

/** What each field must be, for error messages. */
const RULES: Readonly<Record<string, string>> = {
  peft_type: `"LORA"`,
  r: "an integer >= 1",
  lora_alpha: "a number",
  target_modules: "a list of module names, a regular expression or null",
  lora_dropout: "a number in [0, 1]",
  bias: `"none", "all" or "lora_only"`,
  rank_pattern: "an object of integers >= 1",
  alpha_pattern: "an object of numbers",
  init_lora_weights: "a boolean or a string",
  modules_to_save: "a list of module names or null",
  layers_to_transform: "an integer >= 0, a list of them, or null",
  layers_pattern: "a name, a list of names or null",
};

const MODELLED = new Set(Object.keys(SCHEMA.shape));

/**
 * Validates a parsed `adapter_config.json`. Errors name `source` and the field:
 * `Cannot read "a/adapter_config.json": field "r" must be an integer >= 1, got 0`.
 *
 * @example
 * ```ts
 * import { parsePeftConfig } from "./config.ts";
 * import { strictEqual } from "node:assert/strict";
 * const config = parsePeftConfig({ peft_type: "LORA", r: 16, target_modules: ["q", "v"] });
 * strictEqual(config.loraAlpha, 8); // PEFT's default
 * ```
 */
export function parsePeftConfig(json: unknown, source = "adapter_config.json"): PeftConfig {
  const where = `Cannot read "${source}"`;
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new TypeError(`${where}: expected a JSON object, got ${show(json)}`);
  }
  const result = SCHEMA.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const field = issue.path.map(String).join(".");
    const rule = RULES[String(issue.path[0])] ?? "of another type";
    const wrongType = issue.code === "invalid_type" || issue.code === "invalid_union";
    const Err = wrongType ? TypeError : RangeError;
    throw new Err(`${where}: field "${field}" must be ${rule}, got ${show(at(json, issue.path))}`);
  }
  const c = result.data;
  if (c.peft_type.toUpperCase() !== "LORA") {
    throw new RangeError(
      `${where}: field "peft_type" is ${show(c.peft_type)}, ffwd reads "LORA" adapters`,
    );
  }
  for (const key of [...Object.keys(c.rank_pattern), ...Object.keys(c.alpha_pattern)]) {
    checkRegExp(key, where);
  }
  const extra: Record<string, JsonValue> = {};
  for (const [k, v] of Object.entries(c)) {
    if (MODELLED.has(k)) continue;
    if (k in PEFT_EXTRA_DEFAULTS && sameJson(v as JsonValue, PEFT_EXTRA_DEFAULTS[k]!)) continue;
    extra[k] = v as JsonValue;
  }
  const ltt = c.layers_to_transform;
  return {
    peftType: "LORA",
    r: c.r,
    loraAlpha: c.lora_alpha,
    targetModules: c.target_modules === NO_TARGETS_MARKER ? [] : c.target_modules,
    loraDropout: c.lora_dropout,
    bias: c.bias,
    useRslora: c.use_rslora,
    useDora: c.use_dora,
    fanInFanOut: c.fan_in_fan_out,
    rankPattern: c.rank_pattern,
    alphaPattern: c.alpha_pattern,
    initLoraWeights: c.init_lora_weights,
    modulesToSave: c.modules_to_save,
    layersToTransform: ltt === null ? null : typeof ltt === "number" ? [ltt] : ltt,
    layersPattern: c.layers_pattern,
    baseModelNameOrPath: c.base_model_name_or_path,
    revision: c.revision,
    taskType: c.task_type,
    inferenceMode: c.inference_mode,
    extra,
  };
}

/**
 * Reads and validates an `adapter_config.json`; a missing file, bad JSON or a bad field is an
 * error naming the file.
 *
 * @example
 * ```ts
 * import { readPeftConfig } from "./config.ts";
 * const config = await readPeftConfig("fixtures/peft/mlp_lora/adapter_config.json");
 * ```
 */
export async function readPeftConfig(path: string): Promise<PeftConfig> {
  return parsePeftConfig(await readJsonFile(path), path);
}

/**
 * PEFT's `DUMMY_TARGET_MODULES`: the `target_modules` of an adapter that puts LoRA on no layer
 * and trains only `modules_to_save` (`ffwd train --full`, `--targets none`). Written for an
 * empty list, read back as one.
 */
const NO_TARGETS_MARKER = "dummy-target-modules";

/**
 * The config as PEFT writes it: snake_case, every field, PEFT's other keys with their defaults,
 * keys sorted. `JSON.stringify(json, null, 2)` gives `save_pretrained`'s layout.
 *
 * @example
 * ```ts
 * import { defaultPeftConfig, peftConfigToJson } from "./config.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(peftConfigToJson(defaultPeftConfig({ r: 4 })).peft_type, "LORA");
 * ```
 */
export function peftConfigToJson(config: PeftConfig): Record<string, JsonValue> {
  const fields: Record<string, JsonValue> = {
    peft_type: "LORA",
    r: config.r,
    lora_alpha: config.loraAlpha,
    // PEFT refuses an empty list (no module matches it); its marker for no targets loads.
    target_modules: isNoTargets(config.targetModules)
      ? NO_TARGETS_MARKER
      : copy(config.targetModules),
    lora_dropout: config.loraDropout,
    bias: config.bias,
    use_rslora: config.useRslora,
    use_dora: config.useDora,
    fan_in_fan_out: config.fanInFanOut,
    rank_pattern: { ...config.rankPattern },
    alpha_pattern: { ...config.alphaPattern },
    init_lora_weights: config.initLoraWeights,
    modules_to_save: copy(config.modulesToSave),
    layers_to_transform: copy(config.layersToTransform),
    layers_pattern: copy(config.layersPattern),
    base_model_name_or_path: config.baseModelNameOrPath,
    revision: config.revision,
    task_type: config.taskType,
    inference_mode: config.inferenceMode,
  };
  return sortKeys({ ...PEFT_EXTRA_DEFAULTS, ...config.extra, ...fields }) as Record<
    string,
    JsonValue
  >;
}

/**
 * A config with PEFT's defaults, `inference_mode` true as `save_pretrained` writes it.
 *
 * @example
 * ```ts
 * import { defaultPeftConfig } from "./config.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(defaultPeftConfig({ r: 16, loraAlpha: 32 }).bias, "none");
 * ```
 */
export function defaultPeftConfig(overrides: Partial<PeftConfig> = {}): PeftConfig {
  return { ...parsePeftConfig({}), inferenceMode: true, ...overrides };
}

/**
 * The {@link TargetOptions} of a config. PEFT's `target_modules: null` means "the architecture's
 * default modules": pass the adapter's module names as `modules` to use them instead.
 *
 * @example
 * ```ts
 * import { defaultPeftConfig, toTargetOptions } from "./config.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const options = toTargetOptions(defaultPeftConfig({ targetModules: ["fc1"] }));
 * deepStrictEqual(options.targetModules, ["fc1"]);
 * ```
 */
export function toTargetOptions(config: PeftConfig, modules?: readonly string[]): TargetOptions {
  const targets = config.targetModules ?? modules;
  if (targets === undefined || targets.length === 0) {
    throw new RangeError(`Config field "target_modules" is null and no module names were given`);
  }
  return {
    targetModules: typeof targets === "string" ? targets : [...targets],
    r: config.r,
    loraAlpha: config.loraAlpha,
    useRslora: config.useRslora,
    useDora: config.useDora,
    layersToTransform: config.layersToTransform === null ? null : [...config.layersToTransform],
    rankPattern: { ...config.rankPattern },
    alphaPattern: { ...config.alphaPattern },
  };
}

/**
 * A config from {@link TargetOptions}, other fields from `rest` or PEFT's defaults.
 *
 * @example
 * ```ts
 * import { fromTargetOptions } from "./config.ts";
 * const config = fromTargetOptions({ targetModules: ["fc1"], r: 8, loraAlpha: 16 }, { baseModelNameOrPath: "mlp" });
 * ```
 */
export function fromTargetOptions(opts: TargetOptions, rest: Partial<PeftConfig> = {}): PeftConfig {
  const base = defaultPeftConfig(rest);
  return {
    ...base,
    targetModules: typeof opts.targetModules === "string"
      ? opts.targetModules
      : [...opts.targetModules],
    r: opts.r,
    loraAlpha: opts.loraAlpha,
    useRslora: opts.useRslora ?? false,
    useDora: opts.useDora ?? false,
    layersToTransform: opts.layersToTransform?.length ? [...opts.layersToTransform] : null,
    rankPattern: { ...opts.rankPattern },
    alphaPattern: { ...opts.alphaPattern },
  };
}

/**
 * Rank, alpha and scale of one module under `rank_pattern` / `alpha_pattern` (PEFT: a pattern
 * key matches the end of the module path, as a regular expression).
 *
 * @example
 * ```ts
 * import { defaultPeftConfig, layerHyper } from "./config.ts";
 * import { strictEqual } from "node:assert/strict";
 * const config = defaultPeftConfig({ r: 8, loraAlpha: 16, rankPattern: { fc2: 4 } });
 * strictEqual(layerHyper(config, "fc2").scale, 4);
 * ```
 */
export function layerHyper(
  config: PeftConfig,
  module: string,
): { rank: number; alpha: number; scale: number } {
  const rank = patternValue(module, config.rankPattern) ?? config.r;
  const alpha = patternValue(module, config.alphaPattern) ?? config.loraAlpha;
  return { rank, alpha, scale: loraScale(alpha, rank, config.useRslora) };
}

function checkRegExp(key: string, where: string): void {
  try {
    new RegExp(key);
  } catch (e) {
    throw new SyntaxError(
      `${where}: pattern key ${show(key)} is not a regular expression (${(e as Error).message})`,
    );
  }
}
