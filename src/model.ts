/**
 * What every importer produces: a base model that can build its forward graph into a
 * {@link Graph}, with its linear layers named as their authors named them.
 *
 * A model is a graph *factory*, not a graph: adapters attach through a hook called on each
 * linear layer while the graph is built (`y' = hook(layer, x, y)`), so the same base serves
 * plain inference, LoRA training, and hot-swap inference without rewriting graphs after the fact.
 *
 * @module
 */

import type { DType, Tensor } from "./tensor.ts";
import type { Graph, Shape, Value } from "./engine/graph.ts";

/** How a linear layer's weight is stored. */
export type Orientation =
  /** `[out, in]`: PyTorch `nn.Linear`, ONNX Gemm with transB=1, HF safetensors. */
  | "out_in"
  /** `[in, out]`: GPT-2 `Conv1D`, ONNX MatMul initializers, TF/Keras Dense kernels. */
  | "in_out";

/** A linear layer of a base model: `y = x · Wᵀ + b` in PyTorch terms. */
export interface LinearLayer {
  /** Stable name: the PyTorch module path when known (`fc1`, `model.layers.3.mlp.up_proj`). */
  readonly name: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly orientation: Orientation;
  /** Name of the weight tensor in the source file (initializer or safetensors key). */
  readonly weightKey: string;
  /** Name of the bias tensor, when the layer has one. */
  readonly biasKey?: string;
  /** Storage dtype of the weight in the source file. */
  readonly dtype: DType;
}

/** What a linear hook receives while the graph is built. */
export interface LinearSite {
  readonly layer: LinearLayer;
  /** The layer's input, `[..., in]`. */
  readonly x: Value;
  /** The layer's output including bias, `[..., out]`. */
  readonly y: Value;
  /** The weight as stored (see `layer.orientation`), float32 or float64 in the graph. */
  readonly weight: Value;
  readonly bias: Value | null;
}

/** Replaces a linear layer's output (adapters add their branch here). */
export type LinearHook = (site: LinearSite) => Value;

/** A graph input or output of a model. */
export interface ModelIO {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: Shape;
}

/** Options of {@link BaseModel.build}. */
export interface BuildOptions {
  /** Called on each linear layer; default leaves outputs as they are. */
  hook?: LinearHook;
  /**
   * Weight and bias values to use instead of the stored ones, by tensor key (merged weights,
   * or trainable copies for full fine-tuning).
   */
  overrides?: ReadonlyMap<string, Tensor | Value>;
  /** Names of source tensors to declare as graph inputs instead of initializers (full training). */
  trainable?: ReadonlySet<string>;
}

/** The forward graph of a model inside a graph. */
export interface Built {
  readonly inputs: Value[];
  readonly outputs: Value[];
}

/** A pretrained base, from ONNX, safetensors or TF.js. */
export interface BaseModel {
  readonly format: "onnx" | "safetensors" | "tfjs";
  /** Path of the file the model came from. */
  readonly source: string;
  /** Block name for multi-block files (`model.layers.3.mlp`), else undefined. */
  readonly block?: string;
  readonly inputs: readonly ModelIO[];
  readonly outputs: readonly ModelIO[];
  readonly layers: readonly LinearLayer[];
  /** Builds the forward graph into `g`, declaring the model's inputs and returning its outputs. */
  build(g: Graph, opts?: BuildOptions): Built;
  /** Reads a source tensor (a weight or bias) by key, in its stored dtype. */
  readTensor(key: string): Promise<Tensor>;
  /** Releases open files. */
  close(): void;
}
