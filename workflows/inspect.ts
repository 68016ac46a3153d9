/**
 * What `ffwd inspect <adapter folder>` shows, as one JSON-able object: the format, the LoRA
 * configuration in PEFT's terms (rank, alpha, scale, targets, DoRA / rsLoRA), each adapted layer
 * with its own rank and scale, and the weights file's tensors as stored (name, dtype, shape).
 *
 * A PEFT folder is described from its config and the safetensors header alone (no tensor data is
 * read); an MLX-LM folder is converted first, so its layers and scale are given in PEFT's terms
 * while its tensor table keeps MLX's own names. The command itself lives in `cli/`.
 *
 * @module
 */

import { inspectSafetensors, type LazyTensor, openSafetensors } from "../src/io/safetensors.ts";
import type { DType } from "../src/tensor.ts";
import { type AdapterKind, detectAdapterKind } from "../adapters/adapter.ts";
import { layerHyper, type PeftConfig, readPeftConfig } from "../adapters/config.ts";
import { loadMlxAdapter, type LoadMlxOptions, MLX_WEIGHTS_FILE } from "../adapters/mlx.ts";
import { loraScale } from "../src/lora/branch.ts";
import { fromPeftStateDict, PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE } from "../adapters/peft.ts";
import { checkAdapter, listFolder } from "../adapters/folder.ts";

/** The description of an adapter folder. */
export interface AdapterSummary {
  /** Told from the weights file's name (see {@linkcode detectAdapterKind}). */
  readonly kind: AdapterKind;
  /** The folder, as given. */
  readonly path: string;
  /** Files in the folder, sorted. */
  readonly files: readonly string[];
  /** The configuration in PEFT's terms (MLX-LM folders converted). */
  readonly config: {
    readonly rank: number;
    readonly alpha: number;
    /** `alpha / rank`, or `alpha / √rank` with rsLoRA (`layers` has each layer's own). */
    readonly scale: number;
    readonly targetModules: readonly string[] | string | null;
    readonly layersToTransform: readonly number[] | null;
    readonly dora: boolean;
    readonly rslora: boolean;
    readonly dropout: number;
    readonly bias: string;
    readonly fanInFanOut: boolean;
    readonly rankPattern: Readonly<Record<string, number>>;
    readonly alphaPattern: Readonly<Record<string, number>>;
    readonly modulesToSave: readonly string[] | null;
    readonly baseModel: string | null;
    readonly taskType: string | null;
  };
  /** Adapted modules in file order, with their own rank, alpha and scale. */
  readonly layers: readonly { module: string; rank: number; alpha: number; scale: number }[];
  /** The weights file's tensors as stored. */
  readonly tensors: readonly { name: string; dtype: DType; shape: readonly number[] }[];
  /** Total number of elements over all tensors. */
  readonly parameters: number;
}

/**
 * Describes a PEFT or MLX-LM adapter folder; errors are the loaders' (naming the file).
 *
 * @example
 * ```ts
 * import { inspectAdapter } from "./inspect.ts";
 * const summary = await inspectAdapter("fixtures/peft/mlp_lora");
 * console.log(summary.kind, summary.config.rank, summary.tensors.length);
 * ```
 */
export async function inspectAdapter(
  dir: string,
  options: LoadMlxOptions = {},
): Promise<AdapterSummary> {
  const kind = await detectAdapterKind(dir);
  const files = [...await listFolder(dir, `Cannot inspect adapter "${dir}"`)].sort();
  const weights = `${dir}/${kind === "peft" ? PEFT_WEIGHTS_FILE : MLX_WEIGHTS_FILE}`;
  const header = await inspectSafetensors(weights);
  let config: PeftConfig;
  let modules: string[];
  if (kind === "peft") {
    const configPath = `${dir}/${PEFT_CONFIG_FILE}`;
    config = await readPeftConfig(configPath);
    using file = await openSafetensors(weights);
    const lazy = new Map<string, LazyTensor>(
      file.header.tensors.map((
        e,
      ) => [e.name, { dtype: e.dtype, shape: e.shape, load: () => file.readTensor(e.name) }]),
    );
    const parts = fromPeftStateDict(lazy, config, weights);
    checkAdapter(
      { name: dir, config, ...parts },
      `Cannot inspect "${weights}" with "${configPath}"`,
    );
    modules = [...parts.layers.keys()];
  } else {
    const adapter = await loadMlxAdapter(dir, options);
    config = adapter.config;
    modules = [...adapter.layers.keys()];
  }
  const layers = modules.map((module) => ({ module, ...layerHyper(config, module) }));
  return {
    kind,
    path: dir,
    files,
    config: {
      rank: config.r,
      alpha: config.loraAlpha,
      scale: loraScale(config.loraAlpha, config.r, config.useRslora),
      targetModules: config.targetModules,
      layersToTransform: config.layersToTransform,
      dora: config.useDora,
      rslora: config.useRslora,
      dropout: config.loraDropout,
      bias: config.bias,
      fanInFanOut: config.fanInFanOut,
      rankPattern: config.rankPattern,
      alphaPattern: config.alphaPattern,
      modulesToSave: config.modulesToSave,
      baseModel: config.baseModelNameOrPath,
      taskType: config.taskType,
    },
    layers,
    tensors: header.tensors.map(({ name, dtype, shape }) => ({ name, dtype, shape })),
    parameters: header.parameters,
  };
}
