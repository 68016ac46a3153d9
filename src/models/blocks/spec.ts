/**
 * Block specs: a small JSON file that describes a feedforward block ffwd does not recognise by its
 * tensor names, validated with zod. Detection ({@link detectBlocks} in `detect.ts`) produces the
 * same objects, so `ffwd inspect` can print a detected block as a spec to copy and edit.
 *
 * ## Format
 *
 * A spec is one JSON object with a `form`:
 *
 * - `"sequential"`: `layers` is a list of linear layers applied in order; each may name the
 *   `activation` applied to its output (none after a layer without one).
 *   `y = act_n(L_n(… act_1(L_1(x))))`
 * - `"gated"`: three layers `gate`, `up`, `down` and one `activation`:
 *   `y = down(act(gate(x)) * up(x))` (LLaMA SwiGLU, T5 v1.1 gated-gelu).
 *
 * A layer is `{"name", "weight"?, "bias"?, "orientation"?}`:
 *
 * - `name`: the module path, used for adapter keys (`base_model.model.<name>.lora_A.weight`).
 * - `weight`: tensor key, default `"<name>.weight"`.
 * - `bias`: tensor key; default `"<name>.bias"` when the file holds it; `null` for no bias.
 * - `orientation`: `"out_in"` (PyTorch `nn.Linear`, the default) or `"in_out"` (GPT-2 `Conv1D`,
 *   Keras `Dense`).
 * - `in_features`, `out_features`: the layer's sizes, as `nn.Linear(in_features, out_features)`
 *   takes them. Opening a file does not read them (its tensors give the sizes); `ffwd init`,
 *   which writes a new model from a spec, needs them (see `workflows/init_model.ts`).
 *
 * Optional, for both forms:
 *
 * - `name`: the block's name (a module path prefix such as `"encoder.ffn"`).
 * - `residual`: `true` adds the block input to its output (`y + x`).
 * - `norm`: `{"kind": "layer_norm" | "rms_norm", "weight", "bias"?, "eps"?, "position"?}`.
 *   `position` `"post"` (default) normalises after the residual, `norm(f(x) + x)` (BERT);
 *   `"pre"` normalises the input, `f(norm(x)) + x` (T5, LLaMA). `eps` defaults to 1e-5.
 *
 * Activations are named as in Hugging Face configs (`hidden_act`) or Keras: `relu`, `gelu`
 * (exact, erf), `gelu_new` / `gelu_pytorch_tanh` / `gelu_fast` (tanh approximation),
 * `quick_gelu` (`x·σ(1.702x)`), `silu` / `swish`, `sigmoid`, `tanh`, `softmax` (last axis),
 * `linear` / `identity`.
 *
 * ```json
 * {
 *   "name": "encoder.ffn",
 *   "form": "gated",
 *   "activation": "silu",
 *   "gate": { "name": "encoder.ffn.w1" },
 *   "up": { "name": "encoder.ffn.w3" },
 *   "down": { "name": "encoder.ffn.w2", "bias": null }
 * }
 * ```
 *
 * @module
 */

import { z } from "npm:zod@4.6.7";

/** Activation names accepted in specs and configs, mapped to the function they compute. */
export const ACTIVATIONS = {
  relu: "relu",
  gelu: "gelu",
  gelu_new: "gelu_tanh",
  gelu_pytorch_tanh: "gelu_tanh",
  gelu_fast: "gelu_tanh",
  quick_gelu: "quick_gelu",
  silu: "silu",
  swish: "silu",
  sigmoid: "sigmoid",
  tanh: "tanh",
  softmax: "softmax",
  linear: "identity",
  identity: "identity",
} as const;

/** An activation name as written in a spec or config (`"gelu_new"`). */
export type ActivationName = keyof typeof ACTIVATIONS;

/** The function an activation name computes (`"gelu_tanh"` for `"gelu_new"`). */
export type ActivationFn = typeof ACTIVATIONS[ActivationName];

/**
 * Whether `name` is an activation ffwd can build.
 *
 * @example
 * ```ts
 * import { isActivation } from "./spec.ts";
 * import { ok, strictEqual } from "node:assert/strict";
 * ok(isActivation("gelu_pytorch_tanh"));
 * strictEqual(isActivation("relu6"), false);
 * ```
 */
export function isActivation(name: string): name is ActivationName {
  return Object.hasOwn(ACTIVATIONS, name);
}

const names = Object.keys(ACTIVATIONS) as [ActivationName, ...ActivationName[]];
const activation = z.enum(names);
const key = z.string().min(1);

const layer = z.object({
  name: key,
  weight: key.optional(),
  bias: key.nullable().optional(),
  orientation: z.enum(["out_in", "in_out"]).optional(),
  in_features: z.number().int().positive().optional(),
  out_features: z.number().int().positive().optional(),
}).strict();

const norm = z.object({
  kind: z.enum(["layer_norm", "rms_norm"]),
  weight: key,
  bias: key.optional(),
  eps: z.number().positive().optional(),
  position: z.enum(["pre", "post"]).optional(),
}).strict();

const common = {
  name: z.string().optional(),
  residual: z.boolean().optional(),
  norm: norm.optional(),
};

const sequentialLayer = layer.extend({ activation: activation.optional() }).strict();

const sequential = z.object({
  form: z.literal("sequential"),
  layers: z.array(sequentialLayer).min(1),
  ...common,
}).strict();

const gated = z.object({
  form: z.literal("gated"),
  activation,
  gate: layer,
  up: layer,
  down: layer,
  ...common,
}).strict();

/** The zod schema of a block spec. */
export const BlockSpecSchema = z.discriminatedUnion("form", [sequential, gated]);

/**
 * zod's inference of {@link BlockSpecSchema}. Tagged internal because it is made of zod's own
 * types, which ffwd's documentation does not include; {@link BlockSpec} is the public name.
 *
 * @internal
 */
type InferredBlockSpec = z.infer<typeof BlockSpecSchema>;

/** A block spec (see the module documentation for the format). */
export type BlockSpec = InferredBlockSpec;
export type LayerSpec = z.infer<typeof layer>;
/** A layer of a sequential spec, with the activation applied to its output. */
export type SequentialLayerSpec = z.infer<typeof sequentialLayer>;
export type NormSpec = z.infer<typeof norm>;

/**
 * Validates a parsed JSON value as a block spec. Errors name the source and the field.
 *
 * @example
 * ```ts
 * import { parseBlockSpec } from "./spec.ts";
 * import { strictEqual } from "node:assert/strict";
 * const spec = parseBlockSpec({
 *   form: "sequential",
 *   layers: [{ name: "enc", activation: "relu" }, { name: "dec" }],
 * });
 * strictEqual(spec.form, "sequential");
 * ```
 */
export function parseBlockSpec(json: unknown, source = "block spec"): BlockSpec {
  const r = BlockSpecSchema.safeParse(json);
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => {
    const field = i.path.reduce<string>(
      (s, p) => typeof p === "number" ? `${s}[${p}]` : s ? `${s}.${String(p)}` : String(p),
      "",
    );
    return `${field ? `field "${field}"` : "the spec"}: ${i.message}`;
  });
  throw new TypeError(`Invalid block spec ${source}: ${problems.join("; ")}`);
}

/**
 * Reads and validates a block spec file.
 *
 * @example
 * ```ts ignore
 * import { readBlockSpec } from "./spec.ts";
 * const spec = await readBlockSpec("my_block.json");
 * ```
 */
export async function readBlockSpec(path: string): Promise<BlockSpec> {
  const text = await Deno.readTextFile(path);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(
      `Invalid block spec "${path}": not JSON: ${e instanceof Error ? e.message : e}`,
    );
  }
  return parseBlockSpec(json, `"${path}"`);
}
