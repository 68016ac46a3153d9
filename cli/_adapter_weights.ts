/**
 * Adapter folders as the inference engine takes them, for `ffwd serve`. The
 * engine applies `scale·B·A` (and DoRA's ratio) per row; it cannot replace whole weights per row,
 * so an adapter that also trains `modules_to_save` or biases is refused here rather than served
 * without those tensors (which would silently give other outputs than PEFT's).
 *
 * Imported only by `serve.ts`.
 *
 * @module
 */

import { loadAdapter } from "../adapters/adapter.ts";
import { engineWeights } from "../adapters/weights.ts";
import type { AdapterWeights } from "../src/infer/engine.ts";
import type { BaseModel } from "../src/models/model.ts";

/**
 * Loads the adapter folder `dir` (PEFT or MLX-LM) into engine weights for `model`. Errors name the
 * adapter by its folder's name (the server's adapter names).
 *
 * @example
 * ```ts ignore
 * engine.register("rot45", await servableWeights("runs/rot45", model));
 * ```
 */
export async function servableWeights(dir: string, model: BaseModel): Promise<AdapterWeights> {
  return engineWeights(await loadAdapter(dir), model);
}
