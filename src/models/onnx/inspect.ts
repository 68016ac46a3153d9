/**
 * A JSON-able summary of an ONNX file for `ffwd inspect`: producer, opsets, op histogram,
 * inputs and outputs, initializers, linear layers with their orientation, the frozen context (nodes
 * without a builder, run as they are) and import notes. Reads no tensor data.
 *
 * @module
 */

import type { Dim } from "../../engine/graph.ts";
import { analyze } from "./_analyze.ts";
import { describeNode } from "./_graph.ts";
import { readOnnxFile } from "../../io/onnx/read.ts";

/** The summary {@link inspectOnnx} returns; every field is plain JSON. */
export interface OnnxSummary {
  /** Absolute path of the model file. */
  readonly path: string;
  /** Always `"onnx"`, to tell summaries of different formats apart. */
  readonly format: "onnx";
  /** The ONNX IR version of the file. */
  readonly irVersion: number;
  /** The exporter named in the file (`producer_name`, `producer_version`). */
  readonly producer: { readonly name: string; readonly version: string };
  /** Opset version per domain (`""` is the default ONNX domain). */
  readonly opsets: readonly { readonly domain: string; readonly version: number }[];
  /** Node count per op type over the whole file (`Op`, or `domain.Op` outside the default). */
  readonly ops: Readonly<Record<string, number>>;
  /** The graph inputs that are not initializers; string dimensions are symbolic. */
  readonly inputs: readonly {
    readonly name: string;
    readonly dtype: string;
    readonly shape: Dim[];
  }[];
  /** Names of the network's outputs, after post-processing (`ai.onnx.ml`) is cut off. */
  readonly outputs: readonly string[];
  /** Every initializer's name, storage dtype, shape, byte size and external location. */
  readonly initializers: readonly {
    readonly name: string;
    readonly dtype: string;
    readonly shape: number[];
    readonly bytes: number;
    readonly external?: {
      readonly location: string;
      readonly offset: number;
      readonly length?: number;
    };
  }[];
  /** The linear layers an import would find, with the MatMul or Gemm node of each. */
  readonly linearLayers: readonly {
    readonly name: string;
    readonly inFeatures: number;
    readonly outFeatures: number;
    readonly orientation: "out_in" | "in_out";
    readonly weightKey: string;
    readonly biasKey?: string;
    readonly dtype: string;
    readonly node: string;
  }[];
  /**
   * Needed nodes ffwd has no builder for, as `node "name" (Op)`: they run as frozen context, as the
   * file wrote them, and no gradient crosses them.
   */
  readonly frozen: readonly string[];
  /** What an import would change or cut off, one sentence each. */
  readonly notes: readonly string[];
}

/**
 * Summarizes an ONNX file without building it. Unsafe external data locations still throw.
 *
 * @example
 * ```ts
 * import { inspectOnnx } from "./inspect.ts";
 * const s = await inspectOnnx("fixtures/mnist/base.onnx");
 * s.linearLayers.map((l) => l.name); // ["fc1", "fc2", "fc3"]
 * ```
 */
export async function inspectOnnx(path: string): Promise<OnnxSummary> {
  const a = analyze(await readOnnxFile(path));
  const p = a.file.proto;
  return {
    path: a.file.path,
    format: "onnx",
    irVersion: Number(p.irVersion),
    producer: { name: p.producerName, version: p.producerVersion },
    opsets: [...a.opsets].map(([domain, version]) => ({ domain, version })),
    ops: { ...a.histogram },
    inputs: a.inputs.map((i) => ({ name: i.name, dtype: i.dtype, shape: [...i.shape] })),
    outputs: [...a.outputs],
    initializers: a.initializerInfo.map((i) => ({
      name: i.name,
      dtype: i.dtype,
      shape: [...i.shape],
      bytes: i.bytes,
      ...(i.external
        ? {
          external: {
            location: i.external.location,
            offset: i.external.offset,
            ...(i.external.length !== undefined ? { length: i.external.length } : {}),
          },
        }
        : {}),
    })),
    linearLayers: [...a.linear.values()].map(({ layer: l }) => ({
      name: l.name,
      inFeatures: l.inFeatures,
      outFeatures: l.outFeatures,
      orientation: l.orientation,
      weightKey: l.weightKey,
      ...(l.biasKey ? { biasKey: l.biasKey } : {}),
      dtype: l.dtype,
      node: l.node,
    })),
    frozen: a.carried.map((n) => describeNode(n, a.index.get(n) ?? -1)),
    notes: [...a.notes],
  };
}
