/**
 * What merging an adapter into a whole checkpoint changes, found by key alone (for
 * `merge_checkpoint.ts` only): no block template, no model code.
 *
 * - PEFT's keys name the module: `base_model.model.<module>.lora_A.weight` adapts the tensor
 *   `<module>.weight`; a trained bias replaces `<module>.bias`, a `modules_to_save` tensor the
 *   tensor of its own key (`peft/utils/save_and_load.py`).
 * - The weight's orientation comes from its stored shape: `[out, in]` (`nn.Linear`) or
 *   `[in, out]` (GPT-2's `Conv1D`, where PEFT sets `fan_in_fan_out`); a square weight follows the
 *   adapter's `fan_in_fan_out`, as PEFT does.
 * - Checkpoints saved from the bare model lack the task model's prefix (GPT-2's hub files say
 *   `h.0.attn.c_attn.weight` where PEFT on `GPT2LMHeadModel` says `transformer.h.0.attn.c_attn`):
 *   when every missing key is found with one prefix dropped or added, that prefix is used and
 *   noted, as `transformers` does with `base_model_prefix` when it loads such a file.
 *
 * @module
 */

import type { Adapter } from "../adapters/adapter.ts";
import { layerHyper } from "../adapters/config.ts";
import { peftKeys, peftPrefix } from "../src/lora/branch.ts";
import type { LayerAdapter } from "../src/lora/branch.ts";
import type { LinearLayer, Orientation } from "../src/models/model.ts";
import { formatShape, isFloat, sameShape, type Tensor, toFloat32 } from "../src/tensor.ts";
import type { Checkpoint } from "./_checkpoint_files.ts";
import type { LayerDelta, MergePlan } from "./merge.ts";

/** A merge plan over a checkpoint's keys, and what the planning had to decide. */
export interface CheckpointPlan {
  readonly merge: MergePlan;
  /** One sentence per decision a reader should know of (a prefix, an orientation). */
  readonly notes: readonly string[];
}

/**
 * Plans the merge of `adapter` into `ck`: throws, before anything is written, on a key the
 * checkpoint does not hold, a weight whose shape fits neither orientation, or a tensor that is
 * not floating point.
 */
export function planCheckpoint(ck: Checkpoint, adapter: Adapter, where: string): CheckpointPlan {
  const notes: string[] = [];
  const wanted = new Map<string, string>(); // tensor key → the adapter key that needs it
  for (const module of adapter.layers.keys()) wanted.set(`${module}.weight`, peftKeys(module).A);
  for (const module of adapter.biases.keys()) {
    const base = adapter.layers.has(module) ? "base_layer." : "";
    wanted.set(`${module}.bias`, `${peftPrefix(module)}.${base}bias`);
  }
  for (const key of adapter.extra.keys()) wanted.set(key, peftPrefix(key));
  const resolve = resolver(ck, wanted, where, notes);
  const entry = (key: string, what: string) => {
    const e = ck.tensors.get(key)!.entry;
    if (!isFloat(e.dtype)) {
      throw new TypeError(
        `${where}: ${what} tensor "${key}", which is ${e.dtype}; only floating-point tensors can be merged`,
      );
    }
    return e;
  };

  const deltas = new Map<string, LayerDelta>();
  const layers: LayerAdapter[] = [];
  const { config } = adapter;
  for (const [module, t] of adapter.layers) {
    const key = resolve(`${module}.weight`);
    const k = peftKeys(module);
    const e = entry(key, `"${k.A}" adapts`);
    const [n, m] = [t.A.shape[1]!, t.B.shape[0]!]; // in, out
    const orientation = orient(e.shape, n, m, config.fanInFanOut);
    if (!orientation) {
      throw new TypeError(
        `${where}: tensor "${key}" is ${formatShape(e.shape)}, but "${k.A}" ${
          formatShape(t.A.shape)
        } and "${k.B}" ${formatShape(t.B.shape)} need [${m}, ${n}] (or [${n}, ${m}] for a Conv1D)`,
      );
    }
    if (n !== m && (orientation === "in_out") !== config.fanInFanOut) {
      notes.push(
        `"${key}" is stored ${
          orientation === "in_out" ? "[in, out]" : "[out, in]"
        } although the adapter's fan_in_fan_out is ${config.fanInFanOut}: merged as stored`,
      );
    }
    const biasKey = ck.tensors.has(key.replace(/weight$/, "bias"))
      ? key.replace(/weight$/, "bias")
      : undefined;
    const layer: LinearLayer = {
      name: module,
      inFeatures: n,
      outFeatures: m,
      orientation,
      weightKey: key,
      ...(biasKey ? { biasKey } : {}),
      dtype: e.dtype,
    };
    const { rank, alpha, scale } = layerHyper(config, module);
    deltas.set(key, {
      layer,
      rank,
      scale,
      coef: scale,
      A: toFloat32(t.A).data,
      B: toFloat32(t.B).data,
      ...(t.magnitude ? { magnitude: toFloat32(t.magnitude).data } : {}),
    });
    layers.push({ layer, rank, alpha, scale, dora: config.useDora });
  }

  const replaced = new Map<string, Tensor<"F32">>();
  const replace = (key: string, t: Tensor, from: string) => {
    const e = entry(key, `"${from}" replaces`);
    if (!sameShape(e.shape, t.shape)) {
      throw new TypeError(
        `${where}: "${from}" is ${formatShape(t.shape)}, but tensor "${key}" is ${
          formatShape(e.shape)
        }`,
      );
    }
    if (deltas.has(key)) {
      throw new RangeError(`${where}: tensor "${key}" is both adapted and replaced whole`);
    }
    replaced.set(key, toFloat32(t));
  };
  for (const [module, bias] of adapter.biases) {
    replace(resolve(`${module}.bias`), bias, wanted.get(`${module}.bias`)!);
  }
  for (const [key, t] of adapter.extra) replace(resolve(key), t, wanted.get(key)!);
  return { merge: { adapter: adapter.name, deltas, replaced, layers }, notes };
}

/** The orientation a stored 2-D shape gives a layer `in → out`, or `null` if it fits neither. */
function orient(
  shape: readonly number[],
  n: number,
  m: number,
  fanInFanOut: boolean,
): Orientation | null {
  if (shape.length !== 2) return null;
  const outIn = shape[0] === m && shape[1] === n, inOut = shape[0] === n && shape[1] === m;
  if (outIn && inOut) return fanInFanOut ? "in_out" : "out_in";
  return outIn ? "out_in" : inOut ? "in_out" : null;
}

/**
 * Maps the adapter's tensor keys to the checkpoint's: the same key, or else one prefix dropped or
 * added for every key that is missing (see the module documentation). Throws naming the keys that
 * neither finds.
 */
function resolver(
  ck: Checkpoint,
  wanted: ReadonlyMap<string, string>,
  where: string,
  notes: string[],
): (key: string) => string {
  const has = (k: string) => ck.tensors.has(k);
  const missing = [...wanted.keys()].filter((k) => !has(k));
  if (missing.length === 0) return (key) => key;
  const first = missing[0]!;
  const dot = first.indexOf(".");
  const candidates: ((k: string) => string | null)[] = [];
  if (dot > 0) {
    const drop = first.slice(0, dot + 1);
    candidates.push((k) => k.startsWith(drop) ? k.slice(drop.length) : null);
  }
  for (const key of ck.tensors.keys()) {
    if (key.endsWith(`.${first}`)) {
      const add = key.slice(0, key.length - first.length);
      candidates.push((k) => add + k);
    }
  }
  for (const map of candidates) {
    if (
      missing.every((k) => {
        const m = map(k);
        return m !== null && has(m);
      })
    ) {
      const [from, to] = [first, map(first)!];
      notes.push(
        `the adapter's keys are matched to the checkpoint's with a different prefix ("${from}" is "${to}"), as transformers loads a checkpoint saved without its task head's prefix`,
      );
      return (key) => has(key) ? key : map(key)!;
    }
  }
  const listed = missing.slice(0, 4).map((k) => `"${k}" (for "${wanted.get(k)}")`).join(", ");
  const some = [...ck.tensors.keys()].slice(0, 3).map((k) => `"${k}"`).join(", ");
  throw new RangeError(
    `${where}: the checkpoint has no tensor ${listed}${
      missing.length > 4 ? ` and ${missing.length - 4} more` : ""
    }; its ${ck.tensors.size} tensors are named like ${some}`,
  );
}
