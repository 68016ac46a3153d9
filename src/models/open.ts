/**
 * Opens a base model from a path, whatever its format: `.onnx` (ONNX), `.safetensors` (HF
 * layouts, block spec), or a TF.js `model.json` (or the folder holding it).
 *
 * @module
 */

import { openSafetensorsModel } from "./blocks/safetensors_model.ts";
import { openOnnxModel } from "./onnx/import.ts";
import { openTfjsModel } from "./tfjs.ts";
import type { BaseModel } from "./model.ts";

/** Options of {@link openModel}. */
export interface OpenModelOptions {
  /** Block to use in a file with several (`model.layers.3.mlp`). */
  block?: string;
  /** Block spec file (JSON) for safetensors files with no recognised layout. */
  spec?: string;
  /**
   * ONNX and TF.js: end the model at this value instead of the first output (another output, or
   * the logits a final Softmax reads: `dense_1/BiasAdd` in a converted TF.js model).
   */
  output?: string;
}

/**
 * Opens a model, dispatching on the file's kind.
 *
 * @example
 * ```ts ignore
 * const model = await openModel("fixtures/mnist/base.safetensors");
 * console.log(model.layers.map((l) => l.name));
 * ```
 */
export async function openModel(path: string, opts: OpenModelOptions = {}): Promise<BaseModel> {
  const lower = path.toLowerCase();
  if (lower.endsWith(".onnx")) {
    if (opts.block) {
      throw new TypeError(
        `Cannot select block "${opts.block}" in ONNX model "${path}": ONNX models are one block`,
      );
    }
    return await openOnnxModel(path, { output: opts.output });
  }
  if (lower.endsWith(".safetensors")) {
    if (opts.output !== undefined) {
      throw new TypeError(
        `Cannot choose output "${opts.output}" of "${path}": only ONNX and TF.js models can end elsewhere`,
      );
    }
    return await openSafetensorsModel(path, { block: opts.block, spec: opts.spec });
  }
  let isDir = false;
  try {
    isDir = (await Deno.stat(path)).isDirectory;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`Cannot open model "${path}": no such file`);
    }
    throw e;
  }
  if (lower.endsWith(".json") || isDir) return await openTfjsModel(path, { output: opts.output });
  throw new TypeError(
    `Cannot open model "${path}": unknown format; expected a .onnx file, a .safetensors file or a TF.js model.json`,
  );
}
