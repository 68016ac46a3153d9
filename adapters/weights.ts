/**
 * Turns a loaded adapter (PEFT layout) into the per-layer weights the inference engine takes,
 * after matching it against the base.
 *
 * @module
 */

import type { AdapterWeights, LayerWeights } from "../src/infer/engine.ts";
import type { BaseModel } from "../src/models/model.ts";
import { toFloat32 } from "../src/tensor.ts";
import { type Adapter, loadAdapter, matchAdapter, type MatchOptions } from "./adapter.ts";

/**
 * The engine form of `adapter` on `model` (every tensor as float32; the scale per layer from its
 * rank, alpha and rsLoRA setting). The engine applies `scale·B·A` (and DoRA's ratio) per row and
 * cannot replace whole weights per row, so an adapter that also trains `modules_to_save` or
 * biases is refused rather than served without them (which would silently differ from PEFT).
 * `opts.where` starts every error message (default: `Cannot serve adapter "<name>"` for a refused
 * adapter, `Cannot load adapter "<name>"` for one that does not fit the model).
 *
 * @example
 * ```ts ignore
 * engine.register("rot45", engineWeights(await loadAdapter("runs/rot45"), model));
 * ```
 */
export function engineWeights(
  adapter: Adapter,
  model: Pick<BaseModel, "layers">,
  opts: MatchOptions = {},
): AdapterWeights {
  const unsupported = [
    ...(adapter.extra.size
      ? [`replaces ${[...adapter.extra.keys()].join(", ")} (modules_to_save)`]
      : []),
    ...(adapter.biases.size
      ? [`trains the biases of ${[...adapter.biases.keys()].join(", ")}`]
      : []),
  ];
  if (unsupported.length) {
    throw new TypeError(
      `${opts.where ?? `Cannot serve adapter "${adapter.name}"`}: it ${
        unsupported.join(" and ")
      }, which the hot-swap engine cannot apply per row; merge it into the base instead`,
    );
  }
  const match = matchAdapter(adapter, model, opts);
  const layers = new Map<string, LayerWeights>();
  for (const ad of match.layers) {
    const l = adapter.layers.get(ad.layer.name)!;
    layers.set(ad.layer.name, {
      A: toFloat32(l.A).data,
      B: toFloat32(l.B).data,
      rank: ad.rank,
      scale: ad.scale,
      magnitude: ad.dora && l.magnitude ? toFloat32(l.magnitude).data : undefined,
    });
  }
  return { layers };
}

/**
 * Engine weights from any form of an adapter: engine weights as they are, a loaded
 * {@linkcode Adapter} through {@linkcode engineWeights}, or an adapter folder (PEFT or MLX-LM),
 * loaded, named in errors as given and kept as the weights' `source`.
 *
 * @example
 * ```ts
 * import { adapterWeights } from "./weights.ts";
 * import { openSafetensorsModel } from "../src/models/blocks/safetensors_model.ts";
 * import { strictEqual } from "node:assert/strict";
 * const model = await openSafetensorsModel("fixtures/peft/legacy/base.safetensors");
 * const w = await adapterWeights("fixtures/peft/legacy", model);
 * strictEqual(w.source, "fixtures/peft/legacy");
 * model.close();
 * ```
 */
export async function adapterWeights(
  from: AdapterWeights | Adapter | string,
  model: Pick<BaseModel, "layers">,
  opts: MatchOptions = {},
): Promise<AdapterWeights> {
  if (typeof from === "string") {
    const adapter = await loadAdapter(from, { name: from });
    return { ...engineWeights(adapter, model, opts), source: from };
  }
  return "config" in from ? engineWeights(from, model, opts) : from;
}
