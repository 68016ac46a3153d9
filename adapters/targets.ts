/**
 * Which linear layers get an adapter, and with what rank and alpha: PEFT's `target_modules`,
 * `layers_to_transform`, `rank_pattern` and `alpha_pattern` semantics.
 *
 * - a list of names matches a layer whose name equals an entry or ends with `.` + entry;
 * - a single string is a regular expression that must match the whole name;
 * - `"all-linear"` takes every linear layer except a classifier head (the last layer of a
 *   whole-model MLP; a transformer block has none), as PEFT excludes the output layer;
 * - an empty list (`ffwd train --targets none`) takes none on purpose: every layer stays
 *   without an adapter, and what trains is `modules_to_save` (`--full`: every linear layer).
 *
 * A selection that matches nothing is an error listing the available layers.
 *
 * @module
 */

import type { BaseModel, LinearLayer } from "../src/models/model.ts";
import { type LayerAdapter, loraScale } from "../src/lora/branch.ts";

/** How layers are chosen and sized (PEFT's names, in camelCase). */
export interface TargetOptions {
  /** Names (suffix match), one regular expression (whole-name match), or `"all-linear"`. */
  targetModules: readonly string[] | string;
  /** Default rank, an integer >= 1. */
  r: number;
  /** Default alpha; the scale is `alpha / r`. */
  loraAlpha: number;
  /** Scale `alpha / √r` (rsLoRA) instead of `alpha / r` (default false). */
  useRslora?: boolean;
  /** Make every adapted layer DoRA (default false). */
  useDora?: boolean;
  /** Keep only layers whose transformer index (`layers.3`) is listed; null or empty keeps all. */
  layersToTransform?: readonly number[] | null;
  /** Ranks that override `r`, by regular expression matching the end of a module path. */
  rankPattern?: Readonly<Record<string, number>>;
  /** Alphas that override `loraAlpha`, matched like `rankPattern`. */
  alphaPattern?: Readonly<Record<string, number>>;
  /** Receives advice that does not stop planning (a rank above min(in, out)); silent if absent. */
  onWarning?: (message: string) => void;
}

/**
 * Whether a `target_modules` value is PEFT's `"all-linear"` (as a string, or a list of it alone).
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { isAllLinear } from "./targets.ts";
 * strictEqual(isAllLinear(["all-linear"]) && !isAllLinear("fc1|fc2"), true);
 * ```
 */
export function isAllLinear(targets: readonly string[] | string | null): boolean {
  return targets === "all-linear" ||
    (Array.isArray(targets) && targets.length === 1 && targets[0] === "all-linear");
}

/**
 * Whether a `target_modules` value puts no adapter on any layer on purpose: an empty list, as
 * `ffwd train --targets none` and `--full` give.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { isNoTargets } from "./targets.ts";
 * strictEqual(isNoTargets([]) && !isNoTargets("") && !isNoTargets(null), true);
 * ```
 */
export function isNoTargets(targets: readonly string[] | string | null): boolean {
  return Array.isArray(targets) && targets.length === 0;
}

/**
 * Whether a list of module names names `layer`: an entry equal to its path or to a dotted suffix
 * of it (`mlp.fc1` and `fc1` name `model.mlp.fc1`), as PEFT matches `target_modules` lists and
 * `modules_to_save`.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { namesLayer } from "./targets.ts";
 * strictEqual(namesLayer(["fc1"], "model.fc1") && !namesLayer(["c1"], "model.fc1"), true);
 * ```
 */
export function namesLayer(entries: readonly string[], layer: string): boolean {
  return entries.some((m) => layer === m || layer.endsWith(`.${m}`));
}

/** Layers a `target_modules` value selects, in model order (none for an empty list). */
export function selectLayers(
  model: Pick<BaseModel, "layers" | "block">,
  targets: readonly string[] | string,
  layersToTransform?: readonly number[] | null,
): LinearLayer[] {
  const layers = model.layers;
  if (isNoTargets(targets)) return [];
  let chosen: LinearLayer[];
  if (isAllLinear(targets)) {
    chosen = model.block === undefined && layers.length > 1 ? layers.slice(0, -1) : [...layers];
  } else if (typeof targets === "string") {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${targets})$`);
    } catch (e) {
      throw new SyntaxError(
        `Invalid target_modules regular expression ${JSON.stringify(targets)}: ${
          (e as Error).message
        }`,
      );
    }
    chosen = layers.filter((l) => re.test(l.name));
  } else {
    chosen = layers.filter((l) => namesLayer(targets as readonly string[], l.name));
  }
  if (layersToTransform && layersToTransform.length) {
    const keep = new Set(layersToTransform);
    chosen = chosen.filter((l) => {
      const idx = layerIndex(l.name);
      return idx !== undefined && keep.has(idx);
    });
  }
  if (chosen.length === 0) {
    throw new RangeError(
      `Target modules ${JSON.stringify(targets)}${
        layersToTransform?.length
          ? ` with layers_to_transform [${layersToTransform.join(", ")}]`
          : ""
      } match no linear layer; available layers: ${layers.map((l) => l.name).join(", ")}`,
    );
  }
  return chosen;
}

/**
 * `text` with every regular-expression metacharacter escaped, so that it matches itself: a module
 * path as a `target_modules` or `rank_pattern` regular expression (dots literal).
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { escapeRegExp } from "./targets.ts";
 * strictEqual(escapeRegExp("layers.0.fc(1)"), "layers\\.0\\.fc\\(1\\)");
 * strictEqual(new RegExp(`^${escapeRegExp("a.b")}$`).test("aXb"), false);
 * ```
 */
export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The transformer layer index in a module path (`model.layers.3.mlp.up_proj` → 3). */
export function layerIndex(name: string): number | undefined {
  const m = /(?:^|\.)(?:layers|layer|h|blocks|block)\.(\d+)(?:\.|$)/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/**
 * The value of the first `rank_pattern` / `alpha_pattern` key that matches `name` (PEFT: the key
 * is a regular expression matching the end of the module path).
 */
export function patternValue(
  name: string,
  patterns: Readonly<Record<string, number>> | undefined,
): number | undefined {
  for (const [key, v] of Object.entries(patterns ?? {})) {
    if (new RegExp(`^(?:.*\\.)?(?:${key})$`).test(name)) return v;
  }
  return undefined;
}

/**
 * The adapters a configuration puts on a model.
 *
 * @example
 * ```ts
 * import { planAdapters } from "./targets.ts";
 * import { strictEqual } from "node:assert/strict";
 * const layer = { name: "fc1", inFeatures: 4, outFeatures: 8, orientation: "out_in" as const, weightKey: "fc1.weight", dtype: "F32" as const };
 * const options = { targetModules: ["fc1"], r: 8, loraAlpha: 16 };
 * const [plan] = planAdapters({ layers: [layer] }, options);
 * strictEqual(plan!.scale, 2);
 * ```
 */
export function planAdapters(
  model: Pick<BaseModel, "layers" | "block">,
  opts: TargetOptions,
): LayerAdapter[] {
  if (!Number.isInteger(opts.r) || opts.r < 1) {
    throw new RangeError(`Invalid LoRA rank ${opts.r}: expected an integer >= 1`);
  }
  return selectLayers(model, opts.targetModules, opts.layersToTransform).map((layer) => {
    const rank = patternValue(layer.name, opts.rankPattern) ?? opts.r;
    const alpha = patternValue(layer.name, opts.alphaPattern) ?? opts.loraAlpha;
    if (rank > Math.min(layer.inFeatures, layer.outFeatures)) {
      // PEFT allows it; it wastes parameters, so say so without failing.
      opts.onWarning?.(
        `rank ${rank} exceeds min(in, out) = ${
          Math.min(layer.inFeatures, layer.outFeatures)
        } for "${layer.name}": the extra rank adds parameters, not expressiveness`,
      );
    }
    return {
      layer,
      rank,
      alpha,
      scale: loraScale(alpha, rank, opts.useRslora ?? false),
      dora: opts.useDora ?? false,
    };
  });
}
