/**
 * A {@link BaseModel} over a feedforward block inside a safetensors file: the block is recognised
 * by its tensor names and `config.json` (`detect.ts`) or described by a block spec (`spec.ts`).
 *
 * F32 weights are referenced in place as ONNX external data (`ExternalTensor`): importing never
 * copies them; ORT reads them once, when a session is created from the graph. F16/BF16 weights are
 * read into memory in their storage dtype and cast to float32 inside the graph.
 *
 * @module
 */

import type { BaseModel, BuildOptions, Built, LinearLayer, ModelIO } from "../model.ts";
import type { Graph, InitData } from "../../engine/graph.ts";
import { openSafetensors, type SafetensorsFile } from "../../io/safetensors.ts";
import type { Tensor } from "../../tensor.ts";
import { detectBlocks, type Detection, type HfConfig } from "./detect.ts";
import { blockLabel, resolveBlock, type ResolvedBlock } from "./resolve.ts";
import { type BlockSpec, parseBlockSpec, readBlockSpec } from "./spec.ts";
import { buildBlock } from "./templates.ts";

/** Options of {@link openSafetensorsModel}. */
export interface OpenSafetensorsOptions {
  /** Which block to open, by module path (`model.layers.3.mlp`); needed when there are several. */
  block?: string;
  /** A block spec (object or path of a JSON file) instead of detection. */
  spec?: BlockSpec | string;
  /**
   * The model's config: an object, a path, or `null` for none. Default: `config.json` beside the
   * weights, when there is one.
   */
  config?: HfConfig | string | null;
  /**
   * `"reference"` (default): F32 weights stay in the file, referenced in place.
   * `"load"`: read them into memory (for the float64 twin, or files that will change).
   */
  weights?: "reference" | "load";
}

/** What detection found in a file, JSON-able (for `ffwd inspect`). */
export interface FileDetection extends Detection {
  /** Absolute path of the safetensors file. */
  readonly file: string;
  /** Path of the config that was read, or `null`. */
  readonly config: string | null;
}

/** A safetensors base model, with the blocks its file holds. */
export interface SafetensorsModel extends BaseModel {
  /** Names of the blocks detected in the file (`""` for a block at the root). */
  readonly blocks: readonly string[];
  /** What detection found in the file, and the config it read. */
  readonly detected: FileDetection;
  /** The opened block, with its layer sizes. */
  readonly resolved: ResolvedBlock;
}

/**
 * Opens one feedforward block of a safetensors file as a base model.
 *
 * @example
 * ```ts
 * import { openSafetensorsModel } from "./safetensors_model.ts";
 * import { Graph } from "../../engine/graph.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const model = await openSafetensorsModel("fixtures/hf/llama/model.safetensors");
 * deepStrictEqual(model.layers.map((l) => l.name), [
 *   "model.layers.0.mlp.gate_proj",
 *   "model.layers.0.mlp.up_proj",
 *   "model.layers.0.mlp.down_proj",
 * ]);
 * const g = new Graph();
 * g.output(model.build(g).outputs[0]!);
 * model.close();
 * ```
 */
export async function openSafetensorsModel(
  path: string,
  opts: OpenSafetensorsOptions = {},
): Promise<SafetensorsModel> {
  const file = await openSafetensors(path);
  try {
    return await openBlock(file, await Deno.realPath(path), opts);
  } catch (e) {
    file.close();
    throw e;
  }
}

/**
 * Lists the feedforward blocks of a safetensors file without opening one (reads the header and
 * `config.json` only).
 *
 * @example
 * ```ts
 * import { detectSafetensorsBlocks } from "./safetensors_model.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const found = await detectSafetensorsBlocks("fixtures/hf/llama_3layers/model.safetensors");
 * deepStrictEqual(found.blocks.map((b) => b.name), [
 *   "model.layers.0.mlp",
 *   "model.layers.1.mlp",
 *   "model.layers.2.mlp",
 * ]);
 * ```
 */
export async function detectSafetensorsBlocks(
  path: string,
  opts: Pick<OpenSafetensorsOptions, "config"> = {},
): Promise<FileDetection> {
  using file = await openSafetensors(path);
  const abs = await Deno.realPath(path);
  const { config, configPath } = await loadConfig(abs, opts.config);
  return { file: abs, config: configPath, ...detectBlocks(file.header.tensors, config) };
}

async function openBlock(
  file: SafetensorsFile,
  abs: string,
  opts: OpenSafetensorsOptions,
): Promise<SafetensorsModel> {
  const where = `Cannot open "${abs}"`;
  const { config, configPath } = await loadConfig(abs, opts.config);
  let detection: Detection;
  try {
    detection = detectBlocks(file.header.tensors, config);
  } catch (e) {
    if (opts.spec === undefined) throw new RangeError(`${where}: ${(e as Error).message}`);
    detection = { blocks: [] }; // a spec does not need detection to succeed
  }
  const detected: FileDetection = { file: abs, config: configPath, ...detection };
  const blocks = detection.blocks.map((b) => b.name);
  const list = () => blocks.map(blockLabel).join(", ");
  let spec: BlockSpec;
  if (opts.spec !== undefined) {
    spec = typeof opts.spec === "string"
      ? await readBlockSpec(opts.spec)
      : parseBlockSpec(opts.spec, "(options.spec)");
    if (spec.name === undefined && opts.block !== undefined) spec = { ...spec, name: opts.block };
  } else if (opts.block !== undefined) {
    const hit = detection.blocks.find((b) => b.name === opts.block);
    if (!hit) {
      throw new RangeError(
        `${where}: no block "${opts.block}"; the blocks found are ${list() || "none"}`,
      );
    }
    spec = hit.spec;
  } else if (detection.blocks.length === 1) {
    spec = detection.blocks[0]!.spec;
  } else if (detection.blocks.length === 0) {
    const names = file.header.tensors.slice(0, 5).map((t) => `"${t.name}"`).join(", ");
    throw new TypeError(
      `${where}: no feedforward block recognised among its ${file.header.tensors.length} tensors (${names}…); describe the block with a spec`,
    );
  } else {
    throw new RangeError(
      `${where}: it holds ${blocks.length} feedforward blocks (${list()}); choose one with ` +
        `--block NAME (library: openModel(path, { block: NAME }))`,
    );
  }
  const entries = new Map(file.header.tensors.map((t) => [t.name, t]));
  const resolved = resolveBlock(spec, entries, abs);
  const data = new Map<string, InitData>();
  for (const key of resolved.keys) {
    const e = file.entry(key);
    if (e.dtype === "F32" && (opts.weights ?? "reference") === "reference") {
      data.set(key, {
        kind: "external",
        dtype: e.dtype,
        shape: e.shape,
        path: abs,
        offset: e.fileOffset,
        length: e.byteLength,
      });
    } else data.set(key, await file.readTensor(key));
  }
  return new BlockModel(file, abs, resolved, data, blocks, detected);
}

class BlockModel implements SafetensorsModel {
  readonly format = "safetensors" as const;
  readonly block?: string;
  readonly inputs: readonly ModelIO[];
  readonly outputs: readonly ModelIO[];
  readonly layers: readonly LinearLayer[];
  readonly finalActivation?: { readonly op: string; readonly input: string };

  constructor(
    private readonly file: SafetensorsFile,
    readonly source: string,
    readonly resolved: ResolvedBlock,
    private readonly data: ReadonlyMap<string, InitData>,
    readonly blocks: readonly string[],
    readonly detected: FileDetection,
  ) {
    if (resolved.name !== "") this.block = resolved.name;
    this.inputs = [{ name: "x", dtype: "F32", shape: ["batch", resolved.inFeatures] }];
    this.outputs = [{ name: "y", dtype: "F32", shape: ["batch", resolved.outFeatures] }];
    this.layers = resolved.layers;
    // A spec whose last layer ends in a sigmoid or softmax outputs probabilities, not logits.
    const last = resolved.activations.at(-1);
    const op = { sigmoid: "Sigmoid", softmax: "Softmax" }[String(last)];
    if (resolved.form === "sequential" && op) {
      this.finalActivation = { op, input: resolved.layers.at(-1)!.name };
    }
  }

  build(g: Graph, opts: BuildOptions = {}): Built {
    return buildBlock(g, this.resolved, (key) => this.data.get(key)!, opts);
  }

  readTensor(key: string): Promise<Tensor> {
    return this.file.readTensor(key);
  }

  close(): void {
    this.file.close();
  }
}

/** The config object and where it came from: given, read from a path, or `config.json` beside. */
async function loadConfig(
  abs: string,
  given: HfConfig | string | null | undefined,
): Promise<{ config: HfConfig; configPath: string | null }> {
  if (given === null) return { config: {}, configPath: null };
  if (typeof given === "object") return { config: given, configPath: null };
  const path = given ?? `${abs.slice(0, abs.lastIndexOf("/") + 1)}config.json`;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (given === undefined && e instanceof Deno.errors.NotFound) {
      return { config: {}, configPath: null };
    }
    throw e;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`Cannot read config "${path}": ${(e as Error).message}`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new SyntaxError(`Cannot read config "${path}": expected a JSON object`);
  }
  return { config: json as HfConfig, configPath: path };
}
