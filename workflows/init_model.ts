/**
 * A new model from a block spec (`ffwd init`), to train from scratch with `ffwd train --full`.
 *
 * Every linear layer starts as PyTorch starts `torch.nn.Linear` (`reset_parameters`):
 * `kaiming_uniform_(W, a=√5)`, whose gain √(2 / (1 + 5)) makes the bound √3 · gain / √fan_in =
 * 1/√fan_in, so W ~ U(−1/√fan_in, 1/√fan_in), and b ~ U(−1/√fan_in, 1/√fan_in). A LayerNorm or
 * RMSNorm starts with scale 1 and shift 0, as `nn.LayerNorm` does. The values come from ffwd's
 * seeded {@link Rng}, layer by layer in the spec's order (W row by row in `[out, in]` order, then
 * b), so a seed fixes the model; the distribution is PyTorch's, the numbers are ffwd's own.
 *
 * Sizes come from the spec's `in_features` and `out_features` (see `spec.ts`): every layer's
 * `out_features`, and the `in_features` of the first layer (of `gate` in a gated block). Other
 * `in_features` may be given; they must then agree with the wiring.
 *
 * A safetensors file says nothing of the activations between its layers: ffwd recognises a block
 * by its tensor names and reads the activation from `config.json` beside it (see `detect.ts`).
 * {@link initModel} checks how ffwd will open the written file: by its names alone (`fc1`, `fc2`
 * with ReLU between them), with a `config.json` naming the activation (written when there is
 * none), or only with the spec (`openModel(path, { spec })`), and says which.
 *
 * @module
 */

import { isDeepStrictEqual } from "node:util";
import { writeSafetensors } from "../src/io/safetensors.ts";
import {
  type BlockSpec,
  type LayerSpec,
  parseBlockSpec,
  readBlockSpec,
} from "../src/models/blocks/spec.ts";
import { resolveBlock, type ResolvedBlock, type TensorInfo } from "../src/models/blocks/resolve.ts";
import { detectBlocks, type HfConfig } from "../src/models/blocks/detect.ts";
import { writeFileAtomic } from "../src/fs/atomic.ts";
import { Rng } from "../src/rng.ts";
import { linearInitBound } from "../src/lora/branch.ts";
import { type Tensor, transpose2d } from "../src/tensor.ts";

/** Options of {@linkcode initModel} and {@linkcode initTensors}. */
export interface InitModelOptions {
  /** Seeds every value (default 0). */
  readonly seed?: number;
}

/** How ffwd opens a file {@linkcode initModel} wrote. */
export type OpensWith =
  /** `openModel(path)` recognises the block by its tensor names (`fc1`, `fc2`: ReLU between). */
  | "names"
  /** Recognised by its names, with the activation from the `config.json` written beside it. */
  | "config"
  /** Only with the spec: `openModel(path, { spec })`, `ffwd export --spec`. */
  | "spec";

/** A linear layer of the model {@linkcode initModel} wrote. */
export interface InitLayer {
  /** Its name in the file (`fc1`: tensors `fc1.weight`, `fc1.bias`). */
  readonly name: string;
  /** Input width. */
  readonly inFeatures: number;
  /** Output width. */
  readonly outFeatures: number;
  /** The activation applied to its output (`"relu"`), `null` for none; gated: on `gate`. */
  readonly activation: string | null;
}

/** What {@linkcode initModel} wrote. */
export interface InitModelResult {
  /** The model file. */
  readonly path: string;
  /** `"sequential"` or `"gated"` (`down(act(gate(x)) * up(x))`). */
  readonly form: "sequential" | "gated";
  /** The block's linear layers in order (gated: gate, up, down), with their sizes. */
  readonly layers: readonly InitLayer[];
  /** Values in the file. */
  readonly parameters: number;
  /** The seed every value was drawn with. */
  readonly seed: number;
  /** How `openModel` opens the file. */
  readonly opensWith: OpensWith;
  /** The `config.json` written beside the model (`opensWith` `"config"`). */
  readonly config?: string;
}

/**
 * The tensors of a new model described by `spec`, by key, initialised as `torch.nn.Linear`.
 *
 * @example
 * ```ts
 * import { deepStrictEqual, ok } from "node:assert/strict";
 * import { initTensors } from "./init_model.ts";
 * const tensors = initTensors({
 *   form: "sequential",
 *   layers: [
 *     { name: "fc1", in_features: 1, out_features: 2, activation: "relu" },
 *     { name: "fc2", out_features: 1 },
 *   ],
 * }, { seed: 0 });
 * deepStrictEqual([...tensors.keys()], ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
 * deepStrictEqual(tensors.get("fc2.weight")!.shape, [1, 2]);
 * ok(tensors.get("fc2.weight")!.data.every((w) => Math.abs(w) <= 1 / Math.sqrt(2)));
 * ```
 */
export function initTensors(
  spec: BlockSpec,
  options: InitModelOptions = {},
): Map<string, Tensor<"F32">> {
  return newTensors(spec, options.seed ?? 0, "the block spec");
}

function newTensors(spec: BlockSpec, seed: number, source: string): Map<string, Tensor<"F32">> {
  const where = `Cannot initialise a model from ${source}`;
  const rng = new Rng(seed);
  const out = new Map<string, Tensor<"F32">>();
  const put = (key: string, t: Tensor<"F32">) => {
    if (out.has(key)) throw new TypeError(`${where}: tensor "${key}" is named twice`);
    out.set(key, t);
  };
  const layers = sizedLayers(spec, where);
  for (const { layer, inF, outF } of layers) {
    const bound = linearInitBound(inF);
    const w = rng.fillUniform(new Float32Array(outF * inF), -bound, bound) as Float32Array;
    const weight: Tensor<"F32"> = { dtype: "F32", shape: [outF, inF], data: w };
    put(
      layer.weight ?? `${layer.name}.weight`,
      layer.orientation === "in_out" ? transpose2d(weight) as Tensor<"F32"> : weight,
    );
    const bias = layer.bias === undefined ? `${layer.name}.bias` : layer.bias;
    if (bias !== null) {
      const b = rng.fillUniform(new Float32Array(outF), -bound, bound) as Float32Array;
      put(bias, { dtype: "F32", shape: [outF], data: b });
    }
  }
  if (spec.norm) {
    const size = spec.norm.position === "pre" ? layers[0]!.inF : layers.at(-1)!.outF;
    put(spec.norm.weight, { dtype: "F32", shape: [size], data: new Float32Array(size).fill(1) });
    if (spec.norm.bias) {
      put(spec.norm.bias, { dtype: "F32", shape: [size], data: new Float32Array(size) });
    }
  }
  return out;
}

/**
 * Writes a new model described by `spec` (an object, or the path of its JSON file) to `out`, a
 * safetensors file, initialised as `torch.nn.Linear` with `options.seed`, and a `config.json`
 * beside it when ffwd needs one to read the activation.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { initModel } from "./init_model.ts";
 * import { openModel } from "../src/models/open.ts";
 * const out = `${await Deno.makeTempDir()}/model.safetensors`;
 * const spec = {
 *   form: "sequential" as const,
 *   layers: [
 *     { name: "fc1", in_features: 1, out_features: 2, activation: "relu" as const },
 *     { name: "fc2", out_features: 1 },
 *   ],
 * };
 * const init = await initModel(spec, out, { seed: 0 });
 * strictEqual(init.parameters, 7);
 * strictEqual(init.opensWith, "names");
 * const model = await openModel(out);
 * strictEqual(model.layers.length, 2);
 * model.close();
 * ```
 */
export async function initModel(
  spec: BlockSpec | string,
  out: string,
  options: InitModelOptions = {},
): Promise<InitModelResult> {
  const parsed = typeof spec === "string" ? await readBlockSpec(spec) : parseBlockSpec(spec);
  const source = typeof spec === "string" ? `"${spec}"` : "the block spec";
  const seed = options.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new RangeError(
      `Cannot initialise a model with seed ${seed}: expected an integer from 0 to 2^32 - 1`,
    );
  }
  const tensors = newTensors(parsed, seed, source);
  const infos = new Map<string, TensorInfo>(
    [...tensors].map(([name, t]) => [name, { name, dtype: t.dtype, shape: t.shape }]),
  );
  const block = resolveBlock(parsed, infos, out);
  const folder = out.includes("/") ? out.slice(0, out.lastIndexOf("/")) || "/" : ".";
  const configPath = `${folder}/config.json`;
  const existing = await readConfig(configPath);
  const opens = (config: HfConfig) => sameBlock(block, infos, config, out);
  let opensWith: OpensWith = opens(existing ?? {}) ? "names" : "spec";
  const act = existing ? undefined : betweenActivation(parsed);
  if (opensWith === "spec" && act && opens({ hidden_act: act })) opensWith = "config";
  await Deno.mkdir(folder, { recursive: true });
  await writeSafetensors(out, tensors, {
    metadata: { format: "pt", "ffwd.init": JSON.stringify({ seed, spec: parsed }) },
  });
  if (opensWith === "config") {
    const text = JSON.stringify({ hidden_act: act }, null, 2) + "\n";
    await writeFileAtomic(configPath, new TextEncoder().encode(text));
  }
  return {
    path: out,
    form: block.form,
    layers: block.layers.map((l, i) => ({
      name: l.name,
      inFeatures: l.inFeatures,
      outFeatures: l.outFeatures,
      activation: (block.form === "sequential" || i === 0 ? block.activations[i] : null) ?? null,
    })),
    parameters: [...tensors.values()].reduce((n, t) => n + t.data.length, 0),
    seed,
    opensWith,
    ...(opensWith === "config" ? { config: configPath } : {}),
  };
}

/** The spec's linear layers in order, each with its sizes from the spec and the wiring. */
function sizedLayers(
  spec: BlockSpec,
  where: string,
): { layer: LayerSpec; inF: number; outF: number }[] {
  const fail = (message: string): never => {
    throw new TypeError(`${where}: ${message}`);
  };
  type Field = "in_features" | "out_features";
  const need = (l: LayerSpec, field: Field, why: string) =>
    l[field] ?? fail(`layer "${l.name}" needs "${field}" (${why})`);
  const agree = (l: LayerSpec, field: Field, want: number, why: string) => {
    const v = l[field];
    if (v !== undefined && v !== want) fail(`layer "${l.name}" has "${field}" ${v}, and ${why}`);
    return want;
  };
  if (spec.form === "sequential") {
    const first = spec.layers[0]!;
    let width = need(first, "in_features", "the width of the model's input");
    return spec.layers.map((layer, i) => {
      const inF = agree(
        layer,
        "in_features",
        width,
        `layer "${spec.layers[i - 1]?.name}" gives ${width}`,
      );
      width = need(layer, "out_features", "its width");
      return { layer, inF, outF: width };
    });
  }
  const { gate, up, down } = spec;
  const inF = need(gate, "in_features", "the width of the model's input");
  const hidden = need(gate, "out_features", "the width of the gated product");
  return [
    { layer: gate, inF, outF: hidden },
    {
      layer: up,
      inF: agree(up, "in_features", inF, `the gate takes ${inF}`),
      outF: agree(up, "out_features", hidden, `the gate gives ${hidden}`),
    },
    {
      layer: down,
      inF: agree(down, "in_features", hidden, `the gated product has ${hidden}`),
      outF: need(down, "out_features", "the width of the model's output"),
    },
  ];
}

/** Whether ffwd, reading the file's names and `config`, finds exactly `block`. */
function sameBlock(
  block: ResolvedBlock,
  infos: ReadonlyMap<string, TensorInfo>,
  config: HfConfig,
  source: string,
): boolean {
  try {
    const found = detectBlocks([...infos.values()], config).blocks;
    if (found.length !== 1) return false;
    const seen = resolveBlock(found[0]!.spec, infos, source);
    const plain = (b: ResolvedBlock) => ({ ...b, keys: [...b.keys].sort() });
    return isDeepStrictEqual(plain(seen), plain(block));
  } catch {
    return false; // a config.json detection cannot use: the spec is needed
  }
}

/** The one activation between a block's layers (none after the last), as configs name it. */
function betweenActivation(spec: BlockSpec): string | undefined {
  if (spec.form === "gated") return spec.activation;
  const acts = new Set(spec.layers.slice(0, -1).map((l) => l.activation));
  const [act] = acts;
  return acts.size === 1 && act !== undefined && !spec.layers.at(-1)!.activation ? act : undefined;
}

/** The `config.json` at `path`, or undefined when there is none. */
async function readConfig(path: string): Promise<HfConfig | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  const json: unknown = (() => {
    try {
      return JSON.parse(text);
    } catch {
      return undefined; // refused below, as opening the model would refuse it
    }
  })();
  if (json !== null && typeof json === "object" && !Array.isArray(json)) return json as HfConfig;
  throw new SyntaxError(
    `Cannot write a model beside "${path}": it is not a JSON object, and ffwd reads it as the ` +
      "model's config when it opens the model",
  );
}
