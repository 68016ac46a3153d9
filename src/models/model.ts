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

import type { DType, Tensor } from "../tensor.ts";
import type { Graph, Shape, Value } from "../engine/graph.ts";

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
  /** Size of the input (last) dimension of `x`. */
  readonly inFeatures: number;
  /** Size of the output (last) dimension of `y`. */
  readonly outFeatures: number;
  /** How the weight is stored: `[out, in]` or `[in, out]`. */
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
  /** The layer being built. */
  readonly layer: LinearLayer;
  /** The layer's input, `[..., in]`. */
  readonly x: Value;
  /** The layer's output including bias, `[..., out]`. */
  readonly y: Value;
  /** The weight as stored (see `layer.orientation`), float32 or float64 in the graph. */
  readonly weight: Value;
  /** The bias `[out]`, or `null` when the layer has none. */
  readonly bias: Value | null;
}

/** Replaces a linear layer's output (adapters add their branch here). */
export type LinearHook = (site: LinearSite) => Value;

/** A graph input or output of a model. */
export interface ModelIO {
  /** The ONNX file's own name; `"x"` and `"y"` for a safetensors block. */
  readonly name: string;
  /** `F32` for safetensors and TF.js models; the declared type for ONNX. */
  readonly dtype: DType;
  /** Dimensions; strings are symbolic (`"batch"`). */
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
  /** The model's inputs as declared in the graph, in the order of {@link BaseModel.inputs}. */
  readonly inputs: Value[];
  /** The model's outputs, in the order of {@link BaseModel.outputs}. */
  readonly outputs: Value[];
}

/** A pretrained base, from ONNX, safetensors or TF.js. */
export interface BaseModel {
  /** The file format the model was imported from. */
  readonly format: "onnx" | "safetensors" | "tfjs";
  /** Path of the file the model came from. */
  readonly source: string;
  /** Block name for multi-block files (`model.layers.3.mlp`), else undefined. */
  readonly block?: string;
  /** The graph inputs `build` declares. */
  readonly inputs: readonly ModelIO[];
  /** The graph outputs `build` returns. */
  readonly outputs: readonly ModelIO[];
  /** The linear layers: what adapters can target. */
  readonly layers: readonly LinearLayer[];
  /**
   * When the first output is already a probability (a final Softmax, LogSoftmax or Sigmoid): the
   * op and the value it reads, the logits a loss should train on instead.
   */
  readonly finalActivation?: { readonly op: string; readonly input: string };
  /** Builds the forward graph into `g`, declaring the model's inputs and returning its outputs. */
  build(g: Graph, opts?: BuildOptions): Built;
  /** Reads a source tensor (a weight or bias) by key, in its stored dtype. */
  readTensor(key: string): Promise<Tensor>;
  /** Releases open files. */
  close(): void;
}
