/**
 * LoRA, rsLoRA and DoRA branches with PEFT's semantics, attached to a base model through its
 * linear hook.
 *
 * - LoRA (Hu et al., 2021, arXiv:2106.09685): `y' = y + scale · B·A·x`, A [r, in], B [out, r],
 *   `scale = lora_alpha / r`; rsLoRA (Kalajdzievski, 2023, arXiv:2312.03732): `lora_alpha / √r`.
 * - DoRA (Liu et al., 2024, arXiv:2402.09353), as PEFT computes it: with `n = ‖W + scale·B·A‖`
 *   per output (`doraNorm` in `delta.ts`, which serving and merging use too), detached from the
 *   backward, `y' = b + (m / n) · (x·Wᵀ + scale·B·A·x)`.
 * - Weights stored [in, out] (GPT-2 Conv1D, ONNX MatMul initializers) keep A and B in the Linear
 *   layout: only the delta is transposed (PEFT's `fan_in_fan_out`).
 *
 * A and B (and DoRA's magnitude) are graph inputs named by their PEFT keys, so one compiled graph
 * serves every adapter of the same shapes: training feeds the current values each step, and
 * inference swaps adapters by feeding other tensors.
 *
 * @module
 */

import type { Graph, Value } from "../engine/graph.ts";
import { add, div, mul, sub } from "../engine/ops/elementwise.ts";
import { gemm, matmul } from "../engine/ops/matmul.ts";
import { detach } from "../engine/ops/detach.ts";
import { transpose } from "../engine/ops/shape.ts";
import type { LinearHook, LinearLayer, LinearSite } from "../models/model.ts";
import { Rng } from "../rng.ts";
import type { Tensor } from "../tensor.ts";
import { doraNorm } from "./delta.ts";

/** The adapter of one linear layer. */
export interface LayerAdapter {
  /** The base layer adapted. */
  readonly layer: LinearLayer;
  /** The rank r of this layer's branch. */
  readonly rank: number;
  /** `lora_alpha` of this layer (after `alpha_pattern`). */
  readonly alpha: number;
  /** `alpha / rank`, or `alpha / √rank` for rsLoRA. */
  readonly scale: number;
  /** Whether the layer is DoRA (it then has a magnitude input). */
  readonly dora: boolean;
}

/**
 * PEFT's key prefix of a module's adapter tensors (PEFT's saved state dict drops the adapter name).
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { peftPrefix } from "./branch.ts";
 * deepStrictEqual(peftPrefix("fc1"), "base_model.model.fc1");
 * ```
 */
export function peftPrefix(module: string): string {
  return `${PEFT_PREFIX}${module}`;
}

/** What PEFT puts before every module path in its files: the path of the wrapped model. */
export const PEFT_PREFIX = "base_model.model.";

/** `<module>.lora_A[.<adapter name>].weight` */
const LORA_KEY = /^(.+)\.lora_(A|B)(?:\.[^.]+)?\.weight$/;
/** `<module>.lora_magnitude_vector[.<adapter name>][.weight]` */
const MAGNITUDE_KEY = /^(.+)\.lora_magnitude_vector(?:\.(?!weight$)[^.]+)?(?:\.weight)?$/;

/**
 * The module and role of a LoRA tensor's key, with or without {@link PEFT_PREFIX} and the adapter
 * name that some writers keep (`….lora_A.default.weight`); `undefined` for any other key.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { parsePeftKey } from "./branch.ts";
 * deepStrictEqual(parsePeftKey("base_model.model.fc1.lora_A.default.weight"), {
 *   module: "fc1",
 *   role: "A",
 * });
 * deepStrictEqual(parsePeftKey("fc1.lora_magnitude_vector"), { module: "fc1", role: "magnitude" });
 * deepStrictEqual(parsePeftKey("fc1.bias"), undefined);
 * ```
 */
export function parsePeftKey(
  key: string,
): { module: string; role: "A" | "B" | "magnitude" } | undefined {
  const k = key.startsWith(PEFT_PREFIX) ? key.slice(PEFT_PREFIX.length) : key;
  let m: RegExpExecArray | null;
  if ((m = LORA_KEY.exec(k))) return { module: m[1]!, role: m[2] === "A" ? "A" : "B" };
  if ((m = MAGNITUDE_KEY.exec(k))) return { module: m[1]!, role: "magnitude" };
  return undefined;
}

/**
 * PEFT keys of one layer's adapter tensors.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { peftKeys } from "./branch.ts";
 * deepStrictEqual(peftKeys("fc1").A, "base_model.model.fc1.lora_A.weight");
 * ```
 */
export function peftKeys(module: string): { A: string; B: string; magnitude: string } {
  const p = peftPrefix(module);
  return {
    A: `${p}.lora_A.weight`,
    B: `${p}.lora_B.weight`,
    magnitude: `${p}.lora_magnitude_vector`,
  };
}

/**
 * Scale of a LoRA branch: `alpha / r`, or `alpha / √r` with rsLoRA.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { loraScale } from "./branch.ts";
 * deepStrictEqual(loraScale(16, 8, false), 2);
 * deepStrictEqual(loraScale(16, 4, true), 8);
 * ```
 */
export function loraScale(alpha: number, rank: number, rslora: boolean): number {
  return rslora ? alpha / Math.sqrt(rank) : alpha / rank;
}

/** Graph inputs of one layer's adapter. */
export interface AdapterInputs {
  /** LoRA A, `[r, in]`, named `base_model.model.<layer>.lora_A.weight`. */
  readonly A: Value;
  /** LoRA B, `[out, r]`, named `base_model.model.<layer>.lora_B.weight`. */
  readonly B: Value;
  /** DoRA magnitude `[out]`, or `null` for a LoRA layer. */
  readonly magnitude: Value | null;
}

/** Options of {@link loraHook}. */
export interface LoraHookOptions {
  /** Dropout on the branch input: a function that applies it (it owns the mask inputs). */
  dropout?: (x: Value, adapter: LayerAdapter) => Value;
}

/**
 * A linear hook that adds each adapter's branch, declaring A, B (and the DoRA magnitude) as
 * graph inputs named by their PEFT keys. `declared` receives the inputs it created.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { Graph } from "../engine/graph.ts";
 * import { type AdapterInputs, loraHook } from "./branch.ts";
 * import { planAdapters } from "../../adapters/targets.ts";
 * import { openSafetensorsModel } from "../models/blocks/safetensors_model.ts";
 * const model = await openSafetensorsModel("fixtures/mnist/base.safetensors");
 * const adapters = planAdapters(model, { targetModules: ["fc1"], r: 4, loraAlpha: 8 });
 * const declared = new Map<string, AdapterInputs>();
 * model.build(new Graph(), { hook: loraHook(adapters, declared) });
 * deepStrictEqual(declared.get("fc1")!.A.name, "base_model.model.fc1.lora_A.weight");
 * model.close();
 * ```
 */
export function loraHook(
  adapters: readonly LayerAdapter[],
  declared: Map<string, AdapterInputs>,
  opts: LoraHookOptions = {},
): LinearHook {
  const byName = new Map(adapters.map((a) => [a.layer.name, a]));
  return (site: LinearSite): Value => {
    const ad = byName.get(site.layer.name);
    if (!ad) return site.y;
    const g = site.x.graph;
    const inputs = declareInputs(g, ad, site.x.dtype);
    declared.set(ad.layer.name, inputs);
    const xin = opts.dropout ? opts.dropout(site.x, ad) : site.x;
    const delta = branch(xin, inputs.A, inputs.B, ad.scale); // [..., out]
    if (!ad.dora) return add(site.y, delta);
    return doraOutput(site, inputs, delta, ad.scale);
  };
}

function declareInputs(g: Graph, ad: LayerAdapter, dtype: Value["dtype"]): AdapterInputs {
  const k = peftKeys(ad.layer.name);
  const { inFeatures: n, outFeatures: m } = ad.layer;
  return {
    A: g.input(k.A, dtype, [ad.rank, n]),
    B: g.input(k.B, dtype, [m, ad.rank]),
    magnitude: ad.dora ? g.input(k.magnitude, dtype, [m]) : null,
  };
}

/** `scale · (x·Aᵀ)·Bᵀ`: two thin GEMMs, never the full [out, in] delta. */
function branch(x: Value, A: Value, B: Value, scale: number): Value {
  if (x.rank === 2) {
    const xa = gemm(x, A, null, { transB: true }); // [batch, r]
    return gemm(xa, B, null, { transB: true, alpha: scale }); // [batch, out]
  }
  const xa = matmul(x, transpose(A)); // [..., r]
  return mul(matmul(xa, transpose(B)), scale);
}

/** DoRA: `b + (m / n) · (x·Wᵀ + delta)` with `n = ‖W + scale·B·A‖` per output, detached. */
function doraOutput(site: LinearSite, inputs: AdapterInputs, delta: Value, scale: number): Value {
  const { weight, bias, y, layer } = site;
  const { A, B } = inputs;
  const norm = detach(doraNorm(weight, layer.orientation, { A, B, coef: scale })); // [out]
  const ratio = div(inputs.magnitude!, norm); // [out]
  const base = bias ? sub(y, bias) : y; // x·Wᵀ
  const out = mul(ratio, add(base, delta));
  return bias ? add(out, bias) : out;
}

/** Options of {@linkcode initAdapter}: how A is drawn (B always starts at zero). */
export interface AdapterInit {
  /** `"kaiming"` (PEFT's default: A ~ U(±1/√in), B = 0), `"gaussian"` (A ~ N(0, 1/r)). */
  readonly method?: "kaiming" | "gaussian";
}

/**
 * The bound of PyTorch's `nn.Linear` initialisation, `kaiming_uniform_(a=√5)` (gain √(2/(1+5)), so
 * bound = gain·√3/√fan_in = 1/√fan_in), which is also its bias bound and PEFT's for lora_A.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { linearInitBound } from "./branch.ts";
 * strictEqual(linearInitBound(4), 0.5);
 * ```
 */
export function linearInitBound(fanIn: number): number {
  return 1 / Math.sqrt(fanIn);
}

/**
 * Initial A and B of one layer, drawn from `rng` in a fixed order (A's elements row by row), so a
 * seed fixes the adapter. DoRA's initial magnitude needs the base weight: `weightRowNorms` in
 * `dora.ts`.
 *
 * @example
 * ```ts
 * import { deepStrictEqual, ok } from "node:assert/strict";
 * import { initAdapter, type LayerAdapter, Rng } from "./branch.ts";
 * const layer = {
 *   name: "fc1", inFeatures: 4, outFeatures: 3, orientation: "out_in", weightKey: "fc1.weight",
 *   dtype: "F32",
 * } as const;
 * const ad: LayerAdapter = { layer, rank: 2, alpha: 4, scale: 2, dora: false };
 * const { A, B } = initAdapter(ad, new Rng(0));
 * ok(A.data.every((v) => Math.abs(v) <= 1 / 2)); // U(±1/√in)
 * deepStrictEqual([...B.data], [0, 0, 0, 0, 0, 0]);
 * ```
 */
export function initAdapter(
  ad: LayerAdapter,
  rng: Rng,
  opts: AdapterInit = {},
): { A: Tensor<"F32">; B: Tensor<"F32"> } {
  const { inFeatures: n, outFeatures: m } = ad.layer;
  const A = new Float32Array(ad.rank * n);
  if ((opts.method ?? "kaiming") === "kaiming") {
    const bound = linearInitBound(n);
    rng.fillUniform(A, -bound, bound);
  } else {
    rng.fillNormal(A, 0, 1 / ad.rank);
  }
  return {
    A: { dtype: "F32", shape: [ad.rank, n], data: A },
    B: { dtype: "F32", shape: [m, ad.rank], data: new Float32Array(m * ad.rank) },
  };
}

export { Rng };
