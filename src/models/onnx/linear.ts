/**
 * Linear-layer discovery in ONNX graphs, and stable layer names.
 *
 * Patterns (weights are constants: initializers or `Constant` outputs, possibly behind a
 * `Cast`/`Identity`, as half-precision exports write them):
 * - `Gemm(x, W, b?)` with transA = 0, any transB, alpha, beta: transB = 1 stores W `[out, in]`
 *   (`"out_in"`, PyTorch `nn.Linear`), transB = 0 stores `[in, out]` (`"in_out"`);
 * - `MatMul(x, W)` with W `[in, out]` (`"in_out"`: tf2onnx, keras2onnx, PyTorch's pre-transposed
 *   constants), with or without a following `Add` of a constant bias `[out]`;
 * - `Transpose(W) → MatMul` with W `[out, in]` transposed at run time (`"out_in"`, PyTorch 0.3).
 *
 * Names, first match wins, made unique with `_1`, `_2`, …:
 * 1. the PyTorch module path from the initializer names: `fc1` from `fc1.weight` or `fc1.bias`;
 * 2. the module path from a PyTorch ≥ 1.13 node scope: `/mlp/mlp.0/Gemm` → `mlp.0`,
 *    `/model/layers.0/mlp/up_proj/MatMul` → `model.layers.0.mlp.up_proj`;
 * 3. the Keras layer from TensorFlow names: the path component before `kernel`, `bias`,
 *    `MatMul`, `BiasAdd`, `Tensordot` or `ReadVariableOp` (`sequential/dense/MatMul/
 *    ReadVariableOp:0` → `dense`, `dense_2/kernel:0` → `dense_2`);
 * 4. otherwise the weight initializer's name.
 *
 * @module
 */

import type { NodeProto } from "../../onnx/gen/onnx_pb.ts";
import type { LinearLayer } from "../model.ts";
import { type DType, isFloat } from "../../tensor.ts";
import { attrFloat, attrInt, attrInts, findAttr } from "./_attrs.ts";
import { domainOf } from "./_graph.ts";

/** A linear layer found in an ONNX graph. */
export interface OnnxLinearLayer extends LinearLayer {
  /** Gemm `alpha` (1 for MatMul): the layer computes `alpha · x·W' + beta · b`. */
  readonly alpha: number;
  /** Gemm `beta` (1 for MatMul). */
  readonly beta: number;
  /** Name of the MatMul or Gemm node (may be empty in old exports). */
  readonly node: string;
}

/** A discovered layer and the nodes it stands for. */
export interface LinearMatch {
  readonly layer: OnnxLinearLayer;
  readonly kind: "gemm" | "matmul";
  /** The MatMul or Gemm node. */
  readonly anchor: NodeProto;
  /** The bias `Add` absorbed after a MatMul. */
  readonly biasAdd?: NodeProto;
  /** Name of the layer's input value. */
  readonly x: string;
  /** Name of the layer's final output (the bias Add's output, or the anchor's). */
  readonly output: string;
}

/** Dtype and shape of a constant value. */
export interface ConstInfo {
  readonly dtype: DType;
  readonly shape: readonly number[];
}

interface Resolved {
  readonly key: string;
  readonly info: ConstInfo;
  readonly transposed: boolean;
}

/**
 * Finds the linear layers of a sorted node list.
 *
 * @example
 * ```ts ignore
 * import { findLinearLayers } from "./linear.ts";
 * const matches = findLinearLayers(nodes, (name) => constants.get(name), new Set(["y"]));
 * matches.map((m) => `${m.layer.name} ${m.layer.orientation}`);
 * ```
 */
export function findLinearLayers(
  nodes: readonly NodeProto[],
  constOf: (name: string) => ConstInfo | undefined,
  graphOutputs: ReadonlySet<string>,
): LinearMatch[] {
  const producer = new Map<string, NodeProto>();
  const uses = new Map<string, NodeProto[]>();
  for (const n of nodes) {
    n.output.forEach((o) => producer.set(o, n));
    for (const i of n.input) uses.set(i, [...(uses.get(i) ?? []), n]);
  }
  const resolve = (name: string, allowTranspose: boolean): Resolved | undefined => {
    let transposed = false;
    for (let hops = 0; hops < 8; hops++) {
      const info = constOf(name);
      if (info) return { key: name, info, transposed };
      const p = producer.get(name);
      if (!p || domainOf(p) !== "") return undefined;
      if (p.opType === "Identity") name = p.input[0]!;
      else if (p.opType === "Cast") name = p.input[0]!;
      else if (p.opType === "Transpose" && allowTranspose && swaps(p)) {
        transposed = !transposed;
        name = p.input[0]!;
      } else return undefined;
    }
    return undefined;
  };
  const matches: Omit<LinearMatch, "layer">[] = [];
  const layers: Omit<OnnxLinearLayer, "name">[] = [];
  for (const n of nodes) {
    if (domainOf(n) !== "" || (n.opType !== "Gemm" && n.opType !== "MatMul")) continue;
    const [x, b, c] = n.input;
    if (!x || !b || constOf(x)) continue;
    const w = resolve(b, true);
    if (!w || w.info.shape.length !== 2 || !isFloat(w.info.dtype)) continue;
    if (w.info.shape.some((d) => d === 0)) continue; // zero-size placeholders are not layers
    const gemm = n.opType === "Gemm";
    if (gemm && attrInt(n, "transA", 0) !== 0) continue;
    const outIn = gemm ? (attrInt(n, "transB", 0) === 1) !== w.transposed : w.transposed;
    const [d0, d1] = w.info.shape as [number, number];
    const [inF, outF] = outIn ? [d1, d0] : [d0, d1];
    let bias: Resolved | undefined;
    let biasAdd: NodeProto | undefined;
    if (gemm && c) {
      bias = resolve(c, false);
      if (!bias || !isBias(bias.info, outF, 2)) continue; // C is data, not a bias
    } else if (!gemm) {
      const out = n.output[0]!;
      const consumers = uses.get(out) ?? [];
      const add = consumers[0];
      if (
        consumers.length === 1 && !graphOutputs.has(out) && add && add.opType === "Add" &&
        domainOf(add) === "" && !findAttr(add, "axis")
      ) {
        const other = add.input[0] === out ? add.input[1] : add.input[0];
        const r = other && other !== out ? resolve(other, false) : undefined;
        if (r && isBias(r.info, outF, Infinity)) {
          bias = r;
          biasAdd = add;
        }
      }
    }
    matches.push({
      kind: gemm ? "gemm" : "matmul",
      anchor: n,
      biasAdd,
      x,
      output: (biasAdd ?? n).output[0]!,
    });
    layers.push({
      inFeatures: inF,
      outFeatures: outF,
      orientation: outIn ? "out_in" : "in_out",
      weightKey: w.key,
      ...(bias ? { biasKey: bias.key } : {}),
      dtype: w.info.dtype,
      alpha: gemm ? attrFloat(n, "alpha", 1) : 1,
      beta: gemm && bias ? attrFloat(n, "beta", 1) : 1,
      node: n.name,
    });
  }
  const taken = new Set<string>();
  return matches.map((m, i) => {
    const l = layers[i]!;
    const base = layerName(l.weightKey, l.biasKey, [m.anchor.name, m.biasAdd?.name ?? ""]);
    let name = base;
    for (let k = 1; taken.has(name); k++) name = `${base}_${k}`;
    taken.add(name);
    return { ...m, layer: { name, ...l } };
  });
}

/** Whether a Transpose swaps the two axes of a matrix. */
function swaps(t: NodeProto): boolean {
  const perm = attrInts(t, "perm");
  return !perm || (perm.length === 2 && perm[0] === 1 && perm[1] === 0);
}

/** A bias is `[out]`, or `[1, …, 1, out]` no longer than the output's rank. */
function isBias(info: ConstInfo, out: number, maxRank: number): boolean {
  const s = info.shape;
  return isFloat(info.dtype) && s.length >= 1 && s.length <= maxRank && s[s.length - 1] === out &&
    s.slice(0, -1).every((d) => d === 1);
}

const TF_MARKERS = new Set(["kernel", "bias", "MatMul", "BiasAdd", "Tensordot", "ReadVariableOp"]);

/**
 * The stable name of a layer from its weight and bias keys and its node names (see the module
 * documentation for the rules).
 *
 * @example
 * ```ts
 * import { layerName } from "./linear.ts";
 * layerName("fc1.weight"); // "fc1"
 * layerName("onnx::MatMul_14", undefined, ["/mlp/mlp.0/MatMul"]); // "mlp.0"
 * layerName("sequential/dense/MatMul/ReadVariableOp:0"); // "dense"
 * ```
 */
export function layerName(
  weightKey: string,
  biasKey?: string,
  nodeNames: readonly string[] = [],
): string {
  for (const key of [weightKey, biasKey]) {
    const m = key && !key.startsWith("onnx::") ? /^(.+)\.(weight|bias)$/.exec(key) : null;
    if (m) return m[1]!;
  }
  for (const n of nodeNames) {
    const scope = torchScope(n);
    if (scope) return scope;
  }
  for (const key of [weightKey, biasKey, ...nodeNames]) {
    const layer = key ? kerasLayer(key) : undefined;
    if (layer) return layer;
  }
  return weightKey;
}

/** Module path of a PyTorch scoped node name: `/model/layers.0/mlp/MatMul` → `model.layers.0.mlp`. */
function torchScope(node: string): string | undefined {
  if (!node.startsWith("/")) return undefined;
  const parts = node.split("/").filter((p) => p !== "").slice(0, -1);
  const path: string[] = [];
  for (const p of parts) {
    // A Sequential's child is scoped `mlp/mlp.0`: the child's name extends its parent's.
    const last = path[path.length - 1];
    if (last !== undefined && p.startsWith(last + ".") && /^(\.\d+)+$/.test(p.slice(last.length))) {
      path[path.length - 1] = p;
    } else path.push(p);
  }
  return path.length ? path.join(".") : undefined;
}

/** Keras layer name in a TensorFlow tensor or node name. */
function kerasLayer(name: string): string | undefined {
  const parts = name.replace(/:\d+$/, "").split("/");
  const i = parts.findIndex((p) => TF_MARKERS.has(p));
  return i >= 1 ? parts[i - 1] : undefined;
}
