/**
 * Seeded random adapters for any base, as trained ones look (B non-zero), for the merge and
 * export tests and benchmarks. Imported by tests and `bench/merge_bench.ts` only.
 *
 * @module
 */

import type { BaseModel } from "../src/models/model.ts";
import { Rng } from "../src/rng.ts";
import type { Tensor } from "../src/tensor.ts";
import type { Adapter, AdapterLayer } from "../adapters/adapter.ts";
import { defaultPeftConfig } from "../adapters/config.ts";
import { escapeRegExp } from "../adapters/targets.ts";

/** Options of {@linkcode randomAdapter}. */
export interface RandomAdapterOptions {
  readonly name?: string;
  /** Rank of every layer (default 2, capped at the layer's smaller side). */
  readonly r?: number;
  readonly alpha?: number;
  readonly seed?: number;
  readonly dora?: boolean;
  /** Layers to adapt (default all). */
  readonly layers?: readonly string[];
  /** Standard deviation of B (default 0.2). */
  readonly bScale?: number;
}

/**
 * A LoRA (or DoRA) adapter on `model`'s layers with A ~ U(±1/√in), B ~ N(0, bScale²) and, for
 * DoRA, magnitudes near 1.
 *
 * @example
 * ```ts ignore
 * const adapter = randomAdapter(model, { r: 4, seed: 1 });
 * ```
 */
export function randomAdapter(
  model: Pick<BaseModel, "layers">,
  opts: RandomAdapterOptions = {},
): Adapter {
  const rng = new Rng(opts.seed ?? 0);
  const r = opts.r ?? 2;
  const targets = model.layers.filter((l) => !opts.layers || opts.layers.includes(l.name));
  const layers = new Map<string, AdapterLayer>();
  const rankPattern: Record<string, number> = {};
  for (const l of targets) {
    const k = Math.min(r, l.inFeatures, l.outFeatures);
    if (k !== r) rankPattern[escapeRegExp(l.name)] = k;
    const bound = 1 / Math.sqrt(l.inFeatures);
    const A = rng.fillUniform(new Float32Array(k * l.inFeatures), -bound, bound) as Float32Array;
    const B = rng.fillNormal(new Float32Array(l.outFeatures * k), 0, opts.bScale ?? 0.2);
    const t = (shape: number[], data: Float32Array): Tensor =>
      ({ dtype: "F32", shape, data }) as Tensor;
    layers.set(l.name, {
      A: t([k, l.inFeatures], A),
      B: t([l.outFeatures, k], B as Float32Array),
      ...(opts.dora
        ? {
          magnitude: t(
            [l.outFeatures],
            rng.fillUniform(new Float32Array(l.outFeatures), 0.5, 1.5) as Float32Array,
          ),
        }
        : {}),
    });
  }
  return {
    name: opts.name ?? "random",
    config: defaultPeftConfig({
      r,
      loraAlpha: opts.alpha ?? 2 * r,
      targetModules: targets.map((l) => l.name),
      useDora: opts.dora ?? false,
      rankPattern,
    }),
    layers,
    biases: new Map(),
    extra: new Map(),
  };
}
