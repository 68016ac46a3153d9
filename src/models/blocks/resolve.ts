/**
 * Resolving a block spec against the tensors of a file: every key is looked up, every shape is
 * checked against the shapes the block's wiring implies, and the linear layers come out with their
 * sizes. Errors name the block, the file, the tensor, the expected and the actual shape.
 *
 * @module
 */

import type { LinearLayer, Orientation } from "../model.ts";
import { type DType, isFloat } from "../../tensor.ts";
import { type ActivationFn, ACTIVATIONS, type BlockSpec, type LayerSpec } from "./spec.ts";

/** What resolving needs to know of a tensor: a safetensors header entry fits. */
export interface TensorInfo {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
}

/** A block's LayerNorm or RMSNorm, with the keys of its tensors in the file. */
export interface ResolvedNorm {
  /** LayerNorm (mean and variance) or RMSNorm (root mean square only). */
  readonly kind: "layer_norm" | "rms_norm";
  /** Tensor key of the scale. */
  readonly weightKey: string;
  /** Tensor key of the shift, when there is one. */
  readonly biasKey?: string;
  /** Added to the variance for stability (default 1e-5). */
  readonly eps: number;
  /** `"pre"` normalises the input, `f(norm(x)) + x`; `"post"` the sum, `norm(f(x) + x)`. */
  readonly position: "pre" | "post";
}

/** A block spec checked against a file, with the sizes of its layers. */
export interface ResolvedBlock {
  /** Block name (`""` for a block at the root of the file). */
  readonly name: string;
  /** Layers in order, or `down(act(gate(x)) * up(x))` (see `spec.ts`). */
  readonly form: "sequential" | "gated";
  /** Sequential: the layers in order. Gated: gate, up, down. */
  readonly layers: readonly LinearLayer[];
  /** Sequential: the activation after each layer (`null`: none). Gated: `[act]`. */
  readonly activations: readonly (ActivationFn | null)[];
  /** Width of the block's input. */
  readonly inFeatures: number;
  /** Width of the block's output. */
  readonly outFeatures: number;
  /** Whether the block adds its input to its output (`y + x`). */
  readonly residual: boolean;
  /** The normalisation, when the block has one. */
  readonly norm?: ResolvedNorm;
  /** Every tensor key the block reads. */
  readonly keys: readonly string[];
}

const fmt = (s: readonly number[]) => `[${s.join(", ")}]`;

/**
 * Checks `spec` against the tensors of a file and returns the block with its layer sizes.
 * `source` names the file in errors.
 *
 * @example
 * ```ts
 * import { resolveBlock } from "./resolve.ts";
 * import { strictEqual } from "node:assert/strict";
 * const tensors = new Map([
 *   ["fc1.weight", { name: "fc1.weight", dtype: "F32" as const, shape: [16, 8] }],
 *   ["fc2.weight", { name: "fc2.weight", dtype: "F32" as const, shape: [4, 16] }],
 * ]);
 * const block = resolveBlock({
 *   form: "sequential",
 *   layers: [{ name: "fc1", activation: "relu" }, { name: "fc2" }],
 * }, tensors, "mlp.safetensors");
 * strictEqual(block.inFeatures, 8);
 * ```
 */
export function resolveBlock(
  spec: BlockSpec,
  tensors: ReadonlyMap<string, TensorInfo>,
  source: string,
): ResolvedBlock {
  const name = spec.name ?? "";
  const where = `Cannot load block ${blockLabel(name)} from "${source}"`;
  const fail = (msg: string): never => {
    throw new TypeError(`${where}: ${msg}`);
  };
  const keys: string[] = [];
  const tensor = (key: string, what: string): TensorInfo => {
    const t = tensors.get(key);
    if (!t) fail(`tensor "${key}" (${what}) is missing`);
    if (!isFloat(t!.dtype)) fail(`tensor "${key}" has dtype ${t!.dtype}, expected a float dtype`);
    keys.push(key);
    return t!;
  };
  const shapeIs = (t: TensorInfo, want: readonly number[]) => {
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
      fail(`tensor "${t.name}" has shape ${fmt(t.shape)}, expected ${fmt(want)}`);
    }
  };
  /** Resolves a layer; `inFeatures` / `outFeatures` are the sizes its wiring requires, if known. */
  const linear = (l: LayerSpec, inF?: number, outF?: number): LinearLayer => {
    const orientation: Orientation = l.orientation ?? "out_in";
    const w = tensor(l.weight ?? `${l.name}.weight`, `weight of layer "${l.name}"`);
    if (w.shape.length !== 2) {
      fail(`tensor "${w.name}" has shape ${fmt(w.shape)}, expected a matrix (layer "${l.name}")`);
    }
    const [a, b] = w.shape as [number, number];
    const [out, inn] = orientation === "out_in" ? [a, b] : [b, a];
    const wantIn = inF ?? inn;
    const wantOut = outF ?? out;
    shapeIs(w, orientation === "out_in" ? [wantOut, wantIn] : [wantIn, wantOut]);
    const biasKey = l.bias === undefined
      ? (tensors.has(`${l.name}.bias`) ? `${l.name}.bias` : undefined)
      : l.bias ?? undefined;
    if (biasKey) shapeIs(tensor(biasKey, `bias of layer "${l.name}"`), [out]);
    return {
      name: l.name,
      inFeatures: inn,
      outFeatures: out,
      orientation,
      weightKey: w.name,
      ...(biasKey ? { biasKey } : {}),
      dtype: w.dtype,
    };
  };

  let layers: LinearLayer[];
  let activations: (ActivationFn | null)[];
  if (spec.form === "sequential") {
    layers = [];
    for (const l of spec.layers) layers.push(linear(l, layers.at(-1)?.outFeatures));
    activations = spec.layers.map((l) => (l.activation ? ACTIVATIONS[l.activation] : null));
  } else {
    const gate = linear(spec.gate);
    const up = linear(spec.up, gate.inFeatures, gate.outFeatures);
    const down = linear(spec.down, gate.outFeatures);
    layers = [gate, up, down];
    activations = [ACTIVATIONS[spec.activation]];
  }
  const inFeatures = layers[0]!.inFeatures;
  const outFeatures = layers.at(-1)!.outFeatures;
  const residual = spec.residual ?? false;
  if (residual && inFeatures !== outFeatures) {
    fail(
      `cannot add the residual: the block maps ${inFeatures} features to ${outFeatures}, expected equal sizes`,
    );
  }
  let norm: ResolvedNorm | undefined;
  if (spec.norm) {
    const position = spec.norm.position ?? "post";
    const size = position === "pre" ? inFeatures : outFeatures;
    shapeIs(tensor(spec.norm.weight, "norm weight"), [size]);
    if (spec.norm.bias) shapeIs(tensor(spec.norm.bias, "norm bias"), [size]);
    norm = {
      kind: spec.norm.kind,
      weightKey: spec.norm.weight,
      ...(spec.norm.bias ? { biasKey: spec.norm.bias } : {}),
      eps: spec.norm.eps ?? 1e-5,
      position,
    };
  }
  return {
    name,
    form: spec.form,
    layers,
    activations,
    inFeatures,
    outFeatures,
    residual,
    ...(norm ? { norm } : {}),
    keys,
  };
}

/**
 * How a block name reads in messages: `"model.layers.3.mlp"`, or `(root)` for `""`.
 *
 * @example
 * ```ts
 * import { blockLabel } from "./resolve.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(blockLabel(""), "(root)");
 * ```
 */
export function blockLabel(name: string): string {
  return name === "" ? "(root)" : `"${name}"`;
}
