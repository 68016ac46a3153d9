/**
 * Recognising feedforward blocks in a file's tensor names, the Hugging Face way: module paths
 * (`model.layers.3.mlp.up_proj.weight`) name the layout, and `config.json` beside the weights names
 * the activation (`hidden_act`, `activation_function`, `activation`, T5's `dense_act_fn` /
 * `feed_forward_proj`). Each block comes out as a {@link BlockSpec}, so what detection finds can
 * be printed, saved and edited.
 *
 * Layouts, most specific first (P is the block's module path):
 *
 * | layout | tensors | forward |
 * | --- | --- | --- |
 * | `swiglu` (LLaMA, Mistral, Qwen) | `P.gate_proj`, `P.up_proj`, `P.down_proj` | `down(silu(gate x) * up x)` |
 * | `gpt2` | `P.c_fc`, `P.c_proj` (Conv1D, `[in, out]`) | `c_proj(gelu_new(c_fc x))` |
 * | `bert` (BERT, RoBERTa) | `P.intermediate.dense`, `P.output.dense`, `P.output.LayerNorm` | `LN(dense2(gelu(dense1 x)) + x)` |
 * | `distilbert` | `P.lin1`, `P.lin2` | `lin2(gelu(lin1 x))` |
 * | `t5_gated` (T5 v1.1) | `P.wi_0`, `P.wi_1`, `P.wo` | `wo(gelu_new(wi_0 x) * wi_1 x)` |
 * | `t5` | `P.wi`, `P.wo` | `wo(relu(wi x))` |
 * | `fc` (OPT, Phi, CLIP, plain MLPs) | `P.fc1`, `P.fc2`, … | `fc2(act(fc1 x))` |
 * | `sequential` (`nn.Sequential`, `ModuleList`) | `P.0`, `P.2`, … or `P.layers.0`, … | act between layers |
 *
 * @module
 */

import type { BlockSpec, LayerSpec, SequentialLayerSpec } from "./spec.ts";
import { type ActivationName, isActivation } from "./spec.ts";
import type { TensorInfo } from "./resolve.ts";

/** The layouts detection knows. */
export type Layout =
  | "swiglu"
  | "gpt2"
  | "bert"
  | "distilbert"
  | "t5_gated"
  | "t5"
  | "fc"
  | "sequential";

/** A Hugging Face `config.json` (only the fields detection reads matter). */
export type HfConfig = Readonly<Record<string, unknown>>;

/** One recognised block, JSON-able. */
export interface DetectedBlock {
  /** Module path of the block (`model.layers.3.mlp`; `""` at the root of the file). */
  readonly name: string;
  /** The layout its tensor names matched (see the module table). */
  readonly layout: Layout;
  /** Activation as named by the config or the layout's default. */
  readonly activation: ActivationName;
  /** Where the activation came from: a config field (`config.hidden_act`) or `"default"`. */
  readonly activationFrom: string;
  /** Full module paths of the block's linear layers, in forward order. */
  readonly layers: readonly string[];
  /** The block as a spec. */
  readonly spec: BlockSpec;
}

/** What {@link detectBlocks} found, JSON-able (for `ffwd inspect`). */
export interface Detection {
  /** The blocks found, in file order. */
  readonly blocks: readonly DetectedBlock[];
  /** `model_type` of the config, when there is one. */
  readonly modelType?: string;
}

const DEFAULT_ACT: Record<Layout, ActivationName> = {
  swiglu: "silu",
  gpt2: "gelu_new",
  bert: "gelu",
  distilbert: "gelu",
  t5_gated: "gelu_new",
  t5: "relu",
  fc: "relu",
  sequential: "relu",
};

/** The tensors of a file as detection sees them. */
interface Names {
  /** Rank of each tensor, `undefined` when only names are known. */
  readonly rank: ReadonlyMap<string, number | undefined>;
  /** Module paths that hold a `.weight` (unknown rank counts as a matrix). */
  readonly paths: readonly string[];
  /** Whether a module holds a matrix weight. */
  has(module: string): boolean;
}

/** A block a pattern matched, with the spec it makes once the activation is known. */
interface Candidate {
  readonly layout: Layout;
  readonly prefix: string;
  readonly make: (act: ActivationName) => BlockSpec;
}

/**
 * Finds the feedforward blocks among tensor names (or header entries, whose shapes then rule out
 * non-matrix weights in sequential layouts), with the activation taken from `config`.
 *
 * @example
 * ```ts
 * import { detectBlocks } from "./detect.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const names = [0, 1].flatMap((i) =>
 *   ["gate_proj", "up_proj", "down_proj"].map((m) => `model.layers.${i}.mlp.${m}.weight`)
 * );
 * const found = detectBlocks(names, { hidden_act: "silu" });
 * deepStrictEqual(found.blocks.map((b) => b.name), ["model.layers.0.mlp", "model.layers.1.mlp"]);
 * ```
 */
export function detectBlocks(
  tensors: readonly (string | TensorInfo)[],
  config: HfConfig = {},
): Detection {
  const rank = new Map<string, number | undefined>();
  for (const t of tensors) {
    if (typeof t === "string") rank.set(t, undefined);
    else rank.set(t.name, t.shape.length);
  }
  const modules = new Map<string, boolean>();
  for (const [name, r] of rank) {
    if (name.endsWith(".weight")) {
      modules.set(name.slice(0, -".weight".length), r === undefined || r === 2);
    }
  }
  const names: Names = { rank, paths: [...modules.keys()], has: (m) => modules.get(m) === true };
  const claimed = new Set<string>();
  const found: DetectedBlock[] = [];
  const take = (c: Candidate) => {
    const { activation, from } = pickActivation(c.layout, config);
    const spec = c.make(activation);
    const layers = spec.form === "gated"
      ? [spec.gate, spec.up, spec.down].map((l) => l.name)
      : spec.layers.map((l) => l.name);
    if (layers.some((l) => claimed.has(l))) return;
    for (const l of layers) claimed.add(l);
    found.push({
      name: c.prefix,
      layout: c.layout,
      activation,
      activationFrom: from,
      layers,
      spec,
    });
  };
  for (const c of namedBlocks(names, config)) take(c);
  for (const c of fcBlocks(names)) take(c);
  for (const c of sequentialBlocks(names, claimed)) take(c);
  found.sort((a, b) => naturalCompare(a.name, b.name));
  const modelType = typeof config.model_type === "string" ? config.model_type : undefined;
  return { blocks: found, ...(modelType ? { modelType } : {}) };
}

/** Transformer MLPs recognised by their module names. */
function* namedBlocks(n: Names, config: HfConfig): Generator<Candidate> {
  for (const m of n.paths) {
    const [p, last] = split(m);
    const sibling = (s: string) => n.has(join(p, s));
    if (last === "gate_proj" && sibling("up_proj") && sibling("down_proj")) {
      yield { layout: "swiglu", prefix: p, make: gated(n, p, "gate_proj", "up_proj", "down_proj") };
    } else if (last === "c_fc" && sibling("c_proj")) {
      const make = chain(n, p, ["c_fc", "c_proj"], { orientation: "in_out" });
      yield { layout: "gpt2", prefix: p, make };
    } else if (m === "intermediate.dense" || m.endsWith(".intermediate.dense")) {
      const bert = bertBlock(
        n,
        m.slice(0, -"intermediate.dense".length).replace(/\.$/, ""),
        config,
      );
      if (bert) yield bert;
    } else if (last === "lin1" && sibling("lin2")) {
      yield { layout: "distilbert", prefix: p, make: chain(n, p, ["lin1", "lin2"]) };
    } else if (last === "wi_0" && sibling("wi_1") && sibling("wo")) {
      yield { layout: "t5_gated", prefix: p, make: gated(n, p, "wi_0", "wi_1", "wo") };
    } else if (last === "wi" && sibling("wo")) {
      yield { layout: "t5", prefix: p, make: chain(n, p, ["wi", "wo"]) };
    }
  }
}

/** BERT/RoBERTa: intermediate.dense, output.dense, output.LayerNorm (or gamma/beta), residual. */
function bertBlock(n: Names, q: string, config: HfConfig): Candidate | undefined {
  const ln = join(q, "output.LayerNorm");
  const weight = [`${ln}.weight`, `${ln}.gamma`].find((k) => n.rank.has(k));
  if (!n.has(join(q, "output.dense")) || !weight) return undefined;
  const bias = weight.endsWith("gamma") ? `${ln}.beta` : `${ln}.bias`;
  const eps = typeof config.layer_norm_eps === "number" ? config.layer_norm_eps : 1e-12;
  const base = chain(n, q, ["intermediate.dense", "output.dense"]);
  return {
    layout: "bert",
    prefix: q,
    make: (act) => ({
      ...base(act),
      residual: true,
      norm: {
        kind: "layer_norm",
        weight,
        ...(n.rank.has(bias) ? { bias } : {}),
        eps,
        position: "post",
      },
    }),
  };
}

/** `fc1`, `fc2`, … siblings (OPT, Phi, CLIP, plain MLPs). */
function* fcBlocks(n: Names): Generator<Candidate> {
  for (const m of n.paths) {
    const [p, last] = split(m);
    if (last !== "fc1" || !n.has(join(p, "fc2"))) continue;
    const ms = ["fc1"];
    while (n.has(join(p, `fc${ms.length + 1}`))) ms.push(`fc${ms.length + 1}`);
    yield { layout: "fc", prefix: p, make: chain(n, p, ms) };
  }
}

/** Sequential containers: integer-named children that all hold matrices, by parent. */
function* sequentialBlocks(n: Names, claimed: ReadonlySet<string>): Generator<Candidate> {
  const byParent = new Map<string, number[]>();
  for (const m of n.paths) {
    const [p, last] = split(m);
    if (!/^\d+$/.test(last) || claimed.has(m)) continue;
    if (!byParent.has(p)) byParent.set(p, []);
    byParent.get(p)!.push(n.has(m) ? Number(last) : NaN);
  }
  for (const [p, idx] of byParent) {
    if (idx.length < 2 || idx.some(Number.isNaN)) continue;
    idx.sort((a, b) => a - b);
    yield { layout: "sequential", prefix: p, make: chain(n, p, idx.map(String)) };
  }
}

/** A layer spec for module `m` under `prefix`; `bias: null` when the file has no bias. */
function layer(n: Names, prefix: string, m: string, extra: Partial<LayerSpec> = {}): LayerSpec {
  const name = join(prefix, m);
  return { name, ...(n.rank.has(`${name}.bias`) ? {} : { bias: null }), ...extra };
}

function gated(n: Names, p: string, g: string, u: string, d: string) {
  return (activation: ActivationName): BlockSpec => ({
    name: p,
    form: "gated",
    activation,
    gate: layer(n, p, g),
    up: layer(n, p, u),
    down: layer(n, p, d),
  });
}

/** Layers in order with the activation between them (none after the last). */
function chain(n: Names, p: string, ms: readonly string[], extra: Partial<LayerSpec> = {}) {
  return (activation: ActivationName): BlockSpec => ({
    name: p,
    form: "sequential",
    layers: ms.map((m, i): SequentialLayerSpec => ({
      ...layer(n, p, m, extra),
      ...(i < ms.length - 1 ? { activation } : {}),
    })),
  });
}

/** The activation of a layout: from the config when it says, else the layout's default. */
function pickActivation(
  layout: Layout,
  config: HfConfig,
): { activation: ActivationName; from: string } {
  const fields = layout.startsWith("t5")
    ? ["dense_act_fn"]
    : ["hidden_act", "activation_function", "activation"];
  for (const f of fields) {
    const v = config[f];
    if (typeof v !== "string") continue;
    if (!isActivation(v)) {
      throw new RangeError(`Unsupported activation "${v}" in config.${f} (layout ${layout})`);
    }
    return { activation: v, from: `config.${f}` };
  }
  const ff = config.feed_forward_proj;
  if (layout.startsWith("t5") && typeof ff === "string") {
    // transformers' T5Config: "gated-gelu" means gelu_new; otherwise the part after "gated-".
    const act = ff === "gated-gelu" ? "gelu_new" : ff.replace(/^gated-/, "");
    if (!isActivation(act)) {
      throw new RangeError(`Unsupported activation "${ff}" in config.feed_forward_proj`);
    }
    return { activation: act, from: "config.feed_forward_proj" };
  }
  return { activation: DEFAULT_ACT[layout], from: "default" };
}

const join = (p: string, m: string) => (p ? `${p}.${m}` : m);

function split(path: string): [string, string] {
  const i = path.lastIndexOf(".");
  return i < 0 ? ["", path] : [path.slice(0, i), path.slice(i + 1)];
}

/** Orders `layers.2` before `layers.10`. */
function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, "en", { numeric: true });
}
